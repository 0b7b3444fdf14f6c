//! An agent's QUIC connection: enrollment (no certificate yet), or the long-lived,
//! certificate-authenticated connection that carries consent prompts, grants and the
//! streams the agent opens (a command's stderr).
//!
//! This module reads and writes frames; the broker decides (`broker::agents` for
//! enrollment, admission and `Hello`, `broker::admit` for the streams the agent opens).

use super::peer::QuicAgent;
use super::splice::{Tee, splice};
use crate::broker::{AgentRefused, AgentStreamStarted, Answerer, Approval, Hello, Relay, StreamRefused};
use crate::recording::format::Direction;
use crate::store::AgentRow;
use assist_certs::Fingerprint;
use assist_net::{FrameReader, codes, read_msg, write_msg};
use assist_proto::ids::AgentName;
use assist_proto::msg::{AgentToRelay, ChannelOpen, RelayToAgent};
use quinn::{Connection, RecvStream, SendStream};
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, info, warn};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Enrollment: a join token and a CSR in, a certificate out.
pub(crate) async fn enroll(
    relay: Arc<Relay>,
    conn: Connection,
    mut send: SendStream,
    token: String,
    name: AgentName,
    csr_pem: String,
) {
    let source = conn.remote_address().ip().to_string();
    let reply = match relay.enroll(&token, &name, &csr_pem, &source).await {
        Ok(reply) => reply,
        Err(r) => RelayToAgent::Error { code: r.code, message: r.message },
    };
    let _ = write_msg(&mut send, &reply).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
}

/// A connection with a client certificate of our CA (fingerprint `fp`): served if the
/// broker admits it, else closed with the broker's reason.
pub(crate) async fn admit(relay: Arc<Relay>, conn: Connection, fp: Fingerprint) {
    match relay.admit_agent(&fp, conn.remote_address()).await {
        Ok(row) => handle(relay, conn, row).await,
        Err(why) => {
            let code = match why {
                AgentRefused::Revoked | AgentRefused::Unknown => codes::REFUSED,
                // The agent ends for good on a refusal: a database that failed (a pool
                // timed out under a reconnection storm) must only make it come back later.
                AgentRefused::Internal => codes::UNAVAILABLE,
            };
            conn.close(code, why.to_string().as_bytes());
        }
    }
}

/// A certificate-authenticated agent, already checked against the store: welcomes it,
/// then serves it in a task of its own for as long as it stays connected.
async fn handle(relay: Arc<Relay>, conn: Connection, row: AgentRow) {
    let span = agent_span(&row.name);
    let Some(welcomed) = welcome(&relay, &conn, row).instrument(span).await else { return };
    // Not in this task: it was sized for the handshake and the dispatch, and every idle
    // agent would pay for that.
    tokio::spawn(serve_agent(relay, conn, welcomed));
}

/// The span of everything done for one agent. It is made when something happens rather
/// than kept for the life of the connection: an idle agent holds no span.
fn agent_span(name: &AgentName) -> tracing::Span {
    tracing::info_span!("agent", agent = %name)
}

/// A welcomed agent: what its task keeps.
struct Welcomed {
    name: AgentName,
    recv: RecvStream,
    conn_id: u64,
    peer: Arc<QuicAgent>,
}

/// Reads the agent's `Hello`, has the broker store and audit it, registers it as online,
/// and welcomes it. `None` if the agent is not served (the connection is closed then).
async fn welcome(relay: &Relay, conn: &Connection, row: AgentRow) -> Option<Welcomed> {
    let Ok(Ok((send, mut recv))) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await else {
        conn.close(codes::PROTOCOL, b"no control stream");
        return None;
    };
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, read_msg::<AgentToRelay, _>(&mut recv)).await {
        Ok(Ok(Some(AgentToRelay::Hello { consent, version, scripts, desktop, cluster }))) => {
            Hello { consent, version, scripts, desktop, cluster }
        }
        _ => {
            conn.close(codes::PROTOCOL, b"expected hello");
            return None;
        }
    };
    let peer = Arc::new(QuicAgent::new(conn.clone(), send));
    // Stored, audited and registered before the agent is welcomed: once it hears
    // `Welcome`, it is online for everyone else too.
    let Ok(live) = relay.agent_connected(&row, hello, conn.remote_address(), peer.clone()).await else {
        conn.close(codes::UNAVAILABLE, b"internal error");
        return None;
    };
    let (name, conn_id) = (row.name, live.conn_id);
    // Whatever others send once it is online is written after the welcome.
    let welcome = RelayToAgent::Welcome { agent: name.clone(), org: row.org, cluster: relay.cluster() };
    if peer.send_first(&welcome, || relay.agent_online(name.clone(), live)).await.is_err() {
        relay.agent_offline(&name, conn_id).await;
        return None;
    }
    Some(Welcomed { name, recv, conn_id, peer })
}

