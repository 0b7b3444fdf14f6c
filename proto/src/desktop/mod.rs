//! Remote-desktop messages: what an agent's screen sends to a viewer and what a viewer
//! sends back (input, clipboard, keyframe requests), in one binary framing.
//!
//! Every message is a fixed [`HEADER_LEN`]-byte header, then a payload:
//!
//! ```text
//! byte 0   kind      (Kind)
//! byte 1   flags     (bit 0: keyframe for Frame, key/button down for Key/MouseButton)
//! byte 2-3 reserved  (zero)
//! byte 4-7 length    (payload bytes, big-endian u32, at most Kind::max_payload)
//! ```
//!
//! The header alone tells the kind, whether a frame is a keyframe and how long the payload
//! is, so a relay can enforce size limits, index keyframes and forward or record a message
//! without decoding its payload ([`Header::parse`]). Payloads are big-endian binary with
//! exact lengths; text is UTF-8. Limits are per kind and checked before any payload byte is
//! buffered.
//!
//! The same messages go agent → relay, relay → browser, and into the recording. This module
//! does no I/O and knows nothing of consent: which messages a session may carry is decided
//! elsewhere.

/// Length of every message header.
pub const HEADER_LEN: usize = 8;

/// The largest encoded video frame accepted (8 MiB: a 4K keyframe of busy content fits).
pub const MAX_FRAME_DATA: usize = 8 * 1024 * 1024;

/// The largest cursor image side, in pixels.
pub const MAX_CURSOR_SIDE: u16 = 256;

/// The largest clipboard text, in bytes.
pub const MAX_CLIPBOARD: usize = 64 * 1024;

/// The largest text input event, in bytes.
pub const MAX_TEXT_INPUT: usize = 1024;

/// The longest `KeyboardEvent.code` accepted, in bytes.
pub const MAX_KEY_CODE: usize = 32;

/// The most wheel steps one event may carry in either axis.
pub const MAX_WHEEL_STEPS: i16 = 32;

/// Header flag: a frame that starts a decodable sequence (IDR with SPS/PPS); for keys and
/// buttons, pressed (unset: released).
pub const FLAG_SET: u8 = 0x01;

const FRAME_PREFIX: usize = 8;
const CURSOR_SHAPE_PREFIX: usize = 8;

mod codec;
mod header;
mod messages;
mod split;

pub use header::{DesktopError, Header, Kind};
pub use messages::{
    AgentToViewer, Codec, CursorPosition, CursorShape, Frame, InputEvent, MouseButton, StreamInfo,
    ViewerToAgent,
};
pub use split::{Splitter, decode_from_agent, decode_from_viewer};

#[cfg(test)]
mod tests;
