//! The engineer's and approver's side: `assist login`, listings, answers, and sessions.
//!
//! Every command opens one QUIC connection to the relay, authenticates with the cached
//! token on the control stream, sends one request and reads its answer. `assist shell`
//! keeps the connection for the session's life ([`shell`]); `cp`, `ls`, `exec` and `logs`
//! work in a session of their own or a live one ([`session`], [`cp`], [`transfer`],
//! [`exec`], [`logs`]), and so does `forward` ([`forward`]: local ports to targets the
//! agent reaches), and `ssh-proxy`/`ssh-config` ([`ssh`]: OpenSSH's tools over the same
//! channels).

pub mod config;
pub mod cp;
pub mod desktop;
pub mod exec;
pub mod forward;
pub mod grant;
pub mod logs;
pub mod progress;
pub mod render;
pub mod session;
pub mod shell;
pub mod ssh;
pub mod transfer;
pub mod watch;

use crate::clock::now_ms;
use crate::conn::{ConnError, Control, RelayConn};
use assist_certs::Fingerprint;
use assist_proto::caps::Capability;
use assist_proto::ids::SessionId;
use assist_proto::msg::{AgentInfo, EngineerToRelay, ErrorCode, HeldBy, RelayToEngineer, SessionInfo};
use config::{ConfigDir, ConfigError, Login};

#[derive(Debug, thiserror::Error)]
pub enum EngineerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("{message}")]
    Relay { code: ErrorCode, message: String },
    #[error("unexpected answer from the relay: {0}")]
    Unexpected(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Free text the relay would refuse: said before anything is sent.
    #[error(transparent)]
    Text(#[from] assist_proto::text::TextError),
}

impl EngineerError {
    fn from_reply(reply: RelayToEngineer) -> Self {
        match reply {
            RelayToEngineer::Error { code, message, .. } => EngineerError::Relay { code, message },
            other => EngineerError::Unexpected(format!("{other:?}")),
        }
    }
}

/// How `login` learns which relay CA to trust on first contact.
pub enum Trust<'a> {
    /// Given on the command line.
    Fingerprint(Fingerprint),
    /// Ask the user, ssh-style: shown the fingerprint, answer yes or no.
    Ask(&'a mut dyn FnMut(&str, &Fingerprint) -> bool),
}

/// Logs in with a password, caches the token, and returns the login. If the relay asks
/// for a second factor (the user has an authenticator), `code` is called for one and the
/// login is sent again with it.
pub async fn login(
    cfg: &ConfigDir,
    relay: &str,
    user: &str,
    password: &str,
    trust: Trust<'_>,
    code: &mut dyn FnMut() -> Option<String>,
) -> Result<Login, EngineerError> {
    let addr = crate::conn::resolve(relay).await?;
    let known = cfg.known_fingerprint(relay)?;
    let fp = match (trust, known) {
        (Trust::Fingerprint(fp), _) => fp,
        (Trust::Ask(_), Some(fp)) => fp,
        (Trust::Ask(ask), None) => {
            let endpoint = assist_net::client_endpoint(addr).map_err(ConnError::from)?;
            let presented = assist_net::probe_ca(&endpoint, addr).await.map_err(ConnError::from)?;
            if !ask(relay, &presented) {
                return Err(EngineerError::Refused("relay not trusted; nothing was sent".into()));
            }
            presented
        }
    };
    let mut msg = EngineerToRelay::Login { user: user.to_owned(), password: password.to_owned(), code: None };
    let mut reply = login_once(addr, fp, &msg).await?;
    if let RelayToEngineer::Error { code: ErrorCode::CodeRequired, .. } = &reply {
        let Some(given) = code() else {
            return Err(EngineerError::from_reply(reply));
        };
        msg = EngineerToRelay::Login {
            user: user.to_owned(),
            password: password.to_owned(),
            code: Some(given),
        };
        reply = login_once(addr, fp, &msg).await?;
    }
    match reply {
        RelayToEngineer::LoggedIn { token, user, org, role, expires_at } => {
            cfg.remember(relay, fp)?;
            let login = Login {
                relay: relay.to_owned(),
                ca_fingerprint: fp.to_string(),
                user: user.to_string(),
                org: org.to_string(),
                role,
                token,
                expires_at,
            };
            cfg.save_login(&login)?;
            Ok(login)
        }
        other => Err(EngineerError::from_reply(other)),
    }
}

/// One `Login` on a connection of its own.
async fn login_once(
    addr: std::net::SocketAddr,
    fp: Fingerprint,
    msg: &EngineerToRelay,
) -> Result<RelayToEngineer, EngineerError> {
    let rc = RelayConn::open(addr, fp, None).await?;
    let mut control = rc.control().await?;
    let reply: RelayToEngineer = control.call(msg).await?;
    rc.close().await;
    Ok(reply)
}

/// A connection authenticated with the cached token.
pub struct Authed {
    pub rc: RelayConn,
    pub control: Control,
    pub login: Login,
}

impl std::fmt::Debug for Authed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authed").field("user", &self.login.user).finish_non_exhaustive()
    }
}

