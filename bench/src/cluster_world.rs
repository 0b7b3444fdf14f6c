//! The cluster figures' worlds: relays on SQLite or PostgreSQL, alone or as a cluster, with
//! one agent, an engineer and an approver, each on the relay a variant puts them on.
//!
//! - [`start_relays`]: one relay on its data directory's SQLite, or on a PostgreSQL
//!   database; or several relays made from one `cluster init` bundle on one database
//!   (`serve --cluster-bundle --relay-name rN`), each with a data directory of its own.
//! - [`Place`]: the organisations and people of the other figures (`alice` of `vendor`,
//!   engineer; `bob` of `acme`, approver), one agent enrolled through the first relay and
//!   run with `--consent approver` (in a cluster it keeps a connection to every relay),
//!   alice logged in on one relay and bob on another.
//! - [`Place::session`]: an engineer's `assist shell` approved by bob's `assist approve`
//!   the moment the client says the request was made (in a cluster, from bob's relay
//!   through the database's notification bus to the relay holding the session).
//!
//! It measures nothing itself.

use crate::procs::{Line, Lines, Proc, run_ok};
use crate::world::{AGENT, Bins, REASON, Relay, START, TICKET};
use anyhow::{Context, Result, anyhow, bail};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "bench-password-123";

/// `n` relays in `dir` (`r1`, `r2`, …): on `database` if given (a cluster when `n > 1`),
/// else one relay on SQLite.
pub fn start_relays(bins: &Bins, dir: &Path, database: Option<&str>, n: usize) -> Result<Vec<Relay>> {
    std::fs::create_dir_all(dir)?;
    let bundle = dir.join("cluster.json");
    if n > 1 && !bundle.exists() {
        run_ok(
            "assist-relay cluster init",
            bins.command("assist-relay").args(["cluster", "init", "--out"]).arg(&bundle),
        )?;
    }
    (1..=n).map(|i| start_relay(bins, dir, database, n, i, "127.0.0.1:0")).collect()
}

/// Relay `i` of [`start_relays`] (again, on `listen`: a relay restarted on its address).
pub fn start_relay(
    bins: &Bins,
    dir: &Path,
    database: Option<&str>,
    n: usize,
    i: usize,
    listen: &str,
) -> Result<Relay> {
    let global: Vec<String> =
        database.map(|d| vec!["--database".to_owned(), d.to_owned()]).unwrap_or_default();
    let name = format!("r{i}");
    let bundle = dir.join("cluster.json");
    let bundle = bundle.to_str().ok_or_else(|| anyhow!("non-UTF-8 path"))?;
    let serve: Vec<&str> =
        if n > 1 { vec!["--cluster-bundle", bundle, "--relay-name", &name] } else { vec![] };
    let log = next_log(&dir.join(&name));
    Relay::start_on(bins, &dir.join(&name), &log, listen, &global, &serve)
        .with_context(|| format!("starting relay {name} in {}", dir.display()))
}

/// `BASE.log`, or `BASE.2.log`, … for a relay started again, so each start has its own.
pub fn next_log(base: &Path) -> PathBuf {
    let mut i = 1;
    loop {
        let name = if i == 1 { "log".to_owned() } else { format!("{i}.log") };
        let path = base.with_extension(name);
        if !path.exists() {
            return path;
        }
        i += 1;
    }
}

/// The people, the organisations and one agent, on started relays.
pub struct Place {
    bins: Bins,
    pub relays: Vec<Relay>,
    /// Held so that the agent runs as long as the place.
    _agent: Proc,
    /// alice's and bob's `ASSIST_CONFIG_DIR`.
    engineer: PathBuf,
    approver: PathBuf,
}

/// One approved session as the engineer's client saw it.
pub struct Approved {
    /// Whole process.
    pub took: Duration,
    /// The client's `requested` line to its `approved by` line.
    pub window: Duration,
}

