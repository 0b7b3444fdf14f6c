//! The audit log: what happened, who did it, and a hash chain that makes any later change
//! to a stored event detectable offline.
//!
//! - Callers describe an event with an [`AuditEvent`] (actor, organisation, [`Action`],
//!   target, session, a JSON `detail`). The store appends it in the same transaction as
//!   the state change it describes (see [`crate::store::Store`]), giving it the next
//!   sequence number, the time, the previous event's hash and its own hash: an
//!   [`AuditRecord`].
//! - [`verify_chain`] (or [`ChainVerifier`], one record at a time) checks a whole log: the
//!   sequence numbers run 1, 2, 3… without gaps, every record's hash matches its contents,
//!   and every record names the hash of the one before it (the first names [`GENESIS`]).
//!
//! # The hash
//!
//! `hash = lowercase hex of SHA-256(encoding)`, where `encoding` is, byte by byte:
//!
//! 1. the 16 bytes `assist-audit-v1\n` (a version and domain tag);
//! 2. `seq` and `at`, each as 8 bytes, big-endian two's complement;
//! 3. the fields `actor`, `org`, `action`, `target`, `session`, `detail`, `prev_hash`, in
//!    that order, each as one byte `0x00` if absent (`NULL`), or `0x01` followed by the
//!    length of its UTF-8 bytes as 8 bytes big-endian, followed by those bytes.
//!
//! Every field has a fixed position and an explicit length, so no two different records
//! encode alike. `detail` is hashed as the exact JSON text stored, not as re-serialised
//! JSON, so a change that leaves the parsed value equal (`1e1` → `1E1`) is still a change.
//! `prev_hash` of the first event is [`GENESIS`] (64 zeros).
//!
//! # What it does not do
//!
//! It does no I/O and reads no clock: the store supplies `seq`, `at` and `prev_hash`. A
//! chain alone cannot show that the newest events were removed (a shorter chain is still
//! a valid chain); that needs the head hash and count recorded somewhere the database's
//! owner cannot rewrite (see `assist-relay audit verify`, which prints both).

use assist_proto::ids::{AgentName, OrgName, SessionId};
use aws_lc_rs::digest;
use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// `prev_hash` of the first event.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The actor of events the relay causes by itself (expiry, restart clean-up, refusals).
pub const RELAY_ACTOR: &str = "relay";

/// The actor of an agent's own events: `agent:NAME`.
pub fn agent_actor(name: &AgentName) -> String {
    format!("agent:{name}")
}

/// The actor of an administration command: `admin-cli`, or `admin-cli:OS_USER` when the
/// binary knows who runs it (as the environment says: informative, not authenticated).
pub fn admin_actor(os_user: Option<&str>) -> String {
    match os_user.map(str::trim).filter(|u| !u.is_empty()) {
        Some(u) => format!("admin-cli:{u}"),
        None => "admin-cli".to_owned(),
    }
}

/// `text` cut to at most `max` bytes, at a character boundary: for names that come from
/// unauthenticated or unchecked input, so that they cannot make an event large.
pub fn clip(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// What happened. The dotted names are stable: they are stored, hashed and exported.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Action {
            $($(#[$doc])* $variant,)*
        }

        impl Action {
            /// Every action, in declaration order.
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }
        }
    };
}

