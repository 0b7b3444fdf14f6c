//! The recorder: one task per session that turns events into chained chunks on a
//! [`RecordingSink`], and seals the recording when the session ends.
//!
//! - Splices call [`Recorder::data_chunks`] (or [`Recorder::data`]) before they forward
//!   what they read; the chunks of one read are one event, handed over by reference
//!   (`Bytes`). Each data event first takes its bytes from the session's [`Budget`], which
//!   the task gives back only once they are written (in whole chunks) to the sink's file:
//!   a slow or full disk stops the session within [`budget::HELD`] bytes instead of
//!   growing memory or forwarding unrecorded data, and nothing is dropped.
//! - A chunk reaches the sink as parts ([`super::batch`]): the data the splice read, still
//!   shared, between the heads. The sink copies it once, to where it writes from.
//! - Events are batched into chunks of up to [`BATCH`] bytes, handed to the sink at least
//!   every [`FLUSH_EVERY`], written out to its file whenever the held data reaches
//!   [`budget::WRITE_OUT_AT`], and made durable at least every [`SYNC_EVERY`]; a crash
//!   loses at most what was not yet synced, and the rest verifies (as truncated).
//! - If the sink fails, the recorder stops accepting events, reports the failure
//!   ([`Recorder::wait_failed`], [`Recorder::failure_now`]) and then closes the budget, so
//!   every splice waiting on it stops; the broker ends the session (fail closed).
//! - [`Recorder::seal`] writes the seal: per channel and direction the byte count and
//!   SHA-256 of the data, the final chain hash, the end reason, signed with the relay's
//!   Ed25519 key, and the seek index of each desktop channel ([`super::desktop_index`],
//!   built from message headers as the bytes pass).
//!
//! It does not decide when to record or what a failure means for the session.

use super::batch::{Batch, NewEvent};
use super::budget::{self, Budget};
use super::desktop_index::{DesktopIndex, Indexers};
use super::format::{self, ChunkKind, Direction, EventKind};
use super::store::RecordingSink;
use crate::now_ms;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// Largest events payload before it is written as a chunk.
pub const BATCH: usize = 256 * 1024;
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
pub const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Events queued to the recorder task before senders wait. Queued data also holds budget
/// bytes, so the budget, not this, bounds the data in the queue.
const QUEUE: usize = 16;

/// The header chunk's content.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub session: assist_proto::msg::SessionInfo,
    /// The relay's Ed25519 public key that signs the seal, hex.
    pub relay_key: String,
    /// Unix ms when recording started (offset 0).
    pub started_at: i64,
    /// SHA-256 (hex) of the agent's certificate, whose key countersigns in the seal.
    #[serde(default)]
    pub agent_cert_fingerprint: Option<String>,
}

/// The agent's signed account of one channel (see `AgentToRelay::Countersign`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AgentCountersignature {
    /// The agent's certificate, DER, hex.
    pub cert: String,
    pub digests: Vec<assist_proto::msg::StreamDigest>,
    /// ECDSA P-256 SHA-256 (ASN.1 DER) over `countersign_message`, hex.
    pub signature: String,
}

/// Bytes (and, in seals written before the recorder stopped hashing twice, the SHA-256)
/// of one channel direction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelDigest {
    pub channel: u32,
    pub direction: String,
    pub bytes: u64,
    /// Absent in new seals: the chain already commits to every byte, and a verifier
    /// computes per-channel digests from the data (to check the agent's countersignature),
    /// so the recorder hashes each byte once, not twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The seal's signed content.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealBody {
    pub session: String,
    /// Chunks before the seal.
    pub chunks: u64,
    /// Hash of the last chunk before the seal, hex.
    pub final_hash: String,
    pub ended_at: i64,
    pub end_reason: String,
    pub channels: Vec<ChannelDigest>,
    /// The agent's own digests, signed with its key: one per channel it served. Empty when
    /// the agent could not report (it vanished, or the session was cut).
    #[serde(default)]
    pub agent: Vec<AgentCountersignature>,
    /// The seek index of each desktop channel ([`super::desktop_index`]). Absent in seals
    /// of sessions without a desktop channel and of relays from before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub desktop: Vec<DesktopIndex>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("recording failed: {0}")]
