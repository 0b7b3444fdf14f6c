//! A relay of a cluster cut off from the others ([`crate::cluster`] tells the broker).
//!
//! - **Cut off**: while its heartbeat has not been written for longer than the cluster's
//!   `LOST_AFTER`, the relay refuses new session requests ("try another relay"): the others
//!   are about to declare it lost and end whatever it holds, and a request could not be
//!   stored anyway. Sessions it holds go on meanwhile (their streams do not need the
//!   database), so a short cut that nobody noticed costs nothing.
//! - **Declared lost** ([`Relay::declared_lost`]): another relay already ended its open
//!   sessions in the store as "relay lost", audited once. This relay ends them in memory
//!   only: no second ending, no seal (their recordings stay truncated, as the store's
//!   verdict says), but their streams close and the engineer and the agent are told
//!   "relay lost".
//! - **Rejoined** ([`Relay::rejoined`]): once registered again, the agents still connected
//!   here are stored as present again (their presence went with the lost relay's), and
//!   new sessions are served.
//!
//! It does not watch the heartbeat or the registry: [`crate::cluster`] does.

use super::*;
use std::sync::atomic::AtomicBool;

/// Whether this relay is cut off from the cluster's database (see the module's doc).
#[derive(Debug, Default)]
pub(crate) struct Standing {
    cut_off: AtomicBool,
}

impl Relay {
    /// Says whether this relay's heartbeat has gone unwritten too long (true) or was
    /// written again (false). Logs the change.
    pub fn set_cut_off(&self, cut_off: bool) {
        let was = self.standing.cut_off.swap(cut_off, Ordering::Relaxed);
        match (was, cut_off) {
            (false, true) => {
                warn!("this relay cannot write its heartbeat: new session requests are refused until it can")
            }
            (true, false) => info!("this relay writes its heartbeat again: new session requests are served"),
            _ => {}
        }
    }

    /// A refusal for a new session request while cut off.
    pub(crate) fn refuse_if_cut_off(&self) -> Result<(), Refusal> {
        if self.standing.cut_off.load(Ordering::Relaxed) {
            return Err(Refusal::new(
                ErrorCode::Conflict,
                "this relay cannot reach the cluster's database just now; try again, or through another relay of the cluster",
            ));
        }
        Ok(())
    }

    /// This relay was declared lost by another one, which ended its open sessions in the
    /// store: ends them here too, in memory only. Returns how many it ended.
    pub async fn declared_lost(&self) -> usize {
        let ids: Vec<SessionId> = self.sessions.lock().expect("sessions lock").keys().cloned().collect();
        let mut ended = 0;
        for id in ids {
            if self.end_as_lost(&id).await {
                ended += 1;
            }
        }
        ended
    }

    async fn end_as_lost(&self, id: &SessionId) -> bool {
        let Some(s) = self.session(id) else { return false };
        let mut core = s.core.lock().await;
        let was = core.machine.state();
        if core.machine.handle_end().is_err() {
            return false;
        }
        let reason = EndReason::RelayLost;
        core.info.ended_at = Some(now_ms());
        core.info.end_reason = Some(reason.to_string());
        let agent = core.info.agent.clone();
        drop(core);
        s.span.in_scope(|| {
            warn!("session ended: this relay was declared lost (another relay stored and audited the end)")
        });
        self.forget(id);
        // Left unsealed: the store says it ended as "relay lost", and its recording
        // verifies as truncated like that of a relay that died.
        if let Some(rec) = s.recorder() {
            let _ = rec.marker(&format!("ended: {reason}")).await;
        }
        self.tell_ended(&s, &agent, was, reason).await;
        true
    }

    /// This relay registered again after being declared lost: the agents connected here
    /// are stored as present again, each with its connection's own time (audited as
    /// `agent.connected` by the relay). Returns how many.
    pub async fn rejoined(&self) -> usize {
        let agents: Vec<(AgentName, OrgName, ConsentMode, u64, i64)> = self
            .agents
            .lock()
            .expect("agents lock")
            .iter()
            .map(|(name, a)| (name.clone(), a.org.clone(), a.consent, a.conn_id, a.since))
            .collect();
        let mut stored = 0;
        for (name, org, consent, conn_id, since) in agents {
            let event = AuditEvent::new(RELAY_ACTOR, Action::AgentConnected)
                .org(&org)
                .target(name.as_str())
                .detail(json!({ "consent": consent, "reason": "the relay rejoined the cluster" }));
            if let Err(e) = self.store.agent_connected(&name, consent, since, &event).await {
                warn!(error = %e, agent = %name, "cannot store the agent as connected here again");
                continue;
            }
            let current =
                self.agents.lock().expect("agents lock").get(&name).is_some_and(|a| a.conn_id == conn_id);
            if !current {
                // It went meanwhile, and its end found no row to remove: remove the one just
                // written (a newer connection's row is newer, and stays).
                let event = AuditEvent::new(RELAY_ACTOR, Action::AgentDisconnected)
                    .org(&org)
                    .target(name.as_str())
                    .detail(json!({ "reason": "disconnected while the relay rejoined the cluster" }));
                if let Err(e) = self.store.agent_disconnected(&name, since, now_ms(), &event).await {
                    warn!(error = %e, agent = %name, "cannot store the agent as gone");
                }
                continue;
            }
            stored += 1;
        }
        stored
    }
}
