//! A desktop channel's bytes as whole messages: the one place the relay looks inside a
//! desktop stream, and only at message headers.
//!
//! [`Messages`] wraps one direction's [`ChunkSource`] for the splice:
//!
//! - each 8-byte header is checked as soon as it is in (`proto::desktop::Header::parse`:
//!   known kind, flags, the kind's size limit), and its kind against the channel and the
//!   direction (screen kinds from the agent, viewer kinds from the engineer, clipboard
//!   text only, and only on a clipboard channel); a bad header fails the source, so the
//!   splice resets both sides before the payload is buffered;
//! - whole messages come out one chunk each (a browser gets one WebSocket message per
//!   desktop message), so the recording holds each message once, as forwarded;
//! - on a view-only channel, input messages from the viewer are dropped before the splice
//!   sees them (neither forwarded nor recorded), and the first one is reported once
//!   ([`Messages::refusals`]) for the audit; keyframe requests still pass.
//!
//! It never decodes a payload (video stays opaque) and decides nothing: whether the
//! channel may carry input was settled when it was admitted.

use crate::broker::peer::{ChunkSource, PeerFuture, StreamGone};
use assist_proto::desktop::{HEADER_LEN, Header, Kind};
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

/// Why input on a view channel went nowhere, as audited (`channel.refused`) and shown.
pub(crate) const VIEW_ONLY_INPUT: &str =
    "input on a view-only desktop dropped: desktop.control is not granted";

/// Chunks read from the inner source at once.
const READ_BATCH: usize = 32;

/// Which way a desktop stream flows, and on which channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Agent → viewer on a desktop channel: stream info, frames, cursor.
    FromAgent,
    /// Viewer → agent on a desktop channel: input (with control only), keyframe requests.
    FromViewer { control: bool },
    /// Either way on a clipboard channel: clipboard text, nothing else.
    Clipboard,
}

impl Flow {
    /// Whether a message of `kind` may travel this way at all.
    fn allows(self, kind: Kind) -> bool {
        match self {
            Flow::FromAgent => kind.is_from_agent() && kind != Kind::Clipboard,
            Flow::FromViewer { .. } => kind.is_from_viewer() && kind != Kind::Clipboard,
            Flow::Clipboard => kind == Kind::Clipboard,
        }
    }
}

/// One direction of a desktop channel, as whole checked messages.
pub(crate) struct Messages<S> {
    inner: S,
    flow: Flow,
    buf: BytesMut,
    header: Option<Header>,
    reads: Vec<Bytes>,
    finished: bool,
    refused: Option<oneshot::Sender<()>>,
}

impl<S: ChunkSource> Messages<S> {
    pub(crate) fn new(inner: S, flow: Flow) -> Self {
        Messages {
            inner,
            flow,
            buf: BytesMut::new(),
            header: None,
            reads: vec![Bytes::new(); READ_BATCH],
            finished: false,
            refused: None,
        }
    }

    /// Resolves once, at the first input message dropped on a view-only channel.
    pub(crate) fn refusals(&mut self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.refused = Some(tx);
        rx
    }

    /// The next whole message to pass on, if one is in.
    fn take(&mut self) -> Result<Option<Bytes>, StreamGone> {
        loop {
            let header = match self.header {
                Some(h) => h,
                None => {
                    if self.buf.len() < HEADER_LEN {
                        return Ok(None);
                    }
                    let bytes: &[u8; HEADER_LEN] = self.buf[..HEADER_LEN].try_into().expect("8 bytes");
                    let h = Header::parse(bytes).map_err(|_| StreamGone)?;
                    if !self.flow.allows(h.kind) {
                        return Err(StreamGone);
                    }
                    self.header = Some(h);
                    h
                }
            };
            if self.buf.len() < HEADER_LEN + header.len {
                // Room for the rest of this message only: never more than its limit.
                self.buf.reserve(HEADER_LEN + header.len - self.buf.len());
                return Ok(None);
            }
            self.header = None;
            let message = self.buf.split_to(HEADER_LEN + header.len).freeze();
            if self.flow == (Flow::FromViewer { control: false }) && header.kind.is_input() {
                if let Some(tx) = self.refused.take() {
                    let _ = tx.send(());
                }
                continue;
            }
            return Ok(Some(message));
        }
    }
}

