//! The disk side of a file transfer, for both ends (`assist cp` and the agent's file
//! channels): a blocking thread reads or writes the file a few batches ahead of (or
//! behind) the network task, and computes SHA-256 as the bytes pass, so a file is read
//! once and the network task never waits on the disk.
//!
//! - [`spawn_reader`] hashes the part before the resume offset, then sends the rest in
//!   chunks; [`spawn_writer`] writes batches of received chunks with vectored writes and
//!   syncs the file at its end, complete or not (a partial file is kept for `--resume`);
//!   it starts writeback as it goes, so that the final sync is short.
//! - [`next_batch`] takes everything a QUIC stream has ready, up to the bytes still due,
//!   as one batch (QUIC hands data over a packet's worth at a time).
//!
//! It decides nothing about paths, grants or protocol; the callers do.

use aws_lc_rs::digest::{Context, SHA256};
use bytes::Bytes;
use std::fs::File;
use std::io::{self, IoSlice, Read, Seek, Write};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Batches (or chunks) in flight between the network task and the disk thread.
pub const AHEAD: usize = 8;
/// Most chunks taken from a stream as one batch.
const BATCH: usize = 64;
/// Most buffers handed to one `writev`.
const MAX_IOV: usize = 512;
/// Bytes written between two starts of writeback (see [`spawn_writer`]).
const WRITEBACK_EVERY: u64 = 16 * 1024 * 1024;

/// SHA-256 of the whole file, and of the part that crossed the stream (the same unless
/// resumed), in hex.
#[derive(Clone, Debug)]
pub struct Hashes {
    pub whole: String,
    pub data: String,
}

pub fn hex(ctx: Context) -> String {
    hex::encode(ctx.finish().as_ref())
}

/// Hashes the next `len` bytes of `file` (a resumed transfer's prefix) into `ctx`.
pub fn hash_next(file: &mut File, len: u64, ctx: &mut Context) -> io::Result<()> {
    const CHUNK: u64 = 256 * 1024;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut left = len;
    while left > 0 {
        let n = file.read(&mut buf[..CHUNK.min(left) as usize])?;
        if n == 0 {
            return Err(io::Error::other("the file is shorter than the resume point"));
        }
        ctx.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// Reads `file` from its start: hashes the first `offset` bytes, then sends the bytes up
/// to `size` in `chunk`-sized pieces on the returned channel. The handle gives the hashes
/// once every byte was sent, or the error (a shrunk file, a closed channel).
pub fn spawn_reader(
    mut file: File,
    offset: u64,
    size: u64,
    chunk: usize,
) -> (mpsc::Receiver<Bytes>, JoinHandle<io::Result<Hashes>>) {
    let (tx, rx) = mpsc::channel::<Bytes>(AHEAD);
    let reader = tokio::task::spawn_blocking(move || {
        let mut whole = Context::new(&SHA256);
        hash_next(&mut file, offset, &mut whole)?;
        let mut data = (offset > 0).then(|| Context::new(&SHA256));
        let mut left = size.saturating_sub(offset);
        while left > 0 {
            let mut buf = vec![0u8; (chunk as u64).min(left) as usize];
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::other("the file shrank while it was read"));
            }
            buf.truncate(n);
            whole.update(&buf);
            if let Some(d) = &mut data {
                d.update(&buf);
            }
            left -= n as u64;
            if tx.blocking_send(Bytes::from(buf)).is_err() {
                return Err(io::Error::other("the stream closed"));
            }
        }
        let whole = hex(whole);
        Ok(Hashes { data: data.map_or_else(|| whole.clone(), hex), whole })
    });
    (rx, reader)
}

