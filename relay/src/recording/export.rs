//! Views of a recording: asciicast v2 for terminal players, the raw bytes of one channel
//! direction, and replay in a terminal. Exports read only chunks that verify; they do not
//! judge the recording (see [`super::verify`]).

use super::format::{self, ChunkKind, Direction, Event, EventKind};
use super::recorder::Header;
use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

/// Why a recording cannot be read for an export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("empty recording")]
    Empty,
    #[error("bad header: {0}")]
    BadHeader(String),
    #[error(transparent)]
    Events(#[from] format::BadEvents),
}

/// The header and every event of the chunks that verify.
pub fn read_events(bytes: &[u8]) -> Result<(Header, Vec<Event>), Unreadable> {
    let (chunks, _) = format::read_chunks(bytes);
    let first = chunks.first().ok_or(Unreadable::Empty)?;
    let header: Header =
        serde_json::from_slice(&first.payload).map_err(|e| Unreadable::BadHeader(e.to_string()))?;
    let mut events = Vec::new();
    for c in chunks.iter().filter(|c| c.kind == ChunkKind::Events) {
        events.extend(format::decode_events(&c.payload)?);
    }
    Ok((header, events))
}

/// Channels that carry terminal output: shell channels and their stderr.
fn terminal_channels(events: &[Event]) -> BTreeSet<u32> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::ChannelOpen)
        .filter(|e| {
            serde_json::from_slice::<serde_json::Value>(&e.data)
                .ok()
                .and_then(|v| v["kind"].as_str().map(|k| k == "shell" || k == "stderr"))
                .unwrap_or(false)
        })
        .map(|e| e.channel)
        .collect()
}

/// Decodes UTF-8 across chunk boundaries: a character split between two events is kept
/// whole, invalid bytes become U+FFFD.
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, data: &[u8]) -> String {
        self.pending.extend_from_slice(data);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"));
                    match e.error_len() {
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(n) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + n);
                        }
                    }
                }
            }
        }
    }
}

/// How long after a last marker an asciicast goes on (an empty output event), so that
/// players, which draw markers only before a recording's end, draw the end marker too.
pub const AFTER_LAST_MARKER: f64 = 0.5;

/// asciicast v2: a header line, then `[seconds, "o"|"r"|"m", text]` lines. When the last
/// line is a marker (a session's end), an empty output line follows it
/// [`AFTER_LAST_MARKER`] later.
pub fn asciicast(header: &Header, events: &[Event]) -> String {
    let terminal = terminal_channels(events);
    let (mut width, mut height) = (80, 24);
    if let Some(r) = events.iter().find(|e| e.kind == EventKind::Resize)
        && let Some((c, r)) = std::str::from_utf8(&r.data).ok().and_then(|s| s.split_once('x'))
    {
        width = c.parse().unwrap_or(80);
        height = r.parse().unwrap_or(24);
    }
    let s = &header.session;
    let head = serde_json::json!({
        "version": 2,
        "width": width,
        "height": height,
        "timestamp": header.started_at / 1000,
        "title": format!("assist session {} on {} ({}, {})", s.id, s.agent, s.ticket, s.engineer),
    });
    let mut out = head.to_string();
    out.push('\n');
    let mut streams: std::collections::BTreeMap<u32, Utf8Stream> = Default::default();
    let mut last_marker = None;
    for e in events {
        let t = e.offset_us as f64 / 1e6;
        let line = match e.kind {
            EventKind::Data if e.direction == Direction::Out && terminal.contains(&e.channel) => {
                let text = streams.entry(e.channel).or_default().push(&e.data);
                if text.is_empty() {
                    continue;
                }
                serde_json::json!([t, "o", text])
            }
            EventKind::Resize => serde_json::json!([t, "r", String::from_utf8_lossy(&e.data)]),
            EventKind::Marker => serde_json::json!([t, "m", String::from_utf8_lossy(&e.data)]),
            _ => continue,
        };
        last_marker = (e.kind == EventKind::Marker).then_some(t);
        out.push_str(&line.to_string());
        out.push('\n');
    }
    if let Some(t) = last_marker {
        out.push_str(&serde_json::json!([t + AFTER_LAST_MARKER, "o", ""]).to_string());
        out.push('\n');
    }
    out
}

/// The exact bytes of one channel in one direction.
pub fn raw(events: &[Event], channel: u32, direction: Direction) -> Vec<u8> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Data && e.channel == channel && e.direction == direction)
        .flat_map(|e| e.data.iter().copied())
        .collect()
}

/// Replays terminal output at `speed` × real time; pauses longer than `max_idle` are cut.
pub async fn play(
    events: &[Event],
    speed: f64,
    max_idle: Duration,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let terminal = terminal_channels(events);
    let speed = if speed > 0.0 { speed } else { 1.0 };
    let mut last = 0u64;
    for e in events.iter().filter(|e| {
        e.kind == EventKind::Data && e.direction == Direction::Out && terminal.contains(&e.channel)
    }) {
        let gap = Duration::from_micros(e.offset_us.saturating_sub(last)).div_f64(speed).min(max_idle);
        last = e.offset_us;
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        out.write_all(&e.data)?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_events_stays_whole() {
        let mut s = Utf8Stream::default();
        let bytes = "é€".as_bytes();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..3]), "é");
        assert_eq!(s.push(&bytes[3..]), "€");
        assert_eq!(s.push(&[0xff, b'a']), "\u{FFFD}a");
    }
}
