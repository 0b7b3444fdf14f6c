//! The relay's webhook task: turns new audit events into queued deliveries, sends the due
//! ones, and stores every attempt's outcome.
//!
//! Each tick ([`WebhookConfig::poll`]):
//! - **queue**: read the events after the cursor with the active webhooks; for each event
//!   and each webhook that wants it, build the body; queue them all and move the cursor
//!   in one transaction (`Store::enqueue_webhook_deliveries`);
//! - **send**: take the due deliveries, lowest event first, grouped by webhook; each
//!   webhook's group is sent in order by one task (at most one task per webhook, at most
//!   [`WebhookConfig::concurrency`] tasks), which stops at the first failure so that a dead
//!   receiver costs one timeout per tick, not one per queued event.
//!
//! The task owns nothing the broker waits for: it only reads and writes the store. It
//! ends when its [`Worker`] is stopped or dropped; attempts still running after
//! [`WebhookConfig::shutdown_grace`] are abandoned unrecorded and sent again after a
//! restart (same delivery id).

use super::backoff::{Next, RetryPolicy, random_unit};
use super::http::{Outcome, Sender, origin};
use super::rows::{AttemptRecord, DeliveryState, DueDelivery, NewDelivery};
use super::{in_scope, payload, sign, wants_action};
use crate::audit::{Action, AuditEvent, RELAY_ACTOR};
use crate::now_ms;
use crate::store::{Store, StoreError};
use assist_proto::ids::SessionId;
use assist_proto::msg::SessionInfo;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

/// Audit events read per query.
const PAGE: u32 = 200;
/// Pages queued per tick at most, so that a long backlog does not hold up sending.
const PAGES_PER_TICK: usize = 10;
/// Due deliveries read per tick.
const DUE_BATCH: u32 = 200;

/// How the webhook task runs.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// How often it looks for new events and due deliveries. Default 1 s: two indexed
    /// queries, and an alert within about a second.
    pub poll: Duration,
    /// One attempt's limit: connect, TLS, request and response head. Default 10 s.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Webhooks sent to at once. Default 8.
    pub concurrency: usize,
    /// How long stopping waits for attempts under way. Default 2 s.
    pub shutdown_grace: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            concurrency: 8,
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// The running webhook task. Dropping it stops the task at once; [`Worker::stop`] lets
/// attempts under way finish first.
#[derive(Debug)]
pub struct Worker {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn start(store: Arc<dyn Store>, cfg: WebhookConfig) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(store, cfg, stopped));
        Self { stop, task: Some(task) }
    }

    /// Stops the task and waits for it (at most the shutdown grace, plus a little).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn run(store: Arc<dyn Store>, cfg: WebhookConfig, mut stopped: watch::Receiver<bool>) {
    let sender = Sender::new(cfg.timeout);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut tick = tokio::time::interval(cfg.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => {
                        warn!(error = %e, "webhook delivery task failed");
                        e.id()
                    }
                };
                busy.remove(&id);
                continue;
            }
            _ = tick.tick() => {}
        }
        if let Err(e) = queue_new_events(store.as_ref()).await {
            warn!(error = %e, "cannot queue webhook deliveries");
        }
        let in_flight: HashSet<String> = busy.values().cloned().collect();
        match due_groups(store.as_ref(), &in_flight).await {
            Ok(groups) => {
                for (hook, group) in groups {
                    if tasks.len() >= cfg.concurrency {
                        break;
                    }
                    let (store, sender, retry) = (store.clone(), sender.clone(), cfg.retry);
                    let handle = tasks.spawn(async move {
                        for d in group {
                            if !deliver(store.as_ref(), &sender, &retry, d).await {
                                break;
                            }
                        }
                    });
                    busy.insert(handle.id(), hook);
                }
            }
            Err(e) => warn!(error = %e, "cannot read due webhook deliveries"),
        }
    }
    if !tasks.is_empty() {
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(cfg.shutdown_grace, drain).await.is_err() {
            info!(
                abandoned = tasks.len(),
                "webhook attempts abandoned at shutdown; sent again after restart"
            );
            tasks.abort_all();
        }
    }
}

