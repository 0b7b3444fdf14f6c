//! Webhooks against a real SQLite store and a real HTTP receiver on 127.0.0.1: what gets
//! queued for whom, retries, giving up, removal and restarts. (The whole path through the
//! relay binary is in `tests/e2e/webhooks.rs`.)

use super::admin::{self, NewWebhook};
use super::backoff::RetryPolicy;
use super::rows::{DeliveryState, PayloadFormat};
use super::worker::queue_new_events;
use super::{WebhookConfig, Worker, sign};
use crate::admin::AdminError;
use crate::audit::{Action, AuditEvent, AuditFilter, AuditRecord};
use crate::store::{SqliteStore, Store};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// A request as the receiver got it.
#[derive(Debug)]
struct Received {
    event: String,
    delivery: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on 127.0.0.1:0 that answers with the statuses in `script` (then 200)
/// and hands every request to the test.
async fn receiver(script: &[u16]) -> (String, mpsc::UnboundedReceiver<Received>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<u16>>()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (tx, script) = (tx.clone(), script.clone());
            async move {
                let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let _ = tx.send(Received {
                    event: h("x-assist-event"),
                    delivery: h("x-assist-delivery"),
                    timestamp: h("x-assist-timestamp"),
                    signature: h("x-assist-signature"),
                    body: body.to_vec(),
                });
                let status = script.lock().unwrap().pop_front().unwrap_or(200);
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

fn quick() -> WebhookConfig {
    WebhookConfig {
        poll: Duration::from_millis(20),
        timeout: Duration::from_secs(10),
        retry: RetryPolicy { base: Duration::from_millis(50), max_attempts: 3, ..RetryPolicy::default() },
        concurrency: 4,
        shutdown_grace: Duration::from_secs(2),
    }
}

/// A store with orgs `vendor`, `acme` (supported by vendor) and `other`.
async fn world() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("assist.db")).await.unwrap();
    for (org, vendors) in
        [("operator", vec![]), ("vendor", vec![]), ("acme", vec!["vendor".into()]), ("other", vec![])]
    {
        store.add_org(&org.into(), &vendors, 1, &AuditEvent::new("test", Action::OrgAdded)).await.unwrap();
    }
    (dir, Arc::new(store))
}

async fn hook(store: &dyn Store, org: &str, url: &str, events: Option<&str>) -> admin::Added {
    let new = NewWebhook { org, url, events, format: PayloadFormat::Json, secret: None };
    admin::add(store, new, "admin-cli", 10).await.unwrap()
}

/// A session event of `acme`'s agent, asked for by an engineer of `vendor`.
async fn session_event(store: &dyn Store, action: Action, session: &str) -> AuditRecord {
    let e = AuditEvent::new("alice", action)
        .org(&"acme".into())
        .target("erp-db01")
        .session(&session.into())
        .detail(json!({ "engineer_org": "vendor", "ticket": "INC-7" }));
    store.append_audit(&e, 100).await.unwrap()
}

async fn audit_of(store: &dyn Store, action: &str) -> Vec<AuditRecord> {
    let all = store.list_audit(&AuditFilter::default()).await.unwrap();
    all.into_iter().filter(|r| r.action == action).collect()
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("a request in time").unwrap()
}

/// Waits until the store holds `n` audit events of `action`.
async fn wait_audit(store: &dyn Store, action: &str, n: usize) -> Vec<AuditRecord> {
    for _ in 0..3000 {
        let found = audit_of(store, action).await;
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} {action} events");
}

#[tokio::test]
async fn events_are_queued_for_the_hooks_they_concern_and_only_once() {
    let (_dir, store) = world().await;
    let before = session_event(store.as_ref(), Action::SessionRequested, "s-0").await;
    let customer = hook(store.as_ref(), "acme", "http://127.0.0.1:9/a", None).await;
    let vendor = hook(store.as_ref(), "vendor", "http://127.0.0.1:9/v", Some("session.ended")).await;
    let unrelated = hook(store.as_ref(), "other", "http://127.0.0.1:9/o", None).await;
    let operator =
        hook(store.as_ref(), "operator", "http://127.0.0.1:9/op", Some("session.requested,login.failed"))
            .await;
    assert!(customer.webhook.id.starts_with("wh-") && customer.secret.len() == 64);

    session_event(store.as_ref(), Action::SessionRequested, "s-1").await;
    session_event(store.as_ref(), Action::SessionEnded, "s-1").await;
    store.append_audit(&AuditEvent::new("mallory", Action::LoginFailed), 100).await.unwrap();
    store
        .append_audit(&AuditEvent::new("relay", Action::WebhookFailed).org(&"acme".into()), 100)
        .await
        .unwrap();
    queue_new_events(store.as_ref()).await.unwrap();
    queue_new_events(store.as_ref()).await.unwrap();

    let mut queued: Vec<(String, String)> = store
        .list_webhook_deliveries(None, 100)
        .await
        .unwrap()
        .into_iter()
        .inspect(|d| assert!(d.event_seq > before.seq, "nothing from before the hooks: {d:?}"))
        .map(|d| (d.webhook, d.event))
        .collect();
    queued.sort();
    let mut expected = vec![
        (customer.webhook.id.clone(), "session.requested".to_owned()),
        (customer.webhook.id.clone(), "session.ended".to_owned()),
        (vendor.webhook.id.clone(), "session.ended".to_owned()),
        (operator.webhook.id.clone(), "session.requested".to_owned()),
        (operator.webhook.id.clone(), "login.failed".to_owned()),
    ];
    expected.sort();
    assert_eq!(queued, expected, "other's hook gets nothing; webhook.* events go nowhere");
    assert!(!queued.iter().any(|(h, _)| *h == unrelated.webhook.id));

    // A cursor that moved under a stale scan: nothing is queued twice.
    assert!(!store.enqueue_webhook_deliveries(0, 1, &[]).await.unwrap());
}

#[tokio::test]
async fn a_failed_attempt_is_retried_and_every_attempt_is_audited() {
    let (_dir, store) = world().await;
    let (url, mut rx) = receiver(&[500]).await;
    let added = hook(store.as_ref(), "acme", &url, None).await;
    let worker = Worker::start(store.clone(), quick());
    let requested = session_event(store.as_ref(), Action::SessionRequested, "s-1").await;

    let first = next(&mut rx).await;
    let second = next(&mut rx).await;
    assert_eq!(first.delivery, second.delivery, "one delivery id across attempts");
    assert_eq!(first.body, second.body, "the same body on every attempt");
    assert_eq!(
        (first.event.as_str(), first.json()["seq"].as_i64()),
        ("session.requested", Some(requested.seq))
    );
    for r in [&first, &second] {
        let now = crate::now_ms() / 1000;
        sign::verify(&added.secret, &r.timestamp, &r.body, &r.signature, now, 300).unwrap();
    }

    let delivered = wait_audit(store.as_ref(), "webhook.delivered", 1).await;
    let failed = audit_of(store.as_ref(), "webhook.failed").await;
    let (f, d): (Value, Value) = (
        serde_json::from_str(&failed[0].detail).unwrap(),
        serde_json::from_str(&delivered[0].detail).unwrap(),
    );
    assert_eq!(
        (f["attempt"].as_u64(), f["status"].as_u64(), f["gave_up"].as_bool()),
        (Some(1), Some(500), Some(false))
    );
    assert_eq!((d["attempt"].as_u64(), d["status"].as_u64()), (Some(2), Some(200)));
    assert_eq!(d["delivery"], first.delivery.as_str());
    assert_eq!(d["url"], url.trim_end_matches("/hook"), "the origin, never the path");
    assert_eq!(delivered[0].session.as_deref(), Some("s-1"));
    assert_eq!(delivered[0].target.as_deref(), Some(added.webhook.id.as_str()));
    let row = &store.list_webhook_deliveries(None, 10).await.unwrap()[0];
    assert_eq!((row.state, row.attempts, row.last_status), (DeliveryState::Delivered, 2, Some(200)));
    worker.stop().await;
    // The attempts' own events went nowhere.
    assert_eq!(store.list_webhook_deliveries(None, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_delivery_is_given_up_after_its_last_attempt() {
    let (_dir, store) = world().await;
    let (url, mut rx) = receiver(&[503, 503, 503, 503]).await;
    hook(store.as_ref(), "acme", &url, None).await;
    let worker = Worker::start(store.clone(), quick());
    session_event(store.as_ref(), Action::SessionDenied, "s-1").await;
    for _ in 0..3 {
        next(&mut rx).await;
    }
    let failed = wait_audit(store.as_ref(), "webhook.failed", 3).await;
    let last: Value = serde_json::from_str(&failed[2].detail).unwrap();
    assert_eq!((last["attempt"].as_u64(), last["gave_up"].as_bool()), (Some(3), Some(true)));
    let row = &store.list_webhook_deliveries(None, 10).await.unwrap()[0];
    assert_eq!(
        (row.state, row.attempts, row.last_error.as_deref()),
        (DeliveryState::Failed, 3, Some("HTTP status 503"))
    );
    worker.stop().await;
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried_with_the_error_audited() {
    let (_dir, store) = world().await;
    // A port that was free a moment ago: connections are refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    hook(store.as_ref(), "acme", &format!("http://{closed}/hook"), None).await;
    let worker = Worker::start(store.clone(), quick());
    session_event(store.as_ref(), Action::SessionStarted, "s-1").await;
    let failed = wait_audit(store.as_ref(), "webhook.failed", 1).await;
    let detail: Value = serde_json::from_str(&failed[0].detail).unwrap();
    assert_eq!(detail["status"], Value::Null);
    assert!(detail["error"].as_str().unwrap().to_lowercase().contains("connect"), "{detail}");
    worker.stop().await;
}

#[tokio::test]
async fn a_restart_sends_what_is_new_and_nothing_twice() {
    let (_dir, store) = world().await;
    let (url, mut rx) = receiver(&[]).await;
    hook(store.as_ref(), "acme", &url, None).await;
    let worker = Worker::start(store.clone(), quick());
    for action in [Action::SessionRequested, Action::SessionApproved, Action::SessionStarted] {
        session_event(store.as_ref(), action, "s-1").await;
    }
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..3 {
        seen.push(next(&mut rx).await.event);
    }
    assert_eq!(seen, ["session.requested", "session.approved", "session.started"], "in order");
    wait_audit(store.as_ref(), "webhook.delivered", 3).await;
    worker.stop().await;

    // Stored while no worker runs: sent by the next one, and only it.
    session_event(store.as_ref(), Action::SessionEnded, "s-1").await;
    let worker = Worker::start(store.clone(), quick());
    assert_eq!(next(&mut rx).await.event, "session.ended");
    wait_audit(store.as_ref(), "webhook.delivered", 4).await;
    worker.stop().await;
    assert!(rx.try_recv().is_err(), "nothing sent twice");
}

#[tokio::test]
async fn removing_a_hook_cancels_what_it_had_not_delivered() {
    let (_dir, store) = world().await;
    let added = hook(store.as_ref(), "acme", "http://127.0.0.1:9/never", None).await;
    session_event(store.as_ref(), Action::SessionRequested, "s-1").await;
    queue_new_events(store.as_ref()).await.unwrap();
    assert_eq!(admin::remove(store.as_ref(), &added.webhook.id, "admin-cli", 20).await.unwrap(), 1);
    let row = &store.list_webhook_deliveries(None, 10).await.unwrap()[0];
    assert_eq!(row.state, DeliveryState::Cancelled);
    assert!(store.due_webhook_deliveries(i64::MAX, 10).await.unwrap().is_empty());
    assert!(admin::list(store.as_ref()).await.unwrap().is_empty());
    let removed = audit_of(store.as_ref(), "webhook.removed").await;
    assert_eq!(serde_json::from_str::<Value>(&removed[0].detail).unwrap()["cancelled_deliveries"], 1);
    assert!(matches!(
        admin::remove(store.as_ref(), &added.webhook.id, "admin-cli", 30).await,
        Err(AdminError::NotFound { .. })
    ));
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let (_dir, store) = world().await;
    let events_before = store.list_audit(&AuditFilter::default()).await.unwrap().len();
    let add = |org: &'static str, url: &'static str, events: Option<&'static str>, secret: Option<&str>| {
        let store = store.clone();
        let secret = secret.map(str::to_owned);
        async move {
            let new = NewWebhook { org, url, events, format: PayloadFormat::Json, secret };
            admin::add(store.as_ref(), new, "admin-cli", 10).await.unwrap_err().to_string()
        }
    };
    let cases = [
        (add("acme", "ftp://127.0.0.1/x", None, None).await, "http:// or https://"),
        (add("acme", "http://127.0.0.1/x", Some("session.maybe"), None).await, "unknown event"),
        (add("acme", "http://127.0.0.1/x", Some("webhook.failed"), None).await, "cannot trigger webhooks"),
        (add("acme", "http://127.0.0.1/x", Some(" , "), None).await, "names no event"),
        (add("nowhere", "http://127.0.0.1/x", None, None).await, "nowhere"),
        (add("bad name!", "http://127.0.0.1/x", None, None).await, "organisation"),
        (add("acme", "http://127.0.0.1/x", None, Some("short")).await, "too short"),
        (add("acme", "http://127.0.0.1/x", None, Some("has a space in it, long")).await, "spaces"),
    ];
    for (error, says) in cases {
        assert!(error.contains(says), "{error:?} should say {says:?}");
    }
    assert!(admin::list(store.as_ref()).await.unwrap().is_empty());
    assert_eq!(store.list_audit(&AuditFilter::default()).await.unwrap().len(), events_before);
}
