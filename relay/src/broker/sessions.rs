//! Session lifecycle in the broker: request, consent (approve, deny, expire), and every
//! way a session ends. Each change is stored with its audit event before anyone is told.

use super::policy::Principal;
use super::*;
use assist_proto::consent::ConsentSource;
use assist_proto::ids::WindowId;

impl Relay {
    /// Checks and records a session request, and asks for consent.
    pub(crate) async fn request_session(
        self: &Arc<Self>,
        who: &Principal,
        link: EngineerLink,
        req: NewSession,
    ) -> Result<(), Refusal> {
        let NewSession { agent, ticket, priority, reason, capabilities, duration_secs } = req;
        let reply_tx = link.tx.clone();
        check_text("ticket", &ticket, assist_proto::text::MAX_TICKET_CHARS)?;
        check_text("reason", &reason, assist_proto::text::MAX_REASON_CHARS)?;
        if capabilities.is_empty() {
            return Err(Refusal::new(ErrorCode::BadRequest, "a request must name at least one capability"));
        }
        grants::check_asked(&capabilities)?;
        let duration_secs = self.asked_secs(duration_secs)?;
        self.refuse_if_cut_off()?;
        if who.role != assist_proto::caps::Role::Engineer {
            let r = Refusal::new(
                ErrorCode::Forbidden,
                format!("only engineers request sessions; you are {}", who.role),
            );
            return Err(self.refuse_request(who, &agent, None, r).await);
        }
        let not_reachable = || {
            Refusal::new(
                ErrorCode::NotFound,
                format!("no agent named {agent} among the agents you may reach"),
            )
        };
        let Some(row) = self.store.agent(&agent).await? else {
            return Err(self.refuse_request(who, &agent, None, not_reachable()).await);
        };
        let Some(org) = self.store.org(&row.org).await? else {
            return Err(self.refuse_request(who, &agent, None, not_reachable()).await);
        };
        if !who.may_request_on(&org) {
            info!(user = %who.user, %agent, "request refused: organisation not supported");
            return Err(self.refuse_request(who, &agent, Some(&row.org), not_reachable()).await);
        }
        if row.revoked_at.is_some() {
            let r = Refusal::new(ErrorCode::Forbidden, format!("agent {agent} has been revoked"));
            return Err(self.refuse_request(who, &agent, Some(&row.org), r).await);
        }
        let consent = self
            .is_online(&agent)
            .ok_or_else(|| Refusal::new(ErrorCode::Conflict, format!("agent {agent} is offline")))?;
        self.check_scripts(&agent, &capabilities)?;

        let now = now_ms();
        let timeout =
            if priority.is_urgent() { self.cfg.urgent_consent_timeout } else { self.cfg.consent_timeout };
        let deadline = now + timeout.as_millis() as i64;
        let id = new_session_id();
        let info = SessionInfo {
            id: id.clone(),
            engineer: who.user.clone(),
            engineer_org: who.org.clone(),
            agent: agent.clone(),
            agent_org: row.org.clone(),
            ticket,
            priority,
            reason,
            capabilities,
            state: SessionState::Requested,
            approver: None,
            requested_at: now,
            consent_deadline: deadline,
            decided_at: None,
            started_at: None,
            ended_at: None,
            end_reason: None,
            duration_secs,
            granted: None,
            grant_expires_at: None,
            escalation: None,
        };
        let event = AuditEvent::new(who.user.as_str(), Action::SessionRequested)
            .org(&info.agent_org)
            .target(agent.as_str())
            .session(&id)
            .detail(json!({
                "engineer_org": info.engineer_org,
                "ticket": info.ticket,
                "priority": info.priority,
                "reason": info.reason,
                "capabilities": info.capabilities,
                "duration_secs": duration_secs,
                "consent": consent,
                "consent_deadline": deadline,
            }));
        self.store.insert_session(&info, &event).await?;
        let span = tracing::info_span!("session", id = %id, engineer = %who.user, agent = %agent);
        span.in_scope(|| info!(ticket = %info.ticket, priority = %priority, ?consent, "session requested"));
        let (ended, _) = watch::channel(false);
        let (open_outputs, _) = watch::channel(0);
        let live = Arc::new(LiveSession {
            id: id.clone(),
            agent: agent.clone(),
            span: span.clone(),
            core: tokio::sync::Mutex::new(SessionCore {
                info: info.clone(),
                machine: SessionMachine::new(deadline),
                grant: None,
                current: None,
                revision: 0,
                consent,
                exit: None,
                escalator: None,
                waiting_for: None,
            }),
            engineer: link,
            detached: Default::default(),
            ended,
            open_outputs,
            recorder: std::sync::OnceLock::new(),
            channels: std::sync::atomic::AtomicU32::new(0),
            countersignatures: Mutex::default(),
            open: Mutex::default(),
            file_streams: Mutex::default(),
            execs: Mutex::default(),
            reporting: Mutex::default(),
            followers: Mutex::default(),
            left_shells: Mutex::default(),
            timers: Mutex::default(),
            screen: Arc::default(),
        });
        self.sessions.lock().expect("sessions lock").insert(id.clone(), live);
        self.changed();

        let window = match consent {
            ConsentMode::Window => {
                self.matching_window(&info, &info.capabilities, info.duration_secs, now).await
            }
            _ => None,
        };
        let waiting_for = match consent {
            ConsentMode::Prompt => {
                if let Some(tx) = self.agent_tx(&agent) {
                    let _ = tx.send(RelayToAgent::ConsentRequest { session: Box::new(info.clone()) }).await;
                }
                format!("the customer at {agent} (prompt on the agent)")
            }
            ConsentMode::Approver => format!("an approver of {}", row.org),
            ConsentMode::Window => match &window {
                Some((w, _)) => format!("maintenance window {}", w.id),
                None => {
                    format!("an approver of {} (no maintenance window is open for this request)", row.org)
                }
            },
        };
        if let Some(s) = self.session(&id) {
            s.core.lock().await.waiting_for = Some(waiting_for.clone());
        }
        // Told before any answer can reach the same stream.
        let _ = reply_tx.send(RelayToEngineer::SessionRequested { session: info, waiting_for }).await;
        if let Some(window) = window {
            let relay = Arc::clone(self);
            let id = id.clone();
            tokio::spawn(
                async move {
                    let (window, secs) = window;
                    let approval = Approval { duration_secs: Some(secs), ..Approval::default() };
                    if let Err(r) = relay.answer(&id, Answerer::Window(&window), true, approval).await {
                        warn!(message = %r.message, "maintenance window approval failed");
                    }
                }
                .instrument(span.clone()),
            );
        }
        if let Some(s) = self.session(&id) {
            s.arm(self, tokio::time::sleep(timeout), move |relay, ()| async move { relay.expire(&id).await });
        }
        Ok(())
    }

