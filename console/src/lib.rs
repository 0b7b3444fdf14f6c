//! The relay's HTTP side: a JSON API under `/api/v1`.
//!
//! Today it serves only `GET /api/v1/health` (liveness for load balancers and monitoring);
//! the web console (approvals, live view, replay, audit) grows here. It talks to relay
//! state only through [`ConsoleState`], so it is tested without a relay, and it never
//! decides policy itself.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;

/// What the console needs from the relay.
pub trait ConsoleState: Send + Sync + 'static {
    /// Agents connected now.
    fn online_agents(&self) -> usize;
    /// Sessions not yet over (requested, approved or active).
    fn live_sessions(&self) -> usize;
}

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

/// The console's routes.
pub fn app(state: Arc<dyn ConsoleState>) -> Router {
    Router::new().route("/api/v1/health", get(health)).with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    struct Fixed;
    impl ConsoleState for Fixed {
        fn online_agents(&self) -> usize {
            3
        }
        fn live_sessions(&self) -> usize {
            1
        }
    }

    #[tokio::test]
    async fn health_reports_relay_state() {
        let res = app(Arc::new(Fixed))
            .oneshot(Request::get("/api/v1/health").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["online_agents"], 3);
        assert_eq!(v["live_sessions"], 1);
    }

    #[tokio::test]
    async fn unknown_paths_are_404() {
        let res =
            app(Arc::new(Fixed)).oneshot(Request::get("/nope").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}
