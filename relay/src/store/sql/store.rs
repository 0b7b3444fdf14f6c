//! The [`Store`] methods of either backend: organisations, users, join tokens and agents
//! here; sessions, windows, webhooks and the audit log in the files beside it. Written
//! once with `$N` placeholders and compiled for each backend (`super::Db`).

use super::{Backend, DbRow};
use super::{audit, presence};
use crate::audit::{AuditEvent, AuditFilter, AuditRecord};
use crate::store::sqlstore::{insert_error, is_unique, not_found, parse};
use crate::store::webhooks::{AttemptRecord, DeliveryRow, DueDelivery, NewDelivery, WebhookRow, WebhookScan};
use crate::store::{
    AgentRow, OrgRow, Result, Store, StoreError, TokenProblem, UnreadableEvent, UserRow, WindowRow,
};
use assist_proto::caps::{ConsentMode, Role};
use assist_proto::ids::{AgentName, OrgName, SessionId, UserName};
use assist_proto::msg::SessionInfo;
use sqlx::Row;
use std::collections::BTreeMap;

fn user_from_row(r: &DbRow) -> Result<UserRow> {
    Ok(UserRow {
        name: UserName::new(r.try_get::<String, _>("name")?),
        org: OrgName::new(r.try_get::<String, _>("org")?),
        role: parse::<Role>(&r.try_get::<String, _>("role")?)?,
        password_hash: r.try_get("password_hash")?,
        created_at: r.try_get("created_at")?,
    })
}

macro_rules! select_users {
    ($rest:literal) => {
        concat!("SELECT name, org, role, password_hash, created_at FROM users ", $rest)
    };
}

/// An agent's row, connected to `relays` (`super::presence`).
fn agent_from_row(r: &DbRow, relays: Vec<String>) -> Result<AgentRow> {
    let consent: Option<String> = r.try_get("consent")?;
    Ok(AgentRow {
        name: AgentName::new(r.try_get::<String, _>("name")?),
        org: OrgName::new(r.try_get::<String, _>("org")?),
        cert_fingerprint: r.try_get("cert_fingerprint")?,
        enrolled_at: r.try_get("enrolled_at")?,
        revoked_at: r.try_get("revoked_at")?,
        last_seen: r.try_get("last_seen")?,
        consent: consent.as_deref().map(parse::<ConsentMode>).transpose()?,
        online: !relays.is_empty(),
        relays,
    })
}

macro_rules! select_agents {
    ($rest:literal) => {
        concat!(
            "SELECT name, org, cert_fingerprint, enrolled_at, revoked_at, last_seen, consent FROM agents ",
            $rest
        )
    };
}

#[async_trait::async_trait]
impl Store for Backend {
    async fn close(&self) {
        Backend::close(self).await
    }

