//! quinn endpoints for the relay and its clients.

use crate::tls::{self, RelayVerifier, Trust};
use assist_certs::Fingerprint;
use assist_proto::RELAY_SERVER_NAME;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, IdleTimeout, TransportConfig, VarInt};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long a client waits for a relay's handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams of each direction a peer may have open at once on one connection. quinn
/// keeps state for every stream the peer may open, so this is memory on every idle
/// agent's connection (about 7 KB at 64). A session uses a few (the shell channel, a
/// stderr stream, later file and exec channels); past the limit, opening a stream waits
/// for one to close rather than failing.
pub const MAX_CONCURRENT_STREAMS: u32 = 16;

/// Channels a peer may have open at once where channels are opened: an authenticated
/// person's connection to the relay (its channels) and an agent's connection (the relay's
/// channels to it, for all its sessions). Raised per connection
/// (`Connection::set_max_concurrent_bi_streams`) only there, once the peer is known, so idle
/// agents and unauthenticated connections keep [`MAX_CONCURRENT_STREAMS`]. A forward opens
/// one channel per TCP connection, and a web UI opens dozens at once.
pub const MAX_OPEN_CHANNELS: u32 = 256;

/// Transport settings. Agents hold one connection open for days and mostly idle: a keep-
/// alive every 10 s keeps NAT bindings, and 30 s of silence means the peer is gone.
pub fn transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.keep_alive_interval(Some(Duration::from_secs(10)));
    t.max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(30_000))));
    t.max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_STREAMS));
    t.max_concurrent_uni_streams(VarInt::from_u32(MAX_CONCURRENT_STREAMS));
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// How often a person's connection (no client certificate: `assist`, an enrollment) sends
/// a keep-alive, and how long it may hear nothing from the relay before it is lost.
/// Shorter than an agent's: someone at a shell must learn within seconds that the relay
/// is gone (a killed relay sends nothing), not after half a minute. The idle timeout is
/// the smaller of both ends', so the relay also drops such a connection after this long
/// without a packet (a suspended `assist`, a cable pulled).
pub const PERSON_KEEP_ALIVE: Duration = Duration::from_secs(2);
pub const PERSON_IDLE_TIMEOUT: Duration = Duration::from_secs(8);

/// [`transport_config`] for a person's connection: see [`PERSON_IDLE_TIMEOUT`].
pub fn person_transport_config() -> TransportConfig {
    let mut t = transport_config();
    t.keep_alive_interval(Some(PERSON_KEEP_ALIVE));
    t.max_idle_timeout(Some(IdleTimeout::try_from(PERSON_IDLE_TIMEOUT).expect("a few seconds fit")));
    t
}

/// The largest UDP payload MTU discovery searches for (quinn's default stops at 1452, an
/// Ethernet frame). Paths that carry more (loopback, jumbo-frame LANs, some VPNs) then move
/// several times fewer packets per byte, and per-packet work (AEAD calls, frame and ACK
/// handling, syscalls) is most of a QUIC hop's CPU: on loopback the whole bulk path costs
/// about a third less CPU per GiB. Paths that carry less just fail the larger probes.
///
/// Not higher: quinn hands the kernel up to 10 packets in one segmentation-offload write,
/// which the kernel caps at 64 KiB in all, so larger packets would be dropped whenever quinn
/// batches them.
pub const MAX_UDP_PAYLOAD: u16 = 6_500;

/// Endpoint settings shared by the relay and its clients: the largest datagram this end
/// accepts, announced to the peer so that its MTU discovery may search that far.
fn endpoint_config(reset_key: Arc<dyn quinn_proto::crypto::HmacKey>) -> quinn::EndpointConfig {
    let mut cfg = quinn::EndpointConfig::new(reset_key);
    cfg.max_udp_payload_size(MAX_UDP_PAYLOAD).expect("within QUIC's bounds");
    cfg
}

/// Binds the relay's endpoint.
///
/// `reset_secret` keys QUIC stateless resets. It must stay the same across restarts of
/// the relay: then a restarted relay can tell agents that their old connection is gone,
/// and they reconnect at once instead of after the idle timeout.
pub fn server_endpoint(
    addr: SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: CertificateDer<'static>,
    reset_secret: &[u8],
) -> Result<Endpoint, ConnectError> {
    let tls = tls::server_config(chain, key, client_ca).map_err(ConnectError::Tls)?;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| ConnectError::Config(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(Arc::new(transport_config()));
    let reset_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, reset_secret);
    let mut endpoint_cfg = endpoint_config(Arc::new(reset_key));
    // Connection ids are validated with a keyed hash; a random key per process would make a
    // restarted relay drop the old connections' packets silently instead of resetting them.
    let cid_key = u64::from_le_bytes(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, reset_secret).as_ref()[..8]
            .try_into()
            .expect("8 bytes"),
    );
    endpoint_cfg.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
    let socket = std::net::UdpSocket::bind(addr).map_err(ConnectError::Bind)?;
    Endpoint::new(endpoint_cfg, Some(cfg), socket, Arc::new(quinn::TokioRuntime)).map_err(ConnectError::Bind)
}

