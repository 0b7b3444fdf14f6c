//! Files in the browser: the relay plays the engineer's end of a file channel for the
//! console, exactly as `assist cp` and `assist ls` do over QUIC (protocol in
//! `assist_proto::files`).
//!
//! - Every listing, download and upload is one `ChannelKind::Files` channel, admitted by
//!   `Relay::admit_channel` (the grant's roots, the relay's limits), opened on the agent
//!   through the seam (`AgentPeer::open_channel`, which reads the agent's `FileReady`),
//!   recorded (the opening names the client, `browser`) and spliced by the same `splice`
//!   with the same end gate, so the agent's report is audited (`file.transferred`, both
//!   digests) before the browser sees the end.
//! - A download streams the file's bytes into the HTTP response, hashed as they pass; the
//!   relay sends that SHA-256 to the agent as the engineer's digest, and the response ends
//!   cleanly only if the agent confirms it (finishes its stream); otherwise it ends with an
//!   error, so the browser never takes a broken file for a good one.
//! - An upload streams the request's body to the agent, exactly the declared size, hashed
//!   as it passes; the agent answers with its SHA-256, and the relay commits (finishes its
//!   stream, the agent renames the file into place) only when the agent's digest, its own
//!   and the one the page computed before sending are the same. Otherwise it resets the
//!   stream and the old file stays as it was.
//!
//! It decides nothing: admission and limits are the broker's, paths are checked by the
//! relay's admission and again by the agent.

use super::browser_open::{OpenFailed, open_for_browser};
use super::splice::{SpliceEnd, Tee, splice};
use crate::broker::peer::{AgentChannel, ChunkSink, ChunkSource, PeerFuture, StreamGone};
use crate::broker::policy::Principal;
use crate::broker::{Admission, ChannelRefused, Refusal, Relay};
use crate::recording::format::Direction;
use assist_proto::files::{Batch, FileDigest, FileEntry, FileReady, FileRequest};
use assist_proto::frame::FrameDecoder;
use assist_proto::ids::SessionId;
use assist_proto::msg::{ChannelKind, ChannelOpen};
use aws_lc_rs::digest::{Context, SHA256};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info};

/// Most entries a listing shown in the browser may hold.
const MAX_ENTRIES: usize = 10_000;
/// Chunks of a download queued towards the HTTP response.
const BODY_QUEUE: usize = 16;

/// Why a browser's file operation did not happen, or did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FilesError {
    /// Refused before anything moved: not admitted (the message says why).
    #[error("{0}")]
    Refused(ChannelRefused),
    /// The agent refused it or could not describe it; nothing moved.
    #[error("{0}")]
    Agent(String),
    /// It started but did not complete (the message says where it stopped).
    #[error("{0}")]
    Failed(String),
}

impl FilesError {
    /// The broker's refusal about the session, if that is what it was (for "not found").
    pub(crate) fn session_refusal(self) -> Result<Refusal, Self> {
        match self {
            FilesError::Refused(ChannelRefused::Session(r)) => Ok(r),
            other => Err(other),
        }
    }
}

/// One entry of a listing.
pub(crate) type Entry = FileEntry;

/// A download under way: its size and the body, which ends with an error unless the agent
/// confirmed the relay's digest.
pub(crate) struct Download {
    pub size: u64,
    pub body: mpsc::Receiver<Result<Bytes, std::io::Error>>,
}

/// A completed upload.
#[derive(Debug, Clone)]
pub(crate) struct Uploaded {
    pub size: u64,
    pub sha256: String,
}

/// An admitted file channel, open on the agent, described and recorded.
struct Opened {
    admitted: Admission,
    ch: AgentChannel,
    ready: FileReady,
}

async fn open(
    relay: &Relay,
    who: &Principal,
    session: &SessionId,
    request: FileRequest,
) -> Result<Opened, FilesError> {
    let open =
        ChannelOpen { session: session.clone(), channel: ChannelKind::Files { request }, report_exit: false };
    let opened = open_for_browser(relay, who, open, None).await.map_err(|e| match e {
        OpenFailed::Refused(refused) => FilesError::Refused(refused),
        OpenFailed::Unreachable(m) => FilesError::Agent(m),
        e @ OpenFailed::AgentRefused(_) => FilesError::Agent(e.to_string()),
        e @ OpenFailed::Unrecorded => FilesError::Failed(e.to_string()),
    })?;
    let ready = opened.ch.ready.expect("checked when opened");
    Ok(Opened { admitted: opened.admitted, ch: opened.ch, ready })
}

