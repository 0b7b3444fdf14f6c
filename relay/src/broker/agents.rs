//! Agents: enrollment, admission of a certificate at connect, the `Hello` that makes an
//! agent online, and what the agent reports about a channel's process.
//!
//! The transport hands over what it read (a join token and CSR, the certificate's
//! fingerprint, the `Hello`'s fields, an exit report); the decisions and their audit
//! events are made here. This module reads no stream and closes no connection: it says
//! what to answer, and the transport answers.

use super::peer::AgentPeer;
use super::{LiveAgent, Refusal, Relay, now_ms};
use crate::audit::{Action, AuditEvent, RELAY_ACTOR, agent_actor};
use crate::store::{AgentRow, StoreError, TokenProblem};
use assist_certs::Fingerprint;
use assist_proto::caps::{Capability, ConsentMode};
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::{ErrorCode, RelayToAgent};
use assist_proto::session::EndReason;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::{info, warn};

/// Why an agent's certificate is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AgentRefused {
    #[error("agent certificate revoked")]
    Revoked,
    #[error("unknown agent certificate")]
    Unknown,
    #[error("internal error")]
    Internal,
}

/// What the agent's `Hello` said.
pub(crate) struct Hello {
    pub consent: ConsentMode,
    pub version: String,
    pub scripts: Option<Vec<String>>,
    /// The display whose desktop the agent serves, if any.
    pub desktop: Option<String>,
    /// Whether it understands `RelayToAgent::Cluster`.
    pub cluster: bool,
}

