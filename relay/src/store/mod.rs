//! Persistent state behind one trait, so that a PostgreSQL backend can be added later
//! without touching callers.
//!
//! [`Store`] holds organisations, users, join tokens, agents and sessions. The embedded
//! default is [`sqlite::SqliteStore`] (one file in the data directory, WAL mode, so the
//! admin commands can write while the relay runs).
//!
//! The store checks integrity (unique names, existing organisations, single-use tokens);
//! it does not decide who may do what: that is [`crate::broker`]'s and
//! [`crate::admin`]'s business.

pub mod sqlite;

use assist_proto::caps::{ConsentMode, Role};
use assist_proto::ids::{AgentName, OrgName, SessionId, UserName};
use assist_proto::msg::SessionInfo;

pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {name:?} already exists")]
    Exists { what: &'static str, name: String },
    #[error("{what} {name:?} not found")]
    NotFound { what: &'static str, name: String },
    #[error("join token {0}")]
    TokenRejected(TokenProblem),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Why a join token was refused. Deliberately coarse towards the presenter: unknown and
/// reused tokens are told apart only in the relay's log and audit, not to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    Unknown,
    AlreadyUsed,
    Expired,
}

impl std::fmt::Display for TokenProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenProblem::Unknown => "is not known",
            TokenProblem::AlreadyUsed => "was already used",
            TokenProblem::Expired => "has expired",
        })
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgRow {
    pub name: OrgName,
    /// Vendor organisations whose engineers may ask for sessions on this org's agents.
    pub supported_by: Vec<OrgName>,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    pub name: UserName,
    pub org: OrgName,
    pub role: Role,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRow {
    pub name: AgentName,
    pub org: OrgName,
    /// SHA-256 of the agent certificate's DER, lowercase hex.
    pub cert_fingerprint: String,
    pub enrolled_at: i64,
    pub revoked_at: Option<i64>,
    pub last_seen: Option<i64>,
    /// Consent mode announced at the last connect.
    pub consent: Option<ConsentMode>,
    /// Whether the agent is connected to a relay now (as last recorded by a relay).
    pub online: bool,
}

/// All timestamps are Unix milliseconds; `now` is always passed in.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Adds an organisation. Every org in `supported_by` must exist.
    async fn add_org(&self, name: &OrgName, supported_by: &[OrgName], now: i64) -> Result<()>;
    async fn org(&self, name: &OrgName) -> Result<Option<OrgRow>>;
    async fn list_orgs(&self) -> Result<Vec<OrgRow>>;

    /// Adds a user. The org must exist; the name must be new.
    async fn add_user(&self, user: &UserRow) -> Result<()>;
    async fn user(&self, name: &UserName) -> Result<Option<UserRow>>;
    async fn list_users(&self) -> Result<Vec<UserRow>>;
    async fn set_password(&self, name: &UserName, password_hash: &str) -> Result<()>;

    /// Stores a join token by its hash (the token itself is never stored).
    async fn add_join_token(&self, token_hash: &str, org: &OrgName, expires_at: i64, now: i64) -> Result<()>;

    /// In one transaction: checks the token (exists, unused, unexpired at `now`), marks it
    /// used, and inserts the agent in the token's organisation (`agent.org` is ignored and
    /// replaced). Returns the stored row. On any error nothing changes.
    async fn enroll_agent(&self, token_hash: &str, agent: &AgentRow, now: i64) -> Result<AgentRow>;
    async fn agent(&self, name: &AgentName) -> Result<Option<AgentRow>>;
    async fn agent_by_fingerprint(&self, fingerprint_hex: &str) -> Result<Option<AgentRow>>;
    async fn list_agents(&self) -> Result<Vec<AgentRow>>;
    /// Marks an agent revoked (idempotent: revoking twice keeps the first time).
    async fn revoke_agent(&self, name: &AgentName, now: i64) -> Result<()>;
    /// Records that an agent connected with a consent mode: online, last seen now.
    async fn agent_connected(&self, name: &AgentName, consent: ConsentMode, now: i64) -> Result<()>;
    /// Records that an agent's connection ended: offline, last seen now.
    async fn agent_disconnected(&self, name: &AgentName, now: i64) -> Result<()>;

    async fn insert_session(&self, session: &SessionInfo) -> Result<()>;
    /// Overwrites the mutable fields (state, approver, decided/started/ended, end reason).
    async fn update_session(&self, session: &SessionInfo) -> Result<()>;
    async fn session(&self, id: &SessionId) -> Result<Option<SessionInfo>>;
    /// Newest first, at most `limit`.
    async fn list_sessions(&self, limit: u32) -> Result<Vec<SessionInfo>>;
    /// Closes every session not in a final state with `reason` (used at start-up after a
    /// crash, so nothing stays half-open) and marks every agent offline. Requested ones
    /// become expired. Returns how many sessions it closed.
    async fn close_dangling_sessions(&self, reason: &str, now: i64) -> Result<u64>;
}