impl Place {
    /// Sets up the people and the agent; alice logs in on relay `engineer_on` and bob on
    /// relay `approver_on` (indexes into `relays`).
    pub fn start(
        bins: &Bins,
        dir: &Path,
        relays: Vec<Relay>,
        engineer_on: usize,
        approver_on: usize,
    ) -> Result<Self> {
        let first = relays.first().ok_or_else(|| anyhow!("no relay"))?;
        first.admin(bins, &["org", "add", "vendor"], "")?;
        first.admin(bins, &["org", "add", "acme", "--supported-by", "vendor"], "")?;
        for (user, org, role) in [("alice", "vendor", "engineer"), ("bob", "acme", "approver")] {
            let args = ["user", "add", user, "--org", org, "--role", role, "--password-stdin"];
            first.admin(bins, &args, &format!("{PASSWORD}\n"))?;
        }
        let token = first.admin(bins, &["token", "create", "--org", "acme"], "")?;
        let agent_dir = dir.join("agent");
        run_ok(
            "assist-agent enroll",
            bins.command("assist-agent").arg("--data-dir").arg(&agent_dir).args([
                "enroll",
                "--relay",
                &first.addr,
                "--token",
                &token,
                "--ca-fingerprint",
                &first.fingerprint,
                "--name",
                AGENT,
            ]),
        )?;
        let mut cmd = bins.command("assist-agent");
        cmd.arg("--data-dir").arg(&agent_dir).args(["run", "--consent", "approver"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut agent = Proc::spawn("assist-agent", &mut cmd)?;
        let mut err = agent.stderr_lines()?;
        // One connection per relay: a cluster's agent is connected to all before it counts.
        for _ in &relays {
            err.wait_for("assist-agent: connected to", START)?;
        }
        err.forward(Some(File::create(dir.join("agent.log"))?));
        let login = |on: usize, user: &str| -> Result<PathBuf> {
            let relay = relays.get(on).ok_or_else(|| anyhow!("no relay {on}"))?;
            let config = dir.join(user);
            login(bins, relay, user, &config)?;
            Ok(config)
        };
        let engineer = login(engineer_on, "alice")?;
        let approver = login(approver_on, "bob")?;
        Ok(Self { bins: bins.clone(), relays, _agent: agent, engineer, approver })
    }

    /// `assist shell AGENT … -T -- COMMAND…` as alice, approved by bob as soon as the
    /// client says it asked; stdout discarded.
    pub fn session(&self, command: &[&str], limit: Duration) -> Result<Approved> {
        let mut cmd = self.bins.command("assist");
        cmd.env("ASSIST_CONFIG_DIR", &self.engineer)
            .args(["shell", AGENT, "--ticket", TICKET, "--reason", REASON, "-T", "--"])
            .args(command);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let start = Instant::now();
        let mut proc = Proc::spawn("assist shell", &mut cmd)?;
        let mut err: Lines = proc.stderr_lines()?;
        // "assist: session S on AGENT (ticket …) requested; waiting for …"
        let asked = err.wait_for(" requested; ", limit)?;
        let id =
            asked.text.split_whitespace().nth(2).ok_or_else(|| anyhow!("no session id: {}", asked.text))?;
        let mut approve = self.bins.command("assist");
        approve.env("ASSIST_CONFIG_DIR", &self.approver).args(["approve", id]);
        run_ok("assist approve", &mut approve)?;
        let status = proc.wait(limit)?;
        let took = start.elapsed();
        let lines = err.finish(Duration::from_secs(5));
        if !status.success() {
            let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
            bail!("assist shell failed ({status}): {}", text.join("\n"));
        }
        let approved: &Line = lines
            .iter()
            .find(|l| l.text.starts_with("assist: approved by"))
            .ok_or_else(|| anyhow!("the client printed no approval"))?;
        Ok(Approved { took, window: approved.at.saturating_duration_since(asked.at) })
    }
}

/// `assist login` as `user` on `relay`, into `config`.
pub fn login(bins: &Bins, relay: &Relay, user: &str, config: &Path) -> Result<()> {
    crate::world::login(bins, relay, user, PASSWORD, config)
}

/// Stops a relay gracefully (SIGTERM, as a service manager does): a cluster's relay marks
/// itself stopped, so it may start again under its name at once. A killed one may not
/// until the cluster has declared it lost.
pub fn stop(mut relay: Relay) -> Result<()> {
    let pid = relay.proc.pid().to_string();
    run_ok("kill -TERM", Command::new("kill").args(["-TERM", &pid]))?;
    let status = relay.proc.wait(START)?;
    if !status.success() {
        bail!("relay {} stopped with {status}", relay.addr);
    }
    Ok(())
}

/// The database a relay was started on (`--database URL`), if not its data directory's.
pub fn database_of(relay: &Relay) -> Option<String> {
    match relay.global.as_slice() {
        [flag, url] if flag == "--database" => Some(url.clone()),
        _ => None,
    }
}
