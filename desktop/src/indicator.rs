//! The customer's indicator: while an engineer views or controls the desktop, a small bar
//! at the top centre of the customer's screen says who, and how to stop it.
//!
//! [`Indicator::show`] opens its own connection to the display and maps an
//! override-redirect window (no window manager moves, hides or decorates it) in amber with
//! black text; [`Indicator::set_text`] changes what it says (for example from viewing to
//! controlling); dropping it removes it. A thread on the same connection redraws it when
//! uncovered and raises it again whenever another window is mapped or restacked, so it
//! stays on top of ordinary windows. Each line of the text (at most [`MAX_LINES`]) goes
//! through [`assist_proto::text::inert`] (control and bidi characters escaped visibly,
//! length bounded), and is drawn in the largest core X font that fits the screen, in
//! Latin-1 (other characters as `?`); the text is also the window's `_NET_WM_NAME`, so
//! screen readers and tests can read it.
//!
//! The bar is part of what the engineer's capture sees: X11 offers no cheap way to leave
//! one window out of a root grab, and the engineer seeing the same notice as the customer
//! is harmless. It decides nothing: whoever starts a view shows it, and drops it when the
//! view ends.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ChangeGCAux, ClientMessageEvent, ConfigureWindowAux, ConnectionExt as _, CreateGCAux,
    CreateWindowAux, EventMask, Font, Gcontext, PropMode, Rectangle, StackMode, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

use crate::DesktopError;

/// The most lines shown.
pub const MAX_LINES: usize = 3;
/// The most characters shown per line (after escaping).
pub const MAX_CHARS: usize = 160;
/// Space around the text, in pixels.
const PAD: u16 = 8;
/// Fonts tried in order, the first whose text fits the screen used (all in Debian's
/// `xfonts-base`; `fixed` is on every server).
const FONTS: [&str; 3] = ["10x20", "7x13", "fixed"];
/// Amber bar, black text, a dark border: readable on light and dark desktops.
const BACKGROUND: (u16, u16, u16) = (0xffff, 0xc100, 0x0700);
const FOREGROUND: (u16, u16, u16) = (0, 0, 0);
const BORDER: (u16, u16, u16) = (0x3000, 0x3000, 0x3000);

/// What the bar says while `who` (an engineer's name, with their organisation when known:
/// `alice (vendor)`) is viewing (or controlling) the screen.
pub fn notice(who: &str, controlling: bool) -> String {
    let doing = if controlling { "controlling" } else { "viewing" };
    format!("{who} is {doing} your screen.\n{TO_STOP}")
}

/// The bar's last line: how the customer stops what it announces.
pub const TO_STOP: &str =
    "To stop it: press k in the assist agent's window, or revoke it in the assist console.";

