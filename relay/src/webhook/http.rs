//! Sending one webhook request: an HTTP/1.1 `POST` with hyper, over TCP or TLS (rustls
//! on aws-lc-rs, the relay's one crypto provider).
//!
//! - `https` servers are checked against the system's trusted roots (read once, when the
//!   first `https` request is sent; `SSL_CERT_FILE` or `SSL_CERT_DIR` point elsewhere).
//!   Without any root, `https` requests fail with an error saying so; `http` still works.
//! - One attempt is bounded by a timeout covering connect, TLS, sending and the response
//!   head. Redirects are not followed (a 3xx is a failure): a receiver's URL is whatever
//!   the administrator configured, nothing else.
//! - Only the status is kept from the answer; the body is not read.
//!
//! It does not sign, retry or decide anything: see [`super::worker`].

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Checks a webhook URL as an administrator typed it: `http` or `https`, a host, no
/// user name or password (they would be shown in listings), no fragment.
pub fn validate_url(url: &str) -> Result<Uri, BadUrl> {
    let owned = || url.to_owned();
    if url.contains('#') {
        return Err(BadUrl::Fragment(owned()));
    }
    let scheme_ok = |u: &Uri| matches!(u.scheme_str(), Some("http" | "https"));
    if !url.starts_with("http://") && !url.starts_with("https://") {
        return Err(BadUrl::Scheme(owned()));
    }
    let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| BadUrl::NotAUrl(owned(), e.to_string()))?;
    if !scheme_ok(&uri) {
        return Err(BadUrl::Scheme(owned()));
    }
    let Some(authority) = uri.authority() else {
        return Err(BadUrl::NoHost(owned()));
    };
    if authority.as_str().contains('@') {
        return Err(BadUrl::Credentials(owned()));
    }
    if authority.host().is_empty() {
        return Err(BadUrl::NoHost(owned()));
    }
    Ok(uri)
}

/// A webhook URL [`validate_url`] refused; each names the URL as typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUrl {
    #[error("webhook URL {0:?} has a fragment (#...), which is never sent")]
    Fragment(String),
    #[error("webhook URL {0:?} must start with http:// or https://")]
    Scheme(String),
    #[error("webhook URL {0:?} is not a URL: {1}")]
    NotAUrl(String, String),
    #[error("webhook URL {0:?} names no host")]
    NoHost(String),
    #[error(
        "webhook URL {0:?} carries a user name or password; put credentials in the path or use the signature"
    )]
    Credentials(String),
}

/// `scheme://host[:port]` of a URL: what logs and audit events show, because the path
/// of a chat webhook URL is itself a secret.
pub fn origin(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(u) => match (u.scheme_str(), u.authority()) {
            (Some(s), Some(a)) => format!("{s}://{}", a.as_str().rsplit('@').next().unwrap_or_default()),
            _ => "(invalid URL)".to_owned(),
        },
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered with this status.
    Status(u16),
    /// No answer: the text says why (connect, TLS, timeout).
    Error(String),
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Status(s) if (200..300).contains(s))
    }
}

/// Sends requests; cheap to clone (clones share connections).
#[derive(Clone)]
pub struct Sender {
    http: Client<HttpConnector, Full<Bytes>>,
    https: Arc<OnceLock<Result<HttpsClient, String>>>,
    timeout: Duration,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

fn connector() -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_connect_timeout(Some(Duration::from_secs(5)));
    c.enforce_http(false);
    c
}

fn https_client() -> Result<HttpsClient, String> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| format!("https is unavailable: no trusted root certificates on this system ({e})"))?;
    let https = builder.https_or_http().enable_http1().wrap_connector(connector());
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

impl Sender {
    /// A sender whose every attempt ends within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let http = Client::builder(TokioExecutor::new()).build(connector());
        Self { http, https: Arc::new(OnceLock::new()), timeout }
    }

    /// A sender that trusts only `roots` for `https` (tests: a CA of their own, in place
    /// of the system's).
    #[cfg(test)]
    pub(crate) fn with_roots(timeout: Duration, roots: rustls::RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector());
        let sender = Self::new(timeout);
        let _ = sender.https.set(Ok(Client::builder(TokioExecutor::new()).build(https)));
        sender
    }

    /// POSTs `body` with `headers` (plus `Content-Type: application/json`) to `url`.
    pub async fn post(&self, url: &str, headers: &[(&str, String)], body: String) -> Outcome {
        let uri = match validate_url(url) {
            Ok(u) => u,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let mut request = http::Request::post(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("assist-relay/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = match request.body(Full::new(Bytes::from(body))) {
            Ok(r) => r,
            Err(e) => return Outcome::Error(format!("cannot build the request: {e}")),
        };
        let send = async {
            if uri.scheme_str() == Some("https") {
                let client = match self.https.get_or_init(https_client) {
                    Ok(c) => c,
                    Err(e) => return Err(e.clone()),
                };
                client.request(request).await.map_err(describe)
            } else {
                self.http.request(request).await.map_err(describe)
            }
        };
        match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(response)) => Outcome::Status(response.status().as_u16()),
            Ok(Err(e)) => Outcome::Error(e),
            Err(_) => Outcome::Error(format!("no answer within {} s", self.timeout.as_secs_f32())),
        }
    }
}

/// The error and its causes, on one line: hyper's own message alone is often just
/// "client error (Connect)".
fn describe(e: hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        for good in ["http://127.0.0.1:8080/hook", "https://tickets.example.com/api/assist?x=1"] {
            assert!(validate_url(good).is_ok(), "{good}");
        }
        for (bad, says) in [
            ("ftp://example.com/", "http:// or https://"),
            ("example.com/hook", "http:// or https://"),
            ("http:///path", "not a URL"),
            ("https://user:pw@example.com/", "password"),
            ("https://example.com/#x", "fragment"),
            ("not a url", "http:// or https://"),
            ("http://exa mple.com/", "not a URL"),
        ] {
            let e = validate_url(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn origins_hide_paths_and_credentials() {
        assert_eq!(origin("https://hooks.example.com/services/T0/B0/SECRET"), "https://hooks.example.com");
        assert_eq!(origin("http://127.0.0.1:9000/x"), "http://127.0.0.1:9000");
        assert_eq!(origin("http://u:p@h:1/x"), "http://h:1");
        assert_eq!(origin("::"), "(invalid URL)");
    }
}
