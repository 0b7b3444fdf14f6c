//! Replaying one recorded desktop channel, without I/O: the pieces a replay stream is made
//! of, each driven by what it is given (time is an argument).
//!
//! - [`Cutter`] cuts the channel's agent → engineer bytes, in whatever pieces they were
//!   recorded, back into whole desktop messages, each exactly as the agent sent it (header
//!   and payload bytes unchanged), with where it starts in the channel and the recording
//!   time of the event holding its first byte. It reads headers only, never video.
//! - [`FromKeyframe`] starts a replay at a keyframe of the seek index: nothing before it is
//!   sent, except the state a viewer needs to draw from there (the last stream info, cursor
//!   shape and cursor position), sent just before the keyframe.
//! - [`Pacer`] says when each message is due: at once for what lies at or before the
//!   current position (the part between a keyframe and a seek target, sent at once so the
//!   page decodes without waiting), then at its recorded time, divided by the speed, from
//!   when playing started; nothing while paused.
//!
//! It does not read recordings (see `replay_source`), decide who may replay (the console
//! state does), nor talk to a page.

use super::desktop_index::DesktopIndex;
use assist_proto::desktop::{DesktopError, HEADER_LEN, Header, Kind};
use std::time::{Duration, Instant};

/// One whole desktop message as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Where its header starts in the channel's agent → engineer bytes.
    pub offset: u64,
    /// Recording time of the event holding its first byte.
    pub rec_us: u64,
    pub kind: Kind,
    /// Header and payload, unchanged.
    pub bytes: Vec<u8>,
}

/// Cuts a channel's bytes into whole messages (see the module's documentation).
#[derive(Debug, Default)]
pub struct Cutter {
    buf: Vec<u8>,
    /// Channel offset of `buf[0]`.
    offset: u64,
    /// `(position in buf, rec_us)` of each pushed piece still in `buf`, in order; the first
    /// is at 0 whenever `buf` is not empty.
    marks: Vec<(usize, u64)>,
    /// Stopped at a bad header: nothing more comes out.
    broken: bool,
}

impl Cutter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A piece of the channel's bytes, recorded at `rec_us`.
    pub fn push(&mut self, data: &[u8], rec_us: u64) {
        if data.is_empty() || self.broken {
            return;
        }
        self.marks.push((self.buf.len(), rec_us));
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, if all of it has been pushed. After an error, `Ok(None)`.
    pub fn next_message(&mut self) -> Result<Option<Message>, DesktopError> {
        if self.broken || self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = match Header::parse(self.buf[..HEADER_LEN].try_into().expect("8 bytes")) {
            Ok(h) => h,
            Err(e) => {
                self.broken = true;
                self.buf = Vec::new();
                self.marks.clear();
                return Err(e);
            }
        };
        let total = HEADER_LEN + header.len;
        if self.buf.len() < total {
            return Ok(None);
        }
        let rec_us = self.marks.first().map_or(0, |m| m.1);
        let bytes: Vec<u8> = self.buf.drain(..total).collect();
        // The piece holding the next message's first byte becomes the first mark.
        let carried = self.marks.iter().rev().find(|m| m.0 <= total).map_or(rec_us, |m| m.1);
        self.marks.retain(|m| m.0 > total);
        for m in &mut self.marks {
            m.0 -= total;
        }
        if !self.buf.is_empty() {
            self.marks.insert(0, (0, carried));
        }
        let message = Message { offset: self.offset, rec_us, kind: header.kind, bytes };
        self.offset += total as u64;
        Ok(Some(message))
    }

    /// Bytes pushed but not yet part of a whole message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Whether a recorded agent → engineer message is part of the picture a replay shows.
/// The clipboard is not replayed: the page is a player, not the customer's clipboard.
pub fn is_replayed(kind: Kind) -> bool {
    matches!(kind, Kind::StreamInfo | Kind::Frame | Kind::CursorShape | Kind::CursorPosition)
}

/// The channel offset a replay aimed at `target_us` (recording time) starts from: the
/// indexed keyframe at or before it (the first one if it is earlier than all), or the
/// channel's start when nothing is indexed.
pub fn start_offset(index: &DesktopIndex, target_us: u64) -> u64 {
    index.seek(target_us).map_or(0, |k| k.at.offset)
}

/// Passes messages on from a start offset, holding back what comes before it except the
/// state needed to draw from there.
#[derive(Debug)]
pub struct FromKeyframe {
    start: u64,
    reached: bool,
    stream_info: Option<Message>,
    cursor_shape: Option<Message>,
    cursor_at: Option<Message>,
}

impl FromKeyframe {
    pub fn new(start: u64) -> Self {
        Self { start, reached: false, stream_info: None, cursor_shape: None, cursor_at: None }
    }

    /// What to send of `m`, in order: nothing before the start, the held state first when
    /// the start is reached; only messages a replay shows.
    pub fn take(&mut self, m: Message) -> Vec<Message> {
        if !is_replayed(m.kind) {
            return Vec::new();
        }
        if !self.reached && m.offset < self.start {
            let slot = match m.kind {
                Kind::StreamInfo => &mut self.stream_info,
                Kind::CursorShape => &mut self.cursor_shape,
                Kind::CursorPosition => &mut self.cursor_at,
                _ => return Vec::new(),
            };
            *slot = Some(m);
            return Vec::new();
        }
        let mut out = Vec::new();
        if !self.reached {
            self.reached = true;
            // Sent as of the keyframe's time: they are part of what it draws.
            for held in [self.stream_info.take(), self.cursor_shape.take(), self.cursor_at.take()]
                .into_iter()
                .flatten()
            {
                out.push(Message { rec_us: m.rec_us, ..held });
            }
        }
        out.push(m);
        out
    }
}

/// When a message is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// At or before the position: send it now.
    Now,
    /// Later, while playing.
    At(Instant),
    /// After the position, and paused.
    Paused,
}

