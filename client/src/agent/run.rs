//! `assist-agent run`: an outbound QUIC connection to the relay (to each relay of a
//! cluster: [`super::relays`]), authenticated by the agent's certificate, each kept up
//! with jittered exponential backoff of its own ([`super::backoff`]).
//!
//! The prompt, the kill key and the agent's record of grants are one for every
//! connection: an answer goes back on the connection its request came on, the kill key
//! to every relay.
//!
//! On the connection: consent requests go to the prompt (or are left to approvers),
//! grants are verified and kept as the agent's own record, and channel streams the relay
//! opens are served by [`super::channel`], which checks them again.

use super::backoff::Backoff;
use super::channel;
use super::consent::{self, PromptEvent};
use super::exec::Scripts;
use super::grants::Grants;
use super::relays::{Links, Roster};
use super::shared::AgentState;
use super::state::{AgentDir, Enrollment, StateError};
use crate::conn::{ConnError, RelayConn};
use assist_net::{read_msg, write_msg};
use assist_proto::caps::ConsentMode;
use assist_proto::files::TransferLimits;
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::{AgentToRelay, ClusterRelays, RelayToAgent};
use assist_proto::text;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the relay refused this agent: {0}")]
    Refused(String),
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub consent: ConsentMode,
    /// Whether to read answers (and the kill key) from stdin.
    pub prompt: bool,
    /// More relays to keep a connection to (`--relay ADDR`, repeatable), besides those
    /// the cluster tells of; none by default.
    pub relays: Vec<String>,
    /// First reconnect delay; doubles up to `max_backoff`, with ±50 % jitter
    /// ([`super::backoff`]), per relay.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Largest file transfer this agent serves. Default 2 GiB and 10,000 files.
    pub limits: TransferLimits,
    /// The diagnostic scripts engineers may run by name. Default: none.
    pub scripts: Arc<Scripts>,
    /// Where sessions' terminals are shown as they happen (`--show-sessions`). Default:
    /// nowhere.
    pub show: Option<Arc<super::show::Shown>>,
    /// Where desktops come from (the `assist-agent` binary's X11 screen). Default: none,
    /// and desktop requests are refused.
    pub desktop: Option<Arc<dyn super::desktop::DesktopHost>>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            consent: ConsentMode::Approver,
            prompt: false,
            relays: Vec::new(),
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            limits: TransferLimits::default(),
            scripts: Arc::default(),
            show: None,
            desktop: None,
        }
    }
}

/// Runs until a relay refuses the agent for good (revoked, unknown certificate): one
/// connection per relay ([`super::relays`]), each reconnecting with its own backoff.
pub async fn run(dir: &AgentDir, cfg: RunConfig) -> Result<(), RunError> {
    let enrollment = dir.enrollment()?;
    let fp = enrollment.fingerprint()?;
    let name = AgentName::new(enrollment.name.clone());
    let grants = Arc::new(Grants::new(name, enrollment.grant_key_bytes()?, cfg.consent));
    let links = Arc::new(Links::default());
    // What the prompt sends goes to the connection of the session it answers, or to all.
    let (answers_tx, mut answers_rx) = mpsc::channel::<AgentToRelay>(64);
    let router = {
        let links = links.clone();
        tokio::spawn(async move {
            while let Some(msg) = answers_rx.recv().await {
                links.route(msg).await;
            }
        })
    };
    let (prompt_tx, prompt_rx) = mpsc::channel::<PromptEvent>(32);
    // The prompt runs in every mode while stdin is open: it also carries the kill key.
    // Without it, sending to it fails and the connections log what it would have said.
    let prompt = cfg
        .prompt
        .then(|| tokio::spawn(consent::run(prompt_rx, answers_tx.clone(), grants.clone(), cfg.show.clone())));
    let (roster, first) = Roster::new(cfg.relays.clone(), dir.cluster_relays(), &enrollment.relay);
    let ctx = Arc::new(Ctx { dir: dir.clone(), enrollment, fp, cfg, grants, links, prompt_tx, roster });
    let (spawn_tx, mut spawn_rx) = mpsc::unbounded_channel::<String>();
    let mut tasks = tokio::task::JoinSet::new();
    for address in first {
        tasks.spawn(connect_loop(ctx.clone(), address, spawn_tx.clone()));
    }
    let result = loop {
        tokio::select! {
            Some(address) = spawn_rx.recv() => {
                tasks.spawn(connect_loop(ctx.clone(), address, spawn_tx.clone()));
            }
            done = tasks.join_next() => match done {
                Some(Ok(Err(Fatal(reason)))) => break Err(RunError::Refused(reason)),
                Some(_) => {}
                // Every task ends only by a refusal or by standing down for another,
                // which is spawned first: an empty set is not reached.
                None => break Ok(()),
            },
        }
    };
    tasks.abort_all();
    router.abort();
    if let Some(p) = prompt {
        p.abort();
    }
    result
}

