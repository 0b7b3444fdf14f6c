//! One file over one file channel, in either direction, for `assist cp`.
//!
//! - Download: the bytes go to `.NAME.assist-part` beside the target, hashed as they
//!   arrive; at the end the file is synced, our SHA-256 goes to the agent, and only when the
//!   agent confirms that it matches its own (by finishing its stream) is the file renamed
//!   into place. `--resume` continues a partial file from its length.
//! - Upload: the bytes are read once, hashed as they go; the agent answers with its SHA-256
//!   of what it wrote, and we commit (finish our stream, the agent renames) only if it is
//!   ours. The agent keeps an interrupted partial file for `--resume`.
//!
//! Reading or writing the file, and hashing it, run on a disk thread ([`crate::disk`]);
//! the task here only moves bytes between it and the stream.
//!
//! The wire protocol is described in [`assist_proto::files`]. Choosing which files to copy
//! and where is [`super::cp`]'s work.

use super::EngineerError;
use super::progress::Progress;
use super::session::OpenChannel;
use crate::disk::{self, Short};
use assist_net::{codes, read_msg, write_msg};
use assist_proto::files::{Batch, FileDigest, FileReady, FileRequest, fmt_size};
use assist_proto::msg::ChannelKind;
use aws_lc_rs::digest::{Context, SHA256};
use std::fs::{File, OpenOptions};
use std::io::Seek;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const CHUNK: usize = 256 * 1024;

/// How a copy behaves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub force: bool,
    pub resume: bool,
    /// Bytes per second, if limited.
    pub limit: Option<u64>,
    /// No progress bar even on a terminal (`assist ssh-proxy`: the terminal is ssh's).
    pub quiet: bool,
}

/// A completed transfer.
#[derive(Clone, Debug)]
pub struct Done {
    pub size: u64,
    pub sha256: String,
    pub resumed_from: u64,
}

fn refused(msg: impl Into<String>) -> EngineerError {
    EngineerError::Refused(msg.into())
}

fn partial_of(target: &Path) -> Result<PathBuf, EngineerError> {
    let name =
        target.file_name().and_then(|n| n.to_str()).ok_or_else(|| refused("the target names no file"))?;
    Ok(target.with_file_name(format!(".{name}.assist-part")))
}

async fn ready(recv: &mut quinn::RecvStream) -> Result<FileReady, EngineerError> {
    match read_msg::<FileReady, _>(recv).await {
        Ok(Some(r)) => Ok(r),
        _ => Err(refused("the agent did not describe the file")),
    }
}

/// Copies the remote `path` to the local file `target` (its exact name).
pub async fn download(
    live: &impl OpenChannel,
    path: &str,
    target: &Path,
    opts: Options,
) -> Result<Done, EngineerError> {
    if target.exists() && !opts.force {
        return Err(refused(format!("{} exists; use --force to replace it", target.display())));
    }
    let partial = partial_of(target)?;
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&partial)?;
    let offset = if opts.resume { file.metadata()?.len() } else { 0 };
    file.set_len(offset)?;
    let mut hash = Context::new(&SHA256);
    disk::hash_next(&mut file, offset, &mut hash)?;
    file.seek(std::io::SeekFrom::Start(offset))?;

    let request = FileRequest::Read { path: path.to_owned(), offset };
    let opened = async {
        let (send, mut recv) = live.channel(ChannelKind::Files { request }).await?;
        Ok::<_, EngineerError>((send, ready(&mut recv).await?, recv))
    };
    let (mut send, ready, mut recv) = match opened.await {
        Ok(x) => x,
        Err(e) => {
            // Refused: nothing moved, so nothing is left behind.
            if offset == 0 {
                let _ = std::fs::remove_file(&partial);
            }
            return Err(e);
        }
    };
    if ready.offset != offset {
        return Err(refused("the agent answered for another resume point"));
    }
    let mut progress = Progress::new(path, ready.size, offset, opts.limit, opts.quiet);
    // The disk thread writes and hashes; this task only moves bytes off the stream.
    let (tx, writer) = disk::spawn_writer(file, hash, false);
    let mut left = ready.data_len();
    let mut short = None;
    while left > 0 {
        match disk::next_batch(&mut recv, left).await {
            Ok(batch) => {
                let n: u64 = batch.iter().map(|b| b.len() as u64).sum();
                left -= n;
                if tx.send(batch).await.is_err() {
                    break; // the writer failed: its error follows
                }
                progress.advance(n).await;
            }
            Err(e) => {
                short = Some(e);
                break;
            }
        }
    }
    drop(tx);
    progress.finish();
    // Synced, complete or not.
    let hashes = writer.await.map_err(|e| refused(e.to_string()))??;
    if left > 0 {
        let why = match short {
            Some(Short::TooMany) => "the agent sent more bytes than declared: ",
            _ => "",
        };
        return Err(refused(format!(
            "{why}transfer interrupted after {} of {}; run again with --resume to continue",
            fmt_size(ready.size - left),
            fmt_size(ready.size)
        )));
    }
    let sha256 = hashes.whole;
    write_msg(&mut send, &FileDigest { sha256: sha256.clone() }).await.map_err(|e| refused(e.to_string()))?;
    let _ = send.finish();
    // The agent finishes its stream only if its SHA-256 is ours.
    if recv.read_to_end(1024).await.is_err() {
        let _ = std::fs::remove_file(&partial);
        return Err(refused(format!(
            "{path}: the agent's SHA-256 differs from ours ({sha256}); nothing was kept"
        )));
    }
    let mode = if ready.mode == 0 { 0o644 } else { ready.mode & 0o777 };
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&partial, target)?;
    Ok(Done { size: ready.size, sha256, resumed_from: offset })
}

