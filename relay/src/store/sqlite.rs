//! [`SqliteStore`]: the embedded [`Store`], one SQLite file in the data directory.
//!
//! - WAL journal, a busy timeout and foreign keys on every connection, so that the admin
//!   commands can write while a relay has the same file open.
//! - Every write that reads before it writes runs in a `BEGIN IMMEDIATE` transaction: the
//!   write lock is taken up front, so two writers queue on the busy timeout instead of one
//!   failing when it upgrades a read snapshot that the other has made stale.
//! - Unique-constraint violations become [`StoreError::Exists`], missing organisations
//!   [`StoreError::NotFound`].
//!
//! It does not check names or decide who may do what; see [`super`].

use super::{AgentRow, OrgRow, Result, Store, StoreError, TokenProblem, UserRow};
use assist_proto::caps::{ConsentMode, Role};
use assist_proto::ids::{AgentName, OrgName, SessionId, UserName};
use assist_proto::msg::SessionInfo;
use assist_proto::session::SessionState;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow};
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
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Closes every connection; SQLite then checkpoints the WAL back into the main file.
    pub async fn close(&self) {
        self.pool.close().await;
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

fn session_from_row(r: &SqliteRow) -> Result<SessionInfo> {
    let state: String = r.try_get("state")?;
    let capabilities: String = r.try_get("capabilities")?;
    Ok(SessionInfo {
        id: SessionId::new(r.try_get::<String, _>("id")?),
        engineer: UserName::new(r.try_get::<String, _>("engineer")?),
        engineer_org: OrgName::new(r.try_get::<String, _>("engineer_org")?),
        agent: AgentName::new(r.try_get::<String, _>("agent")?),
        agent_org: OrgName::new(r.try_get::<String, _>("agent_org")?),
        ticket: r.try_get("ticket")?,
        priority: parse(&r.try_get::<String, _>("priority")?)?,
        reason: r.try_get("reason")?,
        capabilities: serde_json::from_str(&capabilities)
            .map_err(|e| StoreError::Corrupt(format!("session capabilities {capabilities:?}: {e}")))?,
        state: SessionState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown session state {state:?}")))?,
        approver: r.try_get("approver")?,
        requested_at: r.try_get("requested_at")?,
        consent_deadline: r.try_get("consent_deadline")?,
        decided_at: r.try_get("decided_at")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        end_reason: r.try_get("end_reason")?,
    })
}

macro_rules! select_sessions {
    ($rest:literal) => {
        concat!(
            "SELECT id, engineer, engineer_org, agent, agent_org, ticket, priority, reason, capabilities, ",
            "state, approver, requested_at, consent_deadline, decided_at, started_at, ended_at, end_reason ",
            "FROM sessions ",
            $rest
        )
    };
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn add_org(&self, name: &OrgName, supported_by: &[OrgName], now: i64) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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

    async fn add_user(&self, user: &UserRow) -> Result<()> {
        sqlx::query("INSERT INTO users (name, org, role, password_hash, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(user.name.as_str())
            .bind(user.org.as_str())
            .bind(user.role.as_str())
            .bind(&user.password_hash)
            .bind(user.created_at)
            .execute(&self.pool)
            .await
            .map_err(|e| insert_error(e, "user", user.name.as_str(), &user.org))?;
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

    async fn set_password(&self, name: &UserName, password_hash: &str) -> Result<()> {
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE name = ?")
            .bind(password_hash)
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("user", name.as_str()));
        }
        Ok(())
    }

    async fn add_join_token(&self, token_hash: &str, org: &OrgName, expires_at: i64, now: i64) -> Result<()> {
        sqlx::query("INSERT INTO join_tokens (hash, org, expires_at, created_at) VALUES (?, ?, ?, ?)")
            .bind(token_hash)
            .bind(org.as_str())
            .bind(expires_at)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(|e| insert_error(e, "join token", token_hash, org))?;
        Ok(())
    }

    async fn enroll_agent(&self, token_hash: &str, agent: &AgentRow, now: i64) -> Result<AgentRow> {
        // Any early return drops `tx`, which rolls back: the token stays unused.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
        if let Err(e) = sqlx::query(
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
        {
            // Two unique columns: say which one clashed.
            return Err(if is_unique(&e) && e.to_string().contains("cert_fingerprint") {
                StoreError::Exists { what: "agent certificate", name: stored.cert_fingerprint }
            } else {
                insert_error(e, "agent", stored.name.as_str(), &stored.org)
            });
        }
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

    async fn revoke_agent(&self, name: &AgentName, now: i64) -> Result<()> {
        let done = sqlx::query("UPDATE agents SET revoked_at = COALESCE(revoked_at, ?) WHERE name = ?")
            .bind(now)
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("agent", name.as_str()));
        }
        Ok(())
    }

    async fn agent_connected(&self, name: &AgentName, consent: ConsentMode, now: i64) -> Result<()> {
        let done = sqlx::query("UPDATE agents SET online = 1, consent = ?, last_seen = ? WHERE name = ?")
            .bind(consent.to_string())
            .bind(now)
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("agent", name.as_str()));
        }
        Ok(())
    }

    async fn agent_disconnected(&self, name: &AgentName, now: i64) -> Result<()> {
        let done = sqlx::query("UPDATE agents SET online = 0, last_seen = ? WHERE name = ?")
            .bind(now)
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("agent", name.as_str()));
        }
        Ok(())
    }

    async fn insert_session(&self, s: &SessionInfo) -> Result<()> {
        let capabilities = serde_json::to_string(&s.capabilities)
            .map_err(|e| StoreError::Corrupt(format!("session capabilities: {e}")))?;
        sqlx::query(
            "INSERT INTO sessions (id, engineer, engineer_org, agent, agent_org, ticket, priority, reason, \
             capabilities, state, approver, requested_at, consent_deadline, decided_at, started_at, ended_at, \
             end_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(s.id.as_str())
        .bind(s.engineer.as_str())
        .bind(s.engineer_org.as_str())
        .bind(s.agent.as_str())
        .bind(s.agent_org.as_str())
        .bind(&s.ticket)
        .bind(s.priority.to_string())
        .bind(&s.reason)
        .bind(capabilities)
        .bind(s.state.as_str())
        .bind(&s.approver)
        .bind(s.requested_at)
        .bind(s.consent_deadline)
        .bind(s.decided_at)
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(&s.end_reason)
        .execute(&self.pool)
        .await
        .map_err(|e| insert_error(e, "session", s.id.as_str(), &s.agent_org))?;
        Ok(())
    }

    async fn update_session(&self, s: &SessionInfo) -> Result<()> {
        let done = sqlx::query(
            "UPDATE sessions SET state = ?, approver = ?, decided_at = ?, started_at = ?, ended_at = ?, \
             end_reason = ? WHERE id = ?",
        )
        .bind(s.state.as_str())
        .bind(&s.approver)
        .bind(s.decided_at)
        .bind(s.started_at)
        .bind(s.ended_at)
        .bind(&s.end_reason)
        .bind(s.id.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("session", s.id.as_str()));
        }
        Ok(())
    }

    async fn session(&self, id: &SessionId) -> Result<Option<SessionInfo>> {
        let row = sqlx::query(select_sessions!("WHERE id = ?"))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn list_sessions(&self, limit: u32) -> Result<Vec<SessionInfo>> {
        // rowid breaks ties between requests made in the same millisecond.
        let rows = sqlx::query(select_sessions!("ORDER BY requested_at DESC, rowid DESC LIMIT ?"))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn close_dangling_sessions(&self, reason: &str, now: i64) -> Result<u64> {
        // The literals are `SessionState::as_str` values; the tests read them back with
        // `SessionState::parse`.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let closed = sqlx::query(
            "UPDATE sessions SET \
               state = CASE state WHEN 'requested' THEN 'expired' ELSE 'closed' END, \
               ended_at = COALESCE(ended_at, ?), \
               end_reason = COALESCE(end_reason, ?) \
             WHERE state IN ('requested', 'approved', 'active')",
        )
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE agents SET online = 0 WHERE online = 1").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_proto::caps::{Capability, Priority};

    async fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("assist.db")).await.unwrap();
        (dir, store)
    }

    /// A store with orgs `vendor` and `acme` (supported by `vendor`) and one join token
    /// `t1` for `acme` valid until 1000.
    async fn seeded() -> (tempfile::TempDir, SqliteStore) {
        let (dir, store) = open().await;
        store.add_org(&"vendor".into(), &[], 1).await.unwrap();
        store.add_org(&"acme".into(), &["vendor".into()], 2).await.unwrap();
        store.add_join_token("t1", &"acme".into(), 1000, 10).await.unwrap();
        (dir, store)
    }

    fn agent(name: &str, fingerprint: &str) -> AgentRow {
        AgentRow {
            name: name.into(),
            org: "ignored".into(),
            cert_fingerprint: fingerprint.into(),
            enrolled_at: 100,
            revoked_at: None,
            last_seen: None,
            consent: None,
            online: false,
        }
    }

    async fn token_used_at(store: &SqliteStore, hash: &str) -> Option<i64> {
        sqlx::query_scalar("SELECT used_at FROM join_tokens WHERE hash = ?")
            .bind(hash)
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    fn rejected(r: Result<AgentRow>) -> TokenProblem {
        match r {
            Err(StoreError::TokenRejected(p)) => p,
            other => panic!("expected a rejected token, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn orgs_record_who_supports_them() {
        let (_dir, store) = seeded().await;
        let acme = store.org(&"acme".into()).await.unwrap().unwrap();
        assert_eq!((acme.supported_by, acme.created_at), (vec![OrgName::new("vendor")], 2));
        let names: Vec<_> = store.list_orgs().await.unwrap().into_iter().map(|o| o.name.0).collect();
        assert_eq!(names, ["acme", "vendor"]);
        assert!(matches!(store.add_org(&"acme".into(), &[], 3).await, Err(StoreError::Exists { .. })));
        assert_eq!(store.org(&"nobody".into()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn unknown_supporting_org_is_refused() {
        let (_dir, store) = open().await;
        let err = store.add_org(&"acme".into(), &["ghost".into()], 1).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { what: "organisation", ref name } if name == "ghost"));
        assert_eq!(store.org(&"acme".into()).await.unwrap(), None);
        let err = store.add_org(&"selfish".into(), &["selfish".into()], 1).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }));
    }

    #[tokio::test]
    async fn users_are_unique_and_belong_to_an_org() {
        let (_dir, store) = seeded().await;
        let alice = UserRow {
            name: "alice".into(),
            org: "vendor".into(),
            role: Role::Engineer,
            password_hash: "$argon2id$x".into(),
            created_at: 5,
        };
        store.add_user(&alice).await.unwrap();
        assert_eq!(store.user(&"alice".into()).await.unwrap().as_ref(), Some(&alice));
        let again = UserRow { org: "acme".into(), ..alice.clone() };
        assert!(matches!(store.add_user(&again).await, Err(StoreError::Exists { what: "user", .. })));
        let orphan = UserRow { name: "bob".into(), org: "ghost".into(), ..alice.clone() };
        assert!(matches!(
            store.add_user(&orphan).await,
            Err(StoreError::NotFound { what: "organisation", .. })
        ));
        store.set_password(&"alice".into(), "new").await.unwrap();
        assert_eq!(store.list_users().await.unwrap()[0].password_hash, "new");
        assert!(matches!(store.set_password(&"bob".into(), "x").await, Err(StoreError::NotFound { .. })));
    }

    #[tokio::test]
    async fn a_token_enrolls_once_into_its_own_org() {
        let (_dir, store) = seeded().await;
        let row = store.enroll_agent("t1", &agent("db01", "f1"), 20).await.unwrap();
        assert_eq!(row.org.as_str(), "acme");
        assert_eq!(store.agent(&"db01".into()).await.unwrap(), Some(row));
        assert_eq!(token_used_at(&store, "t1").await, Some(20));

        let again = store.enroll_agent("t1", &agent("db02", "f2"), 21).await;
        assert_eq!(rejected(again), TokenProblem::AlreadyUsed);
        assert_eq!(store.agent(&"db02".into()).await.unwrap(), None);
        assert_eq!(token_used_at(&store, "t1").await, Some(20));
    }

    #[tokio::test]
    async fn expired_and_unknown_tokens_change_nothing() {
        let (_dir, store) = seeded().await;
        assert_eq!(
            rejected(store.enroll_agent("t1", &agent("db01", "f1"), 1000).await),
            TokenProblem::Expired
        );
        assert_eq!(rejected(store.enroll_agent("t2", &agent("db01", "f1"), 20).await), TokenProblem::Unknown);
        assert_eq!(token_used_at(&store, "t1").await, None);
        assert!(store.list_agents().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_insert_leaves_the_token_unused() {
        let (_dir, store) = seeded().await;
        store.add_join_token("t2", &"acme".into(), 1000, 10).await.unwrap();
        store.enroll_agent("t1", &agent("db01", "f1"), 20).await.unwrap();
        let dup_name = store.enroll_agent("t2", &agent("db01", "f2"), 21).await;
        assert!(matches!(dup_name, Err(StoreError::Exists { what: "agent", .. })), "{dup_name:?}");
        let dup_cert = store.enroll_agent("t2", &agent("db02", "f1"), 21).await;
        assert!(
            matches!(dup_cert, Err(StoreError::Exists { what: "agent certificate", .. })),
            "{dup_cert:?}"
        );
        assert_eq!(token_used_at(&store, "t2").await, None);
        store.enroll_agent("t2", &agent("db02", "f2"), 22).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_enrollments_with_one_token_let_exactly_one_in() {
        let (_dir, store) = seeded().await;
        let tasks: Vec<_> = (0..2)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store.enroll_agent("t1", &agent(&format!("a{i}"), &format!("f{i}")), 20).await
                })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        let loser = results.into_iter().find(|r| r.is_err()).unwrap();
        assert_eq!(rejected(loser), TokenProblem::AlreadyUsed);
        assert_eq!(store.list_agents().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn agents_connect_disconnect_and_stay_revoked() {
        let (_dir, store) = seeded().await;
        store.enroll_agent("t1", &agent("db01", "f1"), 20).await.unwrap();
        let name = AgentName::new("db01");
        store.agent_connected(&name, ConsentMode::Approver, 30).await.unwrap();
        let a = store.agent_by_fingerprint("f1").await.unwrap().unwrap();
        assert_eq!((a.online, a.consent, a.last_seen), (true, Some(ConsentMode::Approver), Some(30)));
        store.agent_disconnected(&name, 40).await.unwrap();
        store.revoke_agent(&name, 50).await.unwrap();
        store.revoke_agent(&name, 60).await.unwrap();
        let a = store.agent(&name).await.unwrap().unwrap();
        assert_eq!((a.online, a.last_seen, a.revoked_at), (false, Some(40), Some(50)));
        let ghost = AgentName::new("ghost");
        assert!(matches!(store.revoke_agent(&ghost, 1).await, Err(StoreError::NotFound { .. })));
        assert!(matches!(store.agent_disconnected(&ghost, 1).await, Err(StoreError::NotFound { .. })));
    }

    fn session(id: &str, state: SessionState, requested_at: i64) -> SessionInfo {
        SessionInfo {
            id: id.into(),
            engineer: "alice".into(),
            engineer_org: "vendor".into(),
            agent: "db01".into(),
            agent_org: "acme".into(),
            ticket: "INC-1042".into(),
            priority: Priority::P1,
            reason: "month-end close fails".into(),
            capabilities: vec![
                Capability::Shell,
                Capability::Exec { scripts: vec!["db-health".into()] },
                Capability::Forward { target: "db:5432".into() },
            ],
            state,
            approver: None,
            requested_at,
            consent_deadline: requested_at + 300_000,
            decided_at: None,
            started_at: None,
            ended_at: None,
            end_reason: None,
        }
    }

    #[tokio::test]
    async fn sessions_round_trip() {
        let (_dir, store) = open().await;
        let mut s1 = session("s-1", SessionState::Requested, 1);
        let s2 = session("s-2", SessionState::Requested, 2);
        store.insert_session(&s1).await.unwrap();
        store.insert_session(&s2).await.unwrap();
        assert!(matches!(store.insert_session(&s1).await, Err(StoreError::Exists { what: "session", .. })));
        assert_eq!(store.session(&s1.id).await.unwrap().as_ref(), Some(&s1));

        s1.state = SessionState::Active;
        s1.approver = Some("carol".into());
        s1.decided_at = Some(5);
        s1.started_at = Some(6);
        store.update_session(&s1).await.unwrap();
        assert_eq!(store.list_sessions(10).await.unwrap(), [s2.clone(), s1.clone()]);
        assert_eq!(store.list_sessions(1).await.unwrap(), [s2]);
        let ghost = session("s-9", SessionState::Closed, 1);
        assert!(matches!(store.update_session(&ghost).await, Err(StoreError::NotFound { .. })));
    }

    #[tokio::test]
    async fn dangling_sessions_are_closed_and_agents_go_offline() {
        let (_dir, store) = seeded().await;
        store.enroll_agent("t1", &agent("db01", "f1"), 20).await.unwrap();
        store.agent_connected(&"db01".into(), ConsentMode::Prompt, 30).await.unwrap();
        let mut done = session("done", SessionState::Closed, 4);
        done.ended_at = Some(7);
        done.end_reason = Some("shell exited".into());
        let states = [
            ("req", SessionState::Requested),
            ("appr", SessionState::Approved),
            ("act", SessionState::Active),
            ("den", SessionState::Denied),
        ];
        for (i, (id, state)) in states.iter().enumerate() {
            store.insert_session(&session(id, *state, i as i64)).await.unwrap();
        }
        store.insert_session(&done).await.unwrap();

        assert_eq!(store.close_dangling_sessions("relay restarted", 99).await.unwrap(), 3);
        let get = |id: &'static str| {
            let store = store.clone();
            async move { store.session(&id.into()).await.unwrap().unwrap() }
        };
        let req = get("req").await;
        assert_eq!(
            (req.state, req.ended_at, req.end_reason.as_deref()),
            (SessionState::Expired, Some(99), Some("relay restarted"))
        );
        assert_eq!(get("appr").await.state, SessionState::Closed);
        assert_eq!(get("act").await.state, SessionState::Closed);
        assert_eq!(get("den").await.state, SessionState::Denied);
        assert_eq!(get("done").await, done);
        assert!(!store.agent(&"db01".into()).await.unwrap().unwrap().online);
        assert_eq!(store.close_dangling_sessions("again", 100).await.unwrap(), 0);
    }
}
