//! File channels, diagnostics and log collection on the wire: what the engineer asks for,
//! what it needs from the grant, and the frames that describe a transfer.
//!
//! A file channel moves one file (or one listing) per stream, so that each transfer is one
//! channel of the recording and one audit event:
//!
//! - the engineer opens a [`crate::msg::ChannelKind::Files`] channel with a [`FileRequest`];
//!   the relay checks the path's form ([`FileRequest::validate`]) and the grant for the
//!   exact path ([`FileRequest::required_capability`]), the agent checks both again and
//!   resolves the real path on its disk;
//! - the agent answers `Accepted` and then one [`FileReady`] frame (sizes), which the relay
//!   reads, checks against its limits and passes on before it splices anything;
//! - the data direction then carries exactly the file's bytes from `offset` on (agent →
//!   engineer for a read, engineer → agent for a write), nothing else, so the recording
//!   holds the file itself; the other direction carries one [`FileDigest`] frame from the
//!   receiving side (the SHA-256 of the whole file);
//! - a read: the engineer sends its digest after the last byte; the agent compares it
//!   with its own, reports both to the relay, and finishes its stream if they match (resets
//!   it if not). A write: the agent sends its digest after the last byte; the engineer
//!   finishes its stream to commit (the agent then renames the file into place) or resets
//!   it to abandon.
//!
//! This module does no I/O; paths are checked as text here and on the disk by the agent.

use crate::caps::{Capability, PathLengthError, is_normal_absolute};
use crate::ids::SessionId;
use serde::{Deserialize, Serialize};

/// What an engineer asks a file channel to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileRequest {
    /// A directory's entries (or a file's own entry); the whole tree when `recursive`.
    /// The agent sends [`FileEntry`] frames, then finishes.
    List { path: String, recursive: bool },
    /// A regular file, from byte `offset` on (a resumed download).
    Read { path: String, offset: u64 },
    /// A regular file of `size` bytes. If `path` is an existing directory, the file is
    /// `path/name`. `resume` continues the partial file a previous attempt left.
    Write {
        path: String,
        name: Option<String>,
        size: u64,
        /// Permission bits (masked to 0o777 by the agent).
        mode: u32,
        /// Replace an existing file.
        force: bool,
        resume: bool,
        /// Create missing parent directories (inside the granted roots).
        parents: bool,
        /// The whole transfer this file belongs to (a recursive copy), for the limits.
        batch: Batch,
    },
    /// Renames `path` to `to` (both inside `files.write` roots); refused if `to` exists.
    /// A symbolic link is renamed itself, never followed.
    Rename { path: String, to: String },
    /// Removes a file or symbolic link (`dir` false) or an empty directory (`dir` true).
    Remove { path: String, dir: bool },
    /// Creates one directory (its parent must exist) with permission bits `mode`.
    Mkdir { path: String, mode: u32 },
}

/// Size of a whole transfer: one file, or every file of a recursive copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub files: u64,
    pub bytes: u64,
}

impl FileRequest {
    pub fn path(&self) -> &str {
        match self {
            FileRequest::List { path, .. }
            | FileRequest::Read { path, .. }
            | FileRequest::Write { path, .. }
            | FileRequest::Rename { path, .. }
            | FileRequest::Remove { path, .. }
            | FileRequest::Mkdir { path, .. } => path,
        }
    }

    /// Every path the request touches: a rename's two, else its one.
    pub fn paths(&self) -> Vec<&str> {
        match self {
            FileRequest::Rename { path, to } => vec![path, to],
            other => vec![other.path()],
        }
    }

    /// Whether the request changes the tree (rename, remove, mkdir) rather than moving a
    /// file's bytes: the agent answers it with a [`FileChange`], not a [`FileReport`].
    pub fn is_change(&self) -> bool {
        matches!(self, FileRequest::Rename { .. } | FileRequest::Remove { .. } | FileRequest::Mkdir { .. })
    }

    /// The narrowest capability that allows this request: the exact path.
    pub fn required_capability(&self) -> Capability {
        let roots =
            self.paths().into_iter().map(|p| p.trim_end_matches('/').to_owned()).map(non_empty).collect();
        match self {
            FileRequest::List { .. } | FileRequest::Read { .. } => Capability::FilesRead { roots },
            _ => Capability::FilesWrite { roots },
        }
    }

    /// Checks the request's form: an absolute, normalised path (no `.`, `..`, empty
    /// components or backslashes), a plain file name.
    pub fn validate(&self) -> Result<(), BadPath> {
        self.paths().into_iter().try_for_each(check_path)?;
        if let FileRequest::Write { name: Some(name), .. } = self
            && !is_plain_name(name)
        {
            return Err(BadPath::NotAPlainName(name.clone()));
        }
        Ok(())
    }
}

