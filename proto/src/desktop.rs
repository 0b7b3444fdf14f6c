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

/// Video codec of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// H.264 Annex B byte stream (start codes), constrained baseline.
    H264,
}

impl Codec {
    fn to_u8(self) -> u8 {
        match self {
            Codec::H264 => 1,
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Codec::H264),
            _ => None,
        }
    }
}

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
    const ALL: [Kind; 11] = [
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

    fn write(kind: Kind, flags: u8, len: usize, out: &mut Vec<u8>) {
        out.push(kind.to_u8());
        out.push(flags);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

/// The size of the picture that frames carry. Sent first, and again when the size changes
/// (the next frame is then a keyframe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamInfo {
    pub codec: Codec,
    pub width: u16,
    pub height: u16,
}

/// One encoded picture.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Microseconds since the stream started (capture time).
    pub timestamp_us: u64,
    /// Starts a decodable sequence: a viewer joining or seeking starts here.
    pub keyframe: bool,
    /// Codec bitstream (for H.264: Annex B NAL units).
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("timestamp_us", &self.timestamp_us)
            .field("keyframe", &self.keyframe)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// The pointer's image, sent when it changes; drawn by the viewer over the picture.
#[derive(Clone, PartialEq, Eq)]
pub struct CursorShape {
    pub width: u16,
    pub height: u16,
    pub hot_x: u16,
    pub hot_y: u16,
    /// `width * height` pixels, RGBA, not premultiplied, row by row.
    pub rgba: Vec<u8>,
}

impl std::fmt::Debug for CursorShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CursorShape")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("hot_x", &self.hot_x)
            .field("hot_y", &self.hot_y)
            .finish()
    }
}

/// Where the pointer is, in picture pixels (may be outside it: the pointer is on another
/// part of the screen or hidden).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CursorPosition {
    pub x: i32,
    pub y: i32,
}

/// A mouse button, numbered as the browser's `MouseEvent.button`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MouseButton {
    Left,
    Middle,
    Right,
    Back,
    Forward,
}

impl MouseButton {
    fn to_u8(self) -> u8 {
        match self {
            MouseButton::Left => 0,
            MouseButton::Middle => 1,
            MouseButton::Right => 2,
            MouseButton::Back => 3,
            MouseButton::Forward => 4,
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => MouseButton::Left,
            1 => MouseButton::Middle,
            2 => MouseButton::Right,
            3 => MouseButton::Back,
            4 => MouseButton::Forward,
            _ => return None,
        })
    }
}

/// Input from the viewer. Coordinates are picture pixels (the viewer scales).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputEvent {
    /// A key by its physical position, as the browser's `KeyboardEvent.code` (`KeyA`,
    /// `Enter`, `ShiftLeft`): ASCII letters and digits only.
    Key {
        code: String,
        down: bool,
    },
    /// Text to type as it is (characters the layout lacks are typed all the same).
    Text(String),
    /// Move the pointer to an absolute position.
    MouseMove {
        x: u16,
        y: u16,
    },
    MouseButton {
        button: MouseButton,
        down: bool,
    },
    /// Wheel steps: positive `dy` scrolls down, positive `dx` right.
    Wheel {
        dx: i16,
        dy: i16,
    },
}

/// Messages from the agent's screen to the viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentToViewer {
    StreamInfo(StreamInfo),
    Frame(Frame),
    CursorShape(CursorShape),
    CursorPosition(CursorPosition),
    /// The customer's clipboard text (only where the clipboard is granted).
    Clipboard(String),
}

/// Messages from the viewer to the agent's screen.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ViewerToAgent {
    Input(InputEvent),
    /// Text for the customer's clipboard (only where the clipboard is granted).
    Clipboard(String),
    /// Ask for a keyframe (a viewer joined, or lost data).
    KeyframeRequest,
}

fn check_len(kind: Kind, len: usize) -> Result<(), DesktopError> {
    let max = kind.max_payload();
    if len > max {
        return Err(DesktopError::TooLarge { kind, len, max });
    }
    Ok(())
}

