//! The broker's seam to the other relays of a cluster (several relays on one PostgreSQL
//! database): people on any relay act on any session, and every relay's live lists move
//! when anything changes anywhere.
//!
//! - A session lives in the memory of the relay where it was requested (its **holder**):
//!   that relay asks consent, splices and records it. An answer (with its options), a
//!   revocation or an end asked on another relay is carried to the holder as an [`Ask`]
//!   naming the person the asking relay authenticated; the holder's broker decides with
//!   its own rules (`answer`, `revoke`, `end_by`, as for a person connected to it),
//!   stores and audits, and only then replies, with the very text or refusal one relay
//!   would give. If no holder acknowledges the ask in time, the person is told so.
//! - A change to pending requests or live sessions on one relay wakes every relay's
//!   change counter ([`Bus::changed`]), and the lists ([`Relay::list_requests`],
//!   [`Relay::list_live`]) add the open sessions other relays hold, read from the store's
//!   session rows (which hold everything those lists show, the pending escalation
//!   included).
//! - An engineer's own follow-up commands (channels, `watch`, `follow`, `escalate`,
//!   `detach`) are not carried: they need the holder's memory and a connection to it, so
//!   the engineer is sent there ([`super::holder`]).
//!
//! With no bus (SQLite, one relay) nothing here runs: every session is local. This module
//! knows no transport: the implementation (`crate::bus`, PostgreSQL `LISTEN/NOTIFY`) calls
//! [`Relay::holds`] and [`Relay::asked`] for what arrives, and [`Relay::changed_elsewhere`].

use super::policy::Principal;
use super::*;
use serde::{Deserialize, Serialize};

/// How the relays of a cluster reach each other. Implemented outside the broker.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Carries `ask` to the relay holding its session (`holder` by name, or whichever
    /// holds it when `None`) and waits for its answer.
    async fn ask(&self, holder: Option<&str>, ask: &Ask) -> Result<Answer, BusError>;
    /// Tells the other relays that this relay's pending requests or live sessions
    /// changed. Never blocks; repeated calls may be carried as one.
    fn changed(&self);
}

/// Why an ask got no answer.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Nobody acknowledged it in time: the holder stopped, or the bus is cut.
    #[error("no relay of the cluster took it within {0:?}")]
    NoHolder(Duration),
    /// The holder took it but did not answer in time.
    #[error("the relay holding the session took it but did not answer within {0:?}")]
    NoAnswer(Duration),
    /// The bus itself failed (the database cannot be reached).
    #[error("the relays' bus failed: {0}")]
    Failed(String),
}

/// A person's command for the relay holding `session`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ask {
    /// As the asking relay authenticated them.
    pub by: Asker,
    pub session: SessionId,
    pub command: Command,
}

/// The person behind an [`Ask`]: the [`Principal`] the asking relay authenticated.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Asker {
    pub user: assist_proto::ids::UserName,
    pub org: OrgName,
    pub role: Role,
}

impl From<&Principal> for Asker {
    fn from(p: &Principal) -> Self {
        Self { user: p.user.clone(), org: p.org.clone(), role: p.role }
    }
}

impl From<Asker> for Principal {
    fn from(a: Asker) -> Self {
        Self { user: a.user, org: a.org, role: a.role }
    }
}

/// What is asked: the commands a person may give about someone else's session.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// Approve or deny a request or a pending escalation (`Relay::answer`).
    Answer {
        approve: bool,
        capabilities: Option<Vec<Capability>>,
        duration_secs: Option<u64>,
        note: Option<String>,
    },
    Revoke {
        selectors: Vec<String>,
        reason: Option<String>,
    },
    End {
        reason: Option<String>,
    },
}

/// The holder's outcome: the message for the person, or the refusal, as one relay says it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Done(String),
    Refused { code: ErrorCode, message: String },
}

impl From<Result<String, Refusal>> for Answer {
    fn from(r: Result<String, Refusal>) -> Self {
        match r {
            Ok(m) => Answer::Done(m),
            Err(r) => Answer::Refused { code: r.code, message: r.message },
        }
    }
}