fn non_empty(p: String) -> String {
    if p.is_empty() { "/".into() } else { p }
}

/// A path or file name in a request that is not well formed. Decided on the text alone,
/// before any disk is looked at.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    #[error(transparent)]
    Length(#[from] PathLengthError),
    #[error("path {0:?} must be absolute and normalised (no '.', '..' or empty components)")]
    NotNormal(String),
    #[error("file name {0:?} must be one plain path component")]
    NotAPlainName(String),
}

/// An absolute, normalised path of at most 4096 bytes (PATH_MAX), each component at most
/// 255 (NAME_MAX).
pub fn check_path(path: &str) -> Result<(), BadPath> {
    crate::caps::check_path_length("path", path, crate::caps::PATH_MAX, "PATH_MAX")?;
    if !is_normal_absolute(path) {
        return Err(BadPath::NotNormal(path.to_owned()));
    }
    Ok(())
}

/// One path component: not empty, not `.` or `..`, no `/`, `\` or NUL.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Sent by the agent right after `Accepted`, before any data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReady {
    /// The whole file's size (read, write), or the tree's total (recursive list).
    pub size: u64,
    /// Where the data starts: the resume point of a read or write, else 0.
    pub offset: u64,
    /// Permission bits of the file read (0 for a write or a list).
    pub mode: u32,
    /// Regular files covered: 1 for a read or write, the tree's count for a list.
    pub files: u64,
}

impl FileReady {
    /// Bytes the data direction will carry.
    pub fn data_len(&self) -> u64 {
        self.size.saturating_sub(self.offset)
    }
}

/// The receiving side's SHA-256 (hex) of the whole file, sent after the last byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub sha256: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the listed path, `/`-separated; empty for the listed path itself.
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mode: u32,
    /// Unix milliseconds.
    pub modified: i64,
}

/// Which way a transfer went, from the engineer's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferDirection {
    /// Agent → engineer.
    Download,
    /// Engineer → agent.
    Upload,
}

/// The agent's account of one finished (or failed) transfer, for the relay's audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    pub session: SessionId,
    /// The agent's stream id of the channel.
    pub stream: u64,
    /// The real path on the agent's disk.
    pub path: String,
    pub direction: TransferDirection,
    /// The file's size.
    pub size: u64,
    /// Where the transfer resumed (0 if it did not).
    pub offset: u64,
    pub agent_sha256: String,
    /// The engineer's digest (a download) or the digest the engineer confirmed (an upload);
    /// `None` if the transfer broke off before it.
    pub engineer_sha256: Option<String>,
    /// Whether the transfer completed with matching digests (and, for a write, the file
    /// is in place).
    pub ok: bool,
    /// Why not, when not.
    pub error: Option<String>,
}

/// The agent's account of a rename, remove or mkdir it did, for the relay's audit log
/// (`file.changed`). Only changes that were made are reported: one that failed is refused
/// with its reason before anything is spliced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub session: SessionId,
    /// The agent's stream id of the channel.
    pub stream: u64,
    /// `rename`, `remove`, `rmdir` or `mkdir`.
    pub op: String,
    /// The real path on the agent's disk.
    pub path: String,
    /// A rename's real destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Largest transfer the relay or an agent allows: bytes of one transfer and files of one
/// recursive transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferLimits {
    pub max_bytes: u64,
    pub max_files: u64,
}

impl Default for TransferLimits {
    /// 2 GiB and 10,000 files: a generous log bundle or patch set, not a disk image.
    fn default() -> Self {
        Self { max_bytes: 2 << 30, max_files: 10_000 }
    }
}

impl TransferLimits {
    /// Refuses a transfer of `files` files and `bytes` bytes over the limits.
    pub fn check(&self, files: u64, bytes: u64) -> Result<(), OverLimit> {
        if bytes > self.max_bytes {
            return Err(OverLimit::Bytes { bytes, max: self.max_bytes });
        }
        if files > self.max_files {
            return Err(OverLimit::Files { files, max: self.max_files });
        }
        Ok(())
    }
}

/// A transfer over a [`TransferLimits`] limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    #[error("transfer of {} is over the limit of {}", fmt_size(*bytes), fmt_size(*max))]
    Bytes { bytes: u64, max: u64 },
    #[error("transfer of {files} files is over the limit of {max} files")]
    Files { files: u64, max: u64 },
}

