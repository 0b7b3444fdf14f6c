//! `assist watch SESSION`: an approver of the agent's organisation (or an admin) watches a
//! live session's terminal, read-only: the relay sends the current screen, then the output
//! as it happens, and finishes the stream when the session ends. Nothing typed here is
//! sent: the watch has no input, and the relay stops that direction anyway. The engineer
//! is told who is watching. In a cluster, the watch goes to the relay holding the session
//! (its screen is there), once.

use super::config::ConfigDir;
use super::shell::{Local, copy_out};
use super::{Authed, EngineerError, connect};
use assist_net::{read_msg, write_msg};
use assist_proto::ids::SessionId;
use assist_proto::msg::{ChannelKind, ChannelOpen, ChannelReply, HeldBy};
use quinn::RecvStream;

/// Watches until the session ends; returns a sentence for the end.
pub async fn run(cfg: &ConfigDir, session: SessionId) -> Result<String, EngineerError> {
    let mut a = connect(cfg).await?;
    let mut recv = match open_watch(&a, &session).await? {
        Ok(recv) => recv,
        // Another relay of the cluster holds the session (and its screen): watched there,
        // once; a second relay sending it on again is an error.
        Err(held) => {
            a = a.go_to_holder(&session, &held).await?;
            open_watch(&a, &session).await?.map_err(|again| {
                EngineerError::Refused(format!(
                    "session {session}: relay {} sent this on to relay {} in turn; not following a second time",
                    held.relay, again.relay
                ))
            })?
        }
    };
    copy_out(&mut recv, Local::Stdout).await;
    a.rc.close().await;
    Ok(format!("session {session} ended"))
}

/// Opens the watch on `a`: its stream, or the relay of the cluster that holds the session.
async fn open_watch(a: &Authed, session: &SessionId) -> Result<Result<RecvStream, HeldBy>, EngineerError> {
    let (mut send, mut recv) =
        a.rc.conn.open_bi().await.map_err(|e| EngineerError::Refused(e.to_string()))?;
    let open = ChannelOpen { session: session.clone(), report_exit: false, channel: ChannelKind::Watch };
    write_msg(&mut send, &open).await.map_err(|e| EngineerError::Refused(e.to_string()))?;
    match read_msg::<ChannelReply, _>(&mut recv).await {
        Ok(Some(ChannelReply::Accepted)) => {}
        Ok(Some(ChannelReply::Refused { held_by: Some(held), .. })) => return Ok(Err(held)),
        Ok(Some(ChannelReply::Refused { reason, .. })) => return Err(EngineerError::Refused(reason)),
        _ => return Err(EngineerError::Refused("the relay closed the watch".into())),
    }
    // Nothing goes up: the watcher's side is finished at once.
    let _ = send.finish();
    Ok(Ok(recv))
}
