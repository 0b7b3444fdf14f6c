//! The auditor's pages: sessions with filters and paging, and one session.
//!
//! - `GET /api/v1/audit/sessions?org&agent&engineer&ticket&priority&state&end_reason&since&until&page`: the
//!   sessions the user may see (the relay scopes them as `assist sessions`: their
//!   organisation's, or for a vendor the sessions of its engineers), newest first,
//!   filtered here ([`Filter`]) and cut into pages of [`PAGE`].
//! - `GET /api/v1/audit/sessions/{id}`: its audit timeline, every grant revision, file
//!   transfers with both digests, and the recording's verification by the relay's own
//!   verifier. A session the user may not see is a 404, the same as one that does not
//!   exist.
//! - `GET /api/v1/audit/sessions/{id}/asciicast`: the terminal output as asciicast v2,
//!   with the recording's markers, for the page's player.
//! - `GET /api/v1/audit/sessions/{id}/bundle`: the evidence bundle, a tar archive to
//!   verify offline (its README says how), as a download.
//!
//! Read-only: nothing here changes state.

use crate::auth::signed_in;
use crate::error::ApiError;
use crate::state::{ConsoleState, SessionView};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Sessions on a page.
pub const PAGE: usize = 25;

type St = State<Arc<dyn ConsoleState>>;

/// What the sessions list is narrowed to; every field is optional. Text fields match
/// exactly (agent, engineer, priority, state; `org` either the agent's or the engineer's
/// organisation) or as a case-insensitive substring (ticket, end reason); times are Unix
/// milliseconds on the session's request time, `since` inclusive, `until` not.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub org: Option<String>,
    pub agent: Option<String>,
    pub engineer: Option<String>,
    pub ticket: Option<String>,
    pub state: Option<String>,
    /// `P0` to `P3`, any case.
    pub priority: Option<String>,
    pub end_reason: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// From 1.
    pub page: Option<usize>,
}

impl Filter {
    fn set(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    pub fn matches(&self, s: &SessionView) -> bool {
        let contains = |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        Self::set(&self.org).is_none_or(|o| s.agent_org == o || s.engineer_org == o)
            && Self::set(&self.agent).is_none_or(|a| s.agent == a)
            && Self::set(&self.engineer).is_none_or(|e| s.engineer == e)
            && Self::set(&self.state).is_none_or(|st| s.state == st)
            && Self::set(&self.priority).is_none_or(|p| s.priority.eq_ignore_ascii_case(p))
            && Self::set(&self.ticket).is_none_or(|t| contains(&s.ticket, t))
            && Self::set(&self.end_reason)
                .is_none_or(|r| s.end_reason.as_deref().is_some_and(|e| contains(e, r)))
            && self.since.is_none_or(|t| s.requested_at >= t)
            && self.until.is_none_or(|t| s.requested_at < t)
    }
}

/// One page of the filtered sessions.
#[derive(Debug, Serialize)]
pub struct SessionsPage {
    pub sessions: Vec<SessionView>,
    pub page: usize,
    pub pages: usize,
    pub total: usize,
}

/// Filters `all` and returns page `filter.page` (the last page if it is past the end).
pub fn page_of(all: Vec<SessionView>, filter: &Filter) -> SessionsPage {
    let matching: Vec<SessionView> = all.into_iter().filter(|s| filter.matches(s)).collect();
    let total = matching.len();
    let pages = total.div_ceil(PAGE).max(1);
    let page = filter.page.unwrap_or(1).clamp(1, pages);
    let sessions = matching.into_iter().skip((page - 1) * PAGE).take(PAGE).collect();
    SessionsPage { sessions, page, pages, total }
}

pub async fn sessions(
    State(state): St,
    headers: HeaderMap,
    Query(filter): Query<Filter>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    let all = state.sessions(&c.account).await?;
    Ok(Json(page_of(all, &filter)).into_response())
}

pub async fn session(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    Ok(Json(state.session_detail(&c.account, &id).await?).into_response())
}

pub async fn bundle(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    let bytes = state.evidence_bundle(&c.account, &id).await?;
    // The id went through the relay's lookup; only its safe characters reach the header.
    let name: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    let disposition = format!("attachment; filename=\"evidence-{name}.tar\"");
    Ok((
        [(header::CONTENT_TYPE, "application/x-tar".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        bytes,
    )
        .into_response())
}

pub async fn asciicast(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let c = signed_in(&state, &headers).await?;
    let cast = state.asciicast(&c.account, &id).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-asciicast")], cast).into_response())
}
