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
//! - [`serve`]: `assist-relay serve`: configuration, binding, start-up;
//! - [`wire`]: the QUIC side: accept, handshake, framing, splice (no policy);
//! - [`listen`]: the HTTP listener's accept loop, timeouts and connection caps;
//! - [`stop`]: the signals that stop `serve`, and its stdout lines that a closed pipe
//!   cannot turn into a panic;
//! - [`webhook`]: outgoing webhooks driven by the audit log.

pub mod admin;
pub mod admin_accounts;
pub mod admin_users;
pub mod admin_windows;
pub mod audit;
pub mod audit_cmd;
pub mod auth;
pub mod broker;
pub mod bus;
pub mod cluster;
pub mod console_admin;
pub mod console_auditlog;
pub mod console_bundle;
pub mod console_files;
pub mod console_replay;
pub mod console_review;
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
pub mod webhook;
pub mod wire;

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

/// A Unix-millisecond time as RFC 3339 UTC, to the second (`2026-11-22T03:53:00Z`): what
/// listings, messages and logs show. With [`fmt_time_ms`], the relay's one time formatter.
pub fn fmt_time(ms: i64) -> String {
    rfc3339(ms, false)
}

/// A Unix-millisecond time as RFC 3339 UTC, to the millisecond (`2026-11-20T09:15:02.123Z`):
/// what webhook bodies carry.
pub fn fmt_time_ms(ms: i64) -> String {
    rfc3339(ms, true)
}

/// A time outside what RFC 3339 can write (years beyond 9999) is shown as `@MSms`.
fn rfc3339(ms: i64, millis: bool) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return format!("@{ms}ms");
    };
    let (date, clock) = (t.date(), t.time());
    let mut text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        date.year(),
        u8::from(date.month()),
        date.day(),
        clock.hour(),
        clock.minute(),
        clock.second()
    );
    if millis {
        text.push_str(&format!(".{:03}", ms.rem_euclid(1000)));
    }
    text.push('Z');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(fmt_time(-1), "1969-12-31T23:59:59Z");
        assert_eq!(fmt_time(951_825_600_000), "2000-02-29T12:00:00Z");
        assert_eq!(fmt_time(i64::MAX), format!("@{}ms", i64::MAX));
        assert_eq!(fmt_time_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt_time_ms(1_700_000_001_005), "2023-11-14T22:13:21.005Z");
        assert_eq!(fmt_time_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
