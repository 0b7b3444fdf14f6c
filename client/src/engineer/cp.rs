//! `assist cp [-r] [--resume] [--force] SRC DST` and `assist ls AGENT:/path`, scp-style:
//! one side is `AGENT:/absolute/path`, the other a local path.
//!
//! - A session is requested for exactly the capability the copy needs (`files.read` of
//!   the remote source, `files.write` of the remote destination), or `--session S` uses a
//!   live one.
//! - A local destination that is a directory receives the file under its own name, like
//!   scp; a remote destination that is a directory does too (the agent decides, it knows).
//! - `-r` download: the remote tree is listed first (the relay and agent refuse a tree over
//!   their limits before any byte moves), then each regular file is one channel. `-r`
//!   upload: DST/NAME-OF-SRC/... is created on the agent, one channel per file. Symbolic
//!   links are skipped in both directions.
//!
//! Paths are passed as typed: `..` or `//` in a remote path is refused by the relay, not
//! cleaned up here.

use super::EngineerError;
use super::config::ConfigDir;
use super::session::{self, Live, SessionChoice};
use super::transfer::{self, Destination, Done, Options};
use assist_net::read_msg;
use assist_proto::caps::Capability;
use assist_proto::files::{Batch, EntryKind, FileEntry, FileReady, FileRequest, fmt_size};
use assist_proto::ids::AgentName;
use assist_proto::msg::ChannelKind;
use assist_proto::session::Work;
use std::path::{Path, PathBuf};

/// One side of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Side {
    Local(PathBuf),
    Remote { agent: AgentName, path: String },
}

impl Side {
    /// `AGENT:/path` is remote (the part before `:` has no `/`); anything else is local.
    pub fn parse(s: &str) -> Side {
        match s.split_once(':') {
            Some((agent, path)) if !agent.is_empty() && !agent.contains('/') && path.starts_with('/') => {
                Side::Remote { agent: AgentName::new(agent), path: path.to_owned() }
            }
            _ => Side::Local(PathBuf::from(s)),
        }
    }
}

/// A copy as asked.
#[derive(Clone, Debug)]
pub struct CopyRequest {
    pub src: String,
    pub dst: String,
    pub recursive: bool,
    pub opts: Options,
    pub session: SessionChoice,
}

fn bad(msg: impl Into<String>) -> EngineerError {
    EngineerError::Refused(msg.into())
}

/// One status line; it may hold remote file names.
fn say(line: &str) {
    eprintln!("{}", assist_proto::text::line(line));
}

fn report(from: &str, to: &str, done: &Done) {
    let resumed = if done.resumed_from > 0 {
        format!(", resumed at {}", fmt_size(done.resumed_from))
    } else {
        String::new()
    };
    say(&format!("{from} -> {to}: {}{resumed}, sha256 {}", fmt_size(done.size), done.sha256));
}

fn base_name(path: &str) -> Result<String, EngineerError> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| bad(format!("{path} names no file")))
}

/// What can be known here before a session is asked for: nobody is asked to approve a
/// copy that would fail on this side. (Whether a remote file exists is learnt only with
/// consent: the agent tells nothing about its disk before that.)
fn check_local(
    local: &Path,
    remote_path: &str,
    download: bool,
    req: &CopyRequest,
) -> Result<(), EngineerError> {
    if download {
        if req.recursive {
            return Ok(());
        }
        let target = if local.is_dir() { local.join(base_name(remote_path)?) } else { local.to_path_buf() };
        if target.exists() && !req.opts.force {
            return Err(bad(format!("{} exists; use --force to replace it", target.display())));
        }
        let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(bad(format!("{}: no such directory here", parent.display())));
        }
        return Ok(());
    }
    let meta = std::fs::metadata(local).map_err(|e| bad(format!("{}: {e}", local.display())))?;
    if meta.is_dir() && !req.recursive {
        return Err(bad(format!("{} is a directory; use -r", local.display())));
    }
    Ok(())
}

/// Runs the copy; returns the exit code.
pub async fn run(cfg: &ConfigDir, req: CopyRequest) -> Result<i32, EngineerError> {
    match (Side::parse(&req.src), Side::parse(&req.dst)) {
        (Side::Remote { agent, path }, Side::Local(local)) => {
            check_local(&local, &path, true, &req)?;
            let cap = Capability::FilesRead { roots: vec![path.trim_end_matches('/').to_owned()] };
            let live = session::open(cfg, &agent, req.session.clone(), vec![cap]).await?;
            let result = download(&live, &path, &local, &req).await;
            live.finish(Work::Transfer, result.is_ok()).await;
            result.map(|()| 0)
        }
        (Side::Local(local), Side::Remote { agent, path }) => {
            check_local(&local, &path, false, &req)?;
            let cap = Capability::FilesWrite { roots: vec![path.trim_end_matches('/').to_owned()] };
            let live = session::open(cfg, &agent, req.session.clone(), vec![cap]).await?;
            let result = upload(&live, &local, &path, &req).await;
            live.finish(Work::Transfer, result.is_ok()).await;
            result.map(|()| 0)
        }
        (Side::Remote { .. }, Side::Remote { .. }) => Err(bad("copy between two agents is not supported")),
        (Side::Local(_), Side::Local(_)) => Err(bad("one side must be AGENT:/absolute/path")),
    }
}

