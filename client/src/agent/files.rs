//! Serving file channels on the agent: listings, reads and writes, after
//! [`super::channel`] checked the grant and [`super::paths`] resolved the real path.
//!
//! - Every transfer runs as a registered channel: a grant revision that stops covering it,
//!   or its expiry, stops it (a write then keeps its partial file for `--resume`).
//! - Disk work (read or write, and SHA-256 as the bytes pass) runs on a blocking thread
//!   ([`crate::disk`]), a few chunks ahead of the network; the file is read once.
//! - A write goes to `.NAME.assist-part` beside the target, is synced, and is renamed into
//!   place only when the engineer confirms the digest; before that the old file is
//!   untouched. An interrupted write leaves the partial file for `--resume`.
//! - Each read or write ends with the agent's countersignature of the stream's bytes and
//!   a [`FileReport`] to the relay (for its audit log), both sent before the stream is
//!   finished or reset: the relay holds the end from the engineer until they arrive.
//!
//! The stream protocol is described in [`assist_proto::files`].

use super::paths::{self, Roots, WriteTarget};
use super::process::Control;
use super::shared::{AgentState, Digest, countersign, refuse};
use crate::disk::{self, Short};
use assist_net::{codes, write_msg};
use assist_proto::files::{
    Batch, EntryKind, FileDigest, FileEntry, FileReady, FileReport, FileRequest, TransferDirection,
};
use assist_proto::frame::{FrameDecoder, encode};
use assist_proto::grant::Grant;
use assist_proto::ids::SessionId;
use assist_proto::msg::{AgentToRelay, ChannelReply, StreamDigest};
use aws_lc_rs::digest::{Context, SHA256};
use quinn::{RecvStream, SendStream, VarInt};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::sync::Arc;
use tokio::sync::watch;
use tracing::info;

/// Bytes per disk read or write.
const CHUNK: usize = 256 * 1024;
/// Most entries one listing returns.
const MAX_ENTRIES: usize = 200_000;

/// One file channel being served.
struct Ctx {
    state: Arc<AgentState>,
    session: SessionId,
    grant: Grant,
    stream: u64,
    kill: watch::Receiver<bool>,
}

pub(crate) async fn serve(
    state: Arc<AgentState>,
    session: SessionId,
    grant: Grant,
    request: FileRequest,
    mut send: SendStream,
    recv: RecvStream,
) {
    let stream = u64::from(send.id());
    let (control, kill) = Control::for_task();
    if !state.grants.add_running(&session, stream, request.required_capability(), control.clone()) {
        return refuse(&mut send, "the grant no longer covers this".into()).await;
    }
    let ctx = Ctx { state: state.clone(), session: session.clone(), grant, stream, kill };
    match request {
        FileRequest::List { path, recursive } => list(&ctx, path, recursive, send).await,
        FileRequest::Read { path, offset } => read(&ctx, path, offset, send, recv).await,
        FileRequest::Write { path, name, size, mode, force, resume, parents, batch } => {
            let w = WriteReq { path, name, size, mode, force, resume, parents, batch };
            write(&ctx, w, send, recv).await
        }
        r if r.is_change() => {
            super::changes::serve(&state, &session, &ctx.grant, stream, r, send, recv).await
        }
        _ => refuse(&mut send, "unsupported file request".into()).await,
    }
    state.grants.remove_running(&session, stream);
    drop(control);
}

async fn accept(send: &mut SendStream, ready: FileReady) -> bool {
    write_msg(send, &ChannelReply::Accepted).await.is_ok() && write_msg(send, &ready).await.is_ok()
}

async fn killed(mut kill: watch::Receiver<bool>) {
    let _ = kill.wait_for(|k| *k).await;
}

impl Ctx {
    async fn report(&self, report: FileReport) {
        info!(session = %self.session, path = %assist_proto::text::line(&report.path), ok = report.ok, size = report.size, "file transfer");
        let _ = self.state.control.send(AgentToRelay::FileTransferred { report }).await;
    }

