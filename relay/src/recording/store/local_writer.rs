//! The writer of one local recording file: appended bytes gather in a block-aligned buffer
//! and go to the file with direct I/O (`O_DIRECT`), in whole blocks, at least
//! [`WRITE_AT`] bytes at a time.
//!
//! A recording is written once and read rarely, so the page cache only costs here: on a
//! 2-core relay, copying every recorded byte into it, allocating and charging its pages,
//! writing them back and dropping them took about as much CPU as hashing the chain. Direct
//! I/O hands the buffer to the disk instead.
//!
//! - Direct I/O needs the buffer's address, the file offset and the length aligned to the
//!   device's block; [`BLOCK`] (4 KiB) suits every common device. The pending bytes always
//!   start at a block boundary of the file, so the tail of a write that does not fill a
//!   block stays pending and is written again, whole, with what follows.
//! - `sync` and `write_out` also write that tail, through an ordinary (buffered) handle to
//!   the same file, so the file always holds exactly the bytes written (no padding a reader
//!   would have to skip); `sync` then `fdatasync`s. The kernel keeps the two handles
//!   coherent.
//! - The tail's block is then finished through the same buffered handle, never rewritten
//!   with direct I/O: a direct write over a page the cache holds dirty would first wait for
//!   that page's write-back, once per write-out (a quarter of the bulk throughput here). So
//!   the pending bytes keep the tail's written part in front of them, for alignment only.
//! - Where the file system refuses direct I/O (at open or at the first write), every write
//!   is buffered instead; nothing else changes.
//!
//! It does not decide when to write out or sync; bytes appended but not written out may
//! still be in memory (the [`super::RecordingSink`] contract).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Alignment of direct I/O: buffer address, file offset and length.
pub(super) const BLOCK: usize = 4096;
/// Pending bytes that start a write before the next `sync`. Large writes are what make
/// direct I/O cheap (a 1 MiB write costs the kernel about a third of four 256 KiB ones).
pub(super) const WRITE_AT: usize = 1 << 20;
/// Room a new (or idle) buffer starts with; it grows to hold [`WRITE_AT`] and one more
/// append while a session moves bulk data.
const START_ROOM: usize = 64 * 1024;

/// Bytes not yet in the file, starting at a block-aligned address.
struct Aligned {
    /// Padding up to the aligned address, then the bytes. Never reallocated in place (that
    /// could move it off the alignment): growing makes a new one.
    buf: Vec<u8>,
    /// Where the aligned bytes start in `buf`.
    start: usize,
}

impl Aligned {
    fn with_room(room: usize) -> Self {
        let mut buf = Vec::with_capacity(room + BLOCK);
        let start = (BLOCK - buf.as_ptr() as usize % BLOCK) % BLOCK;
        buf.resize(start, 0);
        Self { buf, start }
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Makes room for `n` more bytes (moving to a new, larger buffer if needed).
    fn reserve(&mut self, n: usize) {
        if self.buf.len() + n > self.buf.capacity() {
            let mut bigger = Aligned::with_room((self.len() + n).next_power_of_two());
            bigger.buf.extend_from_slice(self.bytes());
            *self = bigger;
        }
    }

    fn extend(&mut self, data: &[u8]) {
        self.reserve(data.len());
        self.buf.extend_from_slice(data);
    }

    /// Drops the first `n` bytes (whole blocks), keeping the rest at the aligned start.
    fn consume(&mut self, n: usize) {
        self.buf.drain(self.start..self.start + n);
    }

    /// Gives back the memory a burst left behind, once little is pending.
    fn shrink(&mut self) {
        if self.buf.capacity() > 4 * START_ROOM && self.len() < START_ROOM / 2 {
            let mut small = Aligned::with_room(START_ROOM);
            small.buf.extend_from_slice(self.bytes());
            *self = small;
        }
    }
}

pub(super) struct LocalWriter {
    /// The file, written through the page cache: tails on `sync`, and everything where
    /// direct I/O is refused.
    file: Arc<File>,
    /// The same file opened with `O_DIRECT`, while direct I/O works.
    direct: Option<Arc<File>>,
    /// `None` only while a write holds it on a blocking thread.
    pending: Option<Aligned>,
    /// File offset of the first pending byte (a block boundary while `direct` is set).
    at: u64,
    /// Leading pending bytes already in the file: the part of a block a write-out wrote
    /// through the page cache (less than a block). Kept so that the rest stays aligned.
    done: usize,
}

impl LocalWriter {
    /// A writer for the empty file `file`, using `direct` (the same file opened with
    /// `O_DIRECT`) if given.
    pub(super) fn new(file: File, direct: Option<File>) -> Self {
        Self {
            file: Arc::new(file),
            direct: direct.map(Arc::new),
            pending: Some(Aligned::with_room(START_ROOM)),
            at: 0,
            done: 0,
        }
    }

