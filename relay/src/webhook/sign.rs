//! Webhook signatures: `X-Assist-Signature: sha256=HEX`, where HEX is the lowercase hex of
//! HMAC-SHA256, keyed with the webhook's secret (its UTF-8 bytes), over
//! `TIMESTAMP.BODY`: the `X-Assist-Timestamp` header (Unix seconds, decimal), one `.`,
//! and the exact body bytes.
//!
//! The timestamp is signed so that a receiver can refuse an old request replayed by
//! whoever saw it once ([`verify`] takes a tolerance). HMAC comes from aws-lc-rs, the one
//! crypto provider of the relay; the comparison is constant-time.
//!
//! It does not send anything or keep secrets; `docs/webhooks.md` shows receivers how to
//! check a request in other languages.

use aws_lc_rs::hmac;

/// What the signature header's value starts with.
pub const SIGNATURE_PREFIX: &str = "sha256=";
/// Shortest secret `webhook add --secret-stdin` accepts.
pub const MIN_SECRET_CHARS: usize = 16;

/// Why a request's signature does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header does not start with {SIGNATURE_PREFIX} followed by 64 hex digits")]
    Malformed,
    #[error("the timestamp header is not a whole number of seconds")]
    BadTimestamp,
    #[error("the timestamp is {skew_secs} s away from now, more than the {tolerance_secs} s allowed")]
    Stale { skew_secs: i64, tolerance_secs: i64 },
    #[error("the signature does not match (wrong secret, or the body or timestamp was changed)")]
    Mismatch,
}

fn message(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(body.len() + 21);
    msg.extend_from_slice(timestamp.to_string().as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    msg
}

/// The `X-Assist-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, &message(timestamp, body));
    format!("{SIGNATURE_PREFIX}{}", hex::encode(tag.as_ref()))
}

/// Checks a received request, as a receiver would: the signature header against the
/// timestamp header and body, and the timestamp within `tolerance_secs` of `now_secs`.
pub fn verify(
    secret: &str,
    timestamp_header: &str,
    body: &[u8],
    signature_header: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let timestamp: i64 = timestamp_header.trim().parse().map_err(|_| SignatureError::BadTimestamp)?;
    let skew_secs = now_secs.saturating_sub(timestamp).saturating_abs();
    if skew_secs > tolerance_secs {
        return Err(SignatureError::Stale { skew_secs, tolerance_secs });
    }
    let tag = signature_header
        .trim()
        .strip_prefix(SIGNATURE_PREFIX)
        .filter(|h| h.len() == 64)
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Malformed)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, &message(timestamp, body), &tag).map_err(|_| SignatureError::Mismatch)
}

/// A new secret: 32 random bytes as 64 hex digits.
pub fn generate_secret() -> String {
    random_hex::<32>()
}

/// `N` random bytes as hex, from the system's generator.
pub(crate) fn random_hex<const N: usize>() -> String {
    hex::encode(assist_certs::random_bytes::<N>())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret-0123456789";
    const BODY: &[u8] = br#"{"event":"session.requested"}"#;

    #[test]
    fn the_signature_is_pinned() {
        // Computed apart from this code (Python's hmac module) from the module
        // documentation alone, so the documentation is enough to write a receiver.
        assert_eq!(
            signature(SECRET, 1_700_000_000, BODY),
            "sha256=ed86900d1d24fdb9cb0797d545b208ab1c114ad88200332ced06ea79393f0996"
        );
    }

    #[test]
    fn a_signed_request_verifies_and_any_change_is_refused() {
        let now = 1_700_000_000;
        let sig = signature(SECRET, now, BODY);
        assert_eq!(verify(SECRET, "1700000000", BODY, &sig, now + 10, 300), Ok(()));
        let refused =
            |secret: &str, ts: &str, body: &[u8], sig: &str| verify(secret, ts, body, sig, now, 300);
        assert_eq!(
            refused("wrong-secret-0123456789", "1700000000", BODY, &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(refused(SECRET, "1700000001", BODY, &sig), Err(SignatureError::Mismatch));
        assert_eq!(
            refused(SECRET, "1700000000", br#"{"event":"session.approved"}"#, &sig),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            refused(SECRET, "1700000000", BODY, &sig.replace("sha256=", "sha1=")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            refused(SECRET, "1700000000", BODY, &sig[..sig.len() - 2]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(refused(SECRET, "17e8", BODY, &sig), Err(SignatureError::BadTimestamp));
    }

    #[test]
    fn an_old_request_is_refused_even_with_a_good_signature() {
        let sig = signature(SECRET, 1_000, BODY);
        assert_eq!(
            verify(SECRET, "1000", BODY, &sig, 1_000 + 301, 300),
            Err(SignatureError::Stale { skew_secs: 301, tolerance_secs: 300 })
        );
        assert_eq!(verify(SECRET, "1000", BODY, &sig, 1_000 - 300, 300), Ok(()));
    }

    #[test]
    fn secrets_are_long_and_differ() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
