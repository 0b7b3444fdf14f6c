//! Foreign text made inert before a person sees it, and the rules for free text the relay
//! accepts.
//!
//! Text that came from another party (a reason, a ticket, a note, a file name, an error
//! message relayed from the other side) is shown on terminals and in chat messages. Raw,
//! it could move the cursor, hide text (`ESC[8m`), reorder it (bidi overrides) or draw a
//! forged prompt. [`inert`] escapes every such character visibly (`\x1b`, `\r`,
//! `\u{202e}`) and bounds the length with a visible cut mark, so what is shown is exactly
//! one line of printable characters. [`check`] is the relay's (and the CLI's) refusal of
//! free text no honest client sends.
//!
//! It deliberately does not escape markup of any particular output format (chat markup,
//! HTML, JSON): each output does that for its own syntax on top of this. It does no
//! terminal-width measuring: wide characters are printable and cannot overwrite anything.

use std::fmt::Write as _;

/// The longest reason (request, escalation, deny, approval note, end, revoke) the relay
/// accepts, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// The longest ticket reference the relay accepts, in characters.
pub const MAX_TICKET_CHARS: usize = 100;

/// How much of one foreign text is shown by default, in characters after escaping. Larger
/// than [`MAX_REASON_CHARS`] so that an accepted reason is shown whole unless it had to be
/// escaped.
pub const SHOWN_CHARS: usize = 600;

/// Invisible formatting characters (Unicode general category Cf), line and paragraph
/// separators, and fillers that render as nothing. Ranges are inclusive.
const INVISIBLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'), // soft hyphen
    ('\u{034F}', '\u{034F}'), // combining grapheme joiner
    ('\u{0600}', '\u{0605}'), // Arabic number signs
    ('\u{061C}', '\u{061C}'), // Arabic letter mark (bidi)
    ('\u{06DD}', '\u{06DD}'),
    ('\u{070F}', '\u{070F}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08E2}', '\u{08E2}'),
    ('\u{115F}', '\u{1160}'), // Hangul fillers
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180E}', '\u{180E}'), // Mongolian vowel separator
    ('\u{200B}', '\u{200F}'), // zero-width space, (non-)joiner, LRM, RLM
    ('\u{2028}', '\u{202E}'), // line/paragraph separators, bidi embeddings and overrides
    ('\u{2060}', '\u{206F}'), // word joiner, invisible operators, bidi isolates, deprecated
    ('\u{3164}', '\u{3164}'), // Hangul filler
    ('\u{FEFF}', '\u{FEFF}'), // byte order mark / zero-width no-break space
    ('\u{FFA0}', '\u{FFA0}'), // halfwidth Hangul filler
    ('\u{FFF9}', '\u{FFFB}'), // interlinear annotation
    ('\u{110BD}', '\u{110BD}'),
    ('\u{110CD}', '\u{110CD}'),
    ('\u{13430}', '\u{1343F}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'), // tags and variation selectors supplement
];

/// Whether `c` must not reach a person raw: C0 and C1 controls, DEL, bidi controls and
/// other invisible formatting characters. Tab counts: it moves the cursor.
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || INVISIBLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// The visible form of an unsafe character.
fn escape_into(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `s` as one line of printable characters: each unsafe character escaped visibly, and at
/// most `max_chars` characters in all (escapes counted as shown); what did not fit is
/// replaced by `…[+N chars]`, N counting the characters of `s` left out.
pub fn inert(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars.saturating_mul(4)));
    let mut shown = 0;
    let mut piece = String::new();
    for (i, c) in s.char_indices() {
        piece.clear();
        if is_unsafe(c) {
            escape_into(c, &mut piece);
        } else {
            piece.push(c);
        }
        let n = piece.chars().count();
        if shown + n > max_chars {
            let left = s[i..].chars().count();
            let _ = write!(out, "…[+{left} chars]");
            return out;
        }
        shown += n;
        out.push_str(&piece);
    }
    out
}

/// [`inert`] with the default bound, [`SHOWN_CHARS`].
pub fn line(s: &str) -> String {
    inert(s, SHOWN_CHARS)
}

/// Why free text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} characters long; at most {max} are allowed")]
    TooLong { what: &'static str, len: usize, max: usize },
    #[error(
        "{what} contains the control or invisible formatting character {shown} at character {at}; only printable text on one line is allowed"
    )]
    Unsafe { what: &'static str, shown: String, at: usize },
}

/// Checks free text an honest client may send: not blank, at most `max_chars` characters,
/// and no unsafe character at all (no newline either: every surface shows it on one line).
pub fn check(what: &'static str, value: &str, max_chars: usize) -> Result<(), TextError> {
    check_chars(what, value, max_chars)?;
    if value.trim().is_empty() {
        return Err(TextError::Empty { what });
    }
    Ok(())
}

/// Like [`check`], but empty text is allowed (an optional note left blank).
pub fn check_chars(what: &'static str, value: &str, max_chars: usize) -> Result<(), TextError> {
    let len = value.chars().count();
    if len > max_chars {
        return Err(TextError::TooLong { what, len, max: max_chars });
    }
    if let Some((at, c)) = value.chars().enumerate().find(|&(_, c)| is_unsafe(c)) {
        let mut shown = String::new();
        escape_into(c, &mut shown);
        return Err(TextError::Unsafe { what, shown, at: at + 1 });
    }
    Ok(())
}

