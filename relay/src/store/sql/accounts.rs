//! [`Accounts`] in SQLite: roles, password resets and re-enabling on `users` and
//! `users_disabled`, support relations on `org_support`, and the `join_tokens` list;
//! each change with its audit event in one transaction.

use super::Backend;
use super::audit::append;
use super::credentials::end_access;
use crate::audit::AuditEvent;
use crate::store::Result;
use crate::store::accounts::{Accounts, JoinTokenRow};
use crate::store::sqlstore::not_found;
use assist_proto::caps::Role;
use assist_proto::ids::OrgName;
use sqlx::Row;

#[async_trait::async_trait]
impl Accounts for Backend {
    async fn set_role(&self, user: &str, role: Role, audit: &AuditEvent, now: i64) -> Result<bool> {
        self.change_user("UPDATE users SET role = $1 WHERE name = $2", role.as_str(), user, audit, now).await
    }

    async fn reset_password(
        &self,
        user: &str,
        password_hash: &str,
        audit: &AuditEvent,
        now: i64,
    ) -> Result<bool> {
        self.change_user(
            "UPDATE users SET password_hash = $1 WHERE name = $2",
            password_hash,
            user,
            audit,
            now,
        )
        .await
    }

    async fn enable_user(&self, user: &str, audit: &AuditEvent, now: i64) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query("DELETE FROM users_disabled WHERE \"user\" = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        append(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_support(
        &self,
        customer: &OrgName,
        vendor: &OrgName,
        on: bool,
        audit: &AuditEvent,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        for org in [customer, vendor] {
            let found = sqlx::query("SELECT 1 FROM orgs WHERE name = $1")
                .bind(org.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(not_found("organisation", org.as_str()));
            }
        }
        let sql = if on {
            "INSERT INTO org_support (customer, vendor) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM org_support WHERE customer = $1 AND vendor = $2"
        };
        let n = sqlx::query(sql)
            .bind(customer.as_str())
            .bind(vendor.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        append(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_join_tokens(&self, limit: u32) -> Result<Vec<JoinTokenRow>> {
        let rows = sqlx::query(
            "SELECT hash, org, created_at, expires_at, used_at FROM join_tokens \
             ORDER BY created_at DESC, hash LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let hash: String = r.try_get("hash")?;
                Ok(JoinTokenRow {
                    id: hash.get(..16).unwrap_or(&hash).to_owned(),
                    org: OrgName::new(r.try_get::<String, _>("org")?),
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    used_at: r.try_get("used_at")?,
                })
            })
            .collect()
    }
}

impl Backend {
    /// Sets one column of a user's row (`sql` binds the value, then the name) and, in the
    /// same transaction, ends their console sessions and CLI tokens and appends `audit`.
    /// False, changing nothing, if there is no such user.
    async fn change_user(
        &self,
        sql: &'static str,
        value: &str,
        user: &str,
        audit: &AuditEvent,
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query(sql).bind(value).bind(user).execute(&mut *tx).await?.rows_affected();
        if n == 0 {
            return Ok(false);
        }
        end_access(&mut tx, user, now).await?;
        append(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}