fn exact(kind: Kind, payload: &[u8], expected: usize) -> Result<(), DesktopError> {
    if payload.len() != expected {
        return Err(DesktopError::BadLength { kind, len: payload.len(), expected });
    }
    Ok(())
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn text(kind: Kind, payload: &[u8]) -> Result<String, DesktopError> {
    String::from_utf8(payload.to_vec())
        .map_err(|_| DesktopError::Malformed { kind, reason: "text is not UTF-8" })
}

fn valid_key_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= MAX_KEY_CODE && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl AgentToViewer {
    fn kind(&self) -> Kind {
        match self {
            AgentToViewer::StreamInfo(_) => Kind::StreamInfo,
            AgentToViewer::Frame(_) => Kind::Frame,
            AgentToViewer::CursorShape(_) => Kind::CursorShape,
            AgentToViewer::CursorPosition(_) => Kind::CursorPosition,
            AgentToViewer::Clipboard(_) => Kind::Clipboard,
        }
    }

    /// The encoded length: header plus payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                AgentToViewer::StreamInfo(_) => 5,
                AgentToViewer::Frame(f) => FRAME_PREFIX + f.data.len(),
                AgentToViewer::CursorShape(c) => CURSOR_SHAPE_PREFIX + c.rgba.len(),
                AgentToViewer::CursorPosition(_) => 8,
                AgentToViewer::Clipboard(t) => t.len(),
            }
    }

    /// Appends the encoded message to `out`. Fails, writing nothing, on a message that
    /// breaks a limit (a clipboard too long, a cursor whose pixels do not match its size).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), DesktopError> {
        let kind = self.kind();
        let len = self.encoded_len() - HEADER_LEN;
        check_len(kind, len)?;
        match self {
            AgentToViewer::StreamInfo(i) => {
                Header::write(kind, 0, len, out);
                out.push(i.codec.to_u8());
                out.extend_from_slice(&i.width.to_be_bytes());
                out.extend_from_slice(&i.height.to_be_bytes());
            }
            AgentToViewer::Frame(f) => {
                Header::write(kind, if f.keyframe { FLAG_SET } else { 0 }, len, out);
                out.extend_from_slice(&f.timestamp_us.to_be_bytes());
                out.extend_from_slice(&f.data);
            }
            AgentToViewer::CursorShape(c) => {
                cursor_shape_valid(c)?;
                Header::write(kind, 0, len, out);
                for v in [c.width, c.height, c.hot_x, c.hot_y] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.extend_from_slice(&c.rgba);
            }
            AgentToViewer::CursorPosition(p) => {
                Header::write(kind, 0, len, out);
                out.extend_from_slice(&p.x.to_be_bytes());
                out.extend_from_slice(&p.y.to_be_bytes());
            }
            AgentToViewer::Clipboard(t) => {
                Header::write(kind, 0, len, out);
                out.extend_from_slice(t.as_bytes());
            }
        }
        Ok(())
    }

    /// Encodes into a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, DesktopError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes a payload whose header was already parsed.
    pub fn decode(header: &Header, payload: &[u8]) -> Result<Self, DesktopError> {
        let kind = header.kind;
        if !kind.is_from_agent() {
            return Err(DesktopError::WrongDirection { kind });
        }
        exact(kind, payload, header.len)?;
        Ok(match kind {
            Kind::StreamInfo => {
                exact(kind, payload, 5)?;
                let codec = Codec::from_u8(payload[0])
                    .ok_or(DesktopError::Malformed { kind, reason: "unknown codec" })?;
                let (width, height) = (be16(&payload[1..]), be16(&payload[3..]));
                if width == 0 || height == 0 {
                    return Err(DesktopError::Malformed { kind, reason: "empty picture" });
                }
                AgentToViewer::StreamInfo(StreamInfo { codec, width, height })
            }
            Kind::Frame => {
                if payload.len() < FRAME_PREFIX {
                    return Err(DesktopError::BadLength { kind, len: payload.len(), expected: FRAME_PREFIX });
                }
                let timestamp_us = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
                AgentToViewer::Frame(Frame {
                    timestamp_us,
                    keyframe: header.flags & FLAG_SET != 0,
                    data: payload[FRAME_PREFIX..].to_vec(),
                })
            }
            Kind::CursorShape => {
                if payload.len() < CURSOR_SHAPE_PREFIX {
                    return Err(DesktopError::BadLength {
                        kind,
                        len: payload.len(),
                        expected: CURSOR_SHAPE_PREFIX,
                    });
                }
                let shape = CursorShape {
                    width: be16(&payload[0..]),
                    height: be16(&payload[2..]),
                    hot_x: be16(&payload[4..]),
                    hot_y: be16(&payload[6..]),
                    rgba: payload[CURSOR_SHAPE_PREFIX..].to_vec(),
                };
                cursor_shape_valid(&shape)?;
                AgentToViewer::CursorShape(shape)
            }
            Kind::CursorPosition => {
                exact(kind, payload, 8)?;
                AgentToViewer::CursorPosition(CursorPosition {
                    x: be32(&payload[0..]) as i32,
                    y: be32(&payload[4..]) as i32,
                })
            }
            Kind::Clipboard => AgentToViewer::Clipboard(text(kind, payload)?),
            _ => return Err(DesktopError::WrongDirection { kind }),
        })
    }
}

