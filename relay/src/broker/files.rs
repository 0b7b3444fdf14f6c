//! The broker's side of file and log channels: the relay's transfer limits, the agent's
//! [`FileReady`] frame (read by the transport) checked before anything is spliced, the
//! `file.transferred` audit event from the agent's report, and the gate that holds a
//! channel's end from the engineer until the agent has accounted for it.
//!
//! The agent ends every file or log channel with its countersignature and, for reads and
//! writes, its report, on the control stream, before it finishes or resets the stream. The
//! relay handles control messages in order and opens the stream's gate on the last of
//! them (the report, or the countersignature where there is no report); only then does the
//! engineer see the end. A `cp` that succeeded is therefore
//! audited and countersigned, even when the client exits at once and so ends its session.
//!
//! It does not look inside the data: the splice moves (and records) the file's bytes like
//! any channel's, and the digests come from the two ends.

use super::{LiveSession, Relay, now_ms};
use crate::audit::{Action, AuditEvent, agent_actor, clip};
use assist_proto::files::{FileChange, FileReady, FileReport, FileRequest, OverLimit};
use assist_proto::ids::AgentName;
use assist_proto::msg::ChannelKind;
use serde_json::json;
use tokio::sync::watch;
use tracing::warn;

impl Relay {
    /// Checks what the engineer declares before the agent is asked: a write's size and
    /// its batch. Reads and listings are checked on the agent's [`FileReady`].
    pub(crate) fn check_declared(&self, kind: &ChannelKind) -> Result<(), OverLimit> {
        if let ChannelKind::Files { request: FileRequest::Write { size, batch, .. } } = kind {
            let limits = self.cfg.transfer_limits;
            limits.check(1, *size)?;
            limits.check(batch.files, batch.bytes.max(*size))?;
        }
        Ok(())
    }

    /// Checks the agent's [`FileReady`] for a file or log channel against the limits.
    pub(crate) fn check_ready(&self, kind: &ChannelKind, ready: &FileReady) -> Result<(), OverLimit> {
        let limits = self.cfg.transfer_limits;
        match kind {
            ChannelKind::Files { request: FileRequest::Read { .. } } => limits.check(1, ready.data_len()),
            ChannelKind::Files { request: FileRequest::List { recursive: true, .. } }
            | ChannelKind::Logs { .. } => limits.check(ready.files, ready.size),
            _ => Ok(()),
        }
    }

    /// Audits a transfer the agent reports for one of its sessions. A report for a
    /// session that has ended meanwhile (the engineer went away mid-transfer) is audited
    /// too, without its channel number, if the store says the session is this agent's.
    pub(crate) async fn file_transferred(&self, agent: &AgentName, report: FileReport) {
        let live = self.session(&report.session);
        let (org, channel) = match &live {
            Some(s) => {
                if &s.agent != agent {
                    return;
                }
                // A stream the relay never spliced (refused over its limits) moved
                // nothing: its refusal is audited already.
                let channel =
                    s.file_streams.lock().expect("file streams lock").get(&report.stream).map(|f| f.channel);
                let Some(channel) = channel else { return };
                (s.core.lock().await.info.agent_org.clone(), Some(channel))
            }
            None => match self.store.session(&report.session).await {
                Ok(Some(info)) if &info.agent == agent => (info.agent_org, None),
                Ok(_) => return,
                Err(e) => {
                    warn!(error = %e, session = %report.session, "cannot look up the session of a transfer report");
                    return;
                }
            },
        };
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
        if let Some(s) = live {
            s.accounted_for(Account::Report, [report.stream]);
        }
    }
}

impl Relay {
    /// Audits a rename, remove or mkdir the agent reports for a channel of one of its live
    /// sessions (`file.changed`), then lets the channel's end through.
    pub(crate) async fn file_changed(&self, agent: &AgentName, change: FileChange) {
        let Some(s) = self.session(&change.session) else { return };
        if &s.agent != agent {
            return;
        }
        let channel =
            s.file_streams.lock().expect("file streams lock").get(&change.stream).map(|f| f.channel);
        let Some(channel) = channel else { return };
        let org = s.core.lock().await.info.agent_org.clone();
        let event = AuditEvent::new(agent_actor(agent), Action::FileChanged)
            .org(&org)
            .target(agent.as_str())
            .session(&change.session)
            .detail(json!({
                "op": clip(&change.op, 16),
                "path": clip(&change.path, 4096),
                "to": change.to.as_deref().map(|t| clip(t, 4096)),
                "channel": channel,
                "stream": change.stream,
                "at": now_ms(),
            }));
        let _ = self.audit(event).await;
        s.accounted_for(Account::Report, [change.stream]);
    }
}

/// The agent's last word on a stream, which opens its end gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Account {
    /// Its countersignature (listings and log bundles).
    Countersignature,
    /// Its transfer report, which follows the countersignature (reads and writes), or its
    /// change report (rename, remove, mkdir).
    Report,
}

impl Account {
    /// What ends the agent's account of a channel of this kind.
    pub(crate) fn of(kind: &ChannelKind) -> Self {
        match kind {
            ChannelKind::Files { request: FileRequest::Read { .. } | FileRequest::Write { .. } } => {
                Self::Report
            }
            ChannelKind::Files { request } if request.is_change() => Self::Report,
            _ => Self::Countersignature,
        }
    }
}

/// A spliced file or log channel.
pub(crate) struct FileStream {
    /// Its recording channel.
    channel: u32,
    last: Account,
    /// Turns true once the agent's last word on the stream has been handled.
    accounted: watch::Sender<bool>,
}

impl LiveSession {
    /// Remembers which recording channel an agent stream carries; the receiver opens once
    /// the `last` message of the agent's account of it has been handled (the splice's end
    /// gate).
    pub(crate) fn file_stream(&self, stream: u64, channel: u32, last: Account) -> watch::Receiver<bool> {
        let (accounted, gate) = watch::channel(false);
        let f = FileStream { channel, last, accounted };
        self.file_streams.lock().expect("file streams lock").insert(stream, f);
        gate
    }

    /// Opens the end gates of those of `streams` for which `got` is the last word.
    pub(crate) fn accounted_for(&self, got: Account, streams: impl IntoIterator<Item = u64>) {
        let open = self.file_streams.lock().expect("file streams lock");
        for stream in streams {
            if let Some(f) = open.get(&stream)
                && f.last == got
            {
                f.accounted.send_replace(true);
            }
        }
    }
}
