//! The fixed header every desktop message starts with (kind, flags, length, checked
//! against the kind's limit), and the errors of this protocol.

use super::*;

/// The kind byte of a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    StreamInfo,
    Frame,
    CursorShape,
    CursorPosition,
    Key,
    Text,
    MouseMove,
    MouseButton,
    Wheel,
    Clipboard,
    KeyframeRequest,
}

impl Kind {
    pub(super) const ALL: [Kind; 11] = [
        Kind::StreamInfo,
        Kind::Frame,
        Kind::CursorShape,
        Kind::CursorPosition,
        Kind::Key,
        Kind::Text,
        Kind::MouseMove,
        Kind::MouseButton,
        Kind::Wheel,
        Kind::Clipboard,
        Kind::KeyframeRequest,
    ];

    /// The byte on the wire.
    pub fn to_u8(self) -> u8 {
        match self {
            Kind::StreamInfo => 1,
            Kind::Frame => 2,
            Kind::CursorShape => 3,
            Kind::CursorPosition => 4,
            Kind::Key => 16,
            Kind::Text => 17,
            Kind::MouseMove => 18,
            Kind::MouseButton => 19,
            Kind::Wheel => 20,
            Kind::Clipboard => 32,
            Kind::KeyframeRequest => 33,
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        Kind::ALL.into_iter().find(|k| k.to_u8() == v)
    }

    /// The largest payload this kind may carry. Fixed-size kinds must match exactly
    /// (checked when decoding); this is the bound a relay applies to the header alone.
    pub fn max_payload(self) -> usize {
        match self {
            Kind::StreamInfo => 5,
            Kind::Frame => FRAME_PREFIX + MAX_FRAME_DATA,
            Kind::CursorShape => {
                let side = MAX_CURSOR_SIDE as usize;
                CURSOR_SHAPE_PREFIX + side * side * 4
            }
            Kind::CursorPosition => 8,
            Kind::Key => MAX_KEY_CODE,
            Kind::Text => MAX_TEXT_INPUT,
            Kind::MouseMove => 4,
            Kind::MouseButton => 1,
            Kind::Wheel => 4,
            Kind::Clipboard => MAX_CLIPBOARD,
            Kind::KeyframeRequest => 0,
        }
    }

    /// Which flag bits this kind may set.
    fn allowed_flags(self) -> u8 {
        match self {
            Kind::Frame | Kind::Key | Kind::MouseButton => FLAG_SET,
            _ => 0,
        }
    }

    /// Whether this kind travels from the agent's screen towards the viewer.
    pub fn is_from_agent(self) -> bool {
        matches!(
            self,
            Kind::StreamInfo | Kind::Frame | Kind::CursorShape | Kind::CursorPosition | Kind::Clipboard
        )
    }

    /// Whether this kind travels from the viewer towards the agent.
    pub fn is_from_viewer(self) -> bool {
        matches!(
            self,
            Kind::Key
                | Kind::Text
                | Kind::MouseMove
                | Kind::MouseButton
                | Kind::Wheel
                | Kind::Clipboard
                | Kind::KeyframeRequest
        )
    }

    /// Whether this kind is input (needs control of the desktop, not only a view of it).
    pub fn is_input(self) -> bool {
        matches!(self, Kind::Key | Kind::Text | Kind::MouseMove | Kind::MouseButton | Kind::Wheel)
    }
}

/// What went wrong reading or writing a desktop message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DesktopError {
    #[error("unknown desktop message kind {0}")]
    UnknownKind(u8),
    #[error("desktop message kind {kind:?} not allowed in this direction")]
    WrongDirection { kind: Kind },
    #[error("reserved header bytes are not zero")]
    Reserved,
    #[error("flags {flags:#04x} not allowed for {kind:?}")]
    BadFlags { kind: Kind, flags: u8 },
    #[error("{kind:?} payload of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { kind: Kind, len: usize, max: usize },
    #[error("{kind:?} payload is {len} bytes, expected {expected}")]
    BadLength { kind: Kind, len: usize, expected: usize },
    #[error("message truncated: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    #[error("malformed {kind:?}: {reason}")]
    Malformed { kind: Kind, reason: &'static str },
}

/// A parsed message header. Enough to route, limit and index a message without decoding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub flags: u8,
    /// Payload length in bytes, already checked against [`Kind::max_payload`].
    pub len: usize,
}

impl Header {
    /// Parses and checks a header: known kind, reserved bytes zero, flags allowed for the
    /// kind, length within the kind's limit.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header, DesktopError> {
        let kind = Kind::from_u8(bytes[0]).ok_or(DesktopError::UnknownKind(bytes[0]))?;
        let flags = bytes[1];
        if bytes[2] != 0 || bytes[3] != 0 {
            return Err(DesktopError::Reserved);
        }
        if flags & !kind.allowed_flags() != 0 {
            return Err(DesktopError::BadFlags { kind, flags });
        }
        let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let max = kind.max_payload();
        if len > max {
            return Err(DesktopError::TooLarge { kind, len, max });
        }
        Ok(Header { kind, flags, len })
    }

    /// Whether this header starts a keyframe (what a recording's seek index needs).
    pub fn is_keyframe(&self) -> bool {
        self.kind == Kind::Frame && self.flags & FLAG_SET != 0
    }

    pub(super) fn write(kind: Kind, flags: u8, len: usize, out: &mut Vec<u8>) {
        out.push(kind.to_u8());
        out.push(flags);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}
