//! An events chunk being gathered, as parts, so that recorded data is copied once (by the
//! sink, to where it writes from) instead of first into the chunk and then again.
//!
//! Event heads and small data are copied together into one growing buffer (a part per run
//! of them); data of [`SHARE_FROM`] bytes or more is kept as the `Bytes` the splice read,
//! shared with the stream it is forwarded on. The chunk head and hash are computed over the
//! parts without joining them ([`format::frame_parts`]).
//!
//! It does not decide when a chunk is cut; the recorder does.

use super::format::{self, ChunkKind, Direction, EventKind};
use bytes::{Bytes, BytesMut};

/// Data at least this long is shared, not copied, until the sink takes it.
pub const SHARE_FROM: usize = 1024;
/// Room for heads and small data before the buffer grows.
const INLINE_ROOM: usize = 4096;

/// One event as the recorder receives it: its data in the parts it was read in.
pub struct NewEvent {
    pub kind: EventKind,
    pub offset_us: u64,
    pub wall_ms: i64,
    pub channel: u32,
    pub dir: Direction,
    pub data: Vec<Bytes>,
}

pub struct Batch {
    /// Finished parts, in order.
    parts: Vec<Bytes>,
    /// Heads and small data after the last finished part.
    inline: BytesMut,
    /// Payload bytes in `parts` and `inline`.
    len: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Self {
        Self { parts: Vec::new(), inline: BytesMut::with_capacity(INLINE_ROOM), len: 0 }
    }

    /// Payload bytes gathered.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds one event whose data is the concatenation of its parts (the same bytes as
    /// [`format::encode_event_parts`]).
    pub fn push_event(&mut self, event: NewEvent) {
        let NewEvent { kind, offset_us, wall_ms, channel, dir, data } = event;
        let len: usize = data.iter().map(Bytes::len).sum();
        self.copy(&format::event_head(kind, offset_us, wall_ms, channel, dir, len));
        for part in data {
            if part.len() >= SHARE_FROM {
                self.finish_inline();
                self.len += part.len();
                self.parts.push(part);
            } else {
                self.copy(&part);
            }
        }
    }

    fn copy(&mut self, bytes: &[u8]) {
        self.inline.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    fn finish_inline(&mut self) {
        if !self.inline.is_empty() {
            self.parts.push(self.inline.split().freeze());
        }
    }

    /// Frames the gathered events as a chunk after `prev`: its bytes in parts, and its
    /// hash. Leaves the batch empty.
    pub fn frame(&mut self, prev: &[u8; 32]) -> (Vec<Bytes>, [u8; 32]) {
        self.finish_inline();
        let payload = std::mem::take(&mut self.parts);
        self.len = 0;
        let (head, hash) = format::frame_parts(ChunkKind::Events, prev, &payload);
        let mut chunk = Vec::with_capacity(payload.len() + 2);
        chunk.push(Bytes::copy_from_slice(&head));
        chunk.extend(payload);
        chunk.push(Bytes::copy_from_slice(&hash));
        (chunk, hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_batch_is_the_chunk_encode_gives() {
        let big = Bytes::from(vec![7u8; SHARE_FROM * 3]);
        let events: Vec<(EventKind, u32, Direction, Vec<Bytes>)> = vec![
            (EventKind::Marker, 0, Direction::None, vec![Bytes::from_static(b"approved by bob")]),
            (EventKind::Data, 1, Direction::Out, vec![big.clone(), Bytes::from_static(b"tail"), big.clone()]),
            (EventKind::Data, 1, Direction::In, vec![Bytes::from_static(b"k")]),
            (EventKind::Data, 1, Direction::Out, vec![]),
            (EventKind::Data, 1, Direction::Out, vec![big.clone()]),
        ];
        let mut batch = Batch::new();
        let mut payload = Vec::new();
        for (i, (kind, channel, dir, data)) in events.into_iter().enumerate() {
            format::encode_event_parts(&mut payload, kind, i as u64, 100 + i as i64, channel, dir, &data);
            batch.push_event(NewEvent {
                kind,
                offset_us: i as u64,
                wall_ms: 100 + i as i64,
                channel,
                dir,
                data,
            });
        }
        assert_eq!(batch.len(), payload.len());
        let prev = [3u8; 32];
        let (parts, hash) = batch.frame(&prev);
        let (expected, expected_hash) = format::encode_chunk(ChunkKind::Events, &prev, &payload);
        assert_eq!(hash, expected_hash);
        assert_eq!(parts.concat(), expected);
        assert!(parts.iter().any(|p| p.as_ptr() == big.as_ptr()), "large data is shared, not copied");
        assert!(batch.is_empty());
        let (again, _) = batch.frame(&hash);
        assert_eq!(
            again.concat().len(),
            format::CHUNK_HEAD + format::HASH_LEN,
            "an empty batch starts afresh"
        );
    }
}
