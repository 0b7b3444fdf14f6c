//! Signing in and out of the console.
//!
//! - `POST /api/v1/login {user, password}`: the relay checks the password (throttled,
//!   audited, one message for a wrong user or a wrong password). The new session's stage
//!   is `code` if the user has an authenticator, `enrol` if their role needs one and they
//!   have none, else `full`.
//! - `POST /api/v1/login/code {code}`: a code from the authenticator (each time step
//!   accepted once) or a recovery code moves a `code` session to `full`.
//! - `POST /api/v1/mfa/enrol`, `GET /api/v1/mfa/qr.svg`, `POST /api/v1/mfa/confirm
//!   {code}`: set up an authenticator (QR code drawn here as SVG); confirming returns the
//!   recovery codes, once, and moves an `enrol` session to `full`.
//! - `POST /api/v1/logout`, `GET /api/v1/me`.
//!
//! The session travels in the `__Host-assist` cookie (Secure, HttpOnly, SameSite=Strict,
//! Path=/), a random value whose hash names a row in the relay's store. Each change of
//! stage ends the old session and opens a new one under a new value. Every request
//! checks the row: [`current`] ends it after the idle timeout or its absolute lifetime,
//! or when the user is disabled or removed.
//!
//! It decides nothing about passwords, codes or roles itself: [`ConsoleState`] does.

use crate::error::ApiError;
use crate::guard::Source;
use crate::state::{Account, ConsoleState, Stage, WebSession};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// The cookie's name. `__Host-` makes browsers require Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-assist";

type St = State<Arc<dyn ConsoleState>>;

/// The cookie value, if the request carries one.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        line.split(';')
            .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_owned))
    })
}

fn set_cookie(value: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={value}; Secure; HttpOnly; SameSite=Strict; Path=/"))
        .expect("cookie values are hex")
}

fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("__Host-assist=; Max-Age=0; Secure; HttpOnly; SameSite=Strict; Path=/")
}

/// How often a session's activity is written back (see [`current`]).
pub const TOUCH_EVERY_MS: i64 = 60_000;

/// A request's valid session.
pub struct Current {
    pub cookie: String,
    pub session: WebSession,
    pub account: Account,
}

/// The session the request's cookie names, if it is still valid; notes the activity
/// when `touch` (at most once a minute). Expired, idle and disabled users' sessions are
/// ended here.
pub async fn current(
    state: &Arc<dyn ConsoleState>,
    headers: &HeaderMap,
    touch: bool,
) -> Result<Current, ApiError> {
    let not_in = || ApiError::Unauthenticated("you are not signed in".into());
    let cookie = cookie_value(headers).ok_or_else(not_in)?;
    let session = state.session(&cookie).await?.ok_or_else(not_in)?;
    let now = state.now_ms();
    let auth = state.auth();
    if now - session.last_seen > auth.idle_ms {
        state.end_session(&cookie, "idle").await?;
        return Err(ApiError::Unauthenticated(format!(
            "you were signed out after {} minutes without activity; sign in again",
            auth.idle_ms / 60_000
        )));
    }
    if now - session.created_at > auth.absolute_ms {
        state.end_session(&cookie, "expired").await?;
        return Err(ApiError::Unauthenticated(format!(
            "your sign-in ended after {} hours; sign in again",
            auth.absolute_ms / 3_600_000
        )));
    }
    let Some(account) = state.account(&session.user).await? else {
        state.end_session(&cookie, "disabled").await?;
        return Err(ApiError::Unauthenticated("this account can no longer sign in".into()));
    };
    // Activity is written at most once a minute: the idle timeout is counted to the
    // minute, and a busy page does not write its session row on every request.
    if touch && now - session.last_seen >= TOUCH_EVERY_MS {
        state.touch_session(&cookie).await?;
    }
    Ok(Current { cookie, session, account })
}

