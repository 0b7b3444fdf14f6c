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

/// Completes when the process is asked to stop; names the signal that asked.
pub async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    // A signal that cannot be watched (not expected on Unix) just never fires; Ctrl-C
    // still works.
    let watch = |kind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch a stop signal");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = watch(SignalKind::terminate()) => "SIGTERM",
        _ = watch(SignalKind::hangup()) => "SIGHUP",
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
