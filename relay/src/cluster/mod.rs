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
        store.register_relay(address.as_deref(), crate::now_ms()).await?;
        info!(relay = store.relay_name(), address = ?address, "registered in the cluster");
        beat(store.as_ref(), &relay).await;
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
                    beat(store.as_ref(), &relay).await;
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

/// One heartbeat: refresh ours, end lost relays' sessions, tell the broker who is live.
async fn beat(store: &dyn Store, relay: &Relay) {
    let now = crate::now_ms();
    match store.relay_heartbeat(now).await {
        Ok(true) => {}
        Ok(false) => error!(
            relay = store.relay_name(),
            "the registry holds this relay as stopped or lost (another relay ended its sessions after missing its heartbeat); restart it to rejoin cleanly"
        ),
        Err(e) => warn!(error = %e, "cannot refresh this relay's heartbeat"),
    }
    let lost_ms = LOST_AFTER.as_millis() as i64;
    match store.end_lost_relays(now - lost_ms, RELAY_LOST, now).await {
        Ok(lost) => {
            for l in lost {
                warn!(lost = %l.name, sessions = l.sessions, "a relay's heartbeat stopped: its sessions ended as relay lost");
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
