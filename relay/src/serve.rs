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
    /// TCP address of a plain-HTTP listener serving only `/api/v1/health` (for load
    /// balancers that cannot speak TLS); none by default.
    pub http: Option<SocketAddr>,
    /// The web console's HTTPS listener; default `0.0.0.0:8443` with a certificate from
    /// the relay CA, `None` with `--no-console`.
    pub console: Option<ConsoleListen>,
    /// Timeouts and connection caps of each HTTP listener; its total is lowered to half the
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
    /// This relay's name in a cluster (`--relay-name`, with `--cluster-bundle`): it
    /// registers in the database's relays registry ([`crate::cluster`]). `None`: a single
    /// relay, no registry.
    pub relay_name: Option<String>,
    /// The QUIC address agents use to reach this relay (`--advertise`), told to agents of
    /// the cluster. Default: the bound address, unless it is a wildcard.
    pub advertise: Option<String>,
}

/// Where and how the web console listens.
#[derive(Clone, Debug)]
pub struct ConsoleListen {
    /// TCP address; port 0 picks a free port (printed at start).
    pub addr: SocketAddr,
    /// Its certificate.
    pub cert: crate::console_tls::ConsoleCert,
    /// Sign-in rules (second factor, session lifetimes).
    pub auth: crate::console_state::ConsoleAuthConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "relay {name} is already running on this database (its heartbeat is {} s old): give each relay of a cluster its own --relay-name",
        ago_ms / 1000
    )]
    NameInUse { name: String, ago_ms: i64 },
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
    #[error(transparent)]
    ConsoleTls(#[from] crate::console_tls::ConsoleTlsError),
    #[error(transparent)]
    Bus(#[from] crate::bus::BusStartError),
}

/// The key of the relay's QUIC stateless resets and connection ids. Derived from the CA
/// key, so it survives restarts without another file to keep.
pub fn reset_secret(ca: &assist_certs::Ca) -> Vec<u8> {
    let material = format!("assist stateless reset\n{}", ca.key_pem());
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, material.as_bytes()).as_ref().to_vec()
}

