//! Messages, named by direction, for every stream of an assist connection.
//!
//! - Control stream (the first bidirectional stream a peer opens): engineers send
//!   [`EngineerToRelay`] and receive [`RelayToEngineer`]; agents send [`AgentToRelay`] and
//!   receive [`RelayToAgent`]. Every message is one frame ([`crate::frame`]).
//! - Channel streams: the engineer opens a bidirectional stream and sends a
//!   [`ChannelOpen`] frame; the relay checks it against the session and its grant, opens a
//!   stream to the agent with an [`AgentChannelOpen`] (the same request plus the signed
//!   grant), and the agent answers with a [`ChannelReply`] frame, which the relay passes on.
//!   After the reply the stream carries raw channel bytes in both directions.
//!
//! Timestamps are Unix milliseconds.

use crate::caps::{BadCapability, Capability, ConsentMode, Priority, Role};
use crate::consent::ConsentSource;
use crate::files::{BadPath, FileReport, FileRequest};
use crate::grant::SignedGrant;
use crate::ids::{AgentName, OrgName, SessionId, UserName};
use crate::session::{EndReason, SessionState};
use serde::{Deserialize, Serialize};

/// A channel request that is not well formed ([`ChannelKind::validate`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadChannel {
    #[error(transparent)]
    Path(#[from] BadPath),
    #[error(transparent)]
    Capability(#[from] BadCapability),
    #[error("name 1 to 32 paths to collect")]
    LogPathCount,
}

/// A session as shown to users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub id: SessionId,
    pub engineer: UserName,
    pub engineer_org: OrgName,
    pub agent: AgentName,
    pub agent_org: OrgName,
    pub ticket: String,
    pub priority: Priority,
    pub reason: String,
    pub capabilities: Vec<Capability>,
    pub state: SessionState,
    /// Who answered the request, as shown to people: an approver's name, `prompt@AGENT`
    /// for the agent's own prompt, or `window:ID` (the text of a
    /// [`ConsentSource`]; stored and shown as text, so old rows read as they were written).
    pub approver: Option<String>,
    pub requested_at: i64,
    /// When an unanswered request is denied.
    pub consent_deadline: i64,
    pub decided_at: Option<i64>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    /// How long the engineer asked for, in seconds.
    pub duration_secs: u64,
    /// What the current grant allows (may be narrower than `capabilities`); `None` before
    /// approval.
    pub granted: Option<Vec<Capability>>,
    pub grant_expires_at: Option<i64>,
    /// A pending request for more, during a live session.
    pub escalation: Option<Escalation>,
}

/// An engineer's request for more capabilities or time in a live session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub add: Vec<Capability>,
    /// A new grant duration from approval, in seconds (an extension), if asked.
    pub duration_secs: Option<u64>,
    pub reason: String,
    pub requested_at: i64,
    pub deadline: i64,
}

/// The current grant of a session, as shown to the engineer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantView {
    pub capabilities: Vec<Capability>,
    pub expires_at: i64,
    pub revision: u32,
    pub approver: ConsentSource,
    pub note: Option<String>,
}

/// An agent as shown to users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub name: AgentName,
    pub org: OrgName,
    pub online: bool,
    /// The consent mode the agent announced when it last connected.
    pub consent: Option<ConsentMode>,
    pub enrolled_at: i64,
    pub last_seen: Option<i64>,
    pub revoked: bool,
}

/// A terminal's size and type, as requested by the engineer for a PTY.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyRequest {
    pub cols: u16,
    pub rows: u16,
    pub term: String,
}

