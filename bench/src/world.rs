//! The assist side of the benchmark: the real `assist-relay`, `assist-agent` and `assist`
//! binaries on loopback, in a throwaway directory.
//!
//! - The relay runs with the product's defaults (no `RUST_LOG`); its log goes to a file.
//! - One agent runs with `--consent prompt`, and a thread answers `y` the moment the
//!   prompt's last bytes (`Allow? [y/N] `, no newline) arrive on its stdout: the approval
//!   costs machine time only, never a person's.
//! - One engineer (`alice` of `vendor`, which supports `acme`) is logged in.
//!
//! It does not measure anything itself.

use crate::procs::{Proc, run_ok};
use anyhow::{Context, Result, anyhow, bail};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long to wait for any daemon to come up.
pub const START: Duration = Duration::from_secs(60);
/// The agent's name, and the ticket and reason every benchmark session carries.
pub const AGENT: &str = "bench-agent";
pub const TICKET: &str = "BENCH-1";
pub const REASON: &str = "benchmark";
// The start of either question (one capability: `[y/N]`; several: `[y = all, …]`).
const PROMPT: &[u8] = b"Allow? [";

/// Where the product's binaries are (next to `assist-bench` unless told otherwise).
#[derive(Clone, Debug)]
pub struct Bins(pub PathBuf);

impl Bins {
    pub fn locate(explicit: Option<PathBuf>) -> Result<Self> {
        let dir = match explicit {
            Some(d) => d,
            None => std::env::current_exe()?.parent().ok_or_else(|| anyhow!("no exe dir"))?.to_path_buf(),
        };
        let bins = Self(dir);
        for name in ["assist-relay", "assist-agent", "assist"] {
            let path = bins.path(name);
            if !path.is_file() {
                bail!(
                    "{} is missing: build the binaries first (`cargo build --release --bins`)",
                    path.display()
                );
            }
        }
        Ok(bins)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// A command for one of the product's binaries, without logging overrides.
    pub fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(self.path(name));
        cmd.env_remove("RUST_LOG").env_remove("ASSIST_LOG");
        cmd
    }
}

/// A running relay.
pub struct Relay {
    pub proc: Proc,
    pub data: PathBuf,
    pub addr: String,
    pub fingerprint: String,
    /// The console's `IP:PORT`, from its start-up line.
    pub console: Option<String>,
    /// Options given before the subcommand (`--database URL`), for `serve` and for every
    /// administration command.
    pub global: Vec<String>,
    /// Where its stderr (its log) goes.
    pub log: PathBuf,
}

impl Relay {
    /// Starts `assist-relay serve` on `data` (created on first start), 127.0.0.1, port 0,
    /// with `serve_args` added.
    pub fn start(bins: &Bins, data: &Path, log: &Path, serve_args: &[&str]) -> Result<Self> {
        Self::start_on(bins, data, log, "127.0.0.1:0", &[], serve_args)
    }