/// An agent's certificate and key.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot bind a UDP socket: {0}")]
    Bind(std::io::Error),
    #[error("TLS configuration: {0}")]
    Tls(rustls::Error),
    #[error("QUIC configuration: {0}")]
    Config(String),
    #[error(
        "the relay's CA fingerprint does not match: expected {expected}, the relay presented {presented}. \
         If the relay was reinstalled, check the new fingerprint with its administrator."
    )]
    FingerprintMismatch { expected: Fingerprint, presented: String },
    #[error("no answer from the relay at {addr} within {secs} s", secs = HANDSHAKE_TIMEOUT.as_secs())]
    Timeout { addr: SocketAddr },
    #[error("cannot connect to the relay at {addr}: {source}")]
    Connect { addr: SocketAddr, source: quinn::ConnectionError },
    #[error("cannot connect to the relay at {addr}: {message}")]
    Other { addr: SocketAddr, message: String },
}

fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

fn client_quic(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
    identity: Option<ClientIdentity>,
) -> Result<quinn::ClientConfig, ConnectError> {
    // Agents present a certificate and hold their connection for days; everyone else is a
    // person waiting at a terminal.
    let transport = if identity.is_some() { transport_config() } else { person_transport_config() };
    let tls = tls::client_config(verifier, identity.map(|i| (i.chain, i.key))).map_err(ConnectError::Tls)?;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| ConnectError::Config(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

/// A client endpoint for talking to the relay at `relay`.
pub fn client_endpoint(relay: SocketAddr) -> Result<Endpoint, ConnectError> {
    let socket = std::net::UdpSocket::bind(unspecified_for(relay)).map_err(ConnectError::Bind)?;
    let key = assist_certs::random_bytes::<32>();
    let reset_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    Endpoint::new(endpoint_config(Arc::new(reset_key)), None, socket, Arc::new(quinn::TokioRuntime))
        .map_err(ConnectError::Bind)
}

/// Connects to a relay whose CA has the pinned fingerprint.
pub async fn connect(
    endpoint: &Endpoint,
    relay: SocketAddr,
    pinned: Fingerprint,
    identity: Option<ClientIdentity>,
) -> Result<Connection, ConnectError> {
    let verifier = Arc::new(RelayVerifier::new(Trust::Pinned(pinned)));
    let presented = verifier.presented();
    let cfg = client_quic(verifier, identity)?;
    let connecting = endpoint
        .connect_with(cfg, relay, RELAY_SERVER_NAME)
        .map_err(|e| ConnectError::Other { addr: relay, message: e.to_string() })?;
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await {
        Err(_) => Err(ConnectError::Timeout { addr: relay }),
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let seen = presented.lock().ok().and_then(|p| p.ca);
            match seen {
                Some(ca) if ca != pinned => {
                    Err(ConnectError::FingerprintMismatch { expected: pinned, presented: ca.to_string() })
                }
                _ => Err(ConnectError::Connect { addr: relay, source: e }),
            }
        }
    }
}

/// Closes `conn` and returns once its CONNECTION_CLOSE has gone out (at most `limit`
/// later), so that a process may exit right after and the peer still learns at once that
/// the connection is over (otherwise it waits for its idle timeout).
///
/// Not `Endpoint::wait_idle`: that also waits out the draining period, three probe
/// timeouts (tens of milliseconds even on loopback), which every CLI command would add to
/// its run time.
pub async fn close_and_flush(conn: &Connection, code: VarInt, reason: &[u8], limit: Duration) {
    // After `close`, the connection sends nothing but CONNECTION_CLOSE: the next datagram
    // out is the one that matters. The driver sends it on its next turn; this task gives
    // it the turns.
    if conn.close_reason().is_some() {
        return; // closed already (by the peer, or lost): there is nothing to send
    }
    let before = conn.stats().udp_tx.datagrams;
    conn.close(code, reason);
    let sent = async {
        while conn.stats().udp_tx.datagrams == before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let _ = tokio::time::timeout(limit, sent).await;
}

/// First contact: returns the fingerprint of the CA the relay presents, without trusting
/// it or sending anything.
pub async fn probe_ca(endpoint: &Endpoint, relay: SocketAddr) -> Result<Fingerprint, ConnectError> {
    let verifier = Arc::new(RelayVerifier::new(Trust::Probe));
    let presented = verifier.presented();
    let cfg = client_quic(verifier, None)?;
    let connecting = endpoint
        .connect_with(cfg, relay, RELAY_SERVER_NAME)
        .map_err(|e| ConnectError::Other { addr: relay, message: e.to_string() })?;
    let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting).await;
    let seen = presented.lock().ok().and_then(|p| p.ca);
    match (result, seen) {
        (_, Some(fp)) => Ok(fp),
        (Err(_), None) => Err(ConnectError::Timeout { addr: relay }),
        (Ok(Err(e)), None) => Err(ConnectError::Connect { addr: relay, source: e }),
        (Ok(Ok(conn)), None) => {
            conn.close(crate::codes::OK, b"probe");
            Err(ConnectError::Other { addr: relay, message: "relay presented no CA certificate".into() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_certs::{Ca, certs_from_pem, key_from_pem};

    /// Waits until `conn`'s path MTU grows past Ethernet's, or gives up after 5 s.
    async fn mtu_after_discovery(conn: &Connection) -> u16 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mtu = conn.stats().path.current_mtu;
            if mtu > 1452 || tokio::time::Instant::now() > deadline {
                return mtu;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A relay endpoint and a connected client on loopback: (client endpoint, client's
    /// connection, relay's side of it, relay endpoint).
    async fn pair() -> (Endpoint, Connection, Connection, Endpoint) {
        crate::install_crypto_provider();
        let ca = Ca::generate("endpoint test").unwrap();
        let server = ca.issue_server(RELAY_SERVER_NAME, &[]).unwrap();
        let ca_der = certs_from_pem(ca.cert_pem()).unwrap().remove(0);
        let listen: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
        // The relay presents its certificate and the CA's, as the relay's data directory does.
        let chain = certs_from_pem(&format!("{}{}", server.cert_pem, ca.cert_pem())).unwrap();
        let key = key_from_pem(&server.key_pem).unwrap();
        let relay = server_endpoint(listen, chain, key, ca_der, b"endpoint test reset secret").unwrap();
        let addr = relay.local_addr().unwrap();
        let accepting = relay.clone();
        let accept = tokio::spawn(async move { accepting.accept().await.unwrap().await.unwrap() });
        let client = client_endpoint(addr).unwrap();
        let conn = connect(&client, addr, ca.fingerprint(), None).await.unwrap();
        let server_side = accept.await.unwrap();
        (client, conn, server_side, relay)
    }

    /// Loopback carries 64 KiB datagrams, so both ends' MTU discovery must find more than
    /// Ethernet's 1452 bytes and stop at [`MAX_UDP_PAYLOAD`], never above it.
    #[tokio::test]
    async fn mtu_discovery_finds_the_larger_loopback_path_on_both_ends() {
        let (_client, conn, server_side, _relay) = pair().await;
        let (client_mtu, server_mtu) =
            tokio::join!(mtu_after_discovery(&conn), mtu_after_discovery(&server_side));
        for (end, mtu) in [("client", client_mtu), ("relay", server_mtu)] {
            assert!(mtu > 1452 && mtu <= MAX_UDP_PAYLOAD, "{end}'s path MTU is {mtu}");
        }
    }

    /// A client that closes and then vanishes at once (a CLI command exiting) has told the
    /// relay: the relay sees the application's close, not its 30 s idle timeout.
    #[tokio::test]
    async fn close_and_flush_tells_the_peer_before_returning() {
        let (client, conn, server_side, _relay) = pair().await;
        let started = std::time::Instant::now();
        close_and_flush(&conn, crate::codes::OK, b"bye", Duration::from_secs(1)).await;
        let flushed_in = started.elapsed();
        drop((conn, client));
        let seen = tokio::time::timeout(Duration::from_secs(10), server_side.closed()).await;
        assert!(
            matches!(&seen, Ok(quinn::ConnectionError::ApplicationClosed(c)) if c.reason.as_ref() == b"bye"),
            "{seen:?}"
        );
        // It waits for the frame to go out, not for the draining period (a second here
        // would mean the limit was hit).
        assert!(flushed_in < Duration::from_millis(900), "took {flushed_in:?}");
        // A connection that is closed already returns at once.
        let (_client, conn, _server_side, _relay) = pair().await;
        conn.close(crate::codes::OK, b"first");
        let started = std::time::Instant::now();
        close_and_flush(&conn, crate::codes::OK, b"again", Duration::from_secs(1)).await;
        assert!(started.elapsed() < Duration::from_millis(900));
    }
}
