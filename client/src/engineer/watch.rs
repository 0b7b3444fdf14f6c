//! `assist watch SESSION`: an approver of the agent's organisation (or an admin) watches a
//! live session's terminal, read-only: the relay sends the current screen, then the output
//! as it happens, and finishes the stream when the session ends. Nothing typed here is
//! sent: the watch has no input, and the relay stops that direction anyway. The engineer
//! is told who is watching.

use super::config::ConfigDir;
use super::shell::{Local, copy_out};
use super::{EngineerError, connect};
use assist_net::{read_msg, write_msg};
use assist_proto::ids::SessionId;
use assist_proto::msg::{ChannelKind, ChannelOpen, ChannelReply};

/// Watches until the session ends; returns a sentence for the end.
pub async fn run(cfg: &ConfigDir, session: SessionId) -> Result<String, EngineerError> {
    let mut a = connect(cfg).await?;
    let (mut send, mut recv) =
        a.rc.conn.open_bi().await.map_err(|e| EngineerError::Refused(e.to_string()))?;
    let open = ChannelOpen { session: session.clone(), report_exit: false, channel: ChannelKind::Watch };
    write_msg(&mut send, &open).await.map_err(|e| EngineerError::Refused(e.to_string()))?;
    match read_msg::<ChannelReply, _>(&mut recv).await {
        Ok(Some(ChannelReply::Accepted)) => {}
        Ok(Some(ChannelReply::Refused { reason })) => return Err(EngineerError::Refused(reason)),
        _ => return Err(EngineerError::Refused("the relay closed the watch".into())),
    }
    // Nothing goes up: the watcher's side is finished at once.
    let _ = send.finish();
    copy_out(&mut recv, Local::Stdout).await;
    let _ = a.control.send.finish();
    a.rc.close().await;
    Ok(format!("session {session} ended"))
}