/// Makes sure no running relay holds `name`: a second process under a running relay's
/// name would close that relay's sessions as its own leftovers, so it is refused as soon
/// as that relay's heartbeat moves. A relay restarted at once after a crash (as a service
/// manager does) finds its old row still live but no longer beating: it waits, at most
/// until that row would be declared lost ([`crate::cluster::LOST_AFTER`]), instead of
/// failing.
async fn claim_name(store: &dyn Store, name: &str) -> Result<(), ServeError> {
    use crate::cluster::{HEARTBEAT, LOST_AFTER};
    let stale = LOST_AFTER.as_millis() as i64;
    let live = |rows: Vec<crate::store::relays::RelayRow>| {
        let now = crate::now_ms();
        rows.into_iter().find(|r| r.name == name && r.is_live(now, stale))
    };
    let Some(first) = live(store.list_relays().await?) else { return Ok(()) };
    let ago_s = (crate::now_ms() - first.heartbeat_at) / 1000;
    warn!(
        relay = name,
        heartbeat_age_s = ago_s,
        "a relay of this name was running: waiting until its heartbeat is known to have stopped (a restart after a crash), at most {} s",
        LOST_AFTER.as_secs()
    );
    loop {
        tokio::time::sleep(HEARTBEAT / 2).await;
        match live(store.list_relays().await?) {
            None => return Ok(()),
            Some(r) if r.heartbeat_at != first.heartbeat_at || r.started_at != first.started_at => {
                return Err(ServeError::NameInUse {
                    name: name.to_owned(),
                    ago_ms: crate::now_ms() - r.heartbeat_at,
                });
            }
            Some(_) => {}
        }
    }
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
    let store: Arc<dyn Store> = dir.store().await?;
    if let Some(name) = &cfg.relay_name {
        claim_name(store.as_ref(), name).await?;
    }
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
    let relay = Arc::new(Relay::new(store, dir.token_keys()?, dir.grant_key()?, ca, broker_cfg));
    // On PostgreSQL the relay may be one of several: it joins their bus (`crate::bus`),
    // listening before it is ready. On SQLite it is alone and has none.
    if let Some(url) =
        dir.database().filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    {
        // Asks are addressed to the relay a session row names: this one's name in the
        // store (`default` for relays started without one, which all take those).
        let name = Some(relay.store.relay_name().to_owned());
        crate::bus::PgBus::start(url, &relay, name, crate::bus::BusConfig::default()).await?;
    }
    Ok((endpoint, relay))
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
    let (limits, lowered) = cfg.http_limits.for_fd_limit(fd_limit);
    info!(fd_limit, ?limits, lowered_to_half_the_fd_limit = lowered, "HTTP limits");
    let mut http_tasks = Vec::new();
    if cfg.http.is_some() || cfg.console.is_some() {
        let auth = cfg.console.as_ref().map(|c| c.auth.clone()).unwrap_or_default();
        let state = crate::console_state::RelayConsole::new(relay.clone(), cfg.data_dir.store().await?, auth);
        if let Some(http_addr) = cfg.http {
            let listener = bind_tcp(http_addr).await?;
            let bound = listener.local_addr().map_err(|e| ServeError::Http { addr: http_addr, source: e })?;
            crate::stop::say(&format!("assist-relay http on {bound}"));
            let app = assist_console::health_app(state.clone());
            http_tasks.push(tokio::spawn(crate::listen::serve(listener, app, limits, None)));
        }
        if let Some(console) = &cfg.console {
            let ca_path = cfg.data_dir.path().join(crate::datadir::CA_CERT);
            let tls = crate::console_tls::build(&console.cert, &relay.ca, &ca_path)?;
            let listener = bind_tcp(console.addr).await?;
            let bound =
                listener.local_addr().map_err(|e| ServeError::Http { addr: console.addr, source: e })?;
            crate::stop::say(&format!(
                "assist-relay console on https://{bound} spki {}",
                tls.spki_sha256_base64
            ));
            crate::stop::say(&format!("  {}", tls.trust_hint));
            info!(%bound, leaf = %tls.leaf, "web console");
            let app = assist_console::app(state);
            http_tasks.push(tokio::spawn(crate::listen::serve(listener, app, limits, Some(tls.acceptor))));
        }
    }
    let membership = match &cfg.relay_name {
        Some(_) => {
            let advertise =
                cfg.advertise.clone().or_else(|| (!addr.ip().is_unspecified()).then(|| addr.to_string()));
            if advertise.is_none() {
                warn!("no --advertise address: agents of the cluster are not told of this relay");
            }
            Some(crate::cluster::Membership::start(relay.store.clone(), relay.clone(), advertise).await?)
        }
        None => None,
    };
    let ready = ready_line(addr, relay.ca.fingerprint());
    // Also in the log, for a relay whose stdout nobody reads.
    info!("{ready}");
    crate::stop::say(&ready);
    let store = relay.store.clone();
    crate::wire::serve(endpoint, relay, async {
        let signal = signals.recv().await;
        info!(signal, "shutting down");
    })
    .await;
    for h in http_tasks {
        h.abort();
    }
    match membership {
        Some(m) => m.stop().await,
        // The single relay: its agents' presence ends with it (as a cluster relay's does).
        None => {
            if let Err(e) = store.relay_stopped(crate::now_ms()).await {
                warn!(error = %e, "cannot store that this relay's agents are no longer connected");
            }
        }
    }
    Ok(())
}

async fn bind_tcp(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| ServeError::Http { addr, source: e })
}

/// The one stable line `serve` prints when it is ready, for people and scripts:
/// `assist-relay listening on ADDR ca SHA256:HEX`.
pub fn ready_line(addr: SocketAddr, ca: Fingerprint) -> String {
    format!("assist-relay listening on {addr} ca {ca}")
}