/// A ticket reference: [`check`] with [`MAX_TICKET_CHARS`].
pub fn check_ticket(value: &str) -> Result<(), TextError> {
    check("ticket", value, MAX_TICKET_CHARS)
}

/// A reason or note: [`check`] with [`MAX_REASON_CHARS`].
pub fn check_reason(what: &'static str, value: &str) -> Result<(), TextError> {
    check(what, value, MAX_REASON_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_inert(input: &str, max: usize, expected: &str) {
        assert_eq!(inert(input, max), expected, "input {input:?}");
    }

    #[test]
    fn controls_and_invisible_characters_are_escaped_visibly() {
        for (input, expected) in [
            ("month-end close fails", "month-end close fails"),
            ("Zürich, 東京, ünïcödé ✓", "Zürich, 東京, ünïcödé ✓"),
            ("a\x1b[8mhidden", "a\\x1b[8mhidden"),
            ("line\r\nnext", "line\\r\\nnext"),
            ("tab\there", "tab\\there"),
            ("bell\x07 nul\0 del\x7f", "bell\\x07 nul\\x00 del\\x7f"),
            ("csi\u{9b}2J", "csi\\u{9b}2J"),
            ("osc\u{9d}0;x\u{9c}", "osc\\u{9d}0;x\\u{9c}"),
            ("abc\u{202e}fdp.exe", "abc\\u{202e}fdp.exe"),
            ("\u{2066}\u{2067}\u{2068}\u{2069}", "\\u{2066}\\u{2067}\\u{2068}\\u{2069}"),
            ("\u{200e}\u{200f}\u{61c}", "\\u{200e}\\u{200f}\\u{61c}"),
            ("zero\u{200b}width\u{200d}joiner\u{feff}", "zero\\u{200b}width\\u{200d}joiner\\u{feff}"),
            ("soft\u{ad}hyphen", "soft\\u{ad}hyphen"),
            ("para\u{2029}line\u{2028}", "para\\u{2029}line\\u{2028}"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
            ("\\x1b stays as typed", "\\x1b stays as typed"),
        ] {
            check_inert(input, 100, expected);
        }
    }

    #[test]
    fn long_text_is_cut_with_a_visible_mark() {
        check_inert("abcdef", 6, "abcdef");
        check_inert("abcdefgh", 6, "abcdef…[+2 chars]");
        check_inert("ééééé", 3, "ééé…[+2 chars]");
        // An escape that does not fit whole is left out whole, not cut in half.
        check_inert("abcd\x1bxyz", 6, "abcd…[+4 chars]");
        check_inert(&"\x1b".repeat(1000), 8, "\\x1b\\x1b…[+998 chars]");
        check_inert("", 0, "");
        assert!(line(&"x".repeat(10_000)).ends_with("…[+9400 chars]"));
    }

    #[test]
    fn inert_output_never_holds_an_unsafe_character() {
        let all: String = (0u32..0x11_0000).filter_map(char::from_u32).collect();
        let out = inert(&all, usize::MAX);
        assert!(!out.chars().any(is_unsafe));
        assert!(!out.contains('\x1b') && !out.contains('\r') && !out.contains('\n'));
    }

    #[track_caller]
    fn check_refused(what: &'static str, value: &str, max: usize, expected: Result<(), &str>) {
        assert_eq!(check(what, value, max).map_err(|e| e.to_string()), expected.map_err(str::to_owned));
    }

    #[test]
    fn free_text_no_honest_client_sends_is_refused() {
        check_refused("reason", "month-end close fails", 500, Ok(()));
        check_refused("reason", "Zürich ✓ — 東京", 500, Ok(()));
        check_refused("reason", "   ", 500, Err("reason must not be empty"));
        check_refused("reason", "", 500, Err("reason must not be empty"));
        check_refused(
            "reason",
            &"é".repeat(501),
            500,
            Err("reason is 501 characters long; at most 500 are allowed"),
        );
        check_refused("reason", &"é".repeat(500), 500, Ok(()));
        check_refused(
            "reason",
            "ok\x1b[8m",
            500,
            Err(
                "reason contains the control or invisible formatting character \\x1b at character 3; only printable text on one line is allowed",
            ),
        );
        check_refused(
            "ticket",
            "INC\u{202e}1",
            100,
            Err(
                "ticket contains the control or invisible formatting character \\u{202e} at character 4; only printable text on one line is allowed",
            ),
        );
        check_refused(
            "note",
            "two\nlines",
            500,
            Err(
                "note contains the control or invisible formatting character \\n at character 4; only printable text on one line is allowed",
            ),
        );
        assert_eq!(check_chars("note", "", 500), Ok(()));
        assert!(check_ticket(&"T".repeat(MAX_TICKET_CHARS)).is_ok());
        assert!(check_ticket(&"T".repeat(MAX_TICKET_CHARS + 1)).is_err());
        assert!(check_reason("reason", &"r".repeat(MAX_REASON_CHARS)).is_ok());
        assert!(check_reason("reason", &"r".repeat(MAX_REASON_CHARS + 1)).is_err());
    }
}
