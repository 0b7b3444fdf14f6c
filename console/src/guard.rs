//! Checks before any handler runs.
//!
//! - [`same_origin`]: a request that changes state (anything but GET and HEAD) must come
//!   from the console's own page: `Origin` equal to `https://` and the `Host` it was sent
//!   to, `Sec-Fetch-Site` `same-origin` when the browser sends it, and a JSON body
//!   (`Content-Type: application/json`), which a cross-site HTML form cannot send. With
//!   the `SameSite=Strict` cookie this refuses cross-site request forgery twice over.
//!   The one exception to JSON is a file upload's raw body (`application/octet-stream`,
//!   which a form cannot send either), on that route only.
//! - [`check_upgrade_origin`]: the same for a WebSocket upgrade, which is a GET.
//! - [`Source`]: the client's address, from the listener's `ConnectInfo` (the
//!   unspecified address when a test sends none).
//!
//! It does not look at cookies; see `auth`.

use crate::error::ApiError;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Refuses a state-changing request that did not come from the console's own page.
pub async fn same_origin(req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    match check(&req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(req: &Request) -> Result<(), ApiError> {
    let h = req.headers();
    same_origin_headers(h, "request")?;
    let kind = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    let json = kind.as_deref() == Some("application/json");
    // A file upload's body is the file; a cross-site form cannot send this type either.
    let upload = kind.as_deref() == Some("application/octet-stream") && is_upload(req.uri().path());
    if !json && !upload {
        return Err(ApiError::BadRequest("the console accepts JSON bodies only".into()));
    }
    Ok(())
}

/// `/api/v1/sessions/{id}/files/upload`, the one route whose body is not JSON.
fn is_upload(path: &str) -> bool {
    path.strip_prefix("/api/v1/sessions/")
        .and_then(|rest| rest.strip_suffix("/files/upload"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// `Origin` must be the console's own (`https://` and the `Host` asked for), and
/// `Sec-Fetch-Site`, where the browser sends it, `same-origin`. `what` names the refused
/// thing for people ("request", "connection").
fn same_origin_headers(h: &axum::http::HeaderMap, what: &str) -> Result<(), ApiError> {
    let refused = || {
        ApiError::Forbidden(format!(
            "this {what} did not come from the console's own page, so it was refused; reload the page and try again"
        ))
    };
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok()).ok_or_else(refused)?;
    let origin = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()).ok_or_else(refused)?;
    if origin != format!("https://{host}") {
        return Err(refused());
    }
    if h.get("sec-fetch-site").is_some_and(|site| site.as_bytes() != b"same-origin") {
        return Err(refused());
    }
    Ok(())
}

/// For a WebSocket upgrade (a GET, so [`same_origin`] lets it through): the same
/// `Origin` and `Sec-Fetch-Site` rules, without the JSON body.
pub fn check_upgrade_origin(h: &axum::http::HeaderMap) -> Result<(), ApiError> {
    same_origin_headers(h, "connection")
}

/// The client's IP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(Source(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_upload_route_takes_a_raw_body() {
        assert!(is_upload("/api/v1/sessions/s-1a2b/files/upload"));
        for other in [
            "/api/v1/sessions//files/upload",
            "/api/v1/sessions/a/b/files/upload",
            "/api/v1/sessions/s-1/files/upload/x",
            "/api/v1/login",
            "/api/v1/sessions/s-1/end",
        ] {
            assert!(!is_upload(other), "{other}");
        }
    }
}
