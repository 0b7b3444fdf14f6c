//! The agent's enrollment on disk: which relay, under which name, with which certificate,
//! and the relay's grant key; and, for a cluster of relays, the relays it last learnt of
//! (`relays.json`), so that it reconnects to each after a restart.
//!
//! Location: `--data-dir`, else `$ASSIST_AGENT_DIR`, else the platform's data directory
//! (`~/.local/share/assist-agent` on Linux). `agent.key` never leaves this directory.

use crate::files::write_private;
use assist_certs::Fingerprint;
use assist_net::ClientIdentity;
use assist_proto::msg::RelayAddress;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The cluster's relays as the agent last learnt them ([`AgentDir::cluster_relays`]).
pub const RELAYS_FILE: &str = "relays.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no data directory could be determined; pass --data-dir")]
    NoHome,
    #[error("this agent is not enrolled (no {0}); run `assist-agent enroll` first")]
    NotEnrolled(PathBuf),
    #[error("this agent is already enrolled as {name} with {relay}; pass --force to enroll again")]
    AlreadyEnrolled { name: String, relay: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// What enrollment produced, besides the key and certificate files.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enrollment {
    pub relay: String,
    pub name: String,
    pub org: String,
    pub ca_fingerprint: String,
    /// The relay's Ed25519 grant public key, hex.
    pub grant_key: String,
}

#[derive(Debug, Clone)]
pub struct AgentDir(PathBuf);

impl AgentDir {
    pub fn locate(explicit: Option<PathBuf>) -> Result<Self, StateError> {
        if let Some(p) = explicit {
            return Ok(Self(p));
        }
        directories::ProjectDirs::from("", "", "assist-agent")
            .map(|d| Self(d.data_dir().to_path_buf()))
            .ok_or(StateError::NoHome)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn read(&self, name: &str) -> Result<String, StateError> {
        let path = self.file(name);
        std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                StateError::NotEnrolled(path)
            } else {
                StateError::Io { path, source }
            }
        })
    }

    fn write(&self, name: &str, text: &str) -> Result<(), StateError> {
        let path = self.file(name);
        write_private(&path, text.as_bytes()).map_err(|source| StateError::Io { path, source })
    }

    pub fn enrollment(&self) -> Result<Enrollment, StateError> {
        let text = self.read("agent.json")?;
        serde_json::from_str(&text)
            .map_err(|e| StateError::Corrupt { path: self.file("agent.json"), reason: e.to_string() })
    }

    /// Refuses to overwrite an enrollment unless `force`.
    pub fn check_fresh(&self, force: bool) -> Result<(), StateError> {
        match self.enrollment() {
            Ok(e) if !force => Err(StateError::AlreadyEnrolled { name: e.name, relay: e.relay }),
            _ => Ok(()),
        }
    }

    /// Saves the key first and the enrollment record last, so a half-finished enrollment
    /// is never mistaken for a complete one.
    pub fn save(
        &self,
        enrollment: &Enrollment,
        key_pem: &str,
        cert_pem: &str,
        ca_pem: &str,
    ) -> Result<(), StateError> {
        // Another enrollment's cluster is not this one's.
        let relays = self.file(RELAYS_FILE);
        match std::fs::remove_file(&relays) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StateError::Io { path: relays, source: e });
            }
            _ => {}
        }
        self.write("agent.key", key_pem)?;
        self.write("agent.pem", cert_pem)?;
        self.write("ca.pem", ca_pem)?;
        self.write("agent.json", &serde_json::to_string_pretty(enrollment).expect("serialises"))
    }

    /// The relays of the agent's cluster as last told by one of them (empty for a single
    /// relay, or when the file is unreadable: the agent then starts from its enrollment's
    /// relay and learns the list again).
    pub fn cluster_relays(&self) -> Vec<RelayAddress> {
        let path = self.file(RELAYS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable list of relays");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        }
    }

    /// Keeps the cluster's relays for the next start (`relays.json`, beside the enrollment).
    pub fn save_cluster_relays(&self, relays: &[RelayAddress]) -> Result<(), StateError> {
        self.write(RELAYS_FILE, &serde_json::to_string_pretty(relays).expect("serialises"))
    }

    /// The agent's private key, for countersigning what it saw.
    pub fn signing_key(&self) -> Result<aws_lc_rs::signature::EcdsaKeyPair, StateError> {
        let corrupt = |reason: String| StateError::Corrupt { path: self.file("agent.key"), reason };
        let key = assist_certs::key_from_pem(&self.read("agent.key")?).map_err(|e| corrupt(e.to_string()))?;
        aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            key.secret_der(),
        )
        .map_err(|e| corrupt(e.to_string()))
    }

    pub fn identity(&self) -> Result<ClientIdentity, StateError> {
        let corrupt = |name: &str, e: assist_certs::CertError| StateError::Corrupt {
            path: self.file(name),
            reason: e.to_string(),
        };
        let chain =
            assist_certs::certs_from_pem(&self.read("agent.pem")?).map_err(|e| corrupt("agent.pem", e))?;
        let key =
            assist_certs::key_from_pem(&self.read("agent.key")?).map_err(|e| corrupt("agent.key", e))?;
        Ok(ClientIdentity { chain, key })
    }
}

impl Enrollment {
    pub fn fingerprint(&self) -> Result<Fingerprint, StateError> {
        self.ca_fingerprint.parse().map_err(|e: assist_certs::CertError| StateError::Corrupt {
            path: "agent.json".into(),
            reason: e.to_string(),
        })
    }

    pub fn grant_key_bytes(&self) -> Result<Vec<u8>, StateError> {
        hex::decode(&self.grant_key)
            .map_err(|e| StateError::Corrupt { path: "agent.json".into(), reason: format!("grant key: {e}") })
    }
}
