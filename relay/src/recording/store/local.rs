//! [`LocalDir`], the embedded default: one append-only file per session,
//! `<dir>/<session>.arec`, created exclusively (an existing recording is never
//! overwritten) and readable by the relay's user only.
//!
//! The file is written by a [`LocalWriter`]: with direct I/O in large aligned writes, the
//! rest on `sync`, which ends with `fdatasync`. A reader sees every synced byte, and may see
//! more.

use super::local_writer::LocalWriter;
use super::{RecordingSink, RecordingSource, RecordingStore, check_session};
use assist_proto::ids::SessionId;
use bytes::{Bytes, BytesMut};
use std::path::{Path, PathBuf};
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

struct FileSink(LocalWriter);

#[async_trait::async_trait]
impl RecordingSink for FileSink {
    async fn append(&mut self, parts: Vec<Bytes>) -> std::io::Result<()> {
        self.0.append(&parts).await
    }

    async fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync().await
    }

    async fn write_out(&mut self) -> std::io::Result<()> {
        self.0.write_out().await
    }
}

/// Opens an existing file again for direct I/O (see [`LocalWriter`]).
pub(super) fn open_direct(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = rustix::fs::OFlags::DIRECT.bits() as i32;
    std::fs::OpenOptions::new().write(true).custom_flags(direct).open(path)
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
        let path = self.path(session);
        let file = opts.open(&path).await?.into_std().await;
        // Where direct I/O is refused (some file systems), the writer goes through the page
        // cache; any other error is the directory's, and fails the recording now.
        let direct = match tokio::task::spawn_blocking(move || open_direct(&path)).await? {
            Ok(direct) => Some(direct),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => None,
            Err(e) => return Err(e),
        };
        Ok(Box::new(FileSink(LocalWriter::new(file, direct))))
    }

    async fn open(&self, session: &SessionId) -> std::io::Result<Box<dyn RecordingSource>> {
        check_session(session)?;
        Ok(Box::new(FileSource::open(&self.path(session)).await?))
    }

    fn locate(&self, session: &SessionId) -> String {
        self.path(session).display().to_string()
    }
}