fn cursor_shape_valid(c: &CursorShape) -> Result<(), DesktopError> {
    let kind = Kind::CursorShape;
    if c.width == 0 || c.height == 0 || c.width > MAX_CURSOR_SIDE || c.height > MAX_CURSOR_SIDE {
        return Err(DesktopError::Malformed { kind, reason: "cursor size out of range" });
    }
    if c.hot_x >= c.width || c.hot_y >= c.height {
        return Err(DesktopError::Malformed { kind, reason: "hotspot outside the cursor" });
    }
    let expected = c.width as usize * c.height as usize * 4;
    if c.rgba.len() != expected {
        return Err(DesktopError::BadLength {
            kind,
            len: CURSOR_SHAPE_PREFIX + c.rgba.len(),
            expected: CURSOR_SHAPE_PREFIX + expected,
        });
    }
    Ok(())
}

impl ViewerToAgent {
    fn kind(&self) -> Kind {
        match self {
            ViewerToAgent::Input(InputEvent::Key { .. }) => Kind::Key,
            ViewerToAgent::Input(InputEvent::Text(_)) => Kind::Text,
            ViewerToAgent::Input(InputEvent::MouseMove { .. }) => Kind::MouseMove,
            ViewerToAgent::Input(InputEvent::MouseButton { .. }) => Kind::MouseButton,
            ViewerToAgent::Input(InputEvent::Wheel { .. }) => Kind::Wheel,
            ViewerToAgent::Clipboard(_) => Kind::Clipboard,
            ViewerToAgent::KeyframeRequest => Kind::KeyframeRequest,
        }
    }

    /// The encoded length: header plus payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                ViewerToAgent::Input(InputEvent::Key { code, .. }) => code.len(),
                ViewerToAgent::Input(InputEvent::Text(t)) => t.len(),
                ViewerToAgent::Input(InputEvent::MouseMove { .. }) => 4,
                ViewerToAgent::Input(InputEvent::MouseButton { .. }) => 1,
                ViewerToAgent::Input(InputEvent::Wheel { .. }) => 4,
                ViewerToAgent::Clipboard(t) => t.len(),
                ViewerToAgent::KeyframeRequest => 0,
            }
    }

    /// Appends the encoded message to `out`. Fails, writing nothing, on a message that
    /// breaks a limit.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), DesktopError> {
        let kind = self.kind();
        let len = self.encoded_len() - HEADER_LEN;
        check_len(kind, len)?;
        match self {
            ViewerToAgent::Input(InputEvent::Key { code, down }) => {
                if !valid_key_code(code) {
                    return Err(DesktopError::Malformed {
                        kind,
                        reason: "key code must be ASCII letters and digits",
                    });
                }
                Header::write(kind, if *down { FLAG_SET } else { 0 }, len, out);
                out.extend_from_slice(code.as_bytes());
            }
            ViewerToAgent::Input(InputEvent::Text(t)) | ViewerToAgent::Clipboard(t) => {
                if kind == Kind::Text && t.is_empty() {
                    return Err(DesktopError::Malformed { kind, reason: "empty text" });
                }
                Header::write(kind, 0, len, out);
                out.extend_from_slice(t.as_bytes());
            }
            ViewerToAgent::Input(InputEvent::MouseMove { x, y }) => {
                Header::write(kind, 0, len, out);
                out.extend_from_slice(&x.to_be_bytes());
                out.extend_from_slice(&y.to_be_bytes());
            }
            ViewerToAgent::Input(InputEvent::MouseButton { button, down }) => {
                Header::write(kind, if *down { FLAG_SET } else { 0 }, len, out);
                out.push(button.to_u8());
            }
            ViewerToAgent::Input(InputEvent::Wheel { dx, dy }) => {
                if !wheel_valid(*dx, *dy) {
                    return Err(DesktopError::Malformed { kind, reason: "too many wheel steps" });
                }
                Header::write(kind, 0, len, out);
                out.extend_from_slice(&dx.to_be_bytes());
                out.extend_from_slice(&dy.to_be_bytes());
            }
            ViewerToAgent::KeyframeRequest => Header::write(kind, 0, 0, out),
        }
        Ok(())
    }

    /// Encodes into a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, DesktopError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes a payload whose header was already parsed.
    pub fn decode(header: &Header, payload: &[u8]) -> Result<Self, DesktopError> {
        let kind = header.kind;
        if !kind.is_from_viewer() {
            return Err(DesktopError::WrongDirection { kind });
        }
        exact(kind, payload, header.len)?;
        let down = header.flags & FLAG_SET != 0;
        Ok(match kind {
            Kind::Key => {
                let code = text(kind, payload)?;
                if !valid_key_code(&code) {
                    return Err(DesktopError::Malformed {
                        kind,
                        reason: "key code must be ASCII letters and digits",
                    });
                }
                ViewerToAgent::Input(InputEvent::Key { code, down })
            }
            Kind::Text => {
                if payload.is_empty() {
                    return Err(DesktopError::Malformed { kind, reason: "empty text" });
                }
                ViewerToAgent::Input(InputEvent::Text(text(kind, payload)?))
            }
            Kind::MouseMove => {
                exact(kind, payload, 4)?;
                ViewerToAgent::Input(InputEvent::MouseMove { x: be16(&payload[0..]), y: be16(&payload[2..]) })
            }
            Kind::MouseButton => {
                exact(kind, payload, 1)?;
                let button = MouseButton::from_u8(payload[0])
                    .ok_or(DesktopError::Malformed { kind, reason: "unknown mouse button" })?;
                ViewerToAgent::Input(InputEvent::MouseButton { button, down })
            }
            Kind::Wheel => {
                exact(kind, payload, 4)?;
                let (dx, dy) = (be16(&payload[0..]) as i16, be16(&payload[2..]) as i16);
                if !wheel_valid(dx, dy) {
                    return Err(DesktopError::Malformed { kind, reason: "too many wheel steps" });
                }
                ViewerToAgent::Input(InputEvent::Wheel { dx, dy })
            }
            Kind::Clipboard => ViewerToAgent::Clipboard(text(kind, payload)?),
            Kind::KeyframeRequest => {
                exact(kind, payload, 0)?;
                ViewerToAgent::KeyframeRequest
            }
            _ => return Err(DesktopError::WrongDirection { kind }),
        })
    }
}

