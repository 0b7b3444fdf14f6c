//! Offline verification of a recording: chunk hashes, the chain, the seal's signature, and
//! that the sealed digests (and the desktop channels' seek index, where the seal has one)
//! match the recorded bytes.
//!
//! The verdict is one of: valid (complete and signed), truncated (a prefix that verifies,
//! with no seal: what a crash leaves), or tampered (with where). It needs only the
//! recording and the relay's public key, so an auditor can run it away from the relay.
//!
//! It reads the recording chunk by chunk, so its memory does not grow with the recording:
//! one chunk, the per-channel digests, and the seal. When the agent countersigned, it reads
//! the recording a second time (see [`verify_with`]). A problem in the chunks themselves
//! (a bad hash, a broken chain) is reported before a problem in their content, wherever
//! each is, so the verdict is the same however the recording is read.

use super::desktop_index::Indexers;
use super::format::{self, Chunk, ChunkKind, ChunkProblem, Direction, EventKind};
use super::recorder::{AgentCountersignature, ChannelDigest, Header, SealBody};
use super::store::{MemorySource, RecordingSource, RecordingStore};
use super::stream::{ChunkStream, Next};
use assist_certs::Fingerprint;
use assist_proto::ids::SessionId;
use aws_lc_rs::digest::{Context, SHA256};
use aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1;
use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use bytes::Bytes;
use futures_util::FutureExt;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Complete, chained, sealed and signed by the expected key. `countersigned` counts
    /// the agent's channel reports that were checked against the recorded bytes.
    Valid { header: Box<Header>, seal: SealBody, chunks: usize, countersigned: usize },
    /// Verifies up to the last complete chunk but was never sealed.
    Truncated { header: Option<Box<Header>>, chunks: usize, offset: usize },
    /// Something was changed: `at` says where.
    Tampered { chunk: usize, offset: usize, reason: String },
}

impl Verdict {
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Valid { .. } => "valid",
            Verdict::Truncated { .. } => "truncated",
            Verdict::Tampered { .. } => "tampered",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Valid { seal, chunks, countersigned, .. } => {
                write!(
                    f,
                    "valid: {chunks} chunks, sealed and signed by the relay; final hash {}; ended: {}; ",
                    seal.final_hash, seal.end_reason
                )?;
                if *countersigned > 0 {
                    write!(f, "the agent countersigned {countersigned} channel(s) and saw the same bytes")
                } else {
                    write!(f, "no agent countersignature (the agent did not report)")
                }
            }
            Verdict::Truncated { chunks, offset, .. } => write!(
                f,
                "truncated: the first {chunks} chunks (up to byte {offset}) verify, but the recording was never sealed"
            ),
            Verdict::Tampered { chunk, offset, reason } => {
                write!(f, "tampered: chunk {chunk} at byte {offset}: {reason}")
            }
        }
    }
}

/// Verifies a recording in memory against the relay's Ed25519 public key.
pub fn verify(bytes: &[u8], relay_key: &[u8]) -> Verdict {
    let bytes = Bytes::copy_from_slice(bytes);
    let open = || {
        let bytes = bytes.clone();
        async move { Ok(Box::new(MemorySource::new(bytes)) as Box<dyn RecordingSource>) }
    };
    // Nothing here waits: memory is always ready, and reading it cannot fail.
    match verify_with(open, relay_key).now_or_never() {
        Some(Ok(verdict)) => verdict,
        _ => unreachable!("verifying bytes in memory neither waits nor fails"),
    }
}

/// Verifies a session's recording, reading it from the store chunk by chunk.
pub async fn verify_stored(
    store: &dyn RecordingStore,
    session: &SessionId,
    relay_key: &[u8],
) -> std::io::Result<Verdict> {
    verify_with(|| store.open(session), relay_key).await
}

/// Verifies a recording file, reading it chunk by chunk.
pub async fn verify_file(path: &Path, relay_key: &[u8]) -> std::io::Result<Verdict> {
    let open =
        || async { Ok(Box::new(super::store::FileSource::open(path).await?) as Box<dyn RecordingSource>) };
    verify_with(open, relay_key).await
}

