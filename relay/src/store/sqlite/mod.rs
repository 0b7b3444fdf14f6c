//! [`SqliteStore`]: the embedded [`Store`], one SQLite file in the data directory.
//!
//! - WAL journal, a busy timeout and foreign keys on every connection, so that the admin
//!   commands can write while a relay has the same file open.
//! - Every write runs in a `BEGIN IMMEDIATE` transaction together with its audit event
//!   ([`audit`]): the write lock is taken up front, so two writers queue on the busy
//!   timeout instead of one failing when it upgrades a read snapshot that the other has
//!   made stale, and the audit chain is extended by one writer at a time.
//! - Sessions live in [`sessions`], the audit log in [`audit`].
//! - Unique-constraint violations become [`StoreError::Exists`], missing organisations
//!   [`StoreError::NotFound`].
//!
//! It does not check names or decide who may do what; see [`super`].

mod accounts;
mod audit;
pub mod console;
mod credentials;
mod sessions;
mod webhooks;
mod windows;

use super::{AgentRow, OrgRow, Result, Store, StoreError, TokenProblem, UnreadableEvent, UserRow, WindowRow};
use crate::audit::{AuditEvent, AuditFilter, AuditRecord};
use crate::store::webhooks::{AttemptRecord, DeliveryRow, DueDelivery, NewDelivery, WebhookRow, WebhookScan};
use assist_proto::caps::{ConsentMode, Role};
use assist_proto::ids::{AgentName, OrgName, SessionId, UserName};
use assist_proto::msg::SessionInfo;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Long enough for an admin command and the relay to take turns on a slow disk.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// SQLite serialises writers anyway; a few connections let reads run beside a write.
const MAX_CONNECTIONS: u32 = 4;

/// The SQLite [`Store`]. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Seals the TOTP secrets it writes (`None`: stored as given, for stores opened
    /// without a data directory, as tests do).
    secrets: Option<std::sync::Arc<crate::store::sealed::SecretsKey>>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // 256 KiB of page cache per connection instead of SQLite's 2 MB: the relay's
            // queries touch few pages, and a relay holding thousands of idle agents should
            // not carry megabytes of cache for them (measured with 1,000 idle agents).
            .pragma("cache_size", "-256");
        let pool = SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool, secrets: None })
    }

    /// This store, sealing the TOTP secrets it writes with `key` and opening those it
    /// reads ([`crate::store::sealed`]).
    pub fn with_secrets_key(mut self, key: crate::store::sealed::SecretsKey) -> Self {
        self.secrets = Some(std::sync::Arc::new(key));
        self
    }

    /// The connection pool, for tests that look at rows directly.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection; SQLite then checkpoints the WAL back into the main file.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction: SQLite's write lock is taken before anything is read.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn db_error_is(e: &sqlx::Error, check: fn(&dyn sqlx::error::DatabaseError) -> bool) -> bool {
    matches!(e, sqlx::Error::Database(d) if check(d.as_ref()))
}

fn is_unique(e: &sqlx::Error) -> bool {
    db_error_is(e, |d| d.is_unique_violation())
}

fn is_foreign_key(e: &sqlx::Error) -> bool {
    db_error_is(e, |d| d.is_foreign_key_violation())
}

/// Maps an insert's error: a duplicate becomes `Exists`, a dangling organisation `NotFound`.
fn insert_error(e: sqlx::Error, what: &'static str, name: &str, org: &OrgName) -> StoreError {
    if is_unique(&e) {
        StoreError::Exists { what, name: name.to_owned() }
    } else if is_foreign_key(&e) {
        StoreError::NotFound { what: "organisation", name: org.to_string() }
    } else {
        e.into()
    }
}

fn not_found(what: &'static str, name: &str) -> StoreError {
    StoreError::NotFound { what, name: name.to_owned() }
}

fn parse<T: FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(StoreError::Corrupt)
}

fn user_from_row(r: &SqliteRow) -> Result<UserRow> {
    Ok(UserRow {
        name: UserName::new(r.try_get::<String, _>("name")?),
        org: OrgName::new(r.try_get::<String, _>("org")?),
        role: parse::<Role>(&r.try_get::<String, _>("role")?)?,
        password_hash: r.try_get("password_hash")?,
        created_at: r.try_get("created_at")?,
    })
}

