//! [`Accounts`]: the store's side of administering people and organisations beyond
//! adding them: roles, password resets, re-enabling, who supports whom, and the join
//! tokens issued. Part of every [`super::Store`] (a supertrait).
//!
//! Each change is stored with its audit event in one transaction. A change that ends a
//! user's access (a new role, a reset password) ends their console sessions and revokes
//! their CLI tokens in the same transaction, as disabling does. It decides nothing about
//! who may make a change: that is [`crate::admin_accounts`]'s caller's business.

use super::Result;
use crate::audit::AuditEvent;
use assist_proto::caps::Role;
use assist_proto::ids::OrgName;

/// A join token as listed: never the token, only a prefix of its hash (the name it has in
/// the audit log).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JoinTokenRow {
    /// The first 16 hex digits of the token's SHA-256 (`token:PREFIX` in the audit log).
    pub id: String,
    pub org: OrgName,
    pub created_at: i64,
    pub expires_at: i64,
    /// When an agent enrolled with it.
    pub used_at: Option<i64>,
}

#[async_trait::async_trait]
pub trait Accounts: Send + Sync {
    /// Sets a user's role; ends their console sessions and CLI tokens. False if no such
    /// user.
    async fn set_role(&self, user: &str, role: Role, audit: &AuditEvent, now: i64) -> Result<bool>;
    /// Replaces a user's password hash; ends their console sessions and CLI tokens. False
    /// if no such user.
    async fn reset_password(
        &self,
        user: &str,
        password_hash: &str,
        audit: &AuditEvent,
        now: i64,
    ) -> Result<bool>;
    /// Lets a disabled user sign in again. False if the user was not disabled (nothing is
    /// stored then).
    async fn enable_user(&self, user: &str, audit: &AuditEvent, now: i64) -> Result<bool>;
    /// Adds (`on`) or removes the relation "`vendor` supports `customer`". False if it was
    /// already so (nothing is stored then). Both organisations must exist.
    async fn set_support(
        &self,
        customer: &OrgName,
        vendor: &OrgName,
        on: bool,
        audit: &AuditEvent,
        now: i64,
    ) -> Result<bool>;
    /// Join tokens issued, newest first, at most `limit`.
    async fn list_join_tokens(&self, limit: u32) -> Result<Vec<JoinTokenRow>>;
}
