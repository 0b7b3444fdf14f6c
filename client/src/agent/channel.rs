//! Serving one channel stream the relay opened: check it against the agent's own record
//! of the grant, start the process, and pump bytes until it exits.
//!
//! The relay already checked the stream; the agent checks again, independently:
//! - the grant in the stream header carries a valid signature of the relay's grant key,
//!   names this agent and this session, is in force now and covers the channel;
//! - the agent itself received that grant on its control stream (its own record), and, if
//!   the grant says the local prompt approved it, the prompt here did;
//! - the session has not ended.

use super::process::{self, Spec};
use super::shared::{AgentState, Digest, countersign, refuse};
use super::show::ShownChannel;
use crate::clock::now_ms;
use assist_net::{codes, read_msg, write_msg};
use assist_proto::grant::{Grant, GrantError};
use assist_proto::ids::SessionId;
use assist_proto::msg::{AgentChannelOpen, AgentToRelay, ChannelKind, ChannelOpen, ChannelReply};
use quinn::{Connection, RecvStream, SendStream};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{info, warn};

/// Copies `from` into `to`, hashing what passes. Returns whether it ended cleanly.
/// With `shown`, the bytes are shown on the agent's terminal too (`--show-sessions`).
async fn pump(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    digest: &mut Digest,
    mut shown: Option<&mut ShownChannel>,
) -> bool {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) => return true,
            Ok(n) => {
                digest.update(&buf[..n]);
                if let Some(shown) = shown.as_deref_mut() {
                    shown.feed(&buf[..n]);
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

/// How long to wait for the grant on the control stream when a channel arrives first.
const RECORD_WAIT: Duration = Duration::from_secs(3);
/// How long to wait for the rest of the output after the process exited.
const DRAIN: Duration = Duration::from_secs(2);

/// Why the agent refused a channel before starting anything.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChannelRefused {
    #[error("session {0} has ended")]
    Ended(SessionId),
    #[error("agent refused the grant: {0}")]
    Grant(#[from] GrantError),
    #[error("agent has no record of an approval for {0}")]
    NoRecord(SessionId),
    #[error("the grant differs from the agent's record of the approval")]
    DiffersFromRecord,
}

async fn check(state: &AgentState, open: &AgentChannelOpen) -> Result<Grant, ChannelRefused> {
    let session = &open.open.session;
    let grants = &state.grants;
    if grants.has_ended(session) {
        return Err(ChannelRefused::Ended(session.clone()));
    }
    let cap = open.open.channel.required_capability();
    let presented = open.grant.check(grants.key(), session, grants.name(), &cap, now_ms())?;
    // The relay sends a new revision on the control stream before it uses it on a channel;
    // the two may arrive in either order.
    let record = grants
        .record_at_least(session, presented.revision, RECORD_WAIT)
        .await
        .ok_or_else(|| ChannelRefused::NoRecord(session.clone()))?;
    if record != presented {
        return Err(ChannelRefused::DiffersFromRecord);
    }
    Ok(record)
}

fn default_shell() -> String {
    std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into())
}

pub(crate) async fn serve(
    state: Arc<AgentState>,
    conn: Connection,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let open: AgentChannelOpen =
        match tokio::time::timeout(Duration::from_secs(10), read_msg(&mut recv)).await {
            Ok(Ok(Some(o))) => o,
            _ => {
                let _ = send.reset(codes::PROTOCOL);
                return;
            }
        };
    let session = open.open.session.clone();
    let grant = match check(&state, &open).await {
        Ok(g) => g,
        Err(refused) => {
            let reason = refused.to_string();
            warn!(%session, reason = %assist_proto::text::line(&reason), "channel refused");
            let _ = write_msg(&mut send, &ChannelReply::refused(reason)).await;
            let _ = send.finish();
            return;
        }
    };
    let exec = match &open.open.channel {
        ChannelKind::Exec { name } => Some(name.clone()),
        _ => None,
    };
    let (spec, timeout) = match open.open.channel.clone() {
        ChannelKind::Shell { pty: Some(pty), command } => (Spec::Pty { pty, command }, None),
        ChannelKind::Shell { pty: None, command } => {
            (Spec::Pipes { command: command.unwrap_or_else(|| vec![default_shell()]) }, None)
        }
        ChannelKind::Exec { name } => match state.scripts.get(&name) {
            Some(script) => (Spec::Pipes { command: script.argv() }, Some(script.timeout())),
            None => {
                let reason = format!("{name} is not in this agent's allowlist of diagnostic scripts");
                return refuse(&mut send, reason).await;
            }
        },
        ChannelKind::Files { request } => {
            return super::files::serve(state, session, grant, request, send, recv).await;
        }
        ChannelKind::Logs { paths, since } => {
            return super::logs::serve(state, session, grant, paths, since, send, recv).await;
        }
        ChannelKind::Forward { target } => {
            return super::forward::serve(state, session, target, send, recv).await;
        }
        kind @ ChannelKind::Desktop { .. } => {
            return super::desktop::serve(state, session, kind, send, recv).await;
        }
        ChannelKind::Clipboard => {
            return super::clipboard::serve(state, session, send, recv).await;
        }
        _ => return refuse(&mut send, "unsupported channel".into()).await,
    };
    let env = vec![
        ("ASSIST_SESSION".to_owned(), session.to_string()),
        ("ASSIST_ENGINEER".to_owned(), grant.engineer.to_string()),
    ];
    let proc = match process::spawn(spec, &env, None) {
        Ok(p) => p,
        Err(e) => {
            let reason = format!("cannot start: {e}");
            warn!(%session, %reason, "channel refused");
            let _ = write_msg(&mut send, &ChannelReply::refused(reason)).await;
            let _ = send.finish();
            return;
        }
    };
    if write_msg(&mut send, &ChannelReply::Accepted).await.is_err() {
        proc.control.kill();
        return;
    }
    info!(%session, engineer = %grant.engineer, "channel started");
    let process::Process { mut stdin, mut stdout, stderr, control } = proc;
    let stream = u64::from(send.id());
    if let Some(limit) = timeout {
        // A diagnostic script gets no input, and no more time than its configuration says.
        drop(recv.stop(codes::OK));
        let (control, stream_session) = (control.clone(), session.clone());
        tokio::spawn(async move {
            if tokio::time::timeout(limit, control.wait()).await.is_err() {
                warn!(session = %stream_session, secs = limit.as_secs(), "diagnostic script timed out; killed");
                control.kill();
            }
        });
    }
    // Killed at once if the session ended or the grant changed while it started.
    state.grants.add_running(&session, stream, open.open.channel.required_capability(), control.clone());

    let input = tokio::spawn(async move {
        let mut digest = Digest::new(stream, "in");
        while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
            digest.update(&chunk.bytes);
            if stdin.write_all(&chunk.bytes).await.is_err() {
                break;
            }
        }
        drop(stdin);
        digest.finish()
    });
    // A shell's terminal is shown at the machine when the agent runs with --show-sessions.
    let mut shown = match (&state.show, &open.open.channel) {
        (Some(show), ChannelKind::Shell { .. }) => Some(show.channel(&session, grant.engineer.as_str())),
        _ => None,
    };
    let output = tokio::spawn(async move {
        let mut digest = Digest::new(stream, "out");
        let ok = pump(&mut stdout, &mut send, &mut digest, shown.as_mut()).await;
        if let Some(shown) = &mut shown {
            shown.end();
        }
        if ok {
            let _ = send.finish();
        } else {
            let _ = send.reset(codes::SESSION_ENDED);
        }
        // Wait for the peer to have everything before the exit is reported.
        let _ = tokio::time::timeout(DRAIN, send.stopped()).await;
        digest.finish()
    });
    let errors = stderr.map(|mut stderr| {
        let conn = conn.clone();
        let header = ChannelOpen {
            session: session.clone(),
            report_exit: false,
            channel: ChannelKind::StderrOf { stream },
        };
        tokio::spawn(async move {
            let mut uni = conn.open_uni().await.ok()?;
            write_msg(&mut uni, &header).await.ok()?;
            let mut digest = Digest::new(u64::from(uni.id()), "out");
            if pump(&mut stderr, &mut uni, &mut digest, None).await {
                let _ = uni.finish();
                let _ = tokio::time::timeout(DRAIN, uni.stopped()).await;
            }
            Some(digest.finish())
        })
    });

    let status = control.wait().await;
    let mut digests = Vec::new();
    if let Ok(Ok(d)) = tokio::time::timeout(DRAIN * 2, output).await {
        digests.push(d);
    }
    if let Some(e) = errors
        && let Ok(Ok(Some(d))) = tokio::time::timeout(DRAIN * 2, e).await
    {
        digests.push(d);
    }
    // The engineer's side may keep its stream open; what arrived so far is what counts.
    input.abort();
    if let Ok(d) = input.await {
        digests.push(d);
    }
    countersign(&state, &session, digests).await;
    state.grants.remove_running(&session, stream);
    info!(%session, code = ?status.code, signal = ?status.signal, "process exited");
    let _ = state
        .control
        .send(AgentToRelay::ChannelExited {
            session,
            code: status.code,
            signal: status.signal,
            exec,
            stream: Some(stream),
        })
        .await;
}
