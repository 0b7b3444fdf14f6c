//! [`ConsoleRows`] in SQL (migration `0010_console.sql`): console sessions,
//! TOTP authenticators, recovery codes and disabled users.
//!
//! Every change a person would want on the record (a session begun or ended, an
//! authenticator confirmed, a recovery code used) is written with its audit event in one
//! write transaction. Touching a session's `last_seen` and moving a TOTP
//! secret to `pending` are not audited. It decides nothing: `crate::console_state` does.

use super::audit::append;
use super::{Backend, DbConn};
use crate::audit::{Action, AuditEvent};
use crate::store::Result;
use crate::store::console::{ConsoleRows, ConsoleSessionRow, TotpRow};
use assist_proto::ids::OrgName;
use serde_json::json;
use sqlx::Row;

impl Backend {
    async fn org_of(conn: &mut DbConn, user: &str) -> Result<Option<OrgName>> {
        let org: Option<String> = sqlx::query_scalar("SELECT org FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(org.map(OrgName::new))
    }

    fn user_event(
        user: &str,
        org: Option<&OrgName>,
        action: Action,
        detail: serde_json::Value,
    ) -> AuditEvent {
        let mut e = AuditEvent::new(user, action).target(user).detail(detail);
        if let Some(org) = org {
            e = e.org(org);
        }
        e
    }

    /// Stores a new console session, audited `console.signed_in`.
    pub(super) async fn console_open_session(
        &self,
        id_hash: &str,
        user: &str,
        stage: &str,
        source: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, \"user\", stage, source, created_at, last_seen) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_hash)
        .bind(user)
        .bind(stage)
        .bind(source)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let org = Self::org_of(&mut tx, user).await?;
        let event = Self::user_event(
            user,
            org.as_ref(),
            Action::ConsoleSignedIn,
            json!({ "stage": stage, "source": source }),
        );
        append(&mut tx, &event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn console_session(&self, id_hash: &str) -> Result<Option<ConsoleSessionRow>> {
        let row = sqlx::query(
            "SELECT \"user\", stage, created_at, last_seen FROM console_sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| ConsoleSessionRow {
            user: r.get(0),
            stage: r.get(1),
            created_at: r.get(2),
            last_seen: r.get(3),
        }))
    }

    pub(super) async fn console_touch(&self, id_hash: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE console_sessions SET last_seen = $1 WHERE id_hash = $2 AND last_seen < $1")
            .bind(now)
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends one session (if it still exists), audited `console.signed_out` with `why`.
    pub(super) async fn console_end_session(&self, id_hash: &str, why: &str, now: i64) -> Result<bool> {
        let mut tx = self.write().await?;
        let user: Option<String> =
            sqlx::query_scalar("DELETE FROM console_sessions WHERE id_hash = $1 RETURNING \"user\"")
                .bind(id_hash)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(user) = user else {
            return Ok(false);
        };
        let org = Self::org_of(&mut tx, &user).await?;
        let event = Self::user_event(&user, org.as_ref(), Action::ConsoleSignedOut, json!({ "why": why }));
        append(&mut tx, &event, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A stored secret as given (opened if sealed).
    fn unseal(&self, user: &str, stored: Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        Ok(match (stored, &self.secrets) {
            (Some(v), Some(key)) => Some(key.open(user, &v)?),
            // Sealed, and no key to open it: never hand out the sealed bytes as a secret.
            (Some(v), None) if crate::store::sealed::SecretsKey::is_sealed(&v) => {
                return Err(crate::store::sealed::SealError::NoKey.into());
            }
            (None, _) => None,
            (Some(v), None) => Some(v),
        })
    }

    /// A secret as stored (sealed when this store has a key).
    fn seal(&self, user: &str, secret: &[u8]) -> Result<Vec<u8>> {
        Ok(match &self.secrets {
            Some(key) => key.seal(user, secret)?,
            None => secret.to_vec(),
        })
    }

    pub(super) async fn totp(&self, user: &str) -> Result<TotpRow> {
        let row = sqlx::query("SELECT secret, pending, last_step FROM user_totp WHERE \"user\" = $1")
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(TotpRow::default()) };
        Ok(TotpRow {
            secret: self.unseal(user, r.get(0))?,
            pending: self.unseal(user, r.get(1))?,
            last_step: r.get(2),
        })
    }

    /// Keeps `pending` as the authenticator being set up (replacing an earlier one).
    pub(super) async fn totp_set_pending(&self, user: &str, pending: &[u8]) -> Result<()> {
        let stored = self.seal(user, pending)?;
        sqlx::query(
            "INSERT INTO user_totp (\"user\", pending) VALUES ($1, $2) ON CONFLICT (\"user\") DO UPDATE SET pending = excluded.pending",
        )
        .bind(user)
        .bind(stored)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes the pending secret the user's authenticator, with `step` as its last accepted
    /// step and `recovery` (hashes) as the only recovery codes; audited `mfa.enrolled`.
    /// False if the pending secret changed meanwhile.
    pub(super) async fn totp_confirm(
        &self,
        user: &str,
        pending: &[u8],
        step: i64,
        recovery: &[String],
        now: i64,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        // Sealed values differ at each write (a fresh nonce): compare what they hold.
        let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT pending FROM user_totp WHERE \"user\" = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
        let Some(stored) = stored else { return Ok(false) };
        if self.unseal(user, Some(stored.clone()))?.as_deref() != Some(pending) {
            return Ok(false);
        }
        let done = sqlx::query(
            "UPDATE user_totp SET secret = pending, pending = NULL, last_step = $1, confirmed_at = $2 \
             WHERE \"user\" = $3 AND pending = $4",
        )
        .bind(step)
        .bind(now)
        .bind(user)
        .bind(stored)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE \"user\" = $1").bind(user).execute(&mut *tx).await?;
        for hash in recovery {
            sqlx::query("INSERT INTO recovery_codes (\"user\", hash) VALUES ($1, $2)")
                .bind(user)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
        }
        let org = Self::org_of(&mut tx, user).await?;
        let event = Self::user_event(
            user,
            org.as_ref(),
            Action::MfaEnrolled,
            json!({ "recovery_codes": recovery.len() }),
        );
        append(&mut tx, &event, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Seals every TOTP secret stored in clear (written before sealing, or by a store
    /// without a key); returns how many values it sealed. Does nothing without a key.
    pub(super) async fn seal_clear_totp(&self) -> Result<u64> {
        let Some(key) = &self.secrets else { return Ok(0) };
        let mut tx = self.write().await?;
        let rows = sqlx::query("SELECT \"user\", secret, pending FROM user_totp").fetch_all(&mut *tx).await?;
        let mut sealed = 0;
        for r in &rows {
            let user: String = r.get(0);
            for (i, sql) in [
                (1, "UPDATE user_totp SET secret = $1 WHERE \"user\" = $2"),
                (2, "UPDATE user_totp SET pending = $1 WHERE \"user\" = $2"),
            ] {
                let value: Option<Vec<u8>> = r.get(i);
                let Some(value) = value.filter(|v| !crate::store::sealed::SecretsKey::is_sealed(v)) else {
                    continue;
                };
                sqlx::query(sql).bind(key.seal(&user, &value)?).bind(&user).execute(&mut *tx).await?;
                sealed += 1;
            }
        }
        tx.commit().await?;
        Ok(sealed)
    }

    /// Accepts time step `step` for the user's authenticator if it is later than the last
    /// one accepted (so a code is never accepted twice).
    pub(super) async fn totp_accept_step(&self, user: &str, step: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE user_totp SET last_step = $1 WHERE \"user\" = $2 AND secret IS NOT NULL \
             AND (last_step IS NULL OR last_step < $3)",
        )
        .bind(step)
        .bind(user)
        .bind(step)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Uses an unused recovery code (by hash); audited `mfa.recovery_used`.
    pub(super) async fn recovery_use(&self, user: &str, hash: &str, source: &str, now: i64) -> Result<bool> {
        let mut tx = self.write().await?;
        let n = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE \"user\" = $2 AND hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user)
        .bind(hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Ok(false);
        }
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM recovery_codes WHERE \"user\" = $1 AND used_at IS NULL")
                .bind(user)
                .fetch_one(&mut *tx)
                .await?;
        let org = Self::org_of(&mut tx, user).await?;
        let event = Self::user_event(
            user,
            org.as_ref(),
            Action::MfaRecoveryUsed,
            json!({ "source": source, "codes_left": left }),
        );
        append(&mut tx, &event, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl ConsoleRows for Backend {
    async fn console_open_session(
        &self,
        id_hash: &str,
        user: &str,
        stage: &str,
        source: &str,
        now: i64,
    ) -> Result<()> {
        Backend::console_open_session(self, id_hash, user, stage, source, now).await
    }

    async fn console_session(&self, id_hash: &str) -> Result<Option<ConsoleSessionRow>> {
        Backend::console_session(self, id_hash).await
    }

    async fn console_touch(&self, id_hash: &str, now: i64) -> Result<()> {
        Backend::console_touch(self, id_hash, now).await
    }

    async fn console_end_session(&self, id_hash: &str, why: &str, now: i64) -> Result<bool> {
        Backend::console_end_session(self, id_hash, why, now).await
    }

    async fn totp(&self, user: &str) -> Result<TotpRow> {
        Backend::totp(self, user).await
    }

    async fn totp_set_pending(&self, user: &str, pending: &[u8]) -> Result<()> {
        Backend::totp_set_pending(self, user, pending).await
    }

    async fn totp_confirm(
        &self,
        user: &str,
        pending: &[u8],
        step: i64,
        recovery: &[String],
        now: i64,
    ) -> Result<bool> {
        Backend::totp_confirm(self, user, pending, step, recovery, now).await
    }

    async fn seal_clear_totp(&self) -> Result<u64> {
        Backend::seal_clear_totp(self).await
    }
}
