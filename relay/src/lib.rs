//! The assist relay.
//!
//! - [`datadir`]: the data directory (CA, keys, database) and its first-start set-up;
//! - [`store`]: persistent state behind the [`store::Store`] trait (SQLite by default);
//! - [`auth`]: password hashing and the engineer tokens (JWT, EdDSA);
//! - [`audit`]: audit events and their hash chain;
//! - [`audit_cmd`]: `assist-relay audit list|export|verify` as library functions;
//! - [`admin`]: the administration commands run against the data directory;
//! - [`broker`]: live agents and sessions, consent, and the rules connecting them;
//! - [`serve`]: the QUIC endpoint and connection dispatch;
//! - [`webhook`]: outgoing webhooks driven by the audit log.

pub mod admin;
pub mod audit;
pub mod audit_cmd;
pub mod auth;
pub mod broker;
pub mod datadir;
pub mod recording;
pub mod serve;
pub mod store;
pub mod webhook;

/// Milliseconds since the Unix epoch, now. The only place the relay reads the wall clock
/// for stored timestamps; everything below takes `now` as an argument.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
