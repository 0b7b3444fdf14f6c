//! Payload encoding and decoding of each message: big-endian binary with exact lengths,
//! every limit checked both ways.

use super::*;

fn check_len(kind: Kind, len: usize) -> Result<(), DesktopError> {
    let max = kind.max_payload();
    if len > max {
        return Err(DesktopError::TooLarge { kind, len, max });
    }
    Ok(())
}

fn exact(kind: Kind, payload: &[u8], expected: usize) -> Result<(), DesktopError> {
    if payload.len() != expected {
        return Err(DesktopError::BadLength { kind, len: payload.len(), expected });
    }
    Ok(())
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn text(kind: Kind, payload: &[u8]) -> Result<String, DesktopError> {
    String::from_utf8(payload.to_vec())
        .map_err(|_| DesktopError::Malformed { kind, reason: "text is not UTF-8" })
}

fn valid_key_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= MAX_KEY_CODE && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl AgentToViewer {
    fn kind(&self) -> Kind {
        match self {
            AgentToViewer::StreamInfo(_) => Kind::StreamInfo,
            AgentToViewer::Frame(_) => Kind::Frame,
            AgentToViewer::CursorShape(_) => Kind::CursorShape,
            AgentToViewer::CursorPosition(_) => Kind::CursorPosition,
            AgentToViewer::Clipboard(_) => Kind::Clipboard,
        }
    }

    /// The encoded length: header plus payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                AgentToViewer::StreamInfo(_) => 5,
                AgentToViewer::Frame(f) => FRAME_PREFIX + f.data.len(),
                AgentToViewer::CursorShape(c) => CURSOR_SHAPE_PREFIX + c.rgba.len(),
                AgentToViewer::CursorPosition(_) => 8,
                AgentToViewer::Clipboard(t) => t.len(),
            }
    }

    /// Appends the encoded message to `out`. Fails, writing nothing, on a message that
    /// breaks a limit (a clipboard too long, a cursor whose pixels do not match its size).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), DesktopError> {
        let kind = self.kind();
        let len = self.encoded_len() - HEADER_LEN;
        check_len(kind, len)?;
        match self {
            AgentToViewer::StreamInfo(i) => {
                Header::write(kind, 0, len, out);
                out.push(i.codec.to_u8());
                out.extend_from_slice(&i.width.to_be_bytes());
                out.extend_from_slice(&i.height.to_be_bytes());
            }
            AgentToViewer::Frame(f) => {
                Header::write(kind, if f.keyframe { FLAG_SET } else { 0 }, len, out);
                out.extend_from_slice(&f.timestamp_us.to_be_bytes());
                out.extend_from_slice(&f.data);
            }
            AgentToViewer::CursorShape(c) => {
                cursor_shape_valid(c)?;
                Header::write(kind, 0, len, out);
                for v in [c.width, c.height, c.hot_x, c.hot_y] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.extend_from_slice(&c.rgba);
            }
            AgentToViewer::CursorPosition(p) => {
                Header::write(kind, 0, len, out);
                out.extend_from_slice(&p.x.to_be_bytes());
                out.extend_from_slice(&p.y.to_be_bytes());
            }
            AgentToViewer::Clipboard(t) => {
                Header::write(kind, 0, len, out);
                out.extend_from_slice(t.as_bytes());
            }
        }
        Ok(())
    }

    /// Encodes into a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, DesktopError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes a payload whose header was already parsed.
    pub fn decode(header: &Header, payload: &[u8]) -> Result<Self, DesktopError> {
        let kind = header.kind;
        if !kind.is_from_agent() {
            return Err(DesktopError::WrongDirection { kind });
        }
        exact(kind, payload, header.len)?;
        Ok(match kind {
            Kind::StreamInfo => {
                exact(kind, payload, 5)?;
                let codec = Codec::from_u8(payload[0])
                    .ok_or(DesktopError::Malformed { kind, reason: "unknown codec" })?;
                let (width, height) = (be16(&payload[1..]), be16(&payload[3..]));
                if width == 0 || height == 0 {
                    return Err(DesktopError::Malformed { kind, reason: "empty picture" });
                }
                AgentToViewer::StreamInfo(StreamInfo { codec, width, height })
            }
            Kind::Frame => {
                if payload.len() < FRAME_PREFIX {
                    return Err(DesktopError::BadLength { kind, len: payload.len(), expected: FRAME_PREFIX });
                }
                let timestamp_us = u64::from_be_bytes(payload[..8].try_into().expect("8 bytes"));
                AgentToViewer::Frame(Frame {
                    timestamp_us,
                    keyframe: header.flags & FLAG_SET != 0,
                    data: payload[FRAME_PREFIX..].to_vec(),
                })
            }
            Kind::CursorShape => {
                if payload.len() < CURSOR_SHAPE_PREFIX {
                    return Err(DesktopError::BadLength {
                        kind,
                        len: payload.len(),
                        expected: CURSOR_SHAPE_PREFIX,
                    });
                }
                let shape = CursorShape {
                    width: be16(&payload[0..]),
                    height: be16(&payload[2..]),
                    hot_x: be16(&payload[4..]),
                    hot_y: be16(&payload[6..]),
                    rgba: payload[CURSOR_SHAPE_PREFIX..].to_vec(),
                };
                cursor_shape_valid(&shape)?;
                AgentToViewer::CursorShape(shape)
            }
            Kind::CursorPosition => {
                exact(kind, payload, 8)?;
                AgentToViewer::CursorPosition(CursorPosition {
                    x: be32(&payload[0..]) as i32,
                    y: be32(&payload[4..]) as i32,
                })
            }
            Kind::Clipboard => AgentToViewer::Clipboard(text(kind, payload)?),
            _ => return Err(DesktopError::WrongDirection { kind }),
        })
    }
}

