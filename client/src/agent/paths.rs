//! Where a file request really points on this machine, and whether the grant reaches it.
//!
//! The relay compared the requested path with the grant's roots as text. Here the agent
//! compares real paths: the roots and the request are resolved on the disk (symbolic
//! links followed, `..` refused), and the result must lie inside a resolved root, compared
//! by whole components. So a symbolic link that points out of a root, a symlinked parent
//! directory, or a root that is itself a link all end where they really lead.
//!
//! - Reads open the resolved path without following a final symbolic link, then (on Linux)
//!   check the opened file's own path again, so a link swapped in meanwhile gains nothing.
//! - Writes never go through a symbolic link: the target's directory is resolved, the
//!   target itself must be absent, a regular file, or (with a name) a directory.
//!
//! Errors name the path as it was asked, never what it resolved to: the engineer must not
//! learn where a refused link points (the customer's log may).
//!
//! This module decides nothing about the grant's signature or expiry (see
//! [`super::channel`]) and moves no data (see [`super::files`]).

use assist_proto::caps::Capability;
use assist_proto::grant::Grant;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Why a path was refused. Every variant names the path as it was asked (or, for a missing
/// parent directory, as written), never where it resolved.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("path {0:?} must be absolute, without '.' or '..'")]
    NotAbsoluteOrDotted(String),
    #[error("{0} leads outside the granted roots")]
    OutsideRoots(String),
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: permission denied")]
    PermissionDenied(String),
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{0} is not a regular file")]
    NotAFile(String),
    #[error("{0} is a directory")]
    IsADirectory(String),
    #[error("{0} is not a directory")]
    NotADirectory(String),
    #[error("{0} is a symbolic link; files are not written through links")]
    Link(String),
    #[error("{0} names no file")]
    NoFileName(String),
    #[error("{0}: no existing ancestor")]
    NoAncestor(String),
    #[error("{0}: a parent is not a directory")]
    ParentNotADirectory(String),
    #[error("{0} is a granted root; it is not renamed or removed")]
    IsARoot(String),
    #[error("{0} exists already")]
    Exists(String),
}

/// The grant's roots of one kind, resolved on this machine. Roots that do not exist are
/// left out: nothing can be inside them.
#[derive(Clone, Debug)]
pub struct Roots(Vec<PathBuf>);

impl Roots {
    pub fn of(grant: &Grant, write: bool) -> Self {
        let roots = grant
            .capabilities
            .iter()
            .flat_map(|c| match (c, write) {
                (Capability::FilesRead { roots }, false) | (Capability::FilesWrite { roots }, true) => {
                    roots.clone()
                }
                _ => Vec::new(),
            })
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        Roots(roots)
    }

    #[cfg(test)]
    pub fn new(roots: &[&Path]) -> Self {
        Roots(roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).collect())
    }

    /// Whether a real (resolved) path is a root or inside one.
    pub fn contain(&self, real: &Path) -> bool {
        self.0.iter().any(|r| real.starts_with(r))
    }

    fn check(&self, asked: &str, real: &Path) -> Result<(), PathError> {
        if self.contain(real) {
            Ok(())
        } else {
            // Where it really leads stays on this machine: the engineer learns only that
            // it leads out.
            Err(PathError::OutsideRoots(asked.to_owned()))
        }
    }
}

/// Refuses relative paths and `.`/`..` components before anything touches the disk.
fn lexical(path: &str) -> Result<&Path, PathError> {
    let p = Path::new(path);
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
        return Err(PathError::NotAbsoluteOrDotted(path.to_owned()));
    }
    Ok(p)
}

fn io_err(path: &str, e: io::Error) -> PathError {
    let path = path.to_owned();
    match e.kind() {
        io::ErrorKind::NotFound => PathError::NotFound(path),
        io::ErrorKind::PermissionDenied => PathError::PermissionDenied(path),
        _ => PathError::Io { path, source: e },
    }
}

/// The real path of an existing file or directory inside the roots.
pub fn resolve_existing(path: &str, roots: &Roots) -> Result<PathBuf, PathError> {
    let p = lexical(path)?;
    let real = std::fs::canonicalize(p).map_err(|e| io_err(path, e))?;
    roots.check(path, &real)?;
    Ok(real)
}

/// Opens a regular file inside the roots for reading.
pub fn open_read(path: &str, roots: &Roots) -> Result<(File, Metadata, PathBuf), PathError> {
    let real = resolve_existing(path, roots)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&real)
        .map_err(|e| io_err(path, e))?;
    let meta = file.metadata().map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(PathError::NotAFile(path.to_owned()));
    }
    check_opened(path, &file, roots)?;
    Ok((file, meta, real))
}

/// Checks where an open file really is (Linux: its `/proc/self/fd` link).
fn check_opened(path: &str, file: &File, roots: &Roots) -> Result<(), PathError> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if let Ok(real) = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())) {
            roots.check(path, &real)?;
        }
    }
    let _ = (path, file, roots);
    Ok(())
}