/// Where an upload goes on the agent.
#[derive(Clone, Debug)]
pub struct Destination {
    pub path: String,
    /// The file's name inside `path` if `path` is a directory.
    pub name: Option<String>,
    pub parents: bool,
    pub batch: Batch,
}

/// Copies the local file `source` to the agent.
pub async fn upload(
    live: &impl OpenChannel,
    source: &Path,
    dest: Destination,
    opts: Options,
) -> Result<Done, EngineerError> {
    let file = File::open(source).map_err(|e| refused(format!("{}: {e}", source.display())))?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refused(format!("{} is not a regular file", source.display())));
    }
    let size = meta.len();
    let request = FileRequest::Write {
        path: dest.path.clone(),
        name: dest.name.clone(),
        size,
        mode: meta.permissions().mode() & 0o777,
        force: opts.force,
        resume: opts.resume,
        parents: dest.parents,
        batch: dest.batch,
    };
    let (mut send, mut recv) = live.channel(ChannelKind::Files { request }).await?;
    let ready = ready(&mut recv).await?;
    if ready.offset > size {
        return Err(refused("the agent's partial file is longer than ours"));
    }
    let mut progress =
        Progress::new(&source.display().to_string(), size, ready.offset, opts.limit, opts.quiet);
    let chunk = if opts.limit.is_some() { 16 * 1024 } else { CHUNK };
    // The disk thread reads and hashes a few chunks ahead; the file is read once.
    let (mut chunks, reader) = disk::spawn_reader(file, ready.offset, size, chunk);
    while let Some(buf) = chunks.recv().await {
        let n = buf.len() as u64;
        if send.write_chunk(buf).await.is_err() {
            progress.finish();
            return Err(refused("transfer interrupted; run again with --resume to continue"));
        }
        progress.advance(n).await;
    }
    progress.finish();
    let hashes = reader
        .await
        .map_err(|e| refused(e.to_string()))?
        .map_err(|e| refused(format!("{}: {e}", source.display())))?;
    let sha256 = hashes.whole;
    let theirs = match read_msg::<FileDigest, _>(&mut recv).await {
        Ok(Some(d)) => d.sha256,
        _ => return Err(refused("the agent did not confirm the file (see its message in the audit log)")),
    };
    if theirs != sha256 {
        let _ = send.reset(codes::REFUSED);
        return Err(refused(format!(
            "{}: the agent's SHA-256 {theirs} differs from ours {sha256}; the file was not replaced",
            source.display()
        )));
    }
    let _ = send.finish();
    if recv.read_to_end(1024).await.is_err() {
        return Err(refused("the agent could not put the file in place"));
    }
    Ok(Done { size, sha256, resumed_from: ready.offset })
}