actions! {
    LoginSucceeded = "login.succeeded",
    /// The detail says why (unknown user or wrong password); never the password.
    LoginFailed = "login.failed",
    /// A user name or source address must now wait before its next login attempt (the
    /// detail counts its failures, the wait, and the attempts refused since its last row).
    LoginThrottled = "login.throttled",
    /// A join token was created (its hash prefix is the target).
    TokenIssued = "token.issued",
    AgentEnrolled = "agent.enrolled",
    /// A revoked agent's name was enrolled again with a new join token (detail: the
    /// previous certificate's fingerprint and organisation; the old certificate stays
    /// refused).
    AgentReenrolled = "agent.reenrolled",
    /// An enrollment was refused (token unknown, used or expired; name taken).
    AgentEnrollmentRefused = "agent.enrollment_refused",
    AgentRevoked = "agent.revoked",
    AgentConnected = "agent.connected",
    AgentDisconnected = "agent.disconnected",
    /// A connection with a CA-signed certificate that is revoked or no longer enrolled.
    AgentRefused = "agent.refused",
    SessionRequested = "session.requested",
    /// A request refused by policy (role, organisation, revoked agent) before it was stored.
    SessionRefused = "session.refused",
    SessionApproved = "session.approved",
    SessionDenied = "session.denied",
    SessionExpired = "session.expired",
    SessionStarted = "session.started",
    SessionEnded = "session.ended",
    /// An engineer asked for more capabilities or time during a live session.
    EscalationRequested = "session.escalation_requested",
    /// An escalation was granted (the detail holds the new grant).
    EscalationApproved = "session.escalated",
    EscalationDenied = "session.escalation_denied",
    EscalationExpired = "session.escalation_expired",
    /// Capabilities were taken away from a live session.
    GrantRevoked = "grant.revoked",
    /// A session's grant ran out; its channels were closed.
    GrantExpired = "grant.expired",
    ChannelRefused = "channel.refused",
    /// An approver or admin started watching a live session read-only (detail: the
    /// watcher's organisation); the engineer is told.
    WatchStarted = "session.watch_started",
    /// A watcher stopped watching (left the page, or the session ended).
    WatchStopped = "session.watch_stopped",
    /// A diagnostic script run in a session that goes on (`assist exec --session`) exited
    /// (detail: script, exit code or signal).
    ScriptExited = "exec.exited",
    /// A command or shell whose exit goes to the connection that opened it (an SSH channel
    /// of `assist ssh-proxy`) exited; the session goes on (detail: code or signal, stream).
    CommandExited = "command.exited",
    /// Someone tried what they may not: answer, end, revoke in or escalate a session that
    /// is not theirs to touch, or one that does not exist (detail: what was attempted, why
    /// it was refused, `count`; rate-limited, see `broker::refusals`).
    AccessRefused = "access.refused",
    /// An engineer token was refused: forged, expired, for another relay (detail: reason,
    /// remote address, `count`; rate-limited).
    TokenRefused = "login.token_refused",
    /// A QUIC/TLS handshake failed, e.g. a client certificate from another CA (detail:
    /// the error, remote address, `count`; rate-limited).
    HandshakeRefused = "connection.refused",
    /// A file transfer ended (detail: path, direction, size, SHA-256 from the agent and the
    /// engineer, whether they matched, the recording channel).
    FileTransferred = "file.transferred",
    /// The agent renamed, removed or created something inside a granted write root (detail:
    /// op, path, to, channel, stream).
    FileChanged = "file.changed",
    /// A forwarded TCP connection opened: the agent connected to its target (detail:
    /// target, recording channel, stream, the engineer connection's address).
    ForwardOpened = "forward.opened",
    /// A forwarded TCP connection closed (detail: target, channel, the engineer
    /// connection's address, bytes each way, duration, how each direction ended).
    ForwardClosed = "forward.closed",
    RecordingSealed = "recording.sealed",
    /// A recording was exported by `assist-relay recording export` (detail: format,
    /// channel and direction where one was chosen, bytes and SHA-256 of what was written,
    /// and where).
    RecordingExported = "recording.exported",
    RecordingFailed = "recording.failed",
    OrgAdded = "org.added",
    /// A maintenance window was added (detail: schedule, capabilities, engineers).
    WindowAdded = "window.added",
    WindowRemoved = "window.removed",
    UserAdded = "user.added",
    /// A user's password was set or reset.
    PasswordSet = "user.password_set",
    // Outgoing webhooks (crate::webhook). `webhook.*` events never trigger a webhook.
    /// A webhook was configured (target: its id; never its secret).
    WebhookAdded = "webhook.added",
    WebhookRemoved = "webhook.removed",
    /// A delivery attempt got a 2xx answer.
    WebhookDelivered = "webhook.delivered",
    /// A delivery attempt failed (status or error); the detail says whether it is retried.
    WebhookFailed = "webhook.failed",
    // The web console (crate::console_state).
    /// A console session began (detail: its stage, source address).
    ConsoleSignedIn = "console.signed_in",
    /// A console session ended (detail: why: logout, idle, expired, disabled, upgraded).
    ConsoleSignedOut = "console.signed_out",
    /// A user confirmed a new TOTP authenticator (recovery codes were renewed).
    MfaEnrolled = "mfa.enrolled",
    /// A second-factor code was refused (detail: why, source address; never the code).
    MfaFailed = "mfa.failed",
    /// A recovery code was used instead of an authenticator code.
    MfaRecoveryUsed = "mfa.recovery_used",
    /// A user may no longer sign in; their console sessions ended and their CLI tokens
    /// were revoked with it.
    UserDisabled = "user.disabled",
    /// A user was removed, with their sign-in state (sessions' history stays).
    UserRemoved = "user.removed",
    /// A disabled user may sign in again.
    UserEnabled = "user.enabled",
    /// A user's role changed (detail: from, to); their console sessions and CLI tokens
    /// ended with it, so the new role applies from their next sign-in.
    UserRoleChanged = "user.role_changed",
    /// An organisation's engineers may now ask for sessions on another's agents (target:
    /// the customer; detail: the vendor).
    OrgSupportAdded = "org.support_added",
    /// An organisation no longer supports another (target: the customer; detail: the
    /// vendor). Sessions already granted go on until they end.
    OrgSupportRemoved = "org.support_removed",
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown audit action {s:?}"))
    }
}

