//! An engineer's (or approver's, auditor's, admin's) connection.
//!
//! - The first bidirectional stream is the control stream: `Login` or `Auth` first, then
//!   commands, each answered in order; a session request turns it into the session's
//!   event stream as well.
//! - Every further bidirectional stream is a channel: a [`ChannelOpen`] frame, checked by
//!   the broker against the session's grant, then spliced to a new stream on the agent.
//!
//! This module parses and forwards; the broker decides (`broker::admit` for channels).

use super::desktop::{Flow, Messages, VIEW_ONLY_INPUT};
use super::peer::QuicEngineer;
use super::splice::{Tee, splice};
use crate::broker::peer::ChunkSource;
use crate::broker::policy::Principal;
use crate::broker::{
    Admission, Answerer, Approval, Client, EngineerLink, ForwardClosed as Closed, NewSession, Opener,
    Refusal, Relay, Watching,
};
use crate::recording::format::Direction;
use assist_net::{codes, read_msg, write_msg};
use assist_proto::msg::{
    AgentChannelOpen, ChannelKind, ChannelOpen, ChannelReply, EngineerToRelay, ErrorCode, HeldBy,
    RelayToEngineer,
};
use assist_proto::session::EndReason;
use quinn::{Connection, RecvStream, SendStream};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, warn};

