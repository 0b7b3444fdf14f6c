//! Where recordings live, behind one trait, so that the recorder and the verifier do not
//! know whether they write to a directory or to an object store.
//!
//! - [`LocalDir`] is the embedded default: one append-only file per session,
//!   `<dir>/<session>.arec`.
//! - [`ObjectRecordings`] writes through `object_store` (a local directory, memory, or an
//!   S3-compatible bucket). Object stores cannot append, so each [`RecordingSink::sync`]
//!   writes what was appended since the last one as the next numbered segment object.
//! - [`open`] picks a backend from the `--recordings` option.
//!
//! The contract every backend keeps (checked by the conformance suite in `conformance.rs`):
//! `create` refuses a session that already has a recording and a session id that could
//! name anything but its own recording; after `sync` returns, everything appended before it
//! is durable and reads back in order; bytes appended but not synced may or may not be read
//! back, and are never claimed durable. It does not decide what is recorded or verify it.

mod local;
mod local_writer;
mod object;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod conformance_s3;

pub(crate) use local::FileSource;
pub use local::LocalDir;
pub use object::{ObjectRecordings, SEGMENT_MAX};

use assist_proto::ids::SessionId;
use bytes::Bytes;
use std::path::Path;
use std::sync::Arc;

/// An open recording being appended to.
#[async_trait::async_trait]
pub trait RecordingSink: Send {
    /// Adds bytes after the ones before: the concatenation of `parts`, in order. Not
    /// durable until [`RecordingSink::sync`]. The parts are handed over (often shared with
    /// the stream they were forwarded on), so a sink copies each byte at most once, to
    /// where it writes from.
    async fn append(&mut self, parts: Vec<Bytes>) -> std::io::Result<()>;
    /// Makes everything appended so far durable, or fails.
    async fn sync(&mut self) -> std::io::Result<()>;
    /// Hands everything appended so far to the storage (for a file, `write()` accepted it:
    /// a full disk fails here), without waiting for it to be durable. A sink that cannot
    /// tell the two apart makes it durable.
    async fn write_out(&mut self) -> std::io::Result<()> {
        self.sync().await
    }
}

/// A recording read back piece by piece, in order, so that a reader holds one piece at a
/// time however long the recording is.
#[async_trait::async_trait]
pub trait RecordingSource: Send {
    /// The next bytes of the recording; `None` at its end. Pieces are never empty.
    async fn next_piece(&mut self) -> std::io::Result<Option<Bytes>>;
}

#[async_trait::async_trait]
pub trait RecordingStore: Send + Sync + std::fmt::Debug + 'static {
    /// Starts a new recording; fails if one exists for the session.
    async fn create(&self, session: &SessionId) -> std::io::Result<Box<dyn RecordingSink>>;
    /// Opens a recording for reading; `NotFound` if there is none.
    async fn open(&self, session: &SessionId) -> std::io::Result<Box<dyn RecordingSource>>;
    /// Reads a whole recording into memory.
    async fn read(&self, session: &SessionId) -> std::io::Result<Vec<u8>> {
        let mut source = self.open(session).await?;
        let mut out = Vec::new();
        while let Some(piece) = source.next_piece().await? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }
    /// Where the recording is, for people.
    fn locate(&self, session: &SessionId) -> String;
}

/// A [`RecordingSource`] over bytes already in memory (a file given to `verify --file`
/// after reading, or a test's copy).
pub struct MemorySource(Option<Bytes>);

impl MemorySource {
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self((!bytes.is_empty()).then_some(bytes))
    }
}

#[async_trait::async_trait]
impl RecordingSource for MemorySource {
    async fn next_piece(&mut self) -> std::io::Result<Option<Bytes>> {
        Ok(self.0.take())
    }
}

/// Longest session id a store accepts.
const MAX_SESSION_ID: usize = 128;

/// Refuses a session id that is not a plain name: it becomes a file or object name, and
/// must never reach outside the recordings' place whatever it contains. The relay's own
/// ids (`s-<hex>`) always pass.
pub fn check_session(session: &SessionId) -> std::io::Result<()> {
    let s = session.as_str();
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if s.is_empty() || s.len() > MAX_SESSION_ID || !s.chars().all(plain) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad session id {s:?}: expected letters, digits, '-' or '_'"),
        ));
    }
    Ok(())
}

/// Opens the recordings' place named by `--recordings`:
///
/// - a path (no `scheme://`): a [`LocalDir`] there;
/// - `file:///ABSOLUTE/DIR`: segment objects under that directory (object_store's local
///   file system), created if missing;
/// - `s3://BUCKET[/PREFIX]`: segment objects in an S3-compatible bucket, configured from the
///   standard `AWS_*` environment variables (`AWS_ENDPOINT`, `AWS_REGION`,
///   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`, …).
///
/// `None` is the default, `<data_dir>/recordings`.
pub fn open(spec: Option<&str>, data_dir: &Path) -> Result<Arc<dyn RecordingStore>, LocationError> {
    let Some(spec) = spec else {
        return Ok(Arc::new(LocalDir::new(data_dir.join("recordings"))));
    };
    let spec_owned = || spec.to_owned();
    if let Some(path) = spec.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(LocationError::RelativeFileUrl(spec_owned()));
        }
        return Ok(Arc::new(ObjectRecordings::local(Path::new(path))?));
    }
    if let Some(rest) = spec.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(LocationError::NoBucket(spec_owned()));
        }
        return Ok(Arc::new(ObjectRecordings::s3(bucket, prefix.trim_matches('/'))?));
    }
    if let Some((scheme, _)) = spec.split_once("://") {
        return Err(LocationError::UnknownScheme { spec: spec_owned(), scheme: scheme.to_owned() });
    }
    if spec.is_empty() {
        return Err(LocationError::Empty);
    }
    Ok(Arc::new(LocalDir::new(spec)))
}

/// Why the recordings' place named by `--recordings` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    #[error("{0}: a file URL needs an absolute path (file:///DIR)")]
    RelativeFileUrl(String),
    #[error("{0}: no bucket (s3://BUCKET/PREFIX)")]
    NoBucket(String),
    #[error("{spec}: unknown scheme {scheme:?}: use a path, file:///DIR or s3://BUCKET/PREFIX")]
    UnknownScheme { spec: String, scheme: String },
    #[error("the recordings location is empty")]
    Empty,
    /// The local directory of a `file://` location could not be made or opened.
    #[error("{}: {source}", dir.display())]
    Directory { dir: std::path::PathBuf, source: std::io::Error },
    #[error("{}: {source}", dir.display())]
    ObjectStore { dir: std::path::PathBuf, source: object_store::Error },
    #[error("s3://{bucket}: {source}")]
    Bucket { bucket: String, source: object_store::Error },
}