/// Why a request failed, for a caller to match on. The message says it to a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// No or bad credentials: log in again.
    Unauthenticated,
    /// Authenticated, but not allowed.
    Forbidden,
    NotFound,
    BadRequest,
    /// The thing is not in a state that allows this (for example, already answered).
    Conflict,
    /// Something went wrong inside the relay; the message does not say what.
    Internal,
    /// The password was right, and the user has an authenticator: log in again with a
    /// code from it (`Login.code`).
    CodeRequired,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EngineerToRelay {
    /// Exchanges a password (and, for users with an authenticator, a code from it or a
    /// recovery code) for a token. Needs no prior `Auth`.
    Login {
        user: String,
        password: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
    /// Must be the first message of any other conversation.
    Auth {
        token: String,
    },
    ListAgents,
    /// Pending requests the caller may answer.
    ListRequests,
    ListSessions,
    /// Tell this connection of live session `session`'s grant changes and end, as the
    /// command that requested it is told: a command working in it with `--session`
    /// (`assist forward`, `assist ssh-proxy`). Only the session's engineer.
    Follow {
        session: SessionId,
    },
    RequestSession {
        agent: AgentName,
        ticket: String,
        priority: Priority,
        reason: String,
        capabilities: Vec<Capability>,
        /// How long the grant should last, in seconds; the relay's default if absent.
        duration_secs: Option<u64>,
    },
    /// Approves a request (or a pending escalation) in full, or narrower: a subset of the
    /// capabilities, each possibly narrowed, and a shorter duration.
    Approve {
        session: SessionId,
        capabilities: Option<Vec<Capability>>,
        duration_secs: Option<u64>,
        note: Option<String>,
    },
    /// Asks for more capabilities, or more time, in a live session.
    Escalate {
        session: SessionId,
        add: Vec<Capability>,
        duration_secs: Option<u64>,
        reason: String,
    },
    /// Takes capabilities away from a live session. Selectors name a kind (`shell`,
    /// `files.read`) or one capability exactly (`files.read:/var/log`).
    Revoke {
        session: SessionId,
        capabilities: Vec<String>,
        reason: Option<String>,
    },
    Deny {
        session: SessionId,
        reason: String,
    },
    End {
        session: SessionId,
        reason: Option<String>,
    },
    /// The command that requested the session finished what it asked the session for
    /// (`ok`) or gave up, and ends it saying so. Only from the connection that requested it.
    Finish {
        session: SessionId,
        work: crate::session::Work,
        ok: bool,
    },
    /// The command that requested the session leaves it without ending it (its own
    /// capability was revoked or expired; the session keeps what else it holds, for other
    /// commands with `--session`). Only from the connection that requested the session.
    Detach {
        session: SessionId,
    },
    Resize {
        session: SessionId,
        cols: u16,
        rows: u16,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RelayToEngineer {
    LoggedIn {
        token: String,
        user: UserName,
        org: OrgName,
        role: Role,
        expires_at: i64,
    },
    Authenticated {
        user: UserName,
        org: OrgName,
        role: Role,
    },
    /// A list longer than one frame holds comes in parts, all but the last with `more`
    /// ([`crate::parts`]); a reader joins them before using the list.
    Agents {
        agents: Vec<AgentInfo>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    Sessions {
        sessions: Vec<SessionInfo>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    /// A command (approve, deny, end) took effect.
    Done {
        message: String,
    },
    /// The request is recorded and waits for consent from `waiting_for`.
    SessionRequested {
        session: SessionInfo,
        waiting_for: String,
    },
    SessionApproved {
        session: SessionInfo,
    },
    SessionDenied {
        by: Option<String>,
        reason: String,
    },
    SessionExpired {
        waited_ms: i64,
    },
    /// The escalation is recorded and waits for consent from `waiting_for`.
    EscalationRequested {
        session: SessionInfo,
        waiting_for: String,
    },
    /// The answer to an escalation (`approved` false: denied or expired).
    EscalationAnswered {
        session: SessionId,
        approved: bool,
        by: Option<String>,
        reason: Option<String>,
    },
    /// The session's grant changed (escalation, extension, revocation) or expired; channels
    /// it no longer covers have been closed.
    GrantChanged {
        session: SessionId,
        grant: GrantView,
        /// What happened, for people: "revoked shell by bob: ...", "grant expired", ...
        change: String,
        /// Whether the grant is still in force (false once expired or emptied).
        in_force: bool,
    },
    /// A diagnostic script this connection ran in a session that goes on (`assist exec
    /// --session`) exited, after its output stream finished.
    ScriptExited {
        session: SessionId,
        name: String,
        code: Option<i32>,
        signal: Option<String>,
    },
    /// A shell channel this connection opened with `report_exit` exited (after its output
    /// stream finished); `stream` is the channel's stream as this connection opened it. The
    /// session goes on.
    ChannelExited {
        session: SessionId,
        stream: u64,
        code: Option<i32>,
        signal: Option<String>,
    },
    /// Someone (an approver of the agent's organisation, or an admin) started or stopped
    /// watching the session live, read-only.
    Watching {
        session: SessionId,
        watcher: UserName,
        org: OrgName,
        watching: bool,
    },
    /// The session is over. `exit_code` is the remote command's, when it exited.
    SessionEnded {
        reason: EndReason,
    },
    Error {
        code: ErrorCode,
        message: String,
        /// Set when the session named is held by another relay of the cluster: the
        /// command (a channel, `Follow`, `Escalate`) goes there instead ([`HeldBy`]).
        /// Absent otherwise, and from older relays.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held_by: Option<HeldBy>,
    },
}

/// The relay of a cluster that holds a session (asks its consent, splices and records
/// it), where an engineer's own commands about that session go: a relay that does not
/// hold it refuses them naming this one, and the client reconnects there once, with the
/// same token and CA pin. Approvers' answers, revocations and ends need no such detour:
/// the relays carry them between themselves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldBy {
    /// The relay's name in the cluster (`--relay-name`).
    pub relay: String,
    /// Its QUIC address (`HOST:PORT`, as the relays registry advertises it to agents).
    pub address: String,
}

/// The first message on a connection without a client certificate: an agent's enrollment,
/// or a person's first request (`Login` or `Auth`). Parsed once, by its `type`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Opening {
    /// As [`AgentToRelay::Enroll`].
    Enroll { token: String, name: AgentName, csr_pem: String },
    /// Any other type is a person's request.
    #[serde(untagged)]
    Engineer(EngineerToRelay),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentToRelay {
    /// On a connection without a client certificate: exchanges a join token and a CSR for
    /// a certificate. The private key never leaves the agent.
    Enroll {
        token: String,
        name: AgentName,
        csr_pem: String,
    },
    /// First message on a certificate-authenticated connection.
    Hello {
        consent: ConsentMode,
        version: String,
        /// The names in the agent's allowlist of diagnostic scripts (never their programs
        /// or arguments), so that the relay refuses a request for another one before
        /// anyone is asked. Absent from agents that do not say (the agent checks anyway).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scripts: Option<Vec<String>>,
        /// The X display whose desktop the agent serves (`:0`), if it can serve one:
        /// absent when it has no display, so the relay refuses a desktop request before
        /// anyone is asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        desktop: Option<String>,
        /// Whether the agent keeps a connection to every relay of a cluster, and so
        /// understands `RelayToAgent::Cluster` (agents before clusters existed do not say,
        /// and are never sent it).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        cluster: bool,
    },
    ConsentAnswer {
        session: SessionId,
        approve: bool,
        reason: Option<String>,
        /// A subset of what was asked (the prompt's partial grant); all of it if absent.
        capabilities: Option<Vec<Capability>>,
    },
    /// The customer pressed the kill key: end this session (or all of them) now.
    Kill {
        session: Option<SessionId>,
    },
    /// The session's shell or command ended (after its output stream was finished).
    ChannelExited {
        session: SessionId,
        code: Option<i32>,
        signal: Option<String>,
        /// The script's name when the channel ran a diagnostic script (`exec`), not a shell.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec: Option<String>,
        /// The channel's stream (as the relay opened it), so the exit reaches the command
        /// that opened that channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<u64>,
    },
    /// The agent's own account of a channel's bytes, signed with its certificate's key, so
    /// a recording can be checked against what the customer's side saw. Sent before
    /// `ChannelExited`.
    Countersign {
        session: SessionId,
        digests: Vec<StreamDigest>,
        signature: String,
    },
    /// A file transfer ended (completed or not): the agent's account, for the audit log.
    FileTransferred {
        report: FileReport,
    },
    /// A rename, remove or mkdir was done: the agent's account, for the audit log.
    FileChanged {
        change: crate::files::FileChange,
    },
    Ping,
}

/// What a relay of a cluster tells an agent in its `Welcome`: its own name, and the
/// relays running now with the QUIC address agents use for each (itself included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRelays {
    pub relay: String,
    pub relays: Vec<RelayAddress>,
}

/// One relay of a cluster, as agents reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayAddress {
    pub name: String,
    /// `HOST:PORT` (UDP).
    pub address: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RelayToAgent {
    Enrolled {
        agent: AgentName,
        org: OrgName,
        cert_pem: String,
        ca_pem: String,
        /// The relay's Ed25519 public key (hex) that signs grants.
        grant_key: String,
    },
    Welcome {
        agent: AgentName,
        org: OrgName,
        /// From a relay of a cluster: its name and the relays the agent should each keep a
        /// connection to. Absent from a single relay (and from older relays).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster: Option<ClusterRelays>,
    },
    /// Asks the customer (consent mode `prompt`) to answer before the deadline.
    ConsentRequest {
        session: Box<SessionInfo>,
    },
    /// The request was answered elsewhere or expired: stop asking.
    ConsentWithdrawn {
        session: SessionId,
        reason: String,
    },
    /// A session was approved; the agent keeps the grant as its own record.
    Granted {
        grant: SignedGrant,
    },
    Resize {
        session: SessionId,
        cols: u16,
        rows: u16,
    },
    /// Stop everything of this session now.
    EndSession {
        session: SessionId,
        reason: EndReason,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Pong,
    /// From a relay of a cluster, when the relays running change: the agent keeps a
    /// connection to each (agents before clusters existed never receive it).
    Cluster {
        cluster: ClusterRelays,
    },
}

/// Bytes and SHA-256 of one direction of one stream, as one side saw them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamDigest {
    /// QUIC stream id on the agent's connection (the same on both ends).
    pub stream: u64,
    /// `in`: relay → agent (the engineer's input); `out`: agent → relay.
    pub direction: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The exact bytes an agent signs for a [`AgentToRelay::Countersign`].
pub fn countersign_message(session: &SessionId, agent: &AgentName, digests: &[StreamDigest]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Signed<'a> {
        purpose: &'static str,
        session: &'a SessionId,
        agent: &'a AgentName,
        digests: &'a [StreamDigest],
    }
    serde_json::to_vec(&Signed { purpose: "assist agent countersignature v1", session, agent, digests })
        .expect("serialises")
}

/// What a channel stream carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChannelKind {
    /// A shell (with `pty`) or a command (with `command`), or both: a command in a PTY.
    Shell { pty: Option<PtyRequest>, command: Option<Vec<String>> },
    /// Agent → engineer: a command's standard error (unidirectional stream).
    Stderr,
    /// Agent → relay: the standard error of the command on the channel whose stream is
    /// `stream` (as the relay opened it); the relay passes it on as [`ChannelKind::Stderr`]
    /// to the connection that opened that channel, or, for a channel opened with
    /// `report_exit`, as `StderrOf` the stream as that connection opened it.
    StderrOf { stream: u64 },
    /// A file listing, read or write ([`crate::files`]).
    Files { request: FileRequest },
    /// One named diagnostic script from the agent's allowlist; its output streams back.
    Exec { name: String },
    /// A compressed archive (tar + gzip) of the files under `paths` (each inside a
    /// `files.read` root), modified at or after `since` (Unix ms) if given, with a manifest.
    Logs { paths: Vec<String>, since: Option<i64> },
    /// One forwarded TCP connection to `target` (`HOST:PORT`, [`crate::forward::Target`]),
    /// which the agent connects to; the stream then carries the connection's bytes.
    Forward { target: String },
    /// Engineer → relay only: watch the session's terminal output live, read-only (an
    /// approver of the agent's organisation or an admin: `assist watch`). The relay serves
    /// it itself; nothing is opened on the agent, and the watcher's direction is stopped.
    Watch,
    /// Agent ⇄ engineer: the customer's screen as [`crate::desktop`] messages (frames,
    /// cursor, stream info) one way, input and keyframe requests the other. `control` asks
    /// for input (`desktop.control`); without it the channel only views (`desktop.view`).
    Desktop { control: bool },
    /// Agent ⇄ engineer: the customer's `CLIPBOARD` as text, in [`crate::desktop`]'s
    /// clipboard messages only (each at most [`crate::desktop::MAX_CLIPBOARD`] bytes): the
    /// engineer's text set as the customer's clipboard, and the customer's text sent up each
    /// time it changes after the channel opened (`clipboard`).
    Clipboard,
}

impl ChannelKind {
    /// The capability a grant must hold for this channel: for files, the exact paths.
    pub fn required_capability(&self) -> Capability {
        match self {
            ChannelKind::Shell { .. }
            | ChannelKind::Stderr
            | ChannelKind::StderrOf { .. }
            | ChannelKind::Watch => Capability::Shell,
            ChannelKind::Files { request } => request.required_capability(),
            ChannelKind::Exec { name } => Capability::Exec { scripts: vec![name.clone()] },
            ChannelKind::Logs { paths, .. } => Capability::FilesRead {
                roots: paths
                    .iter()
                    .map(|p| p.trim_end_matches('/'))
                    .map(|p| if p.is_empty() { "/" } else { p }.to_owned())
                    .collect(),
            },
            ChannelKind::Forward { target } => Capability::Forward { target: target.clone() },
            ChannelKind::Desktop { control: false } => Capability::DesktopView,
            ChannelKind::Desktop { control: true } => Capability::DesktopControl,
            ChannelKind::Clipboard => Capability::Clipboard,
        }
    }

    /// Checks what the grant check cannot: paths absolute and normalised, names plain.
    pub fn validate(&self) -> Result<(), BadChannel> {
        match self {
            ChannelKind::Files { request } => Ok(request.validate()?),
            ChannelKind::Exec { name } => Ok(Capability::Exec { scripts: vec![name.clone()] }.validate()?),
            ChannelKind::Logs { paths, .. } => {
                if paths.is_empty() || paths.len() > 32 {
                    return Err(BadChannel::LogPathCount);
                }
                Ok(paths.iter().try_for_each(|p| crate::files::check_path(p))?)
            }
            ChannelKind::Forward { target } => Ok(Capability::Forward { target: target.clone() }.validate()?),
            _ => Ok(()),
        }
    }

    /// The kind's name in recordings and logs: `shell`, `stderr`, `files`, `exec`, `logs`,
    /// `forward`, `watch`, `desktop`, `clipboard`.
    pub fn name(&self) -> &'static str {
        match self {
            ChannelKind::Shell { .. } => "shell",
            ChannelKind::Stderr | ChannelKind::StderrOf { .. } => "stderr",
            ChannelKind::Files { .. } => "files",
            ChannelKind::Exec { .. } => "exec",
            ChannelKind::Logs { .. } => "logs",
            ChannelKind::Forward { .. } => "forward",
            ChannelKind::Watch => "watch",
            ChannelKind::Desktop { .. } => "desktop",
            ChannelKind::Clipboard => "clipboard",
        }
    }
}

/// First frame of a channel stream from the engineer (and of a stderr stream from the
/// agent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOpen {
    pub session: SessionId,
    /// For a shell channel: its exit goes to the connection that opened it, as
    /// [`RelayToEngineer::ChannelExited`] (and its stderr as [`ChannelKind::StderrOf`] this
    /// stream), instead of ending the session. `assist ssh-proxy` asks it for every SSH
    /// channel, so one SSH connection runs many commands (VS Code, `ControlMaster`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub report_exit: bool,
    pub channel: ChannelKind,
}

