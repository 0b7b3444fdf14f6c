//! [`Credentials`] in SQLite: tables `cli_tokens`, `users_disabled` and the console's
//! (migration `0010_console.sql`), each change with its audit event in one transaction.

use super::audit::append;
use super::{Backend, DbConn};
use crate::audit::AuditEvent;
use crate::store::Result;
use crate::store::credentials::Credentials;

#[async_trait::async_trait]
impl Credentials for Backend {
    async fn record_token(
        &self,
        jti: &str,
        user: &str,
        expires_at: i64,
        audit: &AuditEvent,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO cli_tokens (jti, \"user\", expires_at) VALUES ($1, $2, $3)")
            .bind(jti)
            .bind(user)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        // Expired ids are of no further use.
        sqlx::query("DELETE FROM cli_tokens WHERE expires_at < $1").bind(now).execute(&mut *tx).await?;
        append(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token_in_force(&self, jti: &str, user: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM cli_tokens WHERE jti = $1 AND \"user\" = $2 AND revoked_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM users_disabled WHERE users_disabled.\"user\" = cli_tokens.\"user\")",
        )
        .bind(jti)
        .bind(user)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    async fn totp_secret(&self, user: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.totp(user).await?.secret)
    }

    async fn accept_totp_step(&self, user: &str, step: i64) -> Result<bool> {
        self.totp_accept_step(user, step).await
    }

    async fn use_recovery_code(&self, user: &str, hash: &str, source: &str, now: i64) -> Result<bool> {
        self.recovery_use(user, hash, source, now).await
    }

    async fn is_disabled(&self, user: &str) -> Result<bool> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users_disabled WHERE \"user\" = $1")
            .bind(user)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    async fn disable_user(&self, user: &str, audit: &AuditEvent, now: i64) -> Result<bool> {
        let mut tx = self.write().await?;
        let exists: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE name = $1")
            .bind(user)
            .fetch_one(&mut *tx)
            .await?;
        if exists == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO users_disabled (\"user\", disabled_at) VALUES ($1, $2) ON CONFLICT (\"user\") DO NOTHING",
        )
        .bind(user)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        end_access(&mut tx, user, now).await?;
        append(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_user(&self, user: &str, audit: &AuditEvent, now: i64) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        end_access(&mut tx, user, now).await?;
        for sql in [
            "DELETE FROM user_totp WHERE \"user\" = $1",
            "DELETE FROM recovery_codes WHERE \"user\" = $1",
            "DELETE FROM users_disabled WHERE \"user\" = $1",
        ] {
            sqlx::query(sql).bind(user).execute(&mut *tx).await?;
        }
        append(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Ends a user's console sessions and revokes their CLI tokens.
pub(super) async fn end_access(tx: &mut DbConn, user: &str, now: i64) -> Result<()> {
    sqlx::query("DELETE FROM console_sessions WHERE \"user\" = $1").bind(user).execute(&mut *tx).await?;
    sqlx::query("UPDATE cli_tokens SET revoked_at = $1 WHERE \"user\" = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