impl Opened {
    /// Splices `up` (towards the agent) and the agent's data into `down` until both end,
    /// with the end gate, and records the channel's close.
    async fn splice(
        self,
        up: impl ChunkSource,
        down: impl ChunkSink,
    ) -> ((u64, SpliceEnd), (u64, SpliceEnd)) {
        let Opened { admitted, ch, .. } = self;
        let span = admitted.session.span.clone();
        async move {
            let gate = admitted.end_gate(ch.stream);
            let channel = admitted.channel;
            info!(channel, "browser file channel open");
            let tee =
                |direction| admitted.recorder.clone().map(|recorder| Tee { recorder, channel, direction });
            let stop = &admitted.handle.stop;
            let up = splice(up, ch.send, stop.clone(), tee(Direction::In), None);
            let down = splice(ch.recv, down, stop.clone(), tee(Direction::Out), gate);
            let ((up_bytes, up_end), (down_bytes, down_end)) = tokio::join!(up, down);
            let ends = (format!("{up_end:?}"), format!("{down_end:?}"));
            admitted
                .record_close(
                    serde_json::json!({ "in": up_bytes, "out": down_bytes, "in_end": &ends.0, "out_end": &ends.1 }),
                )
                .await;
            info!(up_bytes, ?up_end, down_bytes, ?down_end, "browser file channel closed");
            ((up_bytes, up_end), (down_bytes, down_end))
        }
        .instrument(span)
        .await
    }
}

/// The entries of `path` (not recursive), as the agent lists them.
pub(crate) async fn list(
    relay: &Relay,
    who: &Principal,
    session: &SessionId,
    path: String,
) -> Result<Vec<Entry>, FilesError> {
    let opened = open(relay, who, session, FileRequest::List { path, recursive: false }).await?;
    let entries = Arc::new(Mutex::new(Listing::default()));
    let (_, (_, end)) = opened
        .splice(Queue::finished(), ListSink { frames: FrameDecoder::new(), out: entries.clone() })
        .await;
    let listing = std::mem::take(&mut *entries.lock().expect("listing lock"));
    match (end, listing.broken) {
        (SpliceEnd::Finished, None) => Ok(listing.entries),
        (_, Some(why)) => Err(FilesError::Failed(why)),
        (end, None) => Err(FilesError::Failed(format!("the listing broke off ({end:?})"))),
    }
}

/// Starts downloading `path`: the body streams as the agent sends it.
pub(crate) async fn download(
    relay: Arc<Relay>,
    who: &Principal,
    session: &SessionId,
    path: String,
) -> Result<Download, FilesError> {
    let opened = open(&relay, who, session, FileRequest::Read { path, offset: 0 }).await?;
    let size = opened.ready.data_len();
    let (body_tx, body) = mpsc::channel(BODY_QUEUE);
    let (digest_tx, digest_rx) = mpsc::channel(1);
    let mut sink = DownloadSink {
        left: size,
        hash: Some(Context::new(&SHA256)),
        body: body_tx.clone(),
        digest: Some(digest_tx),
    };
    if size == 0 {
        sink.send_digest();
    }
    tokio::spawn(async move {
        let (_, (moved, end)) = opened.splice(Queue(digest_rx), sink).await;
        if end != SpliceEnd::Finished || moved != size {
            let why =
                format!("the download stopped after {moved} of {size} bytes ({end:?}); nothing is confirmed");
            let _ = body_tx.send(Err(std::io::Error::other(why))).await;
        }
    });
    Ok(Download { size, body })
}

/// What the page asks to upload: into directory `dir`, as `name`, `size` bytes whose
/// SHA-256 the page computed as `sha256`.
pub(crate) struct UploadTo {
    pub dir: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub replace: bool,
}