fn cursor_shape_valid(c: &CursorShape) -> Result<(), DesktopError> {
    let kind = Kind::CursorShape;
    if c.width == 0 || c.height == 0 || c.width > MAX_CURSOR_SIDE || c.height > MAX_CURSOR_SIDE {
        return Err(DesktopError::Malformed { kind, reason: "cursor size out of range" });
    }
    if c.hot_x >= c.width || c.hot_y >= c.height {
        return Err(DesktopError::Malformed { kind, reason: "hotspot outside the cursor" });
    }
    let expected = c.width as usize * c.height as usize * 4;
    if c.rgba.len() != expected {
        return Err(DesktopError::BadLength {
            kind,
            len: CURSOR_SHAPE_PREFIX + c.rgba.len(),
            expected: CURSOR_SHAPE_PREFIX + expected,
        });
    }
    Ok(())
}

impl ViewerToAgent {
    fn kind(&self) -> Kind {
        match self {
            ViewerToAgent::Input(InputEvent::Key { .. }) => Kind::Key,
            ViewerToAgent::Input(InputEvent::Text(_)) => Kind::Text,
            ViewerToAgent::Input(InputEvent::MouseMove { .. }) => Kind::MouseMove,
            ViewerToAgent::Input(InputEvent::MouseButton { .. }) => Kind::MouseButton,
            ViewerToAgent::Input(InputEvent::Wheel { .. }) => Kind::Wheel,
            ViewerToAgent::Clipboard(_) => Kind::Clipboard,
            ViewerToAgent::KeyframeRequest => Kind::KeyframeRequest,
        }
    }

