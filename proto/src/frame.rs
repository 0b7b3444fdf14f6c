//! Length-prefixed frames: a 4-byte big-endian length, then that many bytes of JSON.
//!
//! Control messages and stream headers travel as frames; channel data after a stream
//! header is raw bytes and is never framed. Every frame is bounded by [`MAX_FRAME_LEN`]:
//! a peer announcing a longer one is refused before any of it is buffered.
//!
//! [`FrameDecoder`] is a sans-IO decoder: feed it bytes, take messages out.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest frame body accepted or produced, in bytes (64 KiB). Control messages are
/// small; anything near this size is a bug or an attack.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Encodes one message as a frame. Fails only if the encoded message is over the limit.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len: body.len(), max: MAX_FRAME_LEN });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads the body length from a frame header, checking it against the limit.
pub fn body_len(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len, max: MAX_FRAME_LEN });
    }
    Ok(len)
}

/// Decodes one frame body.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(|e| FrameError::Malformed(e.to_string()))
}

/// Accumulates bytes and yields whole messages.
#[derive(Default, Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet consumed by a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next whole message, if one has arrived. An oversized or malformed frame is
    /// an error; the decoder must not be used after one.
    pub fn next_msg<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = body_len(self.buf[..HEADER_LEN].try_into().expect("4 bytes"))?;
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let msg = decode_body(&self.buf[HEADER_LEN..HEADER_LEN + len]);
        self.buf.drain(..HEADER_LEN + len);
        msg.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{AgentToRelay, EngineerToRelay};

    #[test]
    fn round_trip_and_length_is_what_the_encoder_claims() {
        let msg = EngineerToRelay::Login { user: "alice".into(), password: "pw".into(), code: None };
        let bytes = encode(&msg).unwrap();
        let claimed = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(claimed, bytes.len() - HEADER_LEN);
        let mut dec = FrameDecoder::new();
        // Byte by byte: no message until the last byte arrives.
        for (i, b) in bytes.iter().enumerate() {
            dec.push(&[*b]);
            let got: Option<EngineerToRelay> = dec.next_msg().unwrap();
            assert_eq!(got.is_some(), i == bytes.len() - 1);
            if let Some(got) = got {
                assert_eq!(got, msg);
            }
        }
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn two_frames_in_one_push() {
        let a = AgentToRelay::Ping;
        let mut bytes = encode(&a).unwrap();
        bytes.extend(encode(&a).unwrap());
        let mut dec = FrameDecoder::new();
        dec.push(&bytes);
        assert_eq!(dec.next_msg::<AgentToRelay>().unwrap(), Some(a.clone()));
        assert_eq!(dec.next_msg::<AgentToRelay>().unwrap(), Some(a));
        assert_eq!(dec.next_msg::<AgentToRelay>().unwrap(), None);
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut dec = FrameDecoder::new();
        dec.push(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        assert_eq!(
            dec.next_msg::<AgentToRelay>(),
            Err(FrameError::TooLarge { len: MAX_FRAME_LEN + 1, max: MAX_FRAME_LEN })
        );
        let huge =
            EngineerToRelay::Login { user: "x".repeat(MAX_FRAME_LEN), password: String::new(), code: None };
        assert!(matches!(encode(&huge), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let mut dec = FrameDecoder::new();
        let junk = b"\x00\x00\x00\x05hello";
        dec.push(junk);
        assert!(matches!(dec.next_msg::<EngineerToRelay>(), Err(FrameError::Malformed(_))));
        let mut dec = FrameDecoder::new();
        dec.push(&encode(&serde_json::json!({"type": "no_such_message"})).unwrap());
        assert!(matches!(dec.next_msg::<EngineerToRelay>(), Err(FrameError::Malformed(_))));
    }
}
