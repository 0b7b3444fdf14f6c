//! `assist-agent run`: one outbound QUIC connection to the relay, authenticated by the
//! agent's certificate, kept up with jittered exponential backoff.
//!
//! On the connection: consent requests go to the prompt (or are left to approvers),
//! grants are verified and kept as the agent's own record, and channel streams the relay
//! opens are served by [`super::channel`], which checks them again.

use super::channel;
use super::consent::{self, PromptEvent};
use super::exec::Scripts;
use super::grants::Grants;
use super::shared::AgentState;
use super::state::{AgentDir, Enrollment, StateError};
use crate::conn::{ConnError, RelayConn};
use assist_net::{read_msg, write_msg};
use assist_proto::caps::ConsentMode;
use assist_proto::files::TransferLimits;
use assist_proto::ids::AgentName;
use assist_proto::msg::{AgentToRelay, RelayToAgent};
use assist_proto::text;
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
    /// First reconnect delay; doubles up to `max_backoff`, with ±50 % jitter.
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
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            limits: TransferLimits::default(),
            scripts: Arc::default(),
            show: None,
            desktop: None,
        }
    }
}

fn jitter(d: Duration) -> Duration {
    let f = 0.5 + (u16::from_le_bytes(assist_certs::random_bytes()) as f64 / u16::MAX as f64);
    d.mul_f64(f)
}

/// Runs until the relay refuses the agent for good (revoked, unknown certificate).
pub async fn run(dir: &AgentDir, cfg: RunConfig) -> Result<(), RunError> {
    let enrollment = dir.enrollment()?;
    let fp = enrollment.fingerprint()?;
    let mut backoff = cfg.min_backoff;
    loop {
        let attempt = async {
            let addr = crate::conn::resolve(&enrollment.relay).await?;
            RelayConn::open(addr, fp, Some(dir.identity().map_err(|e| ConnError::Lost(e.to_string()))?)).await
        };
        match attempt.await {
            Ok(rc) => {
                let started = std::time::Instant::now();
                match session(&rc, dir, &enrollment, &cfg).await {
                    Ok(()) => info!("connection to the relay ended"),
                    Err(Fatal(reason)) => return Err(RunError::Refused(reason)),
                }
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = cfg.min_backoff;
                }
            }
            Err(e) => warn!(error = %e, "cannot reach the relay"),
        }
        let wait = jitter(backoff);
        info!(wait_ms = wait.as_millis() as u64, "reconnecting");
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(cfg.max_backoff);
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

async fn session(
    rc: &RelayConn,
    dir: &AgentDir,
    enrollment: &Enrollment,
    cfg: &RunConfig,
) -> Result<(), Fatal> {
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
        })
        .await
    {
        Ok(RelayToAgent::Welcome { agent, org }) => {
            // Said once, to the person (and the journal, which takes stderr); the log
            // line is for debugging.
            debug!(%agent, %org, consent = %cfg.consent, "connected to the relay");
            eprintln!(
                "assist-agent: connected to {} as {} (org {}); consent: {}",
                enrollment.relay,
                text::line(agent.as_str()),
                text::line(org.as_str()),
                cfg.consent
            );
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
    let name = AgentName::new(enrollment.name.clone());
    let grant_key = enrollment.grant_key_bytes().map_err(|e| Fatal(e.to_string()))?;
    let state = Arc::new(AgentState {
        name: name.clone(),
        grants: Arc::new(Grants::new(name, grant_key, cfg.consent)),
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
    let (prompt_tx, prompt_rx) = mpsc::channel::<PromptEvent>(32);
    // The prompt runs in every mode while stdin is open: it also carries the kill key.
    let prompt = cfg
        .prompt
        .then(|| tokio::spawn(consent::run(prompt_rx, tx.clone(), state.grants.clone(), cfg.show.clone())));
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
                    let _ = prompt_tx.send(PromptEvent::Ask(session)).await;
                }
            }
            Ok(Some(RelayToAgent::ConsentWithdrawn { session, reason })) => {
                let _ = prompt_tx.send(PromptEvent::Withdraw { session, reason }).await;
            }
            Ok(Some(RelayToAgent::Granted { grant })) => match state.grants.receive(&grant) {
                Ok(g) => {
                    let (session, approver, revision) = (g.session.clone(), g.approver.clone(), g.revision);
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
                let ended = PromptEvent::Ended { session: session.clone(), reason: reason.to_string() };
                if prompt_tx.send(ended).await.is_err() {
                    info!(%session, reason = %text::line(&reason.to_string()), "session ended by the relay");
                }
            }
            Ok(Some(RelayToAgent::Error { message, .. })) => {
                warn!(message = %text::line(&message), "relay reported an error")
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    // Whatever ran for this connection's sessions stops with it.
    for s in state.grants.running_sessions() {
        state.grants.end(&s);
    }
    writer.abort();
    channels.abort();
    if let Some(p) = prompt {
        p.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), rc.conn.closed()).await;
    match rc.conn.close_reason().as_ref().and_then(refusal) {
        Some(reason) => Err(Fatal(reason)),
        None => Ok(()),
    }
}

fn fatal_or_ok(f: Fatal) -> Result<(), Fatal> {
    if f.0.is_empty() { Ok(()) } else { Err(f) }
}
