//! Persistent state behind one trait, on SQLite or PostgreSQL.
//!
//! [`Store`] holds organisations, users, join tokens, agents, sessions, the console's
//! sign-in rows and the audit log (every change is stored with its [`AuditEvent`], in one
//! transaction). [`open`] picks the backend from a URL: the embedded default is
//! [`sqlite::SqliteStore`] (one file in the data directory, WAL mode, so the admin
//! commands can write while the relay runs); [`postgres::PgStore`] lets several relays
//! share one state and one audit chain. Both are one type, [`sqlstore::SqlStore`], over
//! the same SQL text (`store/sql/`, compiled once per backend); callers see only
//! `dyn Store`.
//!
//! The store checks integrity (unique names, existing organisations, single-use tokens);
//! it does not decide who may do what: that is [`crate::broker`]'s and
//! [`crate::admin`]'s business.
//!
//! It sits at the bottom of the relay: it imports nothing from the relay's other modules
//! except the audit event types of [`crate::audit`] (which it stores with every change).
//! The rows it keeps for other features (webhooks: [`webhooks`]) are defined here, and
//! those features use them from here.

pub mod accounts;
pub mod console;
pub mod credentials;
pub mod postgres;
pub mod relays;
pub mod sealed;
pub mod sqlite;
pub mod sqlstore;
pub mod webhooks;

use crate::audit::{AuditEvent, AuditFilter, AuditRecord};
use assist_proto::caps::{Capability, ConsentMode, Role};
use assist_proto::ids::{AgentName, OrgName, SessionId, UserName};
use assist_proto::msg::SessionInfo;
use webhooks::{AttemptRecord, DeliveryRow, DueDelivery, NewDelivery, WebhookRow, WebhookScan};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;
use std::path::Path;
use std::sync::Arc;

/// The database file in a data directory, when no URL names another.
pub const DEFAULT_FILE: &str = "assist.db";

/// Opens the store `url` names, bringing its schema up to date: `postgres://…` (or
/// `postgresql://…`), `sqlite://PATH`, or `None` for `data_dir`'s [`DEFAULT_FILE`].
/// TOTP secrets are sealed with `secrets` when given, and any stored in clear are sealed
/// now.
pub async fn open(
    url: Option<&str>,
    data_dir: &Path,
    secrets: Option<sealed::SecretsKey>,
) -> Result<Arc<dyn Store>> {
    open_for(url, data_dir, secrets, relays::DEFAULT_RELAY).await
}

/// [`open`], writing for the relay named `relay` ([`relays`]: its sessions are its own).
pub async fn open_for(
    url: Option<&str>,
    data_dir: &Path,
    secrets: Option<sealed::SecretsKey>,
    relay: &str,
) -> Result<Arc<dyn Store>> {
    match url {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            with_key(PgStore::open(u).await?.with_relay_name(relay), secrets).await
        }
        Some(u) => match u.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => {
                with_key(SqliteStore::open(Path::new(path)).await?.with_relay_name(relay), secrets).await
            }
            _ => Err(StoreError::Url(u.to_owned())),
        },
        None => {
            with_key(SqliteStore::open(&data_dir.join(DEFAULT_FILE)).await?.with_relay_name(relay), secrets)
                .await
        }
    }
}

async fn with_key<DB: sqlx::Database>(
    store: sqlstore::SqlStore<DB>,
    secrets: Option<sealed::SecretsKey>,
) -> Result<Arc<dyn Store>>
where
    sqlstore::SqlStore<DB>: Store,
{
    let Some(key) = secrets else { return Ok(Arc::new(store)) };
    let store = store.with_secrets_key(key);
    let sealed = console::ConsoleRows::seal_clear_totp(&store).await?;
    if sealed > 0 {
        tracing::info!("sealed {sealed} TOTP secrets that were stored in clear");
    }
    Ok(Arc::new(store))
}

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
    #[error(transparent)]
    Sealed(#[from] sealed::SealError),
    #[error("database {0:?}: expected postgres://…, postgresql://… or sqlite://PATH")]
    Url(String),
}

impl StoreError {
    /// Whether the database could not be reached (or answered too late), rather than
    /// refusing or failing the query itself: worth trying again, or through another relay.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)) => true,
            // SQLSTATE classes 08 (connection exception), 28 (invalid authorization: the
            // relay's role may not log in) and 57 (operator intervention: a terminated
            // connection, a server shutting down).
            StoreError::Db(sqlx::Error::Database(d)) => {
                d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("28") || c.starts_with("57"))
            }
            _ => false,
        }
    }
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
    /// Whether the agent is connected to a relay now: some relay that is neither stopped
    /// nor declared lost holds a connection of it (`relays` is not empty).
    pub online: bool,
    /// The relays it is connected to, by name ([`relays::DEFAULT_RELAY`] for a single
    /// relay). A relay killed a moment ago stays here until it is declared lost.
    pub relays: Vec<String>,
}