    fn pending(&mut self) -> std::io::Result<&mut Aligned> {
        self.pending.as_mut().ok_or_else(earlier_failure)
    }

    /// Adds the concatenation of `parts`.
    pub(super) async fn append(&mut self, parts: &[impl AsRef<[u8]>]) -> std::io::Result<()> {
        let pending = self.pending()?;
        pending.reserve(parts.iter().map(|p| p.as_ref().len()).sum());
        for part in parts {
            pending.extend(part.as_ref());
        }
        if pending.len() >= WRITE_AT { self.write(Upto::Blocks).await } else { Ok(()) }
    }

    pub(super) async fn sync(&mut self) -> std::io::Result<()> {
        self.write(Upto::Durable).await
    }

    /// Puts every appended byte in the file (`write()` accepted it), not waiting for the disk.
    pub(super) async fn write_out(&mut self) -> std::io::Result<()> {
        self.write(Upto::File).await
    }

    /// Writes the pending whole blocks; with `upto` beyond them, also the tail, and then
    /// `fdatasync` if asked.
    async fn write(&mut self, upto: Upto) -> std::io::Result<()> {
        let pending = self.pending.take().ok_or_else(earlier_failure)?;
        let (file, direct, at, done) = (self.file.clone(), self.direct.clone(), self.at, self.done);
        let joined = tokio::task::spawn_blocking(move || {
            let outcome = write_out(&file, direct.as_deref(), pending.bytes(), at, done, upto);
            (pending, outcome)
        })
        .await
        .map_err(|e| std::io::Error::other(format!("the recording's writer thread failed: {e}")))?;
        let (mut pending, outcome) = joined;
        let Written { whole, done, direct_refused } = outcome?;
        if direct_refused {
            tracing::info!("the recordings' file system refuses direct I/O; writing through the page cache");
            self.direct = None;
        }
        pending.consume(whole);
        if upto != Upto::Blocks {
            pending.shrink();
        }
        self.at += whole as u64;
        self.done = done;
        self.pending = Some(pending);
        Ok(())
    }
}

/// How far a write goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upto {
    /// The whole blocks; a tail stays pending only.
    Blocks,
    /// Every pending byte is in the file.
    File,
    /// Every pending byte is in the file and on the disk.
    Durable,
}

/// What a writer says once a write failed: the pending bytes went with it.
fn earlier_failure() -> std::io::Error {
    std::io::Error::other("an earlier write of the recording failed")
}

struct Written {
    /// Bytes written for good: they leave the pending buffer.
    whole: usize,
    /// Of the bytes left, how many lead that are in the file already.
    done: usize,
    direct_refused: bool,
}

