//! Reading a recording chunk by chunk from a [`RecordingSource`], holding at most one
//! chunk (and the rest of the piece it came in) at a time.
//!
//! It checks exactly what [`format::read_chunks`] checks, through the same
//! [`format::parse_chunk`], so a recording read whole or in pieces gives the same chunks
//! and the same problem. It does not judge the recording (see [`super::verify`]).

use super::format::{self, Chunk, ChunkProblem};
use super::store::RecordingSource;

/// What [`ChunkStream::next`] found.
#[derive(Debug)]
pub enum Next {
    Chunk(Chunk),
    /// The end of the recording: cleanly (`None`) or with why it stopped early.
    End(Option<ChunkProblem>),
}

/// The source a [`ChunkStream`] reads: lent by its caller, or its own.
enum Source<'a> {
    Lent(&'a mut dyn RecordingSource),
    Owned(Box<dyn RecordingSource>),
}

pub struct ChunkStream<'a> {
    source: Source<'a>,
    buf: Vec<u8>,
    /// Bytes of `buf` already parsed.
    used: usize,
    eof: bool,
    /// File offset of `buf[used]`.
    at: usize,
    index: usize,
    prev: [u8; 32],
    done: bool,
}

impl ChunkStream<'static> {
    /// A stream that owns its source (a reader kept between calls, as a replay's is).
    pub fn owned(source: Box<dyn RecordingSource>) -> Self {
        Self::from_source(Source::Owned(source))
    }
}

impl<'a> ChunkStream<'a> {
    pub fn new(source: &'a mut dyn RecordingSource) -> Self {
        Self::from_source(Source::Lent(source))
    }

    fn from_source(source: Source<'a>) -> Self {
        Self {
            source,
            buf: Vec::new(),
            used: 0,
            eof: false,
            at: 0,
            index: 0,
            prev: format::ZERO_HASH,
            done: false,
        }
    }

    /// Reads until `n` bytes are buffered past `used`, or the source ends.
    async fn fill(&mut self, n: usize) -> std::io::Result<()> {
        while self.buf.len() - self.used < n && !self.eof {
            let piece = match &mut self.source {
                Source::Lent(s) => s.next_piece().await?,
                Source::Owned(s) => s.next_piece().await?,
            };
            match piece {
                Some(piece) => {
                    if self.used > 0 {
                        self.buf.drain(..self.used);
                        self.used = 0;
                    }
                    self.buf.extend_from_slice(&piece);
                }
                None => self.eof = true,
            }
        }
        Ok(())
    }

    /// The next chunk, or the end. After the end, keeps returning `End(None)`.
    pub async fn next(&mut self) -> std::io::Result<Next> {
        if self.done {
            return Ok(Next::End(None));
        }
        self.fill(1).await?;
        if self.used == self.buf.len() {
            self.done = true;
            return Ok(Next::End(None));
        }
        self.fill(format::CHUNK_HEAD).await?;
        let needs = format::chunk_needs(&self.buf[self.used..]);
        self.fill(needs).await?;
        match format::parse_chunk(&self.buf[self.used..], self.at, self.index, &self.prev) {
            Ok((chunk, len)) => {
                self.used += len;
                self.at += len;
                self.index += 1;
                self.prev = chunk.hash;
                Ok(Next::Chunk(chunk))
            }
            Err(problem) => {
                self.done = true;
                Ok(Next::End(Some(problem)))
            }
        }
    }
}