    /// Countersigns the stream's bytes, reports the transfer, then ends the stream:
    /// finished if the transfer succeeded, else reset with `failed`. In that order: the
    /// relay passes the end on to the engineer once the report arrives, and the
    /// countersignature must be there by then.
    async fn account(
        &self,
        report: FileReport,
        digests: Vec<StreamDigest>,
        mut send: SendStream,
        failed: VarInt,
    ) {
        countersign(&self.state, &self.session, digests).await;
        let ok = report.ok;
        self.report(report).await;
        if ok {
            let _ = send.finish();
        } else {
            let _ = send.reset(failed);
        }
    }

    fn base_report(&self, path: String, direction: TransferDirection, size: u64, offset: u64) -> FileReport {
        FileReport {
            session: self.session.clone(),
            stream: self.stream,
            path,
            direction,
            size,
            offset,
            agent_sha256: String::new(),
            engineer_sha256: None,
            ok: false,
            error: None,
        }
    }
}

async fn list(ctx: &Ctx, path: String, recursive: bool, mut send: SendStream) {
    let roots = Roots::of(&ctx.grant, false);
    let walked = tokio::task::spawn_blocking(move || {
        let real = paths::resolve_existing(&path, &roots).map_err(|e| e.to_string())?;
        walk(&real, recursive).map_err(|e| format!("{path}: {e}"))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let entries = match walked {
        Ok(e) => e,
        Err(reason) => return refuse(&mut send, reason).await,
    };
    let files = entries.iter().filter(|e| e.kind == EntryKind::File);
    let (count, bytes) = files.fold((0u64, 0u64), |(n, b), e| (n + 1, b + e.size));
    if recursive && let Err(over) = ctx.state.limits.check(count, bytes) {
        return refuse(&mut send, over.to_string()).await;
    }
    let mode = entries.first().map_or(0, |e| e.mode);
    if !accept(&mut send, FileReady { size: bytes, offset: 0, mode, files: count }).await {
        return;
    }
    let mut out = Digest::new(ctx.stream, "out");
    for e in &entries {
        let Ok(frame) = encode(e) else { continue };
        out.update(&frame);
        if send.write_all(&frame).await.is_err() {
            return;
        }
    }
    countersign(&ctx.state, &ctx.session, vec![out.finish()]).await;
    let _ = send.finish();
}

/// The entry of `real` itself, then its children (the whole tree when `recursive`),
/// sorted by name. Symbolic links are listed, never followed.
fn walk(real: &std::path::Path, recursive: bool) -> io::Result<Vec<FileEntry>> {
    let meta = std::fs::symlink_metadata(real)?;
    let mut out = vec![entry(String::new(), &meta)];
    if meta.is_dir() {
        let mut dirs = vec![(real.to_path_buf(), String::new())];
        while let Some((dir, rel)) = dirs.pop() {
            let mut children: Vec<_> = std::fs::read_dir(&dir)?.filter_map(Result::ok).collect();
            children.sort_by_key(|c| c.file_name());
            for c in children.into_iter().rev() {
                let Some(name) = c.file_name().to_str().map(str::to_owned) else { continue };
                let Ok(m) = c.metadata() else { continue };
                let child_rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                if m.is_dir() && recursive {
                    dirs.push((c.path(), child_rel.clone()));
                }
                out.push(entry(child_rel, &m));
                if out.len() > MAX_ENTRIES {
                    return Err(io::Error::other(format!("more than {MAX_ENTRIES} entries")));
                }
            }
        }
    }
    out[1..].sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn entry(path: String, m: &std::fs::Metadata) -> FileEntry {
    let ft = m.file_type();
    let kind = if ft.is_symlink() {
        EntryKind::Symlink
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    FileEntry { path, kind, size: m.len(), mode: m.mode() & 0o7777, modified: m.mtime() * 1000 }
}

async fn read(ctx: &Ctx, path: String, offset: u64, mut send: SendStream, mut recv: RecvStream) {
    let roots = Roots::of(&ctx.grant, false);
    let asked = path.clone();
    let opened =
        tokio::task::spawn_blocking(move || paths::open_read(&asked, &roots).map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
    let (file, meta, real) = match opened {
        Ok(x) => x,
        Err(reason) => return refuse(&mut send, reason).await,
    };
    let size = meta.len();
    if offset > size {
        return refuse(&mut send, format!("{path} has {size} bytes; cannot resume at {offset}")).await;
    }
    if let Err(over) = ctx.state.limits.check(1, size - offset) {
        return refuse(&mut send, over.to_string()).await;
    }
    let ready = FileReady { size, offset, mode: meta.mode() & 0o777, files: 1 };
    if !accept(&mut send, ready).await {
        return;
    }
    let mut report = ctx.base_report(real.display().to_string(), TransferDirection::Download, size, offset);
    let (mut rx, reader) = disk::spawn_reader(file, offset, size, CHUNK);
    let pump = async {
        while let Some(chunk) = rx.recv().await {
            send.write_chunk(chunk).await.map_err(|e| format!("stream: {e}"))?;
        }
        // The engineer's digest follows its last byte: everything it sends, at most a frame.
        recv.read_to_end(70 * 1024).await.map_err(|e| format!("waiting for the engineer's digest: {e}"))
    };
    let outcome = tokio::select! {
        biased;
        _ = killed(ctx.kill.clone()) => Err("stopped: the grant no longer covers it".to_owned()),
        r = pump => r,
    };
    drop(rx);
    let hashes = reader.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()));
    let (hashes, tail) = match (hashes, outcome) {
        (Ok(h), Ok(tail)) => (h, tail),
        (Err(e), _) | (_, Err(e)) => {
            report.error = Some(e);
            ctx.report(report).await;
            let _ = send.reset(codes::SESSION_ENDED);
            return;
        }
    };
    let mut dec = FrameDecoder::new();
    dec.push(&tail);
    report.agent_sha256 = hashes.whole.clone();
    report.engineer_sha256 = dec.next_msg::<FileDigest>().ok().flatten().map(|d| d.sha256);
    report.ok = report.engineer_sha256.as_deref() == Some(hashes.whole.as_str());
    if !report.ok {
        report.error = Some("the engineer's SHA-256 differs from the agent's".into());
    }
    let mut input = Digest::new(ctx.stream, "in");
    input.update(&tail);
    let digests = vec![digest_of(ctx.stream, "out", size - offset, hashes.data), input.finish()];
    ctx.account(report, digests, send, codes::REFUSED).await;
}

fn digest_of(stream: u64, direction: &str, bytes: u64, sha256: String) -> assist_proto::msg::StreamDigest {
    assist_proto::msg::StreamDigest { stream, direction: direction.into(), bytes, sha256 }
}

struct WriteReq {
    path: String,
    name: Option<String>,
    size: u64,
    mode: u32,
    force: bool,
    resume: bool,
    parents: bool,
    batch: Batch,
}

/// Opens (or creates) the partial file and finds where to start: its length when resuming
/// and it is not longer than the file, else 0. Returns the hash of what it holds.
fn open_partial(t: &WriteTarget, resume: bool, size: u64) -> io::Result<(File, u64, Context)> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(t.partial())?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("the partial file is not a regular file"));
    }
    let len = f.metadata()?.len();
    let offset = if resume && len <= size { len } else { 0 };
    f.set_len(offset)?;
    let mut whole = Context::new(&SHA256);
    disk::hash_next(&mut f, offset, &mut whole)?;
    f.seek(io::SeekFrom::Start(offset))?;
    Ok((f, offset, whole))
}