    /// The same on `listen` (a relay restarted on its address), with `global` options
    /// before the subcommand (`--database URL`).
    pub fn start_on(
        bins: &Bins,
        data: &Path,
        log: &Path,
        listen: &str,
        global: &[String],
        serve_args: &[&str],
    ) -> Result<Self> {
        let mut cmd = bins.command("assist-relay");
        cmd.arg("--data-dir")
            .arg(data)
            .args(global)
            .args(["serve", "--listen", listen, "--console", "127.0.0.1:0"])
            .args(serve_args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(File::create(log)?);
        let mut proc = Proc::spawn("assist-relay", &mut cmd)?;
        let mut out = proc.stdout_lines()?;
        let ready =
            out.wait_for("listening on", START).with_context(|| format!("relay log: {}", log.display()))?;
        // "assist-relay listening on ADDR ca SHA256:HEX"
        let words: Vec<&str> = ready.text.split_whitespace().collect();
        let addr = words.get(3).ok_or_else(|| anyhow!("bad ready line"))?.to_string();
        let fingerprint = words.get(5).ok_or_else(|| anyhow!("bad ready line"))?.to_string();
        let console = out.seen.iter().find_map(|l| {
            let rest = l.text.strip_prefix("assist-relay console on https://")?;
            rest.split_whitespace().next().map(str::to_owned)
        });
        // Keep reading stdout so the relay never blocks on a full pipe.
        out.forward(None);
        Ok(Self {
            proc,
            data: data.to_owned(),
            addr,
            fingerprint,
            console,
            global: global.to_vec(),
            log: log.to_owned(),
        })
    }

    /// Runs an administration command on the data directory, with `stdin` as input.
    pub fn admin(&self, bins: &Bins, args: &[&str], stdin: &str) -> Result<String> {
        let mut cmd = bins.command("assist-relay");
        cmd.arg("--data-dir").arg(&self.data).args(&self.global).args(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        child.stdin.take().ok_or_else(|| anyhow!("stdin"))?.write_all(stdin.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("assist-relay {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// The relay, one auto-approving agent and a logged-in engineer.
pub struct World {
    pub bins: Bins,
    pub relay: Relay,
    pub agent: Proc,
    pub approvals: Arc<AtomicU64>,
    /// The engineer's `ASSIST_CONFIG_DIR`.
    pub config: PathBuf,
}

impl World {
    pub fn start(bins: &Bins, dir: &Path) -> Result<Self> {
        Self::start_with(bins, dir, &[])
    }

    /// The same, with `serve_args` added to the relay's command line.
    pub fn start_with(bins: &Bins, dir: &Path, serve_args: &[&str]) -> Result<Self> {
        Self::start_agent_with(bins, dir, serve_args, &[])
    }

    /// The same, with `agent_args` added to the agent's `run` (the desktop bench's
    /// `--display`).
    pub fn start_agent_with(
        bins: &Bins,
        dir: &Path,
        serve_args: &[&str],
        agent_args: &[&str],
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let relay = Relay::start(bins, &dir.join("relay"), &dir.join("relay.log"), serve_args)?;
        relay.admin(bins, &["org", "add", "vendor"], "")?;
        relay.admin(bins, &["org", "add", "acme", "--supported-by", "vendor"], "")?;
        let password = "bench-password-123";
        relay.admin(
            bins,
            &["user", "add", "alice", "--org", "vendor", "--role", "engineer", "--password-stdin"],
            &format!("{password}\n"),
        )?;
        let token = relay.admin(bins, &["token", "create", "--org", "acme"], "")?;
        let agent_dir = dir.join("agent");
        run_ok(
            "assist-agent enroll",
            bins.command("assist-agent").arg("--data-dir").arg(&agent_dir).args([
                "enroll",
                "--relay",
                &relay.addr,
                "--token",
                &token,
                "--ca-fingerprint",
                &relay.fingerprint,
                "--name",
                AGENT,
            ]),
        )?;
        let (agent, approvals) = start_agent(bins, &agent_dir, &dir.join("agent.log"), agent_args)?;
        let config = dir.join("engineer");
        login(bins, &relay, "alice", password, &config)?;
        Ok(Self { bins: bins.clone(), relay, agent, approvals, config })
    }

    /// `assist shell AGENT --ticket … --reason … EXTRA…` with the engineer's config.
    pub fn shell(&self, extra: &[&str]) -> Command {
        let mut cmd = self.bins.command("assist");
        cmd.env("ASSIST_CONFIG_DIR", &self.config);
        cmd.args(["shell", AGENT, "--ticket", TICKET, "--reason", REASON]).args(extra);
        cmd
    }
}

/// Starts `assist-agent run --consent prompt` and the thread that approves every prompt.
fn start_agent(bins: &Bins, dir: &Path, log: &Path, args: &[&str]) -> Result<(Proc, Arc<AtomicU64>)> {
    let mut cmd = bins.command("assist-agent");
    cmd.arg("--data-dir").arg(dir).args(["run", "--consent", "prompt"]).args(args);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut proc = Proc::spawn("assist-agent", &mut cmd)?;
    let mut stdin = proc.child.stdin.take().ok_or_else(|| anyhow!("agent stdin"))?;
    let mut stdout = proc.child.stdout.take().ok_or_else(|| anyhow!("agent stdout"))?;
    let approvals = Arc::new(AtomicU64::new(0));
    let counter = approvals.clone();
    std::thread::spawn(move || {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            pending.extend_from_slice(&buf[..n]);
            while let Some(at) = pending.windows(PROMPT.len()).position(|w| w == PROMPT) {
                if stdin.write_all(b"y\n").and_then(|()| stdin.flush()).is_err() {
                    return;
                }
                counter.fetch_add(1, Ordering::Relaxed);
                pending.drain(..at + PROMPT.len());
            }
            // Keep only what could be the start of a prompt split across reads.
            let keep = pending.len().min(PROMPT.len());
            pending.drain(..pending.len() - keep);
        }
    });
    let mut err = proc.stderr_lines()?;
    err.wait_for("assist-agent: connected to", START)?;
    // Keep draining the agent's log into a file so it never blocks on a full pipe.
    err.forward(Some(File::create(log)?));
    Ok((proc, approvals))
}

/// Writes `size` bytes of pseudo-random (incompressible) data to `path`.
pub fn make_file(path: &Path, size: u64) -> Result<()> {
    if std::fs::metadata(path).map(|m| m.len() == size).unwrap_or(false) {
        return Ok(());
    }
    let mut file = std::io::BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            // xorshift64: fast, and ssh's optional compression would gain nothing.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// `assist login` as `user` with `password` on `relay`, into the CLI config `config`.
pub fn login(bins: &Bins, relay: &Relay, user: &str, password: &str, config: &Path) -> Result<()> {
    let mut cmd = bins.command("assist");
    cmd.env("ASSIST_CONFIG_DIR", config).args([
        "login",
        "--relay",
        &relay.addr,
        "--user",
        user,
        "--password-stdin",
        "--ca-fingerprint",
        &relay.fingerprint,
    ]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    child.stdin.take().ok_or_else(|| anyhow!("stdin"))?.write_all(format!("{password}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("assist login {user}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}