/// Reads the recording once to check chunks, chain, seal and sealed digests. When the
/// agent countersigned, opens it a second time: the agent's byte counts, known only from
/// the seal, say which prefix of each channel to hash. The second pass must see the same
/// chain up to the seal, or verification fails with an error.
async fn verify_with<F, Fut>(mut open: F, relay_key: &[u8]) -> std::io::Result<Verdict>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<Box<dyn RecordingSource>>>,
{
    let mut source = open().await?;
    let mut chunks = ChunkStream::new(&mut *source);
    let mut judge = Judge::new(relay_key);
    let problem = loop {
        match chunks.next().await? {
            Next::Chunk(chunk) => judge.chunk(chunk),
            Next::End(problem) => break problem,
        }
    };
    let sealed = match judge.finish(problem) {
        Ok(verdict) => return Ok(verdict),
        Err(sealed) => sealed,
    };
    let mut prefixes = sealed.targets();
    if !prefixes.is_empty() {
        let mut source = open().await?;
        hash_prefixes(&mut *source, &sealed, &mut prefixes).await?;
    }
    Ok(sealed.judge_agent(&prefixes))
}

/// What the first pass learns, chunk by chunk.
struct Judge<'k> {
    relay_key: &'k [u8],
    header: Option<Header>,
    /// The first problem in chunk order found in the chunks' content: chunk, reason.
    problem: Option<(usize, String)>,
    chunks: usize,
    digests: BTreeMap<(u32, Direction), (u64, Context)>,
    /// QUIC stream index (as the agent names it) → recorded channel.
    channel_of: BTreeMap<u64, u32>,
    /// The desktop channels' seek indexes, rebuilt from the recorded bytes.
    desktop: Indexers,
    /// The seal and its index.
    seal: Option<(usize, Chunk)>,
    /// Where the last good chunk ends.
    end: usize,
    /// Where the first chunk with a problem starts.
    problem_offset: usize,
}

/// A recording whose seal checked out, waiting for the agent's countersignatures.
struct Sealed {
    header: Header,
    seal: SealBody,
    seal_index: usize,
    seal_offset: usize,
    /// The hash of the chunk before the seal.
    final_hash: [u8; 32],
    channel_of: BTreeMap<u64, u32>,
}

/// (channel, direction, bytes the agent reports) → (bytes still to hash, SHA-256 so far).
type Prefixes = BTreeMap<(u32, Direction, u64), (u64, Context)>;

impl<'k> Judge<'k> {
    fn new(relay_key: &'k [u8]) -> Self {
        Self {
            relay_key,
            header: None,
            problem: None,
            chunks: 0,
            digests: BTreeMap::new(),
            channel_of: BTreeMap::new(),
            desktop: Indexers::default(),
            seal: None,
            end: 0,
            problem_offset: 0,
        }
    }

    fn fail(&mut self, i: usize, offset: usize, reason: String) {
        self.problem = Some((i, reason));
        self.problem_offset = offset;
    }

    fn chunk(&mut self, chunk: Chunk) {
        let i = self.chunks;
        self.chunks += 1;
        self.end = chunk.offset + format::CHUNK_HEAD + chunk.payload.len() + format::HASH_LEN;
        if self.problem.is_some() {
            return;
        }
        if let Some((at, seal)) = &self.seal {
            let (at, offset) = (*at, seal.offset);
            return self.fail(at, offset, "data after the seal".into());
        }
        if i == 0 {
            match serde_json::from_slice::<Header>(&chunk.payload) {
                Err(e) => self.fail(0, 0, format!("header is not valid: {e}")),
                Ok(h) if h.relay_key != hex::encode(self.relay_key) => {
                    self.fail(0, 0, "recorded by another relay key than the one given".into())
                }
                Ok(h) => self.header = Some(h),
            }
            return;
        }
        match chunk.kind {
            ChunkKind::Header => self.fail(i, chunk.offset, "a second header".into()),
            ChunkKind::Events => match format::decode_events(&chunk.payload) {
                Err(e) => self.fail(i, chunk.offset, e.to_string()),
                Ok(events) => {
                    for e in events {
                        self.event(e, chunk.offset as u64);
                    }
                }
            },
            ChunkKind::Seal => self.seal = Some((i, chunk)),
        }
    }

    fn event(&mut self, e: format::Event, chunk_at: u64) {
        match e.kind {
            EventKind::Data => {
                if e.direction == Direction::Out {
                    self.desktop.data(e.channel, &e.data, e.offset_us, chunk_at);
                }
                let d = self
                    .digests
                    .entry((e.channel, e.direction))
                    .or_insert_with(|| (0, Context::new(&SHA256)));
                d.0 += e.data.len() as u64;
                d.1.update(&e.data);
            }
            EventKind::ChannelOpen => {
                self.desktop.opened(e.channel, &e.data);
                let stream = serde_json::from_slice::<serde_json::Value>(&e.data)
                    .ok()
                    .and_then(|v| v["stream"].as_u64());
                if let Some(stream) = stream {
                    self.channel_of.insert(stream, e.channel);
                }
            }
            _ => {}
        }
    }

