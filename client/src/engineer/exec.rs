//! `assist exec AGENT NAME`: runs one of the agent's allowlisted diagnostic scripts in a
//! session of its own (capability `exec:NAME`; the session ends with the script), or in
//! a live session whose grant covers `exec:NAME` (`--session S`; the session goes on),
//! streams its output (stdout to stdout, stderr to stderr) and returns its exit code. The
//! engineer sends only the name: the program and its arguments come from the agent's
//! configuration.

use super::EngineerError;
use super::config::ConfigDir;
use super::session::{self, SessionChoice};
use super::shell::{Local, copy_out};
use assist_net::read_msg;
use assist_proto::caps::Capability;
use assist_proto::ids::AgentName;
use assist_proto::msg::{ChannelKind, ChannelOpen, RelayToEngineer};
use assist_proto::session::EndReason;
use std::time::Duration;

/// Runs the script; returns its exit code (or ours when it could not run).
pub async fn run(
    cfg: &ConfigDir,
    agent: &AgentName,
    name: &str,
    choice: SessionChoice,
) -> Result<i32, EngineerError> {
    let cap = Capability::Exec { scripts: vec![name.to_owned()] };
    let mut live = session::open(cfg, agent, choice, vec![cap]).await?;
    let (send, mut recv) = live.channel(ChannelKind::Exec { name: name.to_owned() }).await?;
    drop(send);
    let mut stdout = tokio::spawn(async move { copy_out(&mut recv, Local::Stdout).await });
    let conn = live.conn.clone();
    // The agent sends the script's stderr on one stream of its own, which may reach us
    // after the exit is reported (they travel apart): it is copied to its end, and waited
    // for like stdout, so that no line of it is lost.
    let mut stderr = tokio::spawn(async move {
        while let Ok(mut uni) = conn.accept_uni().await {
            if matches!(
                read_msg::<ChannelOpen, _>(&mut uni).await,
                Ok(Some(ChannelOpen { channel: ChannelKind::Stderr, .. }))
            ) {
                copy_out(&mut uni, Local::Stderr).await;
                return;
            }
        }
    });
    let mut events = live.events.take().expect("an open session has events");
    let mut stdout_done = false;
    let reason = loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Ok(RelayToEngineer::SessionEnded { reason })) => break reason,
                // In a session that goes on, only this script's end is ours.
                Some(Ok(RelayToEngineer::ScriptExited { name: n, code, signal, .. })) if n == name => {
                    break EndReason::ScriptExited { name: n, code, signal };
                }
                Some(Ok(RelayToEngineer::Error { message, .. })) => break EndReason::Failed { message },
                Some(Ok(_)) => {}
                Some(Err(message)) => break EndReason::Failed { message },
                None => break EndReason::Failed { message: "relay connection lost".into() },
            },
            _ = &mut stdout, if !stdout_done => stdout_done = true,
        }
    };
    // A script that ran has a stderr stream; one refused or cut short may not.
    let ran = matches!(reason, EndReason::ScriptExited { .. });
    let drained = async {
        if !stdout_done {
            let _ = (&mut stdout).await;
        }
        if ran {
            let _ = (&mut stderr).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(3), drained).await;
    stderr.abort();
    if !matches!(reason, EndReason::ScriptExited { code: Some(_), .. }) {
        eprintln!("assist: {name} on {agent}: {}", assist_proto::text::line(&reason.to_string()));
    }
    let code = reason.exit_code();
    live.close().await;
    Ok(code)
}