/// Uploads the body (exactly `to.size` bytes) into place, if every digest agrees.
pub(crate) async fn upload(
    relay: &Relay,
    who: &Principal,
    session: &SessionId,
    to: UploadTo,
    body: mpsc::Receiver<Bytes>,
) -> Result<Uploaded, FilesError> {
    let request = FileRequest::Write {
        path: to.dir.clone(),
        name: Some(to.name.clone()),
        size: to.size,
        mode: 0o644,
        force: to.replace,
        resume: false,
        parents: false,
        batch: Batch { files: 1, bytes: to.size },
    };
    let opened = open(relay, who, session, request).await?;
    if opened.ready.offset != 0 {
        return Err(FilesError::Failed("the agent answered for a resumed upload".into()));
    }
    let (agent_tx, agent_rx) = oneshot::channel();
    let verdict = Arc::new(Mutex::new(None));
    let source = UploadSource {
        body,
        left: to.size,
        hash: Some(Context::new(&SHA256)),
        page: to.sha256.to_ascii_lowercase(),
        agent: Some(agent_rx),
        verdict: verdict.clone(),
    };
    let sink = DigestSink { frames: FrameDecoder::new(), tx: Some(agent_tx) };
    let ((_, up_end), (_, down_end)) = opened.splice(source, sink).await;
    let verdict = verdict.lock().expect("verdict lock").take();
    match (verdict, up_end, down_end) {
        (Some(Ok(sha256)), SpliceEnd::Finished, SpliceEnd::Finished) => {
            Ok(Uploaded { size: to.size, sha256 })
        }
        (Some(Err(why)), ..) => Err(FilesError::Failed(why)),
        (Some(Ok(_)), ..) => Err(FilesError::Failed("the agent could not put the file in place".into())),
        (None, ..) => Err(FilesError::Failed(format!(
            "the upload broke off before the end ({up_end:?}); the file was not replaced"
        ))),
    }
}

/// Chunks queued by the relay itself (the engineer's digest frame), finished when the
/// sender is dropped.
struct Queue(mpsc::Receiver<Bytes>);

impl Queue {
    fn finished() -> Self {
        Queue(mpsc::channel(1).1)
    }
}

impl ChunkSource for Queue {
    fn read_chunks<'a>(
        &'a mut self,
        bufs: &'a mut [Bytes],
    ) -> PeerFuture<'a, Result<Option<usize>, StreamGone>> {
        Box::pin(async move {
            let Some(first) = self.0.recv().await else { return Ok(None) };
            let Some(slot) = bufs.first_mut() else { return Ok(Some(0)) };
            *slot = first;
            Ok(Some(1))
        })
    }
    fn stop(&mut self) {
        self.0.close();
    }
}

#[derive(Default)]
struct Listing {
    entries: Vec<Entry>,
    broken: Option<String>,
}

/// A listing's frames, decoded as they arrive.
struct ListSink {
    frames: FrameDecoder,
    out: Arc<Mutex<Listing>>,
}

impl ListSink {
    fn take(&mut self) -> Result<(), String> {
        let mut listing = self.out.lock().expect("listing lock");
        loop {
            match self.frames.next_msg::<FileEntry>() {
                Ok(Some(e)) if listing.entries.len() < MAX_ENTRIES => listing.entries.push(e),
                Ok(Some(_)) => return Err(format!("the folder holds more than {MAX_ENTRIES} entries")),
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("the agent sent a bad entry: {e}")),
            }
        }
    }
}

impl ChunkSink for ListSink {
    fn write_all_chunks<'a>(&'a mut self, bufs: &'a mut [Bytes]) -> PeerFuture<'a, Result<(), StreamGone>> {
        Box::pin(async move {
            for b in bufs.iter() {
                self.frames.push(b);
            }
            self.take().map_err(|why| {
                self.out.lock().expect("listing lock").broken = Some(why);
                StreamGone
            })
        })
    }
    fn finish(&mut self) {}
    fn reset(&mut self) {}
}

/// The file's bytes towards the HTTP response, hashed; once the last declared byte passed,
/// the relay's digest goes to the agent.
struct DownloadSink {
    left: u64,
    hash: Option<Context>,
    body: mpsc::Sender<Result<Bytes, std::io::Error>>,
    digest: Option<mpsc::Sender<Bytes>>,
}

impl DownloadSink {
    fn send_digest(&mut self) {
        let (Some(hash), Some(tx)) = (self.hash.take(), self.digest.take()) else { return };
        let sha256 = hex::encode(hash.finish().as_ref());
        if let Ok(frame) = assist_proto::frame::encode(&FileDigest { sha256 }) {
            let _ = tx.try_send(Bytes::from(frame));
        }
    }
}