/// Writes `bytes`, which belong at file offset `at` and whose first `done` are in the file
/// already, on a blocking thread.
fn write_out(
    file: &File,
    direct: Option<&File>,
    bytes: &[u8],
    at: u64,
    done: usize,
    upto: Upto,
) -> std::io::Result<Written> {
    let mut direct_refused = false;
    let whole = match direct {
        Some(direct) => {
            let whole = bytes.len() / BLOCK * BLOCK;
            // A block begun through the page cache is finished there (see the module docs).
            let from = if done > 0 && whole > 0 {
                file.write_all_at(&bytes[done..BLOCK], at + done as u64)?;
                BLOCK
            } else {
                0
            };
            match direct.write_all_at(&bytes[from..whole], at + from as u64) {
                Ok(()) => whole,
                // The file system does not do direct I/O after all: write buffered.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    direct_refused = true;
                    file.write_all_at(&bytes[done..], at + done as u64)?;
                    bytes.len()
                }
                Err(e) => return Err(e),
            }
        }
        None => {
            file.write_all_at(&bytes[done..], at + done as u64)?;
            bytes.len()
        }
    };
    let mut left_done = if whole > 0 { 0 } else { done };
    if upto != Upto::Blocks {
        // The tail (less than a block) stays pending too, in front of what follows.
        let from = whole.max(left_done);
        file.write_all_at(&bytes[from..], at + from as u64)?;
        left_done = bytes.len() - whole;
    }
    if upto == Upto::Durable {
        file.sync_data()?;
    }
    Ok(Written { whole, done: left_done, direct_refused })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path, direct: bool) -> LocalWriter {
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).unwrap();
        let direct =
            direct.then(|| super::super::local::open_direct(path).expect("this file system does direct I/O"));
        LocalWriter::new(file, direct)
    }

    /// Appends of odd sizes across [`WRITE_AT`], with syncs between them, read back exactly,
    /// and the file never holds more than was appended nor less than was synced.
    async fn round_trip(direct: bool) {
        // In the checkout, on a disk: a temporary directory may be a file system without
        // direct I/O.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = dir.path().join("r.arec");
        let mut w = open(&path, direct);
        assert_eq!(w.direct.is_some(), direct);
        let mut expect = Vec::new();
        for i in 0..40usize {
            let piece: Vec<u8> = (0..(i * 70_001 % 333_333 + 1)).map(|j| (i * 7 + j) as u8).collect();
            let (a, b) = piece.split_at(piece.len() / 3);
            w.append(&[a, b]).await.unwrap();
            expect.extend_from_slice(&piece);
            let seen = std::fs::read(&path).unwrap();
            assert!(expect.starts_with(&seen), "never more than was appended (after {i})");
            if i % 9 == 0 {
                w.sync().await.unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), expect, "after sync {i}");
            } else if i % 3 != 2 {
                w.write_out().await.unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), expect, "after write-out {i}");
            }
        }
        w.sync().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expect);
        assert_eq!(w.direct.is_some(), direct, "direct I/O stayed in use");
        assert!(expect.len() > 3 * WRITE_AT, "the test crosses several direct writes");
    }

    #[tokio::test]
    async fn direct_writes_read_back_exactly() {
        round_trip(true).await;
    }

    #[tokio::test]
    async fn buffered_writes_read_back_exactly() {
        round_trip(false).await;
    }

    #[test]
    fn pending_bytes_stay_aligned_as_they_grow_and_shrink() {
        let mut a = Aligned::with_room(10);
        let data: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        a.extend(&data[..5]);
        a.extend(&data[5..]);
        assert_eq!(a.bytes(), &data[..]);
        assert_eq!(a.bytes().as_ptr() as usize % BLOCK, 0);
        let whole = 299 * 1000 / BLOCK * BLOCK;
        a.consume(whole);
        assert_eq!(a.bytes(), &data[whole..]);
        assert_eq!(a.bytes().as_ptr() as usize % BLOCK, 0);
        a.shrink();
        assert_eq!(a.bytes(), &data[whole..]);
        assert_eq!(a.bytes().as_ptr() as usize % BLOCK, 0);
        assert!(a.buf.capacity() <= START_ROOM + BLOCK, "a drained buffer gives its memory back");
    }
}
