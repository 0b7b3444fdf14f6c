//! The `sftp` subsystem of `assist ssh-proxy` (what `sftp` and `scp` speak), served over
//! file channels, so the granted roots, the limits and the audit are those of `assist cp`.
//!
//! - `stat`, `lstat` and directory listings are `List` channels (`files.read`).
//! - A file opened for reading is one `Read` channel, streamed as the client reads it
//!   ([`super::reading`]): both SHA-256 digests compared, `file.transferred` audited.
//! - A file opened for writing is spooled here as the client writes (what it writes
//!   becomes the whole file: `put` truncates, `scp` writes in place and then sets the
//!   size), and uploaded whole at `close` (one `Write`
//!   channel: the agent replaces the file only once both digests agree). A failed upload
//!   fails the `close`, which the client reports. Writes are spooled because a `Write`
//!   channel declares its size first (for the relay's limits and the agent's digest
//!   handshake) and SFTP says a file's size only when it is closed; the spool also takes
//!   writes at any offset, in any order, honestly.
//! - Paths are absolute and normalised here (the working directory is `/`); whatever the
//!   relay or the agent refuses comes back as an SFTP error with its reason: "no such
//!   file" as `NO_SUCH_FILE`, a refusal as `PERMISSION_DENIED`.
//!
//! - `remove`, `rmdir`, `mkdir` and `rename` are file channels of their own
//!   (`FileRequest::Remove`, `Mkdir`, `Rename`: `files.write` on every path they touch,
//!   audited as `file.changed`); a rename never replaces its destination (SFTP v3).
//!
//! Not offered (`OP_UNSUPPORTED`): appending, links, setting attributes by path.

use super::reading::Reading;
use super::say;
use crate::engineer::EngineerError;
use crate::engineer::session::{Channels, OpenChannel};
use crate::engineer::transfer::{self, Destination, Options};
use assist_net::read_msg;
use assist_proto::files::{Batch, EntryKind, FileEntry, FileReady, FileRequest};
use assist_proto::msg::ChannelKind;
use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use std::collections::HashMap;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves SFTP on an SSH channel until the client closes it, then ends the channel with
/// exit status 0 as sshd's sftp-server does (scp and sftp take a missing one as failure).
pub(super) fn serve(channels: Channels, channel: Channel<Msg>) {
    let spool = match tempfile::Builder::new().prefix("assist-sftp-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            say(&format!("sftp: cannot make a spool directory: {e}"));
            return;
        }
    };
    let handler = Sftp { channels, spool, open: HashMap::new(), next: 0, version: None };
    let (ours, theirs) = tokio::io::duplex(PIPE);
    tokio::spawn(russh_sftp::server::run(theirs, handler));
    tokio::spawn(pump(channel, ours));
}

/// Bytes in flight between the SSH channel and the SFTP server.
const PIPE: usize = 512 * 1024;

