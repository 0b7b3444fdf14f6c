//! Renames, removals and new directories on the agent (`FileRequest::Rename`, `Remove`,
//! `Mkdir`), inside the grant's `files.write` roots, after [`super::channel`] checked the
//! grant for every path the request touches.
//!
//! - Each path is resolved by [`paths::resolve_entry`]: its parent's links followed, its own
//!   last component not (a link is renamed or removed itself), inside a root and not a root.
//! - The change is made before the channel is answered: one that fails is refused with
//!   its reason (the relay audits the refusal). One that was made is accepted, and once
//!   the engineer has finished its side (so the relay has registered the stream), reported
//!   to the relay ([`FileChange`], audited as `file.changed`) before the stream finishes.
//! - A rename never replaces what is at its destination (`RENAME_NOREPLACE`); a directory
//!   is removed only when empty.
//!
//! It moves no file's bytes (see [`super::files`]).

use super::paths::{self, PathError, Roots};
use super::shared::{AgentState, refuse};
use assist_net::write_msg;
use assist_proto::files::{FileChange, FileReady, FileRequest};
use assist_proto::grant::Grant;
use assist_proto::ids::SessionId;
use assist_proto::msg::{AgentToRelay, ChannelReply};
use quinn::{RecvStream, SendStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use tracing::info;

/// What was done: the op's name and the real paths.
struct Done {
    op: &'static str,
    path: String,
    to: Option<String>,
}

pub(crate) async fn serve(
    state: &Arc<AgentState>,
    session: &SessionId,
    grant: &Grant,
    stream: u64,
    request: FileRequest,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let roots = Roots::of(grant, true);
    let done = tokio::task::spawn_blocking(move || apply(&request, &roots).map_err(|e| e.to_string()))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let done = match done {
        Ok(d) => d,
        Err(reason) => return refuse(&mut send, reason).await,
    };
    info!(%session, op = done.op, path = %assist_proto::text::line(&done.path), "file changed");
    let ready = FileReady { size: 0, offset: 0, mode: 0, files: 0 };
    if write_msg(&mut send, &ChannelReply::Accepted).await.is_err()
        || write_msg(&mut send, &ready).await.is_err()
    {
        return;
    }
    // The engineer finishes its side once it has the answer; the relay splices it only
    // after registering the stream, so the report below always finds it.
    let _ = recv.read_to_end(1024).await;
    let change =
        FileChange { session: session.clone(), stream, op: done.op.to_owned(), path: done.path, to: done.to };
    let _ = state.control.send(AgentToRelay::FileChanged { change }).await;
    let _ = send.finish();
}

fn apply(request: &FileRequest, roots: &Roots) -> Result<Done, PathError> {
    let io = |path: &str| {
        let path = path.to_owned();
        move |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => PathError::NotFound(path),
            std::io::ErrorKind::PermissionDenied => PathError::PermissionDenied(path),
            _ => PathError::Io { path, source: e },
        }
    };
    let shown = |p: &Path| p.display().to_string();
    match request {
        FileRequest::Rename { path, to } => {
            let from = paths::resolve_entry(path, roots)?;
            std::fs::symlink_metadata(&from).map_err(io(path))?;
            let dest = paths::resolve_entry(to, roots)?;
            rename_no_replace(&from, &dest).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => PathError::Exists(to.clone()),
                _ => io(path)(e),
            })?;
            Ok(Done { op: "rename", path: shown(&from), to: Some(shown(&dest)) })
        }
        FileRequest::Remove { path, dir: false } => {
            let real = paths::resolve_entry(path, roots)?;
            let meta = std::fs::symlink_metadata(&real).map_err(io(path))?;
            if meta.is_dir() {
                return Err(PathError::IsADirectory(path.clone()));
            }
            std::fs::remove_file(&real).map_err(io(path))?;
            Ok(Done { op: "remove", path: shown(&real), to: None })
        }
        FileRequest::Remove { path, dir: true } => {
            let real = paths::resolve_entry(path, roots)?;
            let meta = std::fs::symlink_metadata(&real).map_err(io(path))?;
            if !meta.is_dir() {
                return Err(PathError::NotADirectory(path.clone()));
            }
            std::fs::remove_dir(&real).map_err(io(path))?;
            Ok(Done { op: "rmdir", path: shown(&real), to: None })
        }
        FileRequest::Mkdir { path, mode } => {
            let real = paths::resolve_entry(path, roots)?;
            std::fs::DirBuilder::new().mode(mode & 0o777).create(&real).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => PathError::Exists(path.clone()),
                _ => io(path)(e),
            })?;
            Ok(Done { op: "mkdir", path: shown(&real), to: None })
        }
        other => Err(PathError::NoFileName(other.path().to_owned())),
    }
}

/// `rename(2)` that fails with `AlreadyExists` instead of replacing the destination.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(std::io::Error::from)
}