/// A pre-approved maintenance window of an organisation (for agents in `window` mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowRow {
    pub id: String,
    pub org: OrgName,
    /// `None`: every agent of the organisation.
    pub agent: Option<AgentName>,
    /// Cron expression (UTC) of each window's start.
    pub schedule: String,
    pub duration_secs: u64,
    /// What a request may be granted inside the window.
    pub capabilities: Vec<Capability>,
    /// Engineers allowed to use it.
    pub engineers: Vec<UserName>,
    pub note: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub removed_at: Option<i64>,
}

/// An open session's row, the consent mode its agent last announced, and the relay that
/// holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenSession {
    pub info: SessionInfo,
    pub agent_consent: Option<ConsentMode>,
    /// The relay where it was requested, which holds it ([`relays::Relays::relay_name`]).
    pub relay: String,
}

/// An audit row that cannot be read back as an [`AuditRecord`] (a column of the wrong type,
/// text that is not UTF-8): for verification, a broken chain rather than an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadableEvent {
    pub seq: i64,
    pub reason: String,
}

/// All timestamps are Unix milliseconds; `now` is always passed in.
///
/// Every method that changes state takes the [`AuditEvent`] describing the change and
/// appends it in the same transaction: either both are stored or neither is. An event is
/// stored at `now` (or at the time the change carries: a user's `created_at`, a
/// session's `requested_at`). A method that changes nothing (an error, or an idempotent
/// repeat where documented) appends nothing.
#[async_trait::async_trait]
pub trait Store:
    credentials::Credentials + accounts::Accounts + console::ConsoleRows + relays::Relays + Send + Sync + 'static
{
    /// Closes the store's connections (SQLite then checkpoints its WAL into the file).
    async fn close(&self);

    /// Adds an organisation. Every org in `supported_by` must exist.
    async fn add_org(
        &self,
        name: &OrgName,
        supported_by: &[OrgName],
        now: i64,
        audit: &AuditEvent,
    ) -> Result<()>;
    async fn org(&self, name: &OrgName) -> Result<Option<OrgRow>>;
    async fn list_orgs(&self) -> Result<Vec<OrgRow>>;

    /// Adds a user. The org must exist; the name must be new. Audited at `user.created_at`.
    async fn add_user(&self, user: &UserRow, audit: &AuditEvent) -> Result<()>;
    async fn user(&self, name: &UserName) -> Result<Option<UserRow>>;
    async fn list_users(&self) -> Result<Vec<UserRow>>;
    async fn set_password(
        &self,
        name: &UserName,
        password_hash: &str,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<()>;

    /// Stores a join token by its hash (the token itself is never stored).
    async fn add_join_token(
        &self,
        token_hash: &str,
        org: &OrgName,
        expires_at: i64,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<()>;

    /// In one transaction: checks the token (exists, unused, unexpired at `now`), marks it
    /// used, and inserts the agent in the token's organisation (or, if the name is that of a
    /// revoked agent, replaces it, audited as `agent.reenrolled`; `agent.org` is ignored and
    /// replaced, and so is `audit.org`). Returns the stored row. On any error nothing
    /// changes.
    async fn enroll_agent(
        &self,
        token_hash: &str,
        agent: &AgentRow,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<AgentRow>;
    async fn agent(&self, name: &AgentName) -> Result<Option<AgentRow>>;
    async fn agent_by_fingerprint(&self, fingerprint_hex: &str) -> Result<Option<AgentRow>>;
    async fn list_agents(&self) -> Result<Vec<AgentRow>>;
    /// Names of every revoked agent: a short list, which the relay polls to disconnect
    /// agents revoked by the administration command.
    async fn revoked_agents(&self) -> Result<Vec<AgentName>>;
    /// Marks an agent revoked. Idempotent: revoking twice keeps the first time, and only
    /// the revocation that changed something is audited.
    async fn revoke_agent(&self, name: &AgentName, now: i64, audit: &AuditEvent) -> Result<()>;
    /// Records that an agent connected to this relay with a consent mode: present on this
    /// relay since `now` (a row of `agent_presence`, unless a newer connection is stored
    /// there), last seen now (or later, as stored).
    async fn agent_connected(
        &self,
        name: &AgentName,
        consent: ConsentMode,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<()>;
    /// Records that an agent's connection to this relay, stored by
    /// [`Store::agent_connected`] at `since`, ended: last seen now, and no longer present
    /// on this relay. The event is appended only if that connection was still present
    /// (returns whether it was): a newer connection's row stays, and a relay's rows removed
    /// wholesale (declared lost, stopped, restarted) were audited then.
    async fn agent_disconnected(
        &self,
        name: &AgentName,
        since: i64,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<bool>;

    /// Audited at `session.requested_at`.
    async fn insert_session(&self, session: &SessionInfo, audit: &AuditEvent) -> Result<()>;
    /// Overwrites the mutable fields (state, approver, decided/started/ended, end reason)
    /// of a session not in a final state; one that ended already (another relay declared
    /// its relay lost and ended it) is `NotFound`, and nothing is appended.
    async fn update_session(&self, session: &SessionInfo, now: i64, audit: &AuditEvent) -> Result<()>;
    async fn session(&self, id: &SessionId) -> Result<Option<SessionInfo>>;
    /// Newest first, at most `limit`.
    async fn list_sessions(&self, limit: u32) -> Result<Vec<SessionInfo>>;
    /// Sessions not in a final state (requested, approved, active), oldest first, at most
    /// `limit`, each with its agent's consent mode: what every relay of a cluster lists of
    /// the sessions other relays hold.
    async fn open_sessions(&self, limit: u32) -> Result<Vec<OpenSession>>;
    /// Session `id` if it is open (requested, approved, active), as [`Store::open_sessions`]
    /// gives it: where a relay of a cluster learns which relay holds it.
    async fn open_session(&self, id: &SessionId) -> Result<Option<OpenSession>>;
    /// Closes every session of this relay ([`relays::Relays::relay_name`]) not in a final
    /// state with `reason` (used at start-up after a crash, so nothing stays half-open)
    /// and removes this relay's leftover agent presence (other relays' rows stay: the
    /// agent may be connected to them). Requested ones become expired. Returns how many
    /// sessions it closed. Audits, as actor `relay`, one `session.expired` or
    /// `session.ended` per session and one `agent.disconnected` per presence removed.
    async fn close_dangling_sessions(&self, reason: &str, now: i64) -> Result<u64>;

    // Maintenance windows.
    /// Adds a window; its id must be new and its organisation must exist.
    async fn add_window(&self, window: &WindowRow, audit: &AuditEvent) -> Result<()>;
    /// Windows not removed, of one organisation or of all.
    async fn list_windows(&self, org: Option<&OrgName>) -> Result<Vec<WindowRow>>;
    /// Marks a window removed (it stays listed in the audit log).
    async fn remove_window(&self, id: &str, now: i64, audit: &AuditEvent) -> Result<()>;

    /// Appends an event that goes with no stored state change (a login, a refusal, a
    /// sealed recording). Returns the stored record.
    async fn append_audit(&self, event: &AuditEvent, now: i64) -> Result<AuditRecord>;
    /// Events matching `filter`, oldest (lowest sequence number) first.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>>;
    /// For verification: up to `limit` events after sequence number `after_seq`, in order,
    /// each as stored or as the reason it cannot be read.
    async fn audit_chain(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Result<AuditRecord, UnreadableEvent>>>;

    // ---- Outgoing webhooks (crate::webhook; SQL in sql/webhooks.rs) ----

    /// Adds a webhook (the org must exist, the id be new) and returns it as stored: its
    /// `after_seq` is the sequence number of `audit` (its `webhook.added` event), so it
    /// receives only events appended after it.
    async fn add_webhook(&self, hook: &WebhookRow, audit: &AuditEvent) -> Result<WebhookRow>;
    /// Webhooks not removed, oldest first.
    async fn list_webhooks(&self) -> Result<Vec<WebhookRow>>;
    /// Removes a webhook and cancels its pending deliveries; returns how many it cancelled.
    async fn remove_webhook(&self, id: &str, now: i64, audit: &AuditEvent) -> Result<u64>;
    /// In one read snapshot: the webhook cursor, up to `limit` audit events after it (in
    /// order), and the webhooks not removed.
    async fn webhook_scan(&self, limit: u32) -> Result<WebhookScan>;
    /// In one transaction: if the cursor is still `from`, queues `deliveries` (skipping a
    /// hook removed meanwhile, and any (hook, event) already queued) and moves the cursor
    /// to `to`. Returns false, changing nothing, if the cursor had moved. Not audited: the
    /// attempts are.
    async fn enqueue_webhook_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
    ) -> Result<bool>;
    /// Pending deliveries due at `now`, of webhooks not removed, lowest event first.
    async fn due_webhook_deliveries(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>>;
    /// Stores an attempt's outcome with its `webhook.delivered`/`webhook.failed` event. A
    /// delivery that is no longer pending (cancelled meanwhile) keeps its state; the attempt
    /// is audited all the same.
    async fn record_webhook_attempt(
        &self,
        attempt: &AttemptRecord,
        now: i64,
        audit: &AuditEvent,
    ) -> Result<()>;
    /// Deliveries, newest event first, optionally of one webhook, at most `limit`.
    async fn list_webhook_deliveries(&self, webhook: Option<&str>, limit: u32) -> Result<Vec<DeliveryRow>>;
}

#[cfg(test)]
mod open_tests {
    use super::*;

    #[tokio::test]
    async fn the_url_picks_the_backend_and_a_foreign_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let default = open(None, dir.path(), None).await.unwrap();
        default.close().await;
        assert!(dir.path().join(DEFAULT_FILE).is_file());
        let other = dir.path().join("other.db");
        let url = format!("sqlite://{}", other.display());
        open(Some(&url), dir.path(), None).await.unwrap().close().await;
        assert!(other.is_file());
        for bad in ["mysql://db/assist", "sqlite://", "assist.db"] {
            assert!(
                matches!(open(Some(bad), dir.path(), None).await, Err(StoreError::Url(u)) if u == bad),
                "{bad}"
            );
        }
        let pg = assist_testpg::database();
        let store = open(Some(pg.url()), dir.path(), None).await.unwrap();
        assert_eq!(store.list_orgs().await.unwrap(), []);
    }
}
