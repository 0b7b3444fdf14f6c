//! The second factor: TOTP codes (RFC 6238: SHA-1, 6 digits, 30-second steps, one step of
//! skew, on the relay's clock) and one-time recovery codes, checked the same way for the
//! console and for `assist login`.
//!
//! - An accepted time step is stored per user and never accepted again (replay).
//! - Recovery codes are stored as the SHA-256 of their normalised form (letters and
//!   digits, lower case), each usable once.
//!
//! It does not throttle or audit a refusal: callers do (the broker's login throttle, and
//! an `mfa.failed` event), since they know who asked and from where.

use crate::store::{Store, StoreError};

/// Digits of a TOTP code.
pub const DIGITS: u8 = 6;
/// Seconds per TOTP step.
pub const STEP: u64 = 30;
/// Steps before and after now that are accepted.
pub const SKEW: u16 = 1;

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot use the stored TOTP secret: {0}")]
    Secret(String),
}

/// The TOTP generator for `secret`.
pub fn totp(secret: &[u8]) -> Result<totp_rs::Totp, MfaError> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(SKEW)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .build()
        .map_err(|e| MfaError::Secret(e.to_string()))
}

/// A recovery code as people type it: letters and digits, case and separators ignored.
pub fn normalise_recovery(code: &str) -> String {
    code.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// The stored form of a recovery code.
pub fn recovery_hash(code: &str) -> String {
    hex::encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, normalise_recovery(code).as_bytes()).as_ref(),
    )
}

/// Checks `code` (a TOTP code or a recovery code) for `user` with authenticator `secret`,
/// at `now_ms`, from `source`. `Ok(None)` if accepted (and now used), `Ok(Some(why))` if
/// refused.
pub async fn check_code(
    store: &dyn Store,
    user: &str,
    secret: &[u8],
    code: &str,
    now_ms: i64,
    source: &str,
) -> Result<Option<&'static str>, MfaError> {
    let code = code.trim();
    let digits = code.len() == usize::from(DIGITS) && code.bytes().all(|b| b.is_ascii_digit());
    if digits {
        let secs = u64::try_from(now_ms / 1000).unwrap_or(0);
        let Some(step) = totp(secret)?.check(code, secs) else { return Ok(Some("wrong code")) };
        let step = i64::try_from(step).map_err(|e| MfaError::Secret(e.to_string()))?;
        return Ok(match store.accept_totp_step(user, step).await? {
            true => None,
            false => Some("code already used"),
        });
    }
    Ok(match store.use_recovery_code(user, &recovery_hash(code), source, now_ms).await? {
        true => None,
        false => Some("wrong or used recovery code"),
    })
}
