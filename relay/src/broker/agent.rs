//! An agent's connection: enrollment (no certificate yet), or the long-lived,
//! certificate-authenticated connection that carries consent prompts, grants and the
//! streams the agent opens (a command's stderr).

use super::agent_tx::AgentTx;
use super::splice::splice;
use super::{Answerer, LiveAgent, Refusal, Relay};
use crate::audit::{Action, AuditEvent, agent_actor};
use crate::store::{AgentRow, StoreError, TokenProblem};
use assist_net::{FrameReader, codes, read_msg, write_msg};
use assist_proto::caps::Capability;
use assist_proto::ids::AgentName;
use assist_proto::msg::{AgentToRelay, ChannelKind, ChannelOpen, ErrorCode, RelayToAgent};
use assist_proto::session::EndReason;
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
    let reply = match enroll_inner(&relay, &token, &name, &csr_pem, &source).await {
        Ok(reply) => reply,
        Err(r) => RelayToAgent::Error { code: r.code, message: r.message },
    };
    let _ = write_msg(&mut send, &reply).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
}

async fn enroll_inner(
    relay: &Relay,
    token: &str,
    name: &AgentName,
    csr_pem: &str,
    source: &str,
) -> Result<RelayToAgent, Refusal> {
    assist_proto::ids::validate_name("agent", name.as_str())
        .map_err(|m| Refusal::new(ErrorCode::BadRequest, m.to_string()))?;
    // Sign first: a bad CSR must not use up the token.
    let issued = relay
        .ca
        .sign_agent_csr(csr_pem, name.as_str(), "assist agent")
        .map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?;
    let row = AgentRow {
        name: name.clone(),
        org: "".into(),
        cert_fingerprint: issued.fingerprint.hex(),
        enrolled_at: crate::now_ms(),
        revoked_at: None,
        last_seen: None,
        consent: None,
        online: false,
    };
    let hash = crate::auth::token_hash(token);
    let event = AuditEvent::new(agent_actor(name), Action::AgentEnrolled)
        .target(name.as_str())
        .detail(serde_json::json!({ "fingerprint": issued.fingerprint.hex() }));
    // Refusals name the token by its hash prefix, as `token.issued` does.
    let token_label = format!("token:{}", hash.get(..16).unwrap_or(&hash));
    let refused = |reason: String| {
        AuditEvent::new(agent_actor(name), Action::AgentEnrollmentRefused)
            .target(name.as_str())
            .detail(serde_json::json!({ "reason": reason, "token": token_label, "remote": source }))
    };
    // Rate-limited per source address and reason (`broker::refusals`): guessing join
    // tokens cannot fill the log.
    let audit_refused = |event: AuditEvent, kind: &'static str| async move {
        relay.audit_refused(source, kind, event).await;
    };
    let stored = match relay.store.enroll_agent(&hash, &row, crate::now_ms(), &event).await {
        Ok(row) => row,
        Err(StoreError::TokenRejected(problem)) => {
            warn!(agent = %name, ?problem, "enrollment refused");
            audit_refused(refused(format!("join token {problem}")), "join token").await;
            let why = match problem {
                TokenProblem::Expired => "has expired",
                TokenProblem::AlreadyUsed | TokenProblem::Unknown => "is unknown or was already used",
            };
            return Err(Refusal::new(
                ErrorCode::Unauthenticated,
                format!("join token {why}; ask for a new one"),
            ));
        }
        Err(StoreError::Exists { what, .. }) => {
            audit_refused(refused(format!("{what} already enrolled")), "already enrolled").await;
            return Err(Refusal::new(
                ErrorCode::Conflict,
                format!("an agent named {name} is already enrolled"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    info!(agent = %name, org = %stored.org, fingerprint = %issued.fingerprint, "agent enrolled");
    Ok(RelayToAgent::Enrolled {
        agent: name.clone(),
        org: stored.org,
        cert_pem: issued.cert_pem,
        ca_pem: relay.ca.cert_pem().to_owned(),
        grant_key: hex::encode(relay.grant_public_key()),
    })
}

/// A certificate-authenticated agent, already checked against the store: welcomes it,
/// then serves it in a task of its own for as long as it stays connected.
pub(crate) async fn handle(relay: Arc<Relay>, conn: Connection, row: AgentRow) {
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
    tx: AgentTx,
}

/// Reads the agent's `Hello`, stores, audits and registers it as online, and welcomes it.
/// `None` if the agent is not served (the connection is closed then).
async fn welcome(relay: &Relay, conn: &Connection, row: AgentRow) -> Option<Welcomed> {
    let name = row.name;
    let Ok(Ok((send, mut recv))) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await else {
        conn.close(codes::PROTOCOL, b"no control stream");
        return None;
    };
    let (consent, version, scripts) =
        match tokio::time::timeout(HELLO_TIMEOUT, read_msg::<AgentToRelay, _>(&mut recv)).await {
            Ok(Ok(Some(AgentToRelay::Hello { consent, version, scripts }))) => {
                info!(%consent, %version, "agent connected");
                (consent, version, super::published_scripts(&name, scripts))
            }
            _ => {
                conn.close(codes::PROTOCOL, b"expected hello");
                return None;
            }
        };
    // Stored, audited and registered before the agent is welcomed: once it hears
    // `Welcome`, it is online for everyone else too.
    let event = AuditEvent::new(agent_actor(&name), Action::AgentConnected)
        .org(&row.org)
        .target(name.as_str())
        .detail(serde_json::json!({
            "consent": consent,
            "version": version,
            "remote": conn.remote_address().to_string(),
        }));
    if let Err(e) = relay.store.agent_connected(&name, consent, crate::now_ms(), &event).await {
        // An agent whose connection cannot be recorded (and audited) is not served.
        warn!(error = %e, "cannot record agent connection");
        conn.close(codes::REFUSED, b"internal error");
        return None;
    }
    let conn_id = relay.conn_id();
    let tx = AgentTx::new(send);
    let live =
        LiveAgent { conn_id, org: row.org.clone(), consent, tx: tx.clone(), conn: conn.clone(), scripts };
    // Whatever others send once it is online is written after the welcome.
    let welcome = RelayToAgent::Welcome { agent: name.clone(), org: row.org };
    if tx.send_first(&welcome, || relay.agent_online(name.clone(), live)).await.is_err() {
        relay.agent_offline(&name, conn_id).await;
        return None;
    }
    Some(Welcomed { name, recv, conn_id, tx })
}

/// Serves a welcomed agent until its control stream or connection ends: its messages, and
/// the streams it opens. The rarely taken paths run boxed, so that what an idle agent's
/// task holds is little more than the two reads it waits on.
async fn serve_agent(relay: Arc<Relay>, conn: Connection, agent: Welcomed) {
    let Welcomed { name, mut recv, conn_id, tx } = agent;
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
                    Box::pin(on_message(&relay, &conn, &name, &tx, msg)).instrument(agent_span(&name));
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
    tx.close();
}

/// Handles one message on the agent's control stream. False when the connection is
/// closed for it.
async fn on_message(
    relay: &Arc<Relay>,
    conn: &Connection,
    name: &AgentName,
    tx: &AgentTx,
    msg: AgentToRelay,
) -> bool {
    match msg {
        AgentToRelay::ConsentAnswer { session, approve, reason, capabilities } => {
            // The agent's own words go on to engineers and webhooks: bounded and inert.
            let note = reason.map(|r| assist_proto::text::inert(&r, assist_proto::text::MAX_REASON_CHARS));
            let approval = super::Approval { capabilities, duration_secs: None, note };
            if let Err(r) = relay.answer(&session, Answerer::Agent(name), approve, approval).await {
                let _ = tx.send(RelayToAgent::Error { code: r.code, message: r.message }).await;
            }
        }
        AgentToRelay::ChannelExited { session, code, signal, exec, stream } => {
            if let (Some(script), Some(stream)) = (&exec, stream)
                && relay.script_exited(name, &session, stream, script, code, signal.clone()).await
            {
                return true;
            }
            let (needed, reason) = match exec {
                Some(script) => (
                    Capability::Exec { scripts: vec![script.clone()] },
                    EndReason::ScriptExited { name: script, code, signal },
                ),
                None => (Capability::Shell, EndReason::ShellExited { code, signal }),
            };
            relay.shell_exited(name, &session, reason, needed).await;
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
        AgentToRelay::Kill { session } => {
            info!(session = ?session, "kill key pressed on the agent");
            relay.kill_from_agent(name, session).await;
        }
        AgentToRelay::Ping => {
            let _ = tx.send(RelayToAgent::Pong).await;
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

/// A stream the agent opens towards the engineer (a command's stderr).
async fn forward_uni(relay: Arc<Relay>, agent: AgentName, mut recv: RecvStream) {
    let open: ChannelOpen = match tokio::time::timeout(HELLO_TIMEOUT, read_msg(&mut recv)).await {
        Ok(Ok(Some(open))) => open,
        _ => {
            let _ = recv.stop(codes::PROTOCOL);
            return;
        }
    };
    let of = match open.channel {
        ChannelKind::Stderr => None,
        ChannelKind::StderrOf { stream } => Some(stream),
        _ => {
            let _ = recv.stop(codes::PROTOCOL);
            return;
        }
    };
    let Some(session) = relay.session_of_agent(&agent, &open.session).await else {
        let _ = recv.stop(codes::REFUSED);
        return;
    };
    let to = of.and_then(|stream| relay.stderr_to(&session, stream));
    let to = to.unwrap_or_else(|| session.engineer.conn.clone());
    // Engineers know one kind of standard error stream.
    let open = ChannelOpen { session: open.session, channel: ChannelKind::Stderr };
    let Ok(mut esend) = to.open_uni().await else {
        let _ = recv.stop(codes::SESSION_ENDED);
        return;
    };
    if write_msg(&mut esend, &open).await.is_err() {
        let _ = recv.stop(codes::SESSION_ENDED);
        return;
    }
    let channel = session.next_channel();
    let tee = match session.recorder() {
        Some(recorder) => {
            let described = serde_json::json!({ "kind": "stderr", "stream": u64::from(recv.id()) });
            if recorder.channel_open(channel, described).await.is_err() {
                let _ = recv.stop(codes::SESSION_ENDED);
                let _ = esend.reset(codes::SESSION_ENDED);
                return;
            }
            Some(super::splice::Tee {
                recorder,
                channel,
                direction: crate::recording::format::Direction::Out,
            })
        }
        None if relay.cfg.recording_mandatory => {
            let _ = recv.stop(codes::SESSION_ENDED);
            let _ = esend.reset(codes::SESSION_ENDED);
            return;
        }
        None => None,
    };
    let handle = session.register_channel(channel, open.channel.required_capability());
    session.open_outputs.send_modify(|n| *n += 1);
    let _ = splice(recv, esend, handle.stop.clone(), tee, None).await;
    session.open_outputs.send_modify(|n| *n -= 1);
}
