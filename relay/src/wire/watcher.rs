//! A watcher in the console: the session's current screen, then its output as it
//! happens, then why it ended (`broker::watching`). Nothing goes the other way: a
//! [`WatchLink`] has no way up, so what a watcher types reaches nothing.

use super::browser::{DOWN_QUEUE, event};
use crate::broker::policy::Principal;
use crate::broker::{Relay, Watching};
use assist_console::{Down, WatchLink};
use assist_proto::ids::SessionId;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::Instrument;

/// A watcher's view of live session `id`: the current screen, then the output as it
/// happens, then the end. There is no way up: the console drops what a watcher sends.
pub(crate) async fn open_watch(
    relay: Arc<Relay>,
    who: Principal,
    id: SessionId,
) -> Result<WatchLink, crate::broker::Refusal> {
    let watching = relay.watch(&who, &id).await?;
    let (down_tx, down_rx) = mpsc::channel(DOWN_QUEUE);
    let span = tracing::info_span!("watcher", user = %who.user, session = %id);
    tokio::spawn(watch_run(relay, who, watching, down_tx).instrument(span));
    Ok(WatchLink { down: down_rx })
}

async fn watch_run(relay: Arc<Relay>, who: Principal, mut w: Watching, down: mpsc::Sender<Down>) {
    let info = &w.info;
    let ev = json!({
        "type": "watching", "session": info.id, "engineer": info.engineer, "engineer_org": info.engineer_org,
        "agent": info.agent, "ticket": info.ticket,
        "granted": info.granted.iter().flatten().map(ToString::to_string).collect::<Vec<_>>(),
        "expires_at": info.grant_expires_at,
    });
    if down.send(event(ev)).await.is_err() {
        return;
    }
    for chunk in std::mem::take(&mut w.screen) {
        if down.send(Down::Output(chunk)).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            chunk = w.live.recv() => match chunk {
                Ok(chunk) => {
                    if down.send(Down::Output(chunk)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Fell behind: drawn afresh from the current screen, nothing half-shown.
                    for chunk in w.catch_up() {
                        if down.send(Down::Output(chunk)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = async { let _ = w.ended.wait_for(|e| *e).await; } => break,
            // The page went away.
            _ = down.closed() => return,
        }
    }
    // The session ended: what is left of its output first, then why.
    while let Ok(chunk) = w.live.try_recv() {
        let _ = down.send(Down::Output(chunk)).await;
    }
    let reason = match relay.session_for(&who, &w.info.id).await {
        Ok(s) => s.end_reason.unwrap_or_else(|| "the session ended".into()),
        Err(_) => "the session ended".into(),
    };
    let _ = down.send(event(json!({ "type": "ended", "message": reason }))).await;
}
