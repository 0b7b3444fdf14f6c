//! A change counter for whoever shows the broker's state live (the console's event
//! stream): bumped whenever what [`Relay::list_requests`] or [`Relay::list_live`] return
//! may have changed (a request created, answered or expired; an escalation asked,
//! answered or expired; a grant revised or run out; a session started or ended).
//!
//! It carries no data and knows no reader: a watcher learns *that* something changed
//! and asks the broker again, so a missed intermediate value loses nothing. Bumps happen
//! after the change is visible in the broker's memory (or under the session's lock that
//! readers take), so a reader woken by one sees the change. In a cluster every bump is
//! told to the other relays too, whose counters then move ([`Relay::changed_elsewhere`]).

use super::Relay;
use tokio::sync::watch;

/// The counter. Sending never fails, with or without watchers.
pub(crate) struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Self(watch::channel(0).0)
    }
}

impl Relay {
    /// A receiver that wakes after each change to pending requests or live sessions.
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changes.0.subscribe()
    }

    /// Notes a change to pending requests or live sessions.
    pub(super) fn changed(&self) {
        self.changes_bump();
        // The other relays of a cluster re-read too ([`super::bus`]).
        if let Some(bus) = self.bus() {
            bus.changed();
        }
    }

    /// Wakes this relay's watchers only.
    pub(super) fn changes_bump(&self) {
        self.changes.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}
