//! assist's PKI, built on rcgen.
//!
//! - [`Ca`]: the relay's certificate authority. It signs the relay's own server
//!   certificate and the client certificates of enrolled agents.
//! - [`AgentKey`]: an agent's key pair and certificate signing request. The private key is
//!   generated on the agent and never leaves it; the relay signs only the CSR.
//! - [`Fingerprint`]: SHA-256 of a certificate's DER, shown as `SHA256:<hex>` and used to
//!   pin the relay CA on first contact, the way ssh pins host keys.
//!
//! - [`random_bytes`]: bytes from the system's random source, the one helper every assist
//!   crate above this one uses for ids, tokens, keys and jitter.
//!
//! This crate does not read or write files and does not build TLS configurations: it only
//! produces and parses PEM text.

use aws_lc_rs::digest::{SHA256, digest};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::str::FromStr;
use time::{Duration, OffsetDateTime};

pub use rustls_pki_types;

/// How long an agent certificate is valid.
pub const AGENT_CERT_VALIDITY: Duration = Duration::days(365);
/// How long the relay's server certificate is valid.
pub const SERVER_CERT_VALIDITY: Duration = Duration::days(825);
/// How long the CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid PEM: {0}")]
    Pem(String),
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    #[error("invalid fingerprint {0:?}: expected SHA256: followed by 64 hex digits")]
    Fingerprint(String),
}

/// SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        let d = digest(&SHA256, der);
        Fingerprint(d.as_ref().try_into().expect("SHA-256 is 32 bytes"))
    }

    /// Fingerprint of the first certificate in a PEM text.
    pub fn of_pem(pem: &str) -> Result<Self, CertError> {
        Ok(Self::of_der(&first_cert_der(pem)?))
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", self.hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = CertError;

    /// Accepts `SHA256:<hex>`, bare hex, and hex with `:` separators, in either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_prefix("SHA256:").or_else(|| t.strip_prefix("sha256:")).unwrap_or(t);
        let cleaned: String = t.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&cleaned).map_err(|_| CertError::Fingerprint(s.to_owned()))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CertError::Fingerprint(s.to_owned()))?;
        Ok(Fingerprint(arr))
    }
}

/// Parses every certificate in a PEM text.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(CertError::Pem("no certificate found".into()));
    }
    Ok(certs)
}

fn first_cert_der(pem: &str) -> Result<CertificateDer<'static>, CertError> {
    Ok(certs_from_pem(pem)?.remove(0))
}

/// The subject public key (the raw key bytes, e.g. an uncompressed P-256 point) of a
/// certificate, to verify signatures made with the certificate's private key.
pub fn public_key_of(cert_der: &[u8]) -> Result<Vec<u8>, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| CertError::Pem(e.to_string()))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// The whole SubjectPublicKeyInfo (DER) of a certificate: what key pins hash.
pub fn spki_of(cert_der: &[u8]) -> Result<Vec<u8>, CertError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| CertError::Pem(e.to_string()))?;
    Ok(cert.public_key().raw.to_vec())
}

/// Parses a private key from PEM.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| CertError::Pem(e.to_string()))
}

/// `N` bytes from the system's random source (aws-lc-rs). Panics only if the operating
/// system has no random source at all: nothing assist does is safe without one.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::fill(&mut bytes).expect("system random source");
    bytes
}

fn random_serial() -> SerialNumber {
    let mut bytes = random_bytes::<16>();
    bytes[0] &= 0x7f; // keep it positive
    SerialNumber::from_slice(&bytes)
}

