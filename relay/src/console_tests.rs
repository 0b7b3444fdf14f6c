//! The console's routes, driven with `oneshot` requests (no socket) against a real relay
//! state: a data directory in a temporary directory, its SQLite store, the broker.

use super::*;
use crate::admin;
use crate::audit::AuditFilter;
use crate::broker::BrokerConfig;
use crate::datadir::DataDir;

use assist_console::ConsoleState;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use tower::ServiceExt;

const HOST: &str = "console.test:8443";
const ORIGIN: &str = "https://console.test:8443";

struct World {
    _dir: tempfile::TempDir,
    state: Arc<RelayConsole>,
    store: Arc<dyn crate::store::Store>,
}

async fn world(throttle: crate::broker::throttle::ThrottleConfig) -> World {
    world_with(|_| BrokerConfig { login_throttle: throttle, ..BrokerConfig::default() }).await
}

/// A world whose relay keeps its recordings in `recordings/` of its data directory.
async fn world_recording() -> World {
    world_with(|data| BrokerConfig {
        recordings: Some(Arc::new(crate::recording::LocalDir::new(data.join("recordings")))),
        ..BrokerConfig::default()
    })
    .await
}

/// A world whose broker is configured by `cfg`, given the data directory.
async fn world_with(cfg: impl FnOnce(&std::path::Path) -> BrokerConfig) -> World {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = DataDir::init_or_open(&dir.path().join("data"), &[]).await.unwrap();
    let store = data.store().await.unwrap();
    let now = crate::now_ms();
    admin::org_add(store.as_ref(), "vendor", &[], "test", now).await.unwrap();
    admin::org_add(store.as_ref(), "acme", &["vendor".into()], "test", now).await.unwrap();
    for (name, org, role) in [
        ("alice", "vendor", Role::Engineer),
        ("bob", "acme", Role::Approver),
        ("carol", "acme", Role::Auditor),
    ] {
        admin::user_add(store.as_ref(), name, org, role, &format!("pw-{name}-123"), "test", now)
            .await
            .unwrap();
    }
    let cfg = cfg(&dir.path().join("data"));
    let relay = Arc::new(Relay::new(
        store.clone(),
        data.token_keys().unwrap(),
        data.grant_key().unwrap(),
        data.ca().unwrap(),
        cfg,
    ));
    let state = RelayConsole::new(relay, data.store().await.unwrap(), ConsoleAuthConfig::default());
    World { _dir: dir, state, store }
}

impl World {
    async fn send(&self, req: Request<Body>) -> Response<Body> {
        let app = assist_console::app(self.state.clone());
        app.oneshot(req).await.unwrap()
    }

    /// A POST as the console's own page sends it.
    fn post(path: &str, cookie: Option<&str>, body: Value) -> Request<Body> {
        let mut b = Request::post(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN)
            .header("sec-fetch-site", "same-origin")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("__Host-assist={c}"));
        }
        let mut req = b.body(Body::from(body.to_string())).unwrap();
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 7], 40000))));
        req
    }

    fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
        let mut b = Request::get(path).header(header::HOST, HOST);
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("__Host-assist={c}"));
        }
        b.body(Body::empty()).unwrap()
    }

    /// Signs in with a password; returns the answer and the new cookie value.
    async fn password(&self, user: &str, password: &str) -> (StatusCode, Value, Option<String>) {
        let res =
            self.send(Self::post("/api/v1/login", None, json!({ "user": user, "password": password }))).await;
        split(res).await
    }

    async fn signed_in(&self, user: &str) -> String {
        let (status, body, cookie) = self.password(user, &format!("pw-{user}-123")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        cookie.unwrap()
    }

    async fn actions(&self) -> Vec<String> {
        let events = self.store.list_audit(&AuditFilter::default()).await.unwrap();
        events.into_iter().map(|e| e.action).collect()
    }
}