/// Writes the batches sent on the returned channel to `file` (at its current position),
/// adding them to `whole` (the hash of what `file` already holds) as they pass, until the
/// channel closes; then syncs the file. `resumed`: hash the new bytes apart too.
pub fn spawn_writer(
    mut file: File,
    mut whole: Context,
    resumed: bool,
) -> (mpsc::Sender<Vec<Bytes>>, JoinHandle<io::Result<Hashes>>) {
    let (tx, mut rx) = mpsc::channel::<Vec<Bytes>>(AHEAD);
    let writer = tokio::task::spawn_blocking(move || {
        let mut data = resumed.then(|| Context::new(&SHA256));
        let mut pending: Vec<Bytes> = Vec::new();
        let mut result = Ok(());
        // The file's end, and where the last two windows of writeback started.
        let mut end = file.stream_position()?;
        let mut windows = [end; 2];
        while next_writes(&mut rx, &mut pending) {
            for b in &pending {
                whole.update(b);
                if let Some(d) = &mut data {
                    d.update(b);
                }
            }
            result = write_all_vectored(&mut file, &pending);
            if result.is_err() {
                break;
            }
            end += pending.iter().map(|b| b.len() as u64).sum::<u64>();
            pending.clear();
            // Start writing what is done to disk now, without waiting for it, so that the
            // final sync has little left: otherwise the whole file sits dirty in the page
            // cache until then, and the transfer ends with seconds of waiting on a large
            // file. The advice also keeps a large copy from pushing other data out of the
            // cache (the other side's, on a customer's server). Each range is advised
            // twice: the first starts its writeback, the second drops its pages once
            // written. A refusal changes nothing.
            if end - windows[1] >= WRITEBACK_EVERY {
                let len = std::num::NonZeroU64::new(end - windows[0]);
                let _ = rustix::fs::fadvise(&file, windows[0], len, rustix::fs::Advice::DontNeed);
                windows = [windows[1], end];
            }
        }
        // Complete or not, what was written is kept (and synced) for `--resume`.
        file.sync_all()?;
        result?;
        let whole = hex(whole);
        Ok(Hashes { data: data.map_or_else(|| whole.clone(), hex), whole })
    });
    (tx, writer)
}

/// Waits for the next batch on `rx` and adds it to `pending` with whatever else is already
/// waiting (up to [`MAX_IOV`] buffers), so that one `writev` takes all of it. `false` once
/// the channel is closed and empty.
pub(crate) fn next_writes(rx: &mut mpsc::Receiver<Vec<Bytes>>, pending: &mut Vec<Bytes>) -> bool {
    let Some(batch) = rx.blocking_recv() else { return false };
    pending.extend(batch);
    while pending.len() < MAX_IOV {
        match rx.try_recv() {
            Ok(more) => pending.extend(more),
            Err(_) => break,
        }
    }
    true
}

/// Writes every buffer in order, retrying short writes.
pub(crate) fn write_all_vectored(out: &mut File, bufs: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> =
        bufs.iter().filter(|b| !b.is_empty()).map(|b| IoSlice::new(b)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match out.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Why a stream gave no batch.
#[derive(Debug)]
pub enum Short {
    /// The peer finished its stream before `left` bytes came.
    Ended,
    /// The stream broke (reset, connection lost).
    Broken(String),
    /// The peer sent more bytes than declared.
    TooMany,
}

/// Reads what `recv` has ready (at least one chunk, waiting for it), at most `left`
/// bytes' worth; a chunk beyond `left` is [`Short::TooMany`].
pub async fn next_batch(recv: &mut quinn::RecvStream, left: u64) -> Result<Vec<Bytes>, Short> {
    let mut bufs = vec![Bytes::new(); BATCH];
    let n = match recv.read_chunks(&mut bufs).await {
        Ok(Some(n)) => n,
        Ok(None) => return Err(Short::Ended),
        Err(e) => return Err(Short::Broken(e.to_string())),
    };
    bufs.truncate(n);
    let got: u64 = bufs.iter().map(|b| b.len() as u64).sum();
    if got > left {
        return Err(Short::TooMany);
    }
    Ok(bufs)
}