    /// The verdict, or a checked seal whose countersignatures remain to be checked.
    fn finish(self, problem: Option<ChunkProblem>) -> Result<Verdict, Box<Sealed>> {
        if let Some(ChunkProblem::Corrupt { offset, index, reason }) = problem {
            return Ok(Verdict::Tampered { chunk: index, offset, reason });
        }
        if let Some((chunk, reason)) = self.problem {
            return Ok(Verdict::Tampered { chunk, offset: self.problem_offset, reason });
        }
        let Some(header) = self.header else {
            return Ok(Verdict::Truncated { header: None, chunks: 0, offset: 0 });
        };
        let Some((i, chunk)) = self.seal else {
            let chunks = self.chunks;
            return Ok(Verdict::Truncated { header: Some(Box::new(header)), chunks, offset: self.end });
        };
        let tampered = |reason: String| Ok(Verdict::Tampered { chunk: i, offset: chunk.offset, reason });
        if problem.is_some() {
            return tampered("data after the seal".into());
        }
        let seal = match open_seal(&chunk.payload, self.relay_key) {
            Ok(s) => s,
            Err(bad) => return tampered(bad.to_string()),
        };
        if seal.chunks as usize != i || seal.final_hash != hex::encode(chunk.prev_hash) {
            return tampered("the seal does not cover the chunks before it".into());
        }
        if seal.session != header.session.id.as_str() {
            return tampered("the seal is for another session".into());
        }
        let recomputed: Vec<ChannelDigest> = self
            .digests
            .into_iter()
            .map(|((channel, dir), (n, ctx))| ChannelDigest {
                channel,
                direction: dir.as_str().to_owned(),
                bytes: n,
                sha256: Some(hex::encode(ctx.finish().as_ref())),
            })
            .collect();
        // Byte counts always; SHA-256 where the seal carries it (older seals).
        let agrees = recomputed.len() == seal.channels.len()
            && recomputed.iter().zip(&seal.channels).all(|(r, s)| {
                r.channel == s.channel
                    && r.direction == s.direction
                    && r.bytes == s.bytes
                    && s.sha256.as_ref().is_none_or(|h| Some(h) == r.sha256.as_ref())
            });
        if !agrees {
            return tampered("recorded bytes do not match the sealed digests".into());
        }
        // Seals from relays before the index have none; a seal that has one must describe
        // exactly the recorded bytes.
        if !seal.desktop.is_empty() && seal.desktop != self.desktop.finish() {
            return tampered("the desktop seek index does not match the recorded bytes".into());
        }
        Err(Box::new(Sealed {
            header,
            seal,
            seal_index: i,
            seal_offset: chunk.offset,
            final_hash: chunk.prev_hash,
            channel_of: self.channel_of,
        }))
    }
}

impl Sealed {
    /// The channel prefixes that the agent's reports name, to hash on the second pass.
    fn targets(&self) -> Prefixes {
        let mut targets = Prefixes::new();
        for d in self.seal.agent.iter().flat_map(|cs| &cs.digests) {
            if let (Some(&channel), Some(dir)) = (self.channel_of.get(&d.stream), direction(&d.direction)) {
                targets.insert((channel, dir, d.bytes), (d.bytes, Context::new(&SHA256)));
            }
        }
        targets
    }

    fn judge_agent(self, prefixes: &Prefixes) -> Verdict {
        let i = self.seal_index;
        for cs in &self.seal.agent {
            if let Err(bad) = check_one(&self.header, cs, &self.channel_of, prefixes) {
                return Verdict::Tampered { chunk: i, offset: self.seal_offset, reason: bad.to_string() };
            }
        }
        let countersigned = self.seal.agent.len();
        Verdict::Valid { header: Box::new(self.header), seal: self.seal, chunks: i + 1, countersigned }
    }
}

fn direction(s: &str) -> Option<Direction> {
    match s {
        "in" => Some(Direction::In),
        "out" => Some(Direction::Out),
        _ => None,
    }
}

