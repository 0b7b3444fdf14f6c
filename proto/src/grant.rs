//! Grants: the relay's signed statement of what a session may do, and until when.
//!
//! The relay signs a [`Grant`] with its Ed25519 grant key; the agent received the public
//! half at enrollment and verifies every grant itself before it opens a channel, so a
//! relay bug or a modified engineer client cannot widen what the customer approved.
//!
//! The signature covers the exact JSON bytes in [`SignedGrant::body`], so verification does
//! not depend on re-serialising.

use crate::caps::Capability;
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
    /// Who approved: an approver's name, `prompt@AGENT`, or `window:ID`.
    pub approver: String,
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

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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
            approver: "bob".into(),
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
