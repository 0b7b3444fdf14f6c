//! The replay of a recorded desktop channel on the session page, as a WebSocket on the
//! console's origin.
//!
//! - `GET /api/v1/audit/sessions/{id}/channels/{n}/desktop` (upgrade): `Origin` and the
//!   session cookie checked at the upgrade, as for the live desktop. The relay answers
//!   with events as text (`{"type": "replay", duration_ms, markers, grants, verdict}` first,
//!   then `seek`, `state`, `position` and `end`) and the recorded desktop messages, one
//!   per binary message, paced. The page sends `{"type": "play"}`, `{"type": "pause"}`,
//!   `{"type": "seek", "ms": N}` and `{"type": "speed", "speed": X}` as text; a binary
//!   message (input) has nowhere to go and is answered with a refusal.
//!
//! A session the user may not see is a 404 like a missing one, before any upgrade. This
//! module only carries messages: the relay decides who may replay, reads the recording,
//! audits the replay and paces it, behind [`crate::auditlog::AuditState::desktop_replay`].
//! The socket closes within [`RECHECK`] of the console session ending.

use crate::auth::{current, signed_in};
use crate::error::ApiError;
use crate::guard::check_upgrade_origin;
use crate::shell::RECHECK;
use crate::state::{ConsoleState, Down, ReplayControl};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Largest message a replay page sends (a control is a few bytes).
const MAX_MESSAGE: usize = 4 * 1024;

type St = State<Arc<dyn ConsoleState>>;

pub async fn desktop(
    State(state): St,
    headers: HeaderMap,
    Path((id, channel)): Path<(String, u32)>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    check_upgrade_origin(&headers)?;
    let c = signed_in(&state, &headers).await?;
    let ws = ws.map_err(|_| {
        ApiError::BadRequest("this address takes a WebSocket from the console's own page".into())
    })?;
    let link = state.desktop_replay(&c.account, &id, channel).await?;
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| pump(socket, link.up, link.down, state, headers)))
}

fn event(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

/// Carries controls up and the replay down until either side is done.
async fn pump(
    mut socket: WebSocket,
    up: mpsc::Sender<ReplayControl>,
    mut down: mpsc::Receiver<Down>,
    state: Arc<dyn ConsoleState>,
    headers: HeaderMap,
) {
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let reply = match msg {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ReplayControl>(t.as_str()) {
                        Ok(control) => {
                            if up.send(control).await.is_err() {
                                break;
                            }
                            continue;
                        }
                        Err(e) => json!({ "type": "error", "message": format!("the page sent something the relay does not understand: {e}") }),
                    },
                    Some(Ok(Message::Binary(_))) => json!({ "type": "refused", "message": "a replay is read-only: input goes nowhere" }),
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => continue,
                };
                if socket.send(event(reply)).await.is_err() {
                    break;
                }
            }
            d = down.recv() => {
                let msg = match d {
                    Some(Down::Event(v)) => event(v),
                    Some(Down::Output(b)) => Message::Binary(b),
                    None => break,
                };
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
            _ = recheck.tick() => {
                if current(&state, &headers, false).await.is_err() {
                    let _ = socket.send(event(json!({ "type": "signed-out", "message": "your console session has ended; sign in again" }))).await;
                    break;
                }
            }
        }
    }
    drop(up);
    let _ = socket.send(Message::Close(None)).await;
}
