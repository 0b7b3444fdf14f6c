//! [`SecretsKey`]: authenticated encryption (AES-256-GCM, aws-lc-rs) of the few secrets
//! the store must be able to read back, today the TOTP secrets of `user_totp`.
//!
//! A sealed value is `aes1` ‖ a random 96-bit nonce ‖ ciphertext and tag, with the user's
//! name as associated data, so a sealed secret copied onto another user's row does not
//! open. The key is 32 random bytes in the data directory (`totp.key`, 0600, beside the
//! other keys; see `crate::datadir`): a copy of the database alone no longer yields
//! anyone's second factor. Values written before sealing existed (no `aes1` prefix) are
//! read as they are, and sealed once at start ([`super::console::ConsoleRows::seal_clear_totp`]).
//!
//! It does not store or find the key; the data directory does.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// Length of the key file's content.
pub const KEY_LEN: usize = 32;
const MAGIC: &[u8; 4] = b"aes1";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the secrets key must be {KEY_LEN} bytes")]
    BadKey,
    #[error(
        "a sealed secret does not open with this relay's secrets key (a different totp.key, or the row was altered)"
    )]
    Open,
    #[error("a sealed secret cannot be read: the data directory has no totp.key")]
    NoKey,
    #[error("the system random source failed")]
    Random,
}

/// The key that seals stored secrets.
pub struct SecretsKey(LessSafeKey);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    pub fn new(key: &[u8]) -> Result<Self, SealError> {
        let key = UnboundKey::new(&AES_256_GCM, key).map_err(|_| SealError::BadKey)?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// Whether `stored` is a sealed value (rather than one written before sealing).
    pub fn is_sealed(stored: &[u8]) -> bool {
        stored.len() >= MAGIC.len() + NONCE_LEN + AES_256_GCM.tag_len() && stored.starts_with(MAGIC)
    }

    pub fn seal(&self, user: &str, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut body = secret.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(user.as_bytes()),
                &mut body,
            )
            .map_err(|_| SealError::Random)?;
        let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The secret in `stored`: opened if sealed, as it is if written before sealing.
    pub fn open(&self, user: &str, stored: &[u8]) -> Result<Vec<u8>, SealError> {
        if !Self::is_sealed(stored) {
            return Ok(stored.to_vec());
        }
        let rest = &stored[MAGIC.len()..];
        let nonce = Nonce::try_assume_unique_for_key(&rest[..NONCE_LEN]).map_err(|_| SealError::Open)?;
        let mut body = rest[NONCE_LEN..].to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(user.as_bytes()), &mut body)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_user_and_key() {
        let key = SecretsKey::new(&[7; KEY_LEN]).unwrap();
        let sealed = key.seal("bob", b"0123456789abcdefghij").unwrap();
        assert!(SecretsKey::is_sealed(&sealed));
        assert!(!sealed.windows(20).any(|w| w == b"0123456789abcdefghij"));
        assert_eq!(key.open("bob", &sealed).unwrap(), b"0123456789abcdefghij");
        assert_ne!(sealed, key.seal("bob", b"0123456789abcdefghij").unwrap(), "a fresh nonce each time");
        assert!(matches!(key.open("eve", &sealed), Err(SealError::Open)));
        let other = SecretsKey::new(&[8; KEY_LEN]).unwrap();
        assert!(matches!(other.open("bob", &sealed), Err(SealError::Open)));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(key.open("bob", &flipped), Err(SealError::Open)));
        // Written before sealing: read as it is.
        assert_eq!(key.open("bob", b"clear-secret-bytes!!").unwrap(), b"clear-secret-bytes!!");
        assert!(matches!(SecretsKey::new(&[0; 16]), Err(SealError::BadKey)));
    }
}