/// What every connection of the agent shares.
struct Ctx {
    dir: AgentDir,
    enrollment: Enrollment,
    fp: assist_certs::Fingerprint,
    cfg: RunConfig,
    /// The agent's own record of every session's grant, whichever relay it came from.
    grants: Arc<Grants>,
    links: Arc<Links>,
    prompt_tx: mpsc::Sender<PromptEvent>,
    roster: Roster,
}

/// Keeps a connection to the relay at `address`, reconnecting with jittered exponential
/// backoff of its own. Ends with a refusal, or (`Ok`) when it stood in for a relay that
/// has an address of its own ([`Roster::lost`]).
async fn connect_loop(
    ctx: Arc<Ctx>,
    address: String,
    spawn: mpsc::UnboundedSender<String>,
) -> Result<(), Fatal> {
    let mut backoff = Backoff::new(ctx.cfg.min_backoff, ctx.cfg.max_backoff);
    loop {
        let attempt = async {
            let addr = crate::conn::resolve(&address).await?;
            let identity = ctx.dir.identity().map_err(|e| ConnError::Lost(e.to_string()))?;
            RelayConn::open(addr, ctx.fp, Some(identity)).await
        };
        match attempt.await {
            Ok(rc) => {
                let started = std::time::Instant::now();
                session(&rc, &ctx, &address, &spawn).await?;
                info!(relay = %address, "connection to the relay ended");
                if started.elapsed() > Duration::from_secs(30) {
                    backoff.reset();
                }
                let (keep, instead) = ctx.roster.lost(&address);
                for a in instead {
                    let _ = spawn.send(a);
                }
                if !keep {
                    return Ok(());
                }
            }
            Err(e) => warn!(relay = %address, error = %e, "cannot reach the relay"),
        }
        let wait = backoff.next_delay();
        info!(relay = %address, wait_ms = wait.as_millis() as u64, "reconnecting");
        tokio::time::sleep(wait).await;
    }
}

/// The relay refused the agent; reconnecting will not help.
struct Fatal(String);

fn refusal(e: &quinn::ConnectionError) -> Option<String> {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) if c.error_code == assist_net::codes::REFUSED => {
            Some(String::from_utf8_lossy(&c.reason).into_owned())
        }
        _ => None,
    }
}