impl From<Answer> for Result<String, Refusal> {
    fn from(a: Answer) -> Self {
        match a {
            Answer::Done(m) => Ok(m),
            Answer::Refused { code, message } => Err(Refusal::new(code, message)),
        }
    }
}

impl Relay {
    /// Joins the cluster: from now on commands for sessions held elsewhere go through
    /// `bus`, changes are told to it, and the lists include other relays' sessions. Once.
    pub fn join_bus(&self, bus: Arc<dyn Bus>) {
        if self.bus.set(bus).is_err() {
            warn!("the relay is already on a bus");
        }
    }

    pub(super) fn bus(&self) -> Option<&Arc<dyn Bus>> {
        self.bus.get()
    }

    /// Whether session `id` lives in this relay's memory (this relay is its holder).
    pub fn holds(&self, id: &SessionId) -> bool {
        self.session(id).is_some()
    }

    /// Another relay's change: wakes this relay's watchers, and is not told on.
    pub fn changed_elsewhere(&self) {
        self.changes_bump();
    }

    /// Runs an [`Ask`] that arrived from another relay, as this relay's broker would for
    /// a person connected here. Never carried on again: a session this relay does not
    /// hold gets the answer one relay gives for a session it does not know.
    pub async fn asked(self: &Arc<Self>, ask: Ask) -> Answer {
        let who = Principal::from(ask.by);
        let id = &ask.session;
        let result = match ask.command {
            Command::Answer { approve, capabilities, duration_secs, note } => {
                let approval = Approval { capabilities, duration_secs, note };
                self.answer_here(id, Answerer::User(&who), approve, approval).await
            }
            Command::Revoke { selectors, reason } => self.revoke_here(&who, id, selectors, reason).await,
            Command::End { reason } => self.end_by_here(&who, id, reason).await,
        };
        result.into()
    }

    /// For a command about session `id` given here: if the session is held by another
    /// relay of the cluster (not in this relay's memory, open in the store), carries it
    /// there and returns the holder's outcome; `None` to handle it here as always.
    pub(super) async fn elsewhere(
        &self,
        who: &Principal,
        id: &SessionId,
        command: impl FnOnce() -> Command,
    ) -> Option<Result<String, Refusal>> {
        let bus = self.bus()?;
        if self.holds(id) {
            return None;
        }
        let row = match self.store.open_session(id).await {
            Ok(Some(row)) => row,
            _ => return None,
        };
        let ask = Ask { by: who.into(), session: id.clone(), command: command() };
        // Addressed to the relay its row names (relays started without a name share the
        // default one, and the one of them holding it takes it).
        let holder = Some(row.relay.as_str());
        let started = std::time::Instant::now();
        let answer = bus.ask(holder, &ask).await;
        let elapsed_us = started.elapsed().as_micros() as u64;
        info!(session = %id, elapsed_us, ok = answer.is_ok(), "command carried to the session's relay");
        Some(match answer {
            Ok(a) => a.into(),
            // One who may not see the session learns nothing of it, as from one relay.
            Err(_) if !who.may_see_session(&row.info) => {
                Err(Refusal::new(ErrorCode::NotFound, format!("no live session {id}")))
            }
            Err(e) => {
                warn!(session = %id, error = %e, "the relay holding a session did not answer");
                Err(Refusal::new(
                    ErrorCode::Conflict,
                    format!(
                        "session {id} is held by another relay of the cluster, which did not answer ({e}); it may have stopped, and its sessions then end as \"relay lost\""
                    ),
                ))
            }
        })
    }

    /// Open sessions other relays hold, from the store (empty without a bus): with the
    /// consent mode their agent announced.
    pub(super) async fn held_elsewhere(&self) -> Vec<crate::store::OpenSession> {
        if self.bus().is_none() {
            return Vec::new();
        }
        match self.store.open_sessions(MAX_LISTED_ELSEWHERE).await {
            Ok(rows) => rows.into_iter().filter(|r| !self.holds(&r.info.id)).collect(),
            Err(e) => {
                warn!(error = %e, "cannot read other relays' sessions");
                Vec::new()
            }
        }
    }
}

/// The most open sessions of other relays read for one listing: a bound on its cost.
const MAX_LISTED_ELSEWHERE: u32 = 2000;
