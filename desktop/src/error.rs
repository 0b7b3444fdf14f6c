//! The crate's one error type.

use x11rb::errors::{ConnectError, ConnectionError, ReplyError, ReplyOrIdError};

/// What went wrong opening, capturing, encoding or injecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DesktopError {
    /// No X display could be reached (none given, or it refused us).
    #[error("cannot open X display {display:?}: {source}")]
    Connect { display: String, source: ConnectError },
    /// A display name no X server can have.
    #[error("{0:?} is not a valid X display")]
    BadDisplay(String),
    /// The display lacks an extension this crate needs.
    #[error("the X server lacks the {0} extension")]
    MissingExtension(&'static str),
    /// The screen's pixel format or size is one this crate does not handle.
    #[error("unsupported screen: {0}")]
    Unsupported(&'static str),
    #[error("X connection failed: {0}")]
    Connection(#[from] ConnectionError),
    #[error("X request failed: {0}")]
    Reply(#[from] ReplyError),
    #[error("X request failed: {0}")]
    ReplyOrId(#[from] ReplyOrIdError),
    #[error("shared memory: {0}")]
    Shm(rustix::io::Errno),
    #[error("H.264 encoder: {0}")]
    Encoder(String),
    #[error("colour conversion: {0}")]
    Convert(String),
    /// A key code the viewer sent that names no key this crate knows.
    #[error("unknown key code {0:?}")]
    UnknownKey(String),
    /// Clipboard text over the cap (`assist_proto::desktop::MAX_CLIPBOARD`).
    #[error("clipboard text of {len} bytes is over the limit of {max} bytes")]
    ClipboardTooLarge { len: usize, max: usize },
    /// What the clipboard's owner gave is not UTF-8 text, or it did not answer in time.
    #[error("the clipboard could not be read: {0}")]
    Clipboard(&'static str),
    /// The capture thread stopped (the display went away); its error was logged.
    #[error("the desktop capture stopped: {0}")]
    Stopped(String),
}
