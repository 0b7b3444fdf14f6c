//! The session state machine, without I/O or a clock.
//!
//! ```text
//! Requested ──approve──▶ Approved ──start──▶ Active ──end──▶ Closed(reason)
//!     │ deny                 │ end                │
//!     ▼                      ▼                    │
//!   Denied                 Closed ◀───────────────┘
//!     │ (deadline passes while Requested)
//!   Expired          Requested ──withdraw (engineer left)──▶ Closed
//! ```
//!
//! Denied, Expired and Closed are final. Time comes in as `now` (Unix ms).

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    Requested,
    Approved,
    Denied,
    Expired,
    Active,
    Closed,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Requested => "requested",
            SessionState::Approved => "approved",
            SessionState::Denied => "denied",
            SessionState::Expired => "expired",
            SessionState::Active => "active",
            SessionState::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requested" => SessionState::Requested,
            "approved" => SessionState::Approved,
            "denied" => SessionState::Denied,
            "expired" => SessionState::Expired,
            "active" => SessionState::Active,
            "closed" => SessionState::Closed,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, SessionState::Denied | SessionState::Expired | SessionState::Closed)
    }
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a command that requested a session for itself did in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// `assist cp`: file transfers.
    Transfer,
    /// `assist ls`: a directory listing.
    Listing,
    /// `assist logs`: a log bundle.
    Logs,
    /// `assist forward`: forwarded TCP connections (`ok`: stopped by the engineer; not
    /// ok: the grant stopped covering them).
    Forward,
    /// `assist ssh-proxy`: an OpenSSH client's connection (`ok`: the client closed it).
    Ssh,
}

/// Why a session ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// The remote shell or command exited.
    ShellExited {
        code: Option<i32>,
        signal: Option<String>,
    },
    /// The diagnostic script the session was requested for (`assist exec`) exited.
    ScriptExited {
        name: String,
        code: Option<i32>,
        signal: Option<String>,
    },
    /// The command the session was requested for (`assist cp`, `ls`, `logs`) finished its
    /// work (`ok`) or gave up on it, and said so as it left.
    Finished {
        work: Work,
        ok: bool,
    },
    EngineerDisconnected,
    /// The engineer stopped the client (Ctrl-C); it said so as it closed.
    EngineerInterrupted,
    /// The engineer left before anybody answered.
    Withdrawn,
    AgentDisconnected,
    /// An approver or admin ended it.
    EndedBy {
        user: String,
        reason: Option<String>,
    },
    RelayShutdown,
    /// The engineer's command left the session (its own capability was lost), and the
    /// grant then ran out with nobody using or extending it.
    Lapsed,
    /// Something failed; the message says what, for people.
    Failed {
        message: String,
    },
    /// The engineer's access was taken away while the session ran (`assist-relay user
    /// disable` or `user remove`).
    AccessRevoked {
        user: String,
    },
    /// The relay that held the session was declared lost by the other relays of its
    /// cluster (its heartbeat stopped reaching their database).
    RelayLost,
}

