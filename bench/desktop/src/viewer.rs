//! The engineer's side of the live figures: a real headless Chromium (the e2e tests'
//! driver, `assist_tests::browser`) signs in to the relay's console as `alice`, asks for
//! the agent's desktop (view only) from the form, as a person would, and keeps the page
//! open while the contents are drawn.
//!
//! Two hooks are put into the page before the desktop opens, without changing it:
//!
//! - `DesktopView.prototype.feed` (the page's one entry for the channel's messages) notes
//!   the arrival time and size of every WebSocket message, and the timestamp of each
//!   frame in it: bytes on the channel and frames delivered;
//! - `CanvasRenderingContext2D.prototype.drawImage`, on the desktop's canvas only, notes
//!   each decoded frame once it is drawn: the time, the frame's timestamp, and the
//!   brightness at the centre of each block of the on-screen clock ([`crate::stamp`]),
//!   read back from the canvas (`getImageData`). Decoding the clock is left to Rust.
//!
//! Times are `Date.now()`, the wall clock the stamp's client reads too (same machine).
//! It measures nothing itself: [`crate::live`] turns what it returns into figures.

use anyhow::{Context, Result, anyhow};
use assist_tests::browser::Browser;
use std::path::Path;

use crate::stamp;

const PASSWORD: &str = "bench-password-123";

/// Installs the hooks; resolves once they are in place. Arguments: the stamp's origin
/// (x, y), its bits and its block size.
const HOOKS: &str = r#"
const [sx, sy, bits, block, done] = arguments;
import('/desktop-view.js').then(({ DesktopView }) => {
  window.__deskbench = { arrivals: [], frames: [], drawn: [] };
  const feed = DesktopView.prototype.feed;
  DesktopView.prototype.feed = function (bytes) {
    const now = Date.now();
    const data = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    const rec = window.__deskbench;
    rec.arrivals.push([now, data.byteLength]);
    for (let off = 0; off + 8 <= data.length;) {
      const dv = new DataView(data.buffer, data.byteOffset + off);
      const len = dv.getUint32(4);
      if (data[off] === 2 && len >= 8) {
        rec.frames.push([now, Number(dv.getBigUint64(8)), data[off + 1] & 1]);
      }
      off += 8 + len;
    }
    return feed.call(this, bytes);
  };
  const draw = CanvasRenderingContext2D.prototype.drawImage;
  CanvasRenderingContext2D.prototype.drawImage = function (image, ...rest) {
    const out = draw.call(this, image, ...rest);
    if (this.canvas.classList.contains('desktop-screen')) {
      const now = Date.now();
      const w = bits * block;
      const d = this.getImageData(sx, sy, w, 2 * block).data;
      const levels = [];
      for (let row = 0; row < 2; row++) {
        for (let i = 0; i < bits; i++) {
          const o = ((row * block + block / 2) * w + i * block + block / 2) * 4;
          levels.push(Math.round((d[o] + d[o + 1] + d[o + 2]) / 3));
        }
      }
      window.__deskbench.drawn.push([now, image.timestamp ?? -1, levels]);
    }
    return out;
  };
  done(true);
}, (e) => done(String(e)));
"#;

/// Takes what the hooks noted so far, and starts afresh.
const TAKE: &str = r#"
const rec = window.__deskbench;
window.__deskbench = { arrivals: [], frames: [], drawn: [] };
return rec;
"#;

/// One WebSocket message: when it arrived (epoch ms) and its size.
pub struct Arrival {
    pub at_ms: f64,
    pub bytes: u64,
}

/// One frame message: when it arrived, its timestamp (µs, the agent's), keyframe.
pub struct FrameIn {
    pub at_ms: f64,
    pub timestamp: u64,
    pub key: bool,
}

/// One decoded frame drawn on the canvas: when, which frame, the clock's blocks.
pub struct Drawn {
    pub at_ms: f64,
    pub timestamp: Option<u64>,
    pub levels: Vec<u8>,
}

#[derive(Default)]
pub struct Noted {
    pub arrivals: Vec<Arrival>,
    pub frames: Vec<FrameIn>,
    pub drawn: Vec<Drawn>,
}

/// The page showing the desktop.
pub struct Viewer {
    browser: Browser,
}

impl Viewer {
    /// Signs in at `console` (`IP:PORT`), puts the hooks in, asks for `agent`'s desktop and
    /// waits until the page says it is connected (the agent's prompt is answered by
    /// the world's approver).
    pub fn open(ca_pem: &Path, console: &str, agent: &str, screen: (u16, u16)) -> Result<Self> {
        let port = console.rsplit(':').next().unwrap_or_default();
        let b = Browser::open(ca_pem).context("opening Chromium")?;
        b.goto(&format!("https://localhost:{port}"))?;
        b.fill("#user", "alice")?;
        b.fill("#password", PASSWORD)?;
        b.click("#signin-form button[type=submit]")?;
        b.wait_css("#home:not([hidden])")?;
        crate::wait("the agent in the form", || Ok(b.text("#sf-agent")?.contains(agent)))?;
        let (sx, sy) = stamp::origin(screen.0, screen.1);
        let args = vec![sx.into(), sy.into(), stamp::BITS.into(), stamp::BLOCK.into()];
        let hooked = b.rt.block_on(b.client.execute_async(HOOKS, args))?;
        anyhow::ensure!(hooked == serde_json::Value::Bool(true), "the page's hooks: {hooked}");
        b.fill("#sf-ticket", crate::world::TICKET)?;
        b.fill("#sf-reason", crate::world::REASON)?;
        b.click("#sf-desktop")?;
        b.wait_text("#dk-status", "Connected")?;
        Ok(Viewer { browser: b })
    }

    /// What the hooks noted since the last call.
    pub fn take(&self) -> Result<Noted> {
        let b = &self.browser;
        let v = b.rt.block_on(b.client.execute(TAKE, vec![]))?;
        let rows = |k: &str| v[k].as_array().cloned().unwrap_or_default();
        let num = |r: &serde_json::Value, i: usize| r[i].as_f64().unwrap_or(-1.0);
        let mut noted = Noted::default();
        for r in rows("arrivals") {
            noted.arrivals.push(Arrival { at_ms: num(&r, 0), bytes: num(&r, 1) as u64 });
        }
        for r in rows("frames") {
            noted.frames.push(FrameIn {
                at_ms: num(&r, 0),
                timestamp: num(&r, 1) as u64,
                key: num(&r, 2) == 1.0,
            });
        }
        for r in rows("drawn") {
            let ts = num(&r, 1);
            let levels = r[2].as_array().ok_or_else(|| anyhow!("no levels in {r}"))?;
            noted.drawn.push(Drawn {
                at_ms: num(&r, 0),
                timestamp: (ts >= 0.0).then_some(ts as u64),
                levels: levels.iter().map(|l| l.as_u64().unwrap_or(0).min(255) as u8).collect(),
            });
        }
        Ok(noted)
    }

    /// Waits until the page has drawn a frame whose clock reads at or after `since`
    /// (stamp milliseconds): the content being measured is flowing.
    pub fn wait_for_stamp(&self, since: u64) -> Result<()> {
        crate::wait("a frame showing the content's clock", || {
            let noted = self.take()?;
            Ok(noted
                .drawn
                .iter()
                .filter_map(|d| stamp::decode(&d.levels))
                .any(|v| stamp::elapsed(since, v) < 60_000))
        })
    }

    /// Leaves the desktop ("Disconnect": the page closes its socket, which ends the
    /// session) and closes the browser.
    pub fn leave(self) -> Result<()> {
        self.browser.click("#dk-leave")?;
        Ok(())
    }
}
