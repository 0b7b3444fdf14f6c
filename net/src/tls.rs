//! rustls configurations, always on the aws-lc-rs provider and TLS 1.3 (QUIC requires it).
//!
//! Clients never use the system's root store: a relay is trusted only if the chain it
//! presents contains a CA certificate whose SHA-256 fingerprint the user pinned, and the
//! relay's certificate verifies against that CA ([`RelayVerifier`] with [`Trust::Pinned`]).
//! [`Trust::Probe`] supports first contact: it records the CA the relay presents and then
//! refuses the handshake, so the user can be asked before anything secret is sent.

use assist_certs::Fingerprint;
use assist_proto::ALPN;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The relay's TLS configuration: its certificate chain (server certificate, then CA), and
/// the CA that agent client certificates must chain to. Clients without a certificate
/// (engineers, enrolling agents) are let through the handshake; the relay then requires
/// a token from them.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: CertificateDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.add(client_ca)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

/// A client's configuration, trusting whatever `verifier` accepts, optionally presenting a
/// client certificate.
pub fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}

/// What the relay presented in a handshake, for error messages and first contact.
#[derive(Debug, Default, Clone)]
pub struct Presented {
    /// Fingerprint of the last certificate of the chain (the relay's CA).
    pub ca: Option<Fingerprint>,
}

/// What a client trusts in a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// A relay whose chain contains the CA with this fingerprint, with the server
    /// certificate valid under that CA for the server name asked for.
    Pinned(Fingerprint),
    /// Nothing: first contact. The CA the relay presents is recorded, then the handshake
    /// is refused, so the user can be asked before anything secret is sent.
    Probe,
}

/// The client's one server-certificate verifier. Whatever it trusts, it records the CA the
/// relay presented (for error messages and first contact), refuses TLS 1.2, and checks
/// TLS 1.3 signatures with the aws-lc-rs provider.
#[derive(Debug)]
pub struct RelayVerifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
    algs: WebPkiSupportedAlgorithms,
    presented: Arc<Mutex<Presented>>,
}

impl RelayVerifier {
    pub fn new(trust: Trust) -> Self {
        let provider = provider();
        Self { trust, algs: provider.signature_verification_algorithms, provider, presented: Arc::default() }
    }

    /// What the relay presented in the last handshake.
    pub fn presented(&self) -> Arc<Mutex<Presented>> {
        self.presented.clone()
    }
}

impl ServerCertVerifier for RelayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut p) = self.presented.lock() {
            p.ca = intermediates.last().map(|c| Fingerprint::of_der(c));
        }
        let pinned = match self.trust {
            Trust::Pinned(pinned) => pinned,
            Trust::Probe => {
                return Err(rustls::Error::General("probe only: the relay's CA is not trusted yet".into()));
            }
        };
        let ca = intermediates
            .iter()
            .find(|c| Fingerprint::of_der(c) == pinned)
            .ok_or_else(|| rustls::Error::General("relay CA does not match the pinned fingerprint".into()))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used by assist".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
