//! The engineer's local state: relays whose CA was accepted (like ssh's known_hosts) and
//! the current login (relay, token), in a directory only the user can read.
//!
//! Location: `--config-dir`, else `$ASSIST_CONFIG_DIR`, else the platform's config
//! directory (`~/.config/assist` on Linux).

use crate::files::write_private;
use assist_certs::Fingerprint;
use assist_proto::caps::Role;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no configuration directory could be determined; pass --config-dir")]
    NoHome,
    #[error("not logged in: run `assist login --relay HOST:PORT --user NAME` first")]
    NotLoggedIn,
    #[error("your login expired; run `assist login` again")]
    Expired,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is corrupt ({reason}); delete it and log in again")]
    Corrupt { path: PathBuf, reason: String },
}

/// The current login, cached by `assist login`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Login {
    pub relay: String,
    pub ca_fingerprint: String,
    pub user: String,
    pub org: String,
    pub role: Role,
    pub token: String,
    /// Unix milliseconds.
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct ConfigDir(PathBuf);

impl ConfigDir {
    pub fn locate(explicit: Option<PathBuf>) -> Result<Self, ConfigError> {
        if let Some(p) = explicit {
            return Ok(Self(p));
        }
        directories::ProjectDirs::from("", "", "assist")
            .map(|d| Self(d.config_dir().to_path_buf()))
            .ok_or(ConfigError::NoHome)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    fn known_relays(&self) -> PathBuf {
        self.0.join("known_relays")
    }

    fn login_file(&self) -> PathBuf {
        self.0.join("login.json")
    }

    /// The CA fingerprint accepted earlier for this relay address, if any.
    pub fn known_fingerprint(&self, relay: &str) -> Result<Option<Fingerprint>, ConfigError> {
        let path = self.known_relays();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        for line in text.lines() {
            if let Some((addr, fp)) = line.split_once(' ')
                && addr == relay
            {
                {
                    return fp.parse().map(Some).map_err(|e: assist_certs::CertError| ConfigError::Corrupt {
                        path,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(None)
    }

    /// Remembers (or replaces) the CA fingerprint of a relay address.
    pub fn remember(&self, relay: &str, fp: Fingerprint) -> Result<(), ConfigError> {
        let path = self.known_relays();
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<String> = old
            .lines()
            .filter(|l| l.split_once(' ').map(|(a, _)| a) != Some(relay))
            .map(str::to_owned)
            .collect();
        lines.push(format!("{relay} {fp}"));
        let text = lines.join("\n") + "\n";
        write_private(&path, text.as_bytes()).map_err(|source| ConfigError::Io { path, source })
    }

    pub fn save_login(&self, login: &Login) -> Result<(), ConfigError> {
        let path = self.login_file();
        let json = serde_json::to_vec_pretty(login).expect("a login serialises");
        write_private(&path, &json).map_err(|source| ConfigError::Io { path, source })
    }

    /// The current login, if it has not expired at `now` (Unix ms).
    pub fn load_login(&self, now: i64) -> Result<Login, ConfigError> {
        let path = self.login_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ConfigError::NotLoggedIn),
            Err(source) => return Err(ConfigError::Io { path, source }),
        };
        let login: Login = serde_json::from_slice(&bytes)
            .map_err(|e| ConfigError::Corrupt { path, reason: e.to_string() })?;
        if login.expires_at <= now {
            return Err(ConfigError::Expired);
        }
        Ok(login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_relays_and_login() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ConfigDir::locate(Some(dir.path().join("cfg"))).unwrap();
        let a = Fingerprint::of_der(b"a");
        let b = Fingerprint::of_der(b"b");
        assert_eq!(cfg.known_fingerprint("r:1").unwrap(), None);
        cfg.remember("r:1", a).unwrap();
        cfg.remember("r:2", b).unwrap();
        cfg.remember("r:1", b).unwrap();
        assert_eq!(cfg.known_fingerprint("r:1").unwrap(), Some(b));
        assert_eq!(cfg.known_fingerprint("r:2").unwrap(), Some(b));

        assert!(matches!(cfg.load_login(0), Err(ConfigError::NotLoggedIn)));
        let login = Login {
            relay: "r:1".into(),
            ca_fingerprint: a.to_string(),
            user: "alice".into(),
            org: "vendor".into(),
            role: Role::Engineer,
            token: "t".into(),
            expires_at: 100,
        };
        cfg.save_login(&login).unwrap();
        assert_eq!(cfg.load_login(99).unwrap().token, "t");
        assert!(matches!(cfg.load_login(100), Err(ConfigError::Expired)));
    }
}
