//! People's connections (engineers, approvers, auditors, admins), and taking them away when
//! their user is disabled or removed.
//!
//! `assist-relay user disable|remove` runs in another process: it marks the user in the
//! store and revokes their tokens, so no new connection authenticates. A connection that
//! authenticated before keeps its identity, so the relay looks for such users periodically
//! ([`Relay::enforce_access`], one query per connected user), ends their live sessions as
//! [`EndReason::AccessRevoked`] (audited like every end) and closes their connections.
//!
//! This module does no I/O of its own: it closes connections through the peer seam.

use super::peer::{Close, Peer};
use super::{Relay, StoreError};
use assist_proto::ids::{SessionId, UserName};
use assist_proto::session::EndReason;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::info;

/// An authenticated person's connection: who, and how to close it.
struct Person {
    user: UserName,
    peer: Arc<dyn Peer>,
}

/// The authenticated people's connections, by connection id.
#[derive(Default)]
pub(crate) struct People(Mutex<HashMap<u64, Person>>);

impl Relay {
    /// Registers connection `conn_id`, authenticated as `user`, until [`Self::person_gone`].
    pub(crate) fn person_online(&self, conn_id: u64, user: UserName, peer: Arc<dyn Peer>) {
        self.people.0.lock().expect("people lock").insert(conn_id, Person { user, peer });
    }

    pub(crate) fn person_gone(&self, conn_id: u64) {
        self.people.0.lock().expect("people lock").remove(&conn_id);
    }

    /// Ends the sessions and closes the connections of every connected user who was
    /// disabled or removed since they authenticated.
    pub(crate) async fn enforce_access(&self) -> Result<(), StoreError> {
        let mut users: Vec<UserName> =
            self.people.0.lock().expect("people lock").values().map(|p| p.user.clone()).collect();
        users.sort();
        users.dedup();
        for user in users {
            let allowed =
                self.store.user(&user).await?.is_some() && !self.store.is_disabled(user.as_str()).await?;
            if !allowed {
                self.revoke_access(&user).await;
            }
        }
        Ok(())
    }

    async fn revoke_access(&self, user: &UserName) {
        info!(%user, "user disabled or removed: ending their sessions and connections");
        let live: Vec<Arc<super::LiveSession>> =
            self.sessions.lock().expect("sessions lock").values().cloned().collect();
        let mut theirs: Vec<SessionId> = Vec::new();
        for s in live {
            if s.core.lock().await.info.engineer == *user {
                theirs.push(s.id.clone());
            }
        }
        for id in theirs {
            self.end_session(&id, EndReason::AccessRevoked { user: user.to_string() }).await;
        }
        let peers: Vec<Arc<dyn Peer>> = {
            let mut people = self.people.0.lock().expect("people lock");
            let gone: Vec<u64> = people.iter().filter(|(_, p)| p.user == *user).map(|(id, _)| *id).collect();
            gone.into_iter().filter_map(|id| people.remove(&id)).map(|p| p.peer).collect()
        };
        for peer in peers {
            peer.close(Close::AccessRevoked);
        }
    }
}
