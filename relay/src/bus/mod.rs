//! The relays' bus on PostgreSQL `LISTEN/NOTIFY` ([`PgBus`]): the broker's
//! [`crate::broker::bus::Bus`] for relays sharing one database.
//!
//! - One channel, [`CHANNEL`]; each relay process listens on it with a connection of its
//!   own (sqlx's `PgListener`) and sends with `pg_notify` from a small pool.
//! - A change on a relay is told as one `changed` notification (bumps that come while one
//!   is being sent are carried by the next), and wakes every other relay's counter.
//! - A command goes out as an `ask`; the relay holding its session acknowledges at once,
//!   runs it through its broker (`Relay::asked`, which stores and audits first) and sends
//!   the `reply`. The asker waits [`BusConfig::ack_timeout`] for someone to take it (no
//!   holder: the relay stopped) and [`BusConfig::answer_timeout`] for the outcome.
//! - A message too large for a notification goes into a `bus_messages` row (see
//!   [`envelope`]).
//! - A lost listening connection is re-made by sqlx; what was said meanwhile is lost, so the
//!   relay's own counter is bumped then (its watchers re-read) and an ask in flight times
//!   out with a clear error.
//!
//! It decides nothing: who may do what is the holder's broker's business.

mod envelope;

use crate::broker::Relay;
use crate::broker::bus::{Answer, Ask, Bus, BusError};
use assist_proto::ids::SessionId;
use envelope::{Body, Envelope, MAX_PAYLOAD};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// The notification channel of every relay on the database.
pub const CHANNEL: &str = "assist_bus";

/// How long rows of large messages are kept.
const ROW_TTL_MS: i64 = 60_000;

