//! Grants of live sessions after the first approval: escalation (more capabilities or more
//! time, answered like a request), revocation, expiry, and the registry of open channels
//! that a grant change closes.
//!
//! Every change signs a new revision of the session's grant, stores it with its audit
//! event, then tells the agent (which enforces the new grant on its own: it kills what the
//! grant no longer covers) and the engineer. Who may answer is decided in
//! [`super::sessions`] and [`super::policy`]; this module does not ask for consent itself.

use super::policy::Principal;
use super::*;
use assist_proto::consent::ConsentSource;
use assist_proto::msg::{Escalation, GrantView};

/// What an approver grants: all that was asked (fields `None`), or less.
#[derive(Clone, Debug, Default)]
pub(crate) struct Approval {
    pub capabilities: Option<Vec<Capability>>,
    pub duration_secs: Option<u64>,
    pub note: Option<String>,
}

/// An open channel, stopped when the grant stops covering it.
pub(crate) struct OpenChannel {
    cap: Capability,
    stop: watch::Sender<bool>,
}

/// A registered channel; dropping it unregisters the channel.
pub(crate) struct ChannelHandle {
    session: Arc<LiveSession>,
    n: u32,
    /// Turns true when the channel must stop.
    pub stop: watch::Receiver<bool>,
}

impl Drop for ChannelHandle {
    fn drop(&mut self) {
        self.session.open.lock().expect("channels lock").remove(&self.n);
    }
}

impl LiveSession {
    /// Registers channel `n` (needing `cap`) until the returned handle is dropped.
    pub(crate) fn register_channel(self: &Arc<Self>, n: u32, cap: Capability) -> ChannelHandle {
        let (stop, rx) = watch::channel(false);
        self.open.lock().expect("channels lock").insert(n, OpenChannel { cap, stop });
        // A session that ended meanwhile keeps nothing open.
        if *self.ended.borrow() {
            self.stop_channels(|_| false);
        }
        ChannelHandle { session: Arc::clone(self), n, stop: rx }
    }

    /// Stops every open channel whose capability `keep` rejects; returns how many.
    pub(crate) fn stop_channels(&self, keep: impl Fn(&Capability) -> bool) -> usize {
        let open = self.open.lock().expect("channels lock");
        let mut stopped = 0;
        for c in open.values().filter(|c| !keep(&c.cap)) {
            c.stop.send_replace(true);
            stopped += 1;
        }
        stopped
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::BadRequest, message)
}

pub(super) fn list(caps: &[Capability]) -> String {
    if caps.is_empty() {
        return "nothing".into();
    }
    caps.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
}