/// The bar on the screen; removed when dropped.
pub struct Indicator {
    conn: Arc<RustConnection>,
    window: Window,
    atoms: Atoms,
    state: Arc<Mutex<Drawn>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Indicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indicator").field("window", &self.window).finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
struct Atoms {
    net_wm_name: Atom,
    utf8_string: Atom,
    stop: Atom,
}

/// What is drawn, shared with the thread that redraws.
struct Drawn {
    /// Latin-1 bytes of each shown line.
    lines: Vec<Vec<u8>>,
    gc: Gcontext,
    /// Fills with the bar's background.
    fill: Gcontext,
    depth: u8,
    fonts: Vec<(Font, u16, i16, i16)>,
    /// The font in use: index into `fonts`.
    font: usize,
    screen_width: u16,
    width: u16,
    height: u16,
}

impl Indicator {
    /// Opens `display` (for example `:0`) and shows `text` (one line per `\n`, at most
    /// [`MAX_LINES`]) at the top centre of its first screen, on top. Returns once the bar
    /// is mapped.
    pub fn show(display: &str, text: &str) -> Result<Indicator, DesktopError> {
        if display.is_empty() || display.contains('\0') {
            return Err(DesktopError::BadDisplay(display.to_owned()));
        }
        let (conn, screen_num) = x11rb::connect(Some(display))
            .map_err(|source| DesktopError::Connect { display: display.to_owned(), source })?;
        let screen = conn.setup().roots[screen_num].clone();
        let alloc = |(r, g, b)| -> Result<u32, DesktopError> {
            Ok(conn.alloc_color(screen.default_colormap, r, g, b)?.reply()?.pixel)
        };
        let (background, foreground, border) = (alloc(BACKGROUND)?, alloc(FOREGROUND)?, alloc(BORDER)?);
        let atoms = Atoms {
            net_wm_name: conn.intern_atom(false, b"_NET_WM_NAME")?.reply()?.atom,
            utf8_string: conn.intern_atom(false, b"UTF8_STRING")?.reply()?.atom,
            stop: conn.intern_atom(false, b"_ASSIST_INDICATOR_STOP")?.reply()?.atom,
        };
        let mut fonts = Vec::new();
        for name in FONTS {
            let font = conn.generate_id()?;
            if conn.open_font(font, name.as_bytes())?.check().is_err() {
                continue;
            }
            let info = conn.query_font(font)?.reply()?;
            let char_width = info.max_bounds.character_width.max(1) as u16;
            fonts.push((font, char_width, info.font_ascent, info.font_descent));
        }
        if fonts.is_empty() {
            return Err(DesktopError::Unsupported("the X server has none of the fonts the indicator uses"));
        }
        let window = conn.generate_id()?;
        let aux = CreateWindowAux::new()
            .background_pixel(background)
            .border_pixel(border)
            .override_redirect(1)
            .event_mask(EventMask::EXPOSURE);
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            screen.root,
            0,
            0,
            1,
            1,
            2,
            WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            &aux,
        )?;
        conn.change_property8(
            PropMode::REPLACE,
            window,
            AtomEnum::WM_CLASS,
            AtomEnum::STRING,
            b"assist-indicator\0assist\0",
        )?;
        let gc = conn.generate_id()?;
        conn.create_gc(gc, window, &CreateGCAux::new().foreground(foreground).background(background))?;
        let fill = conn.generate_id()?;
        conn.create_gc(fill, window, &CreateGCAux::new().foreground(background))?;
        // Other windows' maps and restacks, to come back on top.
        conn.change_window_attributes(
            screen.root,
            &x11rb::protocol::xproto::ChangeWindowAttributesAux::new()
                .event_mask(EventMask::SUBSTRUCTURE_NOTIFY),
        )?;
        let state = Drawn {
            lines: Vec::new(),
            gc,
            fill,
            depth: screen.root_depth,
            fonts,
            font: 0,
            screen_width: screen.width_in_pixels,
            width: 1,
            height: 1,
        };
        let conn = Arc::new(conn);
        let state = Arc::new(Mutex::new(state));
        let mut me = Indicator { conn: conn.clone(), window, atoms, state: state.clone(), thread: None };
        me.apply(text)?;
        conn.map_window(window)?;
        // Drawn now, in request order after the map, so the bar says its text as soon as
        // `show` returns (the thread redraws on later exposures).
        draw(&conn, window, &state.lock().unwrap_or_else(|p| p.into_inner()))?;
        conn.sync()?;
        let thread = std::thread::Builder::new()
            .name("assist-indicator".into())
            .spawn(move || watch(&conn, window, atoms.stop, &state))
            .map_err(|e| DesktopError::Stopped(e.to_string()))?;
        me.thread = Some(thread);
        Ok(me)
    }

    /// The bar's window (for tests and for leaving it out of other tools).
    pub fn window(&self) -> Window {
        self.window
    }

    /// Changes what the bar says; returns once the server has it.
    pub fn set_text(&self, text: &str) -> Result<(), DesktopError> {
        self.apply(text)?;
        self.conn.sync()?;
        Ok(())
    }

