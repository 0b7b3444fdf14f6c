//! The engineer's local terminal: raw mode that is always restored, and its size.

use std::io::IsTerminal;

/// Puts the terminal in raw mode until dropped, so keystrokes (Ctrl-C included) go to the
/// remote shell and the terminal is restored however the session ends.
#[derive(Debug)]
pub struct RawMode(());

impl RawMode {
    pub fn enable() -> std::io::Result<Self> {
        crossterm::terminal::enable_raw_mode()?;
        Ok(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// The terminal's size as (cols, rows), or 80×24 when unknown.
pub fn size() -> (u16, u16) {
    crossterm::terminal::size().ok().filter(|(c, r)| *c > 0 && *r > 0).unwrap_or((80, 24))
}

pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}
