//! The assist relay.
//!
//! - [`datadir`]: the data directory (CA, keys, database) and its first-start set-up;
//! - [`store`]: persistent state behind the [`store::Store`] trait (SQLite by default);
//! - [`auth`]: password hashing and the engineer tokens (JWT, EdDSA);
//! - [`audit`]: audit events and their hash chain;
//! - [`audit_cmd`]: `assist-relay audit list|export|verify` as library functions;
//! - [`admin`]: the administration commands run against the data directory;
//! - [`admin_windows`]: the maintenance-window commands;
//! - [`broker`]: live agents and sessions, consent, and the rules connecting them;
//! - [`serve`]: the QUIC endpoint and connection dispatch;
//! - [`listen`]: the HTTP listener's accept loop, timeouts and connection caps;
//! - [`stop`]: the signals that stop `serve`, and its stdout lines that a closed pipe
//!   cannot turn into a panic;
//! - [`webhook`]: outgoing webhooks driven by the audit log.

pub mod admin;
pub mod admin_users;
pub mod admin_windows;
pub mod audit;
pub mod audit_cmd;
pub mod auth;
pub mod broker;
pub mod console_state;
pub mod console_tls;
pub mod datadir;
pub mod listen;
pub mod mfa;
pub mod private_file;
pub mod recording;
pub mod serve;
pub mod stop;
pub mod store;
pub mod table;
pub mod webhook;

/// Milliseconds since the Unix epoch, now. The only place the relay reads the wall clock
/// for stored timestamps; everything below takes `now` as an argument.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A duration in seconds as people write it: `1h 30m`, `45s`.
pub fn fmt_secs(secs: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// A Unix-millisecond time as RFC 3339 UTC, to the second.
pub fn fmt_time(ms: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
    )
    .to_string()
}
