//! [`Relays`]: the registry of the relays that share one database (several relays as
//! one; README "Several relays"), part of every [`super::Store`] (a supertrait).
//!
//! Each relay registers itself by name at start (its QUIC address for agents, a fresh
//! start), refreshes its heartbeat every couple of seconds, and marks itself stopped when
//! it stops gracefully. A relay whose heartbeat has gone stale is *lost*: the first live
//! relay to notice ends that relay's open sessions ([`Relays::end_lost_relays`]: one
//! conditional update, so however many notice, one does it, with each ending audited once
//! in the same transaction). A relay that comes back under the same name starts clean.
//!
//! The registry rows are not audited (heartbeats are not events); the sessions they end
//! are. It does not decide when a relay counts as lost: the caller passes the cut-off.

use super::Result;

/// The name of a relay started without `--relay-name` (the single-relay default); the
/// sessions stored before relays had names are its own.
pub const DEFAULT_RELAY: &str = "default";

/// The end reason of the sessions of a relay that was lost.
pub const RELAY_LOST: &str = "relay lost";

/// One relay of the registry. Times are Unix milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayRow {
    pub name: String,
    /// The QUIC address agents use (`HOST:PORT`), if the relay advertises one.
    pub address: Option<String>,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub stopped_at: Option<i64>,
    pub lost_at: Option<i64>,
}

impl RelayRow {
    /// Whether the relay is running as far as the registry says: neither stopped nor
    /// declared lost, and its heartbeat no older than `stale_ms` at `now`.
    pub fn is_live(&self, now: i64, stale_ms: i64) -> bool {
        self.stopped_at.is_none() && self.lost_at.is_none() && self.heartbeat_at >= now - stale_ms
    }
}

/// A relay that [`Relays::end_lost_relays`] declared lost, how many of its sessions it
/// ended and how many agent connections it removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostRelay {
    pub name: String,
    pub sessions: u64,
    pub agents: u64,
}

#[async_trait::async_trait]
pub trait Relays: Send + Sync {
    /// The relay this store writes for (`--relay-name`, or [`DEFAULT_RELAY`]).
    fn relay_name(&self) -> &str;
    /// Registers this relay as started at `now` with its QUIC address for agents:
    /// inserted, or (a restart, also after being declared lost) started afresh.
    async fn register_relay(&self, address: Option<&str>, now: i64) -> Result<()>;
    /// Refreshes this relay's heartbeat. False if the registry no longer holds it as
    /// running (stopped, or declared lost by another relay): it is not revived.
    async fn relay_heartbeat(&self, now: i64) -> Result<bool>;
    /// Marks this relay stopped (a graceful stop) and removes its agents' presence, each
    /// audited as `agent.disconnected` ("relay stopped"). For the single relay, which has
    /// no registry row, only the latter.
    async fn relay_stopped(&self, now: i64) -> Result<()>;
    /// Every relay of the registry, by name.
    async fn list_relays(&self) -> Result<Vec<RelayRow>>;
    /// In one transaction: every other relay neither stopped nor lost whose heartbeat is
    /// older than `stale_before` is marked lost, and its open sessions are ended with
    /// `reason` (requested ones expire), each audited as `relay`, and its agents'
    /// presence is removed (each audited as `agent.disconnected`). Returns what it did;
    /// a relay another caller declared lost first is not returned again.
    async fn end_lost_relays(&self, stale_before: i64, reason: &str, now: i64) -> Result<Vec<LostRelay>>;
}