impl EndReason {
    /// The exit code an engineer's CLI should return for this reason.
    pub fn exit_code(&self) -> i32 {
        match self {
            EndReason::ShellExited { code: Some(c), .. } | EndReason::ScriptExited { code: Some(c), .. } => {
                *c
            }
            EndReason::Finished { ok: true, .. } => 0,
            // Like a shell: 128 + signal number is unknown here, so use a generic failure.
            EndReason::ShellExited { code: None, .. } => 255,
            _ => 255,
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::ShellExited { code: Some(c), .. } => write!(f, "shell exited with status {c}"),
            EndReason::ShellExited { code: None, signal: Some(s) } => write!(f, "shell killed by {s}"),
            EndReason::ShellExited { .. } => f.write_str("shell exited"),
            EndReason::ScriptExited { name, code: Some(c), .. } => {
                write!(f, "script {name} exited with status {c}")
            }
            EndReason::ScriptExited { name, code: None, signal: Some(s) } => {
                write!(f, "script {name} killed by {s}")
            }
            EndReason::ScriptExited { name, .. } => write!(f, "script {name} exited"),
            EndReason::Finished { work, ok } => f.write_str(match (work, ok) {
                (Work::Transfer, true) => "transfer finished",
                (Work::Transfer, false) => "transfer failed",
                (Work::Listing, true) => "listing finished",
                (Work::Listing, false) => "listing failed",
                (Work::Logs, true) => "log bundle sent",
                (Work::Logs, false) => "log bundle failed",
                (Work::Forward, true) => "forwarding finished",
                (Work::Forward, false) => "forwarding stopped",
                (Work::Ssh, true) => "ssh connection closed",
                (Work::Ssh, false) => "ssh connection failed",
            }),
            EndReason::EngineerDisconnected => f.write_str("engineer disconnected"),
            EndReason::EngineerInterrupted => f.write_str("engineer interrupted the client"),
            EndReason::Withdrawn => f.write_str("request withdrawn by the engineer"),
            EndReason::AgentDisconnected => f.write_str("agent disconnected"),
            EndReason::EndedBy { user, reason: Some(r) } => write!(f, "ended by {user}: {r}"),
            EndReason::EndedBy { user, reason: None } => write!(f, "ended by {user}"),
            EndReason::RelayShutdown => f.write_str("relay shutting down"),
            EndReason::Lapsed => {
                f.write_str("the grant ran out with no command of the engineer in the session")
            }
            EndReason::Failed { message } => write!(f, "failed: {message}"),
            EndReason::AccessRevoked { user } => {
                write!(f, "the access of {user} was revoked (user disabled or removed)")
            }
            EndReason::RelayLost => f.write_str("relay lost"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TransitionError {
    #[error("session is {from}, cannot {action}")]
    Invalid { from: SessionState, action: &'static str },
    #[error("the request expired before it was answered")]
    DeadlinePassed,
}

/// The lifecycle of one session. Holds only what the transitions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionMachine {
    state: SessionState,
    consent_deadline: i64,
}

impl SessionMachine {
    pub fn new(consent_deadline: i64) -> Self {
        Self { state: SessionState::Requested, consent_deadline }
    }

    /// Rebuilds a machine from stored state.
    pub fn resume(state: SessionState, consent_deadline: i64) -> Self {
        Self { state, consent_deadline }
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn consent_deadline(&self) -> i64 {
        self.consent_deadline
    }

    fn require(&self, from: SessionState, action: &'static str) -> Result<(), TransitionError> {
        if self.state == from { Ok(()) } else { Err(TransitionError::Invalid { from: self.state, action }) }
    }

    pub fn handle_approve(&mut self, now: i64) -> Result<(), TransitionError> {
        self.require(SessionState::Requested, "approve")?;
        if now >= self.consent_deadline {
            self.state = SessionState::Expired;
            return Err(TransitionError::DeadlinePassed);
        }
        self.state = SessionState::Approved;
        Ok(())
    }

    pub fn handle_deny(&mut self) -> Result<(), TransitionError> {
        self.require(SessionState::Requested, "deny")?;
        self.state = SessionState::Denied;
        Ok(())
    }

    /// Expires the request if its deadline has passed; returns whether it did.
    pub fn handle_timeout(&mut self, now: i64) -> bool {
        if self.state == SessionState::Requested && now >= self.consent_deadline {
            self.state = SessionState::Expired;
            true
        } else {
            false
        }
    }

    /// The first channel opened.
    pub fn handle_start(&mut self) -> Result<(), TransitionError> {
        match self.state {
            SessionState::Approved => {
                self.state = SessionState::Active;
                Ok(())
            }
            SessionState::Active => Ok(()),
            from => Err(TransitionError::Invalid { from, action: "start a channel" }),
        }
    }

    /// Ends a session from any non-final state. A request still waiting is closed as
    /// withdrawn or ended by whoever ended it.
    pub fn handle_end(&mut self) -> Result<(), TransitionError> {
        if self.state.is_final() {
            return Err(TransitionError::Invalid { from: self.state, action: "end" });
        }
        self.state = SessionState::Closed;
        Ok(())
    }

    /// When the machine next needs `handle_timeout`, if ever.
    pub fn poll_timeout(&self) -> Option<i64> {
        (self.state == SessionState::Requested).then_some(self.consent_deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionState::*;

    #[test]
    fn each_end_says_what_ended_it_and_old_ends_still_read() {
        let script = EndReason::ScriptExited { name: "db-health".into(), code: Some(3), signal: None };
        assert_eq!(script.to_string(), "script db-health exited with status 3");
        assert_eq!(script.exit_code(), 3);
        let done = |work, ok| EndReason::Finished { work, ok }.to_string();
        assert_eq!(done(Work::Transfer, true), "transfer finished");
        assert_eq!(done(Work::Listing, true), "listing finished");
        assert_eq!(done(Work::Logs, true), "log bundle sent");
        assert_eq!(done(Work::Transfer, false), "transfer failed");
        // Audit details written before these reasons existed still parse as they were.
        let old: EndReason =
            serde_json::from_str(r#"{"kind":"shell_exited","code":3,"signal":null}"#).unwrap();
        assert_eq!(old.to_string(), "shell exited with status 3");
        let old: EndReason = serde_json::from_str(r#"{"kind":"engineer_disconnected"}"#).unwrap();
        assert_eq!(old.to_string(), "engineer disconnected");
    }

    #[test]
    fn happy_path() {
        let mut m = SessionMachine::new(100);
        assert_eq!(m.poll_timeout(), Some(100));
        m.handle_approve(50).unwrap();
        assert_eq!(m.poll_timeout(), None);
        m.handle_start().unwrap();
        m.handle_start().unwrap();
        assert_eq!(m.state(), Active);
        m.handle_end().unwrap();
        assert_eq!(m.state(), Closed);
        assert!(m.handle_end().is_err());
    }

    #[test]
    fn no_channel_before_approval() {
        let mut m = SessionMachine::new(100);
        assert_eq!(
            m.handle_start(),
            Err(TransitionError::Invalid { from: Requested, action: "start a channel" })
        );
        m.handle_deny().unwrap();
        assert!(m.handle_start().is_err());
        assert!(m.handle_approve(1).is_err());
    }

    #[test]
    fn deadline_denies_unanswered_requests() {
        let mut m = SessionMachine::new(100);
        assert!(!m.handle_timeout(99));
        assert!(m.handle_timeout(100));
        assert_eq!(m.state(), Expired);
        assert!(m.handle_approve(50).is_err());

        let mut late = SessionMachine::new(100);
        assert_eq!(late.handle_approve(100), Err(TransitionError::DeadlinePassed));
        assert_eq!(late.state(), Expired);
    }

    #[test]
    fn answered_requests_cannot_be_answered_again() {
        let mut m = SessionMachine::new(100);
        m.handle_approve(1).unwrap();
        assert!(m.handle_deny().is_err());
        assert!(m.handle_approve(2).is_err());
        assert!(!m.handle_timeout(1_000));
    }

    #[test]
    fn states_round_trip_through_text() {
        for s in [Requested, Approved, Denied, Expired, Active, Closed] {
            assert_eq!(SessionState::parse(s.as_str()), Some(s));
        }
        assert_eq!(SessionState::parse("bogus"), None);
    }
}