async fn split(res: Response<Body>) -> (StatusCode, Value, Option<String>) {
    let status = res.status();
    let cookie = res.headers().get(header::SET_COOKIE).map(|v| v.to_str().unwrap().to_owned());
    let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let cookie = cookie.and_then(|c| {
        let v = c.strip_prefix("__Host-assist=")?.split(';').next()?.to_owned();
        (!v.is_empty()).then_some(v)
    });
    (status, value, cookie)
}

fn code_at(secret_b32: &str, secs: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).unwrap();
    totp_for(secret.as_ref()).unwrap().generate(secs).to_string()
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let w = world(Default::default()).await;
    for path in ["/", "/app.js", "/style.css", "/api/v1/health", "/api/v1/me", "/nope"] {
        let res = w.send(World::get(path, None)).await;
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}");
        // No inline script, ever; inline styles only for the terminal's own <style> elements.
        let script = csp.split(';').find(|d| d.trim().starts_with("script-src")).unwrap();
        assert!(!script.contains("unsafe-inline") && !script.contains("'unsafe-eval'"), "{path}");
        assert!(h["strict-transport-security"].to_str().unwrap().starts_with("max-age="), "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    let res = w.send(World::get("/", None)).await;
    let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
    let html = String::from_utf8(body.to_vec()).unwrap();
    assert!(html.contains(r#"<script type="module" src="/app.js"></script>"#));
    assert_eq!(html.matches("<script").count(), 1, "one script tag, with a src, nothing inline");
    assert!(!html.contains("style="), "no inline styles");
}

#[tokio::test]
async fn a_password_sign_in_sets_a_strict_host_cookie_naming_a_hashed_row() {
    let w = world(Default::default()).await;
    let res = w
        .send(World::post("/api/v1/login", None, json!({ "user": "alice", "password": "pw-alice-123" })))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let set = res.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.split("; ").any(|f| f == flag), "{flag} missing in {set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    let (_, body, cookie) = split(res).await;
    assert_eq!(body["stage"], "full", "engineers need no second factor by default");
    let cookie = cookie.unwrap();
    assert_eq!(w.store.console_session(&cookie).await.unwrap(), None, "the row is keyed by the hash only");
    let (status, me, _) = split(w.send(World::get("/api/v1/me", Some(&cookie))).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((me["user"].as_str(), me["role"].as_str()), (Some("alice"), Some("engineer")));
    assert!(w.actions().await.iter().any(|a| a == "console.signed_in"));
}

#[tokio::test]
async fn wrong_user_and_wrong_password_get_one_message_and_forged_cookies_are_refused() {
    let w = world(Default::default()).await;
    let (s1, b1, c1) = w.password("alice", "wrong-password").await;
    let (s2, b2, c2) = w.password("nobody", "pw-alice-123").await;
    assert_eq!((s1, s2), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(b1, b2);
    assert!(c1.is_none() && c2.is_none());
    for forged in ["0".repeat(64), "zz".into(), "a".repeat(64)] {
        let res = w.send(World::get("/api/v1/me", Some(&forged))).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{forged}");
    }
}

#[tokio::test]
async fn idle_and_expired_sessions_are_refused_and_ended() {
    let w = world(Default::default()).await;
    let cookie = w.signed_in("alice").await;
    w.state.advance_clock(29 * 60 * 1000);
    assert_eq!(w.send(World::get("/api/v1/me", Some(&cookie))).await.status(), StatusCode::OK);
    w.state.advance_clock(31 * 60 * 1000);
    let (status, body, _) = split(w.send(World::get("/api/v1/me", Some(&cookie))).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("without activity"), "{body}");
    // Gone for good, even if the clock went back.
    assert!(w.state.session(&cookie).await.unwrap().is_none());

    let cookie = w.signed_in("alice").await;
    for _ in 0..17 {
        w.state.advance_clock(29 * 60 * 1000);
        if w.send(World::get("/api/v1/me", Some(&cookie))).await.status() != StatusCode::OK {
            break;
        }
    }
    let (status, body, _) = split(w.send(World::get("/api/v1/me", Some(&cookie))).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(w.state.session(&cookie).await.unwrap().is_none(), "{body}");
}

#[tokio::test]
async fn logout_ends_the_row_and_clears_the_cookie() {
    let w = world(Default::default()).await;
    let cookie = w.signed_in("alice").await;
    let res = w.send(World::post("/api/v1/logout", Some(&cookie), json!({}))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(w.send(World::get("/api/v1/me", Some(&cookie))).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cross_site_and_non_json_requests_are_refused_and_change_nothing() {
    let w = world(Default::default()).await;
    let cookie = w.signed_in("alice").await;
    let body = json!({});
    let mut wrong_origin = World::post("/api/v1/logout", Some(&cookie), body.clone());
    wrong_origin.headers_mut().insert(header::ORIGIN, "https://evil.test".parse().unwrap());
    let mut no_origin = World::post("/api/v1/logout", Some(&cookie), body.clone());
    no_origin.headers_mut().remove(header::ORIGIN);
    let mut cross_site = World::post("/api/v1/logout", Some(&cookie), body.clone());
    cross_site.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    let mut form = World::post("/api/v1/logout", Some(&cookie), body.clone());
    form.headers_mut().insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
    let mut plain_http = World::post("/api/v1/logout", Some(&cookie), body.clone());
    plain_http.headers_mut().insert(header::ORIGIN, "http://console.test:8443".parse().unwrap());
    for (what, req) in [
        ("wrong origin", wrong_origin),
        ("no origin", no_origin),
        ("cross-site", cross_site),
        ("form", form),
        ("http", plain_http),
    ] {
        let status = w.send(req).await.status();
        assert!(status == StatusCode::FORBIDDEN || status == StatusCode::BAD_REQUEST, "{what}: {status}");
        assert_eq!(w.send(World::get("/api/v1/me", Some(&cookie))).await.status(), StatusCode::OK, "{what}");
    }
    // A cross-site login attempt is refused before any password is looked at.
    let mut login =
        World::post("/api/v1/login", None, json!({ "user": "alice", "password": "pw-alice-123" }));
    login.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    let before = w.actions().await.len();
    assert_eq!(w.send(login).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(w.actions().await.len(), before);
}

#[tokio::test]
async fn an_approver_enrols_totp_then_signs_in_with_a_code_once() {
    let w = world(Default::default()).await;
    let (status, body, cookie) = w.password("bob", "pw-bob-123").await;
    assert_eq!((status, body["stage"].as_str()), (StatusCode::OK, Some("enrol")), "{body}");
    let cookie = cookie.unwrap();
    // Not signed in yet: the approver's list needs the second factor.
    assert_eq!(
        w.send(World::get("/api/v1/requests", Some(&cookie))).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, e, _) =
        split(w.send(World::post("/api/v1/mfa/enrol", Some(&cookie), json!({}))).await).await;
    assert_eq!(status, StatusCode::OK);
    let secret = e["secret"].as_str().unwrap().to_owned();
    assert!(e["uri"].as_str().unwrap().starts_with("otpauth://totp/assist:bob?secret="));
    let qr = w.send(World::get("/api/v1/mfa/qr.svg", Some(&cookie))).await;
    assert_eq!(qr.headers()[header::CONTENT_TYPE], "image/svg+xml");
    let now = w.state.secs();
    let wrong = format!("{:06}", (code_at(&secret, now).parse::<u32>().unwrap() + 1) % 1_000_000);
    let res = w.send(World::post("/api/v1/mfa/confirm", Some(&cookie), json!({ "code": wrong }))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (status, done, full) = split(
        w.send(World::post("/api/v1/mfa/confirm", Some(&cookie), json!({ "code": code_at(&secret, now) })))
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let codes: Vec<String> =
        done["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
    assert_eq!(codes.len(), 10);
    let full = full.expect("a new session value after the second factor");
    assert_ne!(full, cookie);
    assert_eq!(
        w.send(World::get("/api/v1/me", Some(&cookie))).await.status(),
        StatusCode::UNAUTHORIZED,
        "old value ended"
    );
    assert_eq!(w.send(World::get("/api/v1/requests", Some(&full))).await.status(), StatusCode::OK);

    // Next sign-in: password, then a code; the code used at enrolment is refused (replay).
    let (_, body, pending) = w.password("bob", "pw-bob-123").await;
    assert_eq!(body["stage"], "code");
    let pending = pending.unwrap();
    let res = w
        .send(World::post("/api/v1/login/code", Some(&pending), json!({ "code": code_at(&secret, now) })))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "a code already used is refused");
    w.state.advance_clock(30_000);
    let next = code_at(&secret, w.state.secs());
    let (status, _, signed) =
        split(w.send(World::post("/api/v1/login/code", Some(&pending), json!({ "code": next }))).await).await;
    assert_eq!(status, StatusCode::OK);
    let signed = signed.unwrap();
    assert_eq!(w.send(World::get("/api/v1/requests", Some(&signed))).await.status(), StatusCode::OK);
    // The same code again, on a new sign-in: refused.
    let (_, _, again) = w.password("bob", "pw-bob-123").await;
    let res = w
        .send(World::post("/api/v1/login/code", Some(&again.clone().unwrap()), json!({ "code": next })))
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // A recovery code works once.
    let res = w
        .send(World::post(
            "/api/v1/login/code",
            Some(&again.clone().unwrap()),
            json!({ "code": codes[0].to_uppercase() }),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, _, third) = w.password("bob", "pw-bob-123").await;
    let res =
        w.send(World::post("/api/v1/login/code", Some(&third.unwrap()), json!({ "code": codes[0] }))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let actions = w.actions().await;
    for a in ["mfa.enrolled", "mfa.failed", "mfa.recovery_used", "console.signed_out"] {
        assert!(actions.iter().any(|x| x == a), "{a} not audited: {actions:?}");
    }
}

#[tokio::test]
async fn failed_attempts_are_throttled_per_user() {
    let throttle = crate::broker::throttle::ThrottleConfig {
        user_failures: 2,
        address_failures: 100,
        delay: std::time::Duration::from_secs(60),
        lockout: std::time::Duration::from_secs(600),
    };
    let w = world(throttle).await;
    for _ in 0..2 {
        assert_eq!(w.password("alice", "nope-nope-nope").await.0, StatusCode::UNAUTHORIZED);
    }
    let (status, body, _) = w.password("alice", "pw-alice-123").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("too many attempts"), "{body}");
    assert!(w.actions().await.iter().any(|a| a == "login.throttled"));
}

#[tokio::test]
async fn a_disabled_users_session_is_refused_on_the_next_request() {
    let w = world(Default::default()).await;
    let cookie = w.signed_in("alice").await;
    assert_eq!(w.send(World::get("/api/v1/me", Some(&cookie))).await.status(), StatusCode::OK);
    crate::admin_users::user_disable(w.store.as_ref(), "alice", "admin:test", crate::now_ms()).await.unwrap();
    assert_eq!(w.send(World::get("/api/v1/me", Some(&cookie))).await.status(), StatusCode::UNAUTHORIZED);
    assert!(w.state.session(&cookie).await.unwrap().is_none(), "the row is ended");
    assert_eq!(w.password("alice", "pw-alice-123").await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_request_routes_need_a_full_session_and_refuse_unknown_requests() {
    let w = world(Default::default()).await;
    assert_eq!(w.send(World::get("/api/v1/requests", None)).await.status(), StatusCode::UNAUTHORIZED);
    let cookie = w.signed_in("carol").await;
    let (status, list, _) = split(w.send(World::get("/api/v1/requests", Some(&cookie))).await).await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));
    let res = w.send(World::post("/api/v1/requests/s-000000000000/approve", Some(&cookie), json!({}))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = w
        .send(World::post("/api/v1/requests/s-000000000000/deny", Some(&cookie), json!({ "reason": "no" })))
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = w
        .send(World::post(
            "/api/v1/requests/s-000000000000/deny",
            Some(&cookie),
            json!({ "reason": "\u{202e}x" }),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "the CLI's free-text rules apply");
}

/// The next server-sent event's text from a streaming body.
async fn next_event(body: &mut Body) -> String {
    use http_body_util::BodyExt;
    let mut text = String::new();
    while !text.contains("\n\n") {
        let frame = body.frame().await.expect("the stream goes on").unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    text
}

#[tokio::test]
async fn the_event_stream_sends_the_list_and_signs_out_a_disabled_user() {
    let w = world(Default::default()).await;
    assert_eq!(w.send(World::get("/api/v1/requests/events", None)).await.status(), StatusCode::UNAUTHORIZED);
    let cookie = w.signed_in("carol").await;
    let res = w.send(World::get("/api/v1/requests/events", Some(&cookie))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = res.into_body();
    let first = next_event(&mut body).await;
    assert!(first.contains("event: requests") && first.contains("data: []"), "{first}");
    crate::admin_users::user_disable(w.store.as_ref(), "carol", "admin:test", crate::now_ms()).await.unwrap();
    let next = next_event(&mut body).await;
    assert!(next.contains("event: signed-out"), "{next}");
}

#[tokio::test]
async fn wrong_codes_are_throttled_like_passwords() {
    let throttle = crate::broker::throttle::ThrottleConfig {
        user_failures: 2,
        address_failures: 100,
        delay: std::time::Duration::from_secs(60),
        lockout: std::time::Duration::from_secs(600),
    };
    let w = world(throttle).await;
    let (_, _, cookie) = w.password("bob", "pw-bob-123").await;
    let cookie = cookie.unwrap();
    let (_, e, _) = split(w.send(World::post("/api/v1/mfa/enrol", Some(&cookie), json!({}))).await).await;
    let secret = e["secret"].as_str().unwrap().to_owned();
    let now = w.state.secs();
    let good = code_at(&secret, now);
    let bad = format!("{:06}", (good.parse::<u32>().unwrap() + 500_000) % 1_000_000);
    for _ in 0..2 {
        let res = w.send(World::post("/api/v1/mfa/confirm", Some(&cookie), json!({ "code": bad }))).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right code waits now.
    let res = w.send(World::post("/api/v1/mfa/confirm", Some(&cookie), json!({ "code": good }))).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_live_sessions_routes_need_a_full_session_and_go_to_the_broker() {
    let w = world(Default::default()).await;
    for path in ["/api/v1/sessions/live", "/api/v1/sessions/history"] {
        assert_eq!(w.send(World::get(path, None)).await.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let cookie = w.signed_in("carol").await;
    for path in ["/api/v1/sessions/live", "/api/v1/sessions/history"] {
        let (status, list, _) = split(w.send(World::get(path, Some(&cookie))).await).await;
        assert_eq!((status, list), (StatusCode::OK, json!([])), "{path}");
    }
    let revoke = json!({ "capabilities": ["shell"], "reason": "enough" });
    let res = w.send(World::post("/api/v1/sessions/s-000000000000/revoke", Some(&cookie), revoke)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let end = json!({ "reason": "enough" });
    let res = w.send(World::post("/api/v1/sessions/s-000000000000/end", Some(&cookie), end)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The broker audits the attempts as it does the CLI's.
    let actions = w.actions().await;
    assert!(actions.iter().any(|a| a == "access.refused"), "{actions:?}");
    let res = w
        .send(World::post("/api/v1/sessions/s-000000000000/end", Some(&cookie), json!({ "reason": " " })))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "a reason is required");
    let res = w
        .send(World::post(
            "/api/v1/sessions/s-000000000000/revoke",
            Some(&cookie),
            json!({ "capabilities": ["shell"], "reason": "\u{202e}x" }),
        ))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "the CLI's free-text rules apply");
    // Cross-site attempts never reach the broker.
    let mut req = World::post("/api/v1/sessions/s-000000000000/end", Some(&cookie), json!({ "reason": "x" }));
    req.headers_mut().insert(header::ORIGIN, "https://evil.test".parse().unwrap());
    assert_eq!(w.send(req).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_event_stream_also_sends_the_live_sessions() {
    let w = world(Default::default()).await;
    let cookie = w.signed_in("carol").await;
    let res = w.send(World::get("/api/v1/requests/events", Some(&cookie))).await;
    let mut body = res.into_body();
    let first = next_event(&mut body).await;
    assert!(first.contains("event: requests"), "{first}");
    let second = next_event(&mut body).await;
    assert!(second.contains("event: live") && second.contains("data: []"), "{second}");
}

/// A finished session of alice (vendor) on an acme agent, stored with its request event
/// and a grant revision as the broker writes them.
async fn stored_session(w: &World, id: &str, agent: &str, ticket: &str, requested_at: i64) {
    use assist_proto::caps::Priority;
    let info = SessionInfo {
        id: SessionId::new(id),
        engineer: UserName::new("alice"),
        engineer_org: OrgName::new("vendor"),
        agent: agent.into(),
        agent_org: OrgName::new("acme"),
        ticket: ticket.into(),
        priority: Priority::P2,
        reason: "disk".into(),
        capabilities: vec![Capability::Shell],
        state: SessionState::Closed,
        approver: Some("bob".into()),
        requested_at,
        consent_deadline: requested_at + 60_000,
        decided_at: Some(requested_at + 1000),
        started_at: Some(requested_at + 2000),
        ended_at: Some(requested_at + 3000),
        end_reason: Some("finished".into()),
        duration_secs: 600,
        granted: Some(vec![Capability::Shell]),
        grant_expires_at: Some(requested_at + 601_000),
        escalation: None,
    };
    let requested = crate::audit::AuditEvent::new("alice", crate::audit::Action::SessionRequested)
        .org(&info.agent_org)
        .target(agent)
        .session(&info.id);
    w.store.insert_session(&info, &requested).await.unwrap();
    let approved = crate::audit::AuditEvent::new("bob", crate::audit::Action::SessionApproved)
        .org(&info.agent_org)
        .target(agent)
        .session(&info.id)
        .detail(json!({ "granted": [{ "kind": "shell" }], "grant_expires_at": requested_at + 601_000,
                        "grant_revision": 1, "note": "go ahead" }));
    w.store.append_audit(&approved, requested_at + 1000).await.unwrap();
}

#[tokio::test]
async fn auditors_see_their_organisations_sessions_filtered_and_paged_and_others_get_404() {
    let w = world(Default::default()).await;
    let now = crate::now_ms();
    admin::org_add(w.store.as_ref(), "other", &[], "test", now).await.unwrap();
    admin::user_add(w.store.as_ref(), "olga", "other", Role::Auditor, "pw-olga-123", "test", now)
        .await
        .unwrap();
    admin::user_add(w.store.as_ref(), "vera", "vendor", Role::Auditor, "pw-vera-123", "test", now)
        .await
        .unwrap();
    for i in 0..30 {
        let agent = if i % 2 == 0 { "erp-db01" } else { "erp-db02" };
        stored_session(&w, &format!("s-{i:012}"), agent, &format!("INC-{i}"), now - 100_000 + i).await;
    }
    let list = async |who: &str, query: &str| {
        let cookie = w.signed_in(who).await;
        let (status, v, _) =
            split(w.send(World::get(&format!("/api/v1/audit/sessions{query}"), Some(&cookie))).await).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    };
    // The customer's auditor and the vendor's auditor (its engineer's sessions) see all 30.
    for who in ["carol", "vera"] {
        let v = list(who, "").await;
        assert_eq!((v["total"].as_u64(), v["pages"].as_u64()), (Some(30), Some(2)), "{who}: {v}");
        assert_eq!(v["sessions"].as_array().unwrap().len(), 25);
        assert_eq!(v["sessions"][0]["id"], "s-000000000029", "newest first");
    }
    let v = list("carol", "?page=2").await;
    assert_eq!(v["sessions"].as_array().unwrap().len(), 5);
    let v = list("carol", "?agent=erp-db02&ticket=inc-2").await;
    let ids: Vec<&str> =
        v["sessions"].as_array().unwrap().iter().map(|s| s["ticket"].as_str().unwrap()).collect();
    assert_eq!(ids, ["INC-29", "INC-27", "INC-25", "INC-23", "INC-21"], "{v}");
    let v =
        list("carol", &format!("?since={}&until={}&state=closed", now - 100_000 + 10, now - 100_000 + 12))
            .await;
    assert_eq!(v["total"], 2, "{v}");
    let v = list("carol", "?state=active").await;
    assert_eq!(v["total"], 0);
    // Another organisation's auditor sees none, and one of them is a 404 like a missing one.
    let v = list("olga", "").await;
    assert_eq!(v["total"], 0, "{v}");
    let olga = w.signed_in("olga").await;
    let res = w.send(World::get("/api/v1/audit/sessions/s-000000000003", Some(&olga))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = w.send(World::get("/api/v1/audit/sessions/s-999999999999", Some(&olga))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let carol = w.signed_in("carol").await;
    let res = w.send(World::get("/api/v1/audit/sessions?color=red", Some(&carol))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "unknown filters are refused");
    assert_eq!(w.send(World::get("/api/v1/audit/sessions", None)).await.status(), StatusCode::UNAUTHORIZED);

    // The session page: the timeline, the grant revision with its note.
    let (status, d, _) =
        split(w.send(World::get("/api/v1/audit/sessions/s-000000000003", Some(&carol))).await).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["session"]["ticket"], "INC-3");
    assert_eq!(d["session"]["note"], "go ahead");
    let actions: Vec<&str> =
        d["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["session.requested", "session.approved"]);
    assert_eq!(d["grants"][0]["revision"], 1);
    assert_eq!(d["grants"][0]["granted"], json!(["shell"]));
    assert_eq!(d["grants"][0]["by"], "bob");
    assert_eq!(d["recording"]["result"], "off", "this relay records nothing: {d}");

    // The evidence bundle: a tar of the README, the public keys and the audit events.
    let res = w.send(World::get("/api/v1/audit/sessions/s-000000000003/bundle", Some(&olga))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = w.send(World::get("/api/v1/audit/sessions/s-000000000003/bundle", Some(&carol))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/x-tar");
    assert_eq!(
        res.headers()[header::CONTENT_DISPOSITION],
        "attachment; filename=\"evidence-s-000000000003.tar\""
    );
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 24).await.unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        files.insert(path, text);
    }
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["s-000000000003/README.txt", "s-000000000003/audit.jsonl", "s-000000000003/keys.json"],
        "no recording is stored here, so none is packed"
    );
    assert!(files["s-000000000003/README.txt"].contains("No recording was stored"));
    let keys: crate::recording::cli::PublicKeys =
        serde_json::from_str(&files["s-000000000003/keys.json"]).unwrap();
    assert_eq!(keys.key_bytes().unwrap(), w.state.relay.grant_public_key());
    let lines: Vec<Value> =
        files["s-000000000003/audit.jsonl"].lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["action"], "session.approved");
    assert_eq!(lines[1]["detail"]["note"], "go ahead");

    // The replay's asciicast: nothing recorded here, and nothing for another organisation.
    for who in [&olga, &carol] {
        let res = w.send(World::get("/api/v1/audit/sessions/s-000000000003/asciicast", Some(who))).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
}

#[path = "console_auditlog_tests.rs"]
mod auditlog;

#[path = "console_replay_tests.rs"]
mod replay;

/// A WebSocket upgrade as a page sends it, from `origin`.
fn upgrade(path: &str, cookie: Option<&str>, origin: &str) -> Request<Body> {
    let mut b = Request::get(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, origin)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, format!("__Host-assist={c}"));
    }
    b.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_shell_and_watch_sockets_check_origin_and_sign_in_before_anything() {
    let w = world(Default::default()).await;
    let alice = w.signed_in("alice").await;
    for path in ["/api/v1/shell", "/api/v1/sessions/s-000000000000/watch"] {
        let res = w.send(upgrade(path, None, ORIGIN)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{path}");
        let res = w.send(upgrade(path, Some(&alice), "https://evil.test")).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
        let mut cross = upgrade(path, Some(&alice), ORIGIN);
        cross.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert_eq!(w.send(cross).await.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // Only engineers open shells, and nobody watches what they may not see.
    let bob = w.state.account("bob").await.unwrap().unwrap();
    let refused = w.state.open_shell(&bob, "127.0.0.1".parse().unwrap()).await.err();
    assert!(matches!(refused, Some(ApiError::Forbidden(_))), "{refused:?}");
    let alice_account = w.state.account("alice").await.unwrap().unwrap();
    let refused = w.state.watch(&alice_account, "s-000000000000").await.err();
    assert!(matches!(refused, Some(ApiError::NotFound(_))), "{refused:?}");
    assert!(w.actions().await.iter().any(|a| a == "access.refused"));
}

#[tokio::test]
async fn the_desktop_replay_socket_checks_origin_and_sign_in_and_scopes_like_the_session_page() {
    let w = world(Default::default()).await;
    let now = crate::now_ms();
    admin::org_add(w.store.as_ref(), "other", &[], "test", now).await.unwrap();
    admin::user_add(w.store.as_ref(), "olga", "other", Role::Auditor, "pw-olga-123", "test", now)
        .await
        .unwrap();
    stored_session(&w, "s-000000000001", "erp-db01", "INC-1", now - 10_000).await;
    let path = "/api/v1/audit/sessions/s-000000000001/channels/1/desktop";
    let carol = w.signed_in("carol").await;
    assert_eq!(w.send(upgrade(path, None, ORIGIN)).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        w.send(upgrade(path, Some(&carol), "https://evil.test")).await.status(),
        StatusCode::FORBIDDEN
    );
    // Past the upgrade (which needs a real connection), the relay's side: another
    // organisation's auditor is told what a missing session would tell them.
    use assist_console::auditlog::AuditState;
    let olga = w.state.account("olga").await.unwrap().unwrap();
    let refused = w.state.desktop_replay(&olga, "s-000000000001", 1).await.err();
    assert_eq!(refused, Some(ApiError::NotFound("no session s-000000000001".into())));
    // Carol may see it; this relay records nothing, so there is nothing to replay.
    let carol = w.state.account("carol").await.unwrap().unwrap();
    let none = w.state.desktop_replay(&carol, "s-000000000001", 1).await.err();
    assert!(matches!(&none, Some(ApiError::NotFound(m)) if m.contains("no recording is stored")), "{none:?}");
    assert!(!w.actions().await.iter().any(|a| a == "recording.exported"), "nothing was replayed");
}

#[tokio::test]
async fn the_engineers_page_routes_need_a_session() {
    let w = world(Default::default()).await;
    for path in ["/api/v1/mine", "/api/v1/agents"] {
        assert_eq!(w.send(World::get(path, None)).await.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let alice = w.signed_in("alice").await;
    let (status, mine, _) = split(w.send(World::get("/api/v1/mine", Some(&alice))).await).await;
    assert_eq!((status, mine), (StatusCode::OK, json!([])));
    let (status, agents, _) = split(w.send(World::get("/api/v1/agents", Some(&alice))).await).await;
    assert_eq!((status, agents), (StatusCode::OK, json!([])));
}