/// Serves one connection until it ends: `Err` only for a refusal.
async fn session(
    rc: &RelayConn,
    ctx: &Ctx,
    address: &str,
    spawn: &mpsc::UnboundedSender<String>,
) -> Result<(), Fatal> {
    let (dir, cfg) = (&ctx.dir, &ctx.cfg);
    let lost = |e: &ConnError| {
        // A refusal arrives as the connection closing; tell it apart from a network error.
        rc.conn.close_reason().as_ref().and_then(refusal).map(Fatal).unwrap_or_else(|| {
            warn!(error = %e, "connection lost");
            Fatal(String::new())
        })
    };
    let mut control = match rc.control().await {
        Ok(c) => c,
        Err(e) => return fatal_or_ok(lost(&e)),
    };
    match control
        .call::<_, RelayToAgent>(&AgentToRelay::Hello {
            consent: cfg.consent,
            version: env!("CARGO_PKG_VERSION").into(),
            scripts: Some(cfg.scripts.names()),
            desktop: cfg.desktop.as_ref().and_then(|d| d.display()),
            cluster: true,
        })
        .await
    {
        Ok(RelayToAgent::Welcome { agent, org, cluster }) => {
            // Said once, to the person (and the journal, which takes stderr); the log
            // line is for debugging.
            debug!(%agent, %org, consent = %cfg.consent, "connected to the relay");
            let relay = match &cluster {
                Some(c) => format!("{address} (relay {})", text::line(&c.relay)),
                None => address.to_owned(),
            };
            eprintln!(
                "assist-agent: connected to {relay} as {} (org {}); consent: {}",
                text::line(agent.as_str()),
                text::line(org.as_str()),
                cfg.consent
            );
            if let Some(c) = cluster {
                learn(ctx, address, &c, spawn);
            }
        }
        Ok(other) => {
            warn!(?other, "unexpected answer to hello");
            return Ok(());
        }
        Err(e) => {
            // The relay may close the connection only after reading the hello.
            let _ = tokio::time::timeout(Duration::from_secs(2), rc.conn.closed()).await;
            return fatal_or_ok(lost(&e));
        }
    }

    let (tx, mut rx) = mpsc::channel::<AgentToRelay>(64);
    let state = Arc::new(AgentState {
        name: AgentName::new(ctx.enrollment.name.clone()),
        grants: ctx.grants.clone(),
        control: tx.clone(),
        signing_key: dir.signing_key().map_err(|e| Fatal(e.to_string()))?,
        limits: cfg.limits,
        scripts: cfg.scripts.clone(),
        show: cfg.show.clone(),
        desktop: cfg.desktop.clone(),
    });
    let mut send = control.send;
    let mut recv = control.recv;
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if write_msg(&mut send, &msg).await.is_err() {
                break;
            }
        }
    });
    let prompt_tx = &ctx.prompt_tx;
    let link = ctx.links.add(tx.clone());
    // The sessions that came on this connection: they end with it.
    let mut mine: HashSet<SessionId> = HashSet::new();
    let mut asked: HashSet<SessionId> = HashSet::new();
    // The relay opens every channel of every session here (a forward, one per connection).
    rc.conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(assist_net::endpoint::MAX_OPEN_CHANNELS));
    let channels = {
        let state = state.clone();
        let conn = rc.conn.clone();
        tokio::spawn(async move {
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(channel::serve(state.clone(), conn.clone(), send, recv));
            }
        })
    };

    loop {
        match read_msg::<RelayToAgent, _>(&mut recv).await {
            Ok(Some(RelayToAgent::ConsentRequest { session })) if cfg.consent == ConsentMode::Prompt => {
                if let Some(e) = consent::unserved(&session) {
                    // Nobody here is asked to allow what this agent cannot do.
                    warn!(session = %session.id, error = %e, "consent request refused");
                    let answer = AgentToRelay::ConsentAnswer {
                        session: session.id.clone(),
                        approve: false,
                        reason: Some(e.to_string()),
                        capabilities: None,
                    };
                    let _ = tx.send(answer).await;
                } else {
                    ctx.links.own(&session.id, link);
                    asked.insert(session.id.clone());
                    let _ = prompt_tx.send(PromptEvent::Ask(session)).await;
                }
            }
            Ok(Some(RelayToAgent::ConsentWithdrawn { session, reason })) => {
                asked.remove(&session);
                let _ = prompt_tx.send(PromptEvent::Withdraw { session, reason }).await;
            }
            Ok(Some(RelayToAgent::Granted { grant })) => match state.grants.receive(&grant) {
                Ok(g) => {
                    let (session, approver, revision) = (g.session.clone(), g.approver.clone(), g.revision);
                    ctx.links.own(&session, link);
                    asked.remove(&session);
                    mine.insert(session.clone());
                    // The prompt, when there is one, says it to the person; the log says it
                    // only when nobody else does, so each event is printed once.
                    if prompt_tx.send(PromptEvent::Granted(Box::new(g))).await.is_err() {
                        info!(%session, approver = %text::line(&approver.to_string()), revision, "grant received");
                    }
                }
                Err(e) => warn!(error = %e, "grant refused"),
            },
            Ok(Some(RelayToAgent::Resize { session, cols, rows })) => {
                state.grants.resize(&session, cols, rows)
            }
            Ok(Some(RelayToAgent::EndSession { session, reason })) => {
                state.grants.end(&session);
                ctx.links.disown(&session);
                mine.remove(&session);
                let ended = PromptEvent::Ended { session: session.clone(), reason: reason.to_string() };
                if prompt_tx.send(ended).await.is_err() {
                    info!(%session, reason = %text::line(&reason.to_string()), "session ended by the relay");
                }
            }
            Ok(Some(RelayToAgent::Cluster { cluster })) => learn(ctx, address, &cluster, spawn),
            Ok(Some(RelayToAgent::Error { message, .. })) => {
                warn!(message = %text::line(&message), "relay reported an error")
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    // Whatever ran for this connection's sessions stops with it (the relay ends them
    // too); the other relays' sessions go on.
    ctx.links.remove(link);
    for s in mine {
        state.grants.end(&s);
    }
    for session in asked {
        let reason = "the connection to the relay was lost".to_owned();
        let _ = prompt_tx.send(PromptEvent::Withdraw { session, reason }).await;
    }
    writer.abort();
    channels.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), rc.conn.closed()).await;
    match rc.conn.close_reason().as_ref().and_then(refusal) {
        Some(reason) => Err(Fatal(reason)),
        None => Ok(()),
    }
}

/// What a relay told of the cluster: a connection to each relay not reached yet, and the
/// list kept for the next start.
fn learn(ctx: &Ctx, address: &str, cluster: &ClusterRelays, spawn: &mpsc::UnboundedSender<String>) {
    let (more, changed) = ctx.roster.welcomed(address, &cluster.relay, &cluster.relays);
    if changed && let Err(e) = ctx.dir.save_cluster_relays(&ctx.roster.learnt()) {
        warn!(error = %e, "cannot keep the list of relays");
    }
    for a in more {
        info!(relay = %a, "connecting to another relay of the cluster");
        let _ = spawn.send(a);
    }
}

fn fatal_or_ok(f: Fatal) -> Result<(), Fatal> {
    if f.0.is_empty() { Ok(()) } else { Err(f) }
}
