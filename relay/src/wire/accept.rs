//! The QUIC side of the relay: accepts connections on a bound endpoint, completes their
//! handshakes (bounded), reads the first frame and hands each connection to the agent or
//! engineer handler, until shutdown; then ends the sessions and closes the endpoint.
//!
//! It decides nothing: who may connect, enroll or open what is the broker's.

use super::{agent, engineer};
use crate::audit::{Action, AuditEvent, RELAY_ACTOR};
use crate::broker::Relay;
use assist_certs::Fingerprint;
use assist_net::{codes, read_msg};
use assist_proto::msg::{ErrorCode, Opening, RelayToEngineer};
use assist_proto::session::EndReason;
use quinn::{Connection, Endpoint};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, debug, info, warn};

/// How long a client may take to complete the QUIC handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often counted refusals whose window closed are written.
const REFUSAL_SWEEP: Duration = Duration::from_secs(1);
/// How often the relay looks for agents revoked by the admin command.
const REVOCATION_POLL: Duration = Duration::from_secs(2);

/// Serves connections on `endpoint` until `shutdown` completes; then ends every live
/// session (stored as ended by the shutdown), closes connections and returns.
pub async fn serve(endpoint: Endpoint, relay: Arc<Relay>, shutdown: impl Future<Output = ()>) {
    let revocations = {
        let relay = relay.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REVOCATION_POLL);
            loop {
                tick.tick().await;
                if let Err(e) = relay.enforce_revocations().await {
                    warn!(error = %e, "cannot check revocations");
                }
                if let Err(e) = relay.enforce_access().await {
                    warn!(error = %e, "cannot check disabled users");
                }
            }
        })
    };
    // Refusals counted in a window are written when it closes.
    let refusals = {
        let relay = relay.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFUSAL_SWEEP);
            loop {
                tick.tick().await;
                relay.flush_refusals(false).await;
            }
        })
    };
    // Webhooks read the audit log; they never hold up the broker.
    let webhooks =
        crate::webhook::Worker::start(relay.store.clone(), crate::webhook::WebhookConfig::default());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let relay = relay.clone();
                tokio::spawn(async move {
                    let remote = incoming.remote_address();
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
                        Ok(Ok(conn)) => dispatch(relay, conn).instrument(tracing::debug_span!("conn", %remote)).await,
                        Ok(Err(e)) => {
                            debug!(%remote, error = %e, "handshake failed");
                            handshake_refused(&relay, remote, &e).await;
                        }
                        Err(_) => debug!(%remote, "handshake timed out"),
                    }
                });
            }
        }
    }
    revocations.abort();
    refusals.abort();
    relay.end_all(EndReason::RelayShutdown).await;
    relay.deliver_to_agents(Duration::from_secs(3)).await;
    relay.flush_refusals(true).await;
    // The sessions' last events are sent after the next start: the cursor is durable.
    webhooks.stop().await;
    endpoint.close(codes::SHUTDOWN, b"relay shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(3), endpoint.wait_idle()).await;
}

/// Audits a failed handshake (a client certificate from another CA, a client that does
/// not speak our protocol), rate-limited per source address: who it was is not known,
/// only where it came from.
async fn handshake_refused(relay: &Relay, remote: SocketAddr, e: &quinn::ConnectionError) {
    let error = e.to_string();
    let event =
        AuditEvent::new(RELAY_ACTOR, Action::HandshakeRefused).target(remote.ip().to_string()).detail(
            serde_json::json!({ "error": crate::audit::clip(&error, 300), "remote": remote.to_string() }),
        );
    relay.audit_refused(&remote.ip().to_string(), "handshake", event).await;
}

fn peer_fingerprint(conn: &Connection) -> Option<Fingerprint> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    certs.first().map(|c| Fingerprint::of_der(c))
}

/// Sends a connection to the agent or engineer handler.
///
/// This future lives as long as its connection, in a task of its own: everything but a
/// served agent runs boxed, so that a connected agent's task is only as large as
/// [`agent::admit`] needs.
async fn dispatch(relay: Arc<Relay>, conn: Connection) {
    let Some(fp) = peer_fingerprint(&conn) else {
        return Box::pin(unauthenticated(relay, conn)).await;
    };
    // The TLS layer already checked that the certificate chains to our CA; the broker
    // checks that it is still the current certificate of an enrolled, unrevoked agent.
    agent::admit(relay, conn, fp).await
}

/// A connection without a client certificate: an enrollment or an engineer.
async fn unauthenticated(relay: Arc<Relay>, conn: Connection) {
    let Ok(Ok((mut send, mut recv))) = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.accept_bi()).await else {
        conn.close(codes::PROTOCOL, b"no control stream");
        return;
    };
    let first = match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_msg::<Opening, _>(&mut recv)).await {
        Ok(Ok(Some(first))) => first,
        Ok(Err(e)) => return protocol_error(&conn, &mut send, format!("malformed message: {e}")).await,
        _ => {
            conn.close(codes::PROTOCOL, b"no request");
            return;
        }
    };
    match first {
        Opening::Enroll { token, name, csr_pem } => {
            agent::enroll(relay, conn, send, token, name, csr_pem).await
        }
        Opening::Engineer(msg) => engineer::handle(relay, conn, send, recv, msg).await,
        _ => protocol_error(&conn, &mut send, "unsupported request".into()).await,
    }
}

async fn protocol_error(conn: &Connection, send: &mut quinn::SendStream, message: String) {
    info!(%message, "protocol error");
    let refusal = RelayToEngineer::Error { code: ErrorCode::BadRequest, message, held_by: None };
    let _ = assist_net::write_msg(send, &refusal).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
    conn.close(codes::PROTOCOL, b"protocol error");
}
