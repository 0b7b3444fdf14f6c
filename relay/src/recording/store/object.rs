//! [`ObjectRecordings`]: recordings in an object store (object_store's local file system,
//! memory, or an S3-compatible bucket).
//!
//! Object stores cannot append, so a recording is a sequence of segment objects,
//! `<prefix>/<session>/<n>.seg` with `n` zero-padded to six digits (more past 999999):
//!
//! - `create` writes the empty segment 0 with create-only semantics, which claims the
//!   session atomically on stores with conditional writes: a second `create` fails.
//! - `append` keeps bytes in memory; `sync` writes them as the next segment (create-only,
//!   so two writers can never interleave). A sink also writes a segment once
//!   [`SEGMENT_MAX`] bytes are pending, which bounds its memory; that writes early, it
//!   never claims more than `sync` does.
//! - After a failed write the sink refuses everything: whether that segment exists is
//!   unknown, and the recorder ends the session anyway.
//! - `open` lists the session's segments and streams them in numeric order. A crash leaves
//!   whole segments (each is written atomically), so the recording verifies up to the last
//!   synced chunk and reads as truncated; a missing segment in the middle breaks the hash
//!   chain and reads as tampered.

use super::{LocationError, RecordingSink, RecordingSource, RecordingStore, check_session};
use assist_proto::ids::SessionId;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::sync::Arc;

/// Pending bytes at which a sink writes a segment without waiting for `sync`.
pub const SEGMENT_MAX: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ObjectRecordings {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// Where the store is, for people (`file:///…`, `s3://…`, `memory:`).
    display: String,
}

fn io_error(e: object_store::Error) -> std::io::Error {
    let kind = match &e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } => std::io::ErrorKind::AlreadyExists,
        object_store::Error::NotImplemented { .. } => std::io::ErrorKind::Unsupported,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, e)
}

fn segment_name(n: u64) -> String {
    format!("{n:06}.seg")
}

/// The number of a segment object's file name, if it is one.
fn segment_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl ObjectRecordings {
    /// Segments under `prefix` in `store`; `display` says where that is, for people.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: ObjectPath, display: impl Into<String>) -> Self {
        Self { store, prefix, display: display.into() }
    }

    /// In memory, for tests.
    pub fn memory() -> Self {
        Self::new(Arc::new(object_store::memory::InMemory::new()), ObjectPath::default(), "memory:")
    }

    /// Under a local directory, created (readable by this user only) if missing.
    pub fn local(dir: &std::path::Path) -> Result<Self, LocationError> {
        let io = |source| LocationError::Directory { dir: dir.to_owned(), source };
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
            }
        }
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|source| LocationError::ObjectStore { dir: dir.to_owned(), source })?;
        Ok(Self::new(Arc::new(fs), ObjectPath::default(), format!("file://{}", dir.display())))
    }

    /// In an S3-compatible bucket, under `prefix`, configured from the `AWS_*` environment.
    pub fn s3(bucket: &str, prefix: &str) -> Result<Self, LocationError> {
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|source| LocationError::Bucket { bucket: bucket.to_owned(), source })?;
        let display =
            if prefix.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{prefix}") };
        Ok(Self::new(Arc::new(s3), ObjectPath::from(prefix), display))
    }

    fn session_dir(&self, session: &SessionId) -> ObjectPath {
        self.prefix.clone().join(session.as_str())
    }

    /// The session's segment objects in order; empty if it has none.
    async fn segments(&self, session: &SessionId) -> std::io::Result<Vec<ObjectPath>> {
        let dir = self.session_dir(session);
        let mut listing = self.store.list(Some(&dir));
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(io_error)?;
            let name = meta.location.filename().unwrap_or_default();
            let inside = meta.location.prefix_match(&dir).map(|rest| rest.count() == 1).unwrap_or(false);
            match segment_number(name) {
                Some(n) if inside => found.push((n, meta.location)),
                _ => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a segment of this recording", meta.location),
                    ));
                }
            }
        }
        found.sort_by_key(|(n, _)| *n);
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }
}

struct SegmentSink {
    store: Arc<dyn ObjectStore>,
    dir: ObjectPath,
    next: u64,
    pending: Vec<u8>,
    /// Why the sink stopped, after a failed write.
    broken: Option<String>,
}

