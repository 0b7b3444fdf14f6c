//! Log collection on the agent (`assist logs`): the regular files under the asked paths,
//! each inside a `files.read` root of the grant, optionally only those modified since a
//! time, packed as tar + gzip and streamed, with `MANIFEST.json` (size and SHA-256 of
//! each file) as the archive's last entry.
//!
//! Paths are resolved like every file channel's ([`super::paths`]); symbolic links inside
//! the trees are skipped, never followed. Files are read once: hashed as they are packed.
//! Like a read, the agent sends a [`FileReady`] with the count and total before any byte,
//! so the relay's limits and the agent's own apply first.

use super::paths::{self, Roots};
use super::shared::{AgentState, Digest, countersign, refuse};
use assist_net::{codes, write_msg};
use assist_proto::files::FileReady;
use assist_proto::grant::Grant;
use assist_proto::ids::SessionId;
use assist_proto::msg::ChannelReply;
use aws_lc_rs::digest::{Context, SHA256};
use quinn::{RecvStream, SendStream};
use serde::Serialize;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One file in the manifest.
#[derive(Debug, Serialize)]
struct ManifestEntry {
    path: String,
    size: u64,
    sha256: String,
    modified: i64,
}

/// The files to pack: real path and size, sorted, no duplicates.
fn collect(paths: &[String], since: Option<i64>, roots: &Roots) -> Result<Vec<(PathBuf, u64)>, String> {
    let mut out = Vec::new();
    for p in paths {
        let real = paths::resolve_existing(p, roots).map_err(|e| e.to_string())?;
        let mut todo = vec![real];
        while let Some(at) = todo.pop() {
            let m = std::fs::symlink_metadata(&at).map_err(|e| format!("{}: {e}", at.display()))?;
            if m.is_dir() {
                for c in std::fs::read_dir(&at).map_err(|e| format!("{}: {e}", at.display()))?.flatten() {
                    todo.push(c.path());
                }
            } else if m.is_file() && since.is_none_or(|s| m.mtime() * 1000 >= s) {
                out.push((at, m.len()));
            }
            if out.len() > 1_000_000 {
                return Err("more than a million files".into());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A `Write` that hands chunks to the network task.
struct Sink {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.tx.blocking_send(chunk).map_err(|_| io::Error::other("the stream closed"))?;
        }
        Ok(())
    }
}

/// A reader that hashes what passes.
struct Hashing<R> {
    inner: R,
    ctx: Context,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        Ok(n)
    }
}

fn pack(files: Vec<(PathBuf, u64)>, roots: Roots, tx: mpsc::Sender<Vec<u8>>) -> Result<(), String> {
    let gz = flate2::write::GzEncoder::new(Sink { tx, buf: Vec::new() }, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut manifest = Vec::new();
    for (path, size) in files {
        let shown = path.display().to_string();
        // Opened again through the same checks: a file swapped for a link meanwhile is refused.
        let Ok((file, meta, _)) = paths::open_read(&shown, &roots) else { continue };
        let len = meta.len().min(size);
        let mut header = tar::Header::new_gnu();
        header.set_size(len);
        header.set_mode(meta.mode() & 0o777);
        header.set_mtime(meta.mtime().max(0) as u64);
        let mut reader = Hashing { inner: file.take(len), ctx: Context::new(&SHA256) };
        let name = shown.trim_start_matches('/');
        tar.append_data(&mut header, name, &mut reader).map_err(|e| format!("{shown}: {e}"))?;
        let sha256 = hex::encode(reader.ctx.finish().as_ref());
        manifest.push(ManifestEntry { path: shown, size: len, sha256, modified: meta.mtime() * 1000 });
    }
    let body =
        serde_json::to_vec_pretty(&serde_json::json!({ "files": manifest })).map_err(|e| e.to_string())?;
    let mut header = tar::Header::new_gnu();
    header.set_size(body.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "MANIFEST.json", body.as_slice()).map_err(|e| e.to_string())?;
    let mut sink = tar.into_inner().and_then(|gz| gz.finish()).map_err(|e| e.to_string())?;
    sink.flush().map_err(|e| e.to_string())
}

pub(crate) async fn serve(
    state: Arc<AgentState>,
    session: SessionId,
    grant: Grant,
    paths: Vec<String>,
    since: Option<i64>,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let roots = Roots::of(&grant, false);
    let roots_asked = paths.clone();
    let r2 = roots.clone();
    let found = tokio::task::spawn_blocking(move || collect(&paths, since, &r2))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let files = match found {
        Ok(f) => f,
        Err(reason) => return refuse(&mut send, reason).await,
    };
    let total: u64 = files.iter().map(|(_, s)| s).sum();
    if let Err(over) = state.limits.check(files.len() as u64, total) {
        return refuse(&mut send, over.to_string()).await;
    }
    let ready = FileReady { size: total, offset: 0, mode: 0, files: files.len() as u64 };
    if write_msg(&mut send, &ChannelReply::Accepted).await.is_err()
        || write_msg(&mut send, &ready).await.is_err()
    {
        return;
    }
    let _ = recv.stop(codes::OK);
    let stream = u64::from(send.id());
    // Stopped like any channel when a grant revision or expiry no longer covers it.
    let (control, kill) = super::process::Control::for_task();
    let killed = async move {
        let mut kill = kill;
        let _ = kill.wait_for(|k| *k).await;
    };
    tokio::pin!(killed);
    let cap = assist_proto::caps::Capability::FilesRead { roots: roots_asked.clone() };
    if !state.grants.add_running(&session, stream, cap, control.clone()) {
        let _ = send.reset(codes::SESSION_ENDED);
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
    let packer = tokio::task::spawn_blocking(move || pack(files, roots, tx));
    let mut out = Digest::new(stream, "out");
    let mut stopped = false;
    loop {
        tokio::select! {
            chunk = rx.recv() => match chunk {
                Some(chunk) => {
                    out.update(&chunk);
                    if send.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            () = &mut killed => {
                stopped = true;
                break;
            }
        }
    }
    drop(rx);
    let packed = matches!(packer.await, Ok(Ok(()))) && !stopped;
    state.grants.remove_running(&session, stream);
    // Countersigned before the end: the relay passes the end on once this arrives.
    countersign(&state, &session, vec![out.finish()]).await;
    if packed {
        let _ = send.finish();
    } else {
        let _ = send.reset(codes::SESSION_ENDED);
    }
}
