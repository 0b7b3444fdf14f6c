//! Xvfb for the tests, and a small X client that draws rectangles and records the input
//! it receives.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateWindowAux, EventMask, InputFocus, Keycode, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// Width and height of the test screen.
pub const SCREEN: (u16, u16) = (640, 480);

/// How long a test waits for an event that must come.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Xvfb {
    pub display: String,
    _child: Child,
    // Closing this (when the test binary exits) makes the wrapper shell stop Xvfb.
    _stdin: ChildStdin,
    _stdout: BufReader<ChildStdout>,
}

static XVFB: OnceLock<Mutex<Xvfb>> = OnceLock::new();

fn start() -> Result<Xvfb> {
    // Xvfb picks a free display and writes its number on fd 1 once it accepts clients.
    let geometry = format!("{}x{}x24", SCREEN.0, SCREEN.1);
    let script = format!(
        "Xvfb -displayfd 1 -screen 0 {geometry} -nolisten tcp -noreset & x=$!; read _; kill $x; wait $x"
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start Xvfb (install the Debian package xvfb)")?;
    let stdin = child.stdin.take().expect("piped");
    let mut line = String::new();
    // Kept open while the server runs: it must never write into a closed pipe.
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    stdout.read_line(&mut line)?;
    let n: u32 = line.trim().parse().with_context(|| format!("Xvfb did not start (printed {line:?})"))?;
    Ok(Xvfb { display: format!(":{n}"), _child: child, _stdin: stdin, _stdout: stdout })
}

/// The shared Xvfb, held for the whole of one test.
pub fn xvfb() -> MutexGuard<'static, Xvfb> {
    let lock = XVFB.get_or_init(|| Mutex::new(start().expect("Xvfb")));
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

/// A test X client: its own connection, its windows, the events they received.
pub struct Client {
    pub conn: RustConnection,
    pub root: Window,
    windows: Vec<Window>,
}

impl Client {
    pub fn connect(display: &str) -> Result<Self> {
        let (conn, n) = x11rb::connect(Some(display))?;
        let root = conn.setup().roots[n].root;
        Ok(Client { conn, root, windows: Vec::new() })
    }

    /// Maps a borderless window filled with `rgb` at (`x`, `y`), listening to keys and
    /// buttons, and waits until the server has drawn it.
    pub fn rectangle(&mut self, x: i16, y: i16, w: u16, h: u16, rgb: u32) -> Result<Window> {
        let id = self.conn.generate_id()?;
        let aux = CreateWindowAux::new().background_pixel(rgb).override_redirect(1).event_mask(
            EventMask::EXPOSURE
                | EventMask::KEY_PRESS
                | EventMask::KEY_RELEASE
                | EventMask::BUTTON_PRESS
                | EventMask::BUTTON_RELEASE
                | EventMask::STRUCTURE_NOTIFY,
        );
        self.conn.create_window(0, id, self.root, x, y, w, h, 0, WindowClass::INPUT_OUTPUT, 0, &aux)?;
        self.conn.map_window(id)?;
        self.wait_for("the window's Expose", |e| matches!(e, Event::Expose(ev) if ev.window == id))?;
        self.conn.sync()?;
        self.windows.push(id);
        Ok(id)
    }

    pub fn focus(&self, window: Window) -> Result<()> {
        self.conn.set_input_focus(InputFocus::POINTER_ROOT, window, x11rb::CURRENT_TIME)?;
        self.conn.sync()?;
        Ok(())
    }

    /// Waits for an event matching `want` (others are dropped), failing after [`WAIT`].
    pub fn wait_for(&self, what: &str, mut want: impl FnMut(&Event) -> bool) -> Result<Event> {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Some(e) = self.conn.poll_for_event()? {
                if want(&e) {
                    return Ok(e);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out waiting for {what}");
            }
            self.conn.flush()?;
            let mut fds = [PollFd::new(self.conn.stream(), PollFlags::IN)];
            let _ = poll(&mut fds, Some(&Timespec::try_from(left)?));
        }
    }

    /// The keysym a key event's keycode means now, with or without Shift.
    pub fn keysym(&self, keycode: Keycode, shift: bool) -> Result<u32> {
        let reply = self.conn.get_keyboard_mapping(keycode, 1)?.reply()?;
        let syms = reply.keysyms;
        let s = if shift && syms.get(1).is_some_and(|s| *s != 0) { syms[1] } else { syms[0] };
        Ok(s)
    }

    /// Changes the screen's size with RANDR. Xvfb's screen cannot grow past its start size
    /// and shrinks only with its one CRTC off, so that is what this does (as xrandr would);
    /// back at [`SCREEN`] the CRTC shows its full-size mode again.
    pub fn resize_screen(&self, (w, h): (u16, u16)) -> Result<()> {
        use x11rb::protocol::randr::{ConnectionExt as _, Rotation};
        let conn = &self.conn;
        conn.randr_query_version(1, 2)?.reply()?;
        let resources = conn.randr_get_screen_resources(self.root)?.reply()?;
        let crtc = resources.crtcs[0];
        let stamp = resources.config_timestamp;
        conn.randr_set_crtc_config(crtc, x11rb::CURRENT_TIME, stamp, 0, 0, 0, Rotation::ROTATE0, &[])?
            .reply()?;
        conn.randr_set_screen_size(self.root, w, h, w as u32 / 4, h as u32 / 4)?.check()?;
        if (w, h) == SCREEN {
            let mode = resources
                .modes
                .iter()
                .find(|m| (m.width, m.height) == SCREEN)
                .context("no full-size mode")?;
            conn.randr_set_crtc_config(
                crtc,
                x11rb::CURRENT_TIME,
                stamp,
                0,
                0,
                mode.id,
                Rotation::ROTATE0,
                &resources.outputs,
            )?
            .reply()?;
        }
        Ok(())
    }

    /// Keycodes the server holds down now.
    pub fn keys_down(&self) -> Result<Vec<u8>> {
        let map = self.conn.query_keymap()?.reply()?.keys;
        Ok((0..=255u8).filter(|k| map[*k as usize / 8] & (1 << (k % 8)) != 0).collect())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        for w in self.windows.drain(..) {
            let _ = self.conn.destroy_window(w);
        }
        let _ = self.conn.sync();
    }
}
