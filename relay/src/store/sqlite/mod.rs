//! [`SqliteStore`]: the embedded [`crate::store::Store`], one SQLite file in the data
//! directory (the default).
//!
//! - WAL journal, a busy timeout and foreign keys on every connection, so that the admin
//!   commands can write while a relay has the same file open.
//! - Every write runs in a `BEGIN IMMEDIATE` transaction together with its audit event:
//!   the write lock is taken up front, so two writers queue on the busy timeout instead of
//!   one failing when it upgrades a read snapshot that the other has made stale, and the
//!   audit chain is extended by one writer at a time.
//! - The queries are the shared ones of `store/sql/` (compiled here with `Db = Sqlite`);
//!   the schema is `migrations/sqlite/`.
//!
//! It does not check names or decide who may do what; see [`crate::store`].

use crate::store::Result;
use crate::store::sqlstore::SqlStore;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Sqlite, Transaction};
use std::path::Path;
use std::time::Duration;

/// The SQLite [`crate::store::Store`]. Cheap to clone: clones share one connection pool.
pub type SqliteStore = SqlStore<Sqlite>;

type DbRow = sqlx::sqlite::SqliteRow;
type DbConn = sqlx::SqliteConnection;
type Backend = SqliteStore;

// The shared queries, compiled for SQLite (and again for PostgreSQL in `super::postgres`).
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

/// Long enough for an admin command and the relay to take turns on a slow disk.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// SQLite serialises writers anyway; a few connections let reads run beside a write.
const MAX_CONNECTIONS: u32 = 4;

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
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let relay = std::sync::Arc::from(crate::store::relays::DEFAULT_RELAY);
        Ok(Self { registry: pool.clone(), pool, secrets: None, relay })
    }

    /// Closes every connection; SQLite then checkpoints the WAL back into the main file.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction: SQLite's write lock is taken before anything is read.
    async fn write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A read transaction: one snapshot for the reads in it.
    async fn read(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin().await?)
    }
}

/// What keeps a test's store alive.
#[cfg(test)]
type TestGuard = tempfile::TempDir;

/// A fresh store for one test.
#[cfg(test)]
async fn test_store() -> (TestGuard, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("assist.db")).await.unwrap();
    (dir, store)
}

/// Another handle on a test's store, with its own connections.
#[cfg(test)]
async fn reopen(dir: &TestGuard) -> SqliteStore {
    SqliteStore::open(&dir.path().join("assist.db")).await.unwrap()
}

/// What the shared tests do in SQLite's own words.
#[cfg(test)]
mod test_sql {
    /// Makes every insert of `action` into the audit log fail.
    pub fn refuse_audit(action: &str) -> Vec<String> {
        vec![format!(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events WHEN NEW.action = '{action}' \
             BEGIN SELECT RAISE(ABORT, 'audit refused by test'); END"
        )]
    }
    pub const ALLOW_AUDIT: &str = "DROP TRIGGER refuse_audit";
    pub const DROP_UPDATE_GUARD: &str = "DROP TRIGGER audit_events_no_update";
    pub const NOT_UTF8_DETAIL: Option<&str> =
        Some("UPDATE audit_events SET detail = CAST(X'7B22FF7D' AS TEXT) WHERE seq = 4");
}
