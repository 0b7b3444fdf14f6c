//! [`LocalDir`], the embedded default: one append-only file per session,
//! `<dir>/<session>.arec`, created exclusively (an existing recording is never
//! overwritten) and readable by the relay's user only.
//!
//! Appended bytes go to the file at once (so a reader may see them before `sync`); `sync`
//! is `fdatasync`.

use super::{RecordingSink, RecordingSource, RecordingStore, check_session};
use assist_proto::ids::SessionId;
use bytes::{Bytes, BytesMut};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncReadExt;

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
/// Bytes appended between two starts of writeback.
const WRITEBACK_EVERY: u64 = 16 * 1024 * 1024;

struct FileSink {
    /// Written on blocking threads, one append at a time.
    file: Arc<std::fs::File>,
    /// The file's length, and where the last two windows of writeback started.
    end: u64,
    windows: [u64; 2],
}

/// Runs `f` on the file on a blocking thread.
async fn on_file<T: Send + 'static>(
    file: &Arc<std::fs::File>,
    f: impl FnOnce(&std::fs::File) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let file = file.clone();
    tokio::task::spawn_blocking(move || f(&file))
        .await
        .map_err(|e| std::io::Error::other(format!("the recording's writer thread failed: {e}")))?
}

impl FileSink {
    /// Starts writing the last windows to disk without waiting (see `disk.rs` in the client
    /// for the same idea): the periodic `sync` then finds little left to write and returns
    /// quickly, instead of stalling the recorder, and through it the splice, while a
    /// second's worth of a bulk transfer is written. Clean pages are dropped as they go.
    fn start_writeback(&mut self) {
        if self.end - self.windows[1] < WRITEBACK_EVERY {
            return;
        }
        let (from, len) = (self.windows[0], std::num::NonZeroU64::new(self.end - self.windows[0]));
        self.windows = [self.windows[1], self.end];
        let file = self.file.clone();
        drop(tokio::task::spawn_blocking(move || {
            rustix::fs::fadvise(&*file, from, len, rustix::fs::Advice::DontNeed)
        }));
    }
}

#[async_trait::async_trait]
impl RecordingSink for FileSink {
    async fn append(&mut self, bytes: Bytes) -> std::io::Result<()> {
        let len = bytes.len() as u64;
        on_file(&self.file, move |mut file| file.write_all(&bytes)).await?;
        self.end += len;
        self.start_writeback();
        Ok(())
    }

    async fn sync(&mut self) -> std::io::Result<()> {
        on_file(&self.file, |file| {
            file.sync_data()?;
            let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed);
            Ok(())
        })
        .await
    }
}

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
        let file = opts.open(self.path(session)).await?.into_std().await;
        Ok(Box::new(FileSink { file: Arc::new(file), end: 0, windows: [0; 2] }))
    }

    async fn open(&self, session: &SessionId) -> std::io::Result<Box<dyn RecordingSource>> {
        check_session(session)?;
        Ok(Box::new(FileSource::open(&self.path(session)).await?))
    }

    fn locate(&self, session: &SessionId) -> String {
        self.path(session).display().to_string()
    }
}