/// Timeouts of a command carried to another relay.
#[derive(Clone, Copy, Debug)]
pub struct BusConfig {
    /// How long to wait for the holder to take a command. Default 3 s: a relay that is up
    /// takes it in milliseconds, so longer only delays telling the person it is gone.
    pub ack_timeout: Duration,
    /// How long the holder may take to answer once it took it. Default 30 s (an answer
    /// waits for the session's lock and a store write).
    pub answer_timeout: Duration,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self { ack_timeout: Duration::from_secs(3), answer_timeout: Duration::from_secs(30) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusStartError {
    #[error("cannot listen for the other relays on the database: {0}")]
    Db(#[from] sqlx::Error),
}

/// What the asker hears about one of its asks.
enum Heard {
    Took,
    Answered(Answer),
}

struct Shared {
    pool: PgPool,
    /// This relay process, in `from`/`to` of asks and replies; new at every start.
    instance: String,
    /// This relay's name, for asks addressed to it.
    name: Option<String>,
    cfg: BusConfig,
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, mpsc::UnboundedSender<Heard>>>,
    /// Bumped by [`Bus::changed`]; the publisher sends one notification per wake.
    dirty: watch::Sender<u64>,
}

/// The bus of one relay process; its tasks stop when it is dropped.
pub struct PgBus {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for PgBus {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PgBus {
    /// Listens on the database at `url` and joins `relay` to the bus. `name` is the relay's
    /// name, for commands addressed to it.
    pub async fn start(
        url: &str,
        relay: &Arc<Relay>,
        name: Option<String>,
        cfg: BusConfig,
    ) -> Result<Arc<Self>, BusStartError> {
        let pool = PgPoolOptions::new().max_connections(4).connect(url).await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        let shared = Arc::new(Shared {
            pool,
            instance: hex::encode(assist_certs::random_bytes::<8>()),
            name,
            cfg,
            next: AtomicU64::new(1),
            waiting: Mutex::default(),
            dirty: watch::channel(0).0,
        });
        let listen = tokio::spawn(listen(listener, shared.clone(), Arc::downgrade(relay)));
        let publish = tokio::spawn(publish(shared.clone()));
        let bus = Arc::new(Self { shared, tasks: vec![listen.abort_handle(), publish.abort_handle()] });
        relay.join_bus(bus.clone());
        Ok(bus)
    }
}

#[async_trait::async_trait]
impl Bus for PgBus {
    async fn ask(&self, holder: Option<&str>, ask: &Ask) -> Result<Answer, BusError> {
        let s = &self.shared;
        let id = s.next.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        s.waiting.lock().expect("bus lock").insert(id, tx);
        let _forget = Forget(s, id);
        let body = serde_json::to_value(ask).map_err(|e| BusError::Failed(e.to_string()))?;
        let env = Envelope::Ask {
            from: s.instance.clone(),
            id,
            to: holder.map(str::to_owned),
            session: ask.session.clone(),
            body: Body::Inline(body),
        };
        s.send(env).await.map_err(|e| BusError::Failed(e.to_string()))?;
        let (took, answered) = (s.cfg.ack_timeout, s.cfg.answer_timeout);
        match tokio::time::timeout(took, rx.recv()).await {
            Err(_) => return Err(BusError::NoHolder(took)),
            Ok(None) => return Err(BusError::Failed("the bus stopped".into())),
            // The reply may overtake the acknowledgement (they leave on two connections).
            Ok(Some(Heard::Answered(a))) => return Ok(a),
            Ok(Some(Heard::Took)) => {}
        }
        let wait = async {
            loop {
                match rx.recv().await {
                    Some(Heard::Answered(a)) => return Some(a),
                    Some(Heard::Took) => continue,
                    None => return None,
                }
            }
        };
        match tokio::time::timeout(answered, wait).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => Err(BusError::Failed("the bus stopped".into())),
            Err(_) => Err(BusError::NoAnswer(answered)),
        }
    }

    fn changed(&self) {
        self.shared.dirty.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Forgets an ask when its asker stops waiting, however it stops.
struct Forget<'a>(&'a Shared, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.waiting.lock().expect("bus lock").remove(&self.1);
    }
}

impl Shared {
    /// Sends one notification, its body moved into a row if the whole is too large.
    async fn send(&self, mut env: Envelope) -> Result<(), sqlx::Error> {
        let mut text = serde_json::to_string(&env).expect("bus messages serialise");
        if text.len() >= MAX_PAYLOAD
            && let Some(body) = env.body_mut()
        {
            let Body::Inline(value) = body else { unreachable!("bodies start inline") };
            let now = crate::now_ms();
            sqlx::query("DELETE FROM bus_messages WHERE created_at < $1")
                .bind(now - ROW_TTL_MS)
                .execute(&self.pool)
                .await?;
            let (row,): (i64,) =
                sqlx::query_as("INSERT INTO bus_messages (body, created_at) VALUES ($1, $2) RETURNING id")
                    .bind(value.to_string())
                    .bind(now)
                    .fetch_one(&self.pool)
                    .await?;
            *body = Body::Row(row);
            text = serde_json::to_string(&env).expect("bus messages serialise");
        }
        sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(text).execute(&self.pool).await?;
        Ok(())
    }

    /// A body's content, read from its row if it has one.
    async fn open<T: serde::de::DeserializeOwned>(&self, body: Body) -> Result<T, String> {
        let value = match body {
            Body::Inline(v) => v,
            Body::Row(id) => {
                let (text,): (String,) = sqlx::query_as("SELECT body FROM bus_messages WHERE id = $1")
                    .bind(id)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(|e| format!("bus message {id}: {e}"))?;
                serde_json::from_str(&text).map_err(|e| e.to_string())?
            }
        };
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    fn heard(&self, id: u64, what: Heard) {
        if let Some(tx) = self.waiting.lock().expect("bus lock").get(&id) {
            let _ = tx.send(what);
        }
    }
}

/// Tells the other relays of each change (coalesced: one notification per wake).
async fn publish(shared: Arc<Shared>) {
    let mut dirty = shared.dirty.subscribe();
    while dirty.changed().await.is_ok() {
        dirty.borrow_and_update();
        if let Err(e) = shared.send(Envelope::Changed { from: shared.instance.clone() }).await {
            warn!(error = %e, "cannot tell the other relays of a change");
        }
    }
}

/// Reads the channel until the relay is gone; asks and replies are handled on tasks of
/// their own, so a slow one holds nothing up.
async fn listen(mut listener: PgListener, shared: Arc<Shared>, relay: Weak<Relay>) {
    let mut handling = JoinSet::new();
    loop {
        while handling.try_join_next().is_some() {}
        let n = match listener.try_recv().await {
            Ok(Some(n)) => n,
            Ok(None) => {
                // Reconnected: whatever was said meanwhile is lost, so look again.
                warn!("the bus's listening connection was lost; listening again");
                match relay.upgrade() {
                    Some(r) => r.changed_elsewhere(),
                    None => return,
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "the bus cannot reach the database; trying again in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(relay) = relay.upgrade() else { return };
        let env: Envelope = match serde_json::from_str(n.payload()) {
            Ok(env) => env,
            Err(e) => {
                warn!(error = %e, "unreadable message on the bus");
                continue;
            }
        };
        match env {
            Envelope::Changed { from } if from != shared.instance => relay.changed_elsewhere(),
            Envelope::Changed { .. } => {}
            Envelope::Ask { from, id, to, session, body } => {
                let for_us = to.is_none() || to == shared.name;
                if for_us && relay.holds(&session) {
                    handling.spawn(take(shared.clone(), relay, from, id, session, body));
                }
            }
            Envelope::Ack { to, id } if to == shared.instance => shared.heard(id, Heard::Took),
            Envelope::Reply { to, id, body } if to == shared.instance => {
                let shared = shared.clone();
                handling.spawn(async move {
                    match shared.open::<Answer>(body).await {
                        Ok(a) => shared.heard(id, Heard::Answered(a)),
                        Err(e) => warn!(error = %e, "unreadable reply on the bus"),
                    }
                });
            }
            Envelope::Ack { .. } | Envelope::Reply { .. } => {}
        }
    }
}

/// As the session's holder: acknowledges ask `id` of relay process `from`, runs it and
/// replies.
async fn take(shared: Arc<Shared>, relay: Arc<Relay>, from: String, id: u64, session: SessionId, body: Body) {
    let ack = shared.send(Envelope::Ack { to: from.clone(), id });
    let (acked, ask) = tokio::join!(ack, shared.open::<Ask>(body));
    if let Err(e) = acked {
        warn!(error = %e, "cannot acknowledge a command from another relay");
    }
    let ask = match ask {
        Ok(ask) if ask.session == session => ask,
        Ok(_) => return warn!("a command on the bus named two sessions; dropped"),
        Err(e) => return warn!(error = %e, "unreadable command on the bus"),
    };
    let started = std::time::Instant::now();
    let answer = relay.asked(ask).await;
    let answered_us = started.elapsed().as_micros() as u64;
    info!(%session, answered_us, "answered a command from another relay");
    let body = match serde_json::to_value(&answer) {
        Ok(v) => Body::Inline(v),
        Err(e) => return warn!(error = %e, "cannot encode an answer"),
    };
    if let Err(e) = shared.send(Envelope::Reply { to: from, id, body }).await {
        warn!(error = %e, "cannot send an answer to another relay");
    }
}
