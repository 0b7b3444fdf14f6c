//! The cluster bundle: the keys every relay of a cluster shares, in one private file.
//!
//! `assist-relay cluster init --out FILE` writes it (mode 0600, never over an existing
//! file); `serve --cluster-bundle FILE` on each relay puts its keys in that relay's data
//! directory at the first start and checks them at every later one
//! ([`crate::datadir::DataDir::init_or_open_cluster`]). It holds what must be the same on
//! every relay: the CA (certificate and key: agents pin its fingerprint, and every relay
//! issues its own server certificate from it), the token key (a token from one relay is
//! good on all), the grant key (it also signs recordings' seals) and the secrets key that
//! seals TOTP secrets in the shared database. Each relay's server certificate stays its
//! own.
//!
//! The keys are never written to the database. The file is as secret as the keys: keep
//! it like a backup of the data directory. It does not rotate keys.

use crate::auth::{self, TokenKeys};
use assist_certs::{Ca, Fingerprint};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The value of [`Bundle::format`] this version writes and reads.
pub const FORMAT: &str = "assist-cluster-bundle/1";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{} already exists; a cluster bundle is never overwritten (its keys may be in use)", path.display())]
    Exists { path: PathBuf },
    #[error("{} is not a cluster bundle: {reason}", path.display())]
    Bad { path: PathBuf, reason: String },
    #[error("cannot make keys: {0}")]
    Keys(String),
}

/// The shared keys, PEM (the secrets key hex), as the file holds them.
#[derive(Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub ca_cert: String,
    pub ca_key: String,
    pub token_key: String,
    pub grant_key: String,
    /// 32 bytes, hex: seals TOTP secrets at rest (`totp.key` in a data directory).
    pub secrets_key: String,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle").field("format", &self.format).finish_non_exhaustive()
    }
}

impl Bundle {
    /// New keys for a new cluster.
    pub fn generate() -> Result<Bundle, BundleError> {
        let ca = Ca::generate("assist relay").map_err(|e| BundleError::Keys(e.to_string()))?;
        Ok(Bundle {
            format: FORMAT.into(),
            ca_cert: ca.cert_pem().to_owned(),
            ca_key: ca.key_pem().to_owned(),
            token_key: TokenKeys::generate_pem(),
            grant_key: auth::ed25519_pkcs8_pem(),
            secrets_key: hex::encode(assist_certs::random_bytes::<{ crate::store::sealed::KEY_LEN }>()),
        })
    }

    /// Writes the bundle to `path`, mode 0600, refusing to replace any file there.
    pub fn write_new(&self, path: &Path) -> Result<(), BundleError> {
        let io = |error| BundleError::Io { path: path.to_owned(), error };
        if path.exists() {
            return Err(BundleError::Exists { path: path.to_owned() });
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = match options.open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(BundleError::Exists { path: path.to_owned() });
            }
            Err(e) => return Err(io(e)),
        };
        let text = serde_json::to_string_pretty(self).expect("a bundle serialises");
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = fs::remove_file(path);
            return Err(io(e));
        }
        Ok(())
    }

    /// Reads and checks a bundle: every key parses, and the CA certificate goes with its
    /// key.
    pub fn read(path: &Path) -> Result<Bundle, BundleError> {
        let bad = |reason: String| BundleError::Bad { path: path.to_owned(), reason };
        let text =
            fs::read_to_string(path).map_err(|error| BundleError::Io { path: path.to_owned(), error })?;
        let bundle: Bundle = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if bundle.format != FORMAT {
            return Err(bad(format!("format {:?}, expected {FORMAT:?}", bundle.format)));
        }
        Ca::from_pem(&bundle.ca_cert, &bundle.ca_key).map_err(|e| bad(format!("CA: {e}")))?;
        TokenKeys::from_pem(&bundle.token_key, String::new()).map_err(|e| bad(format!("token key: {e}")))?;
        auth::ed25519_from_pem(&bundle.grant_key).map_err(|e| bad(format!("grant key: {e}")))?;
        match hex::decode(bundle.secrets_key.trim()) {
            Ok(k) if k.len() == crate::store::sealed::KEY_LEN => {}
            _ => return Err(bad("secrets key: not 32 bytes of hex".into())),
        }
        Ok(bundle)
    }

    /// The key that signs grants and recordings' seals (what `recording verify` checks
    /// against, as a data directory's `grant.key`).
    pub fn grant_key(&self) -> Result<aws_lc_rs::signature::Ed25519KeyPair, BundleError> {
        auth::ed25519_from_pem(&self.grant_key)
            .map(|(_, key)| key)
            .map_err(|e| BundleError::Keys(e.to_string()))
    }

    /// Opens the cluster's database (`postgres://…`) with the bundle's secrets key, for
    /// an administration command run where there is no relay data directory.
    pub async fn store(
        &self,
        database: &str,
    ) -> Result<std::sync::Arc<dyn crate::store::Store>, crate::store::StoreError> {
        let key = hex::decode(self.secrets_key.trim())
            .map_err(|e| crate::store::StoreError::Corrupt(format!("bundle secrets key: {e}")))?;
        let key = crate::store::sealed::SecretsKey::new(&key)?;
        // The data directory is used only without a URL; there is always one here.
        crate::store::open(Some(database), Path::new("."), Some(key)).await
    }

    /// The CA's fingerprint (what agents and clients pin).
    pub fn ca_fingerprint(&self) -> Result<Fingerprint, BundleError> {
        Ca::from_pem(&self.ca_cert, &self.ca_key)
            .map(|ca| ca.fingerprint())
            .map_err(|e| BundleError::Keys(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_bundle_is_private_never_overwritten_and_reads_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cluster.json");
        let bundle = Bundle::generate().unwrap();
        bundle.write_new(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let back = Bundle::read(&path).unwrap();
        assert_eq!(back.ca_fingerprint().unwrap(), bundle.ca_fingerprint().unwrap());
        assert_eq!(
            (&back.token_key, &back.grant_key, &back.secrets_key),
            (&bundle.token_key, &bundle.grant_key, &bundle.secrets_key)
        );

        let other = Bundle::generate().unwrap();
        assert!(matches!(other.write_new(&path), Err(BundleError::Exists { .. })));
        assert_eq!(Bundle::read(&path).unwrap().ca_fingerprint().unwrap(), bundle.ca_fingerprint().unwrap());

        fs::write(tmp.path().join("bad.json"), "{\"format\":\"x\"}").unwrap();
        assert!(matches!(Bundle::read(&tmp.path().join("bad.json")), Err(BundleError::Bad { .. })));
    }
}