    /// The encoded length: header plus payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                ViewerToAgent::Input(InputEvent::Key { code, .. }) => code.len(),
                ViewerToAgent::Input(InputEvent::Text(t)) => t.len(),
                ViewerToAgent::Input(InputEvent::MouseMove { .. }) => 4,
                ViewerToAgent::Input(InputEvent::MouseButton { .. }) => 1,
                ViewerToAgent::Input(InputEvent::Wheel { .. }) => 4,
                ViewerToAgent::Clipboard(t) => t.len(),
                ViewerToAgent::KeyframeRequest => 0,
            }
    }

    /// Appends the encoded message to `out`. Fails, writing nothing, on a message that
    /// breaks a limit.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), DesktopError> {
        let kind = self.kind();
        let len = self.encoded_len() - HEADER_LEN;
        check_len(kind, len)?;
        match self {
            ViewerToAgent::Input(InputEvent::Key { code, down }) => {
                if !valid_key_code(code) {
                    return Err(DesktopError::Malformed {
                        kind,
                        reason: "key code must be ASCII letters and digits",
                    });
                }
                Header::write(kind, if *down { FLAG_SET } else { 0 }, len, out);
                out.extend_from_slice(code.as_bytes());
            }
            ViewerToAgent::Input(InputEvent::Text(t)) | ViewerToAgent::Clipboard(t) => {
                if kind == Kind::Text && t.is_empty() {
                    return Err(DesktopError::Malformed { kind, reason: "empty text" });
                }
                Header::write(kind, 0, len, out);
                out.extend_from_slice(t.as_bytes());
            }
            ViewerToAgent::Input(InputEvent::MouseMove { x, y }) => {
                Header::write(kind, 0, len, out);
                out.extend_from_slice(&x.to_be_bytes());
                out.extend_from_slice(&y.to_be_bytes());
            }
            ViewerToAgent::Input(InputEvent::MouseButton { button, down }) => {
                Header::write(kind, if *down { FLAG_SET } else { 0 }, len, out);
                out.push(button.to_u8());
            }
            ViewerToAgent::Input(InputEvent::Wheel { dx, dy }) => {
                if !wheel_valid(*dx, *dy) {
                    return Err(DesktopError::Malformed { kind, reason: "too many wheel steps" });
                }
                Header::write(kind, 0, len, out);
                out.extend_from_slice(&dx.to_be_bytes());
                out.extend_from_slice(&dy.to_be_bytes());
            }
            ViewerToAgent::KeyframeRequest => Header::write(kind, 0, 0, out),
        }
        Ok(())
    }

    /// Encodes into a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, DesktopError> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes a payload whose header was already parsed.
    pub fn decode(header: &Header, payload: &[u8]) -> Result<Self, DesktopError> {
        let kind = header.kind;
        if !kind.is_from_viewer() {
            return Err(DesktopError::WrongDirection { kind });
        }
        exact(kind, payload, header.len)?;
        let down = header.flags & FLAG_SET != 0;
        Ok(match kind {
            Kind::Key => {
                let code = text(kind, payload)?;
                if !valid_key_code(&code) {
                    return Err(DesktopError::Malformed {
                        kind,
                        reason: "key code must be ASCII letters and digits",
                    });
                }
                ViewerToAgent::Input(InputEvent::Key { code, down })
            }
            Kind::Text => {
                if payload.is_empty() {
                    return Err(DesktopError::Malformed { kind, reason: "empty text" });
                }
                ViewerToAgent::Input(InputEvent::Text(text(kind, payload)?))
            }
            Kind::MouseMove => {
                exact(kind, payload, 4)?;
                ViewerToAgent::Input(InputEvent::MouseMove { x: be16(&payload[0..]), y: be16(&payload[2..]) })
            }
            Kind::MouseButton => {
                exact(kind, payload, 1)?;
                let button = MouseButton::from_u8(payload[0])
                    .ok_or(DesktopError::Malformed { kind, reason: "unknown mouse button" })?;
                ViewerToAgent::Input(InputEvent::MouseButton { button, down })
            }
            Kind::Wheel => {
                exact(kind, payload, 4)?;
                let (dx, dy) = (be16(&payload[0..]) as i16, be16(&payload[2..]) as i16);
                if !wheel_valid(dx, dy) {
                    return Err(DesktopError::Malformed { kind, reason: "too many wheel steps" });
                }
                ViewerToAgent::Input(InputEvent::Wheel { dx, dy })
            }
            Kind::Clipboard => ViewerToAgent::Clipboard(text(kind, payload)?),
            Kind::KeyframeRequest => {
                exact(kind, payload, 0)?;
                ViewerToAgent::KeyframeRequest
            }
            _ => return Err(DesktopError::WrongDirection { kind }),
        })
    }
}

fn wheel_valid(dx: i16, dy: i16) -> bool {
    (-MAX_WHEEL_STEPS..=MAX_WHEEL_STEPS).contains(&dx) && (-MAX_WHEEL_STEPS..=MAX_WHEEL_STEPS).contains(&dy)
}
