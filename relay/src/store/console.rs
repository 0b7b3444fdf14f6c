//! [`ConsoleRows`]: the store's side of the web console's sign-in: console sessions,
//! TOTP authenticators and recovery codes. Part of every [`super::Store`] (a
//! supertrait), so the console runs on whichever backend the relay does.
//!
//! Only hashes of session cookies and recovery codes are stored; TOTP secrets are sealed
//! when the store has a key ([`super::sealed`]). It decides nothing:
//! `crate::console_state` does.

use super::Result;

/// A console session row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSessionRow {
    pub user: String,
    pub stage: String,
    pub created_at: i64,
    pub last_seen: i64,
}

/// A user's authenticator state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TotpRow {
    pub secret: Option<Vec<u8>>,
    pub pending: Option<Vec<u8>>,
    pub last_step: Option<i64>,
}

#[async_trait::async_trait]
pub trait ConsoleRows: Send + Sync {
    /// Stores a new console session (by the hash of its cookie), audited
    /// `console.signed_in`.
    async fn console_open_session(
        &self,
        id_hash: &str,
        user: &str,
        stage: &str,
        source: &str,
        now: i64,
    ) -> Result<()>;
    async fn console_session(&self, id_hash: &str) -> Result<Option<ConsoleSessionRow>>;
    /// Moves a session's `last_seen` forward to `now` (never back). Not audited.
    async fn console_touch(&self, id_hash: &str, now: i64) -> Result<()>;
    /// Ends one session (if it still exists), audited `console.signed_out` with `why`.
    async fn console_end_session(&self, id_hash: &str, why: &str, now: i64) -> Result<bool>;
    /// The user's authenticator state, secrets opened.
    async fn totp(&self, user: &str) -> Result<TotpRow>;
    /// Keeps `pending` as the authenticator being set up (replacing an earlier one).
    async fn totp_set_pending(&self, user: &str, pending: &[u8]) -> Result<()>;
    /// Makes the pending secret the user's authenticator, with `step` as its last accepted
    /// step and `recovery` (hashes) as the only recovery codes; audited `mfa.enrolled`.
    /// False if the pending secret changed meanwhile.
    async fn totp_confirm(
        &self,
        user: &str,
        pending: &[u8],
        step: i64,
        recovery: &[String],
        now: i64,
    ) -> Result<bool>;
    /// Seals every TOTP secret stored in clear; returns how many values it sealed. Does
    /// nothing without a key.
    async fn seal_clear_totp(&self) -> Result<u64>;
}
