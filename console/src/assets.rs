//! The front end: plain HTML, ES modules and CSS, embedded in the binary at compile time
//! (`include_bytes!`), so the console needs no network and nothing is built at
//! `cargo build`. Vendored browser packages live in `assets/vendor/` (see
//! `console/vendor/update`).
//!
//! It serves only the files listed here, each with its exact content type; anything else
//! under the console is a 404 from the router.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $ty:literal) => {
        Asset { path: $path, content_type: $ty, body: include_bytes!(concat!("../assets/", $file)) }
    };
}

const ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("/api.js", "api.js", "text/javascript; charset=utf-8"),
    asset!("/common.js", "common.js", "text/javascript; charset=utf-8"),
    asset!("/pages.js", "pages.js", "text/javascript; charset=utf-8"),
    asset!("/approvals.js", "approvals.js", "text/javascript; charset=utf-8"),
    asset!("/review.js", "review.js", "text/javascript; charset=utf-8"),
    asset!("/admin.js", "admin.js", "text/javascript; charset=utf-8"),
    asset!("/admin-people.js", "admin-people.js", "text/javascript; charset=utf-8"),
    asset!("/admin-agents.js", "admin-agents.js", "text/javascript; charset=utf-8"),
    asset!("/admin-hooks.js", "admin-hooks.js", "text/javascript; charset=utf-8"),
    asset!("/auditlog.js", "auditlog.js", "text/javascript; charset=utf-8"),
    asset!("/engineer.js", "engineer.js", "text/javascript; charset=utf-8"),
    asset!("/shell.js", "shell.js", "text/javascript; charset=utf-8"),
    asset!("/files.js", "files.js", "text/javascript; charset=utf-8"),
    asset!("/watch.js", "watch.js", "text/javascript; charset=utf-8"),
    asset!("/desktop.js", "desktop.js", "text/javascript; charset=utf-8"),
    asset!("/desktop-view.js", "desktop-view.js", "text/javascript; charset=utf-8"),
    asset!("/desktop-replay.js", "desktop-replay.js", "text/javascript; charset=utf-8"),
    asset!("/clipboard.js", "clipboard.js", "text/javascript; charset=utf-8"),
    asset!("/terminal.js", "terminal.js", "text/javascript; charset=utf-8"),
    asset!("/style.css", "style.css", "text/css; charset=utf-8"),
    asset!("/favicon.svg", "favicon.svg", "image/svg+xml"),
    asset!(
        "/vendor/asciinema-player/asciinema-player.min.js",
        "vendor/asciinema-player/asciinema-player.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/vendor/asciinema-player/asciinema-player.css",
        "vendor/asciinema-player/asciinema-player.css",
        "text/css; charset=utf-8"
    ),
    asset!(
        "/vendor/@xterm/xterm/xterm.mjs",
        "vendor/@xterm/xterm/xterm.mjs",
        "text/javascript; charset=utf-8"
    ),
    asset!("/vendor/@xterm/xterm/xterm.css", "vendor/@xterm/xterm/xterm.css", "text/css; charset=utf-8"),
    asset!(
        "/vendor/@xterm/addon-fit/addon-fit.mjs",
        "vendor/@xterm/addon-fit/addon-fit.mjs",
        "text/javascript; charset=utf-8"
    ),
];

/// The paths of every embedded file, for the router.
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

/// Serves the embedded file at `path`.
pub fn serve(path: &str) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => ([(header::CONTENT_TYPE, a.content_type), (header::CACHE_CONTROL, "no-cache")], a.body)
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
