//! Outgoing webhooks in SQLite (tables `webhooks`, `webhook_deliveries`,
//! `webhook_cursor`; migration `0004_webhooks.sql`).
//!
//! - Adding and removing a hook, and every delivery attempt, are written with their audit
//!   event in one `BEGIN IMMEDIATE` transaction, like every other change.
//! - Queuing deliveries and moving the cursor happen in one transaction, guarded by the
//!   cursor's old value (compare and set): the same audit event is never queued twice
//!   for a hook, even if two relays were started on one file by mistake.
//!
//! It does not decide which events go where, build bodies or send anything: see
//! [`crate::webhook`].

use super::DbRow;
use super::{Backend, audit};
use crate::audit::AuditEvent;
use crate::store::sqlstore::{insert_error, not_found, parse};
use crate::store::webhooks::{
    AttemptRecord, DeliveryRow, DeliveryState, DueDelivery, NewDelivery, WebhookRow, WebhookScan,
};
use crate::store::{Result, StoreError};
use assist_proto::ids::OrgName;
use sqlx::Row;
use tracing::warn;

fn webhook_from_row(r: &DbRow) -> Result<WebhookRow> {
    let events: Option<String> = r.try_get("events")?;
    let events = events
        .map(|text| {
            serde_json::from_str::<Vec<String>>(&text)
                .map_err(|e| StoreError::Corrupt(format!("webhook events {text:?}: {e}")))
        })
        .transpose()?;
    Ok(WebhookRow {
        id: r.try_get("id")?,
        org: OrgName::new(r.try_get::<String, _>("org")?),
        url: r.try_get("url")?,
        events,
        format: parse(&r.try_get::<String, _>("format")?)?,
        secret: r.try_get("secret")?,
        created_at: r.try_get("created_at")?,
        after_seq: r.try_get("after_seq")?,
    })
}

macro_rules! select_webhooks {
    ($rest:literal) => {
        concat!("SELECT id, org, url, events, format, secret, created_at, after_seq FROM webhooks ", $rest)
    };
}

fn delivery_from_row(r: &DbRow) -> Result<DeliveryRow> {
    let attempts: i64 = r.try_get("attempts")?;
    let status: Option<i64> = r.try_get("last_status")?;
    Ok(DeliveryRow {
        id: r.try_get("id")?,
        webhook: r.try_get("webhook")?,
        event_seq: r.try_get("event_seq")?,
        event: r.try_get("event")?,
        session: r.try_get("session")?,
        state: parse(&r.try_get::<String, _>("state")?)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::Corrupt(format!("delivery attempts {attempts}")))?,
        created_at: r.try_get("created_at")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        updated_at: r.try_get("updated_at")?,
        last_status: status
            .map(|s| u16::try_from(s).map_err(|_| StoreError::Corrupt(format!("delivery status {s}"))))
            .transpose()?,
        last_error: r.try_get("last_error")?,
    })
}

macro_rules! select_deliveries {
    ($rest:literal) => {
        concat!(
            "SELECT d.id, d.webhook, d.event_seq, d.event, d.session, d.state, d.attempts, d.created_at, ",
            "d.next_attempt_at, d.updated_at, d.last_status, d.last_error, d.body, w.org, w.url, w.secret ",
            "FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook ",
            $rest
        )
    };
}

