//! [`Credentials`]: the store's record of who may still sign in and which CLI tokens are
//! in force. Part of every [`super::Store`] (a supertrait), so the broker checks a token
//! where it verifies it.
//!
//! It holds ids, users and times only: never a token or a password.

use super::Result;
use crate::audit::AuditEvent;

#[async_trait::async_trait]
pub trait Credentials: Send + Sync {
    /// Records a CLI token's id, with the `login.succeeded` event that issued it, in one
    /// transaction.
    async fn record_token(
        &self,
        jti: &str,
        user: &str,
        expires_at: i64,
        audit: &AuditEvent,
        now: i64,
    ) -> Result<()>;
    /// Whether the token `jti` of `user` is recorded, not revoked, and its user not
    /// disabled.
    async fn token_in_force(&self, jti: &str, user: &str) -> Result<bool>;
    /// The user's confirmed TOTP secret, if they have an authenticator.
    async fn totp_secret(&self, user: &str) -> Result<Option<Vec<u8>>>;
    /// Accepts TOTP time step `step` for the user if it is later than the last one
    /// accepted (so each code is accepted once).
    async fn accept_totp_step(&self, user: &str, step: i64) -> Result<bool>;
    /// Uses an unused recovery code (by its hash), audited `mfa.recovery_used`.
    async fn use_recovery_code(&self, user: &str, hash: &str, source: &str, now: i64) -> Result<bool>;
    /// Whether the user is disabled.
    async fn is_disabled(&self, user: &str) -> Result<bool>;
    /// Disables a user: no more sign-ins, console sessions ended and CLI tokens revoked,
    /// with `audit` (`user.disabled`), in one transaction. False if no such user.
    async fn disable_user(&self, user: &str, audit: &AuditEvent, now: i64) -> Result<bool>;
    /// Removes a user: the row, their authenticator and recovery codes, console sessions
    /// and CLI tokens, with `audit` (`user.removed`), in one transaction. Their sessions'
    /// history stays. False if no such user.
    async fn remove_user(&self, user: &str, audit: &AuditEvent, now: i64) -> Result<bool>;
}
