//! The admin routes, driven with `oneshot` requests against a real relay state (data
//! directory, SQLite store, broker): roles and organisations, the same audit events as the
//! CLI, CSRF, and bad input changing nothing.

use super::*;
use crate::audit::AuditFilter;
use crate::broker::{BrokerConfig, Relay};
use crate::console_state::{ConsoleAuthConfig, RelayConsole};
use crate::datadir::DataDir;
use crate::store::AgentRow;
use assist_console::ConsoleState;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

const HOST: &str = "console.test:8443";
const ORIGIN: &str = "https://console.test:8443";

struct World {
    _dir: tempfile::TempDir,
    state: Arc<RelayConsole>,
    store: Arc<dyn crate::store::Store>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = DataDir::init_or_open(&dir.path().join("data"), &[]).await.unwrap();
    let store = data.store().await.unwrap();
    let now = crate::now_ms();
    admin::org_add(store.as_ref(), "vendor", &[], "test", now).await.unwrap();
    admin::org_add(store.as_ref(), "acme", &["vendor".into()], "test", now).await.unwrap();
    for (name, org, role) in [
        ("root", OPERATOR_ORG, Role::Admin),
        ("ann", "acme", Role::Admin),
        ("bob", "acme", Role::Approver),
        ("alice", "vendor", Role::Engineer),
        ("vera", "vendor", Role::Admin),
    ] {
        admin::user_add(store.as_ref(), name, org, role, &format!("pw-{name}-123"), "test", now)
            .await
            .unwrap();
    }
    let relay = Arc::new(Relay::new(
        store.clone(),
        data.token_keys().unwrap(),
        data.grant_key().unwrap(),
        data.ca().unwrap(),
        BrokerConfig::default(),
    ));
    // Second factors are tested with the sign-in routes; here they would only add steps.
    let auth = ConsoleAuthConfig { require_mfa: vec![], ..ConsoleAuthConfig::default() };
    let state = RelayConsole::new(relay, data.store().await.unwrap(), auth);
    World { _dir: dir, state, store }
}

fn post(path: &str, cookie: &str, body: Value) -> Request<Body> {
    let mut req = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, ORIGIN)
        .header("sec-fetch-site", "same-origin")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, format!("__Host-assist={cookie}"))
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 7], 40000))));
    req
}

fn get(path: &str, cookie: &str) -> Request<Body> {
    Request::get(path)
        .header(header::HOST, HOST)
        .header(header::COOKIE, format!("__Host-assist={cookie}"))
        .body(Body::empty())
        .unwrap()
}

impl World {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let res = assist_console::app(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn sign_in(&self, user: &str, password: &str) -> Option<String> {
        let mut req = Request::post("/api/v1/login")
            .header(header::HOST, HOST)
            .header(header::ORIGIN, ORIGIN)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({ "user": user, "password": password }).to_string()))
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 8], 40000))));
        let res = assist_console::app(self.state.clone()).oneshot(req).await.unwrap();
        if res.status() != StatusCode::OK {
            return None;
        }
        let c = res.headers().get(header::SET_COOKIE)?.to_str().ok()?;
        Some(c.strip_prefix("__Host-assist=")?.split(';').next()?.to_owned())
    }

    async fn cookie(&self, user: &str) -> String {
        self.sign_in(user, &format!("pw-{user}-123")).await.expect("signs in")
    }

    /// (actor, action, target) of every audit event.
    async fn audit(&self) -> Vec<(String, String, Option<String>)> {
        let events = self.store.list_audit(&AuditFilter::default()).await.unwrap();
        events.into_iter().map(|e| (e.actor, e.action, e.target)).collect()
    }

    async fn last_audit(&self) -> (String, String, Option<String>) {
        self.audit().await.pop().unwrap()
    }
}

fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array().unwrap().iter().map(|v| v[key].as_str().unwrap().to_owned()).collect()
}

