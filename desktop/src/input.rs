//! Input through XTest, on a connection of its own.
//!
//! - Keys: `KeyboardEvent.code` → keysym ([`crate::keymap`]) → the keycode that carries it
//!   in the server's current keyboard mapping.
//! - Text: each character's keysym, with Shift where the layout puts it there. A character
//!   the layout lacks is typed the way xdotool does it: a spare keycode (one with no
//!   symbols) is given that keysym, pressed and released. Spare keycodes are used in turn
//!   and restored to nothing by [`XTestInput::release_all`], so a client still reading an
//!   earlier key never sees a keycode change meaning under it.
//! - Mouse: absolute moves, buttons numbered as the browser's, the wheel as buttons 4–7.
//!
//! Every key and button pressed is remembered until released, so `release_all` (control
//! revoked, session over) leaves nothing held. Whether input is allowed at all is decided
//! by the caller.

use std::collections::{HashMap, HashSet};

use assist_proto::desktop::{InputEvent, MouseButton};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    BUTTON_PRESS_EVENT, BUTTON_RELEASE_EVENT, ConnectionExt as _, KEY_PRESS_EVENT, KEY_RELEASE_EVENT,
    Keycode, MOTION_NOTIFY_EVENT, Mapping, Window,
};
use x11rb::protocol::xtest::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;

use crate::error::DesktopError;
use crate::keymap::{self, sym};
use crate::source::InputSink;

/// The most spare keycodes used in turn for characters the layout lacks.
const SPARE_POOL: usize = 8;

/// The keyboard mapping as the server has it.
struct KeyMapping {
    min_keycode: Keycode,
    per_keycode: usize,
    keysyms: Vec<u32>,
}

impl KeyMapping {
    fn fetch(conn: &RustConnection) -> Result<Self, DesktopError> {
        let setup = conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let reply = conn.get_keyboard_mapping(min, max - min + 1)?.reply()?;
        Ok(KeyMapping {
            min_keycode: min,
            per_keycode: reply.keysyms_per_keycode as usize,
            keysyms: reply.keysyms,
        })
    }

    fn keycodes(&self) -> impl Iterator<Item = (Keycode, &[u32])> {
        self.keysyms
            .chunks_exact(self.per_keycode.max(1))
            .enumerate()
            .map(|(i, syms)| (self.min_keycode + i as u8, syms))
    }

    /// The keycode carrying `keysym`, and whether Shift is needed for it (only the first
    /// two columns count: others need modifiers that differ between layouts).
    fn find(&self, keysym: u32) -> Option<(Keycode, bool)> {
        let mut shifted = None;
        for (code, syms) in self.keycodes() {
            if syms.first() == Some(&keysym) {
                return Some((code, false));
            }
            if shifted.is_none() && syms.get(1) == Some(&keysym) {
                shifted = Some((code, true));
            }
        }
        shifted
    }

    /// Keycodes with no symbols at all, highest first (the low ones are real keys).
    fn spare(&self) -> Vec<Keycode> {
        let mut spare: Vec<Keycode> =
            self.keycodes().filter(|(_, syms)| syms.iter().all(|s| *s == 0)).map(|(c, _)| c).collect();
        spare.reverse();
        spare.truncate(SPARE_POOL);
        spare
    }
}

/// Injects input into an X display with XTest.
pub struct XTestInput {
    conn: RustConnection,
    root: Window,
    mapping: KeyMapping,
    spare: Vec<Keycode>,
    /// Spare keycodes currently given a keysym, and which.
    remapped: HashMap<Keycode, u32>,
    next_spare: usize,
    keys_down: HashSet<Keycode>,
    buttons_down: HashSet<u8>,
}

impl XTestInput {
    /// Opens `display` (or `$DISPLAY`) for input.
    pub fn open(display: Option<&str>) -> Result<Self, DesktopError> {
        let (conn, screen_num) = crate::x11::connect(display)?;
        if conn.extension_information(xtest::X11_EXTENSION_NAME)?.is_none() {
            return Err(DesktopError::MissingExtension(xtest::X11_EXTENSION_NAME));
        }
        conn.xtest_get_version(2, 2)?.reply()?;
        let root = conn.setup().roots[screen_num].root;
        let mapping = KeyMapping::fetch(&conn)?;
        let spare = mapping.spare();
        Ok(XTestInput {
            conn,
            root,
            mapping,
            spare,
            remapped: HashMap::new(),
            next_spare: 0,
            keys_down: HashSet::new(),
            buttons_down: HashSet::new(),
        })
    }

    fn fake(&self, kind: u8, detail: u8, x: i16, y: i16) -> Result<(), DesktopError> {
        self.conn.xtest_fake_input(kind, detail, x11rb::CURRENT_TIME, self.root, x, y, 0)?;
        Ok(())
    }

    fn key(&mut self, keycode: Keycode, down: bool) -> Result<(), DesktopError> {
        if down {
            self.keys_down.insert(keycode);
            self.fake(KEY_PRESS_EVENT, keycode, 0, 0)
        } else {
            self.keys_down.remove(&keycode);
            self.fake(KEY_RELEASE_EVENT, keycode, 0, 0)
        }
    }

    fn button(&mut self, button: u8, down: bool) -> Result<(), DesktopError> {
        if down {
            self.buttons_down.insert(button);
            self.fake(BUTTON_PRESS_EVENT, button, 0, 0)
        } else {
            self.buttons_down.remove(&button);
            self.fake(BUTTON_RELEASE_EVENT, button, 0, 0)
        }
    }

