//! The canonical recording format, version 1: encoding and decoding, without I/O.
//!
//! A recording is a sequence of chunks, appended and never rewritten:
//!
//! ```text
//! chunk  = magic "ARC1" | kind u8 | len u32 BE | prev_hash [32] | payload [len] | hash [32]
//! hash   = SHA-256("ARC1" | kind | len | prev_hash | payload)
//! ```
//!
//! The first chunk is a header (`prev_hash` all zeros), then event chunks, then one seal.
//! Each chunk carries the hash of the one before, so a changed, removed or reordered chunk
//! breaks the chain. `docs/recording.md` specifies the payloads for third-party readers.

use aws_lc_rs::digest::{Context, SHA256};

pub const MAGIC: &[u8; 4] = b"ARC1";
pub const VERSION: u32 = 1;
/// Chunk header: magic, kind, len, prev_hash.
pub const CHUNK_HEAD: usize = 4 + 1 + 4 + 32;
pub const HASH_LEN: usize = 32;
/// Largest payload of one chunk (1 MiB); the writer cuts event batches well below it.
pub const MAX_PAYLOAD: usize = 1 << 20;
pub const ZERO_HASH: [u8; 32] = [0; 32];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ChunkKind {
    /// JSON: format, version, session, relay key.
    Header = 1,
    /// A batch of [`Event`]s.
    Events = 2,
    /// Signed summary; always the last chunk.
    Seal = 3,
}

impl ChunkKind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(ChunkKind::Header),
            2 => Some(ChunkKind::Events),
            3 => Some(ChunkKind::Seal),
            _ => None,
        }
    }
}

/// What an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum EventKind {
    /// Channel bytes, exactly as spliced.
    Data = 0,
    /// Terminal size, `COLSxROWS`.
    Resize = 1,
    /// A session marker (approval, end), UTF-8 text.
    Marker = 2,
    /// A channel opened; JSON describing it.
    ChannelOpen = 3,
    /// A channel closed; JSON with how.
    ChannelClose = 4,
}

impl EventKind {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => EventKind::Data,
            1 => EventKind::Resize,
            2 => EventKind::Marker,
            3 => EventKind::ChannelOpen,
            4 => EventKind::ChannelClose,
            _ => return None,
        })
    }
}

/// Direction of channel bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Direction {
    /// Engineer → agent (keystrokes, stdin).
    In = 0,
    /// Agent → engineer (terminal output, stdout, stderr).
    Out = 1,
    /// Not channel data (markers, resizes).
    None = 2,
}

impl Direction {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Direction::In,
            1 => Direction::Out,
            2 => Direction::None,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
            Direction::None => "none",
        }
    }
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// Microseconds since the recording started (monotonic clock).
    pub offset_us: u64,
    /// Wall clock, Unix milliseconds.
    pub wall_ms: i64,
    /// Channel number within the session (0 for session-wide events).
    pub channel: u32,
    pub direction: Direction,
    pub data: Vec<u8>,
}

/// Bytes an event takes besides its data.
pub const EVENT_HEAD: usize = 1 + 8 + 8 + 4 + 1 + 4;

/// Appends one event to an events payload.
pub fn encode_event(
    out: &mut Vec<u8>,
    kind: EventKind,
    offset_us: u64,
    wall_ms: i64,
    channel: u32,
    dir: Direction,
    data: &[u8],
) {
    encode_event_parts(out, kind, offset_us, wall_ms, channel, dir, &[data]);
}

/// Appends one event whose data is the concatenation of `parts`: the same bytes as
/// [`encode_event`] with the parts joined, without joining them first.
pub fn encode_event_parts(
    out: &mut Vec<u8>,
    kind: EventKind,
    offset_us: u64,
    wall_ms: i64,
    channel: u32,
    dir: Direction,
    parts: &[impl AsRef<[u8]>],
) {
    let len: usize = parts.iter().map(|p| p.as_ref().len()).sum();
    out.reserve(EVENT_HEAD + len);
    out.extend_from_slice(&event_head(kind, offset_us, wall_ms, channel, dir, len));
    for part in parts {
        out.extend_from_slice(part.as_ref());
    }
}

/// The bytes of an event before its `len` bytes of data.
pub fn event_head(
    kind: EventKind,
    offset_us: u64,
    wall_ms: i64,
    channel: u32,
    dir: Direction,
    len: usize,
) -> [u8; EVENT_HEAD] {
    let mut head = [0u8; EVENT_HEAD];
    head[0] = kind as u8;
    head[1..9].copy_from_slice(&offset_us.to_be_bytes());
    head[9..17].copy_from_slice(&wall_ms.to_be_bytes());
    head[17..21].copy_from_slice(&channel.to_be_bytes());
    head[21] = dir as u8;
    head[22..26].copy_from_slice(&(len as u32).to_be_bytes());
    head
}