async fn write(ctx: &Ctx, w: WriteReq, mut send: SendStream, mut recv: RecvStream) {
    let limits = ctx.state.limits;
    if let Err(over) =
        limits.check(1, w.size).and_then(|()| limits.check(w.batch.files, w.batch.bytes.max(w.size)))
    {
        return refuse(&mut send, over.to_string()).await;
    }
    let roots = Roots::of(&ctx.grant, true);
    let (path, name, parents, force, resume, size) =
        (w.path.clone(), w.name.clone(), w.parents, w.force, w.resume, w.size);
    let prepared = tokio::task::spawn_blocking(move || {
        let t = paths::resolve_write(&path, name.as_deref(), parents, &roots).map_err(|e| e.to_string())?;
        if t.exists && !force {
            return Err(format!("{} exists; use --force to replace it", t.path().display()));
        }
        let (f, offset, whole) =
            open_partial(&t, resume, size).map_err(|e| format!("{}: {e}", t.partial().display()))?;
        Ok((t, f, offset, whole))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    let (target, file, offset, whole) = match prepared {
        Ok(x) => x,
        Err(reason) => return refuse(&mut send, reason).await,
    };
    if !accept(&mut send, FileReady { size, offset, mode: 0, files: 1 }).await {
        return;
    }
    let mut report =
        ctx.base_report(target.path().display().to_string(), TransferDirection::Upload, size, offset);
    let (tx, writer) = disk::spawn_writer(file, whole, offset > 0);
    let mut left = size - offset;
    let pump = async {
        while left > 0 {
            let batch = disk::next_batch(&mut recv, left).await.map_err(|e| match e {
                Short::Ended => "the engineer's stream ended early".to_owned(),
                Short::Broken(e) => format!("stream: {e}"),
                Short::TooMany => "the engineer sent more bytes than declared".to_owned(),
            })?;
            left -= batch.iter().map(|b| b.len() as u64).sum::<u64>();
            tx.send(batch).await.map_err(|_| "cannot write the file".to_owned())?;
        }
        Ok(())
    };
    let received = tokio::select! {
        biased;
        _ = killed(ctx.kill.clone()) => Err("stopped: the grant no longer covers it".to_owned()),
        r = pump => r,
    };
    drop(tx);
    let written = writer.await.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string()));
    let hashes = match (written, received) {
        (Ok(h), Ok(())) => h,
        (Err(e), _) | (_, Err(e)) => {
            report.error = Some(format!("{e}; the partial file is kept for --resume"));
            ctx.report(report).await;
            let _ = send.reset(codes::SESSION_ENDED);
            let _ = recv.stop(codes::SESSION_ENDED);
            return;
        }
    };
    let _ = std::fs::set_permissions(
        target.partial(),
        std::fs::Permissions::from_mode(match w.mode & 0o777 {
            0 => 0o644,
            m => m,
        }),
    );
    report.agent_sha256 = hashes.whole.clone();
    let frame = encode(&FileDigest { sha256: hashes.whole.clone() }).expect("a digest frame encodes");
    let mut out = Digest::new(ctx.stream, "out");
    out.update(&frame);
    let confirmed = async {
        send.write_all(&frame).await.map_err(|e| format!("stream: {e}"))?;
        match recv.read_chunk(1, true).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("the engineer sent more bytes than declared".to_owned()),
            Err(_) => Err("the engineer did not confirm the digest".to_owned()),
        }
    };
    let confirmed = tokio::select! {
        biased;
        _ = killed(ctx.kill.clone()) => Err("stopped: the grant no longer covers it".to_owned()),
        r = confirmed => r,
    };
    let committed =
        confirmed.and_then(|()| commit(&target).map_err(|e| format!("cannot rename into place: {e}")));
    match committed {
        Ok(()) => {
            report.ok = true;
            report.engineer_sha256 = Some(hashes.whole.clone());
        }
        Err(e) => {
            let _ = std::fs::remove_file(target.partial());
            report.error = Some(e);
        }
    }
    let digests = vec![digest_of(ctx.stream, "in", size - offset, hashes.data), out.finish()];
    ctx.account(report, digests, send, codes::SESSION_ENDED).await;
}

/// Renames the partial file over the target and syncs the directory.
fn commit(t: &WriteTarget) -> io::Result<()> {
    std::fs::rename(t.partial(), t.path())?;
    File::open(&t.dir)?.sync_all()
}
