//! An engineer's (or approver's, auditor's, admin's) connection.
//!
//! - The first bidirectional stream is the control stream: `Login` or `Auth` first, then
//!   commands, each answered in order; a session request turns it into the session's
//!   event stream as well.
//! - Every further bidirectional stream is a channel: a [`ChannelOpen`] frame, checked by
//!   the broker against the session's grant, then spliced to a new stream on the agent.
//!
//! This module parses and forwards; the broker decides.

use super::files::Account;
use super::policy::Principal;
use super::splice::{Tee, splice};
use super::{EngineerLink, Opener, Refusal, Relay};
use crate::recording::format::Direction;
use assist_net::{codes, read_msg, write_msg};
use assist_proto::msg::{
    AgentChannelOpen, ChannelKind, ChannelOpen, ChannelReply, EngineerToRelay, ErrorCode, RelayToEngineer,
};
use assist_proto::session::EndReason;
use quinn::{Connection, RecvStream, SendStream};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, warn};

/// How long a peer may take to send the header of a stream it opened.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn handle(
    relay: Arc<Relay>,
    conn: Connection,
    mut send: SendStream,
    mut recv: RecvStream,
    first: EngineerToRelay,
) {
    let conn_id = relay.conn_id();
    let (tx, mut rx) = mpsc::channel::<RelayToEngineer>(32);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if write_msg(&mut send, &msg).await.is_err() {
                break;
            }
        }
        let _ = send.finish();
    });

    let principal = match authenticate(&relay, first, conn.remote_address()).await {
        Ok((p, reply)) => {
            let _ = tx.send(reply).await;
            p
        }
        Err(r) => {
            let _ = tx.send(r.to_engineer()).await;
            drop(tx);
            let _ = writer.await;
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
            return;
        }
    };
    let span = tracing::info_span!("engineer", user = %principal.user, conn = conn_id);
    let link = EngineerLink { conn_id, tx: tx.clone(), conn: conn.clone() };
    let opener = Opener { conn_id, tx: tx.downgrade(), conn: conn.clone() };
    let channels = tokio::spawn(
        accept_channels(relay.clone(), conn.clone(), principal.clone(), opener).instrument(span.clone()),
    );

    async {
        loop {
            match read_msg::<EngineerToRelay, _>(&mut recv).await {
                Ok(Some(msg)) => {
                    if let Some(reply) = command(&relay, &principal, &link, msg).await {
                        let _ = tx.send(reply).await;
                    }
                }
                Ok(None) => break,
                Err(assist_net::FramedError::Frame(e)) => {
                    warn!(error = %e, "malformed message from engineer");
                    let _ = tx.send(Refusal::new(ErrorCode::BadRequest, e.to_string()).to_engineer()).await;
                    break;
                }
                Err(e) => {
                    debug!(error = %e, "engineer control stream ended");
                    break;
                }
            }
        }
    }
    .instrument(span.clone())
    .await;

    let reason = match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == codes::INTERRUPTED => {
            EndReason::EngineerInterrupted
        }
        _ => EndReason::EngineerDisconnected,
    };
    relay.engineer_gone(conn_id, reason).await;
    drop(link);
    drop(tx);
    let _ = writer.await;
    // Give the client time to read the last replies before the connection goes.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    conn.close(codes::OK, b"bye");
    channels.abort();
}

async fn authenticate(
    relay: &Relay,
    first: EngineerToRelay,
    remote: std::net::SocketAddr,
) -> Result<(Principal, RelayToEngineer), Refusal> {
    match first {
        EngineerToRelay::Login { user, password, code } => {
            let (p, token, expires_at) = relay.login(&user, &password, code.as_deref(), remote.ip()).await?;
            let reply = RelayToEngineer::LoggedIn {
                token,
                user: p.user.clone(),
                org: p.org.clone(),
                role: p.role,
                expires_at,
            };
            Ok((p, reply))
        }
        EngineerToRelay::Auth { token } => {
            let p = relay.verify_token(&token, remote).await?;
            let reply =
                RelayToEngineer::Authenticated { user: p.user.clone(), org: p.org.clone(), role: p.role };
            Ok((p, reply))
        }
        _ => Err(Refusal::new(ErrorCode::Unauthenticated, "log in first (assist login)")),
    }
}

