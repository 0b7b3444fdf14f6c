//! [`ConsoleState`]: everything the console needs from the relay, and the types that cross
//! that seam. The relay implements it (`relay/src/console_state.rs`) on its broker and
//! store; every decision (who may answer what, whether a password or a code is right,
//! throttling, auditing) is made there, never here.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A signed-in user as the console sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    pub user: String,
    pub org: String,
    /// `engineer`, `approver`, `auditor` or `admin`.
    pub role: String,
    /// Whether the user has a confirmed authenticator.
    pub totp: bool,
}

/// How far a console session has got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Password accepted; the user must type a code from their authenticator.
    Code,
    /// Password accepted; the user's role needs a second factor they do not have yet.
    Enrol,
    /// Signed in.
    Full,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Code => "code",
            Stage::Enrol => "enrol",
            Stage::Full => "full",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "code" => Stage::Code,
            "enrol" => Stage::Enrol,
            "full" => Stage::Full,
            _ => return None,
        })
    }
}

/// A console session row (the cookie names it; only its hash is stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSession {
    pub user: String,
    pub stage: Stage,
    /// Unix milliseconds.
    pub created_at: i64,
    pub last_seen: i64,
}

/// An authenticator being set up: the secret (base32, for typing in) and the
/// `otpauth://` URI the QR code carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Enrolment {
    pub secret: String,
    pub uri: String,
}

/// A pending request as the approver's page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestView {
    pub id: String,
    pub engineer: String,
    pub engineer_org: String,
    pub agent: String,
    pub ticket: String,
    pub priority: String,
    /// Why: the request's reason, or the escalation's.
    pub reason: String,
    /// For an escalation: what is added.
    pub capabilities: Vec<String>,
    /// How long the engineer asked for, in milliseconds.
    pub duration_ms: u64,
    /// When the request is denied if nobody answers (Unix milliseconds).
    pub deadline: i64,
    pub escalation: bool,
}

/// An approver's answer to a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveForm {
    /// Only these capabilities (all asked when absent).
    pub capabilities: Option<Vec<String>>,
    /// Shorter than asked, in minutes.
    pub minutes: Option<u64>,
    pub note: Option<String>,
}

/// A session as the live-sessions and history pages show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionView {
    pub id: String,
    pub engineer: String,
    pub engineer_org: String,
    pub agent: String,
    pub agent_org: String,
    pub ticket: String,
    pub priority: String,
    pub reason: String,
    /// `requested`, `approved`, `active`, `denied`, `expired` or `closed`.
    pub state: String,
    /// What the engineer asked for.
    pub capabilities: Vec<String>,
    /// What the current (or last) grant allows; empty before approval.
    pub granted: Vec<String>,
    /// When the grant runs out (Unix milliseconds).
    pub grant_expires_at: Option<i64>,
    /// Who answered: an approver, `prompt@AGENT` or `window:ID`.
    pub approver: Option<String>,
    /// The approver's note on an approval, or their reason for a denial.
    pub note: Option<String>,
    pub requested_at: i64,
    /// When an unanswered request is denied (Unix milliseconds).
    pub consent_deadline: i64,
    pub decided_at: Option<i64>,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    /// For a request still waiting: whom it waits for ("an approver of acme", "the
    /// customer at db-1 (prompt on the agent)"); shown on the engineer's own page.
    pub waiting_for: Option<String>,
}

/// An agent the user may reach, for the engineer's shell form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AgentView {
    pub name: String,
    pub org: String,
    pub online: bool,
    /// `prompt`, `approver` or `window`, as the agent last announced.
    pub consent: Option<String>,
}

/// One audit event of a session, for its timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventView {
    pub seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

/// One revision of a session's grant: what it allowed, until when, and why it changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GrantRevision {
    pub revision: u64,
    pub at: i64,
    /// The audit action that made it (`session.approved`, `session.escalated`, ...).
    pub action: String,
    pub by: String,
    pub granted: Vec<String>,
    pub expires_at: Option<i64>,
    pub note: Option<String>,
}

/// A file transfer as the agent reported it, with both sides' SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransferView {
    pub at: i64,
    pub path: String,
    /// `upload` or `download`, as the relay recorded it.
    pub direction: String,
    pub size: u64,
    pub sha256_agent: String,
    pub sha256_engineer: Option<String>,
    /// Both digests are equal.
    pub matched: bool,
    pub ok: bool,
}

/// What the relay's recording verifier says of a session's recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordingCheck {
    /// `valid`, `truncated`, `tampered`, `missing` (no recording stored) or `off` (the
    /// relay records nothing).
    pub result: String,
    /// The verifier's sentence: chunks, seal, and where a problem is.
    pub detail: String,
}

/// Everything the auditor's session page shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SessionDetail {
    pub session: SessionView,
    pub events: Vec<EventView>,
    pub grants: Vec<GrantRevision>,
    pub transfers: Vec<TransferView>,
    pub recording: RecordingCheck,
}

