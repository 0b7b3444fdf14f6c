//! Maintenance windows in SQLite: add, list, remove (each change with its audit event).

use super::DbRow;
use super::{Backend, audit};
use crate::audit::AuditEvent;
use crate::store::sqlstore::{insert_error, not_found};
use crate::store::{Result, StoreError, WindowRow};
use assist_proto::ids::{AgentName, OrgName, UserName};
use sqlx::Row;

fn corrupt(what: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!("window {what}: {e}"))
}

fn window_from_row(r: &DbRow) -> Result<WindowRow> {
    let caps: String = r.try_get("capabilities")?;
    let engineers: String = r.try_get("engineers")?;
    Ok(WindowRow {
        id: r.try_get("id")?,
        org: OrgName::new(r.try_get::<String, _>("org")?),
        agent: r.try_get::<Option<String>, _>("agent")?.map(AgentName::new),
        schedule: r.try_get("schedule")?,
        duration_secs: r.try_get::<i64, _>("duration_secs")?.max(0) as u64,
        capabilities: serde_json::from_str(&caps).map_err(|e| corrupt("capabilities", e))?,
        engineers: serde_json::from_str::<Vec<String>>(&engineers)
            .map_err(|e| corrupt("engineers", e))?
            .into_iter()
            .map(UserName::new)
            .collect(),
        note: r.try_get("note")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        removed_at: r.try_get("removed_at")?,
    })
}

impl Backend {
    pub(super) async fn add_window_audited(&self, w: &WindowRow, event: &AuditEvent) -> Result<()> {
        let caps = serde_json::to_string(&w.capabilities).map_err(|e| corrupt("capabilities", e))?;
        let engineers: Vec<&str> = w.engineers.iter().map(|e| e.as_str()).collect();
        let engineers = serde_json::to_string(&engineers).map_err(|e| corrupt("engineers", e))?;
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO windows (id, org, agent, schedule, duration_secs, capabilities, engineers, note, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&w.id)
        .bind(w.org.as_str())
        .bind(w.agent.as_ref().map(|a| a.as_str()))
        .bind(&w.schedule)
        .bind(w.duration_secs as i64)
        .bind(caps)
        .bind(engineers)
        .bind(&w.note)
        .bind(&w.created_by)
        .bind(w.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, "window", &w.id, &w.org))?;
        audit::append(&mut tx, event, w.created_at).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn windows(&self, org: Option<&OrgName>) -> Result<Vec<WindowRow>> {
        let rows = sqlx::query(
            "SELECT * FROM windows WHERE removed_at IS NULL AND ($1 IS NULL OR org = $2) ORDER BY org, id",
        )
        .bind(org.map(|o| o.as_str()))
        .bind(org.map(|o| o.as_str()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(window_from_row).collect()
    }

    pub(super) async fn remove_window_audited(&self, id: &str, now: i64, event: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE windows SET removed_at = $1 WHERE id = $2 AND removed_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("window", id));
        }
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }
}