/// SSH channel ⇄ the SFTP server's end of a pipe; the exit status when either side ends.
async fn pump(channel: Channel<Msg>, pipe: tokio::io::DuplexStream) {
    let (mut from_ssh, to_ssh) = channel.split();
    let (mut rd, mut wr) = tokio::io::split(pipe);
    let up = async {
        while let Some(msg) = from_ssh.wait().await {
            match msg {
                ChannelMsg::Data { data } if wr.write_all(&data).await.is_err() => break,
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_ssh.data_bytes(bytes::Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    // The server answers everything asked before the client's EOF, then ends.
    tokio::join!(up, down);
    let _ = to_ssh.exit_status(0).await;
    let _ = to_ssh.eof().await;
    let _ = to_ssh.close().await;
}

enum Open {
    Read(Reading),
    Write { file: std::fs::File, spool: PathBuf, remote: String, mode: u32, force: bool },
    Dir { entries: Vec<File>, sent: bool },
}

struct Sftp {
    channels: Channels,
    /// Removed (with whatever is left in it) when the subsystem ends.
    spool: tempfile::TempDir,
    open: HashMap<String, Open>,
    next: u64,
    version: Option<u32>,
}

fn ok(id: u32) -> Status {
    Status { id, status_code: StatusCode::Ok, error_message: "Ok".into(), language_tag: "en-US".into() }
}

fn unsupported(what: &str) -> StatusReply {
    let message = format!("{what} is not available through assist");
    say(&format!("sftp: {message}"));
    StatusCode::OpUnsupported.with_message(message)
}

/// An assist refusal or failure as the SFTP status a client understands.
fn status(e: &EngineerError) -> StatusReply {
    let message = e.to_string();
    // OpenSSH's clients show the status code, not always its text: the reason goes to
    // stderr too, which ssh shows.
    say(&format!("sftp: {message}"));
    let lower = message.to_lowercase();
    let code = if lower.contains("no such file") {
        StatusCode::NoSuchFile
    } else if lower.starts_with("refused") {
        StatusCode::PermissionDenied
    } else {
        StatusCode::Failure
    };
    code.with_message(assist_proto::text::inert(&message, 500))
}

fn io_status(e: std::io::Error) -> StatusReply {
    StatusCode::Failure.with_message(e.to_string())
}

/// `path` made absolute (relative to `/`) and normalised: no `.`, `..` or empty parts.
pub(super) fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// SFTP attributes of a listed entry: type and permission bits, size, times.
fn attrs(e: &FileEntry) -> FileAttributes {
    let kind = match e.kind {
        EntryKind::Dir => 0o040000,
        EntryKind::File => 0o100000,
        EntryKind::Symlink => 0o120000,
        EntryKind::Other => 0,
    };
    let mtime = u32::try_from(e.modified.max(0) / 1000).unwrap_or(u32::MAX);
    FileAttributes {
        size: Some(e.size),
        uid: None,
        user: None,
        gid: None,
        group: None,
        permissions: Some(kind | (e.mode & 0o7777)),
        atime: Some(mtime),
        mtime: Some(mtime),
    }
}

impl Sftp {
    fn handle(&mut self, open: Open) -> String {
        self.next += 1;
        let h = self.next.to_string();
        self.open.insert(h.clone(), open);
        h
    }

    fn spool_path(&mut self) -> PathBuf {
        self.next += 1;
        self.spool.path().join(format!("f{}", self.next))
    }

    /// The entries of `path`: itself first, then (a directory's) children.
    async fn list(&self, path: &str, children: bool) -> Result<Vec<FileEntry>, StatusReply> {
        let request = FileRequest::List { path: path.to_owned(), recursive: false };
        let (_send, mut recv) =
            self.channels.channel(ChannelKind::Files { request }).await.map_err(|e| status(&e))?;
        let broke = || StatusCode::Failure.with_message(format!("{path}: the listing broke off"));
        match read_msg::<FileReady, _>(&mut recv).await {
            Ok(Some(_)) => {}
            _ => return Err(broke()),
        }
        let mut entries = Vec::new();
        loop {
            match read_msg::<FileEntry, _>(&mut recv).await {
                Ok(Some(e)) => {
                    entries.push(e);
                    if !children {
                        let _ = recv.stop(assist_net::codes::SESSION_ENDED);
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => return Err(broke()),
            }
        }
        if entries.is_empty() {
            return Err(broke());
        }
        Ok(entries)
    }

    /// A rename, remove or mkdir on the agent: done once the agent finishes the channel
    /// (after its `file.changed` report); a refusal comes back with its reason.
    async fn change(&self, id: u32, request: FileRequest) -> Result<Status, StatusReply> {
        let what = request.path().to_owned();
        let (mut send, mut recv) =
            self.channels.channel(ChannelKind::Files { request }).await.map_err(|e| status(&e))?;
        let broke = || StatusCode::Failure.with_message(format!("{what}: the change broke off"));
        match read_msg::<FileReady, _>(&mut recv).await {
            Ok(Some(_)) => {}
            _ => return Err(broke()),
        }
        let _ = send.finish();
        match recv.read_to_end(1024).await {
            Ok(_) => Ok(ok(id)),
            Err(_) => Err(broke()),
        }
    }

    async fn stat_path(&self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        let path = normalise(&path);
        let entries = self.list(&path, false).await?;
        Ok(Attrs { id, attrs: attrs(&entries[0]) })
    }
}

fn opts(force: bool) -> Options {
    Options { force, resume: false, limit: None, quiet: true }
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        unsupported("this operation")
    }

    async fn init(&mut self, version: u32, _ext: HashMap<String, String>) -> Result<Version, Self::Error> {
        if self.version.replace(version).is_some() {
            return Err(StatusCode::BadMessage.into());
        }
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(Name { id, files: vec![File::dummy(normalise(&path))] })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat_path(id, path).await
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat_path(id, path).await
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let (file, mode) = match self.open.get(&handle) {
            Some(Open::Read(r)) => {
                let attrs = FileAttributes {
                    size: Some(r.size),
                    permissions: Some(0o100000 | r.mode),
                    ..FileAttributes::empty()
                };
                return Ok(Attrs { id, attrs });
            }
            Some(Open::Write { file, mode, .. }) => (file, Some(*mode)),
            _ => return Err(StatusCode::Failure.with_message("not an open file")),
        };
        let meta = file.metadata().map_err(io_status)?;
        let mode = mode.unwrap_or(meta.permissions().mode() & 0o7777);
        let attrs = FileAttributes {
            size: Some(meta.len()),
            permissions: Some(0o100000 | mode),
            ..FileAttributes::empty()
        };
        Ok(Attrs { id, attrs })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let remote = normalise(&filename);
        if pflags.contains(OpenFlags::WRITE) {
            let spool = self.spool_path();
            if pflags.contains(OpenFlags::APPEND) {
                return Err(unsupported("appending to a file"));
            }
            // Whatever the client writes becomes the whole file: `put` truncates, scp
            // writes in place and then sets the size it wrote.
            let force = !pflags.contains(OpenFlags::EXCLUDE);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&spool)
                .map_err(io_status)?;
            let mode = attrs.permissions.map_or(0o644, |p| p & 0o777);
            let handle = self.handle(Open::Write { file, spool, remote, mode, force });
            return Ok(Handle { id, handle });
        }
        let reading = Reading::open(&self.channels, &remote).await.map_err(|e| status(&e))?;
        let handle = self.handle(Open::Read(reading));
        Ok(Handle { id, handle })
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, Self::Error> {
        let Some(Open::Read(reading)) = self.open.get_mut(&handle) else {
            return Err(StatusCode::Failure.with_message("not a file open for reading"));
        };
        let len = len.min(256 * 1024) as usize;
        match reading.read(&self.channels, offset, len).await.map_err(|e| status(&e))? {
            Some(data) => Ok(Data { id, data: data.to_vec() }),
            None => Err(StatusCode::Eof.into()),
        }
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        let Some(Open::Write { file, .. }) = self.open.get(&handle) else {
            return Err(StatusCode::Failure.with_message("not a file open for writing"));
        };
        file.write_all_at(&data, offset).map_err(io_status)?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        match self.open.get_mut(&handle) {
            Some(Open::Write { file, mode, .. }) => {
                if let Some(p) = attrs.permissions {
                    *mode = p & 0o777;
                }
                if let Some(size) = attrs.size {
                    file.set_len(size).map_err(io_status)?;
                }
                Ok(ok(id))
            }
            _ => Err(unsupported("changing a file's attributes")),
        }
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.open.remove(&handle) {
            Some(Open::Read(reading)) => {
                reading.close().await.map_err(|e| status(&e))?;
                Ok(ok(id))
            }
            Some(Open::Write { file, spool, remote, mode, force }) => {
                let size = file.metadata().map_err(io_status)?.len();
                drop(file);
                std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(mode)).map_err(io_status)?;
                let dest = Destination {
                    path: remote,
                    name: None,
                    parents: false,
                    batch: Batch { files: 1, bytes: size },
                };
                let sent = transfer::upload(&self.channels, &spool, dest, opts(force)).await;
                let _ = std::fs::remove_file(&spool);
                sent.map_err(|e| status(&e))?;
                Ok(ok(id))
            }
            Some(Open::Dir { .. }) => Ok(ok(id)),
            None => Err(StatusCode::Failure.with_message("no such handle")),
        }
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        self.change(id, FileRequest::Remove { path: normalise(&filename), dir: false }).await
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        self.change(id, FileRequest::Remove { path: normalise(&path), dir: true }).await
    }

    async fn mkdir(&mut self, id: u32, path: String, attrs: FileAttributes) -> Result<Status, Self::Error> {
        let mode = attrs.permissions.map_or(0o755, |p| p & 0o777);
        self.change(id, FileRequest::Mkdir { path: normalise(&path), mode }).await
    }

    async fn rename(&mut self, id: u32, oldpath: String, newpath: String) -> Result<Status, Self::Error> {
        self.change(id, FileRequest::Rename { path: normalise(&oldpath), to: normalise(&newpath) }).await
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let path = normalise(&path);
        let entries = self.list(&path, true).await?;
        if entries[0].kind != EntryKind::Dir {
            return Err(StatusCode::Failure.with_message(format!("{path} is not a directory")));
        }
        let entries = entries.iter().skip(1).map(|e| File::new(e.path.clone(), attrs(e))).collect();
        let handle = self.handle(Open::Dir { entries, sent: false });
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.open.get_mut(&handle) {
            Some(Open::Dir { entries, sent }) if !*sent && !entries.is_empty() => {
                *sent = true;
                Ok(Name { id, files: std::mem::take(entries) })
            }
            Some(Open::Dir { .. }) => Err(StatusCode::Eof.into()),
            _ => Err(StatusCode::Failure.with_message("not an open directory")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalise;

    #[test]
    fn paths_are_made_absolute_and_normal() {
        for (given, want) in [
            (".", "/"),
            ("", "/"),
            ("/srv/drop/", "/srv/drop"),
            ("srv//drop/./a", "/srv/drop/a"),
            ("/srv/drop/../../..", "/"),
            ("/srv/x/../drop/f", "/srv/drop/f"),
        ] {
            assert_eq!(normalise(given), want, "{given}");
        }
    }
}
