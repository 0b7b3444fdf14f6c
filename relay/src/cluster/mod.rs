//! Several relays as one (README "Several relays"): the shared keys ([`bundle`]) and this
//! relay's part in the registry of relays ([`crate::store::relays`]).
//!
//! [`Membership::start`] registers the relay under its name with the QUIC address agents
//! use, then every [`HEARTBEAT`] refreshes its heartbeat, ends the sessions of any other
//! relay whose heartbeat is older than [`LOST_AFTER`] ("relay lost": their recordings stay
//! unsealed and verify as truncated), and tells the broker which relays are live, which
//! it passes on to agents in their `Welcome` so each keeps a connection to every relay.
//! [`Membership::stop`] marks the relay stopped.
//!
//! A relay cut off from the database (or too slow to beat) for longer than [`LOST_AFTER`]
//! refuses new session requests until a heartbeat is written again
//! ([`Relay::set_cut_off`]). When a heartbeat finds the relay declared lost (another
//! relay ended its sessions meanwhile), it ends them in memory without writing a second
//! ending ([`Relay::declared_lost`]), registers again, stores its agents as present again
//! ([`Relay::rejoined`]) and goes on serving. After its own heartbeat failed, a relay
//! declares no other relay lost until it has beaten for [`LOST_AFTER`] again: when the
//! database itself was away, every heartbeat is stale, and the first relay back must not
//! end every other relay's sessions.
//!
//! Heartbeats are compared with this relay's clock: the relays' clocks must agree to well
//! within [`LOST_AFTER`] (NTP). It does not carry commands between relays (approvals,
//! revocations and ends made on another relay): that is the database's notification bus.

pub mod bundle;

use crate::broker::Relay;
use crate::store::relays::RELAY_LOST;
use crate::store::{Store, StoreError};
use assist_proto::msg::{ClusterRelays, RelayAddress};
use std::sync::Arc;
use std::time::Duration;
use tracing::{error, info, warn};

/// How often a relay refreshes its heartbeat and looks at the others'.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A relay whose heartbeat is older than this is lost.
pub const LOST_AFTER: Duration = Duration::from_secs(10);

/// This relay's membership of the cluster: the heartbeat task, until [`Membership::stop`].
pub struct Membership {
    store: Arc<dyn Store>,
    task: tokio::task::JoinHandle<()>,
}

impl Membership {
    /// Registers this relay (the store's relay name) with `address` for agents, and starts
    /// its heartbeat. Before it returns, the broker knows the live relays.
    pub async fn start(
        store: Arc<dyn Store>,
        relay: Arc<Relay>,
        address: Option<String>,
    ) -> Result<Membership, StoreError> {
        let now = crate::now_ms();
        store.register_relay(address.as_deref(), now).await?;
        info!(relay = store.relay_name(), address = ?address, "registered in the cluster");
        let mut beats = Beats { address, written_at: now, beating_since: 0, failing: false };
        beats.beat(store.as_ref(), &relay).await;
        let task = {
            let store = store.clone();
            let relay = Arc::downgrade(&relay);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(HEARTBEAT);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(relay) = relay.upgrade() else { return };
                    beats.beat(store.as_ref(), &relay).await;
                }
            })
        };
        Ok(Membership { store, task })
    }

    /// Stops the heartbeat and marks this relay stopped (a graceful stop: nobody declares
    /// it lost).
    pub async fn stop(self) {
        self.task.abort();
        if let Err(e) = self.store.relay_stopped(crate::now_ms()).await {
            warn!(error = %e, "cannot mark this relay stopped in the registry");
        }
    }
}

/// The heartbeat's memory between beats.
struct Beats {
    /// The QUIC address agents use, registered again after being declared lost.
    address: Option<String>,
    /// When a heartbeat was last written (Unix ms).
    written_at: i64,
    /// Since when every heartbeat was written (0: since the start).
    beating_since: i64,
    /// Whether the last heartbeat failed.
    failing: bool,
}

impl Beats {
    /// One heartbeat: refresh ours (or rejoin), end lost relays' sessions, tell the broker
    /// who is live.
    async fn beat(&mut self, store: &dyn Store, relay: &Relay) {
        let now = crate::now_ms();
        // A heartbeat stuck on an unreachable database counts as failed: it must not hold
        // up the cut-off below.
        let written = match tokio::time::timeout(LOST_AFTER / 2, store.relay_heartbeat(now)).await {
            Ok(written) => written.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer from the database within {:?}", LOST_AFTER / 2)),
        };
        match written {
            Ok(true) => self.written(relay, now),
            Ok(false) => {
                let ended = relay.declared_lost().await;
                error!(
                    relay = store.relay_name(),
                    ended,
                    "another relay declared this relay lost (its heartbeat went unwritten) and ended its sessions; they are ended here too, and the relay registers again"
                );
                match store.register_relay(self.address.as_deref(), now).await {
                    Ok(()) => {
                        let agents = relay.rejoined().await;
                        info!(agents, "registered in the cluster again");
                        self.written(relay, now);
                    }
                    Err(e) => warn!(error = %e, "cannot register this relay again"),
                }
            }
            Err(e) => {
                warn!(error = e, "cannot refresh this relay's heartbeat");
                self.failing = true;
                if now - self.written_at > LOST_AFTER.as_millis() as i64 {
                    relay.set_cut_off(true);
                }
            }
        }
        // After its own heartbeat failed, a relay declares nobody lost until it has beaten
        // for LOST_AFTER again: when the database itself was away, every relay's heartbeat
        // is stale, and the first relay back must not end all the others' sessions.
        let may_declare = !self.failing && now - self.beating_since >= LOST_AFTER.as_millis() as i64;
        // Bounded like the heartbeat: a database that does not answer must not hold up
        // the next beat (and the cut-off it decides).
        if tokio::time::timeout(LOST_AFTER / 2, others(store, relay, now, may_declare)).await.is_err() {
            warn!("no answer from the database about the other relays");
        }
    }

    fn written(&mut self, relay: &Relay, now: i64) {
        if self.failing {
            self.failing = false;
            self.beating_since = now;
        }
        self.written_at = now;
        relay.set_cut_off(false);
    }
}

/// Ends lost relays' sessions (if `may_declare`) and tells the broker who is live.
async fn others(store: &dyn Store, relay: &Relay, now: i64, may_declare: bool) {
    let lost_ms = LOST_AFTER.as_millis() as i64;
    let lost = match may_declare {
        true => store.end_lost_relays(now - lost_ms, RELAY_LOST, now).await,
        false => Ok(Vec::new()),
    };
    match lost {
        Ok(lost) => {
            for l in lost {
                warn!(lost = %l.name, sessions = l.sessions, agents = l.agents, "a relay's heartbeat stopped: its sessions ended as relay lost");
            }
        }
        Err(e) => warn!(error = %e, "cannot check the other relays' heartbeats"),
    }
    match store.list_relays().await {
        Ok(rows) => {
            let relays = rows
                .into_iter()
                .filter(|r| r.is_live(now, lost_ms))
                .filter_map(|r| Some(RelayAddress { name: r.name, address: r.address? }))
                .collect();
            relay.set_cluster(Some(ClusterRelays { relay: store.relay_name().to_owned(), relays }));
        }
        Err(e) => warn!(error = %e, "cannot list the relays"),
    }
}