/// The real path of an entry to rename, remove or create: its parent directory resolved
/// (links followed), its own last component not, so a link is acted on itself and never
/// its target. The entry must lie inside the roots and not be a root itself.
pub fn resolve_entry(path: &str, roots: &Roots) -> Result<PathBuf, PathError> {
    let p = lexical(path)?;
    let name = file_name(path, p)?;
    let parent = p.parent().ok_or_else(|| PathError::NoFileName(path.to_owned()))?;
    let dir = std::fs::canonicalize(parent).map_err(|e| io_err(&parent.display().to_string(), e))?;
    if !dir.is_dir() {
        return Err(PathError::ParentNotADirectory(path.to_owned()));
    }
    let real = dir.join(name);
    roots.check(path, &real)?;
    if roots.0.contains(&real) {
        return Err(PathError::IsARoot(path.to_owned()));
    }
    Ok(real)
}

/// Where a write goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteTarget {
    /// The real directory the file goes in.
    pub dir: PathBuf,
    pub name: String,
    /// Whether a regular file is there now.
    pub exists: bool,
}

impl WriteTarget {
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// The partial file a transfer writes to, beside the target, under a predictable name
    /// so that a later `--resume` finds it.
    pub fn partial(&self) -> PathBuf {
        self.dir.join(format!(".{}.assist-part", self.name))
    }
}

/// Resolves where a write of `path` (or `path/name`, if `path` is a directory) goes.
/// With `parents`, missing directories are created, each inside the roots.
pub fn resolve_write(
    path: &str,
    name: Option<&str>,
    parents: bool,
    roots: &Roots,
) -> Result<WriteTarget, PathError> {
    let p = lexical(path)?;
    let (dir, file_name) = match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() || (m.file_type().is_symlink() && p.is_dir()) => {
            let dir = std::fs::canonicalize(p).map_err(|e| io_err(path, e))?;
            let name = name.ok_or_else(|| PathError::IsADirectory(path.to_owned()))?;
            (dir, name.to_owned())
        }
        Ok(m) if m.file_type().is_symlink() => {
            return Err(PathError::Link(path.to_owned()));
        }
        Ok(_) => (parent_dir(path, p, false, roots)?, file_name(path, p)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            (parent_dir(path, p, parents, roots)?, file_name(path, p)?)
        }
        Err(e) => return Err(io_err(path, e)),
    };
    let target = dir.join(&file_name);
    roots.check(path, &target)?;
    let exists = match std::fs::symlink_metadata(&target) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(PathError::Link(path.to_owned()));
        }
        Ok(m) if m.is_dir() => return Err(PathError::IsADirectory(path.to_owned())),
        Ok(m) if !m.is_file() => return Err(PathError::NotAFile(path.to_owned())),
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(io_err(path, e)),
    };
    Ok(WriteTarget { dir, name: file_name, exists })
}

fn file_name(path: &str, p: &Path) -> Result<String, PathError> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| PathError::NoFileName(path.to_owned()))
}

