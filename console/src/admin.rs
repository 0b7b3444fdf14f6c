//! The admin pages' routes (role `admin`): organisations and who supports whom, users,
//! agents, join tokens, maintenance windows and webhooks.
//!
//! - `GET /api/v1/admin/orgs` (and `users`, `agents`, `tokens`, `windows`, `webhooks`): a list.
//! - `POST /api/v1/admin/orgs {name, supported_by}`,
//!   `POST /api/v1/admin/orgs/{org}/support {vendor, on}`.
//! - `POST /api/v1/admin/users {name, org, role}` (answers the initial password, once),
//!   `POST /api/v1/admin/users/{name}/{role|password|disable|enable|remove}`.
//! - `POST /api/v1/admin/agents/{name}/revoke`.
//! - `POST /api/v1/admin/tokens {org, minutes}` (answers the token, once).
//! - `POST /api/v1/admin/windows {...}`, `POST /api/v1/admin/windows/{id}/remove`.
//! - `POST /api/v1/admin/webhooks {...}` (answers the secret, once),
//!   `POST /api/v1/admin/webhooks/{id}/remove`.
//!
//! Every route needs a full sign-in; bodies are JSON (`{}` where nothing is asked), checked
//! by `guard` like every change. Who may do what is decided by the relay
//! ([`crate::admin_state`]); nothing here checks roles.

use crate::admin_state::{AdminAction, AdminList, WebhookForm, WindowForm};
use crate::auth::signed_in;
use crate::error::ApiError;
use crate::state::ConsoleState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;

type St = State<Arc<dyn ConsoleState>>;

pub async fn list(
    state: &Arc<dyn ConsoleState>,
    headers: &HeaderMap,
    what: AdminList,
) -> Result<Response, ApiError> {
    let c = signed_in(state, headers).await?;
    Ok(Json(state.admin_list(&c.account, what).await?).into_response())
}

async fn run(
    state: &Arc<dyn ConsoleState>,
    headers: &HeaderMap,
    action: AdminAction,
) -> Result<Response, ApiError> {
    let c = signed_in(state, headers).await?;
    Ok(Json(state.admin_do(&c.account, action).await?).into_response())
}

/// An empty body: the action needs nothing more than its path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgForm {
    name: String,
    #[serde(default)]
    supported_by: Vec<String>,
}

pub async fn org_add(
    State(state): St,
    headers: HeaderMap,
    Json(f): Json<OrgForm>,
) -> Result<Response, ApiError> {
    run(
        &state,
        &headers,
        AdminAction::OrgAdd { name: f.name.trim().to_owned(), supported_by: f.supported_by },
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportForm {
    vendor: String,
    on: bool,
}

pub async fn support(
    State(state): St,
    headers: HeaderMap,
    Path(customer): Path<String>,
    Json(f): Json<SupportForm>,
) -> Result<Response, ApiError> {
    run(&state, &headers, AdminAction::Support { customer, vendor: f.vendor.trim().to_owned(), on: f.on })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserForm {
    name: String,
    org: String,
    role: String,
}

pub async fn user_add(
    State(state): St,
    headers: HeaderMap,
    Json(f): Json<UserForm>,
) -> Result<Response, ApiError> {
    let action = AdminAction::UserAdd { name: f.name.trim().to_owned(), org: f.org, role: f.role };
    run(&state, &headers, action).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleForm {
    role: String,
}

pub async fn user_role(
    State(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(f): Json<RoleForm>,
) -> Result<Response, ApiError> {
    run(&state, &headers, AdminAction::UserRole { name, role: f.role }).await
}

pub async fn user_step(
    State(state): St,
    headers: HeaderMap,
    Path((name, step)): Path<(String, String)>,
    Json(_): Json<Nothing>,
) -> Result<Response, ApiError> {
    let action = match step.as_str() {
        "password" => AdminAction::UserResetPassword { name },
        "disable" => AdminAction::UserDisable { name },
        "enable" => AdminAction::UserEnable { name },
        "remove" => AdminAction::UserRemove { name },
        _ => return Err(ApiError::NotFound("no such action".into())),
    };
    run(&state, &headers, action).await
}

pub async fn agent_revoke(
    State(state): St,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(_): Json<Nothing>,
) -> Result<Response, ApiError> {
    run(&state, &headers, AdminAction::AgentRevoke { name }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenForm {
    org: String,
    minutes: u64,
}

pub async fn token_create(
    State(state): St,
    headers: HeaderMap,
    Json(f): Json<TokenForm>,
) -> Result<Response, ApiError> {
    run(&state, &headers, AdminAction::TokenCreate { org: f.org, minutes: f.minutes }).await
}

pub async fn window_add(
    State(state): St,
    headers: HeaderMap,
    Json(f): Json<WindowForm>,
) -> Result<Response, ApiError> {
    run(&state, &headers, AdminAction::WindowAdd(f)).await
}

pub async fn window_remove(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(_): Json<Nothing>,
) -> Result<Response, ApiError> {
    run(&state, &headers, AdminAction::WindowRemove { id }).await
}

pub async fn webhook_add(
    State(state): St,
    headers: HeaderMap,
    Json(f): Json<WebhookForm>,
) -> Result<Response, ApiError> {
    run(&state, &headers, AdminAction::WebhookAdd(f)).await
}

pub async fn webhook_remove(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(_): Json<Nothing>,
) -> Result<Response, ApiError> {
    run(&state, &headers, AdminAction::WebhookRemove { id }).await
}

/// The admin routes, added to the console's router by [`crate::app`].
pub fn routes(router: axum::Router<Arc<dyn ConsoleState>>) -> axum::Router<Arc<dyn ConsoleState>> {
    use axum::routing::{get, post};
    let lister = |what: AdminList| {
        get(move |State(state): St, headers: HeaderMap| async move { list(&state, &headers, what).await })
    };
    router
        .route("/api/v1/admin/orgs", lister(AdminList::Orgs).post(org_add))
        .route("/api/v1/admin/orgs/{org}/support", post(support))
        .route("/api/v1/admin/users", lister(AdminList::Users).post(user_add))
        .route("/api/v1/admin/users/{name}/role", post(user_role))
        .route("/api/v1/admin/users/{name}/{step}", post(user_step))
        .route("/api/v1/admin/agents", lister(AdminList::Agents))
        .route("/api/v1/admin/agents/{name}/revoke", post(agent_revoke))
        .route("/api/v1/admin/tokens", lister(AdminList::Tokens).post(token_create))
        .route("/api/v1/admin/windows", lister(AdminList::Windows).post(window_add))
        .route("/api/v1/admin/windows/{id}/remove", post(window_remove))
        .route("/api/v1/admin/webhooks", lister(AdminList::Webhooks).post(webhook_add))
        .route("/api/v1/admin/webhooks/{id}/remove", post(webhook_remove))
}