/// Why an events payload does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEvents {
    #[error("event header cut short")]
    HeaderCutShort,
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    #[error("unknown direction {0}")]
    UnknownDirection(u8),
    #[error("event data cut short")]
    DataCutShort,
}

/// Decodes an events payload.
pub fn decode_events(mut p: &[u8]) -> Result<Vec<Event>, BadEvents> {
    let mut events = Vec::new();
    while !p.is_empty() {
        if p.len() < EVENT_HEAD {
            return Err(BadEvents::HeaderCutShort);
        }
        let kind = EventKind::from_u8(p[0]).ok_or(BadEvents::UnknownKind(p[0]))?;
        let offset_us = u64::from_be_bytes(p[1..9].try_into().expect("8"));
        let wall_ms = i64::from_be_bytes(p[9..17].try_into().expect("8"));
        let channel = u32::from_be_bytes(p[17..21].try_into().expect("4"));
        let direction = Direction::from_u8(p[21]).ok_or(BadEvents::UnknownDirection(p[21]))?;
        let len = u32::from_be_bytes(p[22..26].try_into().expect("4")) as usize;
        let rest = &p[EVENT_HEAD..];
        if rest.len() < len {
            return Err(BadEvents::DataCutShort);
        }
        events.push(Event { kind, offset_us, wall_ms, channel, direction, data: rest[..len].to_vec() });
        p = &rest[len..];
    }
    Ok(events)
}

fn chunk_hash(kind: ChunkKind, prev: &[u8; 32], payload: &[u8]) -> [u8; 32] {
    frame_parts(kind, prev, &[payload]).1
}

/// Encodes a chunk after `prev`; returns the bytes and the chunk's hash.
pub fn encode_chunk(kind: ChunkKind, prev: &[u8; 32], payload: &[u8]) -> (Vec<u8>, [u8; 32]) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let hash = chunk_hash(kind, prev, payload);
    let mut out = Vec::with_capacity(CHUNK_HEAD + payload.len() + HASH_LEN);
    out.extend_from_slice(MAGIC);
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(prev);
    out.extend_from_slice(payload);
    out.extend_from_slice(&hash);
    (out, hash)
}

/// Frames a chunk whose payload is the concatenation of `payload`, without joining it:
/// returns the chunk head and the hash, so that head, payload parts and hash in that order
/// are the bytes [`encode_chunk`] gives.
pub fn frame_parts(
    kind: ChunkKind,
    prev: &[u8; 32],
    payload: &[impl AsRef<[u8]>],
) -> ([u8; CHUNK_HEAD], [u8; 32]) {
    let len: usize = payload.iter().map(|p| p.as_ref().len()).sum();
    debug_assert!(len <= MAX_PAYLOAD);
    let mut head = [0u8; CHUNK_HEAD];
    head[..4].copy_from_slice(MAGIC);
    head[4] = kind as u8;
    head[5..9].copy_from_slice(&(len as u32).to_be_bytes());
    head[9..].copy_from_slice(prev);
    let mut ctx = Context::new(&SHA256);
    ctx.update(&head);
    for part in payload {
        ctx.update(part.as_ref());
    }
    (head, ctx.finish().as_ref().try_into().expect("32 bytes"))
}

/// A chunk read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub kind: ChunkKind,
    pub offset: usize,
    pub prev_hash: [u8; 32],
    pub payload: Vec<u8>,
    pub hash: [u8; 32],
}

/// Why a file stopped parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkProblem {
    /// The file ends inside a chunk: what a crash leaves.
    Incomplete { offset: usize },
    /// Bytes that are not a chunk, or a chunk whose hash does not match its content.
    Corrupt { offset: usize, index: usize, reason: String },
}

/// Splits a file into chunks, checking each chunk's hash and the chain. Returns the good
/// chunks and, if it stopped early, why.
pub fn read_chunks(bytes: &[u8]) -> (Vec<Chunk>, Option<ChunkProblem>) {
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut prev = ZERO_HASH;
    while at < bytes.len() {
        match parse_chunk(&bytes[at..], at, chunks.len(), &prev) {
            Ok((chunk, len)) => {
                prev = chunk.hash;
                chunks.push(chunk);
                at += len;
            }
            Err(problem) => return (chunks, Some(problem)),
        }
    }
    (chunks, None)
}

/// Bytes [`parse_chunk`] needs to judge the chunk at the start of `rest`: the chunk head
/// first, then the whole chunk once its length is known (or the head alone if that length
/// is over the limit).
pub fn chunk_needs(rest: &[u8]) -> usize {
    if rest.len() < CHUNK_HEAD {
        return CHUNK_HEAD;
    }
    let len = u32::from_be_bytes(rest[5..9].try_into().expect("4")) as usize;
    if len > MAX_PAYLOAD { CHUNK_HEAD } else { CHUNK_HEAD + len + HASH_LEN }
}