/// Checks capabilities an engineer asks for or an approver grants: well formed, and served
/// by some channel (so nothing is stored, and nobody asked, for what would do nothing).
pub(super) fn check_asked(caps: &[Capability]) -> Result<(), Refusal> {
    if caps.len() > 32 {
        return Err(bad("at most 32 capabilities per request"));
    }
    for c in caps {
        c.validate().map_err(|e| bad(format!("capability {c}: {e}")))?;
        c.check_served("relay").map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

/// What an approval grants: all that was asked, or a subset, each possibly narrower.
pub(super) fn narrow(
    asked: &[Capability],
    given: Option<Vec<Capability>>,
) -> Result<Vec<Capability>, Refusal> {
    let Some(given) = given else { return Ok(asked.to_vec()) };
    if given.is_empty() {
        return Err(bad("grant at least one capability, or deny"));
    }
    check_asked(&given)?;
    if let Some(g) = given.iter().find(|g| !asked.iter().any(|a| g.within(a))) {
        // The same kind asked with other roots: the grant tried to widen one.
        let same: Vec<Capability> = asked
            .iter()
            .filter(|a| {
                a.kind() == g.kind()
                    && matches!(a, Capability::FilesRead { .. } | Capability::FilesWrite { .. })
            })
            .cloned()
            .collect();
        if !same.is_empty() {
            return Err(bad(format!(
                "{g} is not inside what was asked ({}): a root may only be narrowed to a folder inside the one asked for",
                list(&same)
            )));
        }
        return Err(bad(format!("{g} was not asked for (asked: {})", list(asked))));
    }
    Ok(given)
}

/// How long an approval lasts, in seconds: what was asked, or less.
pub(super) fn grant_secs(asked: u64, given: Option<u64>) -> Result<u64, Refusal> {
    match given {
        None => Ok(asked),
        Some(0) => Err(bad("a grant must last at least one second")),
        Some(g) if g > asked => Err(bad(format!(
            "cannot grant {}: more than the {} asked for",
            crate::fmt_secs(g),
            crate::fmt_secs(asked)
        ))),
        Some(g) => Ok(g),
    }
}

fn view(g: &Grant) -> GrantView {
    GrantView {
        capabilities: g.capabilities.clone(),
        expires_at: g.expires_at,
        revision: g.revision,
        approver: g.approver.clone(),
        note: g.note.clone(),
    }
}

impl Relay {
    /// The engineer's requested duration, checked against the relay's bounds.
    pub(super) fn asked_secs(&self, asked: Option<u64>) -> Result<u64, Refusal> {
        let max = self.cfg.grant_ttl.as_secs();
        match asked {
            None => Ok(self.cfg.default_grant.as_secs().min(max)),
            Some(0) => Err(bad("a duration must be at least one second")),
            Some(s) if s > max => Err(bad(format!(
                "{} is longer than this relay grants (at most {})",
                crate::fmt_secs(s),
                crate::fmt_secs(max)
            ))),
            Some(s) => Ok(s),
        }
    }

    /// Signs the next revision of the session's grant and stores it with `event` (whose
    /// detail gains the grant). Nothing changes if storing fails. The caller holds `core`.
    pub(super) async fn next_grant(
        self: &Arc<Self>,
        core: &mut SessionCore,
        capabilities: Vec<Capability>,
        expires_at: i64,
        approver: ConsentSource,
        note: Option<String>,
        event: AuditEvent,
    ) -> Result<(Grant, SignedGrant), Refusal> {
        let now = now_ms();
        let grant = Grant {
            session: core.info.id.clone(),
            agent: core.info.agent.clone(),
            engineer: core.info.engineer.clone(),
            capabilities,
            not_before: now,
            expires_at,
            approver,
            revision: core.revision + 1,
            note,
        };
        let signed = SignedGrant::sign(&grant, &self.grant_key);
        let before = (core.info.granted.clone(), core.info.grant_expires_at);
        core.info.granted = Some(grant.capabilities.clone());
        core.info.grant_expires_at = Some(expires_at);
        let event = event.merge_detail(json!({
            "granted": grant.capabilities,
            "grant_expires_at": expires_at,
            "grant_revision": grant.revision,
            "approver": grant.approver,
            "note": grant.note,
        }));
        if let Err(e) = self.store.update_session(&core.info(), now, &event).await {
            (core.info.granted, core.info.grant_expires_at) = before;
            return Err(e.into());
        }
        core.grant = Some(signed.clone());
        core.current = Some(grant.clone());
        core.revision = grant.revision;
        self.arm_expiry(&core.info.id, grant.revision, expires_at);
        self.changed();
        Ok((grant, signed))
    }

    /// At `expires_at`, closes the session's channels if revision `revision` is still the
    /// current grant (an extension replaces it, and this timer then does nothing).
    fn arm_expiry(self: &Arc<Self>, id: &SessionId, revision: u32, expires_at: i64) {
        let Some(s) = self.session(id) else { return };
        let id = id.clone();
        s.arm(self, timers::until(expires_at), move |relay, ()| async move {
            relay.grant_expired(&id, revision).await
        });
    }

    async fn grant_expired(self: &Arc<Self>, id: &SessionId, revision: u32) {
        let Some(s) = self.session(id) else { return };
        let core = s.core.lock().await;
        if core.revision != revision || core.machine.state().is_final() {
            return;
        }
        let Some(grant) = core.current.clone() else {
            return;
        };
        let event = session_event(RELAY_ACTOR, Action::GrantExpired, &core.info)
            .detail(json!({ "grant_revision": revision, "expired_at": grant.expires_at }));
        let _ = self.audit(event).await;
        drop(core);
        self.changed();
        if s.detached.load(Ordering::Relaxed) {
            self.arm_lapse(id, grant.expires_at);
        }
        let closed = s.stop_channels(|_| false);
        s.span.in_scope(|| info!(closed, "grant expired"));
        let change = format!(
            "the grant expired; {closed} channel(s) closed. Ask for more time with: assist escalate {id} --extend 30m --reason ..."
        );
        let msg = RelayToEngineer::GrantChanged {
            session: id.clone(),
            grant: view(&grant),
            change,
            in_force: false,
        };
        s.tell_engineers(msg).await;
    }

    /// The engineer of a live session asks for more capabilities or time.
    pub(crate) async fn escalate(
        self: &Arc<Self>,
        who: &Principal,
        link: &EngineerLink,
        id: &SessionId,
        add: Vec<Capability>,
        duration_secs: Option<u64>,
        reason: String,
    ) -> Result<(), Refusal> {
        check_text("reason", &reason, assist_proto::text::MAX_REASON_CHARS)?;
        check_asked(&add)?;
        if add.is_empty() && duration_secs.is_none() {
            return Err(bad("ask for at least one capability (--add) or more time (--extend)"));
        }
        if let Some(d) = duration_secs {
            self.asked_secs(Some(d))?;
        }
        let not_found = || Refusal::new(ErrorCode::NotFound, format!("no live session {id}"));
        let Some(s) = self.session(id) else {
            let why = "no such session";
            return Err(self
                .refuse_access(who, "session.escalate", id, None, why, (not_found(), not_found()))
                .await);
        };
        let mut core = s.core.lock().await;
        if core.info.engineer != who.user {
            let info = core.info();
            drop(core);
            let forbidden = Refusal::new(ErrorCode::Forbidden, format!("session {id} is not yours"));
            let why = "not the session's engineer";
            return Err(self
                .refuse_access(who, "session.escalate", id, Some(&info), why, (forbidden, not_found()))
                .await);
        }
        if core.grant.is_none() {
            return Err(Refusal::new(ErrorCode::Conflict, format!("session {id} is not approved yet")));
        }
        self.check_scripts(&core.info.agent, &add)?;
        if core.info.escalation.is_some() {
            return Err(Refusal::new(
                ErrorCode::Conflict,
                format!("session {id} already has an escalation waiting for an answer"),
            ));
        }
        // An extension adds to what is left; the sum stays within what this relay grants.
        if let (Some(d), Some(expires_at)) = (duration_secs, core.info.grant_expires_at) {
            let left = ((expires_at - now_ms()).max(0) / 1000) as u64;
            let max = self.cfg.grant_ttl.as_secs();
            if left + d > max {
                return Err(bad(format!(
                    "the grant of {id} has {} left; with {} more it would pass the {} this relay grants at most (extend by at most {})",
                    crate::fmt_secs(left),
                    crate::fmt_secs(d),
                    crate::fmt_secs(max),
                    crate::fmt_secs(max.saturating_sub(left))
                )));
            }
        }
        let now = now_ms();
        let timeout = if core.info.priority.is_urgent() {
            self.cfg.urgent_consent_timeout
        } else {
            self.cfg.consent_timeout
        };
        let esc = Escalation {
            add,
            duration_secs,
            reason,
            requested_at: now,
            deadline: now + timeout.as_millis() as i64,
        };
        let event = session_event(who.user.as_str(), Action::EscalationRequested, &core.info).detail(json!({
            "add": esc.add,
            "duration_secs": esc.duration_secs,
            "reason": esc.reason,
            "consent_deadline": esc.deadline,
        }));
        // Stored in the session's row, so other relays of a cluster list it too.
        let asked = SessionInfo { escalation: Some(esc.clone()), ..core.info() };
        self.store.update_session(&asked, now, &event).await?;
        core.info.escalation = Some(esc.clone());
        core.escalator = Some(link.tx.clone());
        self.changed();
        let info = core.info();
        let consent = core.consent;
        drop(core);
        let left = info.grant_expires_at.map_or(0, |e| ((e - now).max(0) / 1000) as u64);
        s.span.in_scope(|| info!(add = %list(&esc.add), "escalation requested"));
        let window = match consent {
            ConsentMode::Window => {
                let secs = esc.duration_secs.unwrap_or(info.duration_secs);
                self.matching_window(&info, &esc.add, secs, now).await
            }
            _ => None,
        };
        let waiting_for = match (consent, &window) {
            (ConsentMode::Prompt, _) => {
                if let Some(tx) = self.agent_tx(&info.agent) {
                    let _ = tx.send(RelayToAgent::ConsentRequest { session: Box::new(info.clone()) }).await;
                }
                format!("the customer at {} (prompt on the agent)", info.agent)
            }
            (_, Some((w, _))) => format!("maintenance window {}", w.id),
            _ => format!("an approver of {}", info.agent_org),
        };
        // Told before any answer can reach the same stream.
        let _ = link.tx.send(RelayToEngineer::EscalationRequested { session: info, waiting_for }).await;
        if let Some((window, secs)) = window {
            let relay = Arc::clone(self);
            let id = id.clone();
            // An extension is added to what is left: a window grants no further than its end.
            let approval = Approval {
                duration_secs: esc.duration_secs.map(|d| d.min(secs.saturating_sub(left))),
                ..Approval::default()
            };
            tokio::spawn(async move {
                if let Err(r) = relay.answer(&id, Answerer::Window(&window), true, approval).await {
                    warn!(message = %r.message, "maintenance window approval of an escalation failed");
                }
            });
        }
        let id = id.clone();
        s.arm(self, tokio::time::sleep(timeout), move |relay, ()| async move {
            relay.expire_escalation(&id, esc.requested_at).await
        });
        Ok(())
    }

    async fn expire_escalation(&self, id: &SessionId, requested_at: i64) {
        let Some(s) = self.session(id) else { return };
        let mut core = s.core.lock().await;
        if core.info.escalation.as_ref().map(|e| e.requested_at) != Some(requested_at) {
            return;
        }
        let esc = core.info.escalation.take().expect("checked");
        let tx = core.escalator.take();
        self.changed();
        let now = now_ms();
        let event = session_event(RELAY_ACTOR, Action::EscalationExpired, &core.info)
            .detail(json!({ "add": esc.add, "waited_ms": now - esc.requested_at }));
        if let Err(e) = self.store.update_session(&core.info(), now, &event).await {
            warn!(error = %e, "cannot store the expiry of an escalation");
        }
        let agent = core.info.agent.clone();
        drop(core);
        if let Some(tx) = tx {
            let msg = RelayToEngineer::EscalationAnswered {
                session: id.clone(),
                approved: false,
                by: None,
                reason: Some("no answer before the deadline".into()),
            };
            let _ = tx.send(msg).await;
        }
        if let Some(tx) = self.agent_tx(&agent) {
            let _ = tx
                .send(RelayToAgent::ConsentWithdrawn { session: id.clone(), reason: "expired".into() })
                .await;
        }
    }

    /// Answers the pending escalation of a live session. The caller checked who answers.
    pub(super) async fn answer_escalation(
        self: &Arc<Self>,
        s: &Arc<LiveSession>,
        mut core: tokio::sync::MutexGuard<'_, SessionCore>,
        approver: ConsentSource,
        actor: String,
        approve: bool,
        approval: Approval,
    ) -> Result<String, Refusal> {
        let id = s.id.clone();
        let esc = core.info.escalation.clone().expect("caller checked");
        let now = now_ms();
        if now >= esc.deadline {
            drop(core);
            self.expire_escalation(&id, esc.requested_at).await;
            return Err(Refusal::new(ErrorCode::Conflict, format!("the escalation of {id} expired")));
        }
        if !approve {
            let reason = approval.note.unwrap_or_else(|| "no reason given".into());
            let event = session_event(&actor, Action::EscalationDenied, &core.info)
                .detail(json!({ "approver": approver, "reason": reason, "add": esc.add }));
            let answered = SessionInfo { escalation: None, ..core.info() };
            self.store.update_session(&answered, now, &event).await?;
            core.info.escalation = None;
            let tx = core.escalator.take();
            drop(core);
            self.changed();
            if let Some(tx) = tx {
                let msg = RelayToEngineer::EscalationAnswered {
                    session: id.clone(),
                    approved: false,
                    by: Some(approver.to_string()),
                    reason: Some(reason),
                };
                let _ = tx.send(msg).await;
            }
            return Ok(format!("denied the escalation of {id}"));
        }
        let added = if esc.add.is_empty() { Vec::new() } else { narrow(&esc.add, approval.capabilities)? };
        let current = core.info.granted.clone().unwrap_or_default();
        let mut caps = current.clone();
        for c in &added {
            if !caps.iter().any(|k| c.within(k)) {
                caps.push(c.clone());
            }
        }
        let old_expiry = core.info.grant_expires_at.unwrap_or(now);
        let expires_at = match (esc.duration_secs, approval.duration_secs) {
            // An extension adds to what is left (to now, if the grant already ran out).
            (Some(asked), given) => old_expiry.max(now) + grant_secs(asked, given)? as i64 * 1000,
            (None, Some(given)) => {
                now + grant_secs(self.asked_secs(None)?.max(given), Some(given))? as i64 * 1000
            }
            // More capabilities on an expired grant: a new grant of the session's length.
            (None, None) if old_expiry <= now => now + core.info.duration_secs as i64 * 1000,
            (None, None) => old_expiry,
        };
        let event = session_event(&actor, Action::EscalationApproved, &core.info)
            .detail(json!({ "added": added, "reason": esc.reason }));
        core.info.escalation = None;
        let result =
            self.next_grant(&mut core, caps, expires_at, approver.clone(), approval.note, event).await;
        let (grant, signed) = match result {
            Ok(x) => x,
            Err(e) => {
                core.info.escalation = Some(esc);
                return Err(e);
            }
        };
        let tx = core.escalator.take();
        let agent = core.info.agent.clone();
        drop(core);
        s.span.in_scope(|| info!(%approver, revision = grant.revision, "escalation approved"));
        if let Some(atx) = self.agent_tx(&agent) {
            let _ = atx.send(RelayToAgent::Granted { grant: signed }).await;
        }
        let change = format!("{approver} granted {} until {}", list(&added), crate::fmt_time(expires_at));
        let changed = RelayToEngineer::GrantChanged {
            session: id.clone(),
            grant: view(&grant),
            change,
            in_force: true,
        };
        s.tell_engineers(changed).await;
        if let Some(tx) = tx {
            let msg = RelayToEngineer::EscalationAnswered {
                session: id.clone(),
                approved: true,
                by: Some(approver.to_string()),
                reason: grant.note.clone(),
            };
            let _ = tx.send(msg).await;
        }
        Ok(format!(
            "approved the escalation of {id}: {} until {}",
            list(&grant.capabilities),
            crate::fmt_time(expires_at)
        ))
    }

    /// Takes capabilities away from a live session: its channels that need them are reset
    /// at once, and the agent gets the narrower grant (it kills what that no longer covers).
    /// In a cluster, carried to the relay that holds the session ([`super::bus`]).
    pub(crate) async fn revoke(
        self: &Arc<Self>,
        who: &Principal,
        id: &SessionId,
        selectors: Vec<String>,
        reason: Option<String>,
    ) -> Result<String, Refusal> {
        let (sel, r) = (selectors.clone(), reason.clone());
        let command = move || bus::Command::Revoke { selectors: sel, reason: r };
        if let Some(outcome) = self.elsewhere(who, id, command).await {
            return outcome;
        }
        self.revoke_here(who, id, selectors, reason).await
    }

    /// [`Relay::revoke`] for a session this relay holds, or none.
    pub(super) async fn revoke_here(
        self: &Arc<Self>,
        who: &Principal,
        id: &SessionId,
        selectors: Vec<String>,
        reason: Option<String>,
    ) -> Result<String, Refusal> {
        if selectors.is_empty() || selectors.len() > 32 || selectors.iter().any(|s| s.len() > 1100) {
            return Err(bad("name 1 to 32 capabilities to revoke, e.g. shell or files.read"));
        }
        if let Some(r) = &reason {
            check_text("reason", r, assist_proto::text::MAX_REASON_CHARS)?;
        }
        let not_found = || Refusal::new(ErrorCode::NotFound, format!("no live session {id}"));
        let Some(s) = self.session(id) else {
            let why = "no such session";
            return Err(self
                .refuse_access(who, "grant.revoke", id, None, why, (not_found(), not_found()))
                .await);
        };
        let mut core = s.core.lock().await;
        if !who.may_end(&core.info) {
            let info = core.info();
            drop(core);
            let forbidden = Refusal::new(ErrorCode::Forbidden, format!("you may not revoke in session {id}"));
            let why = "may not revoke in this session";
            return Err(self
                .refuse_access(who, "grant.revoke", id, Some(&info), why, (forbidden, not_found()))
                .await);
        }
        let Some(previous) = core.current.clone() else {
            return Err(Refusal::new(
                ErrorCode::Conflict,
                format!("session {id} has no grant yet; deny it instead"),
            ));
        };
        let current = &previous.capabilities;
        let (removed, kept): (Vec<Capability>, Vec<Capability>) =
            current.iter().cloned().partition(|c| selectors.iter().any(|sel| c.selected_by(sel)));
        if removed.is_empty() {
            return Err(bad(format!(
                "session {id} holds nothing matching {}; it holds {}",
                selectors.join(", "),
                list(current)
            )));
        }
        let by = who.user.to_string();
        if kept.is_empty() {
            drop(core);
            let why =
                format!("all capabilities revoked{}", reason.map(|r| format!(": {r}")).unwrap_or_default());
            self.end_session(id, EndReason::EndedBy { user: by, reason: Some(why) }).await;
            return Ok(format!(
                "revoked {} from {id}; nothing is left, so the session ended",
                list(&removed)
            ));
        }
        let (approver, expires_at) = (previous.approver, previous.expires_at);
        let note = format!(
            "{} revoked by {by}{}",
            list(&removed),
            reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        );
        let event = session_event(&by, Action::GrantRevoked, &core.info)
            .detail(json!({ "revoked": removed, "reason": reason }));
        let (grant, signed) =
            self.next_grant(&mut core, kept, expires_at, approver, Some(note.clone()), event).await?;
        let agent = core.info.agent.clone();
        drop(core);
        // Relay side first: the streams are reset before anyone is told.
        let closed = s.stop_channels(|cap| grant.covers(cap));
        s.span.in_scope(|| info!(revoked = %list(&removed), closed, "capabilities revoked"));
        if let Some(tx) = self.agent_tx(&agent) {
            let _ = tx.send(RelayToAgent::Granted { grant: signed }).await;
        }
        let in_force = grant.expires_at > now_ms();
        let msg = RelayToEngineer::GrantChanged {
            session: id.clone(),
            grant: view(&grant),
            change: note,
            in_force,
        };
        s.tell_engineers(msg).await;
        Ok(format!("revoked {} from {id}; {closed} channel(s) closed", list(&removed)))
    }

    /// The customer pressed the kill key on the agent: end its sessions (or one) now.
    pub(crate) async fn kill_from_agent(&self, agent: &AgentName, session: Option<SessionId>) {
        let ids: Vec<SessionId> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .values()
            .filter(|s| &s.agent == agent && session.as_ref().is_none_or(|id| id == &s.id))
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            let reason = EndReason::EndedBy {
                user: format!("customer@{agent}"),
                reason: Some("kill key pressed on the agent".into()),
            };
            self.end_session(&id, reason).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[&str]) -> Vec<Capability> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn approvals_may_narrow_but_never_widen() {
        let asked = caps(&["shell", "files.read:/var/log"]);
        assert_eq!(narrow(&asked, None).unwrap(), asked);
        assert_eq!(narrow(&asked, Some(caps(&["shell"]))).unwrap(), caps(&["shell"]));
        assert!(narrow(&asked, Some(caps(&["files.read:/var/log/erp"]))).is_ok());
        for wider in ["files.read:/var", "files.read:/var/logs", "files.read:/var/log,/etc"] {
            let refused = narrow(&asked, Some(caps(&[wider]))).unwrap_err();
            assert_eq!(refused.code, ErrorCode::BadRequest);
            assert!(refused.message.contains("is not inside what was asked"), "{}", refused.message);
        }
        let refused = narrow(&asked, Some(caps(&["files.write:/var/log"]))).unwrap_err();
        assert!(refused.message.contains("was not asked for"), "{}", refused.message);
        assert!(narrow(&asked, Some(vec![])).is_err());
        assert_eq!(grant_secs(3600, None).unwrap(), 3600);
        assert_eq!(grant_secs(3600, Some(600)).unwrap(), 600);
        assert!(grant_secs(3600, Some(7200)).is_err());
        assert!(grant_secs(3600, Some(0)).is_err());
    }
}
