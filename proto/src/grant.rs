//! Grants: the relay's signed statement of what a session may do, and until when.
//!
//! The relay signs a [`Grant`] with its Ed25519 grant key; the agent received the public
//! half at enrollment and verifies every grant itself before it opens a channel, so a
//! relay bug or a modified engineer client cannot widen what the customer approved.
//!
//! The signature covers the exact JSON bytes in [`SignedGrant::body`], so verification does
//! not depend on re-serialising.

use crate::caps::Capability;
use crate::consent::ConsentSource;
use crate::ids::{AgentName, SessionId, UserName};
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub session: SessionId,
    pub agent: AgentName,
    pub engineer: UserName,
    pub capabilities: Vec<Capability>,
    /// Unix milliseconds.
    pub not_before: i64,
    /// Unix milliseconds.
    pub expires_at: i64,
    /// Who approved. Serialised as the plain string it always was (an approver's name,
    /// `prompt@AGENT` or `window:ID`), so grants signed before the type existed verify.
    pub approver: ConsentSource,
    /// 1 for the first approval; each escalation, extension or revocation signs a new grant
    /// with the next revision, which replaces the previous one everywhere.
    pub revision: u32,
    /// The approver's note, shown to the engineer.
    pub note: Option<String>,
}

impl Grant {
    /// Whether some granted capability allows `cap` (equal, or `cap` is narrower).
    pub fn covers(&self, cap: &Capability) -> bool {
        self.capabilities.iter().any(|g| cap.within(g))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedGrant {
    /// The grant as JSON; the signature covers these bytes.
    pub body: String,
    /// Ed25519 signature over `body`, hex.
    pub signature: String,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum GrantError {
    #[error("grant signature is not valid for the relay's grant key")]
    BadSignature,
    #[error("grant is malformed: {0}")]
    Malformed(String),
    #[error("grant is for session {found}, not {expected}")]
    WrongSession { expected: SessionId, found: SessionId },
    #[error("grant is for agent {found}, not {expected}")]
    WrongAgent { expected: AgentName, found: AgentName },
    #[error("grant is not valid yet")]
    NotYetValid,
    #[error("grant expired")]
    Expired,
    #[error("grant does not cover {0}")]
    NotCovered(String),
}

impl SignedGrant {
    /// Signs a grant with the relay's key.
    pub fn sign(grant: &Grant, key: &Ed25519KeyPair) -> Self {
        let body = serde_json::to_string(grant).expect("a grant always serialises");
        let signature = hex::encode(key.sign(body.as_bytes()).as_ref());
        Self { body, signature }
    }

    /// Checks the signature with the relay's public key and returns the grant. Does not
    /// check what the grant is for: see [`SignedGrant::check`].
    pub fn verify(&self, public_key: &[u8]) -> Result<Grant, GrantError> {
        let sig = hex::decode(&self.signature).map_err(|_| GrantError::BadSignature)?;
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(self.body.as_bytes(), &sig)
            .map_err(|_| GrantError::BadSignature)?;
        serde_json::from_str(&self.body).map_err(|e| GrantError::Malformed(e.to_string()))
    }

    /// Verifies the signature, then that the grant is for this session and agent, valid at
    /// `now` (Unix ms), and covers `cap`.
    pub fn check(
        &self,
        public_key: &[u8],
        session: &SessionId,
        agent: &AgentName,
        cap: &Capability,
        now: i64,
    ) -> Result<Grant, GrantError> {
        let grant = self.verify(public_key)?;
        if &grant.session != session {
            return Err(GrantError::WrongSession { expected: session.clone(), found: grant.session });
        }
        if &grant.agent != agent {
            return Err(GrantError::WrongAgent { expected: agent.clone(), found: grant.agent });
        }
        if now < grant.not_before {
            return Err(GrantError::NotYetValid);
        }
        if now >= grant.expires_at {
            return Err(GrantError::Expired);
        }
        if !grant.covers(cap) {
            return Err(GrantError::NotCovered(cap.to_string()));
        }
        Ok(grant)
    }
}

/// The public half of a grant key, as raw bytes.
pub fn public_key(key: &Ed25519KeyPair) -> Vec<u8> {
    key.public_key().as_ref().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn grant() -> Grant {
        Grant {
            session: "s-1".into(),
            agent: "erp-db01".into(),
            engineer: "alice".into(),
            capabilities: vec![Capability::Shell],
            not_before: 1_000,
            expires_at: 2_000,
            approver: ConsentSource::Approver("bob".into()),
            revision: 1,
            note: None,
        }
    }

    #[test]
    fn signed_grant_checks() {
        let k = key();
        let pk = public_key(&k);
        let sg = SignedGrant::sign(&grant(), &k);
        let (s, a) = (SessionId::new("s-1"), AgentName::new("erp-db01"));
        assert_eq!(sg.check(&pk, &s, &a, &Capability::Shell, 1_500).unwrap(), grant());
        assert_eq!(sg.check(&pk, &s, &a, &Capability::Shell, 2_000), Err(GrantError::Expired));
        assert_eq!(sg.check(&pk, &s, &a, &Capability::Shell, 999), Err(GrantError::NotYetValid));
        assert!(matches!(
            sg.check(&pk, &"s-2".into(), &a, &Capability::Shell, 1_500),
            Err(GrantError::WrongSession { .. })
        ));
        assert!(matches!(
            sg.check(&pk, &s, &"other".into(), &Capability::Shell, 1_500),
            Err(GrantError::WrongAgent { .. })
        ));
        assert!(matches!(
            sg.check(&pk, &s, &a, &Capability::Clipboard, 1_500),
            Err(GrantError::NotCovered(_))
        ));
    }

    /// Signs `body` as the relay did before the consent source had a type.
    fn signed_old_form(body: &str, k: &Ed25519KeyPair) -> SignedGrant {
        SignedGrant { body: body.to_owned(), signature: hex::encode(k.sign(body.as_bytes()).as_ref()) }
    }

    #[test]
    fn grants_signed_with_the_old_string_approver_still_verify() {
        let k = key();
        let pk = public_key(&k);
        for (approver, expected) in [
            ("bob", ConsentSource::Approver("bob".into())),
            ("prompt@erp-db01", ConsentSource::Prompt("erp-db01".into())),
            ("window:w-0badc0de", ConsentSource::Window("w-0badc0de".into())),
        ] {
            // Written by hand, as the old `approver: String` field serialised.
            let body = format!(
                r#"{{"session":"s-1","agent":"erp-db01","engineer":"alice","capabilities":[{{"kind":"shell"}}],"not_before":1000,"expires_at":2000,"approver":"{approver}","revision":1,"note":null}}"#
            );
            let old = signed_old_form(&body, &k);
            let g = old.check(&pk, &"s-1".into(), &"erp-db01".into(), &Capability::Shell, 1_500).unwrap();
            assert_eq!(g.approver, expected);
            assert_eq!(g.approver.to_string(), approver, "shown as it always was");
            // Signing the typed grant again gives the very same bytes.
            assert_eq!(SignedGrant::sign(&g, &k), old);
        }
    }

    #[test]
    fn a_signed_grant_naming_no_consent_source_is_malformed() {
        let k = key();
        let body = r#"{"session":"s-1","agent":"erp-db01","engineer":"alice","capabilities":[{"kind":"shell"}],"not_before":1000,"expires_at":2000,"approver":"prompt@","revision":1,"note":null}"#;
        let err = signed_old_form(body, &k).verify(&public_key(&k)).unwrap_err();
        assert!(matches!(&err, GrantError::Malformed(m) if m.contains("names no consent source")), "{err}");
    }

    #[test]
    fn forged_or_altered_grants_fail() {
        let k = key();
        let sg = SignedGrant::sign(&grant(), &k);
        // Signed by another key.
        assert_eq!(sg.verify(&public_key(&key())), Err(GrantError::BadSignature));
        // Body widened after signing.
        let mut widened = sg.clone();
        widened.body = widened.body.replace("\"shell\"", "\"clipboard\"");
        assert_eq!(widened.verify(&public_key(&k)), Err(GrantError::BadSignature));
        // Garbage signature.
        let mut junk = sg;
        junk.signature = "zz".into();
        assert_eq!(junk.verify(&public_key(&k)), Err(GrantError::BadSignature));
    }
}
