//! `assist logs AGENT [--since 2d] PATH...`: the files under PATH (inside the grant's
//! `files.read` roots, optionally modified within `--since`) as one tar + gzip archive
//! streamed from the agent, with `MANIFEST.json` (size and SHA-256 per file) inside.
//! The archive is written to a partial file and renamed into place when complete.

use super::EngineerError;
use super::config::ConfigDir;
use super::progress::Progress;
use super::session::{self, SessionChoice};
use assist_net::read_msg;
use assist_proto::caps::Capability;
use assist_proto::files::{FileReady, fmt_size};
use assist_proto::ids::AgentName;
use assist_proto::msg::ChannelKind;
use assist_proto::session::Work;
use std::io::Write;
use std::path::Path;

/// Collects the logs into `out`; returns (files, bytes before compression, archive bytes).
pub async fn run(
    cfg: &ConfigDir,
    agent: &AgentName,
    paths: Vec<String>,
    since: Option<i64>,
    out: &Path,
    choice: SessionChoice,
) -> Result<(u64, u64, u64), EngineerError> {
    if paths.is_empty() {
        return Err(EngineerError::Refused("name at least one path to collect, e.g. /var/log/erp".into()));
    }
    let roots = paths.iter().map(|p| p.trim_end_matches('/').to_owned()).collect();
    let live = session::open(cfg, agent, choice, vec![Capability::FilesRead { roots }]).await?;
    let result = async {
        let (_send, mut recv) = live.channel(ChannelKind::Logs { paths, since }).await?;
        let ready: FileReady = match read_msg(&mut recv).await {
            Ok(Some(r)) => r,
            _ => return Err(EngineerError::Refused("the agent did not describe the collection".into())),
        };
        eprintln!("assist: collecting {} files ({}) from {agent}", ready.files, fmt_size(ready.size));
        let partial = out.with_file_name(format!(
            ".{}.assist-part",
            out.file_name().and_then(|n| n.to_str()).unwrap_or("logs.tar.gz")
        ));
        let mut file = std::fs::File::create(&partial)?;
        let mut progress = Progress::new("logs (before compression)", ready.size, 0, None, false);
        let mut written = 0u64;
        loop {
            match recv.read_chunk(1 << 20, true).await {
                Ok(Some(c)) => {
                    file.write_all(&c.bytes)?;
                    written += c.bytes.len() as u64;
                    progress.advance(0).await;
                }
                Ok(None) => break,
                Err(e) => {
                    progress.finish();
                    let _ = std::fs::remove_file(&partial);
                    return Err(EngineerError::Refused(format!("log collection broke off: {e}")));
                }
            }
        }
        progress.finish();
        file.sync_all()?;
        std::fs::rename(&partial, out)?;
        Ok((ready.files, ready.size, written))
    }
    .await;
    live.finish(Work::Logs, result.is_ok()).await;
    result
}
