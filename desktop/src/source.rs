//! The three seams of the desktop path, so that other platforms (a PipeWire portal, DXGI,
//! ScreenCaptureKit, another codec) can be added without touching the rest:
//!
//! - [`ScreenSource`]: what changed on the screen, the picture, the pointer;
//! - [`Encoder`]: pictures into a compressed stream;
//! - [`InputSink`]: the viewer's input into the desktop.
//!
//! Nothing here does I/O; the X11, OpenH264 and XTest implementations live beside it.

use std::time::Duration;

use assist_proto::desktop::{CursorPosition, CursorShape, Frame, InputEvent};

use crate::error::DesktopError;

/// One screen picture: 4 bytes per pixel in memory order B, G, R, X.
#[derive(Clone, Copy)]
pub struct Picture<'a> {
    pub width: u16,
    pub height: u16,
    /// Bytes from one row to the next.
    pub stride: usize,
    pub bgra: &'a [u8],
}

impl Picture<'_> {
    /// The (red, green, blue) of the pixel at (`x`, `y`).
    pub fn rgb(&self, x: u16, y: u16) -> (u8, u8, u8) {
        let i = y as usize * self.stride + x as usize * 4;
        (self.bgra[i + 2], self.bgra[i + 1], self.bgra[i])
    }
}

impl std::fmt::Debug for Picture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Picture({}x{})", self.width, self.height)
    }
}

/// What changed on a screen since it was last asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Some of the picture was drawn.
    pub damaged: bool,
    /// The pointer's image changed.
    pub cursor_shape: bool,
    /// The pointer moved.
    pub cursor_moved: bool,
    /// The screen's size changed.
    pub resized: bool,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.damaged || self.cursor_shape || self.cursor_moved || self.resized
    }
}

/// A screen to watch and grab.
pub trait ScreenSource: Send {
    /// The screen's current size in pixels.
    fn size(&self) -> (u16, u16);
    /// Waits up to `timeout` for a change and returns every change seen since the last call
    /// (all false when the wait ran out). An idle screen wakes nobody.
    fn wait_changes(&mut self, timeout: Duration) -> Result<Changes, DesktopError>;
    /// Grabs the whole screen. Changes drawn before the grab are not reported again.
    fn grab(&mut self) -> Result<Picture<'_>, DesktopError>;
    /// The pointer's current image, if it has one.
    fn cursor_shape(&mut self) -> Result<Option<CursorShape>, DesktopError>;
    /// The pointer's position.
    fn cursor_position(&mut self) -> Result<CursorPosition, DesktopError>;
}

/// Pictures into a compressed stream.
pub trait Encoder: Send {
    /// Encodes one picture taken at `timestamp_us`; `keyframe` forces a frame a viewer can
    /// start from. `None` when the encoder chose to send nothing for this picture.
    fn encode(
        &mut self,
        picture: &Picture<'_>,
        timestamp_us: u64,
        keyframe: bool,
    ) -> Result<Option<Frame>, DesktopError>;
}

/// The viewer's input into the desktop.
pub trait InputSink: Send {
    fn inject(&mut self, event: &InputEvent) -> Result<(), DesktopError>;
    /// Releases every key and button this sink holds down (control revoked, session over).
    fn release_all(&mut self) -> Result<(), DesktopError>;
}
