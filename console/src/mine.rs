//! The engineer's own page.
//!
//! - `GET /api/v1/mine`: the signed-in user's own sessions and requests, newest first,
//!   each with where it stands (waiting for whom and until when, approved or denied with
//!   the note, live with its grant, ended and why).
//! - `GET /api/v1/agents`: the agents the user may reach, for the shell form.
//!
//! Read-only: requesting a shell goes over the shell's WebSocket (`crate::shell`).

use crate::auth::signed_in;
use crate::error::ApiError;
use crate::state::ConsoleState;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

type St = State<Arc<dyn ConsoleState>>;

pub async fn sessions(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    Ok(Json(state.my_sessions(&c.account).await?).into_response())
}

pub async fn agents(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    Ok(Json(state.agents(&c.account).await?).into_response())
}
