//! Security headers on every response of the console, whatever route produced it.
//!
//! - `Content-Security-Policy`: only the console's own scripts, styles, images and
//!   connections; no inline script, no plugins, no framing, no `<base>`, forms
//!   post only to the console. `'wasm-unsafe-eval'` lets the vendored terminal player
//!   compile its WebAssembly terminal emulator; it allows no JavaScript `eval`.
//!   `style-src 'unsafe-inline'` lets the vendored xterm.js terminal write its own
//!   `<style>` elements (cell sizes, colours); scripts stay strictly the console's own.
//! - `Strict-Transport-Security` (one year): the console is served over HTTPS only.
//! - `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
//!   `X-Frame-Options: DENY` for browsers that predate `frame-ancestors`,
//!   `Cross-Origin-Opener-Policy: same-origin`, `Permissions-Policy` turning off what the
//!   console never uses.
//! - `Cache-Control: no-store` on API answers (they hold personal and session data).
//!
//! It does not authenticate anyone; see `auth`.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self'; \
connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
frame-ancestors 'none'";

/// Adds the headers to `next`'s response.
pub async fn secure(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::CONTENT_SECURITY_POLICY, CSP);
    set(h, header::STRICT_TRANSPORT_SECURITY, "max-age=31536000");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    set(
        h,
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    if api {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    res
}