    async fn expire(&self, id: &SessionId) {
        let Some(s) = self.session(id) else { return };
        let mut core = s.core.lock().await;
        if !core.machine.handle_timeout(now_ms()) {
            return;
        }
        let now = now_ms();
        let waited = now - core.info.requested_at;
        core.info.decided_at = Some(now);
        core.info.ended_at = core.info.decided_at;
        core.info.end_reason = Some("no answer before the deadline".into());
        let event = session_event(RELAY_ACTOR, Action::SessionExpired, &core.info)
            .detail(json!({ "reason": core.info.end_reason, "waited_ms": waited }));
        if let Err(e) = self.store.update_session(&core.info(), now, &event).await {
            warn!(error = %e, "cannot store expiry");
        }
        let agent = core.info.agent.clone();
        drop(core);
        s.span.in_scope(|| info!("request expired"));
        let _ = s.engineer.tx.send(RelayToEngineer::SessionExpired { waited_ms: waited }).await;
        if let Some(tx) = self.agent_tx(&agent) {
            let _ = tx
                .send(RelayToAgent::ConsentWithdrawn { session: id.clone(), reason: "expired".into() })
                .await;
        }
        self.forget(id);
    }

    pub(super) fn forget(&self, id: &SessionId) {
        if let Some(s) = self.sessions.lock().expect("sessions lock").remove(id) {
            // Set even with no splice watching: `register_channel` and `arm` read it.
            s.ended.send_replace(true);
            s.disarm();
            s.stop_channels(|_| false);
            self.changed();
        }
    }