    fn apply(&self, text: &str) -> Result<(), DesktopError> {
        let shown: Vec<String> =
            text.lines().take(MAX_LINES).map(|l| assist_proto::text::inert(l, MAX_CHARS)).collect();
        let conn = &*self.conn;
        let mut d = self.state.lock().unwrap_or_else(|p| p.into_inner());
        d.lines = shown
            .iter()
            .map(|l| l.chars().map(|c| if (' '..='\u{ff}').contains(&c) { c as u8 } else { b'?' }).collect())
            .collect();
        let longest = d.lines.iter().map(Vec::len).max().unwrap_or(0) as u32;
        // The largest font the text fits the screen in.
        let fits = |&(_, w, _, _): &(Font, u16, i16, i16)| {
            longest * w as u32 + 2 * PAD as u32 + 4 <= d.screen_width as u32
        };
        d.font = d.fonts.iter().position(fits).unwrap_or(d.fonts.len() - 1);
        let (font, char_width, ascent, descent) = d.fonts[d.font];
        let text_width = (longest * char_width as u32).min(u16::MAX as u32 / 2) as u16;
        d.width = (text_width + 2 * PAD).min(d.screen_width.saturating_sub(4)).max(1);
        let line_height = (ascent + descent).max(1) as u16;
        d.height = line_height * d.lines.len().max(1) as u16 + 2 * PAD;
        conn.change_gc(d.gc, &ChangeGCAux::new().font(font))?;
        let x = (d.screen_width.saturating_sub(d.width + 4) / 2) as i32;
        conn.configure_window(
            self.window,
            &ConfigureWindowAux::new()
                .x(x)
                .y(0)
                .width(d.width as u32)
                .height(d.height as u32)
                .stack_mode(StackMode::ABOVE),
        )?;
        let name = shown.join("\n");
        conn.change_property8(
            PropMode::REPLACE,
            self.window,
            self.atoms.net_wm_name,
            self.atoms.utf8_string,
            name.as_bytes(),
        )?;
        conn.change_property8(
            PropMode::REPLACE,
            self.window,
            AtomEnum::WM_NAME,
            AtomEnum::STRING,
            &d.lines.join(&b'\n'),
        )?;
        draw(conn, self.window, &d)?;
        Ok(())
    }
}

/// Draws the bar off screen, then copies it onto the window in one request, so that no
/// client ever sees it half drawn.
fn draw(conn: &RustConnection, window: Window, d: &Drawn) -> Result<(), DesktopError> {
    let (_, _, ascent, descent) = d.fonts[d.font];
    let pixmap = conn.generate_id()?;
    conn.create_pixmap(d.depth, pixmap, window, d.width, d.height)?;
    let all = Rectangle { x: 0, y: 0, width: d.width, height: d.height };
    conn.poly_fill_rectangle(pixmap, d.fill, &[all])?;
    for (i, line) in d.lines.iter().enumerate() {
        // ImageText8 takes at most 255 bytes; MAX_CHARS keeps a line below that.
        let line = &line[..line.len().min(255)];
        let y = PAD as i16 + ascent + i as i16 * (ascent + descent);
        conn.image_text8(pixmap, d.gc, PAD as i16, y, line)?;
    }
    conn.copy_area(pixmap, window, d.gc, 0, 0, 0, 0, d.width, d.height)?;
    conn.free_pixmap(pixmap)?;
    Ok(())
}

/// The indicator's thread: redraws on Expose, raises the bar when another window is mapped
/// or restacked, and ends on the stop message (or when the connection fails).
fn watch(conn: &RustConnection, window: Window, stop: Atom, state: &Mutex<Drawn>) {
    loop {
        let event = match conn.wait_for_event() {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "indicator: the display connection ended");
                return;
            }
        };
        let result = match event {
            Event::ClientMessage(m) if m.window == window && m.type_ == stop => return,
            Event::Expose(e) if e.window == window && e.count == 0 => {
                draw(conn, window, &state.lock().unwrap_or_else(|p| p.into_inner()))
            }
            Event::MapNotify(e) if e.window != window => raise(conn, window),
            Event::ConfigureNotify(e) if e.window != window && e.event != window => raise(conn, window),
            _ => Ok(()),
        };
        if let Err(e) = result.and_then(|_| conn.flush().map_err(DesktopError::from)) {
            tracing::debug!(error = %e, "indicator: drawing failed");
            return;
        }
    }
}

fn raise(conn: &RustConnection, window: Window) -> Result<(), DesktopError> {
    conn.configure_window(window, &ConfigureWindowAux::new().stack_mode(StackMode::ABOVE))?;
    Ok(())
}

impl Drop for Indicator {
    fn drop(&mut self) {
        // An event sent with no mask goes to the window's creator: our own thread.
        let stop = ClientMessageEvent::new(32, self.window, self.atoms.stop, [0u32; 5]);
        let _ = self.conn.send_event(false, self.window, EventMask::NO_EVENT, stop);
        let _ = self.conn.flush();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = self.conn.destroy_window(self.window);
        let _ = self.conn.sync();
    }
}
