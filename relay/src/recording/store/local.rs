//! [`LocalDir`], the embedded default: one append-only file per session,
//! `<dir>/<session>.arec`, created exclusively (an existing recording is never
//! overwritten) and readable by the relay's user only.
//!
//! Appended bytes go to the file at once (so a reader may see them before `sync`); `sync`
//! is `fdatasync`.

use super::{RecordingSink, RecordingSource, RecordingStore, check_session};
use assist_proto::ids::SessionId;
use bytes::{Bytes, BytesMut};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How much a reader takes from the file at a time.
const READ_PIECE: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct LocalDir {
    dir: PathBuf,
}

impl LocalDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self, session: &SessionId) -> PathBuf {
        self.dir.join(format!("{session}.arec"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

struct FileSink(tokio::fs::File);

#[async_trait::async_trait]
impl RecordingSink for FileSink {
    async fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes).await?;
        self.0.flush().await
    }

    async fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync_data().await
    }
}

/// Reads a file in pieces of [`READ_PIECE`] bytes.
pub(crate) struct FileSource(tokio::fs::File);

impl FileSource {
    pub(crate) async fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self(tokio::fs::File::open(path).await?))
    }
}

#[async_trait::async_trait]
impl RecordingSource for FileSource {
    async fn next_piece(&mut self) -> std::io::Result<Option<Bytes>> {
        let mut buf = BytesMut::with_capacity(READ_PIECE);
        let n = self.0.read_buf(&mut buf).await?;
        Ok((n > 0).then(|| buf.freeze()))
    }
}

#[async_trait::async_trait]
impl RecordingStore for LocalDir {
    async fn create(&self, session: &SessionId) -> std::io::Result<Box<dyn RecordingSink>> {
        check_session(session)?;
        tokio::fs::create_dir_all(&self.dir).await?;
        let mut opts = tokio::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let file = opts.open(self.path(session)).await?;
        Ok(Box::new(FileSink(file)))
    }

    async fn open(&self, session: &SessionId) -> std::io::Result<Box<dyn RecordingSource>> {
        check_session(session)?;
        Ok(Box::new(FileSource::open(&self.path(session)).await?))
    }

    fn locate(&self, session: &SessionId) -> String {
        self.path(session).display().to_string()
    }
}
