//! The approver's page: pending requests, live, and their answers.
//!
//! - `GET /api/v1/requests`: what the signed-in user may answer, most urgent first.
//! - `GET /api/v1/requests/events`: server-sent events. A `requests` event with the whole
//!   list at once and whenever it changes, and likewise a `live` event with the live
//!   sessions (`crate::sessions`). The relay is asked again when the broker announces a
//!   change ([`LiveChanges`]), and every [`REREAD`] as a safety net; a `signed-out`
//!   event, and the end of the stream, once the session is no longer valid (signed out
//!   elsewhere, expired, or the user disabled: checked every [`CHECK`]), so an open page
//!   stops working at once. An open stream counts as activity for the idle timeout (an
//!   approver's open page does not sign out), noted every [`TOUCH_MS`].
//! - `POST /api/v1/requests/{id}/approve {capabilities?, minutes?, note?}` and
//!   `POST /api/v1/requests/{id}/deny {reason}`: passed to the broker as they are; it
//!   decides whether this user may answer, exactly as for `assist approve`/`deny`.

use crate::auth::{current, signed_in};
use crate::error::ApiError;
use crate::state::{ApproveForm, ConsoleState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How often an open stream checks that its sign-in is still valid (a user disabled with
/// `assist-relay user disable` is signed out within this).
pub const CHECK: Duration = Duration::from_secs(2);
/// How often an open stream asks the relay again with no change announced (a safety net:
/// every change the broker makes is announced through [`LiveChanges`]).
pub const REREAD: Duration = Duration::from_secs(10);
/// How often an open stream counts as activity for the idle timeout (the session row is
/// written at most this often, by the relay's clock), in milliseconds.
pub const TOUCH_MS: i64 = 60_000;

type St = State<Arc<dyn ConsoleState>>;

/// What the event stream waits on: the relay bumps the counter whenever pending
/// requests or live sessions may have changed (`Relay::watch_changes`).
pub trait LiveChanges: Send + Sync + 'static {
    fn changes(&self) -> watch::Receiver<u64>;
}

pub async fn list(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    Ok(Json(state.requests(&c.account).await?).into_response())
}

/// An open event stream: what it last sent, and when it last looked.
struct Stream {
    state: Arc<dyn ConsoleState>,
    headers: HeaderMap,
    changes: watch::Receiver<u64>,
    requests: Option<String>,
    live: Option<String>,
    /// Ask the relay before waiting again (a change was announced, or an event was just
    /// sent and the other list may have changed too).
    dirty: bool,
    read_at: Instant,
    done: bool,
}

impl Stream {
    /// The next event to send, waiting for a change when nothing is new.
    async fn next(&mut self) -> Event {
        loop {
            if !self.dirty {
                let wait = tokio::time::sleep(CHECK);
                tokio::select! {
                    r = self.changes.changed() => {
                        if r.is_err() {
                            // The relay is going away: only the timed checks remain.
                            tokio::time::sleep(CHECK).await;
                        }
                        self.dirty = true;
                    }
                    () = wait => {}
                }
                if self.read_at.elapsed() >= REREAD {
                    self.dirty = true;
                }
            }
            let c = match current(&self.state, &self.headers, false).await {
                Ok(c) if c.session.stage == crate::state::Stage::Full => c,
                _ => {
                    self.done = true;
                    return Event::default().event("signed-out").data("{}");
                }
            };
            if self.state.now_ms() - c.session.last_seen >= TOUCH_MS {
                // Ignored on failure: the next check tries again, and signs out if need be.
                let _ = self.state.touch_session(&c.cookie).await;
            }
            if !self.dirty {
                continue;
            }
            // Marked seen before reading, so a change made while reading wakes the next wait.
            self.changes.borrow_and_update();
            self.read_at = Instant::now();
            let requests = self.state.requests(&c.account).await.map(|l| serde_json::to_string(&l));
            let live = self.state.live(&c.account).await.map(|l| serde_json::to_string(&l));
            // One event per step: the requests first, then the live sessions at once.
            if let Ok(Ok(data)) = requests
                && self.requests.as_deref() != Some(data.as_str())
            {
                self.requests = Some(data.clone());
                return Event::default().event("requests").data(data);
            }
            if let Ok(Ok(data)) = live
                && self.live.as_deref() != Some(data.as_str())
            {
                self.live = Some(data.clone());
                return Event::default().event("live").data(data);
            }
            self.dirty = false;
        }
    }
}

pub async fn events(
    State(state): St,
    headers: HeaderMap,
) -> Result<Sse<impl futures_util::stream::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    signed_in(&state, &headers).await?;
    let now = Instant::now();
    let stream = Stream {
        changes: state.changes(),
        state,
        headers,
        requests: None,
        live: None,
        dirty: true,
        read_at: now,
        done: false,
    };
    let stream = futures_util::stream::unfold(stream, |mut s| async move {
        if s.done {
            return None;
        }
        let ev = s.next().await;
        // After an event the other list may have changed too: look again at once.
        s.dirty = true;
        Some((Ok(ev), s))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

pub async fn approve(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(form): Json<ApproveForm>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    let message = state.approve(&c.account, &id, form).await?;
    Ok(Json(json!({ "message": message })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyForm {
    reason: String,
}

pub async fn deny(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(form): Json<DenyForm>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    if form.reason.trim().is_empty() {
        return Err(ApiError::BadRequest("say why you deny the request: the engineer sees it".into()));
    }
    let message = state.deny(&c.account, &id, form.reason.trim()).await?;
    Ok(Json(json!({ "message": message })).into_response())
}
