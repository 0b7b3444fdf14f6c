//! The relay's web console: a JSON API under `/api/v1` and the embedded front end
//! ([`assets`]), every response with strict security headers ([`headers`]).
//!
//! `GET /api/v1/health` is liveness for load balancers and monitoring ([`health_app`] is
//! that route alone, for a plain-HTTP listener). The console talks to relay state only
//! through [`ConsoleState`] and never decides policy itself: the relay's broker does.
//! It does not listen or speak TLS: the relay serves [`app`] on its HTTPS listener.

pub mod admin;
pub mod admin_state;
pub mod assets;
pub mod auditlog;
pub mod auth;
pub mod error;
pub mod files;
pub mod guard;
pub mod headers;
pub mod mine;
pub mod replay;
pub mod requests;
pub mod review;
pub mod sessions;
pub mod shell;
pub mod state;

pub use admin_state::{AdminAction, AdminList, AdminState, WebhookForm, WindowForm};
pub use error::ApiError;
pub use state::{
    Account, AgentView, ApproveForm, AuthConfig, ConsoleState, DesktopRequest, Down, Enrolment, EventView,
    GrantRevision, RecordingCheck, ReplayControl, ReplayLink, RequestView, SessionDetail, SessionView,
    ShellLink, ShellRequest, ShellUp, Stage, TransferView, WatchLink, WebSession,
};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
    pub online_agents: usize,
    pub live_sessions: usize,
}

async fn health(State(state): State<Arc<dyn ConsoleState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        online_agents: state.online_agents(),
        live_sessions: state.live_sessions(),
    })
}

/// `/api/v1/health` alone (the relay's optional plain-HTTP listener).
pub fn health_app(state: Arc<dyn ConsoleState>) -> Router {
    Router::new().route("/api/v1/health", get(health)).with_state(state)
}

/// The console's routes: the API, the front end, and the security headers on all of them.
pub fn app(state: Arc<dyn ConsoleState>) -> Router {
    let mut router = Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/login", post(auth::login))
        .route("/api/v1/login/code", post(auth::login_code))
        .route("/api/v1/logout", post(auth::logout))
        .route("/api/v1/me", get(auth::me))
        .route("/api/v1/mfa/enrol", post(auth::enrol))
        .route("/api/v1/mfa/qr.svg", get(auth::qr))
        .route("/api/v1/mfa/confirm", post(auth::confirm))
        .route("/api/v1/requests", get(requests::list))
        .route("/api/v1/requests/events", get(requests::events))
        .route("/api/v1/requests/{id}/approve", post(requests::approve))
        .route("/api/v1/requests/{id}/deny", post(requests::deny))
        .route("/api/v1/sessions/live", get(sessions::live))
        .route("/api/v1/sessions/history", get(sessions::history))
        .route("/api/v1/sessions/{id}/revoke", post(sessions::revoke))
        .route("/api/v1/sessions/{id}/end", post(sessions::end))
        .route("/api/v1/mine", get(mine::sessions))
        .route("/api/v1/agents", get(mine::agents))
        .route("/api/v1/shell", get(shell::shell))
        .route("/api/v1/desktop", get(shell::shell))
        .route("/api/v1/sessions/{id}/watch", get(shell::watch))
        .route("/api/v1/sessions/{id}/files", get(files::list))
        .route("/api/v1/sessions/{id}/files/download", get(files::download))
        .route("/api/v1/sessions/{id}/files/upload", post(files::upload))
        .route("/api/v1/sessions/{id}/files/transfers", get(files::transfers))
        .route("/api/v1/audit/sessions", get(review::sessions))
        .route("/api/v1/audit/sessions/{id}", get(review::session))
        .route("/api/v1/audit/sessions/{id}/bundle", get(review::bundle))
        .route("/api/v1/audit/sessions/{id}/asciicast", get(review::asciicast))
        .route("/api/v1/audit/sessions/{id}/channels", get(auditlog::channels))
        .route("/api/v1/audit/sessions/{id}/channels/{channel}/desktop", get(replay::desktop))
        .route("/api/v1/audit/sessions/{id}/channels/{channel}/{direction}", get(auditlog::raw))
        .route("/api/v1/audit/log", get(auditlog::log))
        .route("/api/v1/audit/log/verify", get(auditlog::verify));
    router = admin::routes(router);
    for path in assets::paths() {
        router = router.route(path, get(move || async move { assets::serve(path) }));
    }
    router
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .with_state(state)
        .layer(axum::middleware::from_fn(guard::same_origin))
        .layer(axum::middleware::from_fn(headers::secure))
}