async fn command(
    relay: &Arc<Relay>,
    who: &Principal,
    link: &EngineerLink,
    msg: EngineerToRelay,
) -> Option<RelayToEngineer> {
    // Free text is checked here, before any state is touched, by the rules the CLI applies
    // before sending (`assist_proto::text`).
    if let Err(e) = msg.check_text() {
        return Some(Refusal::new(ErrorCode::BadRequest, e.to_string()).to_engineer());
    }
    let result = match msg {
        EngineerToRelay::Login { .. } | EngineerToRelay::Auth { .. } => {
            Err(Refusal::new(ErrorCode::BadRequest, "already authenticated on this connection"))
        }
        EngineerToRelay::ListAgents => {
            relay.list_agents(who).await.map(|agents| RelayToEngineer::Agents { agents })
        }
        EngineerToRelay::ListRequests => {
            Ok(RelayToEngineer::Sessions { sessions: relay.list_requests(who).await })
        }
        EngineerToRelay::ListSessions => {
            relay.list_sessions(who).await.map(|sessions| RelayToEngineer::Sessions { sessions })
        }
        EngineerToRelay::RequestSession { agent, ticket, priority, reason, capabilities, duration_secs } => {
            // Success is answered by the broker itself, before any consent can arrive.
            let req = super::NewSession { agent, ticket, priority, reason, capabilities, duration_secs };
            match relay.request_session(who, link.clone(), req).await {
                Ok(()) => return None,
                Err(r) => Err(r),
            }
        }
        EngineerToRelay::Approve { session, capabilities, duration_secs, note } => {
            let approval = super::Approval { capabilities, duration_secs, note };
            relay
                .answer(&session, super::Answerer::User(who), true, approval)
                .await
                .map(|message| RelayToEngineer::Done { message })
        }
        EngineerToRelay::Deny { session, reason } => {
            let approval = super::Approval { note: Some(reason), ..Default::default() };
            relay
                .answer(&session, super::Answerer::User(who), false, approval)
                .await
                .map(|message| RelayToEngineer::Done { message })
        }
        EngineerToRelay::Escalate { session, add, duration_secs, reason } => {
            match relay.escalate(who, link, &session, add, duration_secs, reason).await {
                Ok(()) => return None,
                Err(r) => Err(r),
            }
        }
        EngineerToRelay::Revoke { session, capabilities, reason } => relay
            .revoke(who, &session, capabilities, reason)
            .await
            .map(|message| RelayToEngineer::Done { message }),
        EngineerToRelay::End { session, reason } => {
            relay.end_by(who, &session, reason).await.map(|message| RelayToEngineer::Done { message })
        }
        EngineerToRelay::Finish { session, work, ok } => relay
            .finish(who, link.conn_id, &session, EndReason::Finished { work, ok })
            .await
            .map(|message| RelayToEngineer::Done { message }),
        EngineerToRelay::Detach { session } => {
            relay.detach(who, link.conn_id, &session).await.map(|message| RelayToEngineer::Done { message })
        }
        EngineerToRelay::Resize { session, cols, rows } => {
            relay.resize(link.conn_id, &session, cols, rows).await;
            return None;
        }
        _ => Err(Refusal::new(ErrorCode::BadRequest, "unsupported request")),
    };
    Some(result.unwrap_or_else(|r| r.to_engineer()))
}

async fn accept_channels(relay: Arc<Relay>, conn: Connection, who: Principal, opener: Opener) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(open_channel(relay.clone(), who.clone(), opener.clone(), send, recv).in_current_span());
    }
}

async fn refuse(send: &mut SendStream, reason: String) {
    info!(%reason, "channel refused");
    let _ = write_msg(send, &ChannelReply::Refused { reason }).await;
    let _ = send.finish();
}

