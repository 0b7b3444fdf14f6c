//! The broker's side of file and log channels: the relay's transfer limits, the agent's
//! [`FileReady`] frame read and checked before anything is spliced, and the
//! `file.transferred` audit event from the agent's report.
//!
//! It does not look inside the data: the splice moves (and records) the file's bytes like
//! any channel's, and the digests come from the two ends.

use super::{LiveSession, Relay, now_ms};
use crate::audit::{Action, AuditEvent, agent_actor, clip};
use assist_net::read_msg;
use assist_proto::files::{FileReady, FileReport, FileRequest};
use assist_proto::ids::AgentName;
use assist_proto::msg::ChannelKind;
use quinn::RecvStream;
use serde_json::json;
use std::time::Duration;

impl Relay {
    /// Checks what the engineer declares before the agent is asked: a write's size and
    /// its batch. Reads and listings are checked on the agent's [`FileReady`].
    pub(crate) fn check_declared(&self, kind: &ChannelKind) -> Result<(), String> {
        if let ChannelKind::Files { request: FileRequest::Write { size, batch, .. } } = kind {
            let limits = self.cfg.transfer_limits;
            limits.check(1, *size)?;
            limits.check(batch.files, batch.bytes.max(*size))?;
        }
        Ok(())
    }

    /// Reads the agent's [`FileReady`] for a file channel and checks it against the limits.
    pub(crate) async fn file_ready(
        &self,
        kind: &ChannelKind,
        arecv: &mut RecvStream,
        wait: Duration,
    ) -> Result<Option<FileReady>, String> {
        let request = match kind {
            ChannelKind::Files { request } => Some(request),
            ChannelKind::Logs { .. } => None,
            _ => return Ok(None),
        };
        let ready: FileReady = match tokio::time::timeout(wait, read_msg(arecv)).await {
            Ok(Ok(Some(r))) => r,
            _ => return Err("the agent did not describe the file".into()),
        };
        let limits = self.cfg.transfer_limits;
        match request {
            Some(FileRequest::Read { .. }) => limits.check(1, ready.data_len())?,
            Some(FileRequest::List { recursive: true, .. }) | None => {
                limits.check(ready.files, ready.size)?
            }
            _ => {}
        }
        Ok(Some(ready))
    }

    /// Audits a transfer the agent reports for one of its sessions.
    pub(crate) async fn file_transferred(&self, agent: &AgentName, report: FileReport) {
        let Some(s) = self.session(&report.session) else { return };
        if &s.agent != agent {
            return;
        }
        // A stream the relay never spliced (refused over its limits) moved nothing: its
        // refusal is audited already.
        let Some(channel) = s.file_streams.lock().expect("file streams lock").get(&report.stream).copied()
        else {
            return;
        };
        let org = s.core.lock().await.info.agent_org.clone();
        let matched = report.engineer_sha256.as_deref() == Some(report.agent_sha256.as_str());
        let event = AuditEvent::new(agent_actor(agent), Action::FileTransferred)
            .org(&org)
            .target(agent.as_str())
            .session(&report.session)
            .detail(json!({
                "path": clip(&report.path, 4096),
                "direction": report.direction,
                "size": report.size,
                "resumed_from": report.offset,
                "sha256_agent": clip(&report.agent_sha256, 64),
                "sha256_engineer": report.engineer_sha256.as_deref().map(|h| clip(h, 64)),
                "match": matched,
                "ok": report.ok && matched,
                "error": report.error.as_deref().map(|e| clip(e, 300)),
                "channel": channel,
                "stream": report.stream,
                "at": now_ms(),
            }));
        let _ = self.audit(event).await;
    }
}

impl LiveSession {
    /// Remembers which recording channel an agent stream carries.
    pub(crate) fn file_stream(&self, stream: u64, channel: u32) {
        self.file_streams.lock().expect("file streams lock").insert(stream, channel);
    }
}