pub async fn connect(cfg: &ConfigDir) -> Result<Authed, EngineerError> {
    let login = cfg.load_login(now_ms())?;
    let fp: Fingerprint = login.ca_fingerprint.parse().map_err(|e: assist_certs::CertError| {
        ConfigError::Corrupt { path: cfg.path().join("login.json"), reason: e.to_string() }
    })?;
    let relay = login.relay.clone();
    connect_to(login, fp, &relay).await
}

/// A connection to `relay` (`HOST:PORT`) authenticated with `login`'s token.
async fn connect_to(login: Login, fp: Fingerprint, relay: &str) -> Result<Authed, EngineerError> {
    let addr = crate::conn::resolve(relay).await?;
    let rc = RelayConn::open(addr, fp, None).await?;
    let mut control = rc.control().await?;
    match control.call(&EngineerToRelay::Auth { token: login.token.clone() }).await? {
        RelayToEngineer::Authenticated { .. } => Ok(Authed { rc, control, login }),
        other => Err(EngineerError::from_reply(other)),
    }
}

/// The relay of the cluster that holds the session, if `reply` sends the command there.
fn held_by(reply: &RelayToEngineer) -> Option<&HeldBy> {
    match reply {
        RelayToEngineer::Error { held_by, .. } => held_by.as_ref(),
        _ => None,
    }
}

impl Authed {
    /// Leaves this relay for the one of its cluster that holds `session` (`held`): a new
    /// connection there with the same token and CA pin (every relay of a cluster has its
    /// certificate from the one CA, and takes the cluster's tokens). Says so in one line.
    pub(crate) async fn go_to_holder(
        self,
        session: &SessionId,
        held: &HeldBy,
    ) -> Result<Self, EngineerError> {
        let Authed { rc, control, login } = self;
        drop(control);
        rc.close().await;
        let fp: Fingerprint = login.ca_fingerprint.parse().map_err(|e: assist_certs::CertError| {
            EngineerError::Refused(format!("the saved login's CA fingerprint: {e}"))
        })?;
        let there = connect_to(login, fp, &held.address).await.map_err(|e| match e {
            EngineerError::Conn(e) => EngineerError::Refused(format!(
                "session {session} is held by relay {} ({}), which cannot be reached: {e}",
                held.relay, held.address
            )),
            other => other,
        })?;
        eprintln!(
            "assist: {}",
            assist_proto::text::line(&format!(
                "session {session} is held by relay {} ({}); continuing there",
                held.relay, held.address
            ))
        );
        Ok(there)
    }