    /// An approver, the prompt on the agent, or a maintenance window answers a request, or
    /// the pending escalation of a live session. A person's answer for a session another
    /// relay of the cluster holds is carried there ([`super::bus`]).
    pub(crate) async fn answer(
        self: &Arc<Self>,
        id: &SessionId,
        by: Answerer<'_>,
        approve: bool,
        approval: Approval,
    ) -> Result<String, Refusal> {
        if let Answerer::User(p) = by {
            let a = approval.clone();
            let command = move || bus::Command::Answer {
                approve,
                capabilities: a.capabilities,
                duration_secs: a.duration_secs,
                note: a.note,
            };
            if let Some(outcome) = self.elsewhere(p, id, command).await {
                return outcome;
            }
        }
        self.answer_here(id, by, approve, approval).await
    }

    /// [`Relay::answer`] for a session this relay holds, or none.
    pub(super) async fn answer_here(
        self: &Arc<Self>,
        id: &SessionId,
        by: Answerer<'_>,
        approve: bool,
        approval: Approval,
    ) -> Result<String, Refusal> {
        let attempt = if approve { "session.approve" } else { "session.deny" };
        let not_found = || Refusal::new(ErrorCode::NotFound, format!("no pending request {id}"));
        let Some(s) = self.session(id) else {
            return Err(match by {
                Answerer::User(p) => {
                    self.refuse_access(p, attempt, id, None, "no such session", (not_found(), not_found()))
                        .await
                }
                Answerer::Agent(name) => {
                    self.refuse_agent_answer(name, attempt, id, None, "no such session").await;
                    not_found()
                }
                Answerer::Window(_) => not_found(),
            });
        };
        let mut core = s.core.lock().await;
        let (approver, actor) = match by {
            Answerer::User(p) => {
                if !p.may_answer_for(&core.info.agent_org) {
                    let info = core.info();
                    drop(core);
                    let forbidden = Refusal::new(
                        ErrorCode::Forbidden,
                        format!("you may not answer requests for {}", info.agent_org),
                    );
                    let why = "may not answer for the session's organisation";
                    return Err(self
                        .refuse_access(p, attempt, id, Some(&info), why, (forbidden, not_found()))
                        .await);
                }
                if core.consent == ConsentMode::Prompt {
                    return Err(Refusal::new(
                        ErrorCode::Conflict,
                        format!(
                            "{id} is answered by the customer at {}'s own prompt (consent mode prompt); approvers cannot answer it",
                            core.info.agent
                        ),
                    ));
                }
                (ConsentSource::Approver(p.user.clone()), p.user.to_string())
            }
            Answerer::Agent(name) => {
                if &core.info.agent != name || core.consent != ConsentMode::Prompt {
                    let info = core.info();
                    drop(core);
                    // Another agent's session does not exist as far as this agent is told.
                    let (why, answer) = if &info.agent != name {
                        ("another agent's session", not_found())
                    } else {
                        let r = Refusal::new(ErrorCode::Forbidden, "this agent cannot answer that request");
                        ("the agent is not in prompt mode", r)
                    };
                    self.refuse_agent_answer(name, attempt, id, Some(&info), why).await;
                    return Err(answer);
                }
                (ConsentSource::Prompt(name.clone()), agent_actor(name))
            }
            Answerer::Window(w) => {
                if core.consent != ConsentMode::Window {
                    return Err(Refusal::new(
                        ErrorCode::Forbidden,
                        "the agent does not accept maintenance windows",
                    ));
                }
                (ConsentSource::Window(WindowId::new(w.id.as_str())), format!("window:{}", w.id))
            }
        };
        if core.info.escalation.is_some() && core.grant.is_some() {
            return self.answer_escalation(&s, core, approver, actor, approve, approval).await;
        }
        if core.state() != SessionState::Requested {
            return Err(Refusal::new(ErrorCode::Conflict, format!("{id} has no pending request")));
        }
        let now = now_ms();
        // What is granted is checked before anything changes.
        let granted = if approve {
            Some((
                grants::narrow(&core.info.capabilities, approval.capabilities.clone())?,
                grants::grant_secs(core.info.duration_secs, approval.duration_secs)?,
            ))
        } else {
            None
        };
        let transition = if approve { core.machine.handle_approve(now) } else { core.machine.handle_deny() };
        match transition {
            Ok(()) => {}
            Err(TransitionError::DeadlinePassed) => {
                drop(core);
                self.expire(id).await;
                return Err(Refusal::new(
                    ErrorCode::Conflict,
                    format!("request {id} expired before it was answered"),
                ));
            }
            Err(e) => return Err(Refusal::new(ErrorCode::Conflict, format!("request {id}: {e}"))),
        }
        core.info.approver = Some(approver.to_string());
        core.info.decided_at = Some(now);
        let agent = core.info.agent.clone();
        if let Some((caps, secs)) = granted {
            let event = session_event(&actor, Action::SessionApproved, &core.info);
            let expires_at = now + secs as i64 * 1000;
            let stored = self
                .next_grant(&mut core, caps, expires_at, approver.clone(), approval.note.clone(), event)
                .await;
            let (grant, signed) = match stored {
                Ok(x) => x,
                Err(e) => {
                    // Nobody is told of an approval that is not stored.
                    core.machine =
                        SessionMachine::resume(SessionState::Requested, core.info.consent_deadline);
                    core.info.approver = None;
                    core.info.decided_at = None;
                    return Err(e);
                }
            };
            let info = core.info();
            drop(core);
            s.span.in_scope(
                || info!(%approver, granted = %grants::list(&grant.capabilities), "session approved"),
            );
            // Recording starts before anyone may use the approval.
            if let Err(reason) = self.start_recording(&s, &info, &approver.to_string()).await {
                if self.cfg.recording_mandatory {
                    let message = format!("recording failed: {reason}");
                    self.end_session(id, EndReason::Failed { message: message.clone() }).await;
                    return Err(Refusal::new(
                        ErrorCode::Internal,
                        format!("approved, but {message}; the session was ended"),
                    ));
                }
                warn!(%reason, "recording could not start; continuing unrecorded (recording is optional)");
            }
            if let Some(tx) = self.agent_tx(&agent) {
                let _ = tx.send(RelayToAgent::Granted { grant: signed }).await;
            }
            let _ = s.engineer.tx.send(RelayToEngineer::SessionApproved { session: info }).await;
            Ok(format!(
                "approved {id}: {} until {}",
                grants::list(&grant.capabilities),
                crate::fmt_time(grant.expires_at)
            ))
        } else {
            let reason = approval.note.unwrap_or_else(|| "no reason given".into());
            core.info.ended_at = Some(now);
            core.info.end_reason = Some(format!("denied by {approver}: {reason}"));
            let event = session_event(&actor, Action::SessionDenied, &core.info)
                .detail(json!({ "approver": approver, "reason": reason }));
            if let Err(e) = self.store.update_session(&core.info(), now, &event).await {
                // As for approvals: a denial that is not stored is not announced.
                core.machine = SessionMachine::resume(SessionState::Requested, core.info.consent_deadline);
                core.info.approver = None;
                core.info.decided_at = None;
                core.info.ended_at = None;
                core.info.end_reason = None;
                return Err(e.into());
            }
            drop(core);
            s.span.in_scope(|| info!(%approver, %reason, "session denied"));
            let _ = s
                .engineer
                .tx
                .send(RelayToEngineer::SessionDenied { by: Some(approver.to_string()), reason })
                .await;
            if let Some(tx) = self.agent_tx(&agent) {
                let _ = tx
                    .send(RelayToAgent::ConsentWithdrawn { session: id.clone(), reason: "denied".into() })
                    .await;
            }
            self.forget(id);
            Ok(format!("denied {id}"))
        }
    }

