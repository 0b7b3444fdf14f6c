//! The web console's HTTPS identity: which certificate its listener presents.
//!
//! - By default the relay's own CA issues a certificate at every start, for the names of
//!   `serve --console-name` (default `localhost` and the host's name), with a fresh key
//!   kept in memory only. Browsers trust it once the relay's `ca.pem` is trusted.
//! - `--console-cert` and `--console-key` take a PEM chain and key from the
//!   organisation's own PKI instead; the relay CA then plays no part.
//!
//! TLS runs on the aws-lc-rs provider like everything else, TLS 1.2 and 1.3, ALPN
//! `http/1.1`. It does not serve HTTP/2 and does not watch the PEM files for changes.

use assist_certs::{Ca, CertError, Fingerprint};
use std::path::PathBuf;
use std::sync::Arc;

/// Where the console's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleCert {
    /// Issued by the relay CA at start for these names.
    Issued { names: Vec<String> },
    /// PEM files: the chain (leaf first) and its private key.
    Files { cert: PathBuf, key: PathBuf },
}

impl ConsoleCert {
    /// The default names: `localhost` and this host's name.
    pub fn default_names() -> Vec<String> {
        let mut names = vec!["localhost".to_owned()];
        let host = rustix::system::uname().nodename().to_string_lossy().trim().to_owned();
        if !host.is_empty() && host != "localhost" {
            names.push(host);
        }
        names
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleTlsError {
    #[error("console certificate: {0}")]
    Cert(#[from] CertError),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no certificate")]
    NoCert { path: PathBuf },
    #[error("console TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The console's TLS acceptor, and what to tell people about its certificate.
pub struct ConsoleTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// SHA-256 of the leaf certificate.
    pub leaf: Fingerprint,
    /// SHA-256 of the leaf's SubjectPublicKeyInfo, base64 (what Chromium's
    /// `--ignore-certificate-errors-spki-list` and HPKP-style pins name).
    pub spki_sha256_base64: String,
    /// How to trust it, for the start-up output.
    pub trust_hint: String,
}

impl std::fmt::Debug for ConsoleTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleTls").field("leaf", &self.leaf).finish_non_exhaustive()
    }
}

/// Builds the acceptor for `cert`, issuing from `ca` if asked to.
pub fn build(cert: &ConsoleCert, ca: &Ca, ca_path: &std::path::Path) -> Result<ConsoleTls, ConsoleTlsError> {
    let (chain_pem, key_pem, hint) = match cert {
        ConsoleCert::Issued { names } => {
            let issued = ca.issue_web_server(names)?;
            let hint = format!(
                "certificate for {} from the relay CA {}: trust {} in the browser or system",
                names.join(", "),
                ca.fingerprint(),
                ca_path.display()
            );
            (issued.cert_pem, issued.key_pem, hint)
        }
        ConsoleCert::Files { cert, key } => {
            let read = |p: &PathBuf| {
                std::fs::read_to_string(p).map_err(|source| ConsoleTlsError::Read { path: p.clone(), source })
            };
            (read(cert)?, read(key)?, format!("certificate from {}", cert.display()))
        }
    };
    let chain = assist_certs::certs_from_pem(&chain_pem)?;
    let leaf_der = chain.first().ok_or_else(|| ConsoleTlsError::NoCert {
        path: match cert {
            ConsoleCert::Files { cert, .. } => cert.clone(),
            ConsoleCert::Issued { .. } => PathBuf::from("(issued)"),
        },
    })?;
    let leaf = Fingerprint::of_der(leaf_der);
    let spki = assist_certs::spki_of(leaf_der)?;
    let spki_sha256_base64 =
        base64_encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki).as_ref());
    let key = assist_certs::key_from_pem(&key_pem)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(assist_net::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ConsoleTls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
        leaf,
        spki_sha256_base64,
        trust_hint: hint,
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn an_issued_certificate_chains_to_the_relay_ca_and_names_what_was_asked() {
        let ca = Ca::generate("test").unwrap();
        let names = vec!["localhost".to_owned(), "console.example".to_owned()];
        let tls = build(&ConsoleCert::Issued { names }, &ca, std::path::Path::new("/d/ca.pem")).unwrap();
        assert!(tls.trust_hint.contains(&ca.fingerprint().to_string()), "{}", tls.trust_hint);
        assert_eq!(tls.spki_sha256_base64.len(), 44);
    }
}
