//! The clock on the screen, for glass-to-glass latency: a small window of its own, on top
//! of the content, showing the wall clock's milliseconds (modulo 2^24, about 4.7 hours)
//! as a row of black and white blocks, with the same bits inverted in a second row.
//!
//! - Blocks are 16×16 pixels on the 16-pixel grid of H.264 macroblocks, so each is one
//!   flat macroblock: black or white survives any quantiser, where digits would blur.
//! - The value is Gray-coded, so a frame later only a few blocks change (the stamp adds
//!   little to the bit rate of the content under it); the inverted row lets the reader
//!   throw away a picture where any block came out ambiguous, instead of misreading it.
//! - The page reads it back at each decoded frame ([`crate::viewer`]) against the same
//!   clock (`Date.now()`, same machine): [`decode`] here is the reference the page's
//!   script mirrors.
//!
//! It draws and nothing more: it does not pace itself (the caller draws it right after
//! each step of the content).

use anyhow::{Context, Result};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConfigureWindowAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, Gcontext, Rectangle, StackMode,
    Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

/// Bits shown: milliseconds modulo 2^24.
pub const BITS: u32 = 24;
/// Side of one block, in screen pixels.
pub const BLOCK: u16 = 16;
/// The value's range.
pub const MODULUS: u64 = 1 << BITS;

/// Where the stamp sits on a `width`×`height` screen: bottom right, clear of the agent's
/// notice bar (top centre) and of the typing content (top left), on the macroblock grid.
pub fn origin(width: u16, height: u16) -> (i16, i16) {
    let (w, h) = (BITS as u16 * BLOCK, 2 * BLOCK);
    let x = width.saturating_sub(w + BLOCK) & !(BLOCK - 1);
    let y = height.saturating_sub(h + BLOCK) & !(BLOCK - 1);
    (x as i16, y as i16)
}

/// Milliseconds of the wall clock, modulo [`MODULUS`].
pub fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since.as_millis() as u64 % MODULUS
}

/// The blocks for `value`: `true` is white; the first [`BITS`] are the Gray code, most
/// significant first, the next [`BITS`] the same inverted.
pub fn encode(value: u64) -> Vec<bool> {
    let gray = (value % MODULUS) ^ ((value % MODULUS) >> 1);
    let bits: Vec<bool> = (0..BITS).rev().map(|i| (gray >> i) & 1 == 1).collect();
    bits.iter().copied().chain(bits.iter().map(|b| !b)).collect()
}

/// The value shown by blocks read back as brightness (0–255), or `None` when a block is
/// ambiguous (a row and its inverse disagree).
pub fn decode(levels: &[u8]) -> Option<u64> {
    if levels.len() != 2 * BITS as usize {
        return None;
    }
    let (top, bottom) = levels.split_at(BITS as usize);
    let mut gray = 0u64;
    for (&a, &b) in top.iter().zip(bottom) {
        let (white, inverse_white) = (a >= 128, b >= 128);
        if white == inverse_white {
            return None;
        }
        gray = (gray << 1) | u64::from(white);
    }
    let mut value = gray;
    let mut shift = gray >> 1;
    while shift != 0 {
        value ^= shift;
        shift >>= 1;
    }
    Some(value)
}

/// Milliseconds from a stamp to `now_ms` (both modulo [`MODULUS`]).
pub fn elapsed(stamp: u64, now_ms: u64) -> u64 {
    (now_ms + MODULUS - stamp % MODULUS) % MODULUS
}

/// The stamp's window, above every window mapped before it.
pub struct Stamp {
    conn: RustConnection,
    window: Window,
    white: Gcontext,
    black: Gcontext,
}

impl Stamp {
    pub fn new(display: &str) -> Result<Self> {
        let (conn, n) = x11rb::connect(Some(display)).context("connect the stamp's client")?;
        let screen = &conn.setup().roots[n];
        let (root, white_px, black_px) = (screen.root, screen.white_pixel, screen.black_pixel);
        let (x, y) = origin(screen.width_in_pixels, screen.height_in_pixels);
        let window = conn.generate_id()?;
        let aux = CreateWindowAux::new().background_pixel(black_px).override_redirect(1);
        let (w, h) = (BITS as u16 * BLOCK, 2 * BLOCK);
        conn.create_window(0, window, root, x, y, w, h, 0, WindowClass::INPUT_OUTPUT, 0, &aux)?;
        conn.map_window(window)?;
        conn.configure_window(window, &ConfigureWindowAux::new().stack_mode(StackMode::ABOVE))?;
        let white = conn.generate_id()?;
        conn.create_gc(white, window, &CreateGCAux::new().foreground(white_px))?;
        let black = conn.generate_id()?;
        conn.create_gc(black, window, &CreateGCAux::new().foreground(black_px))?;
        conn.sync()?;
        Ok(Stamp { conn, window, white, black })
    }

    /// Shows `value` and returns once the server has drawn it.
    pub fn show(&self, value: u64) -> Result<()> {
        let (mut whites, mut blacks) = (Vec::new(), Vec::new());
        for (i, white) in encode(value).into_iter().enumerate() {
            let (col, row) = (i as u32 % BITS, i as u32 / BITS);
            let r = Rectangle {
                x: (col as u16 * BLOCK) as i16,
                y: (row as u16 * BLOCK) as i16,
                width: BLOCK,
                height: BLOCK,
            };
            if white { whites.push(r) } else { blacks.push(r) }
        }
        self.conn.poly_fill_rectangle(self.window, self.white, &whites)?;
        self.conn.poly_fill_rectangle(self.window, self.black, &blacks)?;
        self.conn.sync()?;
        Ok(())
    }
}

impl Drop for Stamp {
    fn drop(&mut self) {
        let _ = self.conn.destroy_window(self.window);
        let _ = self.conn.sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(blocks: &[bool]) -> Vec<u8> {
        blocks.iter().map(|&w| if w { 250 } else { 5 }).collect()
    }

    #[test]
    fn values_round_trip_and_an_ambiguous_block_is_refused() {
        for v in [0, 1, 2, 1000, 123_456, MODULUS - 1, MODULUS + 7] {
            assert_eq!(decode(&levels(&encode(v))), Some(v % MODULUS));
        }
        let mut l = levels(&encode(4242));
        l[3] = 128;
        l[3 + BITS as usize] = 130;
        assert_eq!(decode(&l), None);
        assert_eq!(decode(&l[1..]), None);
    }

    #[test]
    fn a_frame_later_only_a_few_blocks_change() {
        let changed = |a: u64, b: u64| encode(a).iter().zip(encode(b)).filter(|(x, y)| **x != *y).count() / 2;
        let worst = (0..100_000u64).map(|t| changed(t, t + 33)).max().unwrap();
        assert!(worst <= 8, "{worst}");
    }

    #[test]
    fn elapsed_wraps() {
        assert_eq!(elapsed(MODULUS - 10, 5), 15);
        assert_eq!(elapsed(100, 142), 42);
    }

    #[test]
    fn the_stamp_sits_on_the_macroblock_grid() {
        for (w, h) in [(1920, 1080), (640, 480), (1366, 768)] {
            let (x, y) = origin(w, h);
            assert_eq!((x % 16, y % 16), (0, 0));
            assert!(x as u16 + BITS as u16 * BLOCK <= w && y as u16 + 2 * BLOCK <= h);
        }
    }
}
