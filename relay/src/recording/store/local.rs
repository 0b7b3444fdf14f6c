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

/// The file, and a handle to the same open file for the page-cache advice after a sync.
struct FileSink(tokio::fs::File, std::sync::Arc<std::fs::File>);

#[async_trait::async_trait]
impl RecordingSink for FileSink {
    async fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes).await?;
        self.0.flush().await
    }

    /// After the sync, the written pages are clean and nothing will read them soon: they are
    /// dropped from the page cache, so a long recording recycles pages instead of taking
    /// fresh ones (and evicting other data) for every byte.
    async fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync_data().await?;
        let file = self.1.clone();
        let advice = tokio::task::spawn_blocking(move || {
            rustix::fs::fadvise(&*file, 0, None, rustix::fs::Advice::DontNeed)
        });
        // Only advice: a failure changes nothing about what was written.
        let _ = advice.await;
        Ok(())
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
        let advise = std::sync::Arc::new(file.try_clone().await?.into_std().await);
        Ok(Box::new(FileSink(file, advise)))
    }

    async fn open(&self, session: &SessionId) -> std::io::Result<Box<dyn RecordingSource>> {
        check_session(session)?;
        Ok(Box::new(FileSource::open(&self.path(session)).await?))
    }

    fn locate(&self, session: &SessionId) -> String {
        self.path(session).display().to_string()
    }
}
