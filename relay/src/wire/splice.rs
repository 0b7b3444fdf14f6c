//! Splicing one direction of a channel into another: QUIC stream to QUIC stream for the
//! CLI, or between a QUIC stream and a browser's WebSocket (`wire::browser`), through the
//! seam's [`ChunkSource`] and [`ChunkSink`] (implemented here for quinn's streams).
//!
//! Chunks move by ownership (`read_chunks` hands over `Bytes`, `write_all_chunks` takes them), so
//! nothing is copied through an intermediate buffer, and `write_all_chunks` waits for the
//! receiver's flow-control credit: a slow reader slows the writer, and the relay holds at
//! most one batch per direction (what had arrived when it read: at most [`BATCH`] chunks,
//! each at most a QUIC frame). When the session ends, both sides are reset at once.
//!
//! With a [`Tee`], each batch of chunks goes to the session's recorder before it is
//! forwarded (cheap clones of the same buffers, one hand-off per batch). The hand-off
//! waits for room in the recorder's byte budget, which comes back only once the bytes are
//! in the recording's file, so what crossed unwritten is bounded (`recording::budget`). If
//! the recorder refuses, the chunk is not forwarded and both sides are reset. Every
//! splice of the session also watches the recorder: once it fails, each resets both its
//! sides at once, whatever it was waiting for, so nothing more moves on any channel.
//!
//! With an end gate, the sender's end (finish or reset) is passed on only once the gate
//! opens, the session ends, or [`END_HOLD`] passes: a file channel's end reaches the
//! engineer only after the agent's account of it (report and countersignature) reached the
//! relay, so a client that exits on it cannot end the session before it is audited.

use crate::broker::peer::{ChunkSink, ChunkSource, PeerFuture, StreamGone};
use crate::recording::Recorder;
use crate::recording::format::Direction;
use assist_net::codes;
use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use std::time::Duration;
use tokio::sync::watch;

/// Where a splice records what it moves.
#[derive(Clone, Debug)]
pub struct Tee {
    pub recorder: Recorder,
    pub channel: u32,
    pub direction: Direction,
}

/// Most chunks taken from a stream at once.
const BATCH: usize = 32;

/// Longest a gated end waits for its gate (an agent that never accounts for the stream).
pub const END_HOLD: Duration = Duration::from_secs(10);

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

/// What stops a splice between its steps: the session's end, or its recorder's failure.
async fn stopped(ended: &mut watch::Receiver<bool>, tee: Option<&Tee>) -> SpliceEnd {
    let failed = async {
        match tee {
            Some(tee) => {
                tee.recorder.wait_failed().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        biased;
        _ = ended.changed() => SpliceEnd::SessionEnded,
        _ = failed => SpliceEnd::RecordingFailed,
    }
}

/// Copies `from` into `to` until one side ends or `ended` turns true. Returns the bytes
/// moved and how it ended. With `end_gate`, the sender's end waits for the gate (see the
/// module docs).
pub async fn splice<R: ChunkSource, W: ChunkSink>(
    mut from: R,
    mut to: W,
    mut ended: watch::Receiver<bool>,
    tee: Option<Tee>,
    mut end_gate: Option<watch::Receiver<bool>>,
) -> (u64, SpliceEnd) {
    let mut moved = 0u64;
    let end_both = |to: &mut W, from: &mut R| {
        to.reset();
        from.stop();
    };
    if *ended.borrow() {
        end_both(&mut to, &mut from);
        return (0, SpliceEnd::SessionEnded);
    }
    // Chunks arrive one QUIC frame at a time (about a packet); taking what has arrived in
    // one call keeps the per-chunk cost (wake-ups, recorder hand-offs) off the bulk path.
    let mut bufs = vec![Bytes::new(); BATCH];
    loop {
        let n = tokio::select! {
            biased;
            why = stopped(&mut ended, tee.as_ref()) => {
                end_both(&mut to, &mut from);
                return (moved, why);
            }
            read = from.read_chunks(&mut bufs) => match read {
                Ok(Some(n)) => n,
                Ok(None) => {
                    if !hold(end_gate.as_mut(), &mut ended).await {
                        end_both(&mut to, &mut from);
                        return (moved, SpliceEnd::SessionEnded);
                    }
                    to.finish();
                    return (moved, SpliceEnd::Finished);
                }
                Err(_) => {
                    hold(end_gate.as_mut(), &mut ended).await;
                    to.reset();
                    return (moved, SpliceEnd::SourceFailed);
                }
            }
        };
        let batch = &mut bufs[..n];
        let len: u64 = batch.iter().map(|b| b.len() as u64).sum();
        if let Some(tee) = &tee {
            // One event per read: the chunks travel by reference, in one hand-off.
            let record = tee.recorder.data_chunks(tee.channel, tee.direction, batch);
            let recorded = tokio::select! {
                biased;
                why = stopped(&mut ended, Some(tee)) => {
                    end_both(&mut to, &mut from);
                    return (moved, why);
                }
                r = record => r,
            };
            if recorded.is_err() {
                end_both(&mut to, &mut from);
                return (moved, SpliceEnd::RecordingFailed);
            }
        }
        let write = tokio::select! {
            biased;
            why = stopped(&mut ended, tee.as_ref()) => {
                end_both(&mut to, &mut from);
                return (moved, why);
            }
            w = to.write_all_chunks(batch) => w,
        };
        if write.is_err() {
            from.stop();
            return (moved, SpliceEnd::SinkFailed);
        }
        moved += len;
    }
}

/// Waits for `gate` to open, bounded by [`END_HOLD`]. False if the session ended
/// meanwhile. Without a gate it returns true at once: an ungated end passes as it came.
async fn hold(gate: Option<&mut watch::Receiver<bool>>, ended: &mut watch::Receiver<bool>) -> bool {
    let Some(gate) = gate else { return true };
    let _ = tokio::time::timeout(END_HOLD, async {
        tokio::select! {
            _ = gate.wait_for(|open| *open) => {}
            _ = ended.wait_for(|e| *e) => {}
        }
    })
    .await;
    !*ended.borrow()
}

impl ChunkSource for RecvStream {
    fn read_chunks<'a>(
        &'a mut self,
        bufs: &'a mut [Bytes],
    ) -> PeerFuture<'a, Result<Option<usize>, StreamGone>> {
        Box::pin(async move { RecvStream::read_chunks(self, bufs).await.map_err(|_| StreamGone) })
    }
    fn stop(&mut self) {
        let _ = RecvStream::stop(self, codes::SESSION_ENDED);
    }
}

impl ChunkSink for SendStream {
    fn write_all_chunks<'a>(&'a mut self, bufs: &'a mut [Bytes]) -> PeerFuture<'a, Result<(), StreamGone>> {
        Box::pin(async move { SendStream::write_all_chunks(self, bufs).await.map_err(|_| StreamGone) })
    }
    fn finish(&mut self) {
        let _ = SendStream::finish(self);
    }
    fn reset(&mut self) {
        let _ = SendStream::reset(self, codes::SESSION_ENDED);
    }
}