/// How long a peer may take to send the header of a stream it opened.
pub(super) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

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
    // Authenticated: room for many channels at once (each forwarded connection is one).
    conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(assist_net::endpoint::MAX_OPEN_CHANNELS));
    let span = tracing::info_span!("engineer", user = %principal.user, conn = conn_id);
    let peer = Arc::new(QuicEngineer::new(conn.clone()));
    let mut closing = peer.closing.subscribe();
    let link = EngineerLink { conn_id, tx: tx.clone(), peer: peer.clone() };
    relay.person_online(conn_id, principal.user.clone(), peer.clone());
    let opener = Opener { conn_id, tx: tx.downgrade(), peer };
    let channels = tokio::spawn(
        accept_channels(relay.clone(), conn.clone(), principal.clone(), opener).instrument(span.clone()),
    );

    async {
        loop {
            let read = tokio::select! {
                read = read_msg::<EngineerToRelay, _>(&mut recv) => read,
                // The broker took the person's access away: what is queued is delivered below.
                _ = closing.wait_for(Option::is_some) => break,
            };
            match read {
                Ok(Some(msg)) => {
                    if let Some(reply) = command(&relay, &principal, &link, msg).await {
                        // A list longer than one frame goes in parts (`proto::parts`).
                        for part in reply.into_parts() {
                            let _ = tx.send(part).await;
                        }
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
    relay.person_gone(conn_id);
    relay.engineer_gone(conn_id, reason).await;
    drop(link);
    drop(tx);
    let _ = writer.await;
    // Give the client time to read the last replies before the connection goes.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    match *closing.borrow() {
        Some(why) => conn.close(codes::REFUSED, why.message().as_bytes()),
        None => conn.close(codes::OK, b"bye"),
    }
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
    // The engineer's own commands about a session need the memory of the relay holding
    // it: one held by another relay of the cluster sends them there (`broker::holder`).
    if let Some(id) = needs_holder(&msg)
        && let Some(there) = relay.holder_elsewhere(who, id).await
    {
        return Some(there.to_engineer());
    }
    let result = match msg {
        EngineerToRelay::Login { .. } | EngineerToRelay::Auth { .. } => {
            Err(Refusal::new(ErrorCode::BadRequest, "already authenticated on this connection"))
        }
        EngineerToRelay::ListAgents => {
            relay.list_agents(who).await.map(|agents| RelayToEngineer::Agents { agents, more: false })
        }
        EngineerToRelay::ListRequests => {
            Ok(RelayToEngineer::Sessions { sessions: relay.list_requests(who).await, more: false })
        }
        EngineerToRelay::ListSessions => {
            relay.list_sessions(who).await.map(|sessions| RelayToEngineer::Sessions { sessions, more: false })
        }
        EngineerToRelay::RequestSession { agent, ticket, priority, reason, capabilities, duration_secs } => {
            // Success is answered by the broker itself, before any consent can arrive.
            let req = NewSession { agent, ticket, priority, reason, capabilities, duration_secs };
            match relay.request_session(who, link.clone(), req).await {
                Ok(()) => return None,
                Err(r) => Err(r),
            }
        }
        EngineerToRelay::Approve { session, capabilities, duration_secs, note } => {
            let approval = Approval { capabilities, duration_secs, note };
            relay
                .answer(&session, Answerer::User(who), true, approval)
                .await
                .map(|message| RelayToEngineer::Done { message })
        }
        EngineerToRelay::Deny { session, reason } => {
            let approval = Approval { note: Some(reason), ..Default::default() };
            relay
                .answer(&session, Answerer::User(who), false, approval)
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
        EngineerToRelay::Follow { session } => {
            relay.follow(who, link, &session).await.map(|message| RelayToEngineer::Done { message })
        }
        EngineerToRelay::Resize { session, cols, rows } => {
            relay.resize(link.conn_id, &session, cols, rows).await;
            return None;
        }
        _ => Err(Refusal::new(ErrorCode::BadRequest, "unsupported request")),
    };
    Some(result.unwrap_or_else(|r| r.to_engineer()))
}

/// The session of a command that only the relay holding it can run (approvals,
/// revocations and ends are carried to it by the broker instead).
fn needs_holder(msg: &EngineerToRelay) -> Option<&assist_proto::ids::SessionId> {
    match msg {
        EngineerToRelay::Follow { session }
        | EngineerToRelay::Escalate { session, .. }
        | EngineerToRelay::Detach { session }
        | EngineerToRelay::Finish { session, .. } => Some(session),
        _ => None,
    }
}

async fn accept_channels(relay: Arc<Relay>, conn: Connection, who: Principal, opener: Opener) {
    let peer = conn.remote_address();
    while let Ok((send, recv)) = conn.accept_bi().await {
        tokio::spawn(
            open_channel(relay.clone(), who.clone(), opener.clone(), peer, send, recv).in_current_span(),
        );
    }
}

async fn refuse(send: &mut SendStream, reason: String) {
    refuse_with(send, reason, None).await
}

/// A refusal; with `held_by`, the session's relay of the cluster, where the channel goes.
async fn refuse_with(send: &mut SendStream, reason: String, held_by: Option<HeldBy>) {
    info!(%reason, "channel refused");
    let _ = write_msg(send, &ChannelReply::Refused { reason, held_by }).await;
    let _ = send.finish();
}

async fn open_channel(
    relay: Arc<Relay>,
    who: Principal,
    opener: Opener,
    peer: SocketAddr,
    mut esend: SendStream,
    mut erecv: RecvStream,
) {
    let open: ChannelOpen = match tokio::time::timeout(HEADER_TIMEOUT, read_msg(&mut erecv)).await {
        Ok(Ok(Some(open))) => open,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return refuse(&mut esend, format!("bad channel header: {e}")).await,
        Err(_) => return refuse(&mut esend, "no channel header".into()).await,
    };
    if open.channel == ChannelKind::Watch {
        // Not a channel to the agent: the relay serves the session's screen itself.
        let watching = match relay.watch(&who, &open.session).await {
            Ok(w) => w,
            Err(r) => return refuse_with(&mut esend, r.message, r.held_by).await,
        };
        return watch(watching, esend, erecv).await;
    }
    let admitted = match relay.admit_channel(&who, &open).await {
        Ok(a) => a,
        Err(refused) => return refuse_with(&mut esend, refused.to_string(), refused.held_by()).await,
    };
    let span = admitted.session.span.clone();
    splice_admitted(&relay, admitted, open, &opener, peer, esend, erecv).instrument(span).await
}

/// Opens an admitted channel on the agent, passes its answer on, and splices it.
async fn splice_admitted(
    relay: &Relay,
    admitted: Admission,
    open: ChannelOpen,
    opener: &Opener,
    peer: SocketAddr,
    mut esend: SendStream,
    erecv: RecvStream,
) {
    let agent = &admitted.agent;
    let Some(aconn) = super::peer::connection(admitted.peer.as_ref()) else {
        return refuse(&mut esend, format!("agent {agent} is offline")).await;
    };
    let Ok((mut asend, mut arecv)) = aconn.open_bi().await else {
        return refuse(&mut esend, format!("cannot open a stream to agent {agent}")).await;
    };
    let stream = u64::from(asend.id());
    // Before the agent can run it, so that its exit always finds where to go.
    admitted.agent_stream(relay, stream, opener, Some(u64::from(esend.id())));
    if write_msg(&mut asend, &AgentChannelOpen { open, grant: admitted.grant.clone() }).await.is_err() {
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
        ChannelReply::Accepted if admitted.wants_ready() => {
            let ready = match tokio::time::timeout(HEADER_TIMEOUT, read_msg(&mut arecv)).await {
                Ok(Ok(Some(r))) => Some(r),
                _ => None,
            };
            if let Err(refused) = admitted.check_ready(relay, ready.as_ref()).await {
                let _ = asend.reset(codes::REFUSED);
                let _ = arecv.stop(codes::REFUSED);
                return refuse(&mut esend, refused.to_string()).await;
            }
            ready
        }
        _ => None,
    };
    if write_msg(&mut esend, &reply).await.is_err() {
        let _ = asend.reset(codes::SESSION_ENDED);
        return;
    }
    if let ChannelReply::Refused { reason, .. } = &reply {
        info!(%reason, "agent refused channel");
        admitted.refused(relay, &format!("refused by the agent: {reason}")).await;
        let _ = esend.finish();
        let _ = asend.finish();
        return;
    }
    let mut end_gate = None;
    if let Some(ready) = &ready {
        end_gate = admitted.end_gate(stream);
        if write_msg(&mut esend, ready).await.is_err() {
            let _ = asend.reset(codes::SESSION_ENDED);
            return;
        }
    }
    if admitted.record_open(stream, ready.as_ref(), Client::Cli).await.is_err() {
        let _ = esend.reset(codes::SESSION_ENDED);
        let _ = asend.reset(codes::SESSION_ENDED);
        return;
    }
    // A forward's `forward.opened` is stored while its bytes already flow: awaited first,
    // each connection's first byte waited for one database commit, and a hundred opened at
    // once for a hundred commits in a row. `forward.closed` still follows it.
    let audit_opened = admitted.audit_opened(relay, stream, peer);
    let opened = Instant::now();
    let channel = admitted.channel;
    info!(channel, "channel open");
    let tee = |direction| admitted.recorder.clone().map(|recorder| Tee { recorder, channel, direction });
    let session = &admitted.session;
    let stop = &admitted.handle.stop;
    session.open_outputs.send_modify(|n| *n += 1);
    // A desktop or clipboard channel's bytes pass as checked whole messages, input only
    // with control (`super::desktop`); every other channel's pass as they come.
    let mut view_refusals = None;
    let (erecv, arecv): (Box<dyn ChunkSource>, Box<dyn ChunkSource>) = match admitted.kind {
        ChannelKind::Desktop { control } => {
            let mut from_engineer = Messages::new(erecv, Flow::FromViewer { control });
            view_refusals = Some(from_engineer.refusals());
            (Box::new(from_engineer), Box::new(Messages::new(arecv, Flow::FromAgent)))
        }
        ChannelKind::Clipboard => {
            (Box::new(Messages::new(erecv, Flow::Clipboard)), Box::new(Messages::new(arecv, Flow::Clipboard)))
        }
        _ => (Box::new(erecv), Box::new(arecv)),
    };
    // The first input dropped on a view channel is audited, once per channel, as the
    // browser's is; it ends with the engineer's side at the latest.
    let audit_refusal = async {
        if let Some(refused) = view_refusals
            && refused.await.is_ok()
        {
            admitted.refused(relay, VIEW_ONLY_INPUT).await;
        }
    };
    let up = splice(erecv, asend, stop.clone(), tee(Direction::In), None);
    let shell = matches!(admitted.kind, ChannelKind::Shell { .. });
    let down = async {
        // A shell's output is shown to the session's watchers too.
        let r = if shell {
            splice(arecv, session.mirror(esend), stop.clone(), tee(Direction::Out), end_gate).await
        } else {
            splice(arecv, esend, stop.clone(), tee(Direction::Out), end_gate).await
        };
        session.open_outputs.send_modify(|n| *n -= 1);
        r
    };
    let ((up_bytes, up_end), (down_bytes, down_end), (), ()) =
        tokio::join!(up, down, audit_opened, audit_refusal);
    let ends = (format!("{up_end:?}"), format!("{down_end:?}"));
    admitted
        .record_close(
            serde_json::json!({ "in": up_bytes, "out": down_bytes, "in_end": &ends.0, "out_end": &ends.1 }),
        )
        .await;
    let duration = opened.elapsed();
    let closed = Closed { stream, peer, bytes_in: up_bytes, bytes_out: down_bytes, duration, ends };
    admitted.audit_closed(relay, closed).await;
    info!(up_bytes, ?up_end, down_bytes, ?down_end, "channel closed");
}

/// `assist watch`: the session's screen so far, then its output as it happens, until the
/// session ends (the stream finishes) or the watcher leaves. The watcher's direction is
/// stopped at once: nothing it sends is read.
async fn watch(mut w: Watching, mut esend: SendStream, mut erecv: RecvStream) {
    let _ = erecv.stop(codes::REFUSED);
    if write_msg(&mut esend, &ChannelReply::Accepted).await.is_err() {
        return;
    }
    for chunk in std::mem::take(&mut w.screen) {
        if esend.write_chunk(chunk).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            chunk = w.live.recv() => match chunk {
                Ok(chunk) => {
                    if esend.write_chunk(chunk).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind: drawn afresh from the current screen, nothing half-shown.
                    for chunk in w.catch_up() {
                        if esend.write_chunk(chunk).await.is_err() {
                            return;
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = async { let _ = w.ended.wait_for(|e| *e).await; } => break,
            _ = esend.stopped() => return,
        }
    }
    while let Ok(chunk) = w.live.try_recv() {
        let _ = esend.write_chunk(chunk).await;
    }
    let _ = esend.finish();
}