/// An event as a caller describes it; the store turns it into an [`AuditRecord`].
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    /// A user name, `agent:NAME`, `relay`, or `admin-cli[:OS_USER]`.
    pub actor: String,
    /// The organisation concerned: for sessions, the customer's (the agent's) organisation.
    pub org: Option<OrgName>,
    pub action: Action,
    /// What the action was done to: an agent, a user, an organisation, a token's hash prefix.
    pub target: Option<String>,
    pub session: Option<SessionId>,
    /// Anything else worth keeping, as a JSON object. Never secrets.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    /// An event with no organisation, target, session or detail yet.
    pub fn new(actor: impl Into<String>, action: Action) -> Self {
        Self {
            actor: actor.into(),
            org: None,
            action,
            target: None,
            session: None,
            detail: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    pub fn org(mut self, org: &OrgName) -> Self {
        self.org = Some(org.clone());
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn session(mut self, id: &SessionId) -> Self {
        self.session = Some(id.clone());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }

    /// Adds the fields of `more` (a JSON object) to the detail, replacing equal keys.
    pub fn merge_detail(mut self, more: serde_json::Value) -> Self {
        if let (serde_json::Value::Object(d), serde_json::Value::Object(m)) = (&mut self.detail, more) {
            d.extend(m);
        }
        self
    }

    /// The record this event becomes as event number `seq`, at `at`, after `prev_hash`.
    pub fn seal(&self, seq: i64, at: i64, prev_hash: &str) -> AuditRecord {
        let mut record = AuditRecord {
            seq,
            at,
            actor: self.actor.clone(),
            org: self.org.as_ref().map(|o| o.to_string()),
            action: self.action.as_str().to_owned(),
            target: self.target.clone(),
            session: self.session.as_ref().map(|s| s.to_string()),
            // Serialising a `Value` cannot fail: its keys are strings.
            detail: serde_json::to_string(&self.detail).unwrap_or_else(|_| "{}".to_owned()),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
        };
        record.hash = record.computed_hash();
        record
    }
}

/// A stored event. Fields are kept exactly as stored (plain strings, `detail` as JSON
/// text), because the hash covers the stored bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub org: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub session: Option<String>,
    /// JSON text; exported as JSON (or as a string, if it is not valid JSON).
    #[serde(serialize_with = "json_text")]
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

fn json_text<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => v.serialize(s),
        Err(_) => s.serialize_str(text),
    }
}

impl AuditRecord {
    /// The hash of this record's contents (including `prev_hash`), as described in the
    /// module documentation.
    pub fn computed_hash(&self) -> String {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"assist-audit-v1\n");
        ctx.update(&self.seq.to_be_bytes());
        ctx.update(&self.at.to_be_bytes());
        for field in [
            Some(self.actor.as_str()),
            self.org.as_deref(),
            Some(self.action.as_str()),
            self.target.as_deref(),
            self.session.as_deref(),
            Some(self.detail.as_str()),
            Some(self.prev_hash.as_str()),
        ] {
            match field {
                None => ctx.update(&[0]),
                Some(text) => {
                    ctx.update(&[1]);
                    ctx.update(&(text.len() as u64).to_be_bytes());
                    ctx.update(text.as_bytes());
                }
            }
        }
        hex::encode(ctx.finish().as_ref())
    }
}

/// A whole chain that checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedChain {
    pub count: u64,
    /// The last event's hash ([`GENESIS`] for an empty log).
    pub head_hash: String,
}

