//! The seek index of a recorded desktop channel: where, in the bytes the agent sent, each
//! keyframe and each change of picture size starts, so that replay can start at a keyframe
//! without reading the channel from its beginning.
//!
//! [`Indexer`] is fed the agent → engineer bytes of one `desktop` channel as they were
//! recorded (in whatever pieces the splice read them) and reads only message headers
//! (`assist_proto::desktop::Header`), a frame's 8-byte timestamp and the 5-byte stream
//! info: never video. The recorder runs one per desktop channel and puts the result in the
//! seal, under the relay's signature; `recording verify` runs the same code over the
//! recorded bytes and requires the same result, so the index is both signed and checked
//! against the data it describes.
//!
//! The index is bounded, because the seal is one chunk (at most 1 MiB): at most
//! [`MAX_KEYFRAMES`] keyframes per channel (a keyframe less than `gap_us` of frame time
//! after the last one indexed is left out; when the list is full every other entry is
//! dropped and the gap doubles, so the index always spans the whole channel), at most
//! [`MAX_SIZE_CHANGES`] stream infos, and at most [`MAX_CHANNELS`] indexed channels per
//! session. A stream that stops parsing is indexed up to there, with the error.
//!
//! It does not decide what a desktop channel may carry (the live path does) nor replay.

use assist_proto::desktop::{AgentToViewer, HEADER_LEN, Header, Kind};
use serde::{Deserialize, Serialize};

/// Keyframes kept per channel.
pub const MAX_KEYFRAMES: usize = 1024;
/// Stream-info messages kept per channel.
pub const MAX_SIZE_CHANGES: usize = 64;
/// Desktop channels indexed per session; later ones are listed with an error only.
pub const MAX_CHANNELS: usize = 8;
/// The smallest frame-time gap between two indexed keyframes, at first.
pub const FIRST_GAP_US: u64 = 1_000_000;

/// Where a message starts: in the channel direction's bytes, in recording time, and in the
/// recording's file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// Byte offset of the message's header in the agent → engineer bytes of the channel.
    pub offset: u64,
    /// `offset_us` of the data event holding the header's first byte.
    pub rec_us: u64,
    /// Byte offset, in the recording, of the chunk holding that event: a reader may start
    /// there (and skip the channel's bytes before `offset`).
    pub chunk_at: u64,
}

/// One indexed keyframe; in JSON `[offset, timestamp_us, rec_us, chunk_at]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[u64; 4]", into = "[u64; 4]")]
pub struct Keyframe {
    pub at: Place,
    /// The frame's own timestamp (microseconds since the agent's stream started).
    pub timestamp_us: u64,
}

impl From<[u64; 4]> for Keyframe {
    fn from([offset, timestamp_us, rec_us, chunk_at]: [u64; 4]) -> Self {
        Keyframe { at: Place { offset, rec_us, chunk_at }, timestamp_us }
    }
}

impl From<Keyframe> for [u64; 4] {
    fn from(k: Keyframe) -> Self {
        [k.at.offset, k.timestamp_us, k.at.rec_us, k.at.chunk_at]
    }
}

/// One stream info (picture size); in JSON `[offset, rec_us, chunk_at, width, height]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[u64; 5]", into = "[u64; 5]")]
pub struct SizeChange {
    pub at: Place,
    pub width: u16,
    pub height: u16,
}

impl From<[u64; 5]> for SizeChange {
    fn from([offset, rec_us, chunk_at, width, height]: [u64; 5]) -> Self {
        let side = |v: u64| u16::try_from(v).unwrap_or(u16::MAX);
        SizeChange { at: Place { offset, rec_us, chunk_at }, width: side(width), height: side(height) }
    }
}

impl From<SizeChange> for [u64; 5] {
    fn from(s: SizeChange) -> Self {
        [s.at.offset, s.at.rec_us, s.at.chunk_at, s.width.into(), s.height.into()]
    }
}