/// Serves a welcomed agent until its control stream or connection ends: its messages, and
/// the streams it opens. The rarely taken paths run boxed, so that what an idle agent's
/// task holds is little more than the two reads it waits on.
async fn serve_agent(relay: Arc<Relay>, conn: Connection, agent: Welcomed) {
    let Welcomed { name, mut recv, conn_id, peer } = agent;
    let mut reader = FrameReader::default();
    let mut accepting = true;
    loop {
        // Streams the agent opens are accepted between its messages; both reads are
        // cancel-safe.
        let read = tokio::select! {
            read = reader.read::<AgentToRelay, _>(&mut recv) => read,
            uni = conn.accept_uni(), if accepting => {
                match uni {
                    Ok(uni) => {
                        tokio::spawn(forward_uni(relay.clone(), name.clone(), uni).instrument(agent_span(&name)));
                    }
                    // The connection is going: the control stream ends with it.
                    Err(_) => accepting = false,
                }
                continue;
            }
        };
        match read {
            Ok(Some(msg)) => {
                let handled =
                    Box::pin(on_message(&relay, &conn, &name, &peer, msg)).instrument(agent_span(&name));
                if !handled.await {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                agent_span(&name).in_scope(|| info!(error = %e, "agent control stream ended"));
                if matches!(e, assist_net::FramedError::Frame(_)) {
                    conn.close(codes::PROTOCOL, b"malformed message");
                }
                break;
            }
        }
    }
    let offline = async {
        relay.agent_offline(&name, conn_id).await;
        info!("agent disconnected");
    };
    Box::pin(offline).instrument(agent_span(&name)).await;
    peer.close_control();
}

/// Handles one message on the agent's control stream. False when the connection is
/// closed for it.
async fn on_message(
    relay: &Arc<Relay>,
    conn: &Connection,
    name: &AgentName,
    tx: &QuicAgent,
    msg: AgentToRelay,
) -> bool {
    match msg {
        AgentToRelay::ConsentAnswer { session, approve, reason, capabilities } => {
            // The agent's own words go on to engineers and webhooks: bounded and inert.
            let note = reason.map(|r| assist_proto::text::inert(&r, assist_proto::text::MAX_REASON_CHARS));
            let approval = Approval { capabilities, duration_secs: None, note };
            if let Err(r) = relay.answer(&session, Answerer::Agent(name), approve, approval).await {
                let _ = tx.write(&RelayToAgent::Error { code: r.code, message: r.message }).await;
            }
        }
        AgentToRelay::ChannelExited { session, code, signal, exec, stream } => {
            relay.channel_exited(name, &session, (code, signal), exec, stream).await;
        }
        AgentToRelay::Countersign { session, digests, signature } => {
            // Kept as sent: the auditor checks it against the agent's certificate.
            if let Some(cert) = peer_cert(conn) {
                relay.countersigned(name, &session, &cert, digests, signature).await;
            }
        }
        AgentToRelay::FileTransferred { report } => {
            relay.file_transferred(name, report).await;
        }
        AgentToRelay::FileChanged { change } => {
            relay.file_changed(name, change).await;
        }
        AgentToRelay::Kill { session } => {
            info!(session = ?session, "kill key pressed on the agent");
            relay.kill_from_agent(name, session).await;
        }
        AgentToRelay::Ping => {
            let _ = tx.write(&RelayToAgent::Pong).await;
        }
        other => {
            warn!(?other, "unexpected message from agent");
            conn.close(codes::PROTOCOL, b"unexpected message");
            return false;
        }
    }
    true
}

/// The agent's certificate (DER) from the TLS handshake.
fn peer_cert(conn: &Connection) -> Option<Vec<u8>> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    certs.first().map(|c| c.to_vec())
}

/// A stream the agent opens towards the engineer (a command's stderr), forwarded if the
/// broker admits it.
async fn forward_uni(relay: Arc<Relay>, agent: AgentName, mut recv: RecvStream) {
    let open: ChannelOpen = match tokio::time::timeout(HELLO_TIMEOUT, read_msg(&mut recv)).await {
        Ok(Ok(Some(open))) => open,
        _ => {
            let _ = recv.stop(codes::PROTOCOL);
            return;
        }
    };
    let admitted = match relay.admit_agent_stream(&agent, open).await {
        Ok(a) => a,
        Err(why) => {
            let code = match why {
                StreamRefused::Protocol => codes::PROTOCOL,
                StreamRefused::NoSession => codes::REFUSED,
                StreamRefused::Unrecorded => codes::SESSION_ENDED,
            };
            let _ = recv.stop(code);
            return;
        }
    };
    let Some(to) = super::peer::connection(admitted.to.as_ref()) else {
        let _ = recv.stop(codes::SESSION_ENDED);
        return;
    };
    let Ok(mut esend) = to.open_uni().await else {
        let _ = recv.stop(codes::SESSION_ENDED);
        return;
    };
    if write_msg(&mut esend, &admitted.open).await.is_err() {
        let _ = recv.stop(codes::SESSION_ENDED);
        return;
    }
    let Ok(AgentStreamStarted { channel, recorder, handle }) = admitted.start(u64::from(recv.id())).await
    else {
        let _ = recv.stop(codes::SESSION_ENDED);
        let _ = esend.reset(codes::SESSION_ENDED);
        return;
    };
    let tee = recorder.map(|recorder| Tee { recorder, channel, direction: Direction::Out });
    let session = admitted.session;
    session.open_outputs.send_modify(|n| *n += 1);
    let _ = splice(recv, esend, handle.stop.clone(), tee, None).await;
    session.open_outputs.send_modify(|n| *n -= 1);
}
