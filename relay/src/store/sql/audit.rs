//! The audit log in SQLite (table `audit_events`, migration `0002_audit.sql`).
//!
//! - [`append`] runs inside the caller's write transaction: it reads the last event's
//!   sequence number and hash and inserts the next event, so the event commits or rolls
//!   back with the change it describes. Callers open that transaction with
//!   `BEGIN IMMEDIATE`, which takes SQLite's write lock before the read: two writers, in
//!   one process or two, can never both extend the chain from the same event.
//! - Reading back keeps every column exactly as stored (the hash covers the stored bytes);
//!   a row that cannot be read as an event is reported, not panicked on.
//!
//! It does not verify the chain; that is [`crate::audit::ChainVerifier`]'s job.

use super::Backend;
use super::DbConn;
use super::DbRow;
use crate::audit::{AuditEvent, AuditFilter, AuditRecord, GENESIS};
use crate::store::{Result, StoreError, UnreadableEvent};
use sqlx::Row;

macro_rules! select_audit {
    ($rest:literal) => {
        concat!(
            "SELECT seq, at, actor, org, action, target, session, detail, prev_hash, hash FROM audit_events ",
            $rest
        )
    };
}

/// Appends `event` at `now` after the newest event. Must run in a write transaction.
pub(super) async fn append(conn: &mut DbConn, event: &AuditEvent, now: i64) -> Result<AuditRecord> {
    let last: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let (seq, prev_hash) = match last {
        None => (1, GENESIS.to_owned()),
        Some((seq, hash)) => (
            seq.checked_add(1).ok_or_else(|| StoreError::Corrupt("audit sequence number overflow".into()))?,
            hash,
        ),
    };
    let record = event.seal(seq, now, &prev_hash);
    sqlx::query(
        "INSERT INTO audit_events (seq, at, actor, org, action, target, session, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(record.seq)
    .bind(record.at)
    .bind(&record.actor)
    .bind(&record.org)
    .bind(&record.action)
    .bind(&record.target)
    .bind(&record.session)
    .bind(&record.detail)
    .bind(&record.prev_hash)
    .bind(&record.hash)
    .execute(&mut *conn)
    .await?;
    Ok(record)
}

/// Reads one row. The sequence number is the row's key, so it is always readable; any
/// other column that is not what it should be makes the row unreadable.
fn record_from_row(r: &DbRow) -> Result<Result<AuditRecord, UnreadableEvent>> {
    let seq: i64 = r.try_get("seq")?;
    let read = || -> std::result::Result<AuditRecord, sqlx::Error> {
        Ok(AuditRecord {
            seq,
            at: r.try_get("at")?,
            actor: r.try_get("actor")?,
            org: r.try_get("org")?,
            action: r.try_get("action")?,
            target: r.try_get("target")?,
            session: r.try_get("session")?,
            detail: r.try_get("detail")?,
            prev_hash: r.try_get("prev_hash")?,
            hash: r.try_get("hash")?,
        })
    };
    Ok(read().map_err(|e| UnreadableEvent { seq, reason: e.to_string() }))
}

impl Backend {
    pub(super) async fn append_alone(&self, event: &AuditEvent, now: i64) -> Result<AuditRecord> {
        let mut tx = self.write().await?;
        let record = append(&mut tx, event, now).await?;
        tx.commit().await?;
        Ok(record)
    }

    pub(super) async fn list_audit_events(&self, f: &AuditFilter) -> Result<Vec<AuditRecord>> {
        let sql = select_audit!(
            "WHERE seq > $1 \
             AND ($2 IS NULL OR at >= $2) AND ($3 IS NULL OR at < $3) \
             AND ($4 IS NULL OR org = $4) AND ($5 IS NULL OR session = $5) AND ($6 IS NULL OR actor = $6) \
             ORDER BY seq LIMIT $7"
        );
        let rows = sqlx::query(sql)
            .bind(f.after_seq.unwrap_or(0))
            .bind(f.since)
            .bind(f.until)
            .bind(f.org.as_ref().map(|o| o.as_str()))
            .bind(f.session.as_ref().map(|s| s.as_str()))
            .bind(f.actor.as_deref())
            // "No limit" in a form both dialects take (SQLite's -1 is an error in PostgreSQL).
            .bind(f.limit.map_or(i64::MAX, i64::from))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                record_from_row(r)?.map_err(|u| {
                    StoreError::Corrupt(format!(
                        "audit event #{} cannot be read ({}); run `assist-relay audit verify`",
                        u.seq, u.reason
                    ))
                })
            })
            .collect()
    }

    pub(super) async fn audit_page(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<Result<AuditRecord, UnreadableEvent>>> {
        let sql = select_audit!("WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows = sqlx::query(sql).bind(after_seq).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(record_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, BreakReason, ChainVerifier, verify_chain};
    use crate::store::{AgentRow, Store};
    use assist_proto::ids::AgentName;
    use serde_json::json;

    fn ev(actor: &str, action: Action) -> AuditEvent {
        AuditEvent::new(actor, action)
    }

    async fn all(store: &Backend) -> Vec<AuditRecord> {
        store.list_audit(&AuditFilter::default()).await.unwrap()
    }

    /// Reads the whole chain the way `audit verify` does, in small pages.
    async fn verify(store: &Backend) -> std::result::Result<u64, (i64, BreakReason)> {
        let mut v = ChainVerifier::new();
        let mut after = 0;
        loop {
            let page = store.audit_chain(after, 3).await.unwrap();
            if page.is_empty() {
                return Ok(v.finish().count);
            }
            for row in page {
                let r = row.map_err(|u| (u.seq, BreakReason::Unreadable(u.reason)))?;
                v.push(&r).map_err(|b| (b.seq, b.reason))?;
                after = r.seq;
            }
        }
    }

    #[tokio::test]
    async fn state_changes_and_their_events_form_one_chain() {
        let (_guard, store) = super::super::test_store().await;
        store
            .add_org(&"acme".into(), &[], 10, &ev("admin-cli", Action::OrgAdded).target("acme"))
            .await
            .unwrap();
        let login = ev("alice", Action::LoginFailed).detail(json!({"reason": "unknown user"}));
        let rec = store.append_audit(&login, 20).await.unwrap();
        assert_eq!((rec.seq, rec.at, rec.action.as_str()), (2, 20, "login.failed"));
        let events = all(&store).await;
        assert_eq!(events.len(), 2);
        assert_eq!(events[1], rec);
        assert_eq!(events[1].prev_hash, events[0].hash);
        assert_eq!(verify(&store).await, Ok(2));
        // A refused change appends nothing.
        assert!(store.add_org(&"acme".into(), &[], 30, &ev("admin-cli", Action::OrgAdded)).await.is_err());
        assert_eq!(all(&store).await.len(), 2);
    }

    #[tokio::test]
    async fn filters_select_and_pages_continue() {
        let (_guard, store) = super::super::test_store().await;
        let acme = "acme".into();
        let s1 = "s-1".into();
        let events = [
            (ev("alice", Action::SessionRequested).org(&acme).session(&s1), 100),
            (ev("bob", Action::SessionApproved).org(&acme).session(&s1), 200),
            (ev("carol", Action::LoginSucceeded).org(&"vendor".into()), 300),
            (ev("alice", Action::SessionEnded).org(&acme).session(&s1), 400),
        ];
        for (e, at) in &events {
            store.append_audit(e, *at).await.unwrap();
        }
        let seqs = |f: AuditFilter| {
            let store = store.clone();
            async move { store.list_audit(&f).await.unwrap().iter().map(|r| r.seq).collect::<Vec<_>>() }
        };
        assert_eq!(
            seqs(AuditFilter { since: Some(200), until: Some(400), ..Default::default() }).await,
            [2, 3]
        );
        assert_eq!(seqs(AuditFilter { org: Some(acme.clone()), ..Default::default() }).await, [1, 2, 4]);
        assert_eq!(seqs(AuditFilter { session: Some(s1), ..Default::default() }).await, [1, 2, 4]);
        assert_eq!(seqs(AuditFilter { actor: Some("alice".into()), ..Default::default() }).await, [1, 4]);
        assert_eq!(
            seqs(AuditFilter { after_seq: Some(1), limit: Some(2), ..Default::default() }).await,
            [2, 3]
        );
        assert_eq!(
            seqs(AuditFilter { actor: Some("mallory".into()), ..Default::default() }).await,
            Vec::<i64>::new()
        );
    }

    /// Rejects every insert of `action` into the audit log, as a full disk or a broken
    /// audit table would: the change the event describes must not commit either.
    async fn refuse_audit_of(store: &Backend, action: Action) {
        for sql in super::super::test_sql::refuse_audit(&action.to_string()) {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&store.pool).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_change_whose_event_cannot_be_stored_is_rolled_back() {
        let (_guard, store) = super::super::test_store().await;
        store.add_org(&"acme".into(), &[], 1, &ev("admin-cli", Action::OrgAdded)).await.unwrap();
        store
            .add_join_token("t1", &"acme".into(), 1000, 2, &ev("admin-cli", Action::TokenIssued))
            .await
            .unwrap();
        let agent = AgentRow {
            name: "db01".into(),
            org: "ignored".into(),
            cert_fingerprint: "f1".into(),
            enrolled_at: 3,
            revoked_at: None,
            last_seen: None,
            consent: None,
            online: false,
            relays: Vec::new(),
        };

        refuse_audit_of(&store, Action::AgentEnrolled).await;
        let enrolled = ev("agent:db01", Action::AgentEnrolled);
        assert!(matches!(store.enroll_agent("t1", &agent, 3, &enrolled).await, Err(StoreError::Db(_))));
        assert_eq!(store.agent(&"db01".into()).await.unwrap(), None);
        let used: Option<i64> = sqlx::query_scalar("SELECT used_at FROM join_tokens WHERE hash = 't1'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(used, None, "the token stays unused");

        sqlx::query(super::super::test_sql::ALLOW_AUDIT).execute(&store.pool).await.unwrap();
        let row = store.enroll_agent("t1", &agent, 4, &enrolled).await.unwrap();
        let last = all(&store).await.pop().unwrap();
        assert_eq!((last.action.as_str(), last.org.as_deref()), ("agent.enrolled", Some("acme")));

        refuse_audit_of(&store, Action::AgentRevoked).await;
        let name = AgentName::new("db01");
        assert!(store.revoke_agent(&name, 5, &ev("admin-cli", Action::AgentRevoked)).await.is_err());
        assert_eq!(store.agent(&name).await.unwrap(), Some(row), "still enrolled, not revoked");
        assert_eq!(verify(&store).await, Ok(3));
    }

    #[tokio::test]
    async fn audit_rows_cannot_be_updated_or_deleted_through_sql() {
        let (_guard, store) = super::super::test_store().await;
        store.append_audit(&ev("alice", Action::LoginSucceeded), 1).await.unwrap();
        for sql in ["UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"] {
            let err = sqlx::query(sql).execute(&store.pool).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
    }

    #[tokio::test]
    async fn a_changed_or_unreadable_row_breaks_the_chain_at_that_row() {
        let (_guard, store) = super::super::test_store().await;
        for i in 0..5 {
            let e = ev("alice", Action::LoginSucceeded).detail(json!({ "n": i }));
            store.append_audit(&e, i).await.unwrap();
        }
        assert_eq!(verify(&store).await, Ok(5));
        // Whoever can write the file can drop the guard; the chain still tells.
        sqlx::query(super::super::test_sql::DROP_UPDATE_GUARD).execute(&store.pool).await.unwrap();
        sqlx::query("UPDATE audit_events SET actor = 'alicf' WHERE seq = 3")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(verify(&store).await, Err((3, BreakReason::Altered)));

        sqlx::query("UPDATE audit_events SET actor = 'alice' WHERE seq = 3")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(verify(&store).await, Ok(5));
        // Not UTF-8: a flipped high bit in a text column (SQLite only: PostgreSQL checks
        // the encoding of what it stores).
        let Some(sql) = super::super::test_sql::NOT_UTF8_DETAIL else { return };
        sqlx::query(sql).execute(&store.pool).await.unwrap();
        assert!(matches!(verify(&store).await, Err((4, BreakReason::Unreadable(_)))));
        assert!(matches!(
            store.list_audit(&AuditFilter::default()).await,
            Err(StoreError::Corrupt(m)) if m.contains("#4")
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_on_one_database_extend_one_chain() {
        // Two pools stand for two relays, or a relay and an admin command: separate
        // connections, as separate processes would have, contending for SQLite's write
        // lock or PostgreSQL's chain head row.
        let (guard, a) = super::super::test_store().await;
        let b = super::super::reopen(&guard).await;
        let tasks: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .flat_map(|(i, store)| {
                (0..4).map(move |t| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for n in 0..25 {
                            let e = ev(&format!("writer-{i}-{t}"), Action::LoginSucceeded)
                                .detail(json!({ "n": n }));
                            store.append_audit(&e, n).await.unwrap();
                        }
                    })
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(verify(&a).await, Ok(200));
        // What `assist-relay audit verify` runs, through the other handle.
        let verified = crate::audit_cmd::verify(&b).await.unwrap().map(|v| v.count);
        assert_eq!(verified, Ok(200));
        let records = all(&b).await;
        let seqs: Vec<i64> = records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>(), "gapless and in order");
        assert_eq!(verify_chain(&records).map(|v| v.count), Ok(200));
        for i in 0..2 {
            for t in 0..4 {
                let mine = records.iter().filter(|r| r.actor == format!("writer-{i}-{t}")).count();
                assert_eq!(mine, 25);
            }
        }
    }
}