/// A shell asked for in the browser: the same fields as `assist shell`, and the
/// terminal's size for its PTY.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellRequest {
    pub agent: String,
    pub ticket: String,
    /// `p0` … `p3`.
    pub priority: String,
    pub reason: String,
    /// Selectors as `assist shell --capability` takes them; must include `shell`.
    pub capabilities: Vec<String>,
    pub minutes: u64,
    pub cols: u16,
    pub rows: u16,
}

/// A desktop asked for in the browser: the fields of `assist desktop`. The page asks for
/// `desktop.view`, and `desktop.control` too with `control`; an approver may grant the view
/// alone.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesktopRequest {
    pub agent: String,
    pub ticket: String,
    /// `p0` … `p3`.
    pub priority: String,
    pub reason: String,
    pub control: bool,
    /// The customer's clipboard too (`clipboard`, its own channel beside the desktop's).
    #[serde(default)]
    pub clipboard: bool,
    pub minutes: u64,
}

/// From the engineer's page to the relay, over the shell's or the desktop's WebSocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShellUp {
    /// The request (once, first).
    Request(ShellRequest),
    /// A desktop's request (once, first), instead of a shell's.
    Desktop(DesktopRequest),
    /// The terminal's new size.
    Resize { cols: u16, rows: u16 },
    /// Keystrokes and pasted text, for the shell's input; for a desktop, one desktop
    /// message (input, keyframe request) per WebSocket message.
    Input(bytes::Bytes),
    /// Instead of a request: pick up the engineer's live session `session` whose page went
    /// away (no second consent), with a terminal of this size.
    Reattach { session: String, cols: u16, rows: u16 },
    /// The engineer leaves on purpose (the page's "Disconnect", signing out): the session
    /// ends now instead of waiting to be picked up.
    Leave,
}

/// From the relay to a page, over a shell's or a watcher's WebSocket.
#[derive(Clone, Debug, PartialEq)]
pub enum Down {
    /// What happened, for the page to show (`{"type": "requested" | "approved" | "open" |
    /// "denied" | "grant" | "closed" | "ended" | "watching" | "error", ...}`).
    Event(serde_json::Value),
    /// Terminal output; for a desktop, one whole desktop message.
    Output(bytes::Bytes),
}

/// A browser's shell, as the relay hands it to the console: the console passes what the
/// page sends to `up` and what comes out of `down` to the page. Dropping `up` is the
/// engineer leaving (closing the tab); `down` ending means the relay is done.
pub struct ShellLink {
    pub up: tokio::sync::mpsc::Sender<ShellUp>,
    pub down: tokio::sync::mpsc::Receiver<Down>,
}

/// What a replay page asks of the relay, as it sends it
/// (`{"type": "play" | "pause" | "seek" | "speed", ...}`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ReplayControl {
    Play {},
    Pause {},
    /// To this many milliseconds of recording time.
    Seek {
        ms: u64,
    },
    /// This many times real time.
    Speed {
        speed: f64,
    },
}

/// A recorded desktop channel being replayed: the console passes the page's controls to
/// `up` and what comes out of `down` (events as text, one whole desktop message per
/// binary message) to the page. Dropping `up` ends the replay.
pub struct ReplayLink {
    pub up: tokio::sync::mpsc::Sender<ReplayControl>,
    pub down: tokio::sync::mpsc::Receiver<Down>,
}

/// A watcher's view of a live session: output only. There is no way up: a watcher's
/// keystrokes have nowhere to go. Dropping it is leaving.
pub struct WatchLink {
    pub down: tokio::sync::mpsc::Receiver<Down>,
}

