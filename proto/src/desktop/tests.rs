//! Tests of the desktop framing: round trips, claimed lengths, and refusal of malformed,
//! oversized and truncated input. The workspace has no property-testing crate, so the
//! "every message" tests walk a seeded generator over many shapes instead.

use super::*;

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn text(&mut self, max: usize) -> String {
        let pool = ['a', 'Z', '0', ' ', '\n', 'é', '€', '😀', 'ß'];
        let mut s = String::new();
        while s.len() < max.saturating_sub(4) && self.below(8) != 0 {
            s.push(pool[self.below(pool.len() as u64) as usize]);
        }
        s
    }
}

fn agent_samples(g: &mut Gen) -> Vec<AgentToViewer> {
    let (w, h) = (1 + g.below(32) as u16, 1 + g.below(32) as u16);
    let frame_len = g.below(5000) as usize;
    vec![
        AgentToViewer::StreamInfo(StreamInfo {
            codec: Codec::H264,
            width: 1 + g.below(4096) as u16,
            height: 1 + g.below(2160) as u16,
        }),
        AgentToViewer::Frame(Frame {
            timestamp_us: g.next(),
            keyframe: g.below(2) == 0,
            data: g.bytes(frame_len),
        }),
        AgentToViewer::CursorShape(CursorShape {
            width: w,
            height: h,
            hot_x: g.below(w as u64) as u16,
            hot_y: g.below(h as u64) as u16,
            rgba: g.bytes(w as usize * h as usize * 4),
        }),
        AgentToViewer::CursorPosition(CursorPosition { x: g.next() as i32, y: g.next() as i32 }),
        AgentToViewer::Clipboard(g.text(200)),
    ]
}

fn viewer_samples(g: &mut Gen) -> Vec<ViewerToAgent> {
    let codes = ["KeyA", "Digit1", "Enter", "ShiftLeft", "F12", "ArrowUp"];
    let buttons =
        [MouseButton::Left, MouseButton::Middle, MouseButton::Right, MouseButton::Back, MouseButton::Forward];
    let mut text = g.text(200);
    if text.is_empty() {
        text.push('x');
    }
    vec![
        ViewerToAgent::Input(InputEvent::Key {
            code: codes[g.below(6) as usize].into(),
            down: g.below(2) == 0,
        }),
        ViewerToAgent::Input(InputEvent::Text(text)),
        ViewerToAgent::Input(InputEvent::MouseMove { x: g.next() as u16, y: g.next() as u16 }),
        ViewerToAgent::Input(InputEvent::MouseButton {
            button: buttons[g.below(5) as usize],
            down: g.below(2) == 0,
        }),
        ViewerToAgent::Input(InputEvent::Wheel { dx: g.below(65) as i16 - 32, dy: g.below(65) as i16 - 32 }),
        ViewerToAgent::Clipboard(g.text(300)),
        ViewerToAgent::KeyframeRequest,
    ]
}

