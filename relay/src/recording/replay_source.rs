//! Reading one desktop channel of a stored recording for replay, chunk by chunk, so that
//! memory does not grow with the recording: at most one chunk's events and one message.
//!
//! - [`scan`] reads the recording once for what a player shows before playing: how long
//!   the recording runs, its markers (approval, end, the channel opening and closing) and
//!   the channel's seek index, built here by the same [`Indexer`] the recorder runs (the
//!   caller prefers the sealed one when the recording is sealed; a truncated recording
//!   has none and replays up to where it stops).
//! - [`ChannelReader`] reads the channel's messages in order from a start offset (a
//!   keyframe's), through [`super::replay`]'s cutter.
//!
//! It does not judge the recording ([`super::verify`] does, first), pace anything or decide
//! who may replay.

use super::desktop_index::{DesktopIndex, Indexer, is_desktop_open};
use super::format::{self, ChunkKind, Direction, EventKind};
use super::recorder::Header;
use super::replay::{Cutter, FromKeyframe, Message};
use super::store::RecordingSource;
use super::stream::{ChunkStream, Next};
use std::collections::VecDeque;

/// A moment worth a mark on the seek bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// Recording time.
    pub at_us: u64,
    pub label: String,
}

/// What [`scan`] found.
#[derive(Clone, Debug)]
pub struct Scanned {
    pub header: Header,
    /// The recording time of its last event: where a replay ends.
    pub end_us: u64,
    pub markers: Vec<Marker>,
    /// The channel's index as read from its bytes.
    pub index: DesktopIndex,
}

/// Why a channel cannot be replayed as a desktop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReplayable {
    #[error("the recording has no readable header")]
    NoHeader,
    #[error("the recording has no channel {0}")]
    NoChannel(u32),
    #[error("channel {0} is not a desktop")]
    NotDesktop(u32),
    #[error("the recording cannot be read: {0}")]
    BadEvents(#[from] format::BadEvents),
}

/// Reads the whole recording once (see the module's documentation).
pub async fn scan(
    source: Box<dyn RecordingSource>,
    channel: u32,
) -> std::io::Result<Result<Scanned, NotReplayable>> {
    let mut chunks = ChunkStream::owned(source);
    let mut header = None;
    let mut end_us = 0;
    let mut markers = Vec::new();
    // Some(indexer) once the channel opened as a desktop; Some(None) if it is another kind.
    let mut indexer: Option<Option<Indexer>> = None;
    loop {
        let chunk = match chunks.next().await? {
            Next::Chunk(c) => c,
            // A truncated recording replays up to where it stops.
            Next::End(_) => break,
        };
        match chunk.kind {
            ChunkKind::Header => header = serde_json::from_slice::<Header>(&chunk.payload).ok(),
            ChunkKind::Seal => {}
            ChunkKind::Events => {
                let events = match format::decode_events(&chunk.payload) {
                    Ok(e) => e,
                    Err(e) => return Ok(Err(e.into())),
                };
                for e in events {
                    end_us = end_us.max(e.offset_us);
                    match e.kind {
                        EventKind::Marker => {
                            markers.push(Marker {
                                at_us: e.offset_us,
                                label: String::from_utf8_lossy(&e.data).into_owned(),
                            });
                        }
                        EventKind::ChannelOpen if e.channel == channel && indexer.is_none() => {
                            let desktop = is_desktop_open(&e.data);
                            indexer = Some(desktop.then(|| Indexer::new(channel)));
                            if desktop {
                                let control = serde_json::from_slice::<serde_json::Value>(&e.data)
                                    .ok()
                                    .and_then(|v| v["request"]["desktop"]["control"].as_bool())
                                    .unwrap_or(false);
                                let what = if control { "view and control" } else { "view only" };
                                markers.push(Marker {
                                    at_us: e.offset_us,
                                    label: format!("desktop opened ({what})"),
                                });
                            }
                        }
                        EventKind::ChannelClose if e.channel == channel => {
                            markers.push(Marker { at_us: e.offset_us, label: "desktop closed".into() });
                        }
                        EventKind::Data if e.channel == channel && e.direction == Direction::Out => {
                            if let Some(Some(ix)) = &mut indexer {
                                ix.push(&e.data, e.offset_us, chunk.offset as u64);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let Some(header) = header else { return Ok(Err(NotReplayable::NoHeader)) };
    let index = match indexer {
        None => return Ok(Err(NotReplayable::NoChannel(channel))),
        Some(None) => return Ok(Err(NotReplayable::NotDesktop(channel))),
        Some(Some(ix)) => ix.finish(),
    };
    markers.sort_by_key(|m| m.at_us);
    Ok(Ok(Scanned { header, end_us, markers, index }))
}

/// The messages of one desktop channel from a start offset, in order.
pub struct ChannelReader {
    chunks: ChunkStream<'static>,
    channel: u32,
    cutter: Cutter,
    from: FromKeyframe,
    ready: VecDeque<Message>,
    done: bool,
}

impl ChannelReader {
    /// Reads `channel` of the recording `source` reads, from the message at `start`.
    pub fn new(source: Box<dyn RecordingSource>, channel: u32, start: u64) -> Self {
        Self {
            chunks: ChunkStream::owned(source),
            channel,
            cutter: Cutter::new(),
            from: FromKeyframe::new(start),
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// The next message to replay; `None` where the channel (or what verifies of the
    /// recording) ends.
    pub async fn next(&mut self) -> std::io::Result<Option<Message>> {
        loop {
            if let Some(m) = self.ready.pop_front() {
                return Ok(Some(m));
            }
            if self.done {
                return Ok(None);
            }
            let chunk = match self.chunks.next().await? {
                Next::Chunk(c) if c.kind == ChunkKind::Events => c,
                Next::Chunk(_) => continue,
                Next::End(_) => {
                    self.done = true;
                    continue;
                }
            };
            let Ok(events) = format::decode_events(&chunk.payload) else {
                self.done = true;
                continue;
            };
            let ours = events.into_iter().filter(|e| {
                e.kind == EventKind::Data && e.channel == self.channel && e.direction == Direction::Out
            });
            for e in ours {
                self.cutter.push(&e.data, e.offset_us);
                loop {
                    match self.cutter.next_message() {
                        Ok(Some(m)) => self.ready.extend(self.from.take(m)),
                        Ok(None) => break,
                        // The index stopped there too: replay up to it.
                        Err(_) => {
                            self.done = true;
                            break;
                        }
                    }
                }
            }
        }
    }
}
