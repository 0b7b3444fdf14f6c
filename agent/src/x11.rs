//! The agent's X11 desktop: [`assist_desktop::Desktop`] and [`X11Clipboard`] behind the
//! agent library's [`DesktopHost`], [`DesktopScreen`] and [`SharedClipboard`] traits.
//!
//! The display is checked once at start (opened and closed again), so the agent's `Hello`
//! says truthfully whether it can serve a desktop. Each desktop channel then opens its own
//! `Desktop`, and each clipboard channel its own `X11Clipboard`; both first put their part
//! on the customer's notice bar on that display ([`crate::notice`]: who is viewing or
//! controlling the screen, who shares the clipboard), taken away when the channel closes.
//! It decides nothing: the agent library checks the grant before it opens a screen,
//! injects input, or reads or sets the clipboard.

use crate::notice::{Notices, Sharing, Shown};
use assist_client::agent::clipboard::SharedClipboard;
use assist_client::agent::desktop::{DesktopFailed, DesktopHost, DesktopScreen, Viewer};
use assist_desktop::{Desktop, DesktopConfig, GrabMethod, X11Clipboard, X11Screen};
use assist_proto::desktop::InputEvent;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Desktops of one X display.
#[derive(Debug)]
pub struct X11Host {
    display: String,
    notices: Arc<Notices>,
}

impl X11Host {
    /// Checks that `display` (or `$DISPLAY`) can be captured. The process needs that
    /// display's `XAUTHORITY` in its environment when the display asks for one.
    pub fn probe(display: Option<String>) -> Result<X11Host, String> {
        let display = match display.or_else(|| std::env::var("DISPLAY").ok()).filter(|d| !d.is_empty()) {
            Some(d) => d,
            None => return Err("no display (neither --display nor DISPLAY is set)".into()),
        };
        X11Screen::open_with(Some(&display), GrabMethod::SharedMemory)
            .map_err(|e| format!("cannot open display {display}: {e}"))?;
        Ok(X11Host { notices: Notices::new(display.clone()), display })
    }
}

impl DesktopHost for X11Host {
    fn display(&self) -> Option<String> {
        Some(self.display.clone())
    }

    fn open(&self, viewer: &Viewer) -> Result<Box<dyn DesktopScreen>, DesktopFailed> {
        // The customer sees who is looking before the first picture is taken.
        let sharing = Sharing::Screen { engineer: viewer.engineer.clone(), control: viewer.control };
        let shown = self
            .notices
            .show(sharing)
            .map_err(|e| DesktopFailed(format!("cannot show the customer who is looking: {e}")))?;
        let config = DesktopConfig { display: Some(self.display.clone()), ..DesktopConfig::default() };
        let desktop = Desktop::open(config).map_err(|e| DesktopFailed(e.to_string()))?;
        Ok(Box::new(X11Desktop { desktop, _shown: shown }))
    }

    fn open_clipboard(&self, engineer: &str) -> Result<Box<dyn SharedClipboard>, DesktopFailed> {
        // The customer sees that the clipboard is shared before it is first read.
        let shown = self.notices.show(Sharing::Clipboard { engineer: engineer.to_owned() }).map_err(|e| {
            DesktopFailed(format!("cannot show the customer that the clipboard is shared: {e}"))
        })?;
        let clipboard = X11Clipboard::open(&self.display).map_err(|e| DesktopFailed(e.to_string()))?;
        Ok(Box::new(X11Shared { clipboard: Mutex::new(clipboard), _shown: shown }))
    }
}

/// One channel's desktop, and its part of the customer's notice, which lasts as long.
struct X11Desktop {
    desktop: Desktop,
    _shown: Shown,
}

/// One channel's clipboard, and its part of the customer's notice, which lasts as long.
struct X11Shared {
    /// One call at a time: a read and a set both wait for events on the clipboard's reading
    /// connection (an answer, a timestamp), and each drops what it was not waiting for.
    clipboard: Mutex<X11Clipboard>,
    _shown: Shown,
}

impl X11Shared {
    fn clipboard(&self) -> std::sync::MutexGuard<'_, X11Clipboard> {
        self.clipboard.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SharedClipboard for X11Shared {
    fn get(&self) -> Result<Option<String>, DesktopFailed> {
        self.clipboard().get().map_err(|e| DesktopFailed(e.to_string()))
    }

    fn set(&self, text: &str) -> Result<(), DesktopFailed> {
        self.clipboard().set(text).map_err(|e| DesktopFailed(e.to_string()))
    }
}

impl DesktopScreen for X11Desktop {
    fn next(&self, timeout: Duration) -> Result<Option<Vec<u8>>, DesktopFailed> {
        let Some(batch) = self.desktop.next(timeout).map_err(|e| DesktopFailed(e.to_string()))? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(batch.iter().map(|m| m.encoded_len()).sum());
        for message in &batch {
            message.encode_into(&mut out).map_err(|e| DesktopFailed(e.to_string()))?;
        }
        Ok(Some(out))
    }

    fn request_keyframe(&self) {
        self.desktop.request_keyframe();
    }

    fn inject(&self, event: &InputEvent) -> Result<(), DesktopFailed> {
        self.desktop.inject(event).map_err(|e| DesktopFailed(e.to_string()))
    }

    fn release_all(&self) -> Result<(), DesktopFailed> {
        self.desktop.release_all().map_err(|e| DesktopFailed(e.to_string()))
    }
}
