//! Splicing one QUIC stream into another.
//!
//! Chunks move by ownership (`read_chunk` hands over a `Bytes`, `write_chunk` takes it), so
//! nothing is copied through an intermediate buffer, and `write_chunk` waits for the
//! receiver's flow-control credit: a slow reader slows the writer, and the relay holds at
//! most one chunk per direction. When the session ends, both sides are reset at once.
//!
//! With a [`Tee`], each chunk goes to the session's recorder before it is forwarded
//! (a cheap clone of the same buffer). If the recorder refuses, the chunk is not forwarded
//! and both sides are reset: nothing crosses unrecorded.

use crate::recording::Recorder;
use crate::recording::format::Direction;
use assist_net::codes;
use quinn::{RecvStream, SendStream};
use tokio::sync::watch;

/// Where a splice records what it moves.
#[derive(Clone, Debug)]
pub struct Tee {
    pub recorder: Recorder,
    pub channel: u32,
    pub direction: Direction,
}

/// Largest chunk taken from a stream at once.
const CHUNK: usize = 64 * 1024;

/// How a splice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpliceEnd {
    /// The sender finished its stream; the finish was passed on.
    Finished,
    /// The sender reset or the connection failed; the reset was passed on.
    SourceFailed,
    /// The receiver stopped reading or went away.
    SinkFailed,
    /// The session ended: both sides were reset.
    SessionEnded,
    /// The recorder failed: both sides were reset.
    RecordingFailed,
}

/// Copies `from` into `to` until one side ends or `ended` turns true. Returns the bytes
/// moved and how it ended.
pub async fn splice(
    mut from: RecvStream,
    mut to: SendStream,
    mut ended: watch::Receiver<bool>,
    tee: Option<Tee>,
) -> (u64, SpliceEnd) {
    let mut moved = 0u64;
    if *ended.borrow() {
        let _ = to.reset(codes::SESSION_ENDED);
        let _ = from.stop(codes::SESSION_ENDED);
        return (0, SpliceEnd::SessionEnded);
    }
    loop {
        tokio::select! {
            biased;
            _ = ended.changed() => {
                let _ = to.reset(codes::SESSION_ENDED);
                let _ = from.stop(codes::SESSION_ENDED);
                return (moved, SpliceEnd::SessionEnded);
            }
            chunk = from.read_chunk(CHUNK, true) => match chunk {
                Ok(Some(chunk)) => {
                    let len = chunk.bytes.len() as u64;
                    if let Some(tee) = &tee {
                        let recorded = tokio::select! {
                            biased;
                            _ = ended.changed() => {
                                let _ = to.reset(codes::SESSION_ENDED);
                                let _ = from.stop(codes::SESSION_ENDED);
                                return (moved, SpliceEnd::SessionEnded);
                            }
                            r = tee.recorder.data(tee.channel, tee.direction, chunk.bytes.clone()) => r,
                        };
                        if recorded.is_err() {
                            let _ = to.reset(codes::SESSION_ENDED);
                            let _ = from.stop(codes::SESSION_ENDED);
                            return (moved, SpliceEnd::RecordingFailed);
                        }
                    }
                    let write = tokio::select! {
                        biased;
                        _ = ended.changed() => {
                            let _ = to.reset(codes::SESSION_ENDED);
                            let _ = from.stop(codes::SESSION_ENDED);
                            return (moved, SpliceEnd::SessionEnded);
                        }
                        w = to.write_chunk(chunk.bytes) => w,
                    };
                    if write.is_err() {
                        let _ = from.stop(codes::SESSION_ENDED);
                        return (moved, SpliceEnd::SinkFailed);
                    }
                    moved += len;
                }
                Ok(None) => {
                    let _ = to.finish();
                    return (moved, SpliceEnd::Finished);
                }
                Err(_) => {
                    let _ = to.reset(codes::SESSION_ENDED);
                    return (moved, SpliceEnd::SourceFailed);
                }
            }
        }
    }
}
