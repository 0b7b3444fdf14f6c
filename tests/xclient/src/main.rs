//! `assist-test-xclient DISPLAY LEFT RIGHT`: tests only. Covers the screen of `DISPLAY`
//! with a window in colour `LEFT` (hex `RRGGBB`) whose right half is colour `RIGHT`, takes
//! the keyboard focus, prints `ready WIDTH HEIGHT`, then one line per input event it
//! receives:
//!
//! - `button N X Y` for a button press (screen coordinates), `release N X Y`;
//! - `key KEYSYM` for a key press (the keysym in hex, as the server maps the keycode with
//!   the Shift state of the event).
//!
//! Lines on stdin change the picture: `left RRGGBB` or `right RRGGBB` repaint that half,
//! answered `drawn` once the server has done it. It ends at the end of stdin.
//!
//! `assist-test-xclient --clipboard DISPLAY` is another mode: an application using the
//! clipboard ([`clipboard`]).

mod clipboard;

use std::io::{BufRead, Write};

use anyhow::{Context, Result};
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    ChangeWindowAttributesAux, ConnectionExt as _, CreateWindowAux, EventMask, InputFocus, KeyButMask,
    Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;

fn colour(hex: &str) -> Result<u32> {
    u32::from_str_radix(hex.trim(), 16).with_context(|| format!("bad colour {hex:?}"))
}

fn window(conn: &RustConnection, parent: Window, geometry: (i16, i16, u16, u16), rgb: u32) -> Result<Window> {
    let id = conn.generate_id()?;
    let aux = CreateWindowAux::new().background_pixel(rgb).override_redirect(1).event_mask(
        EventMask::EXPOSURE | EventMask::KEY_PRESS | EventMask::BUTTON_PRESS | EventMask::BUTTON_RELEASE,
    );
    let (x, y, w, h) = geometry;
    conn.create_window(0, id, parent, x, y, w, h, 0, WindowClass::INPUT_OUTPUT, 0, &aux)?;
    conn.map_window(id)?;
    Ok(id)
}

/// One line on stdout (line-buffered: the test reads it at once).
fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--clipboard" {
        return clipboard::run(&args[2]);
    }
    anyhow::ensure!(args.len() == 4, "usage: assist-test-xclient DISPLAY LEFT RIGHT");
    let (conn, n) = x11rb::connect(Some(&args[1]))?;
    let screen = &conn.setup().roots[n];
    let (root, width, height) = (screen.root, screen.width_in_pixels, screen.height_in_pixels);
    let whole = window(&conn, root, (0, 0, width, height), colour(&args[2])?)?;
    let right = window(&conn, whole, ((width / 2) as i16, 0, width - width / 2, height), colour(&args[3])?)?;
    conn.set_input_focus(InputFocus::POINTER_ROOT, whole, x11rb::CURRENT_TIME)?;
    conn.sync()?;
    say(format!("ready {width} {height}"));

    let conn = std::sync::Arc::new(conn);
    let painter = {
        let conn = conn.clone();
        std::thread::spawn(move || -> Result<()> {
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                let Some((half, rgb)) = line.split_once(' ') else { continue };
                let target = if half == "left" { whole } else { right };
                let aux = ChangeWindowAttributesAux::new().background_pixel(colour(rgb)?);
                conn.change_window_attributes(target, &aux)?;
                conn.clear_area(false, target, 0, 0, 0, 0)?;
                conn.sync()?;
                say("drawn".into());
            }
            Ok(())
        })
    };
    loop {
        if painter.is_finished() {
            return painter.join().map_err(|_| anyhow::anyhow!("painter panicked"))?;
        }
        let event = match conn.poll_for_event()? {
            Some(e) => e,
            None => {
                let mut fds = [rustix::event::PollFd::new(conn.stream(), rustix::event::PollFlags::IN)];
                let tick = rustix::event::Timespec { tv_sec: 0, tv_nsec: 100_000_000 };
                let _ = rustix::event::poll(&mut fds, Some(&tick));
                continue;
            }
        };
        match event {
            Event::ButtonPress(e) => say(format!("button {} {} {}", e.detail, e.root_x, e.root_y)),
            Event::ButtonRelease(e) => say(format!("release {} {} {}", e.detail, e.root_x, e.root_y)),
            Event::KeyPress(e) => {
                let map = conn.get_keyboard_mapping(e.detail, 1)?.reply()?;
                let shift = e.state.contains(KeyButMask::SHIFT);
                let sym = match (shift, map.keysyms.get(1)) {
                    (true, Some(s)) if *s != 0 => *s,
                    _ => map.keysyms.first().copied().unwrap_or(0),
                };
                say(format!("key {sym:x}"));
            }
            _ => {}
        }
    }
}