impl<S: ChunkSource> ChunkSource for Messages<S> {
    fn read_chunks<'a>(
        &'a mut self,
        bufs: &'a mut [Bytes],
    ) -> PeerFuture<'a, Result<Option<usize>, StreamGone>> {
        Box::pin(async move {
            loop {
                let mut n = 0;
                while n < bufs.len() {
                    match self.take()? {
                        Some(message) => {
                            bufs[n] = message;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n > 0 {
                    return Ok(Some(n));
                }
                if self.finished {
                    // A stream that ends inside a message was cut short.
                    return if self.buf.is_empty() && self.header.is_none() {
                        Ok(None)
                    } else {
                        Err(StreamGone)
                    };
                }
                match self.inner.read_chunks(&mut self.reads).await? {
                    None => self.finished = true,
                    Some(read) => {
                        for chunk in &mut self.reads[..read] {
                            self.buf.extend_from_slice(chunk);
                            *chunk = Bytes::new();
                        }
                    }
                }
            }
        })
    }

    fn stop(&mut self) {
        self.inner.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_proto::desktop::{
        AgentToViewer, Codec, Frame, InputEvent, MAX_CLIPBOARD, MouseButton, StreamInfo, ViewerToAgent,
    };
    use std::collections::VecDeque;

    /// A source handing out prepared chunks, then the end.
    struct Chunks(VecDeque<Bytes>);

    impl ChunkSource for Chunks {
        fn read_chunks<'a>(
            &'a mut self,
            bufs: &'a mut [Bytes],
        ) -> PeerFuture<'a, Result<Option<usize>, StreamGone>> {
            Box::pin(async move {
                match self.0.pop_front() {
                    Some(c) => {
                        bufs[0] = c;
                        Ok(Some(1))
                    }
                    None => Ok(None),
                }
            })
        }
        fn stop(&mut self) {}
    }

    /// Everything the source yields, cut into chunks of `cut` bytes first.
    async fn drain(bytes: &[u8], cut: usize, flow: Flow) -> (Result<Vec<Bytes>, StreamGone>, bool) {
        let chunks = bytes.chunks(cut).map(Bytes::copy_from_slice).collect();
        let mut m = Messages::new(Chunks(chunks), flow);
        let mut refused = m.refusals();
        let mut out = Vec::new();
        let mut bufs = vec![Bytes::new(); 4];
        let result = loop {
            match m.read_chunks(&mut bufs).await {
                Ok(Some(n)) => out.extend(bufs[..n].iter().cloned()),
                Ok(None) => break Ok(out),
                Err(e) => break Err(e),
            }
        };
        (result, refused.try_recv().is_ok())
    }

    fn screen() -> Vec<Vec<u8>> {
        let info = StreamInfo { codec: Codec::H264, width: 640, height: 480 };
        let frame = Frame { timestamp_us: 7, keyframe: true, data: vec![0, 0, 0, 1, 0x67, 1, 2, 3] };
        vec![AgentToViewer::StreamInfo(info).encode().unwrap(), AgentToViewer::Frame(frame).encode().unwrap()]
    }

    fn input() -> Vec<Vec<u8>> {
        vec![
            ViewerToAgent::KeyframeRequest.encode().unwrap(),
            ViewerToAgent::Input(InputEvent::MouseMove { x: 3, y: 4 }).encode().unwrap(),
            ViewerToAgent::Input(InputEvent::MouseButton { button: MouseButton::Left, down: true })
                .encode()
                .unwrap(),
            ViewerToAgent::KeyframeRequest.encode().unwrap(),
        ]
    }

    #[tokio::test]
    async fn whole_messages_come_out_one_chunk_each_however_they_were_cut() {
        let messages = screen();
        let all = messages.concat();
        for cut in [1, 3, 8, 9, all.len()] {
            let (out, _) = drain(&all, cut, Flow::FromAgent).await;
            let out: Vec<Vec<u8>> = out.unwrap().into_iter().map(|b| b.to_vec()).collect();
            assert_eq!(out, messages, "cut {cut}");
        }
    }

    #[tokio::test]
    async fn a_view_only_channel_drops_input_and_says_so_once() {
        let messages = input();
        let all = messages.concat();
        let (out, refused) = drain(&all, 5, Flow::FromViewer { control: false }).await;
        let out = out.unwrap();
        assert_eq!(out.len(), 2, "only the keyframe requests pass");
        assert!(out.iter().all(|m| m[..] == messages[0][..]));
        assert!(refused);
        let (out, refused) = drain(&all, 5, Flow::FromViewer { control: true }).await;
        assert_eq!(out.unwrap().len(), 4);
        assert!(!refused);
    }

    #[tokio::test]
    async fn a_wrong_direction_an_oversized_header_or_a_cut_message_fails_the_stream() {
        let screen = screen().concat();
        assert!(drain(&screen, 4, Flow::FromViewer { control: true }).await.0.is_err());
        let mut huge = vec![2u8, 0, 0, 0];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(drain(&huge, 8, Flow::FromAgent).await.0.is_err());
        assert!(drain(&screen[..screen.len() - 1], 4, Flow::FromAgent).await.0.is_err());
    }

    #[tokio::test]
    async fn clipboard_text_travels_on_a_clipboard_channel_only_and_within_its_cap() {
        let from_page = ViewerToAgent::Clipboard("from the engineer".into()).encode().unwrap();
        let from_agent = AgentToViewer::Clipboard("from the customer".into()).encode().unwrap();
        for m in [&from_page, &from_agent] {
            let (out, _) = drain(m, 3, Flow::Clipboard).await;
            assert_eq!(out.unwrap(), vec![Bytes::copy_from_slice(m)]);
            // Not on a desktop channel, whichever way.
            assert!(drain(m, 3, Flow::FromAgent).await.0.is_err());
            assert!(drain(m, 3, Flow::FromViewer { control: true }).await.0.is_err());
        }
        // Nothing but clipboard text on a clipboard channel.
        assert!(drain(&screen().concat(), 8, Flow::Clipboard).await.0.is_err());
        assert!(drain(&input()[0], 8, Flow::Clipboard).await.0.is_err());
        // Over the cap: refused from the header alone, before the text is buffered.
        let mut over = vec![Kind::Clipboard.to_u8(), 0, 0, 0];
        over.extend_from_slice(&(MAX_CLIPBOARD as u32 + 1).to_be_bytes());
        assert!(drain(&over, 8, Flow::Clipboard).await.0.is_err());
    }
}