    /// An approver, an admin or the engineer ends a session (carried to the relay that
    /// holds it, in a cluster).
    pub(crate) async fn end_by(
        &self,
        who: &Principal,
        id: &SessionId,
        reason: Option<String>,
    ) -> Result<String, Refusal> {
        let r = reason.clone();
        if let Some(outcome) = self.elsewhere(who, id, move || bus::Command::End { reason: r }).await {
            return outcome;
        }
        self.end_by_here(who, id, reason).await
    }

    /// [`Relay::end_by`] for a session this relay holds, or none.
    pub(super) async fn end_by_here(
        &self,
        who: &Principal,
        id: &SessionId,
        reason: Option<String>,
    ) -> Result<String, Refusal> {
        let not_found = || Refusal::new(ErrorCode::NotFound, format!("no live session {id}"));
        let Some(s) = self.session(id) else {
            let why = "no such session";
            return Err(self
                .refuse_access(who, "session.end", id, None, why, (not_found(), not_found()))
                .await);
        };
        let info = s.core.lock().await.info();
        if !who.may_end(&info) {
            let forbidden = Refusal::new(ErrorCode::Forbidden, format!("you may not end session {id}"));
            let why = "may not end this session";
            return Err(self
                .refuse_access(who, "session.end", id, Some(&info), why, (forbidden, not_found()))
                .await);
        }
        self.end_session(id, EndReason::EndedBy { user: who.user.to_string(), reason }).await;
        Ok(format!("ended {id}"))
    }

