//! The relay's side of the console's audit log page and the session page's channels
//! ([`assist_console::auditlog::AuditState`] on [`RelayConsole`]), and the change
//! notifications the approver's event stream waits on
//! ([`assist_console::requests::LiveChanges`], from [`Relay::watch_changes`]).
//!
//! - Who reads the log: auditors and admins. Which events: the operator's admins every
//!   one; others the events of sessions they may see (the broker's rule for `assist
//!   sessions`, [`Principal::may_see_session`]) and the events of their organisation that
//!   name no session. Filters are applied here, on the stored records, oldest to newest,
//!   keeping the newest [`MAX_EVENTS`] that match.
//! - The chain check is `assist-relay audit verify`'s ([`crate::audit_cmd::verify`]) over
//!   the whole log: one chain for everyone.
//! - Channels and raw bytes come from the stored recording's chunks that verify
//!   ([`crate::recording::export`]), after [`Relay::session_for`] said the user may see
//!   the session.
//!
//! It decides nothing beyond those reading rules and changes nothing.

use crate::audit::{Action, AuditFilter, AuditRecord};
use crate::broker::Relay;
use crate::broker::policy::Principal;
use crate::console_state::{RelayConsole, from_refusal, internal, principal};
use crate::recording::format::{Direction, Event, EventKind};
use crate::store::Store;
use assist_console::auditlog::{AuditEventView, AuditQuery, AuditState, ChainCheck, ChannelView};
use assist_console::requests::LiveChanges;
use assist_console::{Account, ApiError};
use assist_proto::caps::Role;
use assist_proto::ids::SessionId;
use assist_proto::msg::SessionInfo;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use tokio::sync::watch;

/// Matching events kept for one listing, the newest.
pub const MAX_EVENTS: usize = 10_000;
/// Events read from the store at a time.
const BATCH: u32 = 1000;

fn may_read_log(who: &Principal) -> Result<(), ApiError> {
    match who.role {
        Role::Auditor | Role::Admin => Ok(()),
        _ => Err(ApiError::Forbidden("only auditors and admins read the audit log".into())),
    }
}

fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

/// Whether `r` (of session `s`, if it names a known one) passes `q`.
fn matches(q: &AuditQuery, r: &AuditRecord, s: Option<&SessionInfo>, detail: &Value) -> bool {
    let set = AuditQuery::set;
    q.action_matches(&r.action)
        && set(&q.org).is_none_or(|o| {
            r.org.as_deref() == Some(o)
                || s.is_some_and(|s| s.agent_org.as_str() == o || s.engineer_org.as_str() == o)
        })
        && set(&q.agent)
            .is_none_or(|a| r.target.as_deref() == Some(a) || s.is_some_and(|s| s.agent.as_str() == a))
        && set(&q.engineer).is_none_or(|e| r.actor == e || s.is_some_and(|s| s.engineer.as_str() == e))
        && set(&q.ticket).is_none_or(|t| {
            s.is_some_and(|s| contains(&s.ticket, t))
                || detail.get("ticket").and_then(Value::as_str).is_some_and(|d| contains(d, t))
        })
}

impl RelayConsole {
    /// The stored recording's events, once the user may see the session (a 404 otherwise,
    /// as for a missing session); `None` when nothing was recorded.
    async fn recorded_events(
        &self,
        user: &Account,
        id: &str,
    ) -> Result<Option<(SessionInfo, Vec<Event>)>, ApiError> {
        let who = principal(user)?;
        let info = self.relay.session_for(&who, &SessionId::new(id)).await.map_err(from_refusal)?;
        let Some(store) = self.relay.recordings.as_ref() else { return Ok(None) };
        let bytes = match store.read(&info.id).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(internal(e)),
        };
        let (_, events) = crate::recording::export::read_events(&bytes)
            .map_err(|e| ApiError::Conflict(format!("the recording cannot be read: {e}")))?;
        Ok(Some((info, events)))
    }
}

/// What a channel was for, from its recorded description (`request` is the channel
/// request as the engineer sent it, a serialised `ChannelKind`).
fn channel_what(described: &Value) -> Option<String> {
    let request = described.get("request")?;
    let words = |v: &Value| {
        let list: Vec<&str> = v.as_array()?.iter().filter_map(Value::as_str).collect();
        (!list.is_empty()).then(|| list.join(" "))
    };
    let file = request.get("request").and_then(|r| {
        let op = r.get("op").and_then(Value::as_str).unwrap_or("");
        Some(format!("{op} {}", r.get("path")?.as_str()?))
    });
    file.or_else(|| request.get("target").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| request.get("name").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| request.get("paths").and_then(words))
        .or_else(|| request.get("command").and_then(words))
}

