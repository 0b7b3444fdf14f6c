//! Browser key names to X keysyms: `KeyboardEvent.code` names a physical key by its place
//! on a US keyboard, so each maps to the keysym that key carries unshifted there; the
//! server's keyboard mapping then says which keycode has it ([`crate::input`]). Also
//! characters to keysyms, for typing text.
//!
//! No I/O, no knowledge of any server's layout.

/// X keysym values used by name below.
pub(crate) mod sym {
    pub const BACKSPACE: u32 = 0xff08;
    pub const TAB: u32 = 0xff09;
    pub const RETURN: u32 = 0xff0d;
    pub const SHIFT_L: u32 = 0xffe1;
    pub const ALT_R: u32 = 0xffea;
    pub const ISO_LEVEL3_SHIFT: u32 = 0xfe03;
}

/// The keysym of the key that `KeyboardEvent.code` names, unshifted, on a US layout.
pub fn keysym_for_code(code: &str) -> Option<u32> {
    let b = code.as_bytes();
    // KeyA…KeyZ, Digit0…Digit9, F1…F24, Numpad0…Numpad9.
    if let Some(rest) = code.strip_prefix("Key")
        && rest.len() == 1
        && b[3].is_ascii_uppercase()
    {
        return Some(b[3].to_ascii_lowercase() as u32);
    }
    if let Some(rest) = code.strip_prefix("Digit")
        && rest.len() == 1
        && b[5].is_ascii_digit()
    {
        return Some(b[5] as u32);
    }
    if let Some(n) = code.strip_prefix('F').and_then(|n| n.parse::<u32>().ok())
        && (1..=24).contains(&n)
        && !code[1..].starts_with('0')
    {
        return Some(0xffbe + n - 1);
    }
    if let Some(rest) = code.strip_prefix("Numpad")
        && rest.len() == 1
        && b[6].is_ascii_digit()
    {
        return Some(0xffb0 + (b[6] - b'0') as u32);
    }
    Some(match code {
        "Enter" => sym::RETURN,
        "Escape" => 0xff1b,
        "Backspace" => sym::BACKSPACE,
        "Tab" => sym::TAB,
        "Space" => 0x20,
        "Minus" => 0x2d,
        "Equal" => 0x3d,
        "BracketLeft" => 0x5b,
        "BracketRight" => 0x5d,
        "Backslash" => 0x5c,
        "Semicolon" => 0x3b,
        "Quote" => 0x27,
        "Backquote" => 0x60,
        "Comma" => 0x2c,
        "Period" => 0x2e,
        "Slash" => 0x2f,
        "IntlBackslash" => 0x3c,
        "CapsLock" => 0xffe5,
        "PrintScreen" => 0xff61,
        "ScrollLock" => 0xff14,
        "Pause" => 0xff13,
        "Insert" => 0xff63,
        "Home" => 0xff50,
        "PageUp" => 0xff55,
        "Delete" => 0xffff,
        "End" => 0xff57,
        "PageDown" => 0xff56,
        "ArrowRight" => 0xff53,
        "ArrowLeft" => 0xff51,
        "ArrowDown" => 0xff54,
        "ArrowUp" => 0xff52,
        "NumLock" => 0xff7f,
        "NumpadDivide" => 0xffaf,
        "NumpadMultiply" => 0xffaa,
        "NumpadSubtract" => 0xffad,
        "NumpadAdd" => 0xffab,
        "NumpadEnter" => 0xff8d,
        "NumpadDecimal" => 0xffae,
        "ContextMenu" => 0xff67,
        "ShiftLeft" => sym::SHIFT_L,
        "ShiftRight" => 0xffe2,
        "ControlLeft" => 0xffe3,
        "ControlRight" => 0xffe4,
        "AltLeft" => 0xffe9,
        "AltRight" => sym::ALT_R,
        "MetaLeft" => 0xffeb,
        "MetaRight" => 0xffec,
        _ => return None,
    })
}

/// Whether a keysym is a modifier (held while other keys are typed: never auto-released
/// after a text character).
pub fn is_modifier(keysym: u32) -> bool {
    (0xffe1..=0xffee).contains(&keysym) || keysym == sym::ISO_LEVEL3_SHIFT
}

/// The keysym that types `c`: the control keys by name, Latin-1 as itself, everything
/// else as a Unicode keysym (0x0100_0000 + code point), which X clients understand.
pub fn keysym_for_char(c: char) -> u32 {
    match c {
        '\n' | '\r' => sym::RETURN,
        '\t' => sym::TAB,
        '\u{8}' => sym::BACKSPACE,
        ' '..='~' | '\u{a0}'..='\u{ff}' => c as u32,
        _ => 0x0100_0000 + c as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_us_keysyms() {
        for (code, want) in [
            ("KeyA", Some(0x61)),
            ("KeyZ", Some(0x7a)),
            ("Digit0", Some(0x30)),
            ("F1", Some(0xffbe)),
            ("F12", Some(0xffc9)),
            ("Numpad7", Some(0xffb7)),
            ("Enter", Some(0xff0d)),
            ("ShiftLeft", Some(0xffe1)),
            ("Keya", None),
            ("F0", None),
            ("F01", None),
            ("F25", None),
            ("Unidentified", None),
        ] {
            assert_eq!(keysym_for_code(code), want, "{code}");
        }
    }

    #[test]
    fn characters_map_to_latin1_or_unicode_keysyms() {
        assert_eq!(keysym_for_char('a'), 0x61);
        assert_eq!(keysym_for_char('é'), 0xe9);
        assert_eq!(keysym_for_char('€'), 0x0100_20ac);
        assert_eq!(keysym_for_char('\n'), 0xff0d);
        assert!(is_modifier(sym::SHIFT_L) && !is_modifier(0x61));
    }
}
