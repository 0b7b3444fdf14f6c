//! `assist-relay serve`: opens the data directory, binds the QUIC endpoint (and the HTTP
//! listener), builds the broker, and runs [`crate::wire::serve`] until a signal.
//!
//! [`bind`] and [`crate::wire::serve`] take a bound endpoint and a shutdown future, so
//! tests bind port 0 and stop the relay cleanly; [`run`] is the binary's entry point.

use crate::broker::{BrokerConfig, Relay};
use crate::datadir::DataDir;
use crate::store::Store;
use assist_certs::Fingerprint;
use quinn::Endpoint;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// What `assist-relay serve` needs.
#[derive(Debug)]
pub struct ServeConfig {
    pub data_dir: DataDir,
    /// UDP address to listen on. Default `0.0.0.0:4433`; port 0 picks a free port.
    pub listen: SocketAddr,
    pub consent_timeout: Duration,
    pub urgent_consent_timeout: Duration,
    pub token_ttl: Duration,
    /// Grant length when the engineer does not ask for one. Default 1 hour.
    pub grant_default: Duration,
    /// Longest grant. Default 4 hours.
    pub grant_max: Duration,
    /// TCP address of the HTTP API; none by default.
    pub http: Option<SocketAddr>,
    /// Timeouts and connection caps of the HTTP listener; its total is lowered to half the
    /// open-file limit at start.
    pub http_limits: crate::listen::Limits,
    /// Where recordings go: a directory, `file:///DIR` or `s3://BUCKET/PREFIX` (see
    /// [`crate::recording::store::open`]). Default `DATA_DIR/recordings`.
    pub recordings: Option<String>,
    /// Whether sessions are recorded. Default true; when false, nothing is recorded and
    /// channels run unrecorded (the relay warns at start).
    pub recording: bool,
    /// Largest file transfer (bytes, and files of a recursive one). Default 2 GiB and
    /// 10,000 files.
    pub transfer_limits: assist_proto::files::TransferLimits,
    /// When failed logins make later attempts wait.
    pub login_throttle: crate::broker::throttle::ThrottleConfig,
    /// Repeated refusals of one kind within this window are audited as one counted
    /// event. Default 1 minute.
    pub refusal_window: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("data directory: {0}")]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: assist_net::ConnectError },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("certificate: {0}")]
    Cert(#[from] assist_certs::CertError),
    #[error("recordings location: {0}")]
    Recordings(String),
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http { addr: SocketAddr, source: std::io::Error },
}

/// The key of the relay's QUIC stateless resets and connection ids. Derived from the CA
/// key, so it survives restarts without another file to keep.
pub fn reset_secret(ca: &assist_certs::Ca) -> Vec<u8> {
    let material = format!("assist stateless reset\n{}", ca.key_pem());
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.as_bytes()).as_ref().to_vec()
}

/// Builds the relay from its data directory and binds its endpoint.
pub async fn bind(cfg: &ServeConfig) -> Result<(Endpoint, Arc<Relay>), ServeError> {
    let dir = &cfg.data_dir;
    let ca = dir.ca()?;
    let chain = assist_certs::certs_from_pem(&dir.server_chain_pem()?)?;
    let key = assist_certs::key_from_pem(&dir.server_key_pem()?)?;
    let ca_der = assist_certs::certs_from_pem(ca.cert_pem())?.remove(0);
    let endpoint = assist_net::server_endpoint(cfg.listen, chain, key, ca_der, &reset_secret(&ca))
        .map_err(|source| ServeError::Listen { addr: cfg.listen, source })?;
    let store: Arc<dyn Store> = Arc::new(dir.store().await?);
    let closed = store.close_dangling_sessions("relay restarted", crate::now_ms()).await?;
    if closed > 0 {
        warn!(closed, "closed sessions left open by an earlier relay process");
    }
    let broker_cfg = BrokerConfig {
        consent_timeout: cfg.consent_timeout,
        urgent_consent_timeout: cfg.urgent_consent_timeout,
        token_ttl: cfg.token_ttl,
        default_grant: cfg.grant_default,
        grant_ttl: cfg.grant_max,
        recordings: match cfg.recording {
            true => Some(
                crate::recording::store::open(cfg.recordings.as_deref(), dir.path())
                    .map_err(|e| ServeError::Recordings(e.to_string()))?,
            ),
            false => None,
        },
        recording_mandatory: cfg.recording,
        transfer_limits: cfg.transfer_limits,
        login_throttle: cfg.login_throttle,
        refusal_window: cfg.refusal_window,
    };
    if !cfg.recording {
        warn!("recording is OFF: sessions on this relay are not recorded and not auditable");
    }
    let relay = Relay::new(store, dir.token_keys()?, dir.grant_key()?, ca, broker_cfg);
    Ok((endpoint, Arc::new(relay)))
}

/// The binary's entry point: binds, prints the readiness line, serves until SIGINT,
/// SIGTERM or SIGHUP ([`crate::stop::Signals`]).
pub async fn run(cfg: ServeConfig) -> Result<(), ServeError> {
    let signals = crate::stop::Signals::watch();
    let fd_limit = match crate::listen::raise_fd_limit() {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot raise the open-file limit");
            rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX)
        }
    };
    let (endpoint, relay) = bind(&cfg).await?;
    let addr = endpoint
        .local_addr()
        .map_err(|e| ServeError::Listen { addr: cfg.listen, source: assist_net::ConnectError::Bind(e) })?;
    let http = match cfg.http {
        Some(http_addr) => {
            let listener = tokio::net::TcpListener::bind(http_addr)
                .await
                .map_err(|e| ServeError::Http { addr: http_addr, source: e })?;
            let bound = listener.local_addr().map_err(|e| ServeError::Http { addr: http_addr, source: e })?;
            crate::stop::say(&format!("assist-relay http on {bound}"));
            let (limits, lowered) = cfg.http_limits.for_fd_limit(fd_limit);
            info!(fd_limit, ?limits, lowered_to_half_the_fd_limit = lowered, "HTTP limits");
            let app = assist_console::app(relay.clone());
            Some(tokio::spawn(crate::listen::serve(listener, app, limits)))
        }
        None => None,
    };
    let ready = ready_line(addr, relay.ca.fingerprint());
    // Also in the log, for a relay whose stdout nobody reads.
    info!("{ready}");
    crate::stop::say(&ready);
    crate::wire::serve(endpoint, relay, async {
        let signal = signals.recv().await;
        info!(signal, "shutting down");
    })
    .await;
    if let Some(h) = http {
        h.abort();
    }
    Ok(())
}

/// The one stable line `serve` prints when it is ready, for people and scripts:
/// `assist-relay listening on ADDR ca SHA256:HEX`.
pub fn ready_line(addr: SocketAddr, ca: Fingerprint) -> String {
    format!("assist-relay listening on {addr} ca {ca}")
}