/// The channels of a recording, in order, with the bytes recorded each way.
pub fn channels(events: &[Event]) -> Vec<ChannelView> {
    let mut out: BTreeMap<u32, ChannelView> = BTreeMap::new();
    for e in events {
        match e.kind {
            EventKind::ChannelOpen => {
                let described: Value = serde_json::from_slice(&e.data).unwrap_or(Value::Null);
                out.insert(
                    e.channel,
                    ChannelView {
                        channel: e.channel,
                        kind: described.get("kind").and_then(Value::as_str).unwrap_or("unknown").to_owned(),
                        what: channel_what(&described),
                        opened_at: e.wall_ms,
                        closed_at: None,
                        bytes_out: 0,
                        bytes_in: 0,
                    },
                );
            }
            EventKind::ChannelClose => {
                if let Some(c) = out.get_mut(&e.channel) {
                    c.closed_at = Some(e.wall_ms);
                }
            }
            EventKind::Data => {
                if let Some(c) = out.get_mut(&e.channel) {
                    let n = e.data.len() as u64;
                    match e.direction {
                        Direction::Out => c.bytes_out += n,
                        Direction::In => c.bytes_in += n,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out.into_values().collect()
}

#[async_trait::async_trait]
impl AuditState for RelayConsole {
    async fn audit_events(
        &self,
        user: &Account,
        query: &AuditQuery,
    ) -> Result<Vec<AuditEventView>, ApiError> {
        let who = principal(user)?;
        may_read_log(&who)?;
        let store: &dyn Store = self.db.as_ref();
        let mut sessions: HashMap<String, Option<SessionInfo>> = HashMap::new();
        let mut kept: VecDeque<AuditEventView> = VecDeque::new();
        let mut page = AuditFilter {
            since: query.since,
            until: query.until,
            limit: Some(BATCH),
            ..AuditFilter::default()
        };
        loop {
            let records = store.list_audit(&page).await.map_err(internal)?;
            let Some(last) = records.last() else { break };
            page.after_seq = Some(last.seq);
            for r in records {
                let session = match &r.session {
                    None => None,
                    Some(id) => {
                        if !sessions.contains_key(id) {
                            let info = store.session(&SessionId::new(id)).await.map_err(internal)?;
                            sessions.insert(id.clone(), info);
                        }
                        sessions[id].as_ref()
                    }
                };
                let visible = who.is_operator()
                    || match session {
                        Some(s) => who.may_see_session(s),
                        None => r.org.as_deref() == Some(who.org.as_str()),
                    };
                if !visible {
                    continue;
                }
                let detail =
                    serde_json::from_str(&r.detail).unwrap_or_else(|_| Value::String(r.detail.clone()));
                if !matches(query, &r, session, &detail) {
                    continue;
                }
                kept.push_back(AuditEventView {
                    seq: r.seq,
                    at: r.at,
                    actor: r.actor,
                    org: r.org,
                    action: r.action,
                    target: r.target,
                    session: r.session,
                    detail,
                });
                if kept.len() > MAX_EVENTS {
                    kept.pop_front();
                }
            }
        }
        Ok(kept.into_iter().rev().collect())
    }

    fn audit_actions(&self) -> Vec<String> {
        Action::ALL.iter().map(|a| a.as_str().to_owned()).collect()
    }

    async fn audit_chain(&self, user: &Account) -> Result<ChainCheck, ApiError> {
        may_read_log(&principal(user)?)?;
        Ok(match crate::audit_cmd::verify(self.db.as_ref()).await.map_err(internal)? {
            Ok(chain) => ChainCheck {
                result: "valid".into(),
                verified: chain.count,
                detail: format!(
                    "audit log intact: {} events, each linked to the one before; head SHA256:{}",
                    chain.count, chain.head_hash
                ),
                head_hash: Some(chain.head_hash),
                broken_at: None,
            },
            Err(broken) => {
                let before = match broken.reason {
                    crate::audit::BreakReason::Sequence { expected } => expected - 1,
                    _ => broken.seq - 1,
                };
                ChainCheck {
                    result: "broken".into(),
                    verified: u64::try_from(before).unwrap_or(0),
                    head_hash: None,
                    broken_at: Some(broken.seq),
                    detail: broken.to_string(),
                }
            }
        })
    }

    async fn session_channels(&self, user: &Account, id: &str) -> Result<Vec<ChannelView>, ApiError> {
        Ok(self.recorded_events(user, id).await?.map(|(_, events)| channels(&events)).unwrap_or_default())
    }

    async fn raw_channel(
        &self,
        user: &Account,
        id: &str,
        channel: u32,
        direction: &str,
    ) -> Result<Vec<u8>, ApiError> {
        let (info, events) = self
            .recorded_events(user, id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no recording is stored for session {id}")))?;
        if !events.iter().any(|e| e.kind == EventKind::ChannelOpen && e.channel == channel) {
            return Err(ApiError::NotFound(format!("the recording of {id} has no channel {channel}")));
        }
        let direction = crate::recording::cli::parse_direction(direction)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let bytes = crate::recording::export::raw(&events, channel, direction);
        let detail =
            serde_json::json!({"format": "raw", "channel": channel, "direction": direction.as_str()});
        self.audit_export(user, &info, detail, &bytes).await?;
        Ok(bytes)
    }

    async fn desktop_replay(
        &self,
        user: &Account,
        id: &str,
        channel: u32,
    ) -> Result<assist_console::ReplayLink, ApiError> {
        crate::console_replay::open(self, user, id, channel).await
    }
}

impl LiveChanges for RelayConsole {
    fn changes(&self) -> watch::Receiver<u64> {
        Relay::watch_changes(&self.relay)
    }
}