impl ChunkSink for DownloadSink {
    fn write_all_chunks<'a>(&'a mut self, bufs: &'a mut [Bytes]) -> PeerFuture<'a, Result<(), StreamGone>> {
        Box::pin(async move {
            for b in bufs.iter_mut() {
                let chunk = std::mem::take(b);
                let n = chunk.len() as u64;
                if n > self.left {
                    return Err(StreamGone);
                }
                self.left -= n;
                if let Some(hash) = &mut self.hash {
                    hash.update(&chunk);
                }
                self.body.send(Ok(chunk)).await.map_err(|_| StreamGone)?;
                if self.left == 0 {
                    self.send_digest();
                }
            }
            Ok(())
        })
    }
    fn finish(&mut self) {}
    fn reset(&mut self) {}
}

/// The request's body towards the agent: exactly the declared size, hashed; then the
/// commit (finish) only if the agent's, the relay's and the page's digests agree, else a
/// reset.
struct UploadSource {
    body: mpsc::Receiver<Bytes>,
    left: u64,
    hash: Option<Context>,
    /// The page's SHA-256 of what it sends.
    page: String,
    agent: Option<oneshot::Receiver<String>>,
    /// The relay's digest once all agreed, or why not.
    verdict: Arc<Mutex<Option<Result<String, String>>>>,
}

impl UploadSource {
    fn decide(&self, v: Result<String, String>) -> Result<Option<usize>, StreamGone> {
        let ok = v.is_ok();
        *self.verdict.lock().expect("verdict lock") = Some(v);
        if ok { Ok(None) } else { Err(StreamGone) }
    }

    async fn end(&mut self) -> Result<Option<usize>, StreamGone> {
        // Nothing may follow the declared size.
        if let Some(extra) = self.body.recv().await
            && !extra.is_empty()
        {
            return self
                .decide(Err("the upload is longer than its declared size; nothing was replaced".into()));
        }
        let ours = hex::encode(self.hash.take().expect("hashed once").finish().as_ref());
        let Some(agent) = self.agent.take() else { return Err(StreamGone) };
        let Ok(theirs) = agent.await else {
            return self
                .decide(Err("the agent did not confirm the file (see its message in the audit log)".into()));
        };
        if theirs != ours || self.page != ours {
            return self.decide(Err(format!(
                "the digests differ (page {}, relay {ours}, agent {theirs}); the file was not replaced",
                self.page
            )));
        }
        self.decide(Ok(ours))
    }
}

impl ChunkSource for UploadSource {
    fn read_chunks<'a>(
        &'a mut self,
        bufs: &'a mut [Bytes],
    ) -> PeerFuture<'a, Result<Option<usize>, StreamGone>> {
        Box::pin(async move {
            if self.hash.is_none() {
                return Ok(None);
            }
            if self.left == 0 {
                return self.end().await;
            }
            let chunk = loop {
                match self.body.recv().await {
                    Some(c) if c.is_empty() => continue,
                    Some(c) => break c,
                    None => {
                        let why = format!(
                            "the upload stopped {} bytes short; the file was not replaced",
                            self.left
                        );
                        return self.decide(Err(why));
                    }
                }
            };
            let n = chunk.len() as u64;
            if n > self.left {
                return self
                    .decide(Err("the upload is longer than its declared size; nothing was replaced".into()));
            }
            self.left -= n;
            if let Some(hash) = &mut self.hash {
                hash.update(&chunk);
            }
            let Some(slot) = bufs.first_mut() else { return Ok(Some(0)) };
            *slot = chunk;
            Ok(Some(1))
        })
    }
    fn stop(&mut self) {
        self.body.close();
    }
}

/// The agent's digest frame of an upload.
struct DigestSink {
    frames: FrameDecoder,
    tx: Option<oneshot::Sender<String>>,
}

impl ChunkSink for DigestSink {
    fn write_all_chunks<'a>(&'a mut self, bufs: &'a mut [Bytes]) -> PeerFuture<'a, Result<(), StreamGone>> {
        Box::pin(async move {
            for b in bufs.iter() {
                self.frames.push(b);
            }
            if self.frames.buffered() > 4096 {
                return Err(StreamGone);
            }
            match self.frames.next_msg::<FileDigest>() {
                Ok(Some(d)) => {
                    if let Some(tx) = self.tx.take() {
                        let _ = tx.send(d.sha256);
                    }
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(_) => Err(StreamGone),
            }
        })
    }
    fn finish(&mut self) {}
    fn reset(&mut self) {}
}
