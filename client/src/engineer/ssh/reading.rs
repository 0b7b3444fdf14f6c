//! A file `sftp` or `scp` reads through `assist ssh-proxy`, streamed: one `Read` file
//! channel opened when the client opens the file, its bytes handed out as the client asks
//! for them, nothing spooled here.
//!
//! - Reads at the next offset (what `sftp`, `scp` and `rsync` do, even with many requests
//!   in flight) take the next bytes off the stream, as many as asked (up to the end).
//! - A read further on reads through the bytes in between (so the whole file is still
//!   hashed); a read further back starts a new `Read` channel from the start (the first
//!   is abandoned, and audited as incomplete).
//! - Once the last byte has been handed out, the file's SHA-256 goes to the agent, which
//!   finishes the channel only if it has the same one (`file.transferred` with both
//!   digests); otherwise that last read fails, and the client reports it.

use crate::engineer::EngineerError;
use crate::engineer::session::{Channels, OpenChannel};
use assist_net::{codes, read_msg, write_msg};
use assist_proto::files::{FileDigest, FileReady, FileRequest};
use assist_proto::msg::ChannelKind;
use aws_lc_rs::digest::{Context, SHA256};
use bytes::Bytes;
use quinn::{RecvStream, SendStream};

fn broke(what: &str) -> EngineerError {
    EngineerError::Refused(format!("{what}: the transfer broke off"))
}

pub(super) struct Reading {
    remote: String,
    pub size: u64,
    pub mode: u32,
    /// Bytes taken off the stream so far.
    pos: u64,
    hash: Context,
    send: SendStream,
    recv: RecvStream,
    /// Bytes received beyond what was asked for.
    pending: Bytes,
    confirmed: bool,
}

impl Reading {
    pub async fn open(channels: &Channels, remote: &str) -> Result<Self, EngineerError> {
        let request = FileRequest::Read { path: remote.to_owned(), offset: 0 };
        let (send, mut recv) = channels.channel(ChannelKind::Files { request }).await?;
        let ready = match read_msg::<FileReady, _>(&mut recv).await {
            Ok(Some(r)) if r.offset == 0 => r,
            _ => return Err(broke(remote)),
        };
        Ok(Self {
            remote: remote.to_owned(),
            size: ready.size,
            mode: ready.mode,
            pos: 0,
            hash: Context::new(&SHA256),
            send,
            recv,
            pending: Bytes::new(),
            confirmed: false,
        })
    }

    /// Up to `len` bytes from `offset`; `None` at or past the end.
    pub async fn read(
        &mut self,
        channels: &Channels,
        offset: u64,
        len: usize,
    ) -> Result<Option<Bytes>, EngineerError> {
        if offset >= self.size {
            return Ok(None);
        }
        if offset < self.pos {
            let again = Self::open(channels, &self.remote).await?;
            std::mem::replace(self, again).abandon();
        }
        while self.pos < offset {
            let skip = usize::try_from(offset - self.pos).unwrap_or(usize::MAX);
            self.take(skip).await?;
        }
        // Whole reads: a short one makes clients ask again for the rest, behind what
        // their later requests already took.
        let mut data = bytes::BytesMut::new();
        while data.len() < len && self.pos < self.size {
            data.extend_from_slice(&self.take(len - data.len()).await?);
        }
        let data = data.freeze();
        if self.pos == self.size {
            self.confirm().await?;
        }
        Ok(Some(data))
    }

    /// The next bytes of the stream, at most `max`, hashed.
    async fn take(&mut self, max: usize) -> Result<Bytes, EngineerError> {
        if self.pending.is_empty() {
            let left = usize::try_from(self.size - self.pos).unwrap_or(usize::MAX);
            match self.recv.read_chunk(left.min(256 * 1024), true).await {
                Ok(Some(c)) => self.pending = c.bytes,
                _ => return Err(broke(&self.remote)),
            }
        }
        let n = max.min(self.pending.len());
        let data = self.pending.split_to(n);
        self.hash.update(&data);
        self.pos += n as u64;
        Ok(data)
    }

    /// Sends the file's SHA-256; the agent finishes the channel only if it is its own.
    async fn confirm(&mut self) -> Result<(), EngineerError> {
        let sha256 = hex::encode(self.hash.clone().finish().as_ref());
        write_msg(&mut self.send, &FileDigest { sha256 }).await.map_err(|_| broke(&self.remote))?;
        let _ = self.send.finish();
        self.recv.read_to_end(1024).await.map_err(|_| {
            EngineerError::Refused(format!("{}: the agent's SHA-256 differs from what arrived", self.remote))
        })?;
        self.confirmed = true;
        Ok(())
    }

    /// The client closed the file: an empty file (or one read to its end) is confirmed,
    /// anything else abandoned.
    pub async fn close(mut self) -> Result<(), EngineerError> {
        if !self.confirmed && self.pos == self.size {
            return self.confirm().await;
        }
        self.abandon();
        Ok(())
    }

    /// Leaves the channel before its end (the client closed the file early).
    pub fn abandon(mut self) {
        if !self.confirmed {
            let _ = self.send.reset(codes::SESSION_ENDED);
            let _ = self.recv.stop(codes::SESSION_ENDED);
        }
    }
}