/// Lists the remote `path` (the whole tree when `recursive`).
pub async fn list(
    live: &Live,
    path: &str,
    recursive: bool,
) -> Result<(FileReady, Vec<FileEntry>), EngineerError> {
    let request = FileRequest::List { path: path.to_owned(), recursive };
    let (_send, mut recv) = live.channel(ChannelKind::Files { request }).await?;
    let ready: FileReady = match read_msg(&mut recv).await {
        Ok(Some(r)) => r,
        _ => return Err(bad("the agent did not describe the listing")),
    };
    let mut entries = Vec::new();
    loop {
        match read_msg::<FileEntry, _>(&mut recv).await {
            Ok(Some(e)) => entries.push(e),
            Ok(None) => return Ok((ready, entries)),
            Err(e) => return Err(bad(format!("listing broke off: {e}"))),
        }
    }
}

async fn download(live: &Live, path: &str, local: &Path, req: &CopyRequest) -> Result<(), EngineerError> {
    let into = |name: &str| if local.is_dir() { local.join(name) } else { local.to_path_buf() };
    let name = base_name(path)?;
    if !req.recursive {
        let target = into(&name);
        let done = transfer::download(live, path, &target, req.opts).await?;
        report(&format!("{}:{path}", live_agent(live)), &target.display().to_string(), &done);
        return Ok(());
    }
    let (ready, entries) = list(live, path, true).await?;
    let top = into(&name);
    say(&format!("{path}: {} files, {}", ready.files, fmt_size(ready.size)));
    for e in &entries {
        let local_path = if e.path.is_empty() { top.clone() } else { top.join(&e.path) };
        let remote = if e.path.is_empty() {
            path.to_owned()
        } else {
            format!("{}/{}", path.trim_end_matches('/'), e.path)
        };
        match e.kind {
            EntryKind::Dir => std::fs::create_dir_all(&local_path)?,
            EntryKind::File => {
                if let Some(parent) = local_path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let done = transfer::download(live, &remote, &local_path, req.opts).await?;
                report(&remote, &local_path.display().to_string(), &done);
            }
            _ => say(&format!("{remote}: skipped (not a regular file or directory)")),
        }
    }
    Ok(())
}

fn live_agent(live: &Live) -> String {
    format!("session {}", live.session)
}

/// Regular files under `dir`, relative, `/`-separated, sorted; links skipped.
fn local_tree(dir: &Path) -> Result<Vec<(String, PathBuf, u64)>, EngineerError> {
    let mut out = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), String::new())];
    while let Some((at, rel)) = todo.pop() {
        for c in std::fs::read_dir(&at)? {
            let c = c?;
            let m = std::fs::symlink_metadata(c.path())?;
            let Some(name) = c.file_name().to_str().map(str::to_owned) else { continue };
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if m.is_dir() {
                todo.push((c.path(), r));
            } else if m.is_file() {
                out.push((r, c.path(), m.len()));
            } else {
                say(&format!("{}: skipped (not a regular file or directory)", c.path().display()));
            }
        }
    }
    out.sort();
    Ok(out)
}

async fn upload(live: &Live, local: &Path, path: &str, req: &CopyRequest) -> Result<(), EngineerError> {
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| bad(format!("{} names no file", local.display())))?;
    let remote_dir = path.trim_end_matches('/');
    if !req.recursive {
        if local.is_dir() {
            return Err(bad(format!("{} is a directory; use -r", local.display())));
        }
        let size = std::fs::metadata(local).map_err(|e| bad(format!("{}: {e}", local.display())))?.len();
        let dest = Destination {
            path: if remote_dir.is_empty() { "/".into() } else { remote_dir.to_owned() },
            name: Some(name),
            parents: false,
            batch: Batch { files: 1, bytes: size },
        };
        let done = transfer::upload(live, local, dest, req.opts).await?;
        report(&local.display().to_string(), path, &done);
        return Ok(());
    }
    let files = local_tree(local)?;
    let batch = Batch { files: files.len() as u64, bytes: files.iter().map(|f| f.2).sum() };
    for (rel, source, _) in &files {
        let dest =
            Destination { path: format!("{remote_dir}/{name}/{rel}"), name: None, parents: true, batch };
        let shown = dest.path.clone();
        let done = transfer::upload(live, source, dest, req.opts).await?;
        report(&source.display().to_string(), &shown, &done);
    }
    Ok(())
}