pub struct RecordingFailed(pub String);

enum Cmd {
    /// Its data in parts (the chunks of one splice batch), not joined, and the bytes it
    /// took from the budget.
    Event(NewEvent, u32),
    Seal {
        end_reason: String,
        agent: Vec<AgentCountersignature>,
        done: oneshot::Sender<Result<SealBody, RecordingFailed>>,
    },
}

/// A running recorder. Cloning shares it.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Cmd>,
    failed: watch::Receiver<Option<String>>,
    budget: Budget,
    /// Whether the failure was claimed for reporting ([`Recorder::claim_failure`]).
    reported: Arc<std::sync::atomic::AtomicBool>,
    start: Instant,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// Writes the header and starts the recorder task.
    pub async fn start(
        mut sink: Box<dyn RecordingSink>,
        session: assist_proto::msg::SessionInfo,
        agent_cert_fingerprint: Option<String>,
        key: Arc<Ed25519KeyPair>,
    ) -> Result<Self, RecordingFailed> {
        let header = Header {
            format: "assist-recording".into(),
            version: format::VERSION,
            session,
            relay_key: hex::encode(key.public_key().as_ref()),
            started_at: now_ms(),
            agent_cert_fingerprint,
        };
        let body = serde_json::to_vec(&header).expect("header serialises");
        let (bytes, hash) = format::encode_chunk(ChunkKind::Header, &format::ZERO_HASH, &body);
        let written = bytes.len() as u64;
        sink.append(vec![bytes.into()]).await.map_err(|e| RecordingFailed(e.to_string()))?;
        sink.sync().await.map_err(|e| RecordingFailed(e.to_string()))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let (failed_tx, failed) = watch::channel(None);
        let budget = Budget::new();
        let task = Task {
            budget: budget.clone(),
            held: 0,
            sink,
            key,
            prev: hash,
            chunks: 1,
            batch: Batch::new(),
            counts: BTreeMap::new(),
            written,
            desktop: Indexers::default(),
            session: header.session.id.to_string(),
            failed: failed_tx,
        };
        tokio::spawn(task.run(rx));
        Ok(Self { tx, failed, budget, reported: Default::default(), start: Instant::now() })
    }

    async fn send(
        &self,
        kind: EventKind,
        channel: u32,
        dir: Direction,
        data: Vec<Bytes>,
    ) -> Result<(), RecordingFailed> {
        let held = if kind == EventKind::Data {
            let len = data.iter().map(Bytes::len).sum();
            self.budget.take(len).await.map_err(|_| self.failure())?
        } else {
            0
        };
        let offset_us = self.start.elapsed().as_micros() as u64;
        let cmd = Cmd::Event(NewEvent { kind, offset_us, wall_ms: now_ms(), channel, dir, data }, held);
        self.tx.send(cmd).await.map_err(|_| self.failure())
    }

    fn failure(&self) -> RecordingFailed {
        RecordingFailed(self.failed.borrow().clone().unwrap_or_else(|| "recorder stopped".into()))
    }

    /// Records channel bytes. Waits while the recorder is behind.
    pub async fn data(&self, channel: u32, dir: Direction, data: Bytes) -> Result<(), RecordingFailed> {
        self.send(EventKind::Data, channel, dir, vec![data]).await
    }

    /// Records chunks that arrived together as one data event (their bytes in order),
    /// with one hand-off to the recorder task. Waits while the recorder is behind.
    pub async fn data_chunks(
        &self,
        channel: u32,
        dir: Direction,
        chunks: &[Bytes],
    ) -> Result<(), RecordingFailed> {
        self.send(EventKind::Data, channel, dir, chunks.to_vec()).await
    }

    pub async fn resize(&self, channel: u32, cols: u16, rows: u16) -> Result<(), RecordingFailed> {
        self.send(EventKind::Resize, channel, Direction::None, vec![Bytes::from(format!("{cols}x{rows}"))])
            .await
    }

    pub async fn marker(&self, text: &str) -> Result<(), RecordingFailed> {
        self.send(EventKind::Marker, 0, Direction::None, vec![Bytes::from(text.to_owned())]).await
    }

    pub async fn channel_open(&self, channel: u32, info: serde_json::Value) -> Result<(), RecordingFailed> {
        self.send(EventKind::ChannelOpen, channel, Direction::None, vec![Bytes::from(info.to_string())]).await
    }

    pub async fn channel_close(&self, channel: u32, info: serde_json::Value) -> Result<(), RecordingFailed> {
        self.send(EventKind::ChannelClose, channel, Direction::None, vec![Bytes::from(info.to_string())])
            .await
    }

    /// The failure, if the recorder has failed. Set before any splice can see the failure
    /// (the budget closes after it), so whoever ends the session after that can name it.
    pub fn failure_now(&self) -> Option<RecordingFailed> {
        self.failed.borrow().clone().map(RecordingFailed)
    }

    /// The failure, the first time it is asked for after the recorder failed; `None` after
    /// that, or while it has not failed. Whoever gets it reports it, so it is reported once.
    pub fn claim_failure(&self) -> Option<RecordingFailed> {
        let failure = self.failure_now()?;
        let first = !self.reported.swap(true, std::sync::atomic::Ordering::SeqCst);
        first.then_some(failure)
    }

    /// Resolves with the failure once the recorder fails.
    pub async fn wait_failed(&self) -> RecordingFailed {
        let mut failed = self.failed.clone();
        let outcome = failed.wait_for(|f| f.is_some()).await.map(|f| f.clone().unwrap_or_default());
        match outcome {
            Ok(reason) => RecordingFailed(reason),
            // The task ended without failing: it was sealed. Never resolve.
            Err(_) => std::future::pending().await,
        }
    }

    /// Flushes everything and writes the signed seal. The recorder accepts nothing after.
    pub async fn seal(
        &self,
        end_reason: String,
        agent: Vec<AgentCountersignature>,
    ) -> Result<SealBody, RecordingFailed> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Cmd::Seal { end_reason, agent, done }).await.map_err(|_| self.failure())?;
        rx.await.map_err(|_| self.failure())?
    }
}