#[test]
fn every_message_round_trips_and_its_length_is_what_the_encoder_claims() {
    let mut g = Gen(0x5eed);
    for _ in 0..300 {
        for msg in agent_samples(&mut g) {
            let bytes = msg.encode().unwrap();
            assert_eq!(bytes.len(), msg.encoded_len(), "{msg:?}");
            let header = Header::parse(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
            assert_eq!(header.len, bytes.len() - HEADER_LEN);
            assert_eq!(decode_from_agent(&bytes).unwrap(), msg);
        }
        for msg in viewer_samples(&mut g) {
            let bytes = msg.encode().unwrap();
            assert_eq!(bytes.len(), msg.encoded_len(), "{msg:?}");
            assert_eq!(decode_from_viewer(&bytes).unwrap(), msg);
        }
    }
}

#[test]
fn the_header_alone_tells_a_keyframe_and_its_size() {
    let key = AgentToViewer::Frame(Frame { timestamp_us: 7, keyframe: true, data: vec![0, 0, 0, 1, 0x67] });
    let delta = AgentToViewer::Frame(Frame { timestamp_us: 8, keyframe: false, data: vec![1; 10] });
    let h = Header::parse(key.encode().unwrap()[..HEADER_LEN].try_into().unwrap()).unwrap();
    assert!(h.is_keyframe());
    assert_eq!(h.len, 8 + 5);
    let h = Header::parse(delta.encode().unwrap()[..HEADER_LEN].try_into().unwrap()).unwrap();
    assert!(!h.is_keyframe());
}

#[test]
fn a_stream_split_at_every_byte_yields_the_same_messages() {
    let mut g = Gen(42);
    let msgs = agent_samples(&mut g);
    let mut bytes = Vec::new();
    for m in &msgs {
        m.encode_into(&mut bytes).unwrap();
    }
    let mut s = Splitter::new();
    let mut got = Vec::new();
    for b in &bytes {
        s.push(&[*b]);
        while let Some(m) = s.next_from_agent().unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, msgs);
    assert_eq!(s.buffered(), 0);
}

#[test]
fn truncated_messages_are_refused_at_every_length() {
    let mut g = Gen(7);
    for msg in agent_samples(&mut g) {
        let bytes = msg.encode().unwrap();
        for cut in 0..bytes.len() {
            let err = decode_from_agent(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, DesktopError::Truncated { .. }), "{msg:?} cut at {cut}: {err:?}");
        }
    }
    for msg in viewer_samples(&mut g) {
        let bytes = msg.encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(matches!(decode_from_viewer(&bytes[..cut]), Err(DesktopError::Truncated { .. })));
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = ViewerToAgent::KeyframeRequest.encode().unwrap();
    bytes.push(0);
    assert!(matches!(decode_from_viewer(&bytes), Err(DesktopError::BadLength { .. })));
}

#[test]
fn oversized_headers_are_refused_before_the_payload_arrives() {
    for kind in Kind::ALL {
        let mut header = [kind.to_u8(), 0, 0, 0, 0, 0, 0, 0];
        header[4..].copy_from_slice(&((kind.max_payload() + 1) as u32).to_be_bytes());
        let mut s = Splitter::new();
        s.push(&header);
        assert_eq!(
            s.next_raw().unwrap_err(),
            DesktopError::TooLarge { kind, len: kind.max_payload() + 1, max: kind.max_payload() }
        );
    }
    // The biggest length a header can state is refused too, with nothing buffered for it.
    let mut s = Splitter::new();
    s.push(&[Kind::Frame.to_u8(), 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(s.next_raw(), Err(DesktopError::TooLarge { .. })));
}

#[test]
fn oversized_messages_are_not_encoded() {
    let clip = AgentToViewer::Clipboard("x".repeat(MAX_CLIPBOARD + 1));
    assert!(matches!(clip.encode(), Err(DesktopError::TooLarge { kind: Kind::Clipboard, .. })));
    let frame =
        AgentToViewer::Frame(Frame { timestamp_us: 0, keyframe: false, data: vec![0; MAX_FRAME_DATA + 1] });
    assert!(matches!(frame.encode(), Err(DesktopError::TooLarge { kind: Kind::Frame, .. })));
    let text = ViewerToAgent::Input(InputEvent::Text("é".repeat(MAX_TEXT_INPUT)));
    assert!(matches!(text.encode(), Err(DesktopError::TooLarge { kind: Kind::Text, .. })));
    let mut out = Vec::new();
    assert!(clip.encode_into(&mut out).is_err());
    assert!(out.is_empty(), "a refused message writes nothing");
}

#[test]
fn malformed_headers_and_payloads_are_refused_with_typed_errors() {
    let check = |bytes: &[u8], want: fn(&DesktopError) -> bool| {
        let a = decode_from_agent(bytes).err();
        let v = decode_from_viewer(bytes).err();
        assert!(a.iter().chain(v.iter()).any(want), "{bytes:?}: {a:?} / {v:?}");
    };
    // Unknown kind, reserved bytes, flags not allowed.
    check(&[99, 0, 0, 0, 0, 0, 0, 0], |e| matches!(e, DesktopError::UnknownKind(99)));
    check(&[33, 0, 1, 0, 0, 0, 0, 0], |e| *e == DesktopError::Reserved);
    check(&[33, 1, 0, 0, 0, 0, 0, 0], |e| {
        matches!(e, DesktopError::BadFlags { kind: Kind::KeyframeRequest, flags: 1 })
    });
    check(&[2, 2, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0], |e| matches!(e, DesktopError::BadFlags { .. }));
    // Fixed-size payloads of the wrong size.
    check(&[18, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3], |e| {
        matches!(e, DesktopError::BadLength { kind: Kind::MouseMove, .. })
    });
    check(&[2, 0, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4], |e| {
        matches!(e, DesktopError::BadLength { kind: Kind::Frame, .. })
    });
    // Bad values.
    check(&[1, 0, 0, 0, 0, 0, 0, 5, 9, 0, 1, 0, 1], |e| {
        matches!(e, DesktopError::Malformed { reason: "unknown codec", .. })
    });
    check(&[1, 0, 0, 0, 0, 0, 0, 5, 1, 0, 0, 0, 1], |e| {
        matches!(e, DesktopError::Malformed { reason: "empty picture", .. })
    });
    check(&[19, 1, 0, 0, 0, 0, 0, 1, 7], |e| {
        matches!(e, DesktopError::Malformed { reason: "unknown mouse button", .. })
    });
    check(&[16, 1, 0, 0, 0, 0, 0, 3, b'K', b'-', b'A'], |e| {
        matches!(e, DesktopError::Malformed { kind: Kind::Key, .. })
    });
    check(&[17, 0, 0, 0, 0, 0, 0, 2, 0xc3, 0x28], |e| {
        matches!(e, DesktopError::Malformed { reason: "text is not UTF-8", .. })
    });
    check(&[17, 0, 0, 0, 0, 0, 0, 0], |e| matches!(e, DesktopError::Malformed { reason: "empty text", .. }));
    check(&[20, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 33], |e| {
        matches!(e, DesktopError::Malformed { reason: "too many wheel steps", .. })
    });
    // A cursor whose pixels do not match its size, or whose hotspot is outside it.
    let mut cursor = vec![3, 0, 0, 0, 0, 0, 0, 11, 0, 1, 0, 1, 0, 0, 0, 0, 1, 2, 3];
    check(&cursor, |e| matches!(e, DesktopError::BadLength { kind: Kind::CursorShape, .. }));
    cursor[7] = 12;
    cursor.push(4);
    cursor[15] = 1; // hot_y = 1 in a 1×1 cursor
    check(&cursor, |e| matches!(e, DesktopError::Malformed { reason: "hotspot outside the cursor", .. }));
}

#[test]
fn messages_going_the_wrong_way_are_refused() {
    let frame =
        AgentToViewer::Frame(Frame { timestamp_us: 1, keyframe: true, data: vec![1] }).encode().unwrap();
    assert_eq!(decode_from_viewer(&frame).unwrap_err(), DesktopError::WrongDirection { kind: Kind::Frame });
    let click = ViewerToAgent::Input(InputEvent::MouseButton { button: MouseButton::Left, down: true })
        .encode()
        .unwrap();
    assert_eq!(
        decode_from_agent(&click).unwrap_err(),
        DesktopError::WrongDirection { kind: Kind::MouseButton }
    );
    assert!(Kind::Key.is_input() && !Kind::KeyframeRequest.is_input() && !Kind::Clipboard.is_input());
}

#[test]
fn random_bytes_never_panic() {
    let mut g = Gen(99);
    for _ in 0..20_000 {
        let n = g.below(40) as usize;
        let mut bytes = g.bytes(n);
        // Half the time, a known kind with zero reserved bytes and an honest length, so the
        // payload decoders are reached.
        if n >= HEADER_LEN && g.below(2) == 0 {
            bytes[0] = Kind::ALL[g.below(Kind::ALL.len() as u64) as usize].to_u8();
            bytes[1] &= 1;
            bytes[2] = 0;
            bytes[3] = 0;
            bytes[4..8].copy_from_slice(&((n - HEADER_LEN) as u32).to_be_bytes());
        }
        let _ = decode_from_agent(&bytes);
        let _ = decode_from_viewer(&bytes);
        let mut s = Splitter::new();
        s.push(&bytes);
        let _ = s.next_raw();
    }
}
