//! The approver's page: pending requests, live, and their answers.
//!
//! - `GET /api/v1/requests`: what the signed-in user may answer, most urgent first.
//! - `GET /api/v1/requests/events`: server-sent events. A `requests` event with the whole
//!   list at once and whenever it changes, and likewise a `live` event with the live
//!   sessions (`crate::sessions`) (the relay is asked every [`POLL`]); a
//!   `signed-out` event, and the end of the stream, once the session is no longer valid
//!   (signed out elsewhere, idle, expired, or the user disabled), so an open page stops
//!   working at once. The stream does not count as activity for the idle timeout.
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
use futures_util::stream::Stream;
use serde::Deserialize;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often an open page's list is compared with the broker's.
pub const POLL: Duration = Duration::from_millis(500);

type St = State<Arc<dyn ConsoleState>>;

pub async fn list(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    Ok(Json(state.requests(&c.account).await?).into_response())
}

/// What an event stream last sent.
#[derive(Default)]
struct Last {
    requests: Option<String>,
    live: Option<String>,
    /// Everything is up to date: wait [`POLL`] before looking again.
    settled: bool,
}

pub async fn events(
    State(state): St,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    signed_in(&state, &headers).await?;
    let stream = futures_util::stream::unfold(
        (state, headers, Last::default(), false),
        |(state, headers, mut last, done)| async move {
            if done {
                return None;
            }
            loop {
                if last.settled {
                    tokio::time::sleep(POLL).await;
                }
                let c = match current(&state, &headers, false).await {
                    Ok(c) if c.session.stage == crate::state::Stage::Full => c,
                    _ => {
                        let ev = Event::default().event("signed-out").data("{}");
                        return Some((Ok(ev), (state, headers, last, true)));
                    }
                };
                let requests = state.requests(&c.account).await.map(|l| serde_json::to_string(&l));
                let live = state.live(&c.account).await.map(|l| serde_json::to_string(&l));
                // One event per step: the requests first, then the live sessions at once.
                let mut changed = None;
                if let Ok(Ok(data)) = requests
                    && last.requests.as_deref() != Some(data.as_str())
                {
                    last.requests = Some(data.clone());
                    changed = Some(("requests", data));
                } else if let Ok(Ok(data)) = live
                    && last.live.as_deref() != Some(data.as_str())
                {
                    last.live = Some(data.clone());
                    changed = Some(("live", data));
                }
                if let Some((name, data)) = changed {
                    last.settled = false;
                    return Some((
                        Ok(Event::default().event(name).data(data)),
                        (state, headers, last, false),
                    ));
                }
                last.settled = true;
            }
        },
    );
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
