//! `assist-agent run --show-sessions`: the customer sitting at the machine sees, on the
//! agent's own terminal, what each session's shell shows (and so what is typed, as the
//! shell echoes it), line by line as it happens.
//!
//! What is shown is text, never the terminal's own control: the shell's output is the
//! engineer's and the remote programs' to shape, and drawn raw it could move the cursor,
//! clear the screen or retitle the window, and so draw over or imitate the agent's consent
//! prompt (see `docs/security.md`). So each line is cleaned here: escape sequences (CSI,
//! OSC, string and charset sequences) are dropped, a backspace erases, carriage returns
//! and bells are dropped, and whatever else is left goes through `assist_proto::text`
//! (every control or invisible character escaped visibly, the line bounded). Each line is
//! labelled with its session and engineer.
//!
//! While the consent prompt asks a question, lines are held (at most [`HELD_LINES`],
//! the rest counted) and shown after the answer, so nothing is printed between the
//! question and the customer's answer.
//!
//! It does not show file transfers' contents, forwarded connections or scripts' output.

use assist_proto::ids::SessionId;
use assist_proto::text;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Lines held while a question is open; more are counted, not kept.
pub const HELD_LINES: usize = 200;
/// Bytes of one line kept before it is shown anyway (a program that never ends its line).
const LINE_BYTES: usize = 4096;

/// The agent terminal's view of its live sessions.
#[derive(Debug, Default)]
pub struct Shown {
    asking: AtomicBool,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    lines: VecDeque<String>,
    dropped: usize,
}

impl Shown {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Whether the consent prompt is asking a question now. When it stops, the lines
    /// held meanwhile are shown.
    pub fn set_asking(&self, asking: bool) {
        let was = self.asking.swap(asking, Ordering::SeqCst);
        if was && !asking {
            let mut held = self.held.lock().expect("held lock");
            let mut out = std::io::stdout().lock();
            for line in held.lines.drain(..) {
                let _ = writeln!(out, "{line}");
            }
            if held.dropped > 0 {
                let _ = writeln!(out, "  … {} more lines of the sessions were not shown", held.dropped);
                held.dropped = 0;
            }
            let _ = out.flush();
        }
    }

    fn emit(&self, line: String) {
        let mut held = self.held.lock().expect("held lock");
        if self.asking.load(Ordering::SeqCst) {
            if held.lines.len() < HELD_LINES {
                held.lines.push_back(line);
            } else {
                held.dropped += 1;
            }
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// A shell channel of `session`, opened for `engineer`, to be shown.
    pub fn channel(self: &Arc<Self>, session: &SessionId, engineer: &str) -> ShownChannel {
        let label = format!("  │ {} {} │ ", text::line(session.as_str()), text::inert(engineer, 64));
        self.emit(format!(
            "assist: showing the terminal of session {} ({}) here as it happens",
            text::line(session.as_str()),
            text::inert(engineer, 64)
        ));
        ShownChannel { shown: self.clone(), label, line: Vec::new(), esc: Esc::None }
    }
}

/// Where an escape sequence being skipped stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    /// After ESC.
    Start,
    /// In `ESC [ … final`.
    Csi,
    /// In a string (`ESC ]`, `ESC P`, `ESC _`, `ESC ^`), until BEL or `ESC \`.
    Str,
    /// ESC inside a string: `\` ends it.
    StrEnd,
    /// `ESC (` and friends: one more byte.
    Charset,
}

/// One shell channel's output on its way to the agent's terminal.
#[derive(Debug)]
pub struct ShownChannel {
    shown: Arc<Shown>,
    label: String,
    line: Vec<u8>,
    esc: Esc,
}

impl ShownChannel {
    /// Takes the next bytes of the shell's output.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.esc = match (self.esc, b) {
                (Esc::None, 0x1b) => Esc::Start,
                (Esc::None, b'\n') => {
                    self.flush();
                    Esc::None
                }
                (Esc::None, b'\r' | 0x07) => Esc::None,
                (Esc::None, 0x08 | 0x7f) => {
                    self.erase();
                    Esc::None
                }
                (Esc::None, b) => {
                    self.line.push(b);
                    if self.line.len() >= LINE_BYTES {
                        self.flush();
                    }
                    Esc::None
                }
                (Esc::Start, b'[') => Esc::Csi,
                (Esc::Start, b']' | b'P' | b'_' | b'^') => Esc::Str,
                (Esc::Start, b'(' | b')' | b'*' | b'+' | b'#' | b'%') => Esc::Charset,
                (Esc::Start, _) | (Esc::Charset, _) => Esc::None,
                (Esc::Csi, 0x40..=0x7e) => Esc::None,
                (Esc::Csi, _) => Esc::Csi,
                (Esc::Str, 0x07) => Esc::None,
                (Esc::Str, 0x1b) => Esc::StrEnd,
                (Esc::Str, _) => Esc::Str,
                (Esc::StrEnd, b'\\') => Esc::None,
                (Esc::StrEnd, _) => Esc::Str,
            };
        }
    }

    /// The channel ended: what is left of its last line is shown.
    pub fn end(&mut self) {
        if !self.line.is_empty() {
            self.flush();
        }
    }

    /// A backspace: the last character goes (a whole UTF-8 sequence).
    fn erase(&mut self) {
        while let Some(b) = self.line.pop() {
            if b & 0xc0 != 0x80 {
                break;
            }
        }
    }

    fn flush(&mut self) {
        let raw = String::from_utf8_lossy(&self.line).into_owned();
        self.line.clear();
        self.shown.emit(format!("{}{}", self.label, text::line(&raw)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(input: &[u8]) -> Vec<String> {
        let shown = Shown::new();
        shown.set_asking(true);
        let mut ch = shown.channel(&SessionId::new("s-1"), "alice");
        ch.feed(input);
        ch.end();
        let held = shown.held.lock().unwrap();
        held.lines.iter().skip(1).map(|l| l.trim_start_matches("  │ s-1 alice │ ").to_owned()).collect()
    }

    #[test]
    fn escape_sequences_never_reach_the_terminal() {
        let out = cleaned(b"\x1b[2J\x1b[H\x1b]0;title\x07\x1b[01;32mroot@db\x1b[0m:~# ls\r\nb\x08a\tz\x1b(Bq\n\x1bP1$r\x1b\\end");
        assert_eq!(out, vec!["root@db:~# ls", "a\\tzq", "end"]);
        for line in &out {
            assert!(!line.chars().any(text::is_unsafe), "{line:?}");
        }
    }

    #[test]
    fn nothing_is_printed_while_a_question_is_open_and_the_excess_is_counted() {
        let shown = Shown::new();
        shown.set_asking(true);
        let mut ch = shown.channel(&SessionId::new("s-2"), "bob");
        for i in 0..HELD_LINES + 5 {
            ch.feed(format!("line {i}\n").as_bytes());
        }
        let held = shown.held.lock().unwrap();
        assert_eq!(held.lines.len(), HELD_LINES);
        assert_eq!(held.dropped, 6, "the announcement line takes one place");
    }
}
