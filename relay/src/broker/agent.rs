//! An agent's connection: enrollment (no certificate yet), or the long-lived,
//! certificate-authenticated connection that carries consent prompts, grants and the
//! streams the agent opens (a command's stderr).

use super::splice::splice;
use super::{Answerer, LiveAgent, Refusal, Relay};
use crate::store::{AgentRow, StoreError, TokenProblem};
use assist_net::{codes, read_msg, write_msg};
use assist_proto::ids::AgentName;
use assist_proto::msg::{AgentToRelay, ChannelKind, ChannelOpen, ErrorCode, RelayToAgent};
use assist_proto::session::EndReason;
use quinn::{Connection, RecvStream, SendStream};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
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
    let reply = match enroll_inner(&relay, &token, &name, &csr_pem).await {
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
) -> Result<RelayToAgent, Refusal> {
    assist_proto::ids::validate_name("agent", name.as_str())
        .map_err(|m| Refusal::new(ErrorCode::BadRequest, m))?;
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
    let stored = match relay.store.enroll_agent(&hash, &row, crate::now_ms()).await {
        Ok(row) => row,
        Err(StoreError::TokenRejected(problem)) => {
            warn!(agent = %name, ?problem, "enrollment refused");
            let why = match problem {
                TokenProblem::Expired => "has expired",
                TokenProblem::AlreadyUsed | TokenProblem::Unknown => "is unknown or was already used",
            };
            return Err(Refusal::new(
                ErrorCode::Unauthenticated,
                format!("join token {why}; ask for a new one"),
            ));
        }
        Err(StoreError::Exists { .. }) => {
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

/// A certificate-authenticated agent, already checked against the store.
pub(crate) async fn handle(relay: Arc<Relay>, conn: Connection, row: AgentRow) {
    let name = row.name.clone();
    let span = tracing::info_span!("agent", agent = %name);
    async move {
        let Ok(Ok((mut send, mut recv))) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await else {
            conn.close(codes::PROTOCOL, b"no control stream");
            return;
        };
        let consent = match tokio::time::timeout(HELLO_TIMEOUT, read_msg::<AgentToRelay, _>(&mut recv)).await
        {
            Ok(Ok(Some(AgentToRelay::Hello { consent, version }))) => {
                info!(%consent, %version, "agent connected");
                consent
            }
            _ => {
                conn.close(codes::PROTOCOL, b"expected hello");
                return;
            }
        };
        if write_msg(&mut send, &RelayToAgent::Welcome { agent: name.clone(), org: row.org.clone() })
            .await
            .is_err()
        {
            return;
        }
        if let Err(e) = relay.store.agent_connected(&name, consent, crate::now_ms()).await {
            warn!(error = %e, "cannot record agent connection");
        }
        let conn_id = relay.conn_id();
        let (tx, mut rx) = mpsc::channel::<RelayToAgent>(64);
        relay.agent_online(name.clone(), LiveAgent { conn_id, consent, tx: tx.clone(), conn: conn.clone() });
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if write_msg(&mut send, &msg).await.is_err() {
                    break;
                }
            }
        });
        let streams =
            tokio::spawn(accept_agent_streams(relay.clone(), conn.clone(), name.clone()).in_current_span());
        loop {
            match read_msg::<AgentToRelay, _>(&mut recv).await {
                Ok(Some(AgentToRelay::ConsentAnswer { session, approve, reason })) => {
                    if let Err(r) = relay.answer(&session, Answerer::Agent(&name), approve, reason).await {
                        let _ = tx.send(RelayToAgent::Error { code: r.code, message: r.message }).await;
                    }
                }
                Ok(Some(AgentToRelay::ChannelExited { session, code, signal })) => {
                    relay.shell_exited(&name, &session, EndReason::ShellExited { code, signal }).await;
                }
                Ok(Some(AgentToRelay::Ping)) => {
                    let _ = tx.send(RelayToAgent::Pong).await;
                }
                Ok(Some(other)) => {
                    warn!(?other, "unexpected message from agent");
                    conn.close(codes::PROTOCOL, b"unexpected message");
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    info!(error = %e, "agent control stream ended");
                    if matches!(e, assist_net::FramedError::Frame(_)) {
                        conn.close(codes::PROTOCOL, b"malformed message");
                    }
                    break;
                }
            }
        }
        relay.agent_offline(&name, conn_id).await;
        info!("agent disconnected");
        writer.abort();
        streams.abort();
    }
    .instrument(span)
    .await
}

async fn accept_agent_streams(relay: Arc<Relay>, conn: Connection, agent: AgentName) {
    while let Ok(recv) = conn.accept_uni().await {
        tokio::spawn(forward_uni(relay.clone(), agent.clone(), recv).in_current_span());
    }
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
    if !matches!(open.channel, ChannelKind::Stderr) {
        let _ = recv.stop(codes::PROTOCOL);
        return;
    }
    let Some(session) = relay.session_of_agent(&agent, &open.session).await else {
        let _ = recv.stop(codes::REFUSED);
        return;
    };
    let Ok(mut esend) = session.engineer.conn.open_uni().await else {
        let _ = recv.stop(codes::SESSION_ENDED);
        return;
    };
    if write_msg(&mut esend, &open).await.is_err() {
        let _ = recv.stop(codes::SESSION_ENDED);
        return;
    }
    session.open_outputs.send_modify(|n| *n += 1);
    let _ = splice(recv, esend, session.ended.subscribe()).await;
    session.open_outputs.send_modify(|n| *n -= 1);
}
