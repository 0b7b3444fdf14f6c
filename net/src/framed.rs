//! Frames on async streams: one [`assist_proto::frame`] frame per message, never more than
//! [`MAX_FRAME_LEN`] bytes buffered for one.

use assist_proto::frame::{self, FrameError, HEADER_LEN, MAX_FRAME_LEN};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum FramedError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("stream ended in the middle of a frame")]
    Truncated,
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one message. `Ok(None)` means the stream ended cleanly between frames.
///
/// Not cancel-safe: a frame partly read when the future is dropped is lost. In a
/// `select!` loop use a [`FrameReader`], which keeps the partial frame.
pub async fn read_msg<T, R>(recv: &mut R) -> Result<Option<T>, FramedError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    FrameReader::default().read(recv).await
}

/// Reads frames one at a time, keeping a partly read frame between calls, so that
/// [`FrameReader::read`] is cancel-safe (the stream's own `read` is). Between frames it
/// holds no buffer: a long-lived reader on an idle stream costs its few bytes only.
#[derive(Debug, Default)]
pub struct FrameReader {
    header: [u8; HEADER_LEN],
    /// Header bytes read so far.
    got: usize,
    /// The body of the frame being read, once its header is complete.
    body: Vec<u8>,
    /// Body bytes read so far.
    filled: usize,
}

impl FrameReader {
    /// Reads the next message. `Ok(None)` means the stream ended cleanly between frames.
    /// After an error the reader must not be used again.
    pub async fn read<T, R>(&mut self, recv: &mut R) -> Result<Option<T>, FramedError>
    where
        T: DeserializeOwned,
        R: AsyncRead + Unpin,
    {
        while self.got < HEADER_LEN {
            let n = recv.read(&mut self.header[self.got..]).await?;
            if n == 0 {
                return if self.got == 0 { Ok(None) } else { Err(FramedError::Truncated) };
            }
            self.got += n;
            if self.got == HEADER_LEN {
                let len = frame::body_len(self.header)?;
                debug_assert!(len <= MAX_FRAME_LEN);
                self.body = vec![0u8; len];
                self.filled = 0;
            }
        }
        while self.filled < self.body.len() {
            let n = recv.read(&mut self.body[self.filled..]).await?;
            if n == 0 {
                return Err(FramedError::Truncated);
            }
            self.filled += n;
        }
        self.got = 0;
        let body = std::mem::take(&mut self.body);
        Ok(Some(frame::decode_body(&body)?))
    }
}

/// Writes one message as a frame.
pub async fn write_msg<T, W>(send: &mut W, msg: &T) -> Result<(), FramedError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let bytes = frame::encode(msg)?;
    send.write_all(&bytes).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_proto::msg::AgentToRelay;

    #[tokio::test]
    async fn frames_over_a_pipe() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            for _ in 0..3 {
                write_msg(&mut a, &AgentToRelay::Ping).await.unwrap();
            }
        });
        for _ in 0..3 {
            assert_eq!(read_msg::<AgentToRelay, _>(&mut b).await.unwrap(), Some(AgentToRelay::Ping));
        }
        writer.await.unwrap();
        assert!(read_msg::<AgentToRelay, _>(&mut b).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_reader_keeps_a_partial_frame_across_cancellation() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let frame = assist_proto::frame::encode(&AgentToRelay::Ping).unwrap();
        let mut reader = FrameReader::default();
        // Each piece arrives, then a read is started and dropped before it completes.
        let pieces = [&frame[..2], &frame[2..5], &frame[5..]];
        for (i, piece) in pieces.into_iter().enumerate() {
            a.write_all(piece).await.unwrap();
            let got = tokio::select! {
                biased;
                r = reader.read::<AgentToRelay, _>(&mut b) => Some(r.unwrap()),
                _ = std::future::ready(()) => None,
            };
            let want = (i == pieces.len() - 1).then_some(Some(AgentToRelay::Ping));
            assert_eq!(got, want, "after piece {i}");
        }
        drop(a);
        assert_eq!(reader.read::<AgentToRelay, _>(&mut b).await.unwrap(), None);
    }

    #[tokio::test]
    async fn truncated_and_oversized() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 9, b'{']).await.unwrap();
        drop(a);
        assert!(matches!(read_msg::<AgentToRelay, _>(&mut b).await, Err(FramedError::Truncated)));

        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_msg::<AgentToRelay, _>(&mut b).await,
            Err(FramedError::Frame(FrameError::TooLarge { .. }))
        ));
    }
}