/// First frame of a channel stream from the relay to the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentChannelOpen {
    pub open: ChannelOpen,
    pub grant: SignedGrant,
}

/// First frame back on a channel stream: whether the channel runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelReply {
    Accepted,
    Refused {
        reason: String,
        /// Set when the session is held by another relay of the cluster: open the
        /// channel there ([`HeldBy`]). Absent otherwise, and from older relays.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        held_by: Option<HeldBy>,
    },
}

impl ChannelReply {
    /// A refusal for `reason`, with nowhere else to go.
    pub fn refused(reason: impl Into<String>) -> Self {
        ChannelReply::Refused { reason: reason.into(), held_by: None }
    }
}

impl EngineerToRelay {
    /// Checks the free text of a request (tickets, reasons, notes) against
    /// [`crate::text`]'s rules. The relay refuses what fails; the CLI checks first, so a
    /// person hears it before anything is sent.
    pub fn check_text(&self) -> Result<(), crate::text::TextError> {
        use crate::text::{MAX_REASON_CHARS, check_chars, check_reason, check_ticket};
        match self {
            Self::RequestSession { ticket, reason, .. } => {
                check_ticket(ticket)?;
                check_reason("reason", reason)
            }
            Self::Escalate { reason, .. } => check_reason("reason", reason),
            Self::Deny { reason, .. } => check_reason("deny reason", reason),
            Self::Approve { note: Some(note), .. } => check_chars("note", note, MAX_REASON_CHARS),
            Self::Revoke { capabilities, reason, .. } => {
                for selector in capabilities {
                    check_chars("capability selector", selector, 1100)?;
                }
                reason.as_deref().map_or(Ok(()), |r| check_chars("reason", r, MAX_REASON_CHARS))
            }
            Self::End { reason: Some(reason), .. } => check_chars("reason", reason, MAX_REASON_CHARS),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