struct Task {
    sink: Box<dyn RecordingSink>,
    key: Arc<Ed25519KeyPair>,
    prev: [u8; 32],
    chunks: u64,
    /// The events not yet written.
    batch: Batch,
    /// Data bytes per channel direction, for the seal.
    counts: BTreeMap<(u32, Direction), u64>,
    /// Bytes of the chunks handed to the sink: where the batch's chunk will start.
    written: u64,
    /// The seek indexes of desktop channels, built as their bytes pass.
    desktop: Indexers,
    session: String,
    failed: watch::Sender<Option<String>>,
    budget: Budget,
    /// Budget bytes of the events taken in and not yet written out.
    held: usize,
}

impl Task {
    async fn run(self, rx: mpsc::Receiver<Cmd>) {
        let budget = self.budget.clone();
        self.serve(rx).await;
        // Failed or sealed: nothing more is taken in, and no splice waits for room.
        budget.close();
    }

    async fn serve(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut last_sync = Instant::now();
        loop {
            let result = tokio::select! {
                cmd = rx.recv() => match cmd {
                    None => {
                        // Every handle is gone without a seal: flush what we have; the
                        // recording will verify as truncated.
                        let _ = self.flush().await;
                        let _ = self.sink.sync().await;
                        return;
                    }
                    Some(Cmd::Event(event, held)) => {
                        self.index(&event);
                        if event.kind == EventKind::Data {
                            let bytes = self.counts.entry((event.channel, event.dir)).or_insert(0);
                            *bytes += event.data.iter().map(|p| p.len() as u64).sum::<u64>();
                        }
                        self.batch.push_event(event);
                        self.held += held as usize;
                        if self.held >= budget::WRITE_OUT_AT {
                            self.write_out().await
                        } else if self.batch.len() >= BATCH {
                            self.flush().await
                        } else {
                            Ok(())
                        }
                    }
                    Some(Cmd::Seal { end_reason, agent, done }) => {
                        let sealed = self.seal(end_reason, agent).await;
                        if let Err(e) = &sealed {
                            let _ = self.failed.send(Some(e.0.clone()));
                        }
                        let _ = done.send(sealed);
                        return;
                    }
                },
                _ = flush.tick() => {
                    if last_sync.elapsed() >= SYNC_EVERY {
                        last_sync = Instant::now();
                        self.sync().await
                    } else {
                        self.flush().await
                    }
                }
            };
            if let Err(e) = result {
                tracing::warn!(session = %self.session, error = %e, "recording failed");
                let _ = self.failed.send(Some(e.0));
                return;
            }
        }
    }