fn dn(common_name: &str, org: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertifiedKeyPem {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertifiedKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertifiedKeyPem").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// A certificate issued to an agent.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub fingerprint: Fingerprint,
}

/// The relay's certificate authority.
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    fingerprint: Fingerprint,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a new CA with a fresh ECDSA P-256 key.
    pub fn generate(name: &str) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("{name} CA"), "assist");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        Self::from_pem(&cert.pem(), &key.serialize_pem())
    }

    /// Loads a CA from its certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        let fingerprint = Fingerprint::of_pem(cert_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self { cert_pem: cert_pem.to_owned(), key_pem: key_pem.to_owned(), fingerprint, issuer })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Issues the relay's server certificate. It always names
    /// `assist_proto`'s fixed server name, `localhost` and the loopback addresses, plus
    /// `extra_names` (DNS names or IP addresses).
    pub fn issue_server(
        &self,
        fixed_name: &str,
        extra_names: &[String],
    ) -> Result<CertifiedKeyPem, CertError> {
        let key = KeyPair::generate()?;
        let mut names = vec![fixed_name.to_owned(), "localhost".to_owned()];
        names.extend(extra_names.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        params.subject_alt_names.push(SanType::IpAddress("::1".parse().expect("ip")));
        let cert = self.sign_server(params, fixed_name, &key)?;
        Ok(CertifiedKeyPem { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Issues a certificate for the web console's HTTPS listener, for exactly `names`
    /// (DNS names or IP addresses; `localhost` also covers the loopback addresses), with a
    /// fresh key. Returns it with the CA's certificate after it, as a TLS chain.
    pub fn issue_web_server(&self, names: &[String]) -> Result<CertifiedKeyPem, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        if names.iter().any(|n| n == "localhost") {
            for ip in ["127.0.0.1", "::1"] {
                let ip = SanType::IpAddress(ip.parse().expect("ip"));
                if !params.subject_alt_names.contains(&ip) {
                    params.subject_alt_names.push(ip);
                }
            }
        }
        let cert = self.sign_server(params, names.first().map_or("assist console", String::as_str), &key)?;
        Ok(CertifiedKeyPem {
            cert_pem: format!("{}{}", cert.pem(), self.cert_pem),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a server certificate (TLS server auth, [`SERVER_CERT_VALIDITY`], backdated an
    /// hour for clock skew) for `params`' names with `key`, named `common_name`.
    fn sign_server(
        &self,
        mut params: CertificateParams,
        common_name: &str,
        key: &KeyPair,
    ) -> Result<rcgen::Certificate, CertError> {
        params.distinguished_name = dn(common_name, "assist");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + SERVER_CERT_VALIDITY;
        params.use_authority_key_identifier_extension = true;
        Ok(params.signed_by(key, &self.issuer)?)
    }

    /// Signs an agent's CSR. Only the CSR's public key is used: the subject is set to the
    /// agent's name and organisation, and the certificate is for client authentication
    /// only, whatever the CSR asked for.
    pub fn sign_agent_csr(&self, csr_pem: &str, agent: &str, org: &str) -> Result<IssuedCert, CertError> {
        let csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| CertError::Csr(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(agent, org);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.serial_number = Some(random_serial());
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + AGENT_CERT_VALIDITY;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(IssuedCert { cert_pem: cert.pem(), fingerprint: Fingerprint::of_der(cert.der()) })
    }
}

/// An agent's key pair and the CSR to send to the relay.
pub struct AgentKey {
    pub key_pem: String,
    pub csr_pem: String,
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKey").field("csr_pem", &self.csr_pem).finish_non_exhaustive()
    }
}

impl AgentKey {
    pub fn generate(agent: &str) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(agent, "assist agent");
        let csr = params.serialize_request(&key)?;
        Ok(Self { key_pem: key.serialize_pem(), csr_pem: csr.pem()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_text_forms() {
        let fp = Fingerprint::of_der(b"hello");
        let shown = fp.to_string();
        assert!(shown.starts_with("SHA256:") && shown.len() == 7 + 64);
        assert_eq!(shown.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(fp.hex().parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(fp.hex().to_uppercase().parse::<Fingerprint>().unwrap(), fp);
        let colons: Vec<String> = fp.0.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(colons.join(":").parse::<Fingerprint>().unwrap(), fp);
        for bad in ["", "SHA256:", "SHA256:zz", "abcd"] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ca_round_trips_through_pem_and_signs() {
        let ca = Ca::generate("test").unwrap();
        let again = Ca::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        assert_eq!(again.fingerprint(), ca.fingerprint());
        let server = again.issue_server("relay.assist.internal", &["relay.example.test".into()]).unwrap();
        assert_eq!(certs_from_pem(&server.cert_pem).unwrap().len(), 1);
        key_from_pem(&server.key_pem).unwrap();

        let agent = AgentKey::generate("erp-db01").unwrap();
        let issued = ca.sign_agent_csr(&agent.csr_pem, "erp-db01", "acme").unwrap();
        assert_eq!(Fingerprint::of_pem(&issued.cert_pem).unwrap(), issued.fingerprint);
    }

    #[test]
    fn agent_signatures_verify_with_the_certificate_key() {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, UnparsedPublicKey,
        };
        let ca = Ca::generate("test").unwrap();
        let agent = AgentKey::generate("a").unwrap();
        let issued = ca.sign_agent_csr(&agent.csr_pem, "a", "o").unwrap();
        let der = key_from_pem(&agent.key_pem).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der.secret_der()).unwrap();
        let sig = key.sign(&aws_lc_rs::rand::SystemRandom::new(), b"msg").unwrap();
        let pk = public_key_of(&certs_from_pem(&issued.cert_pem).unwrap()[0]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &pk).verify(b"msg", sig.as_ref()).unwrap();
        assert!(UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &pk).verify(b"other", sig.as_ref()).is_err());
        assert!(public_key_of(b"garbage").is_err());
    }

    #[test]
    fn garbage_csr_is_an_error() {
        let ca = Ca::generate("test").unwrap();
        assert!(matches!(ca.sign_agent_csr("not a csr", "a", "o"), Err(CertError::Csr(_))));
        let tampered = AgentKey::generate("a").unwrap().csr_pem.replace('A', "B");
        assert!(ca.sign_agent_csr(&tampered, "a", "o").is_err());
    }
}