/// The index of one desktop channel, as the seal carries it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesktopIndex {
    pub channel: u32,
    /// Bytes of the channel's agent → engineer direction that were read.
    pub bytes: u64,
    pub keyframes: Vec<Keyframe>,
    /// Keyframes closer than this (frame time) to the previous indexed one are left out.
    pub gap_us: u64,
    pub stream_info: Vec<SizeChange>,
    /// Stream infos past [`MAX_SIZE_CHANGES`], counted but not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stream_info_left_out: u64,
    /// Why indexing stopped early (a malformed message, or too many channels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DesktopIndex {
    /// Where replay starts to show the picture at `rec_us` (recording time): the last
    /// indexed keyframe recorded at or before it, or the first keyframe if `rec_us` is
    /// earlier than all of them; `None` when the channel has no indexed keyframe.
    pub fn seek(&self, rec_us: u64) -> Option<&Keyframe> {
        let after = self.keyframes.partition_point(|k| k.at.rec_us <= rec_us);
        self.keyframes.get(after.saturating_sub(1))
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Parsing state between two pieces of the stream.
#[derive(Debug)]
enum State {
    /// Collecting a header; `have` bytes of it are in `buf`.
    Head { buf: [u8; HEADER_LEN], have: usize, at: Option<Place> },
    /// Collecting the part of a payload the index needs (a timestamp, a stream info).
    Prefix { header: Header, buf: Vec<u8>, need: usize, at: Place },
    /// Skipping the rest of a payload.
    Skip(u64),
    /// A message did not parse: nothing more is indexed.
    Stopped,
}

/// Builds a [`DesktopIndex`] from the agent → engineer bytes of one channel.
#[derive(Debug)]
pub struct Indexer {
    index: DesktopIndex,
    state: State,
}

impl Indexer {
    pub fn new(channel: u32) -> Self {
        Self {
            index: DesktopIndex { channel, gap_us: FIRST_GAP_US, ..Default::default() },
            state: State::Head { buf: [0; HEADER_LEN], have: 0, at: None },
        }
    }

    /// An index that records only why this channel is not indexed.
    pub fn refused(channel: u32, why: &str) -> Self {
        let mut me = Self::new(channel);
        me.stop(why.to_owned());
        me
    }

    /// Reads the next piece of the channel's bytes, recorded in an event at `rec_us` in the
    /// chunk starting at `chunk_at`.
    pub fn push(&mut self, mut data: &[u8], rec_us: u64, chunk_at: u64) {
        while !data.is_empty() {
            let pos = self.index.bytes;
            let here = Place { offset: pos, rec_us, chunk_at };
            let taken = match &mut self.state {
                State::Stopped => {
                    self.index.bytes += data.len() as u64;
                    return;
                }
                State::Skip(left) => {
                    let n = (*left).min(data.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Head { buf: [0; HEADER_LEN], have: 0, at: None };
                    }
                    n
                }
                State::Head { buf, have, at } => {
                    let at = *at.get_or_insert(here);
                    let n = (HEADER_LEN - *have).min(data.len());
                    buf[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    if *have == HEADER_LEN {
                        let buf = *buf;
                        self.header(&buf, at);
                    }
                    n
                }
                State::Prefix { buf, need, .. } => {
                    let n = (*need - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..n]);
                    if buf.len() == *need {
                        self.prefix();
                    }
                    n
                }
            };
            self.index.bytes += taken as u64;
            data = &data[taken..];
        }
    }

    /// The index so far (what the seal carries once the channel's bytes are all read).
    pub fn finish(self) -> DesktopIndex {
        let mut index = self.index;
        if index.error.is_none() && !matches!(self.state, State::Head { have: 0, .. }) {
            index.error = Some("the channel ends inside a message".into());
        }
        index
    }

    fn stop(&mut self, why: String) {
        self.index.error = Some(why);
        self.state = State::Stopped;
    }

    fn header(&mut self, bytes: &[u8; HEADER_LEN], at: Place) {
        let header = match Header::parse(bytes) {
            Ok(h) => h,
            Err(e) => return self.stop(format!("message at byte {}: {e}", at.offset)),
        };
        let need = match header.kind {
            Kind::Frame if header.is_keyframe() => 8,
            Kind::StreamInfo => header.len,
            _ => 0,
        };
        self.state = if need == 0 || header.len < need {
            if header.len < need {
                return self.stop(format!("message at byte {}: {:?} too short", at.offset, header.kind));
            }
            next_after(header.len as u64)
        } else {
            State::Prefix { header, buf: Vec::with_capacity(need), need, at }
        };
    }

    fn prefix(&mut self) {
        let State::Prefix { header, buf, need, at } = std::mem::replace(&mut self.state, State::Stopped)
        else {
            return;
        };
        if header.kind == Kind::StreamInfo {
            match AgentToViewer::decode(&header, &buf) {
                Ok(AgentToViewer::StreamInfo(info)) => {
                    if self.index.stream_info.len() < MAX_SIZE_CHANGES {
                        let change = SizeChange { at, width: info.width, height: info.height };
                        self.index.stream_info.push(change);
                    } else {
                        self.index.stream_info_left_out += 1;
                    }
                }
                Ok(_) => {}
                Err(e) => return self.stop(format!("message at byte {}: {e}", at.offset)),
            }
        } else {
            let timestamp_us = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
            self.keyframe(Keyframe { at, timestamp_us });
        }
        self.state = next_after((header.len - need) as u64);
    }

    fn keyframe(&mut self, k: Keyframe) {
        let index = &mut self.index;
        if let Some(last) = index.keyframes.last()
            && k.timestamp_us < last.timestamp_us.saturating_add(index.gap_us)
        {
            return;
        }
        index.keyframes.push(k);
        if index.keyframes.len() > MAX_KEYFRAMES {
            let mut i = 0;
            index.keyframes.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            index.gap_us = index.gap_us.saturating_mul(2);
        }
    }
}

fn next_after(skip: u64) -> State {
    if skip == 0 { State::Head { buf: [0; HEADER_LEN], have: 0, at: None } } else { State::Skip(skip) }
}

/// Whether a channel-open event's JSON describes a desktop channel.
pub fn is_desktop_open(described: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(described)
        .ok()
        .is_some_and(|v| v["kind"].as_str() == Some("desktop"))
}

/// The indexers of one recording's desktop channels, in channel order, at most
/// [`MAX_CHANNELS`] of them doing any work.
#[derive(Debug, Default)]
pub struct Indexers {
    by_channel: std::collections::BTreeMap<u32, Indexer>,
}

impl Indexers {
    /// A channel opened: indexes it if it is a desktop channel.
    pub fn opened(&mut self, channel: u32, described: &[u8]) {
        if !is_desktop_open(described) || self.by_channel.contains_key(&channel) {
            return;
        }
        let indexer = if self.by_channel.len() < MAX_CHANNELS {
            Indexer::new(channel)
        } else {
            Indexer::refused(channel, "not indexed: too many desktop channels in one session")
        };
        self.by_channel.insert(channel, indexer);
    }

    /// Agent → engineer bytes of `channel` (ignored unless it is an indexed desktop channel).
    pub fn data(&mut self, channel: u32, data: &[u8], rec_us: u64, chunk_at: u64) {
        if let Some(indexer) = self.by_channel.get_mut(&channel) {
            indexer.push(data, rec_us, chunk_at);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_channel.is_empty()
    }

    pub fn finish(self) -> Vec<DesktopIndex> {
        self.by_channel.into_values().map(Indexer::finish).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_proto::desktop::{Codec, Frame, StreamInfo};

    fn frame(ts: u64, key: bool, len: usize) -> Vec<u8> {
        AgentToViewer::Frame(Frame { timestamp_us: ts, keyframe: key, data: vec![7; len] }).encode().unwrap()
    }

    fn info(width: u16, height: u16) -> Vec<u8> {
        AgentToViewer::StreamInfo(StreamInfo { codec: Codec::H264, width, height }).encode().unwrap()
    }

    /// The same index whatever the pieces the bytes arrive in.
    #[test]
    fn indexes_keyframes_and_sizes_across_any_split() {
        let mut stream = info(640, 480);
        let mut expected = vec![];
        for i in 0..30u64 {
            if i % 10 == 0 {
                expected.push((stream.len() as u64, i * 100_000));
            }
            stream.extend(frame(i * 100_000, i % 10 == 0, 100 + i as usize));
        }
        let resize_at = stream.len() as u64;
        stream.extend(info(800, 600));
        for piece in [1, 3, 7, 8, 9, 64, stream.len()] {
            let mut ix = Indexer::new(4);
            for (n, part) in stream.chunks(piece).enumerate() {
                ix.push(part, n as u64, 0);
            }
            let index = ix.finish();
            assert_eq!(index.error, None);
            assert_eq!(index.bytes, stream.len() as u64);
            let got: Vec<_> = index.keyframes.iter().map(|k| (k.at.offset, k.timestamp_us)).collect();
            assert_eq!(got, expected, "pieces of {piece}");
            let sizes: Vec<_> = index.stream_info.iter().map(|s| (s.at.offset, s.width, s.height)).collect();
            assert_eq!(sizes, vec![(0, 640, 480), (resize_at, 800, 600)]);
            // The event of each keyframe's first byte.
            assert_eq!(index.keyframes[1].at.rec_us, expected[1].0 / piece as u64);
        }
    }

    #[test]
    fn seeks_to_the_keyframe_at_or_before_a_time() {
        let mut ix = Indexer::new(1);
        for i in 0..50u64 {
            ix.push(&frame(i * 100_000, i % 10 == 0, 3), 5_000 + i * 100_000, 0);
        }
        let index = ix.finish();
        let at = |rec_us| index.seek(rec_us).map(|k| k.timestamp_us);
        assert_eq!(at(0), Some(0), "before the first: the first");
        assert_eq!(at(5_000), Some(0));
        assert_eq!(at(1_004_999), Some(0));
        assert_eq!(at(1_005_000), Some(1_000_000));
        assert_eq!(at(u64::MAX), Some(4_000_000));
        assert_eq!(Indexer::new(2).finish().seek(0), None);
    }

    #[test]
    fn stays_bounded_and_spans_the_stream() {
        let mut ix = Indexer::new(1);
        let n = 5 * MAX_KEYFRAMES as u64;
        for i in 0..n {
            ix.push(&frame(i * FIRST_GAP_US, true, 1), i, 0);
        }
        let index = ix.finish();
        assert!(index.keyframes.len() <= MAX_KEYFRAMES);
        assert!(index.keyframes.len() > MAX_KEYFRAMES / 4);
        assert_eq!(index.keyframes[0].timestamp_us, 0);
        let last = index.keyframes.last().unwrap().timestamp_us;
        assert!(last >= (n - 1 - 8) * FIRST_GAP_US, "last indexed keyframe at {last}");
        assert_eq!(index.gap_us, 8 * FIRST_GAP_US);
        let json = serde_json::to_string(&index).unwrap();
        assert_eq!(serde_json::from_str::<DesktopIndex>(&json).unwrap(), index);
    }

    /// The largest index a session can have fits the seal's one chunk with room to spare.
    #[test]
    fn the_largest_index_fits_a_seal() {
        let big = u64::MAX / 2;
        let place = Place { offset: big, rec_us: big, chunk_at: big };
        let index = DesktopIndex {
            channel: u32::MAX,
            bytes: big,
            keyframes: vec![Keyframe { at: place, timestamp_us: big }; MAX_KEYFRAMES],
            gap_us: big,
            stream_info: vec![SizeChange { at: place, width: u16::MAX, height: u16::MAX }; MAX_SIZE_CHANGES],
            stream_info_left_out: big,
            error: Some("x".repeat(200)),
        };
        let all = vec![index; MAX_CHANNELS];
        let len = serde_json::to_vec(&all).unwrap().len();
        assert!(len < crate::recording::format::MAX_PAYLOAD * 3 / 4, "{len} bytes");
    }

    #[test]
    fn a_bad_message_stops_indexing_with_the_reason() {
        let mut stream = frame(0, true, 10);
        let bad_at = stream.len();
        stream.extend([99, 0, 0, 0, 0, 0, 0, 0]);
        stream.extend(frame(1_000_000, true, 10));
        let mut ix = Indexer::new(1);
        ix.push(&stream, 0, 0);
        let index = ix.finish();
        assert_eq!(index.keyframes.len(), 1);
        let error = index.error.unwrap();
        assert!(error.contains(&format!("byte {bad_at}")), "{error}");

        let mut ix = Indexer::new(1);
        ix.push(&frame(0, true, 10)[..12], 0, 0);
        assert_eq!(ix.finish().error.as_deref(), Some("the channel ends inside a message"));
    }
}
