//! Screen content for the desktop figures, drawn by an ordinary X client into a window
//! covering the screen, one step per frame:
//!
//! - typing: one character more of text in the server's `fixed` font (a small change);
//! - scrolling: the page moves up one line (CopyArea) and a new line appears at the bottom
//!   (the whole picture moves);
//! - full: a moving colour gradient over the whole screen (every pixel changes).
//!
//! Each step returns once the server has drawn it (a round trip). Deterministic: the same
//! step count draws the same pictures.

use anyhow::{Context, Result};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, Gcontext, ImageFormat, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// Character cell of the `fixed` font (6×13).
const CHAR_W: i16 = 6;
const LINE_H: i16 = 13;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    Typing,
    Scrolling,
    Full,
}

impl Content {
    pub const ALL: [Content; 3] = [Content::Typing, Content::Scrolling, Content::Full];

    pub fn name(self) -> &'static str {
        match self {
            Content::Typing => "typing",
            Content::Scrolling => "scrolling",
            Content::Full => "full",
        }
    }
}

const WORDS: [&str; 16] = [
    "invoice", "ledger", "posting", "account", "balance", "period", "journal", "entry", "tax", "report",
    "vendor", "payment", "due", "total", "credit", "debit",
];

/// Line `n` of the page: deterministic words, as wide as the screen allows.
fn line(n: usize, cols: usize) -> Vec<u8> {
    let mut s = format!("{:>5}  ", n + 1);
    // A 64-bit LCG seeded by the line number: varied words, the same every run.
    let mut i = n as u64 ^ 0x9e37_79b9_7f4a_7c15;
    while s.len() < cols {
        i = i.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        s.push_str(WORDS[(i >> 33) as usize % WORDS.len()]);
        s.push(' ');
    }
    s.truncate(cols);
    s.into_bytes()
}

pub struct Painter {
    conn: RustConnection,
    window: Window,
    gc: Gcontext,
    width: u16,
    height: u16,
    content: Content,
    step: usize,
    rgbx: Vec<u8>,
}

impl Painter {
    pub fn new(display: &str, content: Content) -> Result<Self> {
        let (conn, n) = x11rb::connect(Some(display)).context("connect the content client")?;
        let screen = &conn.setup().roots[n];
        let (root, width, height) = (screen.root, screen.width_in_pixels, screen.height_in_pixels);
        let (white, black) = (screen.white_pixel, screen.black_pixel);
        let window = conn.generate_id()?;
        let aux = CreateWindowAux::new().background_pixel(white).override_redirect(1);
        conn.create_window(0, window, root, 0, 0, width, height, 0, WindowClass::INPUT_OUTPUT, 0, &aux)?;
        conn.map_window(window)?;
        let font = conn.generate_id()?;
        conn.open_font(font, b"fixed")?;
        let gc = conn.generate_id()?;
        conn.create_gc(gc, window, &CreateGCAux::new().foreground(black).background(white).font(font))?;
        let mut painter = Painter { conn, window, gc, width, height, content, step: 0, rgbx: Vec::new() };
        if content == Content::Scrolling {
            let rows = (height as i16 / LINE_H) as usize;
            for r in 0..rows {
                painter.text(0, (r as i16 + 1) * LINE_H - 3, &line(r, painter.cols()))?;
            }
            painter.step = rows;
        }
        painter.conn.sync()?;
        Ok(painter)
    }

    fn cols(&self) -> usize {
        (self.width as i16 / CHAR_W) as usize
    }

    fn text(&self, x: i16, y: i16, bytes: &[u8]) -> Result<()> {
        for (i, chunk) in bytes.chunks(250).enumerate() {
            self.conn.image_text8(self.window, self.gc, x + (i * 250) as i16 * CHAR_W, y, chunk)?;
        }
        Ok(())
    }

    /// Draws the next frame's change and waits until the server has drawn it.
    pub fn step(&mut self) -> Result<()> {
        match self.content {
            Content::Typing => {
                let cols = self.cols().min(120);
                let rows = (self.height as i16 / LINE_H) as usize - 1;
                let (row, col) = ((self.step / cols) % rows, self.step % cols);
                if row == 0 && col == 0 {
                    self.conn.clear_area(false, self.window, 0, 0, self.width, self.height)?;
                }
                let text = line(row, cols);
                self.text(10 + col as i16 * CHAR_W, 20 + row as i16 * LINE_H, &text[col..col + 1])?;
            }
            Content::Scrolling => {
                let (w, h) = (self.width, self.height);
                let moved = h - LINE_H as u16;
                self.conn.copy_area(self.window, self.window, self.gc, 0, LINE_H, 0, 0, w, moved)?;
                self.conn.clear_area(false, self.window, 0, moved as i16, w, LINE_H as u16)?;
                // The new line fills the cleared strip: baseline 3 pixels above the bottom.
                self.text(0, h as i16 - 3, &line(self.step, self.cols()))?;
            }
            Content::Full => self.gradient()?,
        }
        self.step += 1;
        self.conn.sync()?;
        Ok(())
    }

    /// A colour gradient that moves a few pixels every frame, sent in strips of rows.
    fn gradient(&mut self) -> Result<()> {
        let (w, h, t) = (self.width as usize, self.height as usize, self.step);
        self.rgbx.resize(w * h * 4, 0);
        for (y, row) in self.rgbx.chunks_exact_mut(w * 4).enumerate() {
            for (x, px) in row.chunks_exact_mut(4).enumerate() {
                px[0] = ((x + y) / 4 + 6 * t) as u8; // blue
                px[1] = (y / 2 + 2 * t) as u8; // green
                px[2] = (x / 4 + 4 * t) as u8; // red
            }
        }
        let depth = self.conn.setup().roots[0].root_depth;
        let strip = 64;
        for y in (0..h).step_by(strip) {
            let rows = strip.min(h - y);
            let data = &self.rgbx[y * w * 4..(y + rows) * w * 4];
            self.conn.put_image(
                ImageFormat::Z_PIXMAP,
                self.window,
                self.gc,
                w as u16,
                rows as u16,
                0,
                y as i16,
                0,
                depth,
                data,
            )?;
        }
        Ok(())
    }
}

impl Drop for Painter {
    fn drop(&mut self) {
        let _ = self.conn.destroy_window(self.window);
        let _ = self.conn.sync();
    }
}