async fn open_channel(
    relay: Arc<Relay>,
    who: Principal,
    opener: Opener,
    mut esend: SendStream,
    mut erecv: RecvStream,
) {
    let open: ChannelOpen = match tokio::time::timeout(HEADER_TIMEOUT, read_msg(&mut erecv)).await {
        Ok(Ok(Some(open))) => open,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return refuse(&mut esend, format!("bad channel header: {e}")).await,
        Err(_) => return refuse(&mut esend, "no channel header".into()).await,
    };
    if matches!(open.channel, ChannelKind::Stderr | ChannelKind::StderrOf { .. }) {
        let reason = "a stderr channel is opened by the agent, not the engineer";
        relay.audit_refusal(&who, &open.session, &open.channel, reason).await;
        return refuse(&mut esend, reason.into()).await;
    }
    if let Err(reason) = open.channel.validate().and_then(|()| relay.check_declared(&open.channel)) {
        relay.audit_refusal(&who, &open.session, &open.channel, &reason).await;
        return refuse(&mut esend, reason).await;
    }
    let cap = open.channel.required_capability();
    let (session, agent, grant, channel, handle) =
        match relay.grant_for_channel(&who, &open.session, &cap).await {
            Ok(x) => x,
            Err(r) => {
                relay.audit_refusal(&who, &open.session, &open.channel, &r.message).await;
                return refuse(&mut esend, r.message).await;
            }
        };
    let span = session.span.clone();
    async move {
        let Some(aconn) = relay.agent_conn(&agent) else {
            return refuse(&mut esend, format!("agent {agent} is offline")).await;
        };
        let Ok((mut asend, mut arecv)) = aconn.open_bi().await else {
            return refuse(&mut esend, format!("cannot open a stream to agent {agent}")).await;
        };
        let open_kind = open.channel.clone();
        // Before the agent can run it, so that its exit always finds where to go.
        if let ChannelKind::Exec { .. } = &open_kind {
            relay.exec_opened(&session, u64::from(asend.id()), opener.clone());
        }
        if write_msg(&mut asend, &AgentChannelOpen { open, grant }).await.is_err() {
            return refuse(&mut esend, format!("agent {agent} went away")).await;
        }
        let reply: ChannelReply = match tokio::time::timeout(HEADER_TIMEOUT, read_msg(&mut arecv)).await {
            Ok(Ok(Some(r))) => r,
            _ => {
                let _ = asend.reset(codes::PROTOCOL);
                return refuse(&mut esend, format!("agent {agent} did not answer the channel request")).await;
            }
        };
        // A file channel's sizes come before any data: over the limits, nothing is spliced.
        let ready = match &reply {
            ChannelReply::Accepted => match relay.file_ready(&open_kind, &mut arecv, HEADER_TIMEOUT).await {
                Ok(ready) => ready,
                Err(reason) => {
                    let _ = asend.reset(codes::REFUSED);
                    let _ = arecv.stop(codes::REFUSED);
                    relay.audit_refusal(&who, &session.id, &open_kind, &reason).await;
                    return refuse(&mut esend, reason).await;
                }
            },
            ChannelReply::Refused { .. } => None,
        };
        if write_msg(&mut esend, &reply).await.is_err() {
            let _ = asend.reset(codes::SESSION_ENDED);
            return;
        }
        if let ChannelReply::Refused { reason } = &reply {
            info!(%reason, "agent refused channel");
            relay.audit_refusal(&who, &session.id, &open_kind, &format!("refused by the agent: {reason}")).await;
            let _ = esend.finish();
            let _ = asend.finish();
            return;
        }
        let mut end_gate = None;
        if let Some(ready) = &ready {
            end_gate = Some(session.file_stream(u64::from(asend.id()), channel, Account::of(&open_kind)));
            if write_msg(&mut esend, ready).await.is_err() {
                let _ = asend.reset(codes::SESSION_ENDED);
                return;
            }
        }
        let recorder = session.recorder();
        if let Some(rec) = &recorder {
            let described = serde_json::json!({ "kind": open_kind.name(), "stream": u64::from(asend.id()), "request": &open_kind, "ready": ready });
            if rec.channel_open(channel, described).await.is_err() {
                let _ = esend.reset(codes::SESSION_ENDED);
                let _ = asend.reset(codes::SESSION_ENDED);
                return;
            }
            if let ChannelKind::Shell { pty: Some(pty), .. } = &open_kind {
                let _ = rec.resize(channel, pty.cols, pty.rows).await;
            }
        } else if relay.cfg.recording_mandatory {
            let _ = esend.reset(codes::SESSION_ENDED);
            let _ = asend.reset(codes::SESSION_ENDED);
            return;
        }
        info!(channel, "channel open");
        let tee = |direction| recorder.clone().map(|recorder| Tee { recorder, channel, direction });
        session.open_outputs.send_modify(|n| *n += 1);
        let up = splice(erecv, asend, handle.stop.clone(), tee(Direction::In), None);
        let down = async {
            let r = splice(arecv, esend, handle.stop.clone(), tee(Direction::Out), end_gate).await;
            session.open_outputs.send_modify(|n| *n -= 1);
            r
        };
        let ((up_bytes, up_end), (down_bytes, down_end)) = tokio::join!(up, down);
        if let Some(rec) = &recorder {
            let _ = rec
                .channel_close(channel, serde_json::json!({ "in": up_bytes, "out": down_bytes, "in_end": format!("{up_end:?}"), "out_end": format!("{down_end:?}") }))
                .await;
        }
        info!(up_bytes, ?up_end, down_bytes, ?down_end, "channel closed");
    }
    .instrument(span)
    .await
}
