//! [`PgStore`]: the [`crate::store::Store`] on PostgreSQL (`--database postgres://…`), for
//! several relays sharing one state and one audit chain.
//!
//! - Every write takes the audit chain's head row (`audit_head`) `FOR UPDATE` first,
//!   in the same transaction as the change and its event: appends from every relay are
//!   serialised, as SQLite's `BEGIN IMMEDIATE` serialises them on one file.
//! - Reads that must agree with each other run in one `REPEATABLE READ` snapshot.
//! - The queries are the shared ones of `store/sql/` (compiled here with `Db = Postgres`);
//!   the schema is `migrations/postgres/`.
//! - TLS is not built in: reach the server on loopback or a Unix socket
//!   (`postgres://user@localhost/db?host=/run/postgresql`), or through a local tunnel.
//!
//! It does not check names or decide who may do what; see [`crate::store`].

use crate::store::Result;
use crate::store::sqlstore::SqlStore;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Postgres, Transaction};

/// The PostgreSQL [`crate::store::Store`]. Cheap to clone: clones share one connection pool.
pub type PgStore = SqlStore<Postgres>;

type DbRow = sqlx::postgres::PgRow;
type DbConn = sqlx::PgConnection;
type Backend = PgStore;

// The shared queries, compiled for PostgreSQL (and again for SQLite in `super::sqlite`).
#[allow(clippy::duplicate_mod)]
#[path = "../sql/accounts.rs"]
mod accounts;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/audit.rs"]
mod audit;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/console.rs"]
mod console;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/credentials.rs"]
mod credentials;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/presence.rs"]
mod presence;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/relays.rs"]
mod relays;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/sessions.rs"]
mod sessions;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/store.rs"]
mod store;
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "../sql/tests.rs"]
mod tests;
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "../sql/tests_features.rs"]
mod tests_features;
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "../sql/tests_relays.rs"]
mod tests_relays;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/webhooks.rs"]
mod webhooks;
#[allow(clippy::duplicate_mod)]
#[path = "../sql/windows.rs"]
mod windows;

/// Enough for a relay's concurrent reads; writes queue on the audit chain's head row.
const MAX_CONNECTIONS: u32 = 8;

impl PgStore {
    /// Connects to the database at `url` (`postgres://…`) and brings its schema up to
    /// date. Several relays may do this at once: sqlx's migrator holds an advisory lock.
    pub async fn open(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new().max_connections(MAX_CONNECTIONS).connect(url).await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        // One connection is enough: one task beats, and its statements run in turn.
        let registry = PgPoolOptions::new().max_connections(1).connect_lazy(url)?;
        let relay = std::sync::Arc::from(crate::store::relays::DEFAULT_RELAY);
        Ok(Self { pool, registry, secrets: None, relay })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
        self.registry.close().await;
    }

    /// A write transaction. Its first statement locks the audit chain's head row, so
    /// writers from every relay on this database take turns: each reads the newest event
    /// only after the one before it committed, and the chain stays gapless and linear.
    async fn write(&self) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT id FROM audit_head WHERE id = 1 FOR UPDATE").fetch_one(&mut *tx).await?;
        Ok(tx)
    }

    /// A read transaction: one snapshot for the reads in it (PostgreSQL's default takes a
    /// snapshot per statement).
    async fn read(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?)
    }
}

/// What keeps a test's store alive (databases go with the test binary's server).
#[cfg(test)]
type TestGuard = assist_testpg::Database;

/// A fresh database for one test in this test binary's PostgreSQL server.
#[cfg(test)]
async fn test_store() -> (TestGuard, PgStore) {
    let db = assist_testpg::database();
    let store = PgStore::open(db.url()).await.unwrap();
    (db, store)
}

/// Another handle on a test's store, with its own connections (another relay).
#[cfg(test)]
async fn reopen(db: &TestGuard) -> PgStore {
    PgStore::open(db.url()).await.unwrap()
}

/// What the shared tests do in PostgreSQL's own words.
#[cfg(test)]
mod test_sql {
    /// Makes every insert of `action` into the audit log fail.
    pub fn refuse_audit(action: &str) -> Vec<String> {
        vec![
            format!(
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF NEW.action = '{action}' THEN RAISE EXCEPTION 'audit refused by test'; END IF; \
                 RETURN NEW; END; $$"
            ),
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
                .into(),
        ]
    }
    pub const ALLOW_AUDIT: &str = "DROP FUNCTION refuse_audit CASCADE";
    pub const DROP_UPDATE_GUARD: &str = "DROP TRIGGER audit_events_no_update ON audit_events";
    /// PostgreSQL refuses text that is not valid in the database's encoding.
    pub const NOT_UTF8_DETAIL: Option<&str> = None;
}
