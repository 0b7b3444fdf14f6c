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
pub async fn read_msg<T, R>(recv: &mut R) -> Result<Option<T>, FramedError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = recv.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FramedError::Truncated) };
        }
        got += n;
    }
    let len = frame::body_len(header)?;
    debug_assert!(len <= MAX_FRAME_LEN);
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FramedError::Truncated,
        _ => FramedError::Io(e),
    })?;
    Ok(Some(frame::decode_body(&body)?))
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