    /// Sends `req` about `session` and reads the answer. If another relay of the cluster
    /// holds the session, goes there (once: a second relay sending it on again is an
    /// error, never a loop) and sends it again.
    pub(crate) async fn call_at_holder(
        mut self,
        session: &SessionId,
        req: &EngineerToRelay,
    ) -> Result<(Self, RelayToEngineer), EngineerError> {
        let reply: RelayToEngineer = self.control.call(req).await?;
        let Some(held) = held_by(&reply).cloned() else { return Ok((self, reply)) };
        let mut there = self.go_to_holder(session, &held).await?;
        let reply: RelayToEngineer = there.control.call(req).await?;
        if let Some(again) = held_by(&reply) {
            return Err(EngineerError::Refused(format!(
                "session {session}: relay {} sent this on to relay {} in turn; not following a second time",
                held.relay, again.relay
            )));
        }
        Ok((there, reply))
    }
}

/// Sends one request on a fresh authenticated connection and returns the answer.
async fn one_shot(cfg: &ConfigDir, req: EngineerToRelay) -> Result<RelayToEngineer, EngineerError> {
    req.check_text()?;
    let mut a = connect(cfg).await?;
    let mut reply: RelayToEngineer = a.control.call(&req).await?;
    // A long list comes in parts (`proto::parts`).
    while reply.more() {
        let next: RelayToEngineer = a.control.recv().await?;
        reply.join(next).map_err(|other| EngineerError::from_reply(*other))?;
    }
    a.rc.close().await;
    match reply {
        RelayToEngineer::Error { .. } => Err(EngineerError::from_reply(reply)),
        ok => Ok(ok),
    }
}

pub async fn agents(cfg: &ConfigDir) -> Result<Vec<AgentInfo>, EngineerError> {
    match one_shot(cfg, EngineerToRelay::ListAgents).await? {
        RelayToEngineer::Agents { agents, .. } => Ok(agents),
        other => Err(EngineerError::from_reply(other)),
    }
}

pub async fn requests(cfg: &ConfigDir) -> Result<Vec<SessionInfo>, EngineerError> {
    match one_shot(cfg, EngineerToRelay::ListRequests).await? {
        RelayToEngineer::Sessions { sessions, .. } => Ok(sessions),
        other => Err(EngineerError::from_reply(other)),
    }
}

pub async fn sessions(cfg: &ConfigDir) -> Result<Vec<SessionInfo>, EngineerError> {
    match one_shot(cfg, EngineerToRelay::ListSessions).await? {
        RelayToEngineer::Sessions { sessions, .. } => Ok(sessions),
        other => Err(EngineerError::from_reply(other)),
    }
}

async fn done(cfg: &ConfigDir, req: EngineerToRelay) -> Result<String, EngineerError> {
    match one_shot(cfg, req).await? {
        RelayToEngineer::Done { message } => Ok(message),
        other => Err(EngineerError::from_reply(other)),
    }
}

/// Approves a request or escalation: everything asked (`capabilities` and `duration_secs`
/// `None`), or less.
pub async fn approve(
    cfg: &ConfigDir,
    session: SessionId,
    capabilities: Option<Vec<Capability>>,
    duration_secs: Option<u64>,
    note: Option<String>,
) -> Result<String, EngineerError> {
    done(cfg, EngineerToRelay::Approve { session, capabilities, duration_secs, note }).await
}

/// Takes capabilities (by kind, `files.read`, or exactly, `files.read:/var/log`) away from
/// a live session.
pub async fn revoke(
    cfg: &ConfigDir,
    session: SessionId,
    capabilities: Vec<String>,
    reason: Option<String>,
) -> Result<String, EngineerError> {
    done(cfg, EngineerToRelay::Revoke { session, capabilities, reason }).await
}

pub async fn deny(cfg: &ConfigDir, session: SessionId, reason: String) -> Result<String, EngineerError> {
    done(cfg, EngineerToRelay::Deny { session, reason }).await
}

pub async fn end(
    cfg: &ConfigDir,
    session: SessionId,
    reason: Option<String>,
) -> Result<String, EngineerError> {
    done(cfg, EngineerToRelay::End { session, reason }).await
}
