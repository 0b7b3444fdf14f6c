//! The WebSockets of the engineer's shell and of a watcher, on the console's origin.
//!
//! - `GET /api/v1/shell` (upgrade): an engineer's shell. The page sends the request as
//!   text (`{"type":"request", agent, ticket, priority, reason, capabilities, minutes,
//!   cols, rows}`), then `{"type":"resize", cols, rows}` as the window changes, and its
//!   keystrokes as binary messages. The relay answers with events as text (waiting for
//!   whom, approved, denied, the grant changing, the shell closing and why, who watches)
//!   and the terminal's output as binary messages. `{"type":"leave"}` ends the session
//!   at once; the socket closing without it (the tab closed, the network lost) ends its
//!   shell channel, and the session waits for a while for a new page to pick it up by
//!   sending `{"type":"reattach", session, cols, rows}` instead of a request.
//! - `GET /api/v1/desktop` (upgrade): an engineer's desktop, on the same link: the page
//!   sends `{"type":"desktop", agent, ticket, priority, reason, control, minutes}`, then
//!   desktop messages (`proto::desktop`: input, keyframe requests, clipboard text) as
//!   binary messages; the relay answers with the same events, `clipboard` events, and one
//!   binary message per desktop message (stream info, frames, cursor, the customer's
//!   clipboard text). The relay checks each message's header, drops input unless control
//!   is granted, and carries clipboard text only on a clipboard channel (`clipboard`
//!   granted).
//! - `GET /api/v1/sessions/{id}/watch` (upgrade): a read-only view of a live session for
//!   approvers of its agent's organisation and admins: the current screen, then the
//!   output as it happens. Anything the watcher sends is refused and goes nowhere. A
//!   session that cannot be watched here now (another relay of a cluster holds it, or it
//!   is not live yet) gets one `{"type":"unavailable", message}` and the socket closes.
//!
//! Both upgrades check `Origin` (the console's own, as for every state-changing request)
//! and the session cookie; an open socket closes within [`RECHECK`] of the console session
//! ending (signed out, idle, the user disabled). This module only carries messages: the
//! relay decides everything behind [`ConsoleState::open_shell`] and
//! [`ConsoleState::watch`].

use crate::auth::{current, signed_in};
use crate::error::ApiError;
use crate::guard::Source;
use crate::guard::check_upgrade_origin;
use crate::state::{ConsoleState, DesktopRequest, Down, ShellRequest, ShellUp};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often an open socket checks that its console session is still valid.
pub const RECHECK: Duration = Duration::from_secs(1);
/// Largest message a page may send: a paste into a terminal, or a desktop's clipboard text
/// (at most 64 KiB and its 8-byte header), with room to spare so that an oversized desktop
/// message reaches the relay's check of its header (which closes only the clipboard's
/// channel) rather than closing the whole socket.
const MAX_MESSAGE: usize = 96 * 1024;

type St = State<Arc<dyn ConsoleState>>;

/// What a page sends as text.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum UpText {
    Request(ShellRequest),
    Reattach { session: String, cols: u16, rows: u16 },
    Desktop(DesktopRequest),
    Resize { cols: u16, rows: u16 },
    Leave {},
}

pub async fn shell(
    State(state): St,
    Source(source): Source,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Origin and sign-in first, whatever else the request lacks.
    check_upgrade_origin(&headers)?;
    let c = signed_in(&state, &headers).await?;
    let ws = ws.map_err(not_a_socket)?;
    let link = state.open_shell(&c.account, source).await?;
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| pump(socket, Some(link.up), link.down, state, headers)))
}

pub async fn watch(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    check_upgrade_origin(&headers)?;
    let c = signed_in(&state, &headers).await?;
    let ws = ws.map_err(not_a_socket)?;
    let link = match state.watch(&c.account, &id).await {
        Ok(link) => link,
        // Not to be watched here now (another relay of a cluster holds it, or it is not
        // live yet): said on the socket, the one place a page can read why.
        Err(ApiError::Conflict(message)) => return Ok(ws.on_upgrade(move |s| unavailable(s, message))),
        Err(e) => return Err(e),
    };
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| pump(socket, None, link.down, state, headers)))
}

/// Tells a watcher's page why there is nothing to watch, and closes.
async fn unavailable(mut socket: WebSocket, message: String) {
    let _ = socket.send(event(json!({ "type": "unavailable", "message": message }))).await;
    let _ = socket.send(Message::Close(None)).await;
}

fn not_a_socket(_: WebSocketUpgradeRejection) -> ApiError {
    ApiError::BadRequest("this address takes a WebSocket from the console's own page".into())
}

fn event(v: serde_json::Value) -> Message {
    Message::Text(v.to_string().into())
}

/// Carries messages between the socket and the relay until either side is done. `up` is
/// `None` for a watcher: whatever it sends is answered with a refusal and dropped.
///
/// The two directions never wait for each other: while the relay takes no more input (a
/// shell not reading), the socket is not read (backpressure to the page), but output keeps
/// flowing to it, so a paste into a busy program cannot stall its output.
async fn pump(
    mut socket: WebSocket,
    up: Option<mpsc::Sender<ShellUp>>,
    mut down: mpsc::Receiver<Down>,
    state: Arc<dyn ConsoleState>,
    headers: HeaderMap,
) {
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.tick().await;
    let refused = || {
        event(json!({ "type": "refused", "message": "watching is read-only: what you type goes nowhere" }))
    };
    // A message the relay had no room for yet.
    let mut held: Option<ShellUp> = None;
    loop {
        tokio::select! {
            permit = async { up.as_ref().expect("held only with a way up").reserve().await }, if held.is_some() => {
                match permit {
                    Ok(permit) => permit.send(held.take().expect("held")),
                    Err(_) => break,
                }
            }
            msg = socket.recv(), if held.is_none() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    _ => break,
                };
                let Some(up) = &up else {
                    if matches!(msg, Message::Binary(_) | Message::Text(_)) && socket.send(refused()).await.is_err() {
                        break;
                    }
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                    continue;
                };
                let next = match msg {
                    Message::Binary(b) => ShellUp::Input(b),
                    Message::Text(t) => match serde_json::from_str::<UpText>(t.as_str()) {
                        Ok(UpText::Request(r)) => ShellUp::Request(r),
                        Ok(UpText::Desktop(r)) => ShellUp::Desktop(r),
                        Ok(UpText::Resize { cols, rows }) => ShellUp::Resize { cols, rows },
                        Ok(UpText::Reattach { session, cols, rows }) => ShellUp::Reattach { session, cols, rows },
                        Ok(UpText::Leave {}) => ShellUp::Leave,
                        Err(e) => {
                            let bad = json!({ "type": "error", "message": format!("the page sent something the relay does not understand: {e}") });
                            if socket.send(event(bad)).await.is_err() {
                                break;
                            }
                            continue;
                        }
                    },
                    Message::Close(_) => break,
                    _ => continue,
                };
                match up.try_send(next) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(next)) => held = Some(next),
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
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
                    // Signed out: the engineer is gone for good, not just their page.
                    if let Some(up) = &up {
                        let _ = up.try_send(ShellUp::Leave);
                    }
                    let _ = socket.send(event(json!({ "type": "signed-out", "message": "your console session has ended; sign in again" }))).await;
                    break;
                }
            }
        }
    }
    // The page's side is gone or the relay is done: dropping `up` tells the relay.
    drop(up);
    let _ = socket.send(Message::Close(None)).await;
}
