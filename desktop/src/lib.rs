//! Remote desktop on the agent's side: the screen as an H.264 stream of
//! [`assist_proto::desktop`] messages, and the viewer's input back into the desktop.
//!
//! - [`x11`]: X11 capture: DAMAGE (idle screens cost nothing), MIT-SHM grabs ([`shm`], the
//!   crate's only `unsafe`), XFIXES cursor image, XInput 2 pointer motion, RANDR size;
//! - [`h264`]: OpenH264 (bundled source, SIMD with nasm) after a SIMD BGRA → I420;
//! - [`input`] and [`keymap`]: XTest keys (by `KeyboardEvent.code`), text (characters the
//!   layout lacks included), mouse and wheel, and releasing all that is held;
//! - [`source`]: the `ScreenSource`, `Encoder` and `InputSink` traits other platforms
//!   will implement;
//! - [`stream`]: [`Desktop`], which ties them together on a capture thread, latest frame
//!   wins;
//! - [`indicator`]: the bar on the customer's screen saying who views or controls it;
//! - [`clipboard`]: the `CLIPBOARD` selection as UTF-8 text, capped, owned and served.
//!
//! It does no networking and no policy: it never decides whether a session may see or
//! control the screen (the relay and the agent do, before calling it), never sends a byte
//! anywhere, and never reads configuration on its own.
//!
//! H.264 built from source is not covered by Cisco's patent licence for its OpenH264
//! binaries; see the README.

#![deny(unsafe_code)]

pub mod clipboard;
pub mod error;
pub mod h264;
pub mod indicator;
pub mod input;
pub mod keymap;
mod shm;
pub mod source;
pub mod stream;
pub mod x11;

pub use clipboard::X11Clipboard;
pub use error::DesktopError;
pub use h264::{H264Encoder, H264Settings};
pub use indicator::Indicator;
pub use input::XTestInput;
pub use source::{Changes, Encoder, InputSink, Picture, ScreenSource};
pub use stream::{Desktop, DesktopConfig};
pub use x11::{GrabMethod, X11Screen};