/// The real parent directory of `p`, created (inside the roots) when `parents` says so.
fn parent_dir(path: &str, p: &Path, parents: bool, roots: &Roots) -> Result<PathBuf, PathError> {
    let parent = p.parent().ok_or_else(|| PathError::NoFileName(path.to_owned()))?;
    match std::fs::canonicalize(parent) {
        Ok(real) if real.is_dir() => return Ok(real),
        Ok(_) => return Err(PathError::NotADirectory(parent.display().to_string())),
        Err(e) if e.kind() != io::ErrorKind::NotFound || !parents => {
            return Err(io_err(&parent.display().to_string(), e));
        }
        Err(_) => {}
    }
    // The deepest existing ancestor, resolved; the rest is created one plain directory at a
    // time, each checked to be inside the roots and not a link.
    let mut missing = Vec::new();
    let mut at = parent;
    let mut real = loop {
        match std::fs::canonicalize(at) {
            Ok(r) => break r,
            Err(_) => {
                missing.push(at.file_name().ok_or_else(|| PathError::NoAncestor(path.to_owned()))?);
                at = at.parent().ok_or_else(|| PathError::NoAncestor(path.to_owned()))?;
            }
        }
    };
    for name in missing.iter().rev() {
        real.push(name);
        roots.check(path, &real)?;
        match std::fs::create_dir(&real) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(path, e)),
        }
        let m = std::fs::symlink_metadata(&real).map_err(|e| io_err(path, e))?;
        if !m.is_dir() {
            return Err(PathError::ParentNotADirectory(path.to_owned()));
        }
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct World {
        _tmp: tempfile::TempDir,
        base: PathBuf,
        roots: Roots,
    }

    /// base/logs (granted, with app.log), base/logs2 (a root-prefix sibling), base/secret.
    fn world() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(tmp.path()).unwrap();
        for d in ["logs/sub", "logs2", "secret"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("logs/app.log"), "ok").unwrap();
        std::fs::write(base.join("logs2/x.log"), "no").unwrap();
        std::fs::write(base.join("secret/key"), "no").unwrap();
        symlink(base.join("secret/key"), base.join("logs/out-link")).unwrap();
        symlink(base.join("secret"), base.join("logs/out-dir")).unwrap();
        symlink(base.join("logs/app.log"), base.join("logs/in-link")).unwrap();
        let roots = Roots::new(&[&base.join("logs")]);
        World { _tmp: tmp, base, roots }
    }

    fn s(p: PathBuf) -> String {
        p.display().to_string()
    }

    #[test]
    fn reads_stay_inside_the_real_roots() {
        let w = world();
        let ok = |rel: &str| open_read(&s(w.base.join(rel)), &w.roots);
        assert!(ok("logs/app.log").is_ok());
        assert!(ok("logs/in-link").is_ok(), "a link that stays inside is fine");
        for escape in ["logs/out-link", "logs/out-dir/key", "logs2/x.log", "secret/key"] {
            let err = ok(escape).unwrap_err();
            assert!(matches!(err, PathError::OutsideRoots(_)), "{escape}: {err}");
            let err = err.to_string();
            assert!(err.contains("outside the granted roots"), "{escape}: {err}");
            if escape.starts_with("logs/") {
                assert!(!err.contains("secret"), "{escape}: the refusal tells where the link points: {err}");
            }
        }
        let dotdot = format!("{}/logs/../secret/key", w.base.display());
        assert!(open_read(&dotdot, &w.roots).unwrap_err().to_string().contains("'..'"));
        assert!(open_read("relative/app.log", &w.roots).is_err());
        assert!(matches!(ok("logs/sub").unwrap_err(), PathError::NotAFile(_)));
    }

    #[test]
    fn a_root_that_is_a_link_is_its_target() {
        let w = world();
        symlink(w.base.join("logs"), w.base.join("logs-link")).unwrap();
        let roots = Roots::new(&[&w.base.join("logs-link")]);
        assert!(open_read(&s(w.base.join("logs/app.log")), &roots).is_ok());
        assert!(open_read(&s(w.base.join("secret/key")), &roots).is_err());
    }

    #[test]
    fn writes_never_go_through_links_or_out_of_roots() {
        let w = world();
        let t = resolve_write(&s(w.base.join("logs/new.txt")), None, false, &w.roots).unwrap();
        assert_eq!((t.path(), t.exists), (w.base.join("logs/new.txt"), false));
        let t = resolve_write(&s(w.base.join("logs")), Some("p.sql"), false, &w.roots).unwrap();
        assert_eq!(t.path(), w.base.join("logs/p.sql"));
        assert!(t.partial().ends_with("logs/.p.sql.assist-part"));
        assert!(resolve_write(&s(w.base.join("logs/app.log")), None, false, &w.roots).unwrap().exists);
        for (rel, why) in [
            ("logs/out-link", "symbolic link"),
            ("logs/in-link", "symbolic link"),
            ("logs/out-dir/new", "outside the granted roots"),
            ("logs2/new", "outside the granted roots"),
            ("logs/missing/new", "no such file"),
        ] {
            let err = resolve_write(&s(w.base.join(rel)), None, false, &w.roots).unwrap_err().to_string();
            assert!(err.contains(why), "{rel}: {err}");
        }
        assert!(matches!(
            resolve_write(&s(w.base.join("logs")), None, false, &w.roots),
            Err(PathError::IsADirectory(_))
        ));
    }

    #[test]
    fn parents_are_created_only_inside_roots() {
        let w = world();
        let t = resolve_write(&s(w.base.join("logs/a/b/c.txt")), None, true, &w.roots).unwrap();
        assert_eq!(t.dir, w.base.join("logs/a/b"));
        assert!(w.base.join("logs/a/b").is_dir());
        let err = resolve_write(&s(w.base.join("logs2/new/c.txt")), None, true, &w.roots).unwrap_err();
        assert!(matches!(err, PathError::OutsideRoots(_)), "{err}");
        assert!(!w.base.join("logs2/new").exists());
        let err = resolve_write(&s(w.base.join("logs/out-dir/new/c.txt")), None, true, &w.roots).unwrap_err();
        assert!(matches!(err, PathError::OutsideRoots(_)), "{err}");
        assert!(!w.base.join("secret/new").exists());
    }

    #[test]
    fn entries_to_change_are_links_themselves_inside_a_root_and_never_a_root() {
        let w = world();
        let entry = |rel: &str| resolve_entry(&s(w.base.join(rel)), &w.roots);
        // A link is acted on itself: its own path, not where it points.
        assert_eq!(entry("logs/out-link").unwrap(), w.base.join("logs/out-link"));
        assert_eq!(entry("logs/new-dir").unwrap(), w.base.join("logs/new-dir"));
        // Through a linked parent that leads out, or beside the root: refused.
        for out in ["logs/out-dir/key", "logs2/x.log", "secret/key"] {
            assert!(matches!(entry(out), Err(PathError::OutsideRoots(_))), "{out}");
        }
        assert!(matches!(entry("logs"), Err(PathError::IsARoot(_))));
        assert!(matches!(entry("logs/missing/x"), Err(PathError::NotFound(_))));
    }
}