/// `1.5 GiB`, `12 KiB`, `7 B`.
pub fn fmt_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[i]) }
}

/// Parses `123`, `64K`, `10MiB`, `2G`, `2GiB` (binary units; `B` optional).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 =
        num.parse().map_err(|_| format!("invalid size {s:?}: expected e.g. 2GiB, 500M or 1048576"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("invalid size unit in {s:?}: expected K, M, G or T")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_over_a_limit_says_which() {
        let component = format!("/var/{}/x", "a".repeat(5000));
        let err = check_path(&component).unwrap_err().to_string();
        assert!(err.contains("component of 5000 bytes") && err.contains("NAME_MAX"), "{err}");
        assert!(err.len() < 300, "the message does not repeat the path: {err}");
        let long = format!("/{}", vec!["b".repeat(100); 700].join("/"));
        let err = check_path(&long).unwrap_err().to_string();
        assert!(err.contains(&format!("{} bytes", long.len())) && err.contains("PATH_MAX"), "{err}");
        assert!(err.len() < 300, "{err}");
        assert!(check_path(&format!("/{}", "c".repeat(255))).is_ok());
        assert!(matches!(check_path("/a/../b"), Err(BadPath::NotNormal(_))));
    }

    fn write(path: &str, name: Option<&str>) -> FileRequest {
        FileRequest::Write {
            path: path.into(),
            name: name.map(Into::into),
            size: 1,
            mode: 0o644,
            force: false,
            resume: false,
            parents: false,
            batch: Batch { files: 1, bytes: 1 },
        }
    }

    #[test]
    fn requests_need_the_exact_path() {
        let read = FileRequest::Read { path: "/var/log/erp/app.log".into(), offset: 0 };
        assert_eq!(read.required_capability().to_string(), "files.read:/var/log/erp/app.log");
        assert!(read.required_capability().within(&"files.read:/var/log/erp".parse().unwrap()));
        assert!(!read.required_capability().within(&"files.read:/var/log/er".parse().unwrap()));
        assert_eq!(write("/opt/", None).required_capability().to_string(), "files.write:/opt");
        let root = FileRequest::List { path: "/".into(), recursive: false };
        assert_eq!(root.required_capability().to_string(), "files.read:/");
    }

    #[test]
    fn unnormalised_paths_and_names_are_refused() {
        for bad in ["relative", "/a/../etc", "/a/./b", "/a//b", "", "/a\\b"] {
            assert!(FileRequest::Read { path: bad.into(), offset: 0 }.validate().is_err(), "{bad}");
        }
        for bad in ["..", ".", "a/b", ""] {
            assert!(write("/opt", Some(bad)).validate().is_err(), "{bad}");
        }
        assert!(write("/opt/x", Some("patch.sql")).validate().is_ok());
        let rename = |a: &str, b: &str| FileRequest::Rename { path: a.into(), to: b.into() };
        assert!(rename("/opt/a", "/opt/../etc/b").validate().is_err());
        assert!(rename("/opt/a", "/opt/b").validate().is_ok());
    }

    #[test]
    fn changes_need_write_on_every_path_they_touch() {
        let rename = FileRequest::Rename { path: "/srv/drop/a".into(), to: "/srv/keep/a".into() };
        let cap = rename.required_capability();
        assert_eq!(cap.to_string(), "files.write:/srv/drop/a,/srv/keep/a");
        assert!(!cap.within(&"files.write:/srv/drop".parse().unwrap()));
        assert!(cap.within(&"files.write:/srv".parse().unwrap()));
        let rm = FileRequest::Remove { path: "/srv/drop/a".into(), dir: false };
        assert_eq!(rm.required_capability().to_string(), "files.write:/srv/drop/a");
        let mk = FileRequest::Mkdir { path: "/srv/drop/d".into(), mode: 0o755 };
        assert!(mk.is_change() && !write("/opt", None).is_change());
    }

    #[test]
    fn limits_and_sizes() {
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("64k").unwrap(), 64 << 10);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("2X").is_err() && parse_size("G").is_err());
        let l = TransferLimits { max_bytes: 100, max_files: 2 };
        assert!(l.check(2, 100).is_ok());
        assert_eq!(l.check(3, 1), Err(OverLimit::Files { files: 3, max: 2 }));
        assert!(l.check(3, 1).unwrap_err().to_string().contains("3 files"));
        assert!(matches!(l.check(1, 101), Err(OverLimit::Bytes { bytes: 101, .. })));
        assert!(l.check(1, 101).unwrap_err().to_string().contains("over the limit"));
        assert_eq!(fmt_size(1536), "1.5 KiB");
    }
}
