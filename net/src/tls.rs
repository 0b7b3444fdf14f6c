//! rustls configurations, always on the aws-lc-rs provider and TLS 1.3 (QUIC requires it).
//!
//! Clients never use the system's root store: a relay is trusted only if the chain it
//! presents contains a CA certificate whose SHA-256 fingerprint the user pinned, and the
//! relay's certificate verifies against that CA. [`ProbeVerifier`] supports first contact:
//! it records the CA the relay presents and then refuses the handshake, so the user can be
//! asked before anything secret is sent.

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

/// Trusts a relay whose chain contains the pinned CA, with the server certificate valid
/// under it for the server name asked for.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    pinned: Fingerprint,
    algs: WebPkiSupportedAlgorithms,
    provider: Arc<CryptoProvider>,
    presented: Arc<Mutex<Presented>>,
}

impl PinnedCaVerifier {
    pub fn new(pinned: Fingerprint) -> Self {
        let provider = provider();
        Self { pinned, algs: provider.signature_verification_algorithms, provider, presented: Arc::default() }
    }

    /// What the relay presented in the last handshake.
    pub fn presented(&self) -> Arc<Mutex<Presented>> {
        self.presented.clone()
    }
}

fn record(presented: &Mutex<Presented>, intermediates: &[CertificateDer<'_>]) {
    if let Ok(mut p) = presented.lock() {
        p.ca = intermediates.last().map(|c| Fingerprint::of_der(c));
    }
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        record(&self.presented, intermediates);
        let ca = intermediates
            .iter()
            .find(|c| Fingerprint::of_der(c) == self.pinned)
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

/// First contact: records the relay's CA fingerprint and refuses the handshake.
#[derive(Debug)]
pub struct ProbeVerifier {
    algs: WebPkiSupportedAlgorithms,
    presented: Arc<Mutex<Presented>>,
}

impl Default for ProbeVerifier {
    fn default() -> Self {
        Self { algs: provider().signature_verification_algorithms, presented: Arc::default() }
    }
}

impl ProbeVerifier {
    pub fn presented(&self) -> Arc<Mutex<Presented>> {
        self.presented.clone()
    }
}

impl ServerCertVerifier for ProbeVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        record(&self.presented, intermediates);
        Err(rustls::Error::General("probe only: the relay's CA is not trusted yet".into()))
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
