//! Where an engineer's own follow-up commands about a session go in a cluster: to the
//! relay that holds it.
//!
//! - A session lives in the memory of the relay where it was requested (its holder, the
//!   session row's `relay`). Channels (`--session`), `watch`, `follow`, `escalate`,
//!   `detach` and `finish` need that memory: the splice, the screen, the connection that
//!   waits for an escalation's answer. On a relay that does not hold the session they are
//!   refused with [`Refusal::held_by`] naming the holder and its address from the relays
//!   registry (as [`crate::cluster`] last read it), and the client reconnects there once,
//!   with the same token and CA pin (every relay's certificate comes from the cluster's
//!   CA, and every relay checks the cluster's tokens against the one database).
//! - A holder the registry does not list as running with an address (stopped, silent
//!   longer than `cluster::LOST_AFTER`, or started without one) is named without an
//!   address: there is nowhere to go.
//! - One who may not see the session learns nothing of it: they get what one relay says of
//!   a session it does not know.
//!
//! It decides nothing about the session: the holder does, with its own rules, when the
//! command arrives there. Approvers' answers, revocations and ends do not come here: the
//! relays carry them on the bus ([`super::bus`]).

use super::policy::Principal;
use super::*;
use assist_proto::msg::HeldBy;

impl Relay {
    /// For a command of `who` about session `id` that needs the session's memory: the
    /// refusal that sends them to the relay of the cluster holding it, if another relay
    /// holds it and `who` may see it. `None`: this relay answers as always (it holds the
    /// session, or nobody does, or it is not in a cluster).
    pub(crate) async fn holder_elsewhere(&self, who: &Principal, id: &SessionId) -> Option<Refusal> {
        if self.bus().is_none() || self.holds(id) {
            return None;
        }
        let row = match self.store.open_session(id).await {
            Ok(Some(row)) => row,
            Ok(None) => return None,
            Err(e) => return Some(e.into()),
        };
        // Relays started without a name share the default one: none can say which holds it.
        if row.relay == self.store.relay_name() || !who.may_see_session(&row.info) {
            return None;
        }
        let address = self
            .cluster()
            .and_then(|c| c.relays.into_iter().find(|r| r.name == row.relay))
            .map(|r| r.address);
        let relay = row.relay;
        Some(match address {
            Some(address) => Refusal {
                held_by: Some(HeldBy { relay: relay.clone(), address: address.clone() }),
                ..Refusal::new(
                    ErrorCode::Conflict,
                    format!("session {id} is held by relay {relay} ({address})"),
                )
            },
            // Not among the running relays with an address in the registry.
            None => Refusal::new(
                ErrorCode::Conflict,
                format!(
                    "session {id} is held by relay {relay}, which is not running or advertises no address; if it stopped, its sessions end as \"relay lost\""
                ),
            ),
        })
    }
}