async fn put_new(store: &dyn ObjectStore, path: &ObjectPath, bytes: PutPayload) -> std::io::Result<()> {
    store.put_opts(path, bytes, PutOptions::from(PutMode::Create)).await.map(|_| ()).map_err(io_error)
}

impl SegmentSink {
    fn check(&self) -> std::io::Result<()> {
        match &self.broken {
            Some(why) => Err(std::io::Error::other(format!("an earlier segment write failed: {why}"))),
            None => Ok(()),
        }
    }

    async fn write_segment(&mut self) -> std::io::Result<()> {
        let path = self.dir.clone().join(segment_name(self.next).as_str());
        let bytes = PutPayload::from(std::mem::take(&mut self.pending));
        match put_new(self.store.as_ref(), &path, bytes).await {
            Ok(()) => {
                self.next += 1;
                Ok(())
            }
            Err(e) => {
                self.broken = Some(e.to_string());
                Err(e)
            }
        }
    }
}

#[async_trait::async_trait]
impl RecordingSink for SegmentSink {
    async fn append(&mut self, parts: Vec<Bytes>) -> std::io::Result<()> {
        self.check()?;
        for part in parts {
            self.pending.extend_from_slice(&part);
        }
        if self.pending.len() >= SEGMENT_MAX { self.write_segment().await } else { Ok(()) }
    }

    async fn sync(&mut self) -> std::io::Result<()> {
        self.check()?;
        if self.pending.is_empty() { Ok(()) } else { self.write_segment().await }
    }
}

/// Streams segment after segment.
struct SegmentSource {
    store: Arc<dyn ObjectStore>,
    segments: std::vec::IntoIter<ObjectPath>,
    current: Option<BoxStream<'static, object_store::Result<Bytes>>>,
}

#[async_trait::async_trait]
impl RecordingSource for SegmentSource {
    async fn next_piece(&mut self) -> std::io::Result<Option<Bytes>> {
        loop {
            if let Some(stream) = &mut self.current {
                match stream.next().await {
                    Some(Ok(piece)) if piece.is_empty() => continue,
                    Some(piece) => return piece.map(Some).map_err(io_error),
                    None => self.current = None,
                }
            }
            let Some(path) = self.segments.next() else { return Ok(None) };
            self.current = Some(self.store.get(&path).await.map_err(io_error)?.into_stream());
        }
    }
}

#[async_trait::async_trait]
impl RecordingStore for ObjectRecordings {
    async fn create(&self, session: &SessionId) -> std::io::Result<Box<dyn RecordingSink>> {
        check_session(session)?;
        let dir = self.session_dir(session);
        // Segment 0 is empty: it claims the session, atomically where the store has
        // conditional writes. The listing refuses the session on stores without them
        // unless two relays create the same session at once.
        if !self.segments(session).await?.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} already exists", self.locate(session)),
            ));
        }
        put_new(self.store.as_ref(), &dir.clone().join(segment_name(0).as_str()), PutPayload::new()).await?;
        Ok(Box::new(SegmentSink {
            store: self.store.clone(),
            dir,
            next: 1,
            pending: Vec::new(),
            broken: None,
        }))
    }

    async fn open(&self, session: &SessionId) -> std::io::Result<Box<dyn RecordingSource>> {
        check_session(session)?;
        let segments = self.segments(session).await?;
        if segments.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no segments under {}", self.locate(session)),
            ));
        }
        Ok(Box::new(SegmentSource {
            store: self.store.clone(),
            segments: segments.into_iter(),
            current: None,
        }))
    }

    fn locate(&self, session: &SessionId) -> String {
        format!("{}/{session}/", self.display.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_by_number() {
        assert_eq!(segment_name(1), "000001.seg");
        assert_eq!(segment_number("000001.seg"), Some(1));
        assert_eq!(segment_number(&segment_name(1_234_567)), Some(1_234_567));
        for bad in ["1.seg", "00000a.seg", "000001.seg.tmp", "000001", ".seg"] {
            assert_eq!(segment_number(bad), None, "{bad}");
        }
    }
}
