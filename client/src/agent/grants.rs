//! The agent's own record of each session's grant, and its enforcement independent of the
//! relay.
//!
//! - A grant is kept only if it carries a valid signature of the relay's grant key, names
//!   this agent, and is a newer revision than the one held.
//! - A revision that widens what is held (first approval, more capabilities, a later
//!   expiry) must come from where this agent's policy says consent comes from: in `prompt`
//!   mode only a "yes" given at this machine's prompt (each yes is used once); in
//!   `approver` mode an approver; in `window` mode an approver or a maintenance window.
//!   A narrowing revision (a revocation) is accepted from anyone.
//! - A grant naming a capability that no channel serves ([`Capability::is_served`]) is
//!   refused, as the relay refuses to ask for it.
//! - When a revision no longer covers a running channel, or the grant expires, the agent
//!   kills that channel's process itself.
//!
//! This module does not talk to the relay; [`super::run`] feeds it and [`super::channel`]
//! asks it.

use super::process::Control;
use crate::clock::now_ms;
use assist_proto::caps::{Capability, ConsentMode, NotServed};
use assist_proto::consent::ConsentSource;
use assist_proto::grant::{Grant, GrantError, SignedGrant};
use assist_proto::ids::{AgentName, SessionId};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{info, warn};

/// Why the agent did not keep a grant the relay sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GrantRefused {
    #[error(transparent)]
    Invalid(#[from] GrantError),
    #[error("grant is for agent {0}")]
    OtherAgent(AgentName),
    #[error("session {0} has ended")]
    Ended(SessionId),
    #[error(transparent)]
    NotServed(#[from] NotServed),
    #[error("revision {0} is not newer than the one held")]
    NotNewer(u32),
    /// In `prompt` mode, consent from anywhere but this agent's own prompt.
    #[error("this agent asks its own prompt; {0} cannot approve here")]
    NotThePrompt(ConsentSource),
    /// The grant names this agent's prompt, but the prompt has no unused "yes".
    #[error("the grant claims a local approval that this agent's prompt did not give")]
    PromptDidNotSayYes,
    /// In `approver` mode, consent from a prompt or a window.
    #[error("this agent's consent comes from approvers, not {0}")]
    NotAnApprover(ConsentSource),
    /// In `window` mode, consent from a prompt.
    #[error("this agent has no local prompt")]
    NoPrompt,
}

/// A channel's running process.
struct Running {
    id: u64,
    cap: Capability,
    control: Control,
}

/// What the agent knows about sessions, shared by the control loop and the channels.
pub(crate) struct Grants {
    name: AgentName,
    key: Vec<u8>,
    consent: ConsentMode,
    records: Mutex<HashMap<SessionId, Grant>>,
    pub changed: Notify,
    /// Unused "yes" answers given at this machine's prompt, per session.
    prompt_yes: Mutex<HashMap<SessionId, u32>>,
    /// Sessions that ended: nothing may start for them again.
    ended: Mutex<HashSet<SessionId>>,
    running: Mutex<HashMap<SessionId, Vec<Running>>>,
}

impl Grants {
    pub fn new(name: AgentName, key: Vec<u8>, consent: ConsentMode) -> Self {
        Self {
            name,
            key,
            consent,
            records: Mutex::default(),
            changed: Notify::new(),
            prompt_yes: Mutex::default(),
            ended: Mutex::default(),
            running: Mutex::default(),
        }
    }

    pub fn name(&self) -> &AgentName {
        &self.name
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The prompt here said yes to a request or escalation of `session`.
    pub fn prompt_said_yes(&self, session: &SessionId) {
        *self.prompt_yes.lock().expect("lock").entry(session.clone()).or_default() += 1;
    }

    pub fn record(&self, session: &SessionId) -> Option<Grant> {
        self.records.lock().expect("lock").get(session).cloned()
    }

    pub fn has_ended(&self, session: &SessionId) -> bool {
        self.ended.lock().expect("lock").contains(session)
    }

    /// Sessions with a grant held now.
    pub fn live_sessions(&self) -> Vec<SessionId> {
        self.records.lock().expect("lock").keys().cloned().collect()
    }

    /// Takes a grant from the relay's control stream. Returns why it was not kept.
    pub fn receive(self: &Arc<Self>, signed: &SignedGrant) -> Result<Grant, GrantRefused> {
        let g = signed.verify(&self.key)?;
        if g.agent != self.name {
            return Err(GrantRefused::OtherAgent(g.agent));
        }
        if self.has_ended(&g.session) {
            return Err(GrantRefused::Ended(g.session));
        }
        // Whoever signed it, a grant of what no channel here serves is refused whole: the
        // person who consented would believe they allowed something that does nothing.
        if let Some(e) = g.capabilities.iter().find_map(|c| c.check_served("agent").err()) {
            return Err(e.into());
        }
        let mut records = self.records.lock().expect("lock");
        let held = records.get(&g.session);
        if held.is_some_and(|h| g.revision <= h.revision) {
            return Err(GrantRefused::NotNewer(g.revision));
        }
        let widens = match held {
            None => true,
            Some(h) => g.expires_at > h.expires_at || !g.capabilities.iter().all(|c| h.covers(c)),
        };
        if widens {
            self.may_widen(&g)?;
        }
        records.insert(g.session.clone(), g.clone());
        drop(records);
        self.changed.notify_waiters();
        let killed = self.kill_uncovered(&g);
        if killed > 0 {
            info!(session = %g.session, killed, "grant revision no longer covers running channels");
        }
        self.arm_expiry(&g);
        Ok(g)
    }

    /// Whether `g`'s consent source may widen what is held, in this agent's consent mode.
    fn may_widen(&self, g: &Grant) -> Result<(), GrantRefused> {
        let source = &g.approver;
        match (self.consent, source) {
            (ConsentMode::Prompt, ConsentSource::Prompt(agent)) if *agent == self.name => {
                let mut yes = self.prompt_yes.lock().expect("lock");
                match yes.get_mut(&g.session) {
                    Some(n) if *n > 0 => *n -= 1,
                    _ => return Err(GrantRefused::PromptDidNotSayYes),
                }
                Ok(())
            }
            (ConsentMode::Prompt, _) => Err(GrantRefused::NotThePrompt(source.clone())),
            (ConsentMode::Approver, ConsentSource::Approver(_)) => Ok(()),
            (ConsentMode::Approver, _) => Err(GrantRefused::NotAnApprover(source.clone())),
            (ConsentMode::Window, ConsentSource::Approver(_) | ConsentSource::Window(_)) => Ok(()),
            (ConsentMode::Window, ConsentSource::Prompt(_)) => Err(GrantRefused::NoPrompt),
        }
    }

    /// Kills the processes of `g`'s session that it does not cover (all of them once it
    /// has expired). Returns how many.
    fn kill_uncovered(&self, g: &Grant) -> usize {
        let expired = now_ms() >= g.expires_at;
        let mut running = self.running.lock().expect("lock");
        let Some(list) = running.get_mut(&g.session) else { return 0 };
        let before = list.len();
        list.retain(|r| {
            let keep = !expired && g.covers(&r.cap);
            if !keep {
                r.control.kill();
            }
            keep
        });
        before - list.len()
    }

    fn arm_expiry(self: &Arc<Self>, g: &Grant) {
        let me = Arc::downgrade(self);
        let (session, revision) = (g.session.clone(), g.revision);
        let wait = Duration::from_millis((g.expires_at - now_ms()).max(0) as u64);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let Some(me) = me.upgrade() else { return };
            let Some(g) = me.record(&session).filter(|g| g.revision == revision) else { return };
            let killed = me.kill_uncovered(&g);
            warn!(%session, killed, "grant expired; its channels were stopped");
        });
    }

    /// Waits (briefly) until the record of `session` is at least `revision`.
    pub async fn record_at_least(&self, session: &SessionId, revision: u32, wait: Duration) -> Option<Grant> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            if let Some(g) = self.record(session).filter(|g| g.revision >= revision) {
                return Some(g);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Registers a running channel process. Returns false (and kills it) if the session
    /// ended or the grant stopped covering it meanwhile.
    pub fn add_running(&self, session: &SessionId, id: u64, cap: Capability, control: Control) -> bool {
        let covered = self.record(session).is_some_and(|g| g.covers(&cap) && now_ms() < g.expires_at);
        if !covered || self.has_ended(session) {
            control.kill();
            return false;
        }
        self.running.lock().expect("lock").entry(session.clone()).or_default().push(Running {
            id,
            cap,
            control,
        });
        true
    }

    pub fn remove_running(&self, session: &SessionId, id: u64) {
        let mut running = self.running.lock().expect("lock");
        if let Some(list) = running.get_mut(session) {
            list.retain(|r| r.id != id);
            if list.is_empty() {
                running.remove(session);
            }
        }
    }

    pub fn resize(&self, session: &SessionId, cols: u16, rows: u16) {
        if let Some(list) = self.running.lock().expect("lock").get(session) {
            for r in list {
                let _ = r.control.resize(cols, rows);
            }
        }
    }

    /// Ends a session here: forgets its grant and kills its processes.
    pub fn end(&self, session: &SessionId) {
        self.ended.lock().expect("lock").insert(session.clone());
        self.records.lock().expect("lock").remove(session);
        self.prompt_yes.lock().expect("lock").remove(session);
        if let Some(list) = self.running.lock().expect("lock").remove(session) {
            for r in list {
                r.control.kill();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_proto::grant::public_key;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::Ed25519KeyPair;

    fn grant(session: &str, capabilities: Vec<Capability>) -> Grant {
        Grant {
            session: session.into(),
            agent: "erp-db01".into(),
            engineer: "alice".into(),
            capabilities,
            not_before: now_ms(),
            expires_at: now_ms() + 600_000,
            approver: ConsentSource::Approver("bob".into()),
            revision: 1,
            note: None,
        }
    }

    #[tokio::test]
    async fn a_grant_naming_the_clipboard_is_kept_now_a_channel_serves_it() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let grants = Arc::new(Grants::new("erp-db01".into(), public_key(&key), ConsentMode::Approver));
        let caps = vec![Capability::DesktopView, Capability::Clipboard];
        assert!(grants.receive(&SignedGrant::sign(&grant("s-clip", caps), &key)).is_ok());
        assert!(grants.record(&"s-clip".into()).is_some());
    }

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    /// What an agent in `mode` does with a first grant from `source`, the prompt here
    /// having said yes to the session or not.
    fn first_grant(mode: ConsentMode, source: &str, prompt_said_yes: bool) -> Result<Grant, GrantRefused> {
        let key = key();
        let grants = Arc::new(Grants::new("erp-db01".into(), public_key(&key), mode));
        let mut g = grant("s-1", vec![Capability::Shell]);
        g.approver = source.parse().unwrap();
        if prompt_said_yes {
            grants.prompt_said_yes(&g.session);
        }
        grants.receive(&SignedGrant::sign(&g, &key))
    }

    #[tokio::test]
    async fn each_consent_mode_accepts_widening_only_from_its_own_sources() {
        use ConsentMode::{Approver, Prompt, Window};
        use GrantRefused as R;
        /// `None`: kept; else what the refusal must match.
        type Expected = Option<fn(&GrantRefused) -> bool>;
        let cases: [(ConsentMode, &str, bool, Expected); 12] = [
            (Prompt, "prompt@erp-db01", true, None),
            (Prompt, "prompt@erp-db01", false, Some(|e| matches!(e, R::PromptDidNotSayYes))),
            (Prompt, "prompt@erp-db02", true, Some(|e| matches!(e, R::NotThePrompt(_)))),
            (Prompt, "bob", true, Some(|e| matches!(e, R::NotThePrompt(_)))),
            (Prompt, "window:w-1", true, Some(|e| matches!(e, R::NotThePrompt(_)))),
            (Approver, "bob", false, None),
            (Approver, "prompt@erp-db01", true, Some(|e| matches!(e, R::NotAnApprover(_)))),
            (Approver, "prompt@erp-db02", true, Some(|e| matches!(e, R::NotAnApprover(_)))),
            (Approver, "window:w-1", false, Some(|e| matches!(e, R::NotAnApprover(_)))),
            (Window, "bob", false, None),
            (Window, "window:w-1", false, None),
            (Window, "prompt@erp-db01", true, Some(|e| matches!(e, R::NoPrompt))),
        ];
        for (mode, source, yes, refused) in cases {
            let got = first_grant(mode, source, yes);
            match refused {
                None => assert!(got.is_ok(), "{mode} refused {source}: {got:?}"),
                Some(expected) => {
                    let err = got.expect_err(&format!("{mode} accepted {source}"));
                    assert!(expected(&err), "{mode}, {source}: {err:?}");
                }
            }
        }
        // The messages people read are those they always were.
        let err = first_grant(Prompt, "bob", true).unwrap_err();
        assert_eq!(err.to_string(), "this agent asks its own prompt; bob cannot approve here");
        let err = first_grant(Approver, "window:w-1", false).unwrap_err();
        assert_eq!(err.to_string(), "this agent's consent comes from approvers, not window:w-1");
    }

    #[tokio::test]
    async fn a_prompt_yes_is_used_once_and_narrowing_needs_none() {
        let key = key();
        let grants = Arc::new(Grants::new("erp-db01".into(), public_key(&key), ConsentMode::Prompt));
        let mut g = grant("s-1", vec![Capability::Shell, "files.read:/tmp".parse().unwrap()]);
        g.approver = ConsentSource::Prompt("erp-db01".into());
        grants.prompt_said_yes(&g.session);
        grants.receive(&SignedGrant::sign(&g, &key)).unwrap();
        // A wider revision with no new yes is refused.
        let mut wider = g.clone();
        wider.revision = 2;
        wider.expires_at += 60_000;
        let err = grants.receive(&SignedGrant::sign(&wider, &key)).unwrap_err();
        assert_eq!(err, GrantRefused::PromptDidNotSayYes);
        // A narrower one, from anyone, is kept.
        let mut narrower = g;
        narrower.revision = 2;
        narrower.capabilities = vec![Capability::Shell];
        narrower.approver = ConsentSource::Approver("bob".into());
        assert!(grants.receive(&SignedGrant::sign(&narrower, &key)).is_ok());
    }
}