impl Relay {
    /// Enrollment: a join token and a CSR in, the `Enrolled` answer (a certificate) out.
    /// `source` is the address it came from, for the audit of a refusal.
    pub(crate) async fn enroll(
        &self,
        token: &str,
        name: &AgentName,
        csr_pem: &str,
        source: &str,
    ) -> Result<RelayToAgent, Refusal> {
        assist_proto::ids::validate_name("agent", name.as_str())
            .map_err(|m| Refusal::new(ErrorCode::BadRequest, m.to_string()))?;
        // Sign first: a bad CSR must not use up the token.
        let issued = self
            .ca
            .sign_agent_csr(csr_pem, name.as_str(), "assist agent")
            .map_err(|e| Refusal::new(ErrorCode::BadRequest, e.to_string()))?;
        let row = AgentRow {
            name: name.clone(),
            org: "".into(),
            cert_fingerprint: issued.fingerprint.hex(),
            enrolled_at: now_ms(),
            revoked_at: None,
            last_seen: None,
            consent: None,
            online: false,
            relays: Vec::new(),
        };
        let hash = crate::auth::token_hash(token);
        let event = AuditEvent::new(agent_actor(name), Action::AgentEnrolled)
            .target(name.as_str())
            .detail(serde_json::json!({ "fingerprint": issued.fingerprint.hex() }));
        // Refusals name the token by its hash prefix, as `token.issued` does.
        let token_label = format!("token:{}", hash.get(..16).unwrap_or(&hash));
        let refused = |reason: String| {
            AuditEvent::new(agent_actor(name), Action::AgentEnrollmentRefused)
                .target(name.as_str())
                .detail(serde_json::json!({ "reason": reason, "token": token_label, "remote": source }))
        };
        // Rate-limited per source address and reason (`broker::refusals`): guessing join
        // tokens cannot fill the log.
        let stored = match self.store.enroll_agent(&hash, &row, now_ms(), &event).await {
            Ok(row) => row,
            Err(StoreError::TokenRejected(problem)) => {
                warn!(agent = %name, ?problem, "enrollment refused");
                self.audit_refused(source, "join token", refused(format!("join token {problem}"))).await;
                let why = match problem {
                    TokenProblem::Expired => "has expired",
                    TokenProblem::AlreadyUsed | TokenProblem::Unknown => "is unknown or was already used",
                };
                return Err(Refusal::new(
                    ErrorCode::Unauthenticated,
                    format!("join token {why}; ask for a new one"),
                ));
            }
            Err(StoreError::Exists { what, .. }) => {
                self.audit_refused(source, "already enrolled", refused(format!("{what} already enrolled")))
                    .await;
                return Err(Refusal::new(
                    ErrorCode::Conflict,
                    format!("an agent named {name} is already enrolled"),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        info!(agent = %name, org = %stored.org, fingerprint = %issued.fingerprint, "agent enrolled");
        Ok(RelayToAgent::Enrolled {
            agent: name.clone(),
            org: stored.org,
            cert_pem: issued.cert_pem,
            ca_pem: self.ca.cert_pem().to_owned(),
            grant_key: hex::encode(self.grant_public_key()),
        })
    }

    /// A client certificate that chains to our CA (the TLS layer checked that): served only
    /// if it is the current certificate of an enrolled, unrevoked agent. A refusal is
    /// audited, counted per source and certificate, so that an agent that keeps
    /// reconnecting cannot fill the log.
    pub(crate) async fn admit_agent(
        &self,
        fp: &Fingerprint,
        remote: SocketAddr,
    ) -> Result<AgentRow, AgentRefused> {
        let detail = |reason: &str| serde_json::json!({ "reason": reason, "fingerprint": fp.to_string(), "remote": remote.to_string() });
        let source = remote.ip().to_string();
        match self.store.agent_by_fingerprint(&fp.hex()).await {
            Ok(Some(row)) if row.revoked_at.is_none() => Ok(row),
            Ok(Some(row)) => {
                info!(agent = %row.name, "revoked agent refused");
                let event = AuditEvent::new(agent_actor(&row.name), Action::AgentRefused)
                    .org(&row.org)
                    .target(row.name.as_str())
                    .detail(detail("revoked"));
                self.audit_refused(&source, &fp.hex(), event).await;
                Err(AgentRefused::Revoked)
            }
            Ok(None) => {
                // Signed by our CA but not (or no longer) the certificate of an enrolled
                // agent: who holds it is not known, only what it is.
                info!(%fp, "unknown agent certificate refused");
                let event = AuditEvent::new(RELAY_ACTOR, Action::AgentRefused)
                    .target(fp.to_string())
                    .detail(detail("certificate not enrolled"));
                self.audit_refused(&source, &fp.hex(), event).await;
                Err(AgentRefused::Unknown)
            }
            Err(e) => {
                warn!(error = %e, "cannot look up agent");
                Err(AgentRefused::Internal)
            }
        }
    }

    /// Stores and audits an admitted agent's `Hello`, and returns what makes it online
    /// ([`Relay::agent_online`]) once the transport has written the welcome. An agent whose
    /// connection cannot be recorded (and audited) is not served.
    pub(crate) async fn agent_connected(
        &self,
        row: &AgentRow,
        hello: Hello,
        remote: SocketAddr,
        peer: Arc<dyn AgentPeer>,
    ) -> Result<LiveAgent, StoreError> {
        info!(consent = %hello.consent, version = %hello.version, "agent connected");
        let event = AuditEvent::new(agent_actor(&row.name), Action::AgentConnected)
            .org(&row.org)
            .target(row.name.as_str())
            .detail(serde_json::json!({
                "consent": hello.consent,
                "version": hello.version,
                "remote": remote.to_string(),
            }));
        let since = now_ms();
        if let Err(e) = self.store.agent_connected(&row.name, hello.consent, since, &event).await {
            warn!(error = %e, "cannot record agent connection");
            return Err(e);
        }
        Ok(LiveAgent {
            conn_id: self.conn_id(),
            since,
            org: row.org.clone(),
            consent: hello.consent,
            peer,
            scripts: super::published_scripts(&row.name, hello.scripts),
            desktop: hello.desktop.is_some(),
            cluster: hello.cluster,
        })
    }

    /// The agent reports that a channel's process exited: a script run with `exec
    /// --session` is told to the command that ran it; otherwise the exit ends the session
    /// if the grant still covers what exited.
    pub(crate) async fn channel_exited(
        self: &Arc<Self>,
        agent: &AgentName,
        session: &SessionId,
        exit: (Option<i32>, Option<String>),
        exec: Option<String>,
        stream: Option<u64>,
    ) {
        let (code, signal) = exit;
        if let (None, Some(stream)) = (&exec, stream)
            && self.reporting_exited(agent, session, stream, code, signal.clone()).await
        {
            return;
        }
        if let (Some(script), Some(stream)) = (&exec, stream)
            && self.script_exited(agent, session, stream, script, code, signal.clone()).await
        {
            return;
        }
        if exec.is_none() && stream.is_some_and(|stream| self.shell_was_left(session, stream)) {
            return;
        }
        let (needed, reason) = match exec {
            Some(script) => (
                Capability::Exec { scripts: vec![script.clone()] },
                EndReason::ScriptExited { name: script, code, signal },
            ),
            None => (Capability::Shell, EndReason::ShellExited { code, signal }),
        };
        self.shell_exited(agent, session, reason, needed).await;
    }
}
