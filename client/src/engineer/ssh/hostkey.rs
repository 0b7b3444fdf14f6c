//! The SSH host keys `assist ssh-proxy` presents: one Ed25519 key per agent, made on first
//! use and kept under the engineer's config directory (`ssh/keys/AGENT`, 0600), and the
//! `ssh/known_hosts` file that pins each key to `AGENT.assist`, so that OpenSSH never asks
//! whether to trust the host.
//!
//! The key only stands for "this engineer's own `assist` process, speaking for AGENT":
//! it authenticates nothing towards the relay or the agent (the relay's certificate and
//! the engineer's login do that). It does not read or write `~/.ssh`.

use super::super::config::ConfigDir;
use crate::files::{create_private_dir, write_private};
use assist_proto::ids::AgentName;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{HashAlg, LineEnding};
use russh::keys::{PrivateKey, PublicKey};
use std::path::{Path, PathBuf};

/// The suffix that names an agent as an SSH host (`erp-db01.assist`).
pub const DOMAIN: &str = ".assist";

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an SSH private key ({reason}); delete it to make a new one")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{0:?} cannot name an agent: use letters, digits, '.', '-' and '_' only")]
    BadName(String),
}

/// The host keys in one config directory.
#[derive(Clone, Debug)]
pub struct HostKeys {
    dir: PathBuf,
}

/// An agent's key and the line that pins it.
#[derive(Debug)]
pub struct HostKey {
    pub key: PrivateKey,
    /// `AGENT.assist ssh-ed25519 AAAA...`
    pub known_host: String,
}

impl HostKey {
    pub fn public(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// `SHA256:...`, as `ssh` shows it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }
}

/// The agent an SSH host name stands for: `erp-db01.assist` and `erp-db01` are both
/// `erp-db01`.
pub fn agent_of(host: &str) -> Result<AgentName, HostKeyError> {
    let name = host.strip_suffix(DOMAIN).unwrap_or(host);
    let plain = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !plain {
        return Err(HostKeyError::BadName(host.to_owned()));
    }
    Ok(AgentName::new(name))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HostKeyError + '_ {
    move |source| HostKeyError::Io { path: path.to_owned(), source }
}

impl HostKeys {
    pub fn new(cfg: &ConfigDir) -> Self {
        Self { dir: cfg.path().join("ssh") }
    }

    /// The file `UserKnownHostsFile` names.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.join("keys")
    }

    /// The agent's key, made now if it has none, and pinned in `known_hosts`.
    pub fn for_agent(&self, agent: &AgentName) -> Result<HostKey, HostKeyError> {
        let keys = self.keys_dir();
        let path = keys.join(agent.as_str());
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => PrivateKey::from_openssh(text.as_bytes())
                .map_err(|e| HostKeyError::Corrupt { path: path.clone(), reason: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_private_dir(&keys).map_err(io(&keys))?;
                let seed = assist_certs::random_bytes::<32>();
                let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
                let text = key
                    .to_openssh(LineEnding::LF)
                    .map_err(|e| HostKeyError::Corrupt { path: path.clone(), reason: e.to_string() })?;
                write_private(&path, text.as_bytes()).map_err(io(&path))?;
                key
            }
            Err(e) => return Err(HostKeyError::Io { path, source: e }),
        };
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| HostKeyError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        let known_host = format!("{agent}{DOMAIN} {public}");
        self.pin(&known_host)?;
        Ok(HostKey { key, known_host })
    }

    /// Adds the line to `known_hosts` unless it is there. The file is replaced whole
    /// (atomically), so a reader never sees half a line.
    fn pin(&self, line: &str) -> Result<(), HostKeyError> {
        let file = self.known_hosts();
        let old = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(HostKeyError::Io { path: file, source: e }),
        };
        if old.lines().any(|l| l == line) {
            return Ok(());
        }
        let host = line.split(' ').next().unwrap_or_default();
        let mut text: String =
            old.lines().filter(|l| l.split(' ').next() != Some(host)).map(|l| format!("{l}\n")).collect();
        text.push_str(line);
        text.push('\n');
        create_private_dir(&self.dir).map_err(io(&self.dir))?;
        write_private(&file, text.as_bytes()).map_err(io(&file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_pinned_once() {
        let dir = tempfile::tempdir().unwrap();
        let keys = HostKeys::new(&ConfigDir::locate(Some(dir.path().to_owned())).unwrap());
        let agent = AgentName::new("erp-db01");
        let first = keys.for_agent(&agent).unwrap();
        let again = keys.for_agent(&agent).unwrap();
        assert_eq!(first.known_host, again.known_host);
        assert!(first.known_host.starts_with("erp-db01.assist ssh-ed25519 "));
        keys.for_agent(&AgentName::new("other")).unwrap();
        let pinned = std::fs::read_to_string(keys.known_hosts()).unwrap();
        assert_eq!(pinned.lines().count(), 2, "{pinned}");
        assert!(pinned.lines().any(|l| l == first.known_host));
    }

    #[test]
    fn host_names_map_to_agents() {
        assert_eq!(agent_of("erp-db01.assist").unwrap().as_str(), "erp-db01");
        assert_eq!(agent_of("erp-db01").unwrap().as_str(), "erp-db01");
        for bad in ["", ".assist", "../x.assist", "a/b", "a b", ".hidden"] {
            assert!(agent_of(bad).is_err(), "{bad}");
        }
    }
}