    /// Ends a session for any reason: stores it, tells both sides, resets its streams.
    pub(crate) async fn end_session(&self, id: &SessionId, reason: EndReason) {
        let Some(s) = self.session(id) else { return };
        let mut core = s.core.lock().await;
        let was = core.machine.state();
        if core.machine.handle_end().is_err() {
            return;
        }
        let reason = match (was, reason) {
            (SessionState::Requested, EndReason::EngineerDisconnected | EndReason::EngineerInterrupted) => {
                EndReason::Withdrawn
            }
            (_, r) => r,
        };
        // A failed recorder stopped every splice first; what followed (a shell killed by
        // the cut, a peer leaving) must not stand in for the reason.
        let reason = self.recording_failure(&s, &core.info).await.unwrap_or(reason);
        let now = now_ms();
        core.info.ended_at = Some(now);
        core.info.end_reason = Some(reason.to_string());
        let actor = match &reason {
            EndReason::EndedBy { user, .. } => user.clone(),
            EndReason::ShellExited { .. } | EndReason::ScriptExited { .. } | EndReason::AgentDisconnected => {
                agent_actor(&core.info.agent)
            }
            EndReason::Withdrawn
            | EndReason::EngineerDisconnected
            | EndReason::EngineerInterrupted
            | EndReason::Finished { .. } => core.info.engineer.to_string(),
            _ => RELAY_ACTOR.to_owned(),
        };
        let event = session_event(&actor, Action::SessionEnded, &core.info).detail(json!({
            "reason": reason.to_string(),
            "end": reason,
            "previous_state": was,
        }));
        if let Err(e) = self.store.update_session(&core.info(), now, &event).await {
            warn!(error = %e, "cannot store the end of a session");
        }
        let agent = core.info.agent.clone();
        let info = core.info();
        drop(core);
        s.span.in_scope(|| info!(%reason, "session ended"));
        self.forget(id);
        self.seal_recording(&s, &info, &reason).instrument(s.span.clone()).await;
        self.tell_ended(&s, &agent, was, reason).await;
    }

    /// Tells the session's engineers and its agent that it ended (a request still waiting
    /// is withdrawn from the agent's prompt instead).
    pub(super) async fn tell_ended(
        &self,
        s: &LiveSession,
        agent: &AgentName,
        was: SessionState,
        reason: EndReason,
    ) {
        s.tell_engineers(RelayToEngineer::SessionEnded { reason: reason.clone() }).await;
        if let Some(tx) = self.agent_tx(agent) {
            let session = s.id.clone();
            let msg = if was == SessionState::Requested {
                RelayToAgent::ConsentWithdrawn { session, reason: reason.to_string() }
            } else {
                RelayToAgent::EndSession { session, reason }
            };
            let _ = tx.send(msg).await;
        }
    }

    /// Ends every live session (relay shutdown).
    pub(crate) async fn end_all(&self, reason: EndReason) {
        let ids: Vec<SessionId> = self.sessions.lock().expect("sessions lock").keys().cloned().collect();
        for id in ids {
            self.end_session(&id, reason.clone()).await;
        }
    }