const LISTS: [&str; 6] = ["orgs", "users", "agents", "tokens", "windows", "webhooks"];

#[tokio::test]
async fn only_admins_reach_the_admin_routes() {
    let w = world().await;
    for what in LISTS {
        let path = format!("/api/v1/admin/{what}");
        assert_eq!(w.send(get(&path, "0".repeat(64).as_str())).await.0, StatusCode::UNAUTHORIZED, "{path}");
    }
    for user in ["bob", "alice"] {
        let cookie = w.cookie(user).await;
        for what in LISTS {
            let (status, body) = w.send(get(&format!("/api/v1/admin/{what}"), &cookie)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{user} {what}");
            assert_eq!(body["error"], "only administrators may use the admin pages");
        }
        let before = w.audit().await.len();
        let add = json!({ "name": "mallory", "org": "acme", "role": "admin" });
        assert_eq!(w.send(post("/api/v1/admin/users", &cookie, add)).await.0, StatusCode::FORBIDDEN);
        let res = w.send(post("/api/v1/admin/users/bob/disable", &cookie, json!({}))).await;
        assert_eq!(res.0, StatusCode::FORBIDDEN);
        assert_eq!(w.audit().await.len(), before, "nothing changed");
    }
    assert!(w.store.user(&"mallory".into()).await.unwrap().is_none());
}

#[tokio::test]
async fn an_operator_admin_manages_users_through_the_clis_functions() {
    let w = world().await;
    let root = w.cookie("root").await;
    let (status, users) = w.send(get("/api/v1/admin/users", &root)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&users, "name"), ["ann", "bob", "admin", "root", "alice", "vera"]);

    // Added with a password shown once, which signs in; audited as the CLI's, by root.
    let add = json!({ "name": "dora", "org": "acme", "role": "approver" });
    let (status, added) = w.send(post("/api/v1/admin/users", &root, add)).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    let password = added["password"].as_str().unwrap().to_owned();
    assert_eq!(w.last_audit().await, ("root".into(), "user.added".into(), Some("dora".into())));
    assert!(
        !w.store
            .list_audit(&AuditFilter::default())
            .await
            .unwrap()
            .iter()
            .any(|e| e.detail.contains(&password))
    );
    let dora = w.sign_in("dora", &password).await.expect("the initial password signs in");
    assert_eq!(w.send(get("/api/v1/me", &dora)).await.0, StatusCode::OK);

    // A new role ends her sessions at once.
    let (status, body) =
        w.send(post("/api/v1/admin/users/dora/role", &root, json!({ "role": "auditor" }))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(w.last_audit().await.1, "user.role_changed");
    assert_eq!(w.send(get("/api/v1/me", &dora)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(w.store.user(&"dora".into()).await.unwrap().unwrap().role, Role::Auditor);

    // A reset password replaces the old one and ends her sessions.
    let dora = w.sign_in("dora", &password).await.unwrap();
    let (status, reset) = w.send(post("/api/v1/admin/users/dora/password", &root, json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    let new_password = reset["password"].as_str().unwrap();
    assert_eq!(w.send(get("/api/v1/me", &dora)).await.0, StatusCode::UNAUTHORIZED);
    assert!(w.sign_in("dora", &password).await.is_none());
    let dora = w.sign_in("dora", new_password).await.unwrap();

    // Disabled: her open session is refused on its next request, and she cannot sign in.
    let (status, _) = w.send(post("/api/v1/admin/users/dora/disable", &root, json!({}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.last_audit().await, ("root".into(), "user.disabled".into(), Some("dora".into())));
    assert_eq!(w.send(get("/api/v1/me", &dora)).await.0, StatusCode::UNAUTHORIZED);
    assert!(w.sign_in("dora", new_password).await.is_none());
    let (_, users) = w.send(get("/api/v1/admin/users", &root)).await;
    let listed = users.as_array().unwrap().iter().find(|u| u["name"] == "dora").unwrap();
    assert_eq!((listed["disabled"].as_bool(), listed["role"].as_str()), (Some(true), Some("auditor")));

    // Enabled again; then removed.
    assert_eq!(w.send(post("/api/v1/admin/users/dora/enable", &root, json!({}))).await.0, StatusCode::OK);
    assert_eq!(w.last_audit().await.1, "user.enabled");
    assert!(w.sign_in("dora", new_password).await.is_some());
    assert_eq!(w.send(post("/api/v1/admin/users/dora/remove", &root, json!({}))).await.0, StatusCode::OK);
    assert_eq!(w.last_audit().await.1, "user.removed");
    assert!(w.store.user(&"dora".into()).await.unwrap().is_none());

    // Nobody locks themselves out from the page.
    for step in ["disable", "remove"] {
        let (status, body) =
            w.send(post(&format!("/api/v1/admin/users/root/{step}"), &root, json!({}))).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    let (status, _) = w.send(post("/api/v1/admin/users/root/password", &root, json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) =
        w.send(post("/api/v1/admin/users/root/role", &root, json!({ "role": "engineer" }))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(w.send(get("/api/v1/me", &root)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn organisations_and_support_are_the_operators() {
    let w = world().await;
    let root = w.cookie("root").await;
    let (status, _) = w
        .send(post("/api/v1/admin/orgs", &root, json!({ "name": "globex", "supported_by": ["vendor"] })))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(w.last_audit().await, ("root".into(), "org.added".into(), Some("globex".into())));
    let off = json!({ "vendor": "vendor", "on": false });
    assert_eq!(w.send(post("/api/v1/admin/orgs/globex/support", &root, off)).await.0, StatusCode::OK);
    assert_eq!(w.last_audit().await.1, "org.support_removed");
    assert!(w.store.org(&"globex".into()).await.unwrap().unwrap().supported_by.is_empty());
    let on = json!({ "vendor": "acme", "on": true });
    assert_eq!(w.send(post("/api/v1/admin/orgs/globex/support", &root, on)).await.0, StatusCode::OK);
    assert_eq!(w.last_audit().await.1, "org.support_added");

    // An organisation's admin sees their own organisation only, and changes none.
    let ann = w.cookie("ann").await;
    let (_, orgs) = w.send(get("/api/v1/admin/orgs", &ann)).await;
    assert_eq!(names(&orgs, "name"), ["acme"]);
    let before = w.audit().await.len();
    let (status, body) = w.send(post("/api/v1/admin/orgs", &ann, json!({ "name": "evil" }))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let on = json!({ "vendor": "globex", "on": true });
    assert_eq!(w.send(post("/api/v1/admin/orgs/acme/support", &ann, on)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(w.audit().await.len(), before);
}

#[tokio::test]
async fn an_organisations_admin_administers_only_their_organisation() {
    let w = world().await;
    let ann = w.cookie("ann").await;
    let (_, users) = w.send(get("/api/v1/admin/users", &ann)).await;
    assert_eq!(names(&users, "name"), ["ann", "bob"]);
    let before = w.audit().await.len();
    // Another organisation's user is "not found", exactly like one that does not exist.
    for path in ["/api/v1/admin/users/alice/disable", "/api/v1/admin/users/ghost/disable"] {
        let (status, body) = w.send(post(path, &ann, json!({}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body["error"].as_str().unwrap().ends_with("does not exist"), "{body}");
    }
    let (status, _) = w.send(post("/api/v1/admin/users/vera/password", &ann, json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let into_vendor = json!({ "name": "spy", "org": "vendor", "role": "admin" });
    assert_eq!(w.send(post("/api/v1/admin/users", &ann, into_vendor)).await.0, StatusCode::NOT_FOUND);
    let token = json!({ "org": "vendor", "minutes": 60 });
    assert_eq!(w.send(post("/api/v1/admin/tokens", &ann, token)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(w.audit().await.len(), before, "nothing changed");
    // Their own organisation's people they do administer.
    let add = json!({ "name": "cleo", "org": "acme", "role": "approver" });
    assert_eq!(w.send(post("/api/v1/admin/users", &ann, add)).await.0, StatusCode::OK);
    assert_eq!(w.send(post("/api/v1/admin/users/bob/disable", &ann, json!({}))).await.0, StatusCode::OK);
    assert_eq!(w.last_audit().await, ("ann".into(), "user.disabled".into(), Some("bob".into())));
}

#[tokio::test]
async fn cross_site_and_bad_input_change_nothing() {
    let w = world().await;
    let root = w.cookie("root").await;
    let before = w.audit().await.len();
    let add = json!({ "name": "dora", "org": "acme", "role": "approver" });
    let mut req = post("/api/v1/admin/users", &root, add.clone());
    req.headers_mut().insert(header::ORIGIN, "https://evil.test".parse().unwrap());
    assert_eq!(w.send(req).await.0, StatusCode::FORBIDDEN);
    let mut req = post("/api/v1/admin/users", &root, add.clone());
    req.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(w.send(req).await.0, StatusCode::FORBIDDEN);
    let mut req = post("/api/v1/admin/users", &root, add);
    req.headers_mut().insert(header::CONTENT_TYPE, "application/x-www-form-urlencoded".parse().unwrap());
    assert_eq!(w.send(req).await.0, StatusCode::BAD_REQUEST);

    let cases = [
        (
            "/api/v1/admin/users",
            json!({ "name": "dora", "org": "acme", "role": "boss" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/admin/users",
            json!({ "name": "do ra", "org": "acme", "role": "approver" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/admin/users",
            json!({ "name": "dora", "org": "ghost", "role": "approver" }),
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/admin/users",
            json!({ "name": "bob", "org": "acme", "role": "approver" }),
            StatusCode::CONFLICT,
        ),
        ("/api/v1/admin/users/bob/role", json!({ "role": "king" }), StatusCode::BAD_REQUEST),
        ("/api/v1/admin/users/bob/sideways", json!({}), StatusCode::NOT_FOUND),
        ("/api/v1/admin/tokens", json!({ "org": "acme", "minutes": 0 }), StatusCode::BAD_REQUEST),
        ("/api/v1/admin/orgs", json!({ "name": "acme" }), StatusCode::CONFLICT),
        ("/api/v1/admin/orgs/acme/support", json!({ "vendor": "acme", "on": true }), StatusCode::BAD_REQUEST),
        ("/api/v1/admin/agents/ghost/revoke", json!({}), StatusCode::NOT_FOUND),
        ("/api/v1/admin/windows/w-00000000/remove", json!({}), StatusCode::NOT_FOUND),
        ("/api/v1/admin/webhooks/wh-000000000000/remove", json!({}), StatusCode::NOT_FOUND),
        (
            "/api/v1/admin/windows",
            json!({ "org": "acme", "schedule": "every day", "minutes": 60, "capabilities": ["shell"], "engineers": ["alice"] }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/api/v1/admin/windows",
            json!({ "org": "acme", "schedule": "0 22 * * SAT", "minutes": 60, "capabilities": ["root"], "engineers": ["alice"] }),
            StatusCode::BAD_REQUEST,
        ),
        ("/api/v1/admin/webhooks", json!({ "org": "acme", "url": "ftp://x" }), StatusCode::BAD_REQUEST),
        (
            "/api/v1/admin/webhooks",
            json!({ "org": "acme", "url": "https://h.test/", "format": "xml" }),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (path, body, want) in cases {
        let (status, answer) = w.send(post(path, &root, body.clone())).await;
        assert_eq!(status, want, "{path} {body} -> {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: a sentence for people");
    }
    // Unknown fields are refused too (axum's JSON rejection).
    let (status, _) = w.send(post("/api/v1/admin/users/bob/disable", &root, json!({ "force": true }))).await;
    assert!(status.is_client_error());
    assert_eq!(w.audit().await.len(), before, "nothing changed");
    assert!(w.store.user(&"dora".into()).await.unwrap().is_none());
    assert!(!w.store.is_disabled("bob").await.unwrap());
}

#[tokio::test]
async fn agents_tokens_windows_and_webhooks() {
    let w = world().await;
    let root = w.cookie("root").await;
    let ann = w.cookie("ann").await;
    let vera = w.cookie("vera").await;

    // A join token shown once, listed by its hash prefix only; an agent enrolled with it.
    let (status, made) =
        w.send(post("/api/v1/admin/tokens", &ann, json!({ "org": "acme", "minutes": 60 }))).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let token = made["token"].as_str().unwrap().to_owned();
    let (_, tokens) = w.send(get("/api/v1/admin/tokens", &ann)).await;
    assert_eq!(names(&tokens, "id"), [crate::auth::token_hash(&token)[..16].to_owned()]);
    assert!(!tokens.to_string().contains(&token));
    assert_eq!(w.send(get("/api/v1/admin/tokens", &vera)).await.1, json!([]));
    let row = AgentRow {
        name: "db01".into(),
        org: "acme".into(),
        cert_fingerprint: "f1".into(),
        enrolled_at: 1,
        revoked_at: None,
        last_seen: None,
        consent: None,
        online: false,
        relays: Vec::new(),
    };
    let enrolled = crate::audit::AuditEvent::new("agent:db01", crate::audit::Action::AgentEnrolled);
    w.store.enroll_agent(&crate::auth::token_hash(&token), &row, crate::now_ms(), &enrolled).await.unwrap();

    // Agents: offline here (the broker has no connection for it), with the relays the
    // store says it is connected to; another org's admin neither sees nor revokes it.
    let (_, agents) = w.send(get("/api/v1/admin/agents", &ann)).await;
    assert_eq!((agents[0]["name"].as_str(), agents[0]["online"].as_bool()), (Some("db01"), Some(false)));
    assert_eq!(agents[0]["relays"], json!([]));
    let connected = crate::audit::AuditEvent::new("agent:db01", crate::audit::Action::AgentConnected);
    let at = crate::now_ms();
    w.store
        .agent_connected(&"db01".into(), assist_proto::caps::ConsentMode::Approver, at, &connected)
        .await
        .unwrap();
    let (_, agents) = w.send(get("/api/v1/admin/agents", &ann)).await;
    assert_eq!(agents[0]["relays"], json!(["default"]));
    assert_eq!(w.send(get("/api/v1/admin/agents", &vera)).await.1, json!([]));
    assert_eq!(
        w.send(post("/api/v1/admin/agents/db01/revoke", &vera, json!({}))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(w.send(post("/api/v1/admin/agents/db01/revoke", &ann, json!({}))).await.0, StatusCode::OK);
    assert_eq!(w.last_audit().await, ("ann".into(), "agent.revoked".into(), Some("db01".into())));
    let (_, agents) = w.send(get("/api/v1/admin/agents", &root)).await;
    assert_eq!(agents[0]["revoked"], true);

    // Windows.
    let window = json!({
        "org": "acme", "agent": "", "schedule": "0 22 * * SAT", "minutes": 120,
        "capabilities": ["shell", "files.read:/var/log"], "engineers": ["alice"], "note": "weekend patching",
    });
    let (status, added) = w.send(post("/api/v1/admin/windows", &ann, window)).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    let id = added["window"]["id"].as_str().unwrap().to_owned();
    assert_eq!(w.last_audit().await.1, "window.added");
    assert_eq!(w.send(get("/api/v1/admin/windows", &vera)).await.1, json!([]));
    let remove = format!("/api/v1/admin/windows/{id}/remove");
    assert_eq!(w.send(post(&remove, &vera, json!({}))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(names(&w.send(get("/api/v1/admin/windows", &root)).await.1, "id"), [id.as_str()]);
    assert_eq!(w.send(post(&remove, &ann, json!({}))).await.0, StatusCode::OK);
    assert_eq!(w.send(get("/api/v1/admin/windows", &root)).await.1, json!([]));

    // Webhooks: the secret once, never listed; deliveries listed with each.
    let hook = json!({ "org": "acme", "url": "https://hooks.test/assist", "events": "session.approved" });
    let (status, added) = w.send(post("/api/v1/admin/webhooks", &ann, hook)).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    let (id, secret) =
        (added["id"].as_str().unwrap().to_owned(), added["secret"].as_str().unwrap().to_owned());
    let (_, hooks) = w.send(get("/api/v1/admin/webhooks", &ann)).await;
    assert_eq!(names(&hooks, "id"), [id.as_str()]);
    assert_eq!(hooks[0]["deliveries"], json!([]));
    assert!(!hooks.to_string().contains(&secret));
    assert_eq!(w.send(get("/api/v1/admin/webhooks", &vera)).await.1, json!([]));
    let remove = format!("/api/v1/admin/webhooks/{id}/remove");
    assert_eq!(w.send(post(&remove, &vera, json!({}))).await.0, StatusCode::NOT_FOUND);
    assert_eq!(w.send(post(&remove, &ann, json!({}))).await.0, StatusCode::OK);
    assert_eq!(w.last_audit().await, ("ann".into(), "webhook.removed".into(), Some(id)));
}

#[tokio::test]
async fn totp_secrets_are_sealed_at_rest_and_clear_ones_sealed_at_open() {
    let w = world().await;
    let enrolment = w.state.begin_enrolment("bob").await.unwrap();
    let secret = totp_rs::Secret::try_from_base32(&enrolment.secret).unwrap();
    // Another handle on the same file, to read the rows as stored.
    let raw = crate::store::SqliteStore::open(&w._dir.path().join("data").join(crate::store::DEFAULT_FILE))
        .await
        .unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT pending FROM user_totp WHERE user = 'bob'")
        .fetch_one(raw.pool())
        .await
        .unwrap();
    assert!(crate::store::sealed::SecretsKey::is_sealed(&stored));
    assert!(!stored.windows(secret.as_ref().len()).any(|s| s == secret.as_ref()), "not in clear");
    assert_eq!(w.state.pending_enrolment("bob").await.unwrap().unwrap().secret, enrolment.secret);

    // A secret stored in clear (before sealing existed) is sealed when the data directory
    // is next opened, and still reads back.
    sqlx::query("UPDATE user_totp SET secret = ?, pending = NULL WHERE user = 'bob'")
        .bind(secret.as_ref())
        .execute(raw.pool())
        .await
        .unwrap();
    let data = DataDir::open(&w._dir.path().join("data")).unwrap();
    let reopened = data.store().await.unwrap();
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret FROM user_totp WHERE user = 'bob'")
        .fetch_one(raw.pool())
        .await
        .unwrap();
    assert!(crate::store::sealed::SecretsKey::is_sealed(&stored));
    assert_eq!(reopened.totp("bob").await.unwrap().secret.as_deref(), Some(secret.as_ref()));
    let key_path = w._dir.path().join("data").join(crate::datadir::SECRETS_KEY);
    let key = std::fs::metadata(&key_path).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key.permissions()) & 0o777, 0o600);

    // Without the key (an administration command before an upgraded relay started), a
    // sealed secret is an error, never handed out as if it were the secret.
    std::fs::remove_file(&key_path).unwrap();
    let keyless = DataDir::open(&w._dir.path().join("data")).unwrap().store().await.unwrap();
    assert!(!key_path.exists(), "only the relay's start makes the key");
    assert!(keyless.totp("bob").await.is_err());
}