macro_rules! select_users {
    ($rest:literal) => {
        concat!("SELECT name, org, role, password_hash, created_at FROM users ", $rest)
    };
}

fn agent_from_row(r: &SqliteRow) -> Result<AgentRow> {
    let consent: Option<String> = r.try_get("consent")?;
    Ok(AgentRow {
        name: AgentName::new(r.try_get::<String, _>("name")?),
        org: OrgName::new(r.try_get::<String, _>("org")?),
        cert_fingerprint: r.try_get("cert_fingerprint")?,
        enrolled_at: r.try_get("enrolled_at")?,
        revoked_at: r.try_get("revoked_at")?,
        last_seen: r.try_get("last_seen")?,
        consent: consent.as_deref().map(parse::<ConsentMode>).transpose()?,
        online: r.try_get("online")?,
    })
}

macro_rules! select_agents {
    ($rest:literal) => {
        concat!(
            "SELECT name, org, cert_fingerprint, enrolled_at, revoked_at, last_seen, consent, online FROM agents ",
            $rest
        )
    };
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn add_org(
        &self,
        name: &OrgName,
        supported_by: &[OrgName],
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        // Checked before the insert, so an org can never be listed as its own supporter.
        for vendor in supported_by {
            let found = sqlx::query("SELECT 1 FROM orgs WHERE name = ?")
                .bind(vendor.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(not_found("organisation", vendor.as_str()));
            }
        }
        sqlx::query("INSERT INTO orgs (name, created_at) VALUES (?, ?)")
            .bind(name.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| insert_error(e, "organisation", name.as_str(), name))?;
        for vendor in supported_by {
            sqlx::query("INSERT OR IGNORE INTO org_support (customer, vendor) VALUES (?, ?)")
                .bind(name.as_str())
                .bind(vendor.as_str())
                .execute(&mut *tx)
                .await?;
        }
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn org(&self, name: &OrgName) -> Result<Option<OrgRow>> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = sqlx::query("SELECT created_at FROM orgs WHERE name = ?")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let vendors: Vec<String> =
            sqlx::query_scalar("SELECT vendor FROM org_support WHERE customer = ? ORDER BY vendor")
                .bind(name.as_str())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(OrgRow {
            name: name.clone(),
            supported_by: vendors.into_iter().map(OrgName::new).collect(),
            created_at: row.try_get("created_at")?,
        }))
    }

    async fn list_orgs(&self) -> Result<Vec<OrgRow>> {
        let mut tx = self.pool.begin().await?;
        let orgs = sqlx::query("SELECT name, created_at FROM orgs ORDER BY name").fetch_all(&mut *tx).await?;
        let support = sqlx::query("SELECT customer, vendor FROM org_support ORDER BY customer, vendor")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut vendors: BTreeMap<String, Vec<OrgName>> = BTreeMap::new();
        for r in &support {
            vendors
                .entry(r.try_get("customer")?)
                .or_default()
                .push(OrgName::new(r.try_get::<String, _>("vendor")?));
        }
        orgs.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                Ok(OrgRow {
                    supported_by: vendors.remove(&name).unwrap_or_default(),
                    name: OrgName::new(name),
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn add_user(&self, user: &UserRow, event: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO users (name, org, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(user.name.as_str())
            .bind(user.org.as_str())
            .bind(user.role.as_str())
            .bind(&user.password_hash)
            .bind(user.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| insert_error(e, "user", user.name.as_str(), &user.org))?;
        audit::append(&mut tx, event, user.created_at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, name: &UserName) -> Result<Option<UserRow>> {
        let row = sqlx::query(select_users!("WHERE name = ?"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(select_users!("ORDER BY org, name")).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_password(
        &self,
        name: &UserName,
        password_hash: &str,
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE name = ?")
            .bind(password_hash)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("user", name.as_str()));
        }
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_join_token(
        &self,
        token_hash: &str,
        org: &OrgName,
        expires_at: i64,
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO join_tokens (hash, org, expires_at, created_at) VALUES (?, ?, ?, ?)")
            .bind(token_hash)
            .bind(org.as_str())
            .bind(expires_at)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| insert_error(e, "join token", token_hash, org))?;
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enroll_agent(
        &self,
        token_hash: &str,
        agent: &AgentRow,
        now: i64,
        event: &AuditEvent,
    ) -> Result<AgentRow> {
        // Any early return drops `tx`, which rolls back: the token stays unused.
        let mut tx = self.write().await?;
        let Some(token) = sqlx::query("SELECT org, expires_at, used_at FROM join_tokens WHERE hash = ?")
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(StoreError::TokenRejected(TokenProblem::Unknown));
        };
        if token.try_get::<Option<i64>, _>("used_at")?.is_some() {
            return Err(StoreError::TokenRejected(TokenProblem::AlreadyUsed));
        }
        if now >= token.try_get::<i64, _>("expires_at")? {
            return Err(StoreError::TokenRejected(TokenProblem::Expired));
        }
        // The conditional update is what makes the token single-use, whatever the
        // transaction mode: of two enrollments only one can flip `used_at`.
        let consumed = sqlx::query(
            "UPDATE join_tokens SET used_at = ? WHERE hash = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(now)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if consumed.rows_affected() != 1 {
            return Err(StoreError::TokenRejected(TokenProblem::AlreadyUsed));
        }
        let stored = AgentRow { org: OrgName::new(token.try_get::<String, _>("org")?), ..agent.clone() };
        let mut event = AuditEvent { org: Some(stored.org.clone()), ..event.clone() };
        // A revoked agent's name may be enrolled again: the row takes the new certificate
        // (the old one no longer matches any agent, so it stays refused) and the event says
        // what it replaced. A name in use (not revoked) still clashes.
        let revoked = sqlx::query("SELECT org, cert_fingerprint, revoked_at FROM agents WHERE name = ?")
            .bind(stored.name.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .filter(|r| r.try_get::<Option<i64>, _>("revoked_at").ok().flatten().is_some());
        let written = match revoked {
            Some(old) => {
                event.action = crate::audit::Action::AgentReenrolled;
                event = event.merge_detail(serde_json::json!({
                    "previous_org": old.try_get::<String, _>("org")?,
                    "previous_fingerprint": old.try_get::<String, _>("cert_fingerprint")?,
                    "revoked_at": old.try_get::<Option<i64>, _>("revoked_at")?,
                }));
                sqlx::query(
                    "UPDATE agents SET org = ?, cert_fingerprint = ?, enrolled_at = ?, revoked_at = NULL, \
                     last_seen = NULL, consent = NULL, online = 0 WHERE name = ? AND revoked_at IS NOT NULL",
                )
                .bind(stored.org.as_str())
                .bind(&stored.cert_fingerprint)
                .bind(stored.enrolled_at)
                .bind(stored.name.as_str())
                .execute(&mut *tx)
                .await
            }
            None => {
                sqlx::query(
                    "INSERT INTO agents (name, org, cert_fingerprint, enrolled_at, revoked_at, last_seen, consent, online) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(stored.name.as_str())
                .bind(stored.org.as_str())
                .bind(&stored.cert_fingerprint)
                .bind(stored.enrolled_at)
                .bind(stored.revoked_at)
                .bind(stored.last_seen)
                .bind(stored.consent.map(|c| c.to_string()))
                .bind(stored.online)
                .execute(&mut *tx)
                .await
            }
        };
        if let Err(e) = written {
            // Two unique columns: say which one clashed.
            return Err(if is_unique(&e) && e.to_string().contains("cert_fingerprint") {
                StoreError::Exists { what: "agent certificate", name: stored.cert_fingerprint }
            } else {
                insert_error(e, "agent", stored.name.as_str(), &stored.org)
            });
        }
        audit::append(&mut tx, &event, now).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn agent(&self, name: &AgentName) -> Result<Option<AgentRow>> {
        let row = sqlx::query(select_agents!("WHERE name = ?"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn agent_by_fingerprint(&self, fingerprint_hex: &str) -> Result<Option<AgentRow>> {
        let row = sqlx::query(select_agents!("WHERE cert_fingerprint = ?"))
            .bind(fingerprint_hex)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(agent_from_row).transpose()
    }

    async fn list_agents(&self) -> Result<Vec<AgentRow>> {
        let rows = sqlx::query(select_agents!("ORDER BY org, name")).fetch_all(&self.pool).await?;
        rows.iter().map(agent_from_row).collect()
    }

    async fn revoked_agents(&self) -> Result<Vec<AgentName>> {
        let names = sqlx::query_scalar::<_, String>("SELECT name FROM agents WHERE revoked_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        Ok(names.into_iter().map(AgentName::new).collect())
    }

    async fn revoke_agent(&self, name: &AgentName, now: i64, event: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let Some(revoked_at) =
            sqlx::query_scalar::<_, Option<i64>>("SELECT revoked_at FROM agents WHERE name = ?")
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Err(not_found("agent", name.as_str()));
        };
        if revoked_at.is_some() {
            // Revoked before: nothing changes, so there is nothing to audit.
            return Ok(());
        }
        sqlx::query("UPDATE agents SET revoked_at = ? WHERE name = ?")
            .bind(now)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn agent_connected(
        &self,
        name: &AgentName,
        consent: ConsentMode,
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE agents SET online = 1, consent = ?, last_seen = ? WHERE name = ?")
            .bind(consent.to_string())
            .bind(now)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("agent", name.as_str()));
        }
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn agent_disconnected(&self, name: &AgentName, now: i64, event: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE agents SET online = 0, last_seen = ? WHERE name = ?")
            .bind(now)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("agent", name.as_str()));
        }
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_session(&self, s: &SessionInfo, event: &AuditEvent) -> Result<()> {
        self.insert_session_audited(s, event).await
    }

    async fn update_session(&self, s: &SessionInfo, now: i64, event: &AuditEvent) -> Result<()> {
        self.update_session_audited(s, now, event).await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<SessionInfo>> {
        self.get_session(id).await
    }

    async fn list_sessions(&self, limit: u32) -> Result<Vec<SessionInfo>> {
        self.newest_sessions(limit).await
    }

    async fn close_dangling_sessions(&self, reason: &str, now: i64) -> Result<u64> {
        self.close_dangling(reason, now).await
    }

    async fn add_window(&self, w: &WindowRow, event: &AuditEvent) -> Result<()> {
        self.add_window_audited(w, event).await
    }

    async fn list_windows(&self, org: Option<&OrgName>) -> Result<Vec<WindowRow>> {
        self.windows(org).await
    }

    async fn remove_window(&self, id: &str, now: i64, event: &AuditEvent) -> Result<()> {
        self.remove_window_audited(id, now, event).await
    }

    async fn append_audit(&self, event: &AuditEvent, now: i64) -> Result<AuditRecord> {
        self.append_alone(event, now).await
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        self.list_audit_events(filter).await
    }

    async fn audit_chain(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Result<AuditRecord, UnreadableEvent>>> {
        self.audit_page(after_seq, limit).await
    }

    // ---- Outgoing webhooks: see webhooks.rs ----

    async fn add_webhook(&self, hook: &WebhookRow, event: &AuditEvent) -> Result<WebhookRow> {
        self.insert_webhook(hook, event).await
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookRow>> {
        self.active_webhooks().await
    }

    async fn remove_webhook(&self, id: &str, now: i64, event: &AuditEvent) -> Result<u64> {
        self.delete_webhook(id, now, event).await
    }

    async fn webhook_scan(&self, limit: u32) -> Result<WebhookScan> {
        self.scan_for_webhooks(limit).await
    }

    async fn enqueue_webhook_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
    ) -> Result<bool> {
        self.enqueue_deliveries(from, to, deliveries).await
    }

    async fn due_webhook_deliveries(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>> {
        self.due_deliveries(now, limit).await
    }

    async fn record_webhook_attempt(
        &self,
        attempt: &AttemptRecord,
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        self.record_attempt(attempt, now, event).await
    }

    async fn list_webhook_deliveries(&self, webhook: Option<&str>, limit: u32) -> Result<Vec<DeliveryRow>> {
        self.deliveries(webhook, limit).await
    }
}

#[cfg(test)]
mod tests;
