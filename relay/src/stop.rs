//! How `assist-relay serve` learns that it should stop, and how it prints its few stdout
//! lines when nobody may be reading them.
//!
//! SIGINT (Ctrl-C), SIGTERM (systemd's and most supervisors' stop) and SIGHUP (the
//! terminal went away) all lead to the same graceful shutdown: live sessions end as "relay
//! shutting down" and their recordings are sealed. Only SIGKILL or a crash leaves a
//! truncated recording. SIGHUP deliberately does not mean "reload": the relay has no
//! configuration to re-read.
//!
//! Stdout may be a pipe whose reader has gone (`assist-relay serve | true`). Rust ignores
//! SIGPIPE, so a write there fails with EPIPE, and `println!` would panic on it: [`say`]
//! writes and lets such a failure pass, so a lost reader never costs a seal. It does not
//! retry or buffer what could not be written.

use std::io::Write;

/// The stop signals, watched from creation on: made before the relay says it is ready,
/// so that a supervisor's SIGTERM right after the ready line is not the default (fatal)
/// action.
pub struct Signals {
    watched: Vec<(&'static str, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// Starts watching SIGINT, SIGTERM and SIGHUP. One that cannot be watched (not
    /// expected on Unix) is logged and keeps its default action.
    pub fn watch() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let kinds = [
            ("SIGINT", SignalKind::interrupt()),
            ("SIGTERM", SignalKind::terminate()),
            ("SIGHUP", SignalKind::hangup()),
        ];
        let mut watched = Vec::new();
        for (name, kind) in kinds {
            match signal(kind) {
                Ok(s) => watched.push((name, s)),
                Err(e) => tracing::warn!(signal = name, error = %e, "cannot watch a stop signal"),
            }
        }
        Self { watched }
    }

    /// Completes when one of them arrives; names it.
    pub async fn recv(mut self) -> &'static str {
        let arrivals = self.watched.iter_mut().map(|(name, s)| {
            let name = *name;
            Box::pin(async move {
                s.recv().await;
                name
            })
        });
        match arrivals.len() {
            0 => std::future::pending().await,
            _ => futures_util::future::select_all(arrivals).await.0,
        }
    }
}

/// Writes one line to stdout; a reader that went away (or any other write failure) is
/// logged and otherwise ignored.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
        tracing::debug!(error = %e, "stdout not writable; line dropped");
    }
}