    /// Feeds a desktop channel's opening and its agent's bytes to its seek index.
    fn index(&mut self, event: &NewEvent) {
        match event.kind {
            EventKind::ChannelOpen => self.desktop.opened(event.channel, &event.data.concat()),
            EventKind::Data if event.dir == Direction::Out && !self.desktop.is_empty() => {
                for part in &event.data {
                    self.desktop.data(event.channel, part, event.offset_us, self.written);
                }
            }
            _ => {}
        }
    }

    async fn write_chunk(&mut self, kind: ChunkKind, payload: &[u8]) -> Result<(), RecordingFailed> {
        let (bytes, hash) = format::encode_chunk(kind, &self.prev, payload);
        self.written += bytes.len() as u64;
        self.sink.append(vec![bytes.into()]).await.map_err(|e| RecordingFailed(e.to_string()))?;
        self.prev = hash;
        self.chunks += 1;
        Ok(())
    }

    /// Cuts the batch as a chunk and has the sink write everything to the file, then gives
    /// the held bytes back: they are in the file, so they may be forwarded. Cutting first
    /// keeps the file ending on a whole chunk after each write-out, so a reader of a
    /// recording cut short by a full disk finds every byte that was given back.
    async fn write_out(&mut self) -> Result<(), RecordingFailed> {
        self.flush().await?;
        self.sink.write_out().await.map_err(|e| RecordingFailed(e.to_string()))?;
        self.give_back();
        Ok(())
    }

    /// Like [`Task::write_out`], and durable.
    async fn sync(&mut self) -> Result<(), RecordingFailed> {
        self.flush().await?;
        self.sink.sync().await.map_err(|e| RecordingFailed(e.to_string()))?;
        self.give_back();
        Ok(())
    }

    fn give_back(&mut self) {
        self.budget.give_back(std::mem::take(&mut self.held));
    }

    async fn flush(&mut self) -> Result<(), RecordingFailed> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let (chunk, hash) = self.batch.frame(&self.prev);
        self.written += chunk.iter().map(|p| p.len() as u64).sum::<u64>();
        self.sink.append(chunk).await.map_err(|e| RecordingFailed(e.to_string()))?;
        self.prev = hash;
        self.chunks += 1;
        Ok(())
    }

    async fn seal(
        &mut self,
        end_reason: String,
        agent: Vec<AgentCountersignature>,
    ) -> Result<SealBody, RecordingFailed> {
        self.flush().await?;
        let channels = std::mem::take(&mut self.counts)
            .into_iter()
            .map(|((channel, dir), bytes)| ChannelDigest {
                channel,
                direction: dir.as_str().to_owned(),
                bytes,
                sha256: None,
            })
            .collect();
        let body = SealBody {
            session: self.session.clone(),
            chunks: self.chunks,
            final_hash: hex::encode(self.prev),
            ended_at: now_ms(),
            end_reason,
            channels,
            agent,
            desktop: std::mem::take(&mut self.desktop).finish(),
        };
        let json = serde_json::to_vec(&body).expect("seal serialises");
        let sig = self.key.sign(&json);
        let mut payload = Vec::with_capacity(4 + json.len() + 64);
        payload.extend_from_slice(&(json.len() as u32).to_be_bytes());
        payload.extend_from_slice(&json);
        payload.extend_from_slice(sig.as_ref());
        self.write_chunk(ChunkKind::Seal, &payload).await?;
        self.sink.sync().await.map_err(|e| RecordingFailed(e.to_string()))?;
        Ok(body)
    }
}