    /// Finishes every online agent's control stream and waits, at most `bound`, until the
    /// agents have acknowledged what was sent on it: before a relay that is stopping closes
    /// its endpoint, so the sessions' ends reach the agents instead of being discarded
    /// with the connection.
    pub(crate) async fn deliver_to_agents(&self, bound: std::time::Duration) {
        let txs: Vec<_> = self.agents.lock().expect("agents lock").values().map(|a| a.peer.clone()).collect();
        let all = futures_util::future::join_all(txs.iter().map(|tx| tx.finish_delivered()));
        let _ = tokio::time::timeout(bound, all).await;
    }

    /// Ends the sessions of an engineer connection that went away, for `reason`
    /// (disconnected, or interrupted if the client said so as it closed).
    pub(crate) async fn engineer_gone(&self, conn_id: u64, reason: EndReason) {
        let ids: Vec<SessionId> = self
            .sessions
            .lock()
            .expect("sessions lock")
            .values()
            .filter(|s| s.engineer.conn_id == conn_id && !s.detached.load(Ordering::Relaxed))
            .map(|s| s.id.clone())
            .collect();
        for id in ids {
            self.end_session(&id, reason.clone()).await;
        }
    }

    /// The command that requested session `id` (on connection `conn_id`) ends it as it
    /// leaves, saying what it did (`reason`).
    pub(crate) async fn finish(
        &self,
        who: &Principal,
        conn_id: u64,
        id: &SessionId,
        reason: EndReason,
    ) -> Result<String, Refusal> {
        let s = self
            .session(id)
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no live session {id}")))?;
        let engineer = s.core.lock().await.info.engineer.clone();
        if engineer != who.user || s.engineer.conn_id != conn_id || s.detached.load(Ordering::Relaxed) {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("only the command that requested {id} may finish it"),
            ));
        }
        self.end_session(id, reason).await;
        Ok(format!("ended {id}"))
    }

    /// The command that requested session `id` (on connection `conn_id`) leaves it without
    /// ending it, because what it used is no longer granted. The session keeps its other
    /// capabilities for commands with `--session`, and can be extended; if its grant is
    /// (or becomes) out of force and nobody extends it within [`Self::linger`], it ends.
    pub(crate) async fn detach(
        self: &Arc<Self>,
        who: &Principal,
        conn_id: u64,
        id: &SessionId,
    ) -> Result<String, Refusal> {
        let s = self
            .session(id)
            .ok_or_else(|| Refusal::new(ErrorCode::NotFound, format!("no live session {id}")))?;
        let core = s.core.lock().await;
        if core.info.engineer != who.user || s.engineer.conn_id != conn_id {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("only the command that requested {id} may leave it"),
            ));
        }
        let Some(grant) = core.current.as_ref() else {
            return Err(Refusal::new(ErrorCode::Conflict, format!("session {id} is not approved")));
        };
        let expires_at = grant.expires_at;
        let kept = grants::list(&grant.capabilities);
        drop(core);
        s.detached.store(true, Ordering::Relaxed);
        s.span.in_scope(|| info!("the requesting command left; the session stays"));
        self.arm_lapse(id, expires_at);
        Ok(format!("session {id} stays open with {kept}"))
    }

    /// How long a detached session whose grant is out of force waits for an extension.
    pub(crate) fn linger(&self) -> Duration {
        self.cfg.consent_timeout
    }

    /// For a detached session: once its grant expired at `expires_at` and [`Self::linger`]
    /// has passed, ends it unless it was extended or an escalation is waiting.
    pub(crate) fn arm_lapse(self: &Arc<Self>, id: &SessionId, expires_at: i64) {
        let Some(s) = self.session(id) else { return };
        let id = id.clone();
        let at = expires_at.max(now_ms()) + self.linger().as_millis() as i64;
        s.arm(self, timers::until(at), move |relay, ()| async move {
            let Some(s) = relay.session(&id) else { return };
            let retry = {
                let core = s.core.lock().await;
                let in_force = core.current.as_ref().is_some_and(|g| g.expires_at > now_ms());
                if in_force {
                    // Extended: the new grant's expiry arms the next check.
                    return;
                }
                core.info.escalation.as_ref().map(|e| e.deadline)
            };
            match retry {
                Some(deadline) => relay.arm_lapse(&id, deadline),
                None => relay.end_session(&id, EndReason::Lapsed).await,
            }
        });
    }

    /// Registers exec channel `stream`, opened from connection `conn_id`: unless that is the
    /// command that requested the session (whose script's exit ends it), its exit goes
    /// to `opener` alone and the session goes on.
    pub(crate) fn exec_opened(&self, s: &LiveSession, stream: u64, opener: Opener) {
        if opener.conn_id != s.engineer.conn_id || s.detached.load(Ordering::Relaxed) {
            s.execs.lock().expect("execs lock").insert(stream, opener);
        }
    }

    /// Where the standard error of the channel on agent stream `stream` goes: the
    /// connection that opened it, if that is not the session's own.
    pub(crate) fn stderr_to(&self, s: &LiveSession, stream: u64) -> Option<Arc<dyn super::peer::Peer>> {
        s.execs.lock().expect("execs lock").get(&stream).map(|o| o.peer.clone())
    }

    /// The agent reports that a script run with `exec --session` exited: audited, and told
    /// to the command that ran it. False if `stream` is not such a channel.
    pub(crate) async fn script_exited(
        &self,
        agent: &AgentName,
        id: &SessionId,
        stream: u64,
        name: &str,
        code: Option<i32>,
        signal: Option<String>,
    ) -> bool {
        let Some(s) = self.session(id) else { return false };
        if &s.agent != agent {
            return false;
        }
        let Some(opener) = s.execs.lock().expect("execs lock").remove(&stream) else {
            return false;
        };
        let info = s.core.lock().await.info();
        let event = session_event(&agent_actor(agent), Action::ScriptExited, &info)
            .detail(json!({ "script": name, "code": code, "signal": signal, "stream": stream }));
        let _ = self.audit(event).await;
        s.span.in_scope(|| info!(script = name, ?code, ?signal, "script exited; session continues"));
        if let Some(tx) = opener.tx.upgrade() {
            let msg =
                RelayToEngineer::ScriptExited { session: id.clone(), name: name.to_owned(), code, signal };
            let _ = tx.send(msg).await;
        }
        true
    }

    /// The agent reports that the session's shell exited; the session ends once its output
    /// has reached the engineer (or after a bound, if the engineer stopped reading).
    pub(crate) async fn shell_exited(
        self: &Arc<Self>,
        agent: &AgentName,
        id: &SessionId,
        reason: EndReason,
        needed: Capability,
    ) {
        let Some(s) = self.session(id) else { return };
        if &s.agent != agent {
            return;
        }
        {
            let mut core = s.core.lock().await;
            // A shell killed because the grant stopped covering it does not end the session:
            // the grant change was announced, and other capabilities may remain.
            let covered = core.current.as_ref().is_some_and(|g| g.covers(&needed) && g.expires_at > now_ms());
            if !covered {
                s.span.in_scope(|| info!(%reason, "shell ended after its grant changed; session continues"));
                return;
            }
            core.exit = Some(reason.clone());
        }
        let id = id.clone();
        let mut outputs = s.open_outputs.subscribe();
        let drain = async move {
            let drained = tokio::time::timeout(Duration::from_secs(5), outputs.wait_for(|n| *n == 0))
                .await
                .is_ok_and(|r| r.is_ok());
            if !drained {
                warn!("output still flowing 5 s after the shell exited; ending anyway");
            }
        };
        s.arm(self, drain, move |relay, ()| async move { relay.end_session(&id, reason).await });
    }
}

/// What an engineer asks for.
pub(crate) struct NewSession {
    pub agent: AgentName,
    pub ticket: String,
    pub priority: Priority,
    pub reason: String,
    pub capabilities: Vec<Capability>,
    pub duration_secs: Option<u64>,
}

/// Who answers a consent request.
pub(crate) enum Answerer<'a> {
    User(&'a Principal),
    Agent(&'a AgentName),
    /// A maintenance window the request falls in (agents in `window` mode only).
    Window(&'a crate::store::WindowRow),
}