/// [`current`], and the session must be fully signed in.
pub async fn signed_in(state: &Arc<dyn ConsoleState>, headers: &HeaderMap) -> Result<Current, ApiError> {
    let c = current(state, headers, true).await?;
    match c.session.stage {
        Stage::Full => Ok(c),
        Stage::Code => Err(ApiError::Unauthenticated("enter the code from your authenticator first".into())),
        Stage::Enrol => Err(ApiError::Unauthenticated("set up your authenticator first".into())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    user: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeForm {
    code: String,
}

fn with_session(cookie: &str, body: serde_json::Value) -> Response {
    let mut res = Json(body).into_response();
    res.headers_mut().insert(header::SET_COOKIE, set_cookie(cookie));
    res
}

pub async fn login(
    State(state): St,
    Source(source): Source,
    headers: HeaderMap,
    Json(form): Json<LoginForm>,
) -> Result<Response, ApiError> {
    if form.user.len() > 256 || form.password.len() > 1024 {
        return Err(ApiError::Unauthenticated("wrong user name or password".into()));
    }
    let account = state.check_password(&form.user, &form.password, source).await?;
    if let Some(old) = cookie_value(&headers) {
        state.end_session(&old, "replaced").await?;
    }
    let stage = if account.totp {
        Stage::Code
    } else if state.auth().require_mfa.iter().any(|r| r == &account.role) {
        Stage::Enrol
    } else {
        Stage::Full
    };
    let cookie = state.open_session(&account.user, stage, source).await?;
    Ok(with_session(&cookie, json!({ "stage": stage })))
}

/// Ends the old session and opens the next stage under a new cookie value.
async fn upgrade(
    state: &Arc<dyn ConsoleState>,
    c: &Current,
    stage: Stage,
    source: std::net::IpAddr,
) -> Result<String, ApiError> {
    state.end_session(&c.cookie, "upgraded").await?;
    state.open_session(&c.account.user, stage, source).await
}

pub async fn login_code(
    State(state): St,
    Source(source): Source,
    headers: HeaderMap,
    Json(form): Json<CodeForm>,
) -> Result<Response, ApiError> {
    let c = current(&state, &headers, true).await?;
    if c.session.stage != Stage::Code {
        return Err(ApiError::Conflict("no code is expected now".into()));
    }
    state.verify_code(&c.account.user, form.code.trim(), source).await?;
    let cookie = upgrade(&state, &c, Stage::Full, source).await?;
    Ok(with_session(&cookie, json!({ "stage": Stage::Full })))
}

async fn enrolling(state: &Arc<dyn ConsoleState>, headers: &HeaderMap) -> Result<Current, ApiError> {
    let c = current(state, headers, true).await?;
    if c.session.stage == Stage::Code {
        return Err(ApiError::Unauthenticated("enter the code from your authenticator first".into()));
    }
    Ok(c)
}

pub async fn enrol(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = enrolling(&state, &headers).await?;
    let e = state.begin_enrolment(&c.account.user).await?;
    Ok(Json(e).into_response())
}

pub async fn qr(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = enrolling(&state, &headers).await?;
    let e = state
        .pending_enrolment(&c.account.user)
        .await?
        .ok_or_else(|| ApiError::NotFound("no authenticator is being set up".into()))?;
    let code = qrcode::QrCode::new(e.uri.as_bytes()).map_err(|_| ApiError::Internal)?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(220, 220).build();
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store")], svg).into_response())
}

pub async fn confirm(
    State(state): St,
    Source(source): Source,
    headers: HeaderMap,
    Json(form): Json<CodeForm>,
) -> Result<Response, ApiError> {
    let c = enrolling(&state, &headers).await?;
    let codes = state.confirm_enrolment(&c.account.user, form.code.trim(), source).await?;
    let body = json!({ "recovery_codes": codes, "stage": Stage::Full });
    if c.session.stage == Stage::Enrol {
        let cookie = upgrade(&state, &c, Stage::Full, source).await?;
        return Ok(with_session(&cookie, body));
    }
    Ok(Json(body).into_response())
}

pub async fn logout(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(cookie) = cookie_value(&headers) {
        state.end_session(&cookie, "logout").await?;
    }
    let mut res = Json(json!({})).into_response();
    res.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(res)
}

pub async fn me(State(state): St, headers: HeaderMap) -> Result<Response, ApiError> {
    let c = current(&state, &headers, true).await?;
    Ok(Json(json!({
        "user": c.account.user,
        "org": c.account.org,
        "role": c.account.role,
        "totp": c.account.totp,
        "stage": c.session.stage,
    }))
    .into_response())
}
