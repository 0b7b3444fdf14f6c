//! Credentials: password hashes, engineer tokens, join tokens and generated secrets.
//!
//! - Passwords are hashed with argon2id and a random salt, stored as PHC strings.
//! - Engineer tokens are JWTs signed with the relay's Ed25519 key. Verification accepts
//!   EdDSA only (so neither `alg: none` nor an HMAC token made with the public key can
//!   pass), and requires `exp`, `aud` ([`assist_proto::TOKEN_AUDIENCE`]), `iss` (this
//!   relay) and `sub`.
//! - Join tokens are random (`ajt_` + 64 hex digits); only their SHA-256 is stored.
//!
//! It does not decide what a role may do, and it does not read the clock: `now` comes in
//! (except for `exp`, which the JWT library checks against the system clock).

use assist_certs::random_bytes;
use assist_proto::TOKEN_AUDIENCE;
use assist_proto::caps::Role;
use assist_proto::ids::{OrgName, UserName};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token has expired")]
    Expired,
    /// Bad signature, algorithm, audience, issuer or shape; the text says which.
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// A signing key that cannot be used (bad PEM, not Ed25519).
    #[error("invalid signing key: {0}")]
    Key(String),
}

/// Hashes a password with argon2id (default parameters) and a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    use argon2::PasswordHasher as _;
    let hash = argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc`. A malformed hash matches nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier as _;
    // The parameters come from the stored hash, so older hashes keep verifying if the
    // defaults change.
    argon2::Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

/// What an engineer token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: UserName,
    pub org: OrgName,
    pub role: Role,
    pub aud: String,
    pub iss: String,
    /// Seconds since the Unix epoch.
    pub iat: u64,
    /// Seconds since the Unix epoch.
    pub exp: u64,
    /// The token's id, recorded by the relay so that it can be revoked; tokens issued
    /// before ids existed have none (and are refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Issues and verifies engineer tokens with one Ed25519 key.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    validation: Validation,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

/// A fresh Ed25519 key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
pub fn ed25519_pkcs8_pem() -> String {
    // Only fails if the system's random source does; nothing sensible can go on then.
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("generate an Ed25519 key").serialize_pem()
}

/// Parses an Ed25519 PKCS#8 PEM into its DER and key pair.
pub fn ed25519_from_pem(pem: &str) -> Result<(Vec<u8>, Ed25519KeyPair), AuthError> {
    let der = match assist_certs::key_from_pem(pem).map_err(|e| AuthError::Key(e.to_string()))? {
        assist_certs::rustls_pki_types::PrivateKeyDer::Pkcs8(der) => der.secret_pkcs8_der().to_vec(),
        _ => return Err(AuthError::Key("expected a PKCS#8 private key".into())),
    };
    let pair =
        Ed25519KeyPair::from_pkcs8(&der).map_err(|e| AuthError::Key(format!("not an Ed25519 key: {e}")))?;
    Ok((der, pair))
}

impl TokenKeys {
    /// A fresh signing key as PKCS#8 PEM, for [`TokenKeys::from_pem`].
    pub fn generate_pem() -> String {
        ed25519_pkcs8_pem()
    }

    /// Loads the signing key. `issuer` goes into `iss` and is required back on verify.
    pub fn from_pem(pem: &str, issuer: String) -> Result<Self, AuthError> {
        let (der, pair) = ed25519_from_pem(pem)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.set_issuer(&[&issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        Ok(Self {
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_der(pair.public_key().as_ref()),
            issuer,
            validation,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Issues a token valid from `now_secs` for `ttl`. Returns it with its expiry in Unix
    /// milliseconds.
    pub fn issue(
        &self,
        user: &UserName,
        org: &OrgName,
        role: Role,
        now_secs: u64,
        ttl: Duration,
    ) -> (String, i64) {
        let (token, exp, _) = self.issue_with_id(user, org, role, now_secs, ttl);
        (token, exp)
    }

    /// [`TokenKeys::issue`], also returning the token's fresh random id (`jti`).
    pub fn issue_with_id(
        &self,
        user: &UserName,
        org: &OrgName,
        role: Role,
        now_secs: u64,
        ttl: Duration,
    ) -> (String, i64, String) {
        let jti = hex::encode(random_bytes::<16>());
        let exp = now_secs.saturating_add(ttl.as_secs());
        let claims = Claims {
            sub: user.clone(),
            org: org.clone(),
            role,
            aud: TOKEN_AUDIENCE.to_owned(),
            iss: self.issuer.clone(),
            iat: now_secs,
            exp,
            jti: Some(jti.clone()),
        };
        // Cannot fail: the claims always serialise and the key was checked in `from_pem`.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .expect("sign a token with a checked Ed25519 key");
        (token, i64::try_from(exp).unwrap_or(i64::MAX / 1000) * 1000, jti)
    }

    /// The claims of a token that [`TokenKeys::verify`] refused as expired: everything but
    /// the expiry is checked again, so these are our own claims, only too old. For the
    /// record of who came back with an old token; never to let them in.
    pub fn expired_claims(&self, token: &str) -> Option<Claims> {
        let mut validation = self.validation.clone();
        validation.validate_exp = false;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).ok().map(|d| d.claims)
    }

    /// Checks a token's signature, algorithm, expiry, audience and issuer.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                ErrorKind::InvalidAlgorithm
                | ErrorKind::InvalidAlgorithmName
                | ErrorKind::UnsupportedAlgorithm => {
                    AuthError::Invalid("algorithm not allowed: expected EdDSA".into())
                }
                ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
                ErrorKind::InvalidIssuer => {
                    AuthError::Invalid("wrong issuer: not issued by this relay".into())
                }
                ErrorKind::MissingRequiredClaim(c) => AuthError::Invalid(format!("missing claim {c:?}")),
                _ => AuthError::Invalid(format!("malformed token: {e}")),
            }),
        }
    }
}

/// A new join token: `ajt_` and 32 random bytes in hex. Shown once, stored as its hash.
pub fn new_join_token() -> String {
    format!("ajt_{}", hex::encode(random_bytes::<32>()))
}

/// SHA-256 of a token, lowercase hex: the form tokens are stored and looked up in.
pub fn token_hash(token: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()))
}

/// No 0/O/o, 1/l/I/i: the first admin's password is read off a terminal and typed again.
const PASSWORD_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
const PASSWORD_LEN: usize = 20;

/// A random password of 20 characters from an unambiguous alphabet (~115 bits).
pub fn new_password() -> String {
    let n = PASSWORD_ALPHABET.len();
    // Bytes at or above the largest multiple of `n` are skipped, so every character is
    // equally likely.
    let limit = 256 - 256 % n;
    let mut out = String::with_capacity(PASSWORD_LEN);
    while out.len() < PASSWORD_LEN {
        for b in random_bytes::<32>() {
            if (b as usize) < limit && out.len() < PASSWORD_LEN {
                out.push(PASSWORD_ALPHABET[b as usize % n] as char);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "assist-relay:test";

    fn keys() -> TokenKeys {
        TokenKeys::from_pem(&TokenKeys::generate_pem(), ISSUER.into()).unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims(keys: &TokenKeys) -> Claims {
        Claims {
            sub: "alice".into(),
            org: "vendor".into(),
            role: Role::Engineer,
            aud: TOKEN_AUDIENCE.into(),
            iss: keys.issuer.clone(),
            iat: now(),
            exp: now() + 600,
            jti: None,
        }
    }

    fn signed(keys: &TokenKeys, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &keys.encoding).unwrap()
    }

    fn invalid(keys: &TokenKeys, token: &str) -> String {
        match keys.verify(token) {
            Err(AuthError::Invalid(why)) => why,
            other => panic!("expected an invalid token, got {other:?}"),
        }
    }

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horse!", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_ne!(hash, hash_password("correct horse").unwrap(), "salts differ");
    }

    #[test]
    fn a_valid_token_round_trips() {
        let keys = keys();
        let (token, expires_at) =
            keys.issue(&"alice".into(), &"vendor".into(), Role::Approver, now(), Duration::from_secs(3600));
        let c = keys.verify(&token).unwrap();
        assert_eq!((c.sub.as_str(), c.org.as_str(), c.role), ("alice", "vendor", Role::Approver));
        assert_eq!((c.aud.as_str(), c.iss.as_str()), (TOKEN_AUDIENCE, ISSUER));
        assert_eq!(expires_at, c.exp as i64 * 1000);
        assert_eq!(c.exp - c.iat, 3600);
    }

    #[test]
    fn an_expired_token_is_expired() {
        let keys = keys();
        let (token, _) = keys.issue(
            &"alice".into(),
            &"vendor".into(),
            Role::Engineer,
            now() - 1200,
            Duration::from_secs(600),
        );
        assert!(matches!(keys.verify(&token), Err(AuthError::Expired)));
    }

    #[test]
    fn another_keys_token_is_invalid() {
        let (other, _) =
            keys().issue(&"alice".into(), &"vendor".into(), Role::Admin, now(), Duration::from_secs(60));
        assert_eq!(invalid(&keys(), &other), "bad signature");
    }

    #[test]
    fn alg_none_and_hs256_are_refused() {
        let keys = keys();
        let payload = base64_url(&serde_json::to_vec(&claims(&keys)).unwrap());
        let none = format!("{}.{payload}.", base64_url(br#"{"alg":"none","typ":"JWT"}"#));
        invalid(&keys, &none);
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(&keys),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(invalid(&keys, &hs), "algorithm not allowed: expected EdDSA");
    }

    #[test]
    fn wrong_audience_or_issuer_or_garbage_is_invalid() {
        let keys = keys();
        let aud = Claims { aud: "someone-else".into(), ..claims(&keys) };
        assert_eq!(invalid(&keys, &signed(&keys, &aud)), "wrong audience");
        let iss = Claims { iss: "assist-relay:other".into(), ..claims(&keys) };
        assert!(invalid(&keys, &signed(&keys, &iss)).starts_with("wrong issuer"));
        invalid(&keys, "garbage");
        invalid(&keys, "");
    }

    /// Unpadded base64url, enough to hand-build a JWT.
    fn base64_url(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn generated_secrets_have_their_shape() {
        let t = new_join_token();
        assert!(t.starts_with("ajt_") && t.len() == 4 + 64 && t[4..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(t, new_join_token());
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let p = new_password();
        assert_eq!(p.len(), PASSWORD_LEN);
        assert!(p.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)));
    }
}