fn wheel_valid(dx: i16, dy: i16) -> bool {
    (-MAX_WHEEL_STEPS..=MAX_WHEEL_STEPS).contains(&dx) && (-MAX_WHEEL_STEPS..=MAX_WHEEL_STEPS).contains(&dy)
}

/// Splits a byte stream into whole messages without decoding payloads: each header is
/// checked (kind, flags, limit) as soon as its 8 bytes are in, so an oversized message is
/// refused before its payload is buffered. After an error the stream is unusable.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    header: Option<Header>,
}

impl Splitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet taken as part of a whole message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next whole message as its header and payload, if it has arrived.
    pub fn next_raw(&mut self) -> Result<Option<(Header, Vec<u8>)>, DesktopError> {
        let header = match self.header {
            Some(h) => h,
            None => {
                if self.buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                let h = Header::parse(self.buf[..HEADER_LEN].try_into().expect("8 bytes"))?;
                self.buf.drain(..HEADER_LEN);
                self.header = Some(h);
                h
            }
        };
        if self.buf.len() < header.len {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf.drain(..header.len).collect();
        self.header = None;
        Ok(Some((header, payload)))
    }

    /// Takes and decodes the next message from the agent.
    pub fn next_from_agent(&mut self) -> Result<Option<AgentToViewer>, DesktopError> {
        match self.next_raw()? {
            Some((h, p)) => AgentToViewer::decode(&h, &p).map(Some),
            None => Ok(None),
        }
    }

    /// Takes and decodes the next message from the viewer.
    pub fn next_from_viewer(&mut self) -> Result<Option<ViewerToAgent>, DesktopError> {
        match self.next_raw()? {
            Some((h, p)) => ViewerToAgent::decode(&h, &p).map(Some),
            None => Ok(None),
        }
    }
}

/// Decodes exactly one whole message from the agent (header and payload, nothing more).
pub fn decode_from_agent(bytes: &[u8]) -> Result<AgentToViewer, DesktopError> {
    let (header, payload) = split_one(bytes)?;
    AgentToViewer::decode(&header, payload)
}

/// Decodes exactly one whole message from the viewer (header and payload, nothing more).
pub fn decode_from_viewer(bytes: &[u8]) -> Result<ViewerToAgent, DesktopError> {
    let (header, payload) = split_one(bytes)?;
    ViewerToAgent::decode(&header, payload)
}

fn split_one(bytes: &[u8]) -> Result<(Header, &[u8]), DesktopError> {
    if bytes.len() < HEADER_LEN {
        return Err(DesktopError::Truncated { needed: HEADER_LEN, got: bytes.len() });
    }
    let header = Header::parse(bytes[..HEADER_LEN].try_into().expect("8 bytes"))?;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() < header.len {
        return Err(DesktopError::Truncated { needed: HEADER_LEN + header.len, got: bytes.len() });
    }
    if payload.len() > header.len {
        return Err(DesktopError::BadLength { kind: header.kind, len: payload.len(), expected: header.len });
    }
    Ok((header, payload))
}

#[cfg(test)]
#[path = "desktop_tests.rs"]
mod tests;