/// What the console needs from the relay.
#[async_trait::async_trait]
pub trait ConsoleState:
    crate::admin_state::AdminState
    + crate::auditlog::AuditState
    + crate::files::FilesState
    + crate::requests::LiveChanges
    + Send
    + Sync
    + 'static
{
    /// Agents connected now.
    fn online_agents(&self) -> usize;
    /// Sessions not yet over (requested, approved or active).
    fn live_sessions(&self) -> usize;
    /// Now, in Unix milliseconds (the relay's clock; tests move it).
    fn now_ms(&self) -> i64;
    /// The sign-in rules.
    fn auth(&self) -> &AuthConfig;

    /// Checks a password (throttled per user and address, audited); the error never says
    /// which of user or password was wrong.
    async fn check_password(&self, user: &str, password: &str, source: IpAddr) -> Result<Account, ApiError>;
    /// The user if they exist and are not disabled.
    async fn account(&self, user: &str) -> Result<Option<Account>, ApiError>;

    /// Starts a console session at `stage`; returns the cookie value (the row keeps only
    /// its hash).
    async fn open_session(&self, user: &str, stage: Stage, source: IpAddr) -> Result<String, ApiError>;
    /// The session a cookie value names.
    async fn session(&self, cookie: &str) -> Result<Option<WebSession>, ApiError>;
    /// Notes activity on a session now.
    async fn touch_session(&self, cookie: &str) -> Result<(), ApiError>;
    /// Ends a session (`why`: `logout`, `idle`, `expired`, `disabled`, `upgraded`).
    async fn end_session(&self, cookie: &str, why: &str) -> Result<(), ApiError>;

    /// Starts (or restarts) setting up an authenticator; a confirmed one is kept until the
    /// new one is confirmed.
    async fn begin_enrolment(&self, user: &str) -> Result<Enrolment, ApiError>;
    /// The authenticator being set up, if any.
    async fn pending_enrolment(&self, user: &str) -> Result<Option<Enrolment>, ApiError>;
    /// Confirms the authenticator being set up with a code from it; returns fresh recovery
    /// codes (shown once; stored hashed).
    async fn confirm_enrolment(
        &self,
        user: &str,
        code: &str,
        source: IpAddr,
    ) -> Result<Vec<String>, ApiError>;
    /// Checks a code from the user's authenticator (each accepted time step once) or an
    /// unused recovery code; throttled and audited.
    async fn verify_code(&self, user: &str, code: &str, source: IpAddr) -> Result<(), ApiError>;

    /// Pending requests the user may answer, most urgent first.
    async fn requests(&self, user: &Account) -> Result<Vec<RequestView>, ApiError>;
    /// Approves a request; returns the broker's message.
    async fn approve(&self, user: &Account, id: &str, form: ApproveForm) -> Result<String, ApiError>;
    /// Denies a request with a reason.
    async fn deny(&self, user: &Account, id: &str, reason: &str) -> Result<String, ApiError>;

    /// Granted sessions the user may narrow and end, the grant soonest to run out first.
    async fn live(&self, user: &Account) -> Result<Vec<SessionView>, ApiError>;
    /// Decided requests the user may see (approved, denied or expired), newest first.
    async fn history(&self, user: &Account) -> Result<Vec<SessionView>, ApiError>;
    /// Takes capabilities (selectors, as `assist revoke` takes them) away from a live
    /// session; returns the broker's message.
    async fn revoke(
        &self,
        user: &Account,
        id: &str,
        capabilities: Vec<String>,
        reason: Option<String>,
    ) -> Result<String, ApiError>;
    /// Ends a live session with a reason; returns the broker's message.
    async fn end(&self, user: &Account, id: &str, reason: &str) -> Result<String, ApiError>;

    /// The user's own sessions and requests (an engineer's), newest first, with the
    /// decision's note and, for a request still waiting, whom it waits for.
    async fn my_sessions(&self, user: &Account) -> Result<Vec<SessionView>, ApiError>;
    /// Agents the user may reach (as `assist agents`), online ones first.
    async fn agents(&self, user: &Account) -> Result<Vec<AgentView>, ApiError>;

    /// Opens a shell link for the user (an engineer): the relay takes the request from it,
    /// asks for consent, and once approved opens the shell, exactly as for `assist shell`.
    async fn open_shell(&self, user: &Account, source: IpAddr) -> Result<ShellLink, ApiError>;
    /// Starts watching live session `id` read-only (approvers of the agent's organisation
    /// and admins); [`ApiError::NotFound`] for a session the user may not watch.
    async fn watch(&self, user: &Account, id: &str) -> Result<WatchLink, ApiError>;

    /// Every session the user may see (scoped as `assist sessions`), newest first.
    async fn sessions(&self, user: &Account) -> Result<Vec<SessionView>, ApiError>;
    /// One session with its audit timeline, grant revisions, transfers and the
    /// recording's verification; [`ApiError::NotFound`] when the user may not see it.
    async fn session_detail(&self, user: &Account, id: &str) -> Result<SessionDetail, ApiError>;
    /// The session's evidence bundle (a tar archive), under the same rule as
    /// [`ConsoleState::session_detail`].
    async fn evidence_bundle(&self, user: &Account, id: &str) -> Result<Vec<u8>, ApiError>;
    /// The session's terminal output as asciicast v2 (with the recording's markers), under
    /// the same rule; [`ApiError::NotFound`] when nothing was recorded.
    async fn asciicast(&self, user: &Account, id: &str) -> Result<String, ApiError>;
}

/// Sign-in rules. Defaults: a second factor for approvers and admins, sessions end after
/// 30 minutes without a request and 8 hours after sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthConfig {
    /// Roles that must sign in with a second factor.
    pub require_mfa: Vec<String>,
    /// A session unused this long (ms) ends.
    pub idle_ms: i64,
    /// A session ends this long (ms) after sign-in, used or not.
    pub absolute_ms: i64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            require_mfa: vec!["approver".into(), "admin".into()],
            idle_ms: 30 * 60 * 1000,
            absolute_ms: 8 * 3600 * 1000,
        }
    }
}