/// The first event at which a chain fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit log broken at event #{seq}: {reason}")]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: BreakReason,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakReason {
    /// The sequence numbers jump or go back: events were removed, inserted or reordered.
    Sequence { expected: i64 },
    /// The stored hash does not match the event's contents: a field was changed.
    Altered,
    /// `prev_hash` is not the previous event's hash: the previous event was rewritten (with
    /// a new hash), or events were removed or inserted before this one.
    BrokenLink,
    /// The stored row cannot be read as an event (wrong type, not UTF-8).
    Unreadable(String),
}

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakReason::Sequence { expected } => {
                write!(f, "expected event #{expected} here (events removed, inserted or reordered)")
            }
            BreakReason::Altered => f.write_str("its contents do not match its hash (the event was changed)"),
            BreakReason::BrokenLink => f.write_str(
                "its link to the previous event's hash is broken (an earlier event was rewritten)",
            ),
            BreakReason::Unreadable(why) => write!(f, "the stored event cannot be read: {why}"),
        }
    }
}

/// Checks a chain one record at a time, so that a log need not fit in memory.
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    count: u64,
    prev_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self { count: 0, prev_hash: GENESIS.to_owned() }
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The sequence number the next record must have.
    pub fn next_seq(&self) -> i64 {
        i64::try_from(self.count).unwrap_or(i64::MAX).saturating_add(1)
    }

    /// Checks the next record of the chain.
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), ChainBreak> {
        let expected = self.next_seq();
        let fail = |reason| Err(ChainBreak { seq: r.seq, reason });
        if r.seq != expected {
            return fail(BreakReason::Sequence { expected });
        }
        if r.computed_hash() != r.hash {
            return fail(BreakReason::Altered);
        }
        if r.prev_hash != self.prev_hash {
            return fail(BreakReason::BrokenLink);
        }
        self.count += 1;
        self.prev_hash.clone_from(&r.hash);
        Ok(())
    }

    pub fn finish(self) -> VerifiedChain {
        VerifiedChain { count: self.count, head_hash: self.prev_hash }
    }
}

/// Checks a whole chain, in order: see [`ChainVerifier::push`].
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<VerifiedChain, ChainBreak> {
    let mut v = ChainVerifier::new();
    for r in records {
        v.push(r)?;
    }
    Ok(v.finish())
}

