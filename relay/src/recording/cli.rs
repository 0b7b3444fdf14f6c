//! What the `recording` and `keys` commands do, as library functions: find a recording
//! (in the store `--recordings` names), verify it, export it (asciicast, raw bytes, a
//! desktop channel as MP4; [`export`] with the audit event each export is recorded by),
//! and export the public keys an auditor needs to verify offline.

use super::export;
use super::format::Direction;
use super::store::{self, RecordingStore};
use super::verify::{self, Verdict};
use crate::audit::{Action, AuditEvent};
use assist_proto::ids::{OrgName, SessionId};
use aws_lc_rs::digest::{SHA256, digest};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// The public material needed to verify recordings away from the relay.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublicKeys {
    /// Ed25519 public key that signs recording seals (and grants), hex.
    pub relay_signing_key: String,
    pub ca_fingerprint: String,
    pub ca_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordingCmdError {
    #[error("no recording for session {session} ({location})")]
    NotFound { session: SessionId, location: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("keys file: {0}")]
    Keys(String),
    #[error("cannot read the recording: {0}")]
    Unreadable(#[from] export::Unreadable),
    #[error("unknown direction {0:?}: expected in or out")]
    Direction(String),
    #[error("recordings location: {0}")]
    Location(#[from] store::LocationError),
    #[error("{0}")]
    Mp4(#[from] super::mp4::Mp4Error),
}

impl PublicKeys {
    pub fn key_bytes(&self) -> Result<Vec<u8>, RecordingCmdError> {
        hex::decode(&self.relay_signing_key).map_err(|e| RecordingCmdError::Keys(e.to_string()))
    }

    pub fn load(path: &Path) -> Result<Self, RecordingCmdError> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|e| RecordingCmdError::Keys(e.to_string()))
    }
}

/// The store named by `--recordings` (see [`store::open`]); `DATA_DIR/recordings` when
/// none is given.
pub fn open_store(spec: Option<&str>, data_dir: &Path) -> Result<Arc<dyn RecordingStore>, RecordingCmdError> {
    Ok(store::open(spec, data_dir)?)
}

fn not_found(store: &dyn RecordingStore, session: &SessionId, e: std::io::Error) -> RecordingCmdError {
    match e.kind() {
        std::io::ErrorKind::NotFound => {
            RecordingCmdError::NotFound { session: session.clone(), location: store.locate(session) }
        }
        _ => RecordingCmdError::Io(e),
    }
}

/// A whole recording, in memory (for exports, which hold their output in memory anyway).
pub async fn read(store: &dyn RecordingStore, session: &SessionId) -> Result<Vec<u8>, RecordingCmdError> {
    store.read(session).await.map_err(|e| not_found(store, session, e))
}

/// Verifies a stored recording chunk by chunk, without holding it in memory.
pub async fn verify_session(
    store: &dyn RecordingStore,
    session: &SessionId,
    key: &[u8],
) -> Result<Verdict, RecordingCmdError> {
    verify::verify_stored(store, session, key).await.map_err(|e| not_found(store, session, e))
}

/// Verifies a recording file chunk by chunk (`recording verify --file`).
pub async fn verify_file(path: &Path, key: &[u8]) -> Result<Verdict, RecordingCmdError> {
    verify::verify_file(path, key)
        .await
        .map_err(|e| RecordingCmdError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))))
}

pub fn parse_direction(s: &str) -> Result<Direction, RecordingCmdError> {
    match s {
        "in" => Ok(Direction::In),
        "out" => Ok(Direction::Out),
        other => Err(RecordingCmdError::Direction(other.to_owned())),
    }
}

/// Replays the terminal output on stdout.
pub async fn play(
    store: &dyn RecordingStore,
    session: &SessionId,
    speed: f64,
    max_idle: std::time::Duration,
) -> Result<(), RecordingCmdError> {
    let bytes = read(store, session).await?;
    let (_, events) = export::read_events(&bytes)?;
    export::play(&events, speed, max_idle, &mut std::io::stdout()).await?;
    Ok(())
}

/// What to export from a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    /// asciicast v2 of the terminal output.
    Asciicast,
    /// The exact bytes of one channel direction.
    Raw { channel: u32, dir: Direction },
    /// A desktop channel's video as MP4 (its H.264 copied); `part` for a channel whose
    /// picture size changes (see [`super::mp4`]).
    Mp4 { channel: u32, part: Option<u32> },
}

/// An export, and the audit event that records it.
#[derive(Debug)]
pub struct Exported {
    pub bytes: Vec<u8>,
    /// `recording.exported` for this session (organisation: the agent's), with the format,
    /// the channel, and the size and SHA-256 of `bytes`; the caller adds the actor's name
    /// and where the bytes went, and appends it before writing them.
    pub event: AuditEvent,
}

/// Exports a stored recording as `kind` says.
pub async fn export(
    store: &dyn RecordingStore,
    session: &SessionId,
    kind: ExportKind,
) -> Result<Exported, RecordingCmdError> {
    let recording = read(store, session).await?;
    let (header, events) = export::read_events(&recording)?;
    let (bytes, mut detail) = match kind {
        ExportKind::Asciicast => {
            (export::asciicast(&header, &events).into_bytes(), serde_json::json!({"format": "asciicast"}))
        }
        ExportKind::Raw { channel, dir } => (
            export::raw(&events, channel, dir),
            serde_json::json!({"format": "raw", "channel": channel, "direction": dir.as_str()}),
        ),
        ExportKind::Mp4 { channel, part } => (
            super::mp4::desktop_mp4(&events, channel, part)?,
            serde_json::json!({"format": "mp4", "channel": channel, "part": part}),
        ),
    };
    detail["via"] = "assist-relay recording export".into();
    let event = export_event(&header.session.agent_org, session, detail, &bytes);
    Ok(Exported { bytes, event })
}

/// `recording.exported` for `session` (organisation: the agent's, `org`), its `detail`
/// completed with the size and SHA-256 of `bytes`. The actor is left for the caller.
pub fn export_event(
    org: &OrgName,
    session: &SessionId,
    mut detail: serde_json::Value,
    bytes: &[u8],
) -> AuditEvent {
    detail["bytes"] = bytes.len().into();
    detail["sha256"] = hex::encode(digest(&SHA256, bytes).as_ref()).into();
    AuditEvent::new("", Action::RecordingExported).org(org).session(session).detail(detail)
}
