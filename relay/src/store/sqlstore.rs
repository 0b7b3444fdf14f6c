//! [`SqlStore`]: the one type both SQL backends are, `SqlStore<Sqlite>` ([`super::sqlite`])
//! and `SqlStore<Postgres>` ([`super::postgres`]), and the helpers their shared code uses
//! that do not depend on the dialect (error mapping, parsing stored text).
//!
//! It holds no SQL: the queries are written once in `store/sql/`, compiled for each
//! backend, and each backend says how it opens, migrates and serialises writes.

use super::{Result, StoreError};
use assist_proto::ids::OrgName;
use std::str::FromStr;
use std::sync::Arc;

/// A [`super::Store`] over an sqlx connection pool. Cheap to clone: clones share the pool.
#[derive(Debug)]
pub struct SqlStore<DB: sqlx::Database> {
    pub(super) pool: sqlx::Pool<DB>,
    /// The registry's heartbeat and its reads of the other relays ([`super::relays`]) on
    /// connections of their own (PostgreSQL; on SQLite, `pool` again). Writers waiting for
    /// the audit chain's head hold every connection of `pool`, and its waiters are served
    /// in turn: after a burst of writes (hundreds of agents connecting at once) a heartbeat
    /// waiting there came more than [`crate::cluster::LOST_AFTER`] late, and the other
    /// relays took this live one for lost.
    pub(super) registry: sqlx::Pool<DB>,
    /// Seals the TOTP secrets it writes (`None`: stored as given, for stores opened
    /// without a data directory, as tests do).
    pub(super) secrets: Option<Arc<super::sealed::SecretsKey>>,
    /// The relay this store writes for: new sessions are its own, and it closes only its
    /// own at start ([`super::relays`]). [`super::relays::DEFAULT_RELAY`] unless named.
    pub(super) relay: Arc<str>,
}

impl<DB: sqlx::Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            registry: self.registry.clone(),
            secrets: self.secrets.clone(),
            relay: self.relay.clone(),
        }
    }
}

impl<DB: sqlx::Database> SqlStore<DB> {
    /// This store, sealing the TOTP secrets it writes with `key` and opening those it
    /// reads ([`super::sealed`]).
    pub fn with_secrets_key(mut self, key: super::sealed::SecretsKey) -> Self {
        self.secrets = Some(Arc::new(key));
        self
    }

    /// This store, writing for the relay named `name` (`--relay-name`).
    pub fn with_relay_name(mut self, name: &str) -> Self {
        self.relay = Arc::from(name);
        self
    }

    /// The connection pool, for tests that look at rows directly.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &sqlx::Pool<DB> {
        &self.pool
    }
}

fn db_error_is(e: &sqlx::Error, check: fn(&dyn sqlx::error::DatabaseError) -> bool) -> bool {
    matches!(e, sqlx::Error::Database(d) if check(d.as_ref()))
}

pub(super) fn is_unique(e: &sqlx::Error) -> bool {
    db_error_is(e, |d| d.is_unique_violation())
}

pub(super) fn is_foreign_key(e: &sqlx::Error) -> bool {
    db_error_is(e, |d| d.is_foreign_key_violation())
}

/// Maps an insert's error: a duplicate becomes `Exists`, a dangling organisation `NotFound`.
pub(super) fn insert_error(e: sqlx::Error, what: &'static str, name: &str, org: &OrgName) -> StoreError {
    if is_unique(&e) {
        StoreError::Exists { what, name: name.to_owned() }
    } else if is_foreign_key(&e) {
        StoreError::NotFound { what: "organisation", name: org.to_string() }
    } else {
        e.into()
    }
}

pub(super) fn not_found(what: &'static str, name: &str) -> StoreError {
    StoreError::NotFound { what, name: name.to_owned() }
}

pub(super) fn parse<T: FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(StoreError::Corrupt)
}