/// Which events to list; every field narrows the selection. Times are Unix ms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// At or after this time.
    pub since: Option<i64>,
    /// Before this time.
    pub until: Option<i64>,
    pub org: Option<OrgName>,
    pub session: Option<SessionId>,
    /// Exactly this actor.
    pub actor: Option<String>,
    /// Only events with a greater sequence number (for reading a long log in pages).
    pub after_seq: Option<i64>,
    /// At most this many events. None: all.
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let e = AuditEvent::new("alice", Action::SessionRequested)
                    .org(&"acme".into())
                    .target("db01")
                    .session(&format!("s-{seq}").as_str().into())
                    .detail(json!({"ticket": "INC-1", "n": seq}));
                let r = e.seal(seq, 1000 + seq, &prev);
                prev.clone_from(&r.hash);
                r
            })
            .collect()
    }

    fn broken(records: &[AuditRecord]) -> (i64, BreakReason) {
        let e = verify_chain(records).expect_err("chain should be broken");
        (e.seq, e.reason)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let records = chain(5);
        let v = verify_chain(&records).unwrap();
        assert_eq!((v.count, v.head_hash.as_str()), (5, records[4].hash.as_str()));
        assert_eq!(records[0].prev_hash, GENESIS);
        assert_eq!(verify_chain(&[]).unwrap(), VerifiedChain { count: 0, head_hash: GENESIS.into() });
    }

    #[test]
    fn the_hash_is_pinned() {
        // Changing the encoding breaks every stored log: this test says so loudly. The value
        // was computed apart from this code, from the module documentation alone (Python's
        // hashlib), so the documentation is enough to verify a log.
        let r = AuditEvent::new("relay", Action::SessionExpired).seal(1, 0, GENESIS);
        assert_eq!(r.detail, "{}");
        assert_eq!(r.hash, "8795a1273090a34202aabc66bd19fd52e90a979817c882e3bbd16aec3d0e7788");
    }

    #[test]
    fn changing_any_field_is_detected() {
        type Tamper = fn(&mut AuditRecord);
        let tampers: &[(&str, Tamper)] = &[
            ("seq", |r| r.seq += 100),
            ("at", |r| r.at += 1),
            ("actor", |r| r.actor.push('x')),
            ("org", |r| r.org = Some("acmf".into())),
            ("org removed", |r| r.org = None),
            ("action", |r| r.action = "session.approved".into()),
            ("target", |r| r.target = Some("db02".into())),
            ("session", |r| r.session = None),
            ("detail", |r| r.detail = r.detail.replace("INC-1", "INC-2")),
            ("prev_hash", |r| r.prev_hash = GENESIS.into()),
            ("hash", |r| r.hash = r.hash.replace(&r.hash[..1], if &r.hash[..1] == "a" { "b" } else { "a" })),
        ];
        for (what, tamper) in tampers {
            let mut records = chain(4);
            tamper(&mut records[2]);
            let (seq, reason) = broken(&records);
            assert_eq!(seq, records[2].seq, "{what}");
            let expected_kind = match *what {
                "seq" => matches!(reason, BreakReason::Sequence { expected: 3 }),
                _ => reason == BreakReason::Altered,
            };
            assert!(expected_kind, "{what}: {reason:?}");
        }
    }

    #[test]
    fn fields_cannot_be_shifted_into_each_other() {
        let a = AuditEvent::new("ab", Action::LoginFailed).target("c").seal(1, 0, GENESIS);
        let b = AuditEvent::new("a", Action::LoginFailed).target("bc").seal(1, 0, GENESIS);
        let c = AuditEvent::new("a", Action::LoginFailed).seal(1, 0, GENESIS);
        let d = AuditEvent::new("a", Action::LoginFailed).target("").seal(1, 0, GENESIS);
        assert_ne!(a.hash, b.hash);
        assert_ne!(c.hash, d.hash, "absent and empty differ");
    }

    #[test]
    fn a_rewritten_event_breaks_the_next_link() {
        let mut records = chain(4);
        records[1].actor = "mallory".into();
        records[1].hash = records[1].computed_hash();
        assert_eq!(broken(&records), (3, BreakReason::BrokenLink));
    }

    #[test]
    fn removing_or_reordering_events_is_detected() {
        let mut records = chain(5);
        records.remove(2);
        assert_eq!(broken(&records), (4, BreakReason::Sequence { expected: 3 }));

        let mut records = chain(5);
        records.swap(1, 3);
        assert_eq!(broken(&records), (4, BreakReason::Sequence { expected: 2 }));

        let mut records = chain(5);
        records.remove(0);
        assert_eq!(broken(&records), (2, BreakReason::Sequence { expected: 1 }));

        // Removed and renumbered: the hashes cover `seq`, and the link is gone anyway.
        let mut records = chain(5);
        records.remove(2);
        for r in &mut records[2..] {
            r.seq -= 1;
        }
        assert_eq!(broken(&records), (3, BreakReason::Altered));
    }

    #[test]
    fn a_detail_that_parses_alike_still_counts_as_changed() {
        let mut records = chain(1);
        records[0].detail = records[0].detail.replace("\"n\":1", "\"n\":1.0");
        assert_eq!(broken(&records), (1, BreakReason::Altered));
    }

    #[test]
    fn records_export_detail_as_json() {
        let r = AuditEvent::new("alice", Action::LoginSucceeded)
            .detail(json!({"role": "engineer"}))
            .seal(1, 5, GENESIS);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["detail"], json!({"role": "engineer"}));
        assert_eq!((v["action"].as_str(), v["org"].is_null()), (Some("login.succeeded"), true));
        let odd = AuditRecord { detail: "not json".into(), ..r };
        assert_eq!(serde_json::to_value(&odd).unwrap()["detail"], "not json");
    }

    #[test]
    fn action_names_round_trip_and_are_unique() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(*a));
            assert_eq!(Action::ALL.iter().filter(|b| b.as_str() == a.as_str()).count(), 1);
        }
        assert!("login.maybe".parse::<Action>().is_err());
    }

    #[test]
    fn clipping_keeps_whole_characters() {
        assert_eq!(clip("alice", 64), "alice");
        assert_eq!(clip("abcdef", 3), "abc");
        assert_eq!(clip("aé", 2), "a");
        assert_eq!(clip("", 2), "");
    }

    #[test]
    fn actors() {
        assert_eq!(agent_actor(&"db01".into()), "agent:db01");
        assert_eq!(admin_actor(Some("root")), "admin-cli:root");
        assert_eq!(admin_actor(Some(" ")), "admin-cli");
        assert_eq!(admin_actor(None), "admin-cli");
    }
}
