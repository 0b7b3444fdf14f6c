//! The relays registry ([`crate::store::relays`]) in SQL, for either backend.

use super::sessions::close_open_sessions;
use super::{Backend, presence};
use crate::store::Result;
use crate::store::relays::{LostRelay, RelayRow, Relays};
use sqlx::Row;

#[async_trait::async_trait]
impl Relays for Backend {
    fn relay_name(&self) -> &str {
        &self.relay
    }

    async fn register_relay(&self, address: Option<&str>, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO relays (name, address, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (name) DO UPDATE SET address = $2, started_at = $3, heartbeat_at = $3, \
             stopped_at = NULL, lost_at = NULL",
        )
        .bind(&*self.relay)
        .bind(address)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn relay_heartbeat(&self, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE relays SET heartbeat_at = $1 \
             WHERE name = $2 AND stopped_at IS NULL AND lost_at IS NULL",
        )
        .bind(now)
        .bind(&*self.relay)
        .execute(&self.registry)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn relay_stopped(&self, now: i64) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE relays SET stopped_at = $1 WHERE name = $2 AND stopped_at IS NULL")
            .bind(now)
            .bind(&*self.relay)
            .execute(&mut *tx)
            .await?;
        presence::remove_relay(&mut tx, &self.relay, "relay stopped", now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_relays(&self) -> Result<Vec<RelayRow>> {
        let rows = sqlx::query(
            "SELECT name, address, started_at, heartbeat_at, stopped_at, lost_at FROM relays ORDER BY name",
        )
        .fetch_all(&self.registry)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RelayRow {
                    name: r.try_get("name")?,
                    address: r.try_get("address")?,
                    started_at: r.try_get("started_at")?,
                    heartbeat_at: r.try_get("heartbeat_at")?,
                    stopped_at: r.try_get("stopped_at")?,
                    lost_at: r.try_get("lost_at")?,
                })
            })
            .collect()
    }

    async fn end_lost_relays(&self, stale_before: i64, reason: &str, now: i64) -> Result<Vec<LostRelay>> {
        const STALE: &str = "SELECT name FROM relays WHERE name <> $1 AND stopped_at IS NULL \
             AND lost_at IS NULL AND heartbeat_at < $2 ORDER BY name";
        // Usually none: looked for without the write lock, which every beat would
        // otherwise take from the relays' writers.
        let any: Option<(String,)> = sqlx::query_as(STALE)
            .bind(&*self.relay)
            .bind(stale_before)
            .fetch_optional(&self.registry)
            .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        // The write lock (SQLite) or the audit head's row lock (PostgreSQL) comes first, so
        // relays that notice together take turns, and the later ones find nothing to do.
        let mut tx = self.write().await?;
        let stale: Vec<(String,)> =
            sqlx::query_as(STALE).bind(&*self.relay).bind(stale_before).fetch_all(&mut *tx).await?;
        let mut lost = Vec::new();
        for (name,) in stale {
            let marked = sqlx::query(
                "UPDATE relays SET lost_at = $1 \
                 WHERE name = $2 AND stopped_at IS NULL AND lost_at IS NULL AND heartbeat_at < $3",
            )
            .bind(now)
            .bind(&name)
            .bind(stale_before)
            .execute(&mut *tx)
            .await?;
            if marked.rows_affected() == 1 {
                let detail = serde_json::Value::String(name.clone());
                let sessions = close_open_sessions(&mut tx, &name, reason, detail, now).await?;
                let agents = presence::remove_relay(&mut tx, &name, reason, now).await?;
                lost.push(LostRelay { name, sessions, agents });
            }
        }
        tx.commit().await?;
        Ok(lost)
    }
}