/// Queues deliveries for the audit events after the cursor, a page at a time.
pub(super) async fn queue_new_events(store: &dyn Store) -> Result<(), StoreError> {
    for _ in 0..PAGES_PER_TICK {
        let scan = store.webhook_scan(PAGE).await?;
        if scan.page_end == scan.cursor {
            return Ok(());
        }
        let now = now_ms();
        let mut sessions: HashMap<String, Option<SessionInfo>> = HashMap::new();
        let mut deliveries = Vec::new();
        for event in &scan.events {
            let hooks: Vec<_> = scan
                .hooks
                .iter()
                .filter(|h| event.seq > h.after_seq && wants_action(h.events.as_deref(), &event.action))
                .collect();
            if hooks.is_empty() {
                continue;
            }
            let session = match &event.session {
                Some(id) => match sessions.get(id) {
                    Some(found) => found.clone(),
                    None => {
                        let found = store.session(&SessionId::new(id.clone())).await?;
                        sessions.insert(id.clone(), found.clone());
                        found
                    }
                },
                None => None,
            };
            let detail_org = serde_json::from_str::<serde_json::Value>(&event.detail)
                .ok()
                .and_then(|d| d.get("engineer_org").and_then(|o| o.as_str()).map(str::to_owned));
            let engineer_org = session.as_ref().map(|s| s.engineer_org.to_string()).or(detail_org);
            for hook in hooks {
                if !in_scope(hook.org.as_str(), event.org.as_deref(), engineer_org.as_deref()) {
                    continue;
                }
                deliveries.push(NewDelivery {
                    id: format!("d-{}", sign::random_hex::<16>()),
                    webhook: hook.id.clone(),
                    event_seq: event.seq,
                    event: event.action.clone(),
                    session: event.session.clone(),
                    body: payload::body(hook.format, event, session.as_ref()),
                    created_at: now,
                });
            }
        }
        let queued = deliveries.len();
        if !store.enqueue_webhook_deliveries(scan.cursor, scan.page_end, &deliveries).await? {
            warn!("the webhook cursor moved under this relay: is another relay using the same database?");
            return Ok(());
        }
        if queued > 0 {
            debug!(queued, up_to = scan.page_end, "webhook deliveries queued");
        }
    }
    Ok(())
}

/// The due deliveries, grouped by webhook in order of their first event, without the
/// webhooks that have a task under way.
async fn due_groups(
    store: &dyn Store,
    in_flight: &HashSet<String>,
) -> Result<Vec<(String, Vec<DueDelivery>)>, StoreError> {
    let mut groups: Vec<(String, Vec<DueDelivery>)> = Vec::new();
    for d in store.due_webhook_deliveries(now_ms(), DUE_BATCH).await? {
        if in_flight.contains(&d.delivery.webhook) {
            continue;
        }
        match groups.iter_mut().find(|(hook, _)| *hook == d.delivery.webhook) {
            Some((_, group)) => group.push(d),
            None => groups.push((d.delivery.webhook.clone(), vec![d])),
        }
    }
    Ok(groups)
}

/// One attempt at one delivery, stored and audited. Returns whether it was delivered.
async fn deliver(store: &dyn Store, sender: &Sender, retry: &RetryPolicy, d: DueDelivery) -> bool {
    let attempt = d.delivery.attempts.saturating_add(1);
    let timestamp = now_ms().div_euclid(1000);
    let headers = [
        ("x-assist-event", d.delivery.event.clone()),
        ("x-assist-delivery", d.delivery.id.clone()),
        ("x-assist-timestamp", timestamp.to_string()),
        ("x-assist-signature", sign::signature(&d.secret, timestamp, d.body.as_bytes())),
    ];
    let outcome = sender.post(&d.url, &headers, d.body.clone()).await;
    let now = now_ms();
    let delivered = outcome.is_success();
    let (status, error) = match &outcome {
        Outcome::Status(s) => (Some(*s), (!delivered).then(|| format!("HTTP status {s}"))),
        Outcome::Error(e) => (None, Some(crate::audit::clip(e, 500).to_owned())),
    };
    let (state, next_attempt_at) = if delivered {
        (DeliveryState::Delivered, now)
    } else {
        match retry.next(attempt, d.delivery.created_at, now, random_unit()) {
            Next::RetryAt(at) => (DeliveryState::Pending, at),
            Next::GiveUp => (DeliveryState::Failed, now),
        }
    };
    let mut detail = json!({
        "delivery": d.delivery.id,
        "event": d.delivery.event,
        "event_seq": d.delivery.event_seq,
        "attempt": attempt,
        "url": origin(&d.url),
        "status": status,
    });
    if !delivered {
        detail["error"] = json!(error);
        detail["gave_up"] = json!(state == DeliveryState::Failed);
        if state == DeliveryState::Pending {
            detail["retry_at"] = json!(crate::fmt_time_ms(next_attempt_at));
        }
    }
    let action = if delivered { Action::WebhookDelivered } else { Action::WebhookFailed };
    let mut event =
        AuditEvent::new(RELAY_ACTOR, action).org(&d.org).target(d.delivery.webhook.as_str()).detail(detail);
    if let Some(session) = &d.delivery.session {
        event = event.session(&SessionId::new(session.clone()));
    }
    let record =
        AttemptRecord { delivery: d.delivery.id.clone(), attempt, state, next_attempt_at, status, error };
    match store.record_webhook_attempt(&record, now, &event).await {
        Ok(()) => {
            if !delivered {
                info!(webhook = %d.delivery.webhook, delivery = %d.delivery.id, attempt, state = %state,
                      error = record.error.as_deref().unwrap_or(""), "webhook delivery failed");
            }
        }
        // Still pending as before: it is tried again, and the receiver de-duplicates.
        Err(e) => warn!(error = %e, delivery = %d.delivery.id, "cannot store a webhook attempt"),
    }
    delivered
}
