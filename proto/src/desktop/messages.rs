//! The desktop messages as types, by direction.

/// Video codec of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// H.264 Annex B byte stream (start codes), constrained baseline.
    H264,
}

impl Codec {
    pub(super) fn to_u8(self) -> u8 {
        match self {
            Codec::H264 => 1,
        }
    }

    pub(super) fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Codec::H264),
            _ => None,
        }
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
    pub(super) fn to_u8(self) -> u8 {
        match self {
            MouseButton::Left => 0,
            MouseButton::Middle => 1,
            MouseButton::Right => 2,
            MouseButton::Back => 3,
            MouseButton::Forward => 4,
        }
    }

    pub(super) fn from_u8(v: u8) -> Option<Self> {
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
