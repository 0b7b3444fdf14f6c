//! Whole messages out of a byte stream, or out of one buffer, never trusting a peer's
//! length past the kind's limit.

use super::*;

/// Splits a byte stream into whole messages without decoding payloads: each header is
/// checked (kind, flags, limit) as soon as its 8 bytes are in, so an oversized message is
/// refused before its payload is buffered. After an error the stream is unusable.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    header: Option<Header>,
}

impl Splitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet taken as part of a whole message.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the next whole message as its header and payload, if it has arrived.
    pub fn next_raw(&mut self) -> Result<Option<(Header, Vec<u8>)>, DesktopError> {
        let header = match self.header {
            Some(h) => h,
            None => {
                if self.buf.len() < HEADER_LEN {
                    return Ok(None);
                }
                let h = Header::parse(self.buf[..HEADER_LEN].try_into().expect("8 bytes"))?;
                self.buf.drain(..HEADER_LEN);
                self.header = Some(h);
                h
            }
        };
        if self.buf.len() < header.len {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf.drain(..header.len).collect();
        self.header = None;
        Ok(Some((header, payload)))
    }

    /// Takes and decodes the next message from the agent.
    pub fn next_from_agent(&mut self) -> Result<Option<AgentToViewer>, DesktopError> {
        match self.next_raw()? {
            Some((h, p)) => AgentToViewer::decode(&h, &p).map(Some),
            None => Ok(None),
        }
    }

    /// Takes and decodes the next message from the viewer.
    pub fn next_from_viewer(&mut self) -> Result<Option<ViewerToAgent>, DesktopError> {
        match self.next_raw()? {
            Some((h, p)) => ViewerToAgent::decode(&h, &p).map(Some),
            None => Ok(None),
        }
    }
}

/// Decodes exactly one whole message from the agent (header and payload, nothing more).
pub fn decode_from_agent(bytes: &[u8]) -> Result<AgentToViewer, DesktopError> {
    let (header, payload) = split_one(bytes)?;
    AgentToViewer::decode(&header, payload)
}

/// Decodes exactly one whole message from the viewer (header and payload, nothing more).
pub fn decode_from_viewer(bytes: &[u8]) -> Result<ViewerToAgent, DesktopError> {
    let (header, payload) = split_one(bytes)?;
    ViewerToAgent::decode(&header, payload)
}

fn split_one(bytes: &[u8]) -> Result<(Header, &[u8]), DesktopError> {
    if bytes.len() < HEADER_LEN {
        return Err(DesktopError::Truncated { needed: HEADER_LEN, got: bytes.len() });
    }
    let header = Header::parse(bytes[..HEADER_LEN].try_into().expect("8 bytes"))?;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() < header.len {
        return Err(DesktopError::Truncated { needed: HEADER_LEN + header.len, got: bytes.len() });
    }
    if payload.len() > header.len {
        return Err(DesktopError::BadLength { kind: header.kind, len: payload.len(), expected: header.len });
    }
    Ok((header, payload))
}