    async fn add_org(
        &self,
        name: &OrgName,
        supported_by: &[OrgName],
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        // Checked before the insert, so an org can never be listed as its own supporter.
        for vendor in supported_by {
            let found = sqlx::query("SELECT 1 FROM orgs WHERE name = $1")
                .bind(vendor.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Err(not_found("organisation", vendor.as_str()));
            }
        }
        sqlx::query("INSERT INTO orgs (name, created_at) VALUES ($1, $2)")
            .bind(name.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| insert_error(e, "organisation", name.as_str(), name))?;
        for vendor in supported_by {
            sqlx::query("INSERT INTO org_support (customer, vendor) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(name.as_str())
                .bind(vendor.as_str())
                .execute(&mut *tx)
                .await?;
        }
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn org(&self, name: &OrgName) -> Result<Option<OrgRow>> {
        let mut tx = self.read().await?;
        let Some(row) = sqlx::query("SELECT created_at FROM orgs WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let vendors: Vec<String> =
            sqlx::query_scalar("SELECT vendor FROM org_support WHERE customer = $1 ORDER BY vendor")
                .bind(name.as_str())
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Some(OrgRow {
            name: name.clone(),
            supported_by: vendors.into_iter().map(OrgName::new).collect(),
            created_at: row.try_get("created_at")?,
        }))
    }

    async fn list_orgs(&self) -> Result<Vec<OrgRow>> {
        let mut tx = self.read().await?;
        let orgs = sqlx::query("SELECT name, created_at FROM orgs ORDER BY name").fetch_all(&mut *tx).await?;
        let support = sqlx::query("SELECT customer, vendor FROM org_support ORDER BY customer, vendor")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut vendors: BTreeMap<String, Vec<OrgName>> = BTreeMap::new();
        for r in &support {
            vendors
                .entry(r.try_get("customer")?)
                .or_default()
                .push(OrgName::new(r.try_get::<String, _>("vendor")?));
        }
        orgs.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                Ok(OrgRow {
                    supported_by: vendors.remove(&name).unwrap_or_default(),
                    name: OrgName::new(name),
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn add_user(&self, user: &UserRow, event: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO users (name, org, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.name.as_str())
        .bind(user.org.as_str())
        .bind(user.role.as_str())
        .bind(&user.password_hash)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| insert_error(e, "user", user.name.as_str(), &user.org))?;
        audit::append(&mut tx, event, user.created_at).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn user(&self, name: &UserName) -> Result<Option<UserRow>> {
        let row = sqlx::query(select_users!("WHERE name = $1"))
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserRow>> {
        let rows = sqlx::query(select_users!("ORDER BY org, name")).fetch_all(&self.pool).await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_password(
        &self,
        name: &UserName,
        password_hash: &str,
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("user", name.as_str()));
        }
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_join_token(
        &self,
        token_hash: &str,
        org: &OrgName,
        expires_at: i64,
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO join_tokens (hash, org, expires_at, created_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(org.as_str())
            .bind(expires_at)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| insert_error(e, "join token", token_hash, org))?;
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enroll_agent(
        &self,
        token_hash: &str,
        agent: &AgentRow,
        now: i64,
        event: &AuditEvent,
    ) -> Result<AgentRow> {
        // Any early return drops `tx`, which rolls back: the token stays unused.
        let mut tx = self.write().await?;
        let Some(token) = sqlx::query("SELECT org, expires_at, used_at FROM join_tokens WHERE hash = $1")
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(StoreError::TokenRejected(TokenProblem::Unknown));
        };
        if token.try_get::<Option<i64>, _>("used_at")?.is_some() {
            return Err(StoreError::TokenRejected(TokenProblem::AlreadyUsed));
        }
        if now >= token.try_get::<i64, _>("expires_at")? {
            return Err(StoreError::TokenRejected(TokenProblem::Expired));
        }
        // The conditional update is what makes the token single-use, whatever the
        // transaction mode: of two enrollments only one can flip `used_at`.
        let consumed = sqlx::query(
            "UPDATE join_tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $3",
        )
        .bind(now)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if consumed.rows_affected() != 1 {
            return Err(StoreError::TokenRejected(TokenProblem::AlreadyUsed));
        }
        // Not connected anywhere yet, whatever the caller's row says.
        let stored = AgentRow {
            org: OrgName::new(token.try_get::<String, _>("org")?),
            online: false,
            relays: Vec::new(),
            ..agent.clone()
        };
        let mut event = AuditEvent { org: Some(stored.org.clone()), ..event.clone() };
        // A revoked agent's name may be enrolled again: the row takes the new certificate
        // (the old one no longer matches any agent, so it stays refused) and the event says
        // what it replaced. A name in use (not revoked) still clashes.
        let revoked = sqlx::query("SELECT org, cert_fingerprint, revoked_at FROM agents WHERE name = $1")
            .bind(stored.name.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .filter(|r| r.try_get::<Option<i64>, _>("revoked_at").ok().flatten().is_some());
        let written = match revoked {
            Some(old) => {
                event.action = crate::audit::Action::AgentReenrolled;
                event = event.merge_detail(serde_json::json!({
                    "previous_org": old.try_get::<String, _>("org")?,
                    "previous_fingerprint": old.try_get::<String, _>("cert_fingerprint")?,
                    "revoked_at": old.try_get::<Option<i64>, _>("revoked_at")?,
                }));
                sqlx::query(
                    "UPDATE agents SET org = $1, cert_fingerprint = $2, enrolled_at = $3, revoked_at = NULL, \
                     last_seen = NULL, consent = NULL WHERE name = $4 AND revoked_at IS NOT NULL",
                )
                .bind(stored.org.as_str())
                .bind(&stored.cert_fingerprint)
                .bind(stored.enrolled_at)
                .bind(stored.name.as_str())
                .execute(&mut *tx)
                .await
            }
            None => {
                sqlx::query(
                    "INSERT INTO agents (name, org, cert_fingerprint, enrolled_at, revoked_at, last_seen, consent) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(stored.name.as_str())
                .bind(stored.org.as_str())
                .bind(&stored.cert_fingerprint)
                .bind(stored.enrolled_at)
                .bind(stored.revoked_at)
                .bind(stored.last_seen)
                .bind(stored.consent.map(|c| c.to_string()))
                .execute(&mut *tx)
                .await
            }
        };
        if let Err(e) = written {
            // Two unique columns: say which one clashed.
            return Err(if is_unique(&e) && e.to_string().contains("cert_fingerprint") {
                StoreError::Exists { what: "agent certificate", name: stored.cert_fingerprint }
            } else {
                insert_error(e, "agent", stored.name.as_str(), &stored.org)
            });
        }
        audit::append(&mut tx, &event, now).await?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn agent(&self, name: &AgentName) -> Result<Option<AgentRow>> {
        let mut tx = self.read().await?;
        let row = sqlx::query(select_agents!("WHERE name = $1"))
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let agent = match row {
            Some(r) => Some(agent_from_row(&r, presence::of_agent(&mut tx, name.as_str()).await?)?),
            None => None,
        };
        tx.commit().await?;
        Ok(agent)
    }

    async fn agent_by_fingerprint(&self, fingerprint_hex: &str) -> Result<Option<AgentRow>> {
        let mut tx = self.read().await?;
        let row = sqlx::query(select_agents!("WHERE cert_fingerprint = $1"))
            .bind(fingerprint_hex)
            .fetch_optional(&mut *tx)
            .await?;
        let agent = match row {
            Some(r) => {
                let relays = presence::of_agent(&mut tx, &r.try_get::<String, _>("name")?).await?;
                Some(agent_from_row(&r, relays)?)
            }
            None => None,
        };
        tx.commit().await?;
        Ok(agent)
    }

    async fn list_agents(&self) -> Result<Vec<AgentRow>> {
        let mut tx = self.read().await?;
        let rows = sqlx::query(select_agents!("ORDER BY org, name")).fetch_all(&mut *tx).await?;
        let mut relays = presence::all(&mut tx).await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| agent_from_row(r, relays.remove(&r.try_get::<String, _>("name")?).unwrap_or_default()))
            .collect()
    }

    async fn revoked_agents(&self) -> Result<Vec<AgentName>> {
        let names = sqlx::query_scalar::<_, String>("SELECT name FROM agents WHERE revoked_at IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        Ok(names.into_iter().map(AgentName::new).collect())
    }

    async fn revoke_agent(&self, name: &AgentName, now: i64, event: &AuditEvent) -> Result<()> {
        let mut tx = self.write().await?;
        let Some(revoked_at) =
            sqlx::query_scalar::<_, Option<i64>>("SELECT revoked_at FROM agents WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?
        else {
            return Err(not_found("agent", name.as_str()));
        };
        if revoked_at.is_some() {
            // Revoked before: nothing changes, so there is nothing to audit.
            return Ok(());
        }
        sqlx::query("UPDATE agents SET revoked_at = $1 WHERE name = $2")
            .bind(now)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn agent_connected(
        &self,
        name: &AgentName,
        consent: ConsentMode,
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        // A connection stored again (its relay rejoined the cluster) keeps its own time:
        // `last_seen` does not go back.
        let done = sqlx::query(
            "UPDATE agents SET consent = $1, \
             last_seen = CASE WHEN last_seen IS NULL OR last_seen < $2 THEN $2 ELSE last_seen END \
             WHERE name = $3",
        )
        .bind(consent.to_string())
        .bind(now)
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("agent", name.as_str()));
        }
        presence::insert(&mut tx, name.as_str(), &self.relay, now).await?;
        audit::append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn agent_disconnected(
        &self,
        name: &AgentName,
        since: i64,
        now: i64,
        event: &AuditEvent,
    ) -> Result<bool> {
        let mut tx = self.write().await?;
        let done = sqlx::query("UPDATE agents SET last_seen = $1 WHERE name = $2")
            .bind(now)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(not_found("agent", name.as_str()));
        }
        // Only the connection's own row; its end is audited by whoever removes the row.
        let removed = presence::remove(&mut tx, name.as_str(), &self.relay, since).await?;
        if removed {
            audit::append(&mut tx, event, now).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    async fn insert_session(&self, s: &SessionInfo, event: &AuditEvent) -> Result<()> {
        self.insert_session_audited(s, event).await
    }

    async fn update_session(&self, s: &SessionInfo, now: i64, event: &AuditEvent) -> Result<()> {
        self.update_session_audited(s, now, event).await
    }

    async fn session(&self, id: &SessionId) -> Result<Option<SessionInfo>> {
        self.get_session(id).await
    }

    async fn list_sessions(&self, limit: u32) -> Result<Vec<SessionInfo>> {
        self.newest_sessions(limit).await
    }
    async fn open_sessions(&self, limit: u32) -> Result<Vec<crate::store::OpenSession>> {
        self.open_session_rows(limit).await
    }

    async fn open_session(&self, id: &SessionId) -> Result<Option<crate::store::OpenSession>> {
        self.open_session_row(id).await
    }

    async fn close_dangling_sessions(&self, reason: &str, now: i64) -> Result<u64> {
        self.close_dangling(reason, now).await
    }

    async fn add_window(&self, w: &WindowRow, event: &AuditEvent) -> Result<()> {
        self.add_window_audited(w, event).await
    }

    async fn list_windows(&self, org: Option<&OrgName>) -> Result<Vec<WindowRow>> {
        self.windows(org).await
    }

    async fn remove_window(&self, id: &str, now: i64, event: &AuditEvent) -> Result<()> {
        self.remove_window_audited(id, now, event).await
    }

    async fn append_audit(&self, event: &AuditEvent, now: i64) -> Result<AuditRecord> {
        self.append_alone(event, now).await
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        self.list_audit_events(filter).await
    }

    async fn audit_chain(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Result<AuditRecord, UnreadableEvent>>> {
        self.audit_page(after_seq, limit).await
    }

    // ---- Outgoing webhooks: see webhooks.rs ----

    async fn add_webhook(&self, hook: &WebhookRow, event: &AuditEvent) -> Result<WebhookRow> {
        self.insert_webhook(hook, event).await
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookRow>> {
        self.active_webhooks().await
    }

    async fn remove_webhook(&self, id: &str, now: i64, event: &AuditEvent) -> Result<u64> {
        self.delete_webhook(id, now, event).await
    }

    async fn webhook_scan(&self, limit: u32) -> Result<WebhookScan> {
        self.scan_for_webhooks(limit).await
    }

    async fn enqueue_webhook_deliveries(
        &self,
        from: i64,
        to: i64,
        deliveries: &[NewDelivery],
    ) -> Result<bool> {
        self.enqueue_deliveries(from, to, deliveries).await
    }

    async fn due_webhook_deliveries(&self, now: i64, limit: u32) -> Result<Vec<DueDelivery>> {
        self.due_deliveries(now, limit).await
    }

    async fn record_webhook_attempt(
        &self,
        attempt: &AttemptRecord,
        now: i64,
        event: &AuditEvent,
    ) -> Result<()> {
        self.record_attempt(attempt, now, event).await
    }

    async fn list_webhook_deliveries(&self, webhook: Option<&str>, limit: u32) -> Result<Vec<DeliveryRow>> {
        self.deliveries(webhook, limit).await
    }
}
