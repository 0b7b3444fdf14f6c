//! `assist-agent enroll`: trade a join token and a CSR for a certificate. The key is made
//! here and stays here.

use super::state::{AgentDir, Enrollment, StateError};
use crate::conn::{ConnError, RelayConn};
use assist_certs::{AgentKey, Fingerprint};
use assist_proto::ids::AgentName;
use assist_proto::msg::{AgentToRelay, RelayToAgent};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("invalid agent name: {0}")]
    Name(#[from] assist_proto::ids::BadName),
    #[error("cannot make a key: {0}")]
    Key(#[from] assist_certs::CertError),
    #[error("the relay refused the enrollment: {0}")]
    Refused(String),
    #[error("the relay answered with a CA ({got}) other than the pinned one ({expected})")]
    CaMismatch { expected: Fingerprint, got: String },
}

pub async fn enroll(
    dir: &AgentDir,
    relay: &str,
    token: &str,
    ca: Fingerprint,
    name: &str,
    force: bool,
) -> Result<Enrollment, EnrollError> {
    assist_proto::ids::validate_name("agent", name).map_err(EnrollError::Name)?;
    dir.check_fresh(force)?;
    let addr = crate::conn::resolve(relay).await?;
    let key = AgentKey::generate(name)?;
    let rc = RelayConn::open(addr, ca, None).await?;
    let mut control = rc.control().await?;
    let reply: RelayToAgent = control
        .call(&AgentToRelay::Enroll {
            token: token.trim().to_owned(),
            name: AgentName::new(name),
            csr_pem: key.csr_pem.clone(),
        })
        .await?;
    rc.close().await;
    match reply {
        RelayToAgent::Enrolled { agent, org, cert_pem, ca_pem, grant_key } => {
            let got = Fingerprint::of_pem(&ca_pem)?;
            if got != ca {
                return Err(EnrollError::CaMismatch { expected: ca, got: got.to_string() });
            }
            let enrollment = Enrollment {
                relay: relay.to_owned(),
                name: agent.to_string(),
                org: org.to_string(),
                ca_fingerprint: ca.to_string(),
                grant_key,
            };
            dir.save(&enrollment, &key.key_pem, &cert_pem, &ca_pem)?;
            Ok(enrollment)
        }
        RelayToAgent::Error { message, .. } => Err(EnrollError::Refused(message)),
        other => Err(EnrollError::Refused(format!("unexpected answer {other:?}"))),
    }
}
