//! The agent's X11 desktop: [`assist_desktop::Desktop`] behind the agent library's
//! [`DesktopHost`] and [`DesktopScreen`] traits.
//!
//! The display is checked once at start (opened and closed again), so the agent's `Hello`
//! says truthfully whether it can serve a desktop. Each channel then opens its own
//! `Desktop`, and shows the customer an [`Indicator`] on that display saying who is
//! viewing or controlling it, removed when the channel closes. It decides nothing: the
//! agent library checks the grant before it opens a screen or injects input.

use assist_client::agent::desktop::{DesktopFailed, DesktopHost, DesktopScreen, Viewer};
use assist_desktop::indicator::notice;
use assist_desktop::{Desktop, DesktopConfig, GrabMethod, Indicator, X11Screen};
use assist_proto::desktop::InputEvent;
use std::time::Duration;

/// Desktops of one X display.
#[derive(Debug)]
pub struct X11Host {
    display: String,
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
        Ok(X11Host { display })
    }
}

impl DesktopHost for X11Host {
    fn display(&self) -> Option<String> {
        Some(self.display.clone())
    }

    fn open(&self, viewer: &Viewer) -> Result<Box<dyn DesktopScreen>, DesktopFailed> {
        // The customer sees who is looking before the first picture is taken.
        let bar = Indicator::show(&self.display, &notice(&viewer.engineer, viewer.control))
            .map_err(|e| DesktopFailed(format!("cannot show the customer who is looking: {e}")))?;
        let config = DesktopConfig { display: Some(self.display.clone()), ..DesktopConfig::default() };
        let desktop = Desktop::open(config).map_err(|e| DesktopFailed(e.to_string()))?;
        Ok(Box::new(X11Desktop { desktop, _bar: bar }))
    }
}

/// One channel's desktop, and the customer's notice that lasts as long as it.
struct X11Desktop {
    desktop: Desktop,
    _bar: Indicator,
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