impl Backend {
    pub(super) async fn insert_webhook(&self, hook: &WebhookRow, event: &AuditEvent) -> Result<WebhookRow> {
        let events = hook
            .events
            .as_ref()
            .map(|e| {
                serde_json::to_string(e).map_err(|e| StoreError::Corrupt(format!("webhook events: {e}")))
            })
            .transpose()?;
        let mut tx = self.write().await?;
        // The hook's own event comes first: its number is where the hook starts listening.
        let record = audit::append(&mut tx, event, hook.created_at).await?;
        sqlx::query(
            "INSERT INTO webhooks (id, org, url, events, format, secret, created_at, after_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&hook.id)
        .bind(hook.org.as_str())
        .bind(&hook.url)
        .bind(events)
        .bind(hook.format.as_str())
        .bind(&hook.secret)
        .bind(hook.created_at)
        .bind(record.seq)
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, "webhook", &hook.id, &hook.org))?;
        tx.commit().await?;
        Ok(WebhookRow { after_seq: record.seq, ..hook.clone() })
    }

    pub(super) async fn active_webhooks(&self) -> Result<Vec<WebhookRow>> {
        let rows = sqlx::query(select_webhooks!("WHERE removed_at IS NULL ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    pub(super) async fn delete_webhook(&self, id: &str, now: i64, event: &AuditEvent) -> Result<u64> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE webhooks SET removed_at = $1 WHERE id = $2 AND removed_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("webhook", id));
        }
        let cancelled = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'cancelled', updated_at = $1 WHERE webhook = $2 AND state = 'pending'",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut event = event.clone();
        if let Some(detail) = event.detail.as_object_mut() {
            detail.insert("cancelled_deliveries".into(), cancelled.into());
        }
        audit::append(&mut tx, &event, now).await?;
        tx.commit().await?;
        Ok(cancelled)
    }

    /// Reads the cursor, then the events, then the hooks, in that order: a hook added
    /// between two reads is then either seen with every event it should get, or not seen
    /// and owed none of the events read (they precede its `webhook.added`).
    pub(super) async fn scan_for_webhooks(&self, limit: u32) -> Result<WebhookScan> {
        let cursor: i64 = sqlx::query_scalar("SELECT after_seq FROM webhook_cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::Corrupt("the webhook cursor row is missing".into()))?;
        let mut events = Vec::new();
        let mut page_end = cursor;
        for row in self.audit_page(cursor, limit).await? {
            match row {
                Ok(record) => {
                    page_end = record.seq;
                    events.push(record);
                }
                // Passed over: `audit verify` is where a broken row is reported.
                Err(u) => {
                    page_end = u.seq;
                    warn!(seq = u.seq, reason = %u.reason, "unreadable audit event skipped by webhooks");
                }
            }
        }
        let hooks = self.active_webhooks().await?;
        Ok(WebhookScan { cursor, page_end, events, hooks })
    }

    pub(super) async fn enqueue_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let moved = sqlx::query("UPDATE webhook_cursor SET after_seq = $1 WHERE id = 1 AND after_seq = $2")
            .bind(to)
            .bind(from)
            .execute(&mut *tx)
            .await?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        for d in deliveries {
            sqlx::query(
                "INSERT INTO webhook_deliveries \
                 (id, webhook, event_seq, event, session, body, state, attempts, created_at, next_attempt_at, updated_at) \
                 SELECT $1, $2, $3, $4, $5, $6, 'pending', 0, $7, $8, $9 \
                 WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $10 AND removed_at IS NULL) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&d.id)
            .bind(&d.webhook)
            .bind(d.event_seq)
            .bind(&d.event)
            .bind(&d.session)
            .bind(&d.body)
            .bind(d.created_at)
            .bind(d.created_at)
            .bind(d.created_at)
            .bind(&d.webhook)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn due_deliveries(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>> {
        let rows = sqlx::query(select_deliveries!(
            "WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND w.removed_at IS NULL \
             ORDER BY d.event_seq, d.webhook LIMIT $2"
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DueDelivery {
                    delivery: delivery_from_row(r)?,
                    body: r.try_get("body")?,
                    org: OrgName::new(r.try_get::<String, _>("org")?),
                    url: r.try_get("url")?,
                    secret: r.try_get("secret")?,
                })
            })
            .collect()
    }

    pub(super) async fn record_attempt(&self, a: &AttemptRecord, now: i64, event: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let found = sqlx::query_scalar::<_, String>("SELECT state FROM webhook_deliveries WHERE id = $1")
            .bind(&a.delivery)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(state) = found else {
            return Err(not_found("webhook delivery", &a.delivery));
        };
        if parse::<DeliveryState>(&state)? == DeliveryState::Pending {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = $1, attempts = $2, next_attempt_at = $3, updated_at = $4, \
                 last_status = $5, last_error = $6 WHERE id = $7",
            )
            .bind(a.state.as_str())
            .bind(i64::from(a.attempt))
            .bind(a.next_attempt_at)
            .bind(now)
            .bind(a.status.map(i64::from))
            .bind(&a.error)
            .bind(&a.delivery)
            .execute(&mut *tx)
            .await?;
        }
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn deliveries(&self, webhook: Option<&str>, limit: u32) -> Result<Vec<DeliveryRow>> {
        let rows = sqlx::query(select_deliveries!(
            "WHERE ($1 IS NULL OR d.webhook = $1) ORDER BY d.event_seq DESC, d.webhook LIMIT $2"
        ))
        .bind(webhook)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }
}