/// Slowest and fastest speeds taken; others are brought within.
pub const MIN_SPEED: f64 = 0.25;
pub const MAX_SPEED: f64 = 16.0;

/// Where a replay is in recording time, and how fast it moves (see the module's
/// documentation).
#[derive(Clone, Copy, Debug)]
pub struct Pacer {
    speed: f64,
    /// Recording time at `since` (or, paused, the position).
    at_us: u64,
    /// When playing: the moment `at_us` was the position.
    since: Option<Instant>,
    /// Where the recording ends: the position never passes it.
    end_us: u64,
}

impl Pacer {
    /// Paused at the start, at normal speed.
    pub fn new(end_us: u64) -> Self {
        Self { speed: 1.0, at_us: 0, since: None, end_us }
    }

    pub fn position(&self, now: Instant) -> u64 {
        match self.since {
            None => self.at_us,
            Some(since) => {
                let played = now.saturating_duration_since(since).as_secs_f64() * self.speed;
                (self.at_us + (played * 1e6) as u64).min(self.end_us)
            }
        }
    }

    pub fn playing(&self) -> bool {
        self.since.is_some()
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    pub fn end_us(&self) -> u64 {
        self.end_us
    }

    /// Whether the position is at the end.
    pub fn at_end(&self, now: Instant) -> bool {
        self.position(now) >= self.end_us
    }

    pub fn play(&mut self, now: Instant) {
        if self.at_end(now) {
            // Playing again from the end starts over.
            self.at_us = 0;
        } else {
            self.at_us = self.position(now);
        }
        self.since = Some(now);
    }

    pub fn pause(&mut self, now: Instant) {
        self.at_us = self.position(now);
        self.since = None;
    }

    /// Moves to `to_us` (within the recording), playing on if it was playing.
    pub fn seek(&mut self, to_us: u64, now: Instant) {
        self.at_us = to_us.min(self.end_us);
        if self.since.is_some() {
            self.since = Some(now);
        }
    }

    pub fn set_speed(&mut self, speed: f64, now: Instant) {
        let speed = if speed.is_finite() { speed.clamp(MIN_SPEED, MAX_SPEED) } else { 1.0 };
        self.at_us = self.position(now);
        if self.since.is_some() {
            self.since = Some(now);
        }
        self.speed = speed;
    }

    /// When the position reaches `rec_us`.
    pub fn due(&self, rec_us: u64, now: Instant) -> Due {
        if rec_us <= self.position(now) {
            return Due::Now;
        }
        match self.since {
            None => Due::Paused,
            Some(since) => {
                let ahead = Duration::from_secs_f64((rec_us - self.at_us) as f64 / 1e6 / self.speed);
                Due::At(since + ahead)
            }
        }
    }
}

#[cfg(test)]
#[path = "replay_tests.rs"]
mod tests;