/// Parses the chunk at the start of `rest`, which begins at byte `at` of the file, is the
/// `index`th chunk and must follow the chunk whose hash is `prev`. `rest` must hold
/// [`chunk_needs`] bytes or everything up to the end of the file. Returns the chunk and
/// its length.
pub fn parse_chunk(
    rest: &[u8],
    at: usize,
    index: usize,
    prev: &[u8; 32],
) -> Result<(Chunk, usize), ChunkProblem> {
    if rest.len() < CHUNK_HEAD {
        return Err(if MAGIC.starts_with(&rest[..rest.len().min(4)]) {
            ChunkProblem::Incomplete { offset: at }
        } else {
            ChunkProblem::Corrupt { offset: at, index, reason: "bad chunk magic".into() }
        });
    }
    let corrupt = |reason: String| ChunkProblem::Corrupt { offset: at, index, reason };
    if &rest[..4] != MAGIC {
        return Err(corrupt("bad chunk magic".into()));
    }
    let Some(kind) = ChunkKind::from_u8(rest[4]) else {
        return Err(corrupt(format!("unknown chunk kind {}", rest[4])));
    };
    let len = u32::from_be_bytes(rest[5..9].try_into().expect("4")) as usize;
    if len > MAX_PAYLOAD {
        return Err(corrupt(format!("chunk length {len} over the limit")));
    }
    let prev_hash: [u8; 32] = rest[9..41].try_into().expect("32");
    if rest.len() < CHUNK_HEAD + len + HASH_LEN {
        return Err(ChunkProblem::Incomplete { offset: at });
    }
    let payload = &rest[CHUNK_HEAD..CHUNK_HEAD + len];
    let hash: [u8; 32] = rest[CHUNK_HEAD + len..CHUNK_HEAD + len + HASH_LEN].try_into().expect("32");
    if chunk_hash(kind, &prev_hash, payload) != hash {
        return Err(corrupt("chunk hash does not match its content".into()));
    }
    if prev_hash != *prev {
        return Err(corrupt("chunk does not follow the previous one (broken chain)".into()));
    }
    if index == 0 && kind != ChunkKind::Header {
        return Err(corrupt("first chunk is not a header".into()));
    }
    let chunk = Chunk { kind, offset: at, prev_hash, payload: payload.to_vec(), hash };
    Ok((chunk, CHUNK_HEAD + len + HASH_LEN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_chain_and_events_round_trip() {
        let (h, h1) = encode_chunk(ChunkKind::Header, &ZERO_HASH, b"{}");
        let mut ev = Vec::new();
        encode_event(&mut ev, EventKind::Data, 5, 6, 1, Direction::Out, b"hello");
        encode_event(&mut ev, EventKind::Resize, 7, 8, 1, Direction::None, b"80x24");
        let (e, h2) = encode_chunk(ChunkKind::Events, &h1, &ev);
        let (s, _) = encode_chunk(ChunkKind::Seal, &h2, b"seal");
        let file = [h, e, s].concat();
        let (chunks, problem) = read_chunks(&file);
        assert_eq!(problem, None);
        assert_eq!(chunks.len(), 3);
        let events = decode_events(&chunks[1].payload).unwrap();
        assert_eq!(events[0].data, b"hello");
        assert_eq!(events[1].kind, EventKind::Resize);
        assert_eq!(events[0].offset_us, 5);

        // A cut anywhere inside the last chunk is incomplete, not corrupt.
        let (chunks, problem) = read_chunks(&file[..file.len() - 3]);
        assert_eq!(chunks.len(), 2);
        assert!(matches!(problem, Some(ChunkProblem::Incomplete { .. })));
    }

    #[test]
    fn framing_parts_gives_the_same_bytes() {
        let mut joined = Vec::new();
        encode_event(&mut joined, EventKind::Data, 9, 10, 2, Direction::In, b"hello world");
        let mut parts = Vec::new();
        encode_event_parts(
            &mut parts,
            EventKind::Data,
            9,
            10,
            2,
            Direction::In,
            &[&b"hello"[..], b"", b" world"],
        );
        assert_eq!(parts, joined);

        let prev = [7u8; 32];
        let (expected, expected_hash) = encode_chunk(ChunkKind::Events, &prev, &joined);
        let (a, b) = joined.split_at(5);
        let (head, hash) = frame_parts(ChunkKind::Events, &prev, &[a, &[][..], b]);
        assert_eq!(hash, expected_hash);
        assert_eq!([&head[..], &joined, &hash].concat(), expected);
    }

    #[test]
    fn bad_event_payloads_are_errors() {
        assert!(decode_events(&[0; 10]).is_err());
        let mut ev = Vec::new();
        encode_event(&mut ev, EventKind::Data, 0, 0, 1, Direction::In, b"abc");
        assert!(decode_events(&ev[..ev.len() - 1]).is_err());
        ev[0] = 99;
        assert!(decode_events(&ev).is_err());
    }
}