/// The second pass: hashes the first `n` recorded bytes of each target channel direction.
async fn hash_prefixes(
    source: &mut dyn RecordingSource,
    sealed: &Sealed,
    prefixes: &mut Prefixes,
) -> std::io::Result<()> {
    let changed = || {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "the recording changed while it was verified")
    };
    let mut chunks = ChunkStream::new(source);
    let mut last = format::ZERO_HASH;
    for _ in 0..sealed.seal_index {
        let Next::Chunk(chunk) = chunks.next().await? else { return Err(changed()) };
        last = chunk.hash;
        if chunk.kind != ChunkKind::Events {
            continue;
        }
        let events = format::decode_events(&chunk.payload).map_err(|_| changed())?;
        for e in events.iter().filter(|e| e.kind == EventKind::Data) {
            let targets = (e.channel, e.direction, 0)..=(e.channel, e.direction, u64::MAX);
            for (left, ctx) in prefixes.range_mut(targets).map(|(_, v)| v) {
                let take = (*left).min(e.data.len() as u64) as usize;
                ctx.update(&e.data[..take]);
                *left -= take as u64;
            }
        }
    }
    if last != sealed.final_hash {
        return Err(changed());
    }
    Ok(())
}

/// Why a seal chunk does not open. Each is reported as tampering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSeal {
    #[error("seal too short")]
    TooShort,
    #[error("seal length is wrong")]
    WrongLength,
    #[error("the relay's signature on the seal is not valid")]
    BadSignature,
    #[error("seal is not valid: {0}")]
    Malformed(String),
}

fn open_seal(payload: &[u8], relay_key: &[u8]) -> Result<SealBody, BadSeal> {
    if payload.len() < 4 + 64 {
        return Err(BadSeal::TooShort);
    }
    let len = u32::from_be_bytes(payload[..4].try_into().expect("4")) as usize;
    if payload.len() != 4 + len + 64 {
        return Err(BadSeal::WrongLength);
    }
    let body = &payload[4..4 + len];
    let sig = &payload[4 + len..];
    UnparsedPublicKey::new(&ED25519, relay_key).verify(body, sig).map_err(|_| BadSeal::BadSignature)?;
    serde_json::from_slice(body).map_err(|e| BadSeal::Malformed(e.to_string()))
}

/// Why an agent's countersignature does not hold. Each is reported as tampering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCountersignature {
    #[error("agent certificate is not hex")]
    CertNotHex,
    #[error("the countersignature is not by the session's agent certificate")]
    NotTheAgent,
    #[error("{0}")]
    Certificate(String),
    #[error("countersignature is not hex")]
    SignatureNotHex,
    #[error("the agent's countersignature is not valid")]
    BadSignature,
    #[error("the agent reports stream {0} that the recording does not have")]
    UnknownStream(u64),
    #[error("unknown direction {0:?} in the countersignature")]
    UnknownDirection(String),
    #[error("channel {channel} ({direction}): the agent saw {bytes} bytes that differ from the recording")]
    Differs { channel: u32, direction: String, bytes: u64 },
}

/// Checks one of the agent's countersignatures: signed by the enrolled agent's key, and
/// each of its digests equal to the recorded bytes. The agent may have received fewer
/// input bytes than the relay forwarded (typing after the shell exited), so its count may
/// be a prefix of the recorded bytes, never more. `prefixes` holds the hashes of the
/// recorded prefixes, from the second pass.
fn check_one(
    header: &Header,
    cs: &AgentCountersignature,
    channel_of: &BTreeMap<u64, u32>,
    prefixes: &Prefixes,
) -> Result<(), BadCountersignature> {
    let cert = hex::decode(&cs.cert).map_err(|_| BadCountersignature::CertNotHex)?;
    if header.agent_cert_fingerprint.as_deref() != Some(Fingerprint::of_der(&cert).hex().as_str()) {
        return Err(BadCountersignature::NotTheAgent);
    }
    let key =
        assist_certs::public_key_of(&cert).map_err(|e| BadCountersignature::Certificate(e.to_string()))?;
    let message =
        assist_proto::msg::countersign_message(&header.session.id, &header.session.agent, &cs.digests);
    let sig = hex::decode(&cs.signature).map_err(|_| BadCountersignature::SignatureNotHex)?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &key)
        .verify(&message, &sig)
        .map_err(|_| BadCountersignature::BadSignature)?;
    for d in &cs.digests {
        let channel = *channel_of.get(&d.stream).ok_or(BadCountersignature::UnknownStream(d.stream))?;
        let dir = direction(&d.direction)
            .ok_or_else(|| BadCountersignature::UnknownDirection(d.direction.clone()))?;
        let same = match prefixes.get(&(channel, dir, d.bytes)) {
            Some((0, ctx)) => hex::encode(ctx.clone().finish().as_ref()) == d.sha256,
            _ => false,
        };
        if !same {
            return Err(BadCountersignature::Differs {
                channel,
                direction: d.direction.clone(),
                bytes: d.bytes,
            });
        }
    }
    Ok(())
}
