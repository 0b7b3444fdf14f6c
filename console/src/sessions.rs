//! The approver's live sessions and history of decisions.
//!
//! - `GET /api/v1/sessions/live`: granted sessions the signed-in user may narrow and end
//!   (approvers and admins of the agent's organisation), with what is granted until when.
//!   The same list is pushed as `live` events on `/api/v1/requests/events`.
//! - `POST /api/v1/sessions/{id}/revoke {capabilities, reason?}`: takes capabilities away,
//!   exactly as `assist revoke` does.
//! - `POST /api/v1/sessions/{id}/end {reason}`: ends the session, exactly as `assist end`.
//! - `GET /api/v1/sessions/history`: decided requests the user may see (scoped like
//!   `assist sessions`), newest first, with who decided and their note.
//!
//! The broker decides who may do what and audits it; nothing here checks roles.

use crate::auth::signed_in;
use crate::error::ApiError;
use crate::state::ConsoleState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

type St = State<Arc<dyn ConsoleState>>;

pub async fn live(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    Ok(Json(state.live(&c.account).await?).into_response())
}

pub async fn history(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    Ok(Json(state.history(&c.account).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeForm {
    capabilities: Vec<String>,
    reason: Option<String>,
}

pub async fn revoke(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(form): Json<RevokeForm>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    let reason = form.reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty());
    let message = state.revoke(&c.account, &id, form.capabilities, reason).await?;
    Ok(Json(json!({ "message": message })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndForm {
    reason: String,
}

pub async fn end(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(form): Json<EndForm>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    if form.reason.trim().is_empty() {
        return Err(ApiError::BadRequest("say why you end the session: the engineer sees it".into()));
    }
    let message = state.end(&c.account, &id, form.reason.trim()).await?;
    Ok(Json(json!({ "message": message })).into_response())
}
