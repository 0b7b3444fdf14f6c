//! A fleet of real agents: N `assist-agent run` processes, each with a data directory of
//! its own, so that reconnecting is the product's own code (`client/src/agent/relays.rs`,
//! `backoff.rs`: one connection per relay of a cluster, each with its own jittered
//! backoff), not a model of it.
//!
//! - [`enroll`]: N join tokens stored in-process with the administration command's code,
//!   then N `assist-agent enroll` runs through one relay, a few at a time.
//! - [`Fleet::start`] / [`Fleet::add`]: agents run with `--consent approver` and the
//!   default backoff; each one's log goes to `agent.log` in its directory.
//! - [`read_log`]: when each agent connected, read from a relay's log (the relay's own
//!   clock, `agent connected` lines).
//!
//! One agent process is a single-threaded runtime; the harness reads the RSS of one.

use crate::Ctx;
use crate::procs::{Proc, rss_bytes, run_ok};
use crate::world::{Bins, Relay};
use anyhow::{Context, Result, anyhow};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::SystemTime;

/// Enrollments running at once.
const PARALLEL: usize = 8;

/// Enrolls `n` agents of `org` named `PREFIX-00001`, … through `relay`; returns their
/// data directories (under `dir`).
pub fn enroll(
    ctx: &Ctx,
    relay: &Relay,
    org: &str,
    prefix: &str,
    n: usize,
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let database = crate::cluster_world::database_of(relay);
    let tokens = crate::tokio()?.block_on(crate::load::join_tokens(&relay.data, database, org, n))?;
    let work: Vec<(String, PathBuf, String)> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let name = format!("{prefix}-{:05}", i + 1);
            let d = dir.join(&name);
            (name, d, t)
        })
        .collect();
    let bins = &ctx.bins;
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = work
            .chunks(n.div_ceil(PARALLEL).max(1))
            .map(|chunk| {
                s.spawn(move || -> Result<()> {
                    for (name, d, token) in chunk {
                        run_ok(
                            "assist-agent enroll",
                            bins.command("assist-agent").arg("--data-dir").arg(d).args([
                                "enroll",
                                "--relay",
                                &relay.addr,
                                "--token",
                                token,
                                "--ca-fingerprint",
                                &relay.fingerprint,
                                "--name",
                                name,
                            ]),
                        )?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| anyhow!("an enrollment thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(work.into_iter().map(|(_, d, _)| d).collect())
}

/// The running agents; killed when dropped.
pub struct Fleet {
    procs: Vec<Proc>,
}

impl Fleet {
    pub fn start(bins: &Bins, dirs: &[PathBuf]) -> Result<Self> {
        let mut fleet = Self { procs: Vec::with_capacity(dirs.len()) };
        fleet.add(bins, dirs)?;
        Ok(fleet)
    }

    /// Starts more agents.
    pub fn add(&mut self, bins: &Bins, dirs: &[PathBuf]) -> Result<()> {
        for d in dirs {
            let mut cmd = bins.command("assist-agent");
            cmd.arg("--data-dir").arg(d).args(["run", "--consent", "approver"]);
            let log = File::create(d.join("agent.log"))?;
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
            self.procs.push(Proc::spawn("assist-agent", &mut cmd)?);
        }
        Ok(())
    }

    /// Agents whose process has ended (an agent ends only when a relay refuses it for
    /// good).
    pub fn exited(&mut self) -> usize {
        self.procs
            .iter_mut()
            .map(|p| matches!(p.child.try_wait(), Ok(Some(_))))
            .filter(|&ended| ended)
            .count()
    }

    /// `VmRSS` and `RssAnon` of the first agent.
    pub fn rss_of_one(&self) -> Result<(u64, u64)> {
        rss_bytes(self.procs.first().ok_or_else(|| anyhow!("no agent"))?.pid())
    }
}

/// A relay's log, read as far as it is written.
pub struct RelayLog {
    /// The first `agent connected` time of each agent.
    pub connected: HashMap<String, SystemTime>,
    /// `agent disconnected` lines.
    pub disconnected: usize,
    /// Every connection and disconnection: when, which agent, and whether it connected.
    pub events: Vec<(SystemTime, String, bool)>,
    /// When it said it was listening.
    pub listening: Option<SystemTime>,
}

/// Reads a relay's log (tracing's default format: an RFC 3339 time first, the agent's
/// span as `agent{agent=NAME}`).
pub fn read_log(log: &Path) -> Result<RelayLog> {
    let text = std::fs::read_to_string(log).with_context(|| log.display().to_string())?;
    let mut out =
        RelayLog { connected: HashMap::new(), disconnected: 0, events: Vec::new(), listening: None };
    for line in text.lines() {
        let at = || line.split_whitespace().next().and_then(|t| humantime::parse_rfc3339(t).ok());
        let name = || line.split("agent{agent=").nth(1).and_then(|r| r.split('}').next()).map(str::to_owned);
        if line.contains("assist-relay listening on") {
            out.listening = at();
        } else if line.ends_with(": agent disconnected") {
            out.disconnected += 1;
            if let (Some(name), Some(at)) = (name(), at()) {
                out.events.push((at, name, false));
            }
        } else if line.contains(": agent connected ")
            && let (Some(name), Some(at)) = (name(), at())
        {
            out.connected.entry(name.clone()).or_insert(at);
            out.events.push((at, name, true));
        }
    }
    Ok(out)
}
