//! The broker's side of recording: start a session's recorder at approval, end the session
//! if it fails (recording is mandatory by default), collect the agent's countersignatures,
//! and seal at the end, auditing the outcome either way.
//!
//! A failed recorder names the session's end whoever ends it
//! ([`Relay::recording_failure`]): the failure is known before any splice stops on it, so
//! an exit that the cut provoked (a shell killed by SIGPIPE, a client that saw its stream
//! reset) cannot stand in for it.

use super::{LiveSession, Relay};
use crate::audit::{Action, AuditEvent, RELAY_ACTOR};
use crate::recording::Recorder;
use crate::recording::recorder::AgentCountersignature;
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::{SessionInfo, StreamDigest};
use assist_proto::session::EndReason;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// How long sealing may take before the session's end is reported without it.
const SEAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a session's recording could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotRecording {
    /// The recording store refused to create it.
    #[error("{0}")]
    Create(String),
    /// Its header or first marker could not be written.
    #[error("{0}")]
    Write(String),
}

impl Relay {
    /// The end a failed recorder imposes on the session, if it failed, with the failure
    /// audited (once) before it returns: the session's end, stored and told after this,
    /// never comes before the failure's record.
    pub(crate) async fn recording_failure(&self, s: &LiveSession, info: &SessionInfo) -> Option<EndReason> {
        let rec = s.recorder()?;
        let failure = rec.failure_now()?;
        self.audit_recording_failure(&rec, info, "recording").await;
        Some(EndReason::Failed { message: failure.to_string() })
    }

    /// Audits the recorder's failure, unless it was already.
    async fn audit_recording_failure(&self, rec: &Recorder, info: &SessionInfo, at: &str) {
        if let Some(failure) = rec.claim_failure() {
            let event = self
                .recording_event(Action::RecordingFailed, info)
                .detail(json!({ "reason": failure.0, "at": at }));
            let _ = self.audit(event).await;
        }
    }

    fn recording_event(&self, action: Action, info: &SessionInfo) -> AuditEvent {
        AuditEvent::new(RELAY_ACTOR, action)
            .org(&info.agent_org)
            .session(&info.id)
            .target(info.agent.to_string())
    }

    /// Starts the recorder of an approved session. On failure, returns why; the caller ends
    /// the session if recording is mandatory.
    pub(crate) async fn start_recording(
        self: &Arc<Self>,
        s: &Arc<LiveSession>,
        info: &SessionInfo,
        approver: &str,
    ) -> Result<(), NotRecording> {
        let Some(store) = &self.recordings else { return Ok(()) };
        let agent_fp = match self.store.agent(&info.agent).await {
            Ok(Some(row)) => Some(row.cert_fingerprint),
            _ => None,
        };
        let started = async {
            let sink = store.create(&info.id).await.map_err(|e| NotRecording::Create(e.to_string()))?;
            let rec = Recorder::start(sink, info.clone(), agent_fp, self.grant_key.clone())
                .await
                .map_err(|e| NotRecording::Write(e.0))?;
            rec.marker(&format!("approved by {approver}")).await.map_err(|e| NotRecording::Write(e.0))?;
            Ok::<_, NotRecording>(rec)
        };
        let rec = match started.await {
            Ok(rec) => rec,
            Err(reason) => {
                let _ = self
                    .audit(
                        self.recording_event(Action::RecordingFailed, info)
                            .detail(json!({ "reason": reason.to_string(), "at": "start" })),
                    )
                    .await;
                return Err(reason);
            }
        };
        let _ = s.recorder.set(rec.clone());
        // Fail closed: a recorder that stops writing ends the session. Owned by the session
        // (`broker::timers`): a sealed recorder never fails, and its watch ends with the
        // session instead of waiting for ever.
        let id = info.id.clone();
        let info = info.clone();
        let watched = rec.clone();
        s.arm(self, async move { watched.wait_failed().await }, move |relay, failure| async move {
            warn!(error = %failure.0, "recording failed; ending the session");
            // Ending audits the failure first; if the session had already ended (the
            // seal failed), it is audited here.
            relay.end_session(&id, EndReason::Failed { message: failure.to_string() }).await;
            relay.audit_recording_failure(&rec, &info, "seal").await;
        });
        Ok(())
    }

    /// Keeps an agent's countersignature for the seal, if it is this agent's session.
    pub(crate) async fn countersigned(
        &self,
        agent: &AgentName,
        id: &SessionId,
        cert_der: &[u8],
        digests: Vec<StreamDigest>,
        signature: String,
    ) {
        let Some(s) = self.session(id) else { return };
        if &s.agent != agent {
            return;
        }
        let covered: Vec<u64> = digests.iter().map(|d| d.stream).collect();
        let cs = AgentCountersignature { cert: hex::encode(cert_der), digests, signature };
        s.countersignatures.lock().expect("countersignatures lock").push(cs);
        s.accounted_for(super::files::Account::Countersignature, covered);
    }

    /// Seals the session's recording, if it has one, and audits the outcome.
    pub(crate) async fn seal_recording(&self, s: &LiveSession, info: &SessionInfo, reason: &EndReason) {
        let Some(rec) = s.recorder() else { return };
        if rec.failure_now().is_some() {
            // Nothing can be written any more; the failure is audited on its own.
            return;
        }
        let _ = rec.marker(&format!("ended: {reason}")).await;
        let agent = std::mem::take(&mut *s.countersignatures.lock().expect("countersignatures lock"));
        match tokio::time::timeout(SEAL_TIMEOUT, rec.seal(reason.to_string(), agent)).await {
            Ok(Ok(seal)) => {
                info!(final_hash = %seal.final_hash, "recording sealed");
                let bytes: u64 = seal.channels.iter().map(|c| c.bytes).sum();
                let event = self.recording_event(Action::RecordingSealed, info).detail(json!({
                    "final_hash": seal.final_hash,
                    "chunks": seal.chunks,
                    "bytes": bytes,
                    "countersigned_channels": seal.agent.len(),
                }));
                let _ = self.audit(event).await;
            }
            Ok(Err(_)) => self.audit_recording_failure(&rec, info, "seal").await,
            Err(_) => {
                let event = self
                    .recording_event(Action::RecordingFailed, info)
                    .detail(json!({ "reason": "sealing timed out", "at": "seal" }));
                let _ = self.audit(event).await;
            }
        }
    }
}