    /// Takes in keyboard-mapping changes made by others (a layout switch).
    fn refresh_mapping(&mut self) -> Result<(), DesktopError> {
        let mut changed = false;
        while let Some(event) = self.conn.poll_for_event()? {
            if let Event::MappingNotify(e) = event
                && e.request == Mapping::KEYBOARD
            {
                changed = true;
            }
        }
        if changed {
            self.mapping = KeyMapping::fetch(&self.conn)?;
        }
        Ok(())
    }

    /// The keycode to press for `keysym`, giving a spare keycode that keysym if the layout
    /// has none; and whether Shift is needed.
    fn keycode_for(&mut self, keysym: u32) -> Result<(Keycode, bool), DesktopError> {
        if let Some((code, _)) = self.remapped.iter().find(|(_, s)| **s == keysym) {
            return Ok((*code, false));
        }
        if let Some(found) = self.mapping.find(keysym) {
            return Ok(found);
        }
        if self.spare.is_empty() {
            return Err(DesktopError::Unsupported("no spare keycode to type a character the layout lacks"));
        }
        let code = self.spare[self.next_spare % self.spare.len()];
        self.next_spare += 1;
        self.set_keysym(code, keysym)?;
        self.remapped.insert(code, keysym);
        Ok((code, false))
    }

    fn set_keysym(&self, code: Keycode, keysym: u32) -> Result<(), DesktopError> {
        let per = self.mapping.per_keycode.max(1);
        let mut syms = vec![0u32; per];
        // Same symbol with and without Shift, so a held Shift changes nothing.
        syms[0] = keysym;
        if per > 1 {
            syms[1] = keysym;
        }
        self.conn.change_keyboard_mapping(1, code, per as u8, &syms)?.check()?;
        Ok(())
    }

    fn type_char(&mut self, c: char) -> Result<(), DesktopError> {
        let (code, shift) = self.keycode_for(keymap::keysym_for_char(c))?;
        let shift_code = if shift { self.mapping.find(sym::SHIFT_L).map(|(k, _)| k) } else { None };
        if let Some(s) = shift_code {
            self.fake(KEY_PRESS_EVENT, s, 0, 0)?;
        }
        self.fake(KEY_PRESS_EVENT, code, 0, 0)?;
        self.fake(KEY_RELEASE_EVENT, code, 0, 0)?;
        if let Some(s) = shift_code {
            self.fake(KEY_RELEASE_EVENT, s, 0, 0)?;
        }
        Ok(())
    }
}

/// X button numbers: 1 left, 2 middle, 3 right, 8 back, 9 forward.
fn x_button(b: MouseButton) -> u8 {
    match b {
        MouseButton::Left => 1,
        MouseButton::Middle => 2,
        MouseButton::Right => 3,
        MouseButton::Back => 8,
        MouseButton::Forward => 9,
        _ => 1,
    }
}

impl InputSink for XTestInput {
    fn inject(&mut self, event: &InputEvent) -> Result<(), DesktopError> {
        self.refresh_mapping()?;
        match event {
            InputEvent::Key { code, down } => {
                let keysym =
                    keymap::keysym_for_code(code).ok_or_else(|| DesktopError::UnknownKey(code.clone()))?;
                let keycode = match self.mapping.find(keysym) {
                    Some((k, _)) => k,
                    // Layouts with AltGr carry it as ISO_Level3_Shift on the right Alt key.
                    None if keysym == sym::ALT_R => match self.mapping.find(sym::ISO_LEVEL3_SHIFT) {
                        Some((k, _)) => k,
                        None => self.keycode_for(keysym)?.0,
                    },
                    None => self.keycode_for(keysym)?.0,
                };
                // A key already up is not released twice; one already down repeats.
                if *down || self.keys_down.contains(&keycode) {
                    self.key(keycode, *down)?;
                }
            }
            InputEvent::Text(text) => {
                for c in text.chars() {
                    self.type_char(c)?;
                }
            }
            InputEvent::MouseMove { x, y } => {
                let (x, y) = ((*x).min(i16::MAX as u16) as i16, (*y).min(i16::MAX as u16) as i16);
                self.fake(MOTION_NOTIFY_EVENT, 0, x, y)?;
            }
            InputEvent::MouseButton { button, down } => {
                let b = x_button(*button);
                if *down || self.buttons_down.contains(&b) {
                    self.button(b, *down)?;
                }
            }
            InputEvent::Wheel { dx, dy } => {
                for (steps, minus, plus) in [(*dy, 4u8, 5u8), (*dx, 6u8, 7u8)] {
                    let b = if steps < 0 { minus } else { plus };
                    for _ in 0..steps.unsigned_abs().min(64) {
                        self.fake(BUTTON_PRESS_EVENT, b, 0, 0)?;
                        self.fake(BUTTON_RELEASE_EVENT, b, 0, 0)?;
                    }
                }
            }
            _ => {}
        }
        self.conn.flush()?;
        Ok(())
    }

    fn release_all(&mut self) -> Result<(), DesktopError> {
        for code in std::mem::take(&mut self.keys_down) {
            self.fake(KEY_RELEASE_EVENT, code, 0, 0)?;
        }
        for b in std::mem::take(&mut self.buttons_down) {
            self.fake(BUTTON_RELEASE_EVENT, b, 0, 0)?;
        }
        for (code, _) in std::mem::take(&mut self.remapped) {
            self.set_keysym(code, 0)?;
        }
        // A round trip: when this returns, the server has released everything.
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }
}

impl Drop for XTestInput {
    fn drop(&mut self) {
        if let Err(e) = self.release_all() {
            tracing::warn!(error = %e, "releasing held keys and buttons failed");
        }
    }
}
