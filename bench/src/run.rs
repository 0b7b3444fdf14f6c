//! One benchmark run: resolve the settings, set up the world (relay, agent, engineer,
//! and the two sshd), run the chosen figures, then print the table and write the JSON
//! with the commit and the machine it ran on.
//!
//! It measures nothing itself; each figure's module does.

use crate::Opts;
use crate::report::{self, Figure};
use crate::ssh::{self, Ssh};
use crate::world::{Bins, World};
use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

/// The sizes and counts a run uses, after defaults.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    pub quick: bool,
    pub rounds: usize,
    pub setup_rounds: usize,
    pub bulk_bytes: u64,
    pub keystrokes: usize,
    pub keystroke_gap_ms: u64,
    pub idle_ns: Vec<usize>,
    pub idle_rounds: usize,
    pub idle_settle_s: f64,
    pub cluster_agents: usize,
    pub cluster_down_s: f64,
    /// Whether missing Debian packages (postgresql) may be installed.
    pub install: bool,
}

impl Settings {
    fn from(o: &Opts) -> Self {
        let q = o.quick;
        Settings {
            quick: q,
            rounds: o.rounds.unwrap_or(if q { 2 } else { 5 }),
            setup_rounds: o.setup_rounds.unwrap_or(if q { 2 } else { 10 }),
            bulk_bytes: o.bulk_mib.unwrap_or(if q { 16 } else { 1024 }) << 20,
            keystrokes: o.keystrokes.unwrap_or(if q { 50 } else { 1000 }),
            keystroke_gap_ms: 2,
            idle_ns: o.idle.clone().unwrap_or_else(|| if q { vec![100] } else { vec![1000, 10_000] }),
            idle_rounds: o.idle_rounds.unwrap_or(if q { 1 } else { 3 }),
            idle_settle_s: o.idle_settle.unwrap_or(if q { 1.0 } else { 12.0 }),
            cluster_agents: o.cluster_agents.unwrap_or(if q { 20 } else { 1000 }),
            cluster_down_s: o.cluster_down.unwrap_or(if q { 1.0 } else { 12.0 }),
            install: !q && !o.no_install,
        }
    }
}

/// Which figures to run.
pub struct Which(Vec<&'static str>);

impl Which {
    pub fn all() -> Self {
        Self(vec!["bulk", "cp", "echo", "setup", "tunnel", "idle", "console", "watch", "cluster"])
    }

    pub fn only(name: &'static str) -> Self {
        Self(vec![name])
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains(&name)
    }
}

/// What the figures share.
pub struct Ctx {
    pub settings: Settings,
    pub bins: Bins,
    /// The run's temporary directory.
    pub dir: PathBuf,
    pub world: Option<World>,
    /// The ssh baselines, or why they are skipped.
    pub ssh: Result<Ssh, String>,
}

impl Ctx {
    pub fn world(&self) -> Result<&World> {
        self.world.as_ref().ok_or_else(|| anyhow!("the assist world was not started"))
    }

    /// A command for one of this binary's helper subcommands.
    pub fn helper(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
        cmd.args(args);
        cmd
    }
}

#[derive(Serialize)]
struct Machine {
    nproc: usize,
    cpu: String,
    mem_total: String,
    kernel: String,
    loadavg_start: String,
    loadavg_end: String,
    ssh_version: String,
}

#[derive(Serialize)]
struct Report<'a> {
    tool: &'static str,
    /// `git rev-parse HEAD` when the run started.
    commit: String,
    /// Whether the work tree had uncommitted changes to tracked files then.
    dirty: bool,
    started_at: String,
    duration_s: f64,
    machine: Machine,
    bins: String,
    settings: &'a Settings,
    figures: &'a [Figure],
    notes: Vec<String>,
}

fn sh(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
            String::from_utf8_lossy(&text).trim().to_owned()
        })
        .unwrap_or_default()
}

fn proc_field(file: &str, key: &str) -> String {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with(key)).map(|l| l.split(':').nth(1).unwrap_or("").trim().into())
        })
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_owned()
}

fn default_json(started: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| "target".into());
    target.join("bench").join(format!("{}.json", started.replace(':', "")))
}

/// Runs the chosen figures and reports them.
pub fn bench(which: Which, opts: Opts) -> Result<()> {
    let settings = Settings::from(&opts);
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let clock = Instant::now();
    let loadavg_start = loadavg();
    // Taken before anything runs: the work tree may move on during a long run.
    let commit = sh("git", &["rev-parse", "HEAD"]);
    let dirty = !sh("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    let bins = Bins::locate(opts.bin_dir.clone())?;
    let tmp = tempfile::Builder::new().prefix("assist-bench.").tempdir()?;
    let dir = tmp.path().to_owned();
    eprintln!("assist-bench: binaries from {}, working in {}", bins.0.display(), dir.display());

    let needs_ssh_world = ["bulk", "cp", "echo", "setup", "tunnel"].iter().any(|w| which.has(w));
    let needs_world = needs_ssh_world || which.has("watch");
    let needs_ssh = needs_ssh_world && !opts.no_ssh;
    let ssh = if !needs_ssh {
        Err(if opts.no_ssh { "--no-ssh".to_owned() } else { "not needed".to_owned() })
    } else {
        ssh::ensure_installed(!opts.quick && !opts.no_install)
            .and_then(|()| Ssh::start(&dir.join("ssh")))
            .map_err(|e| format!("{e:#}"))
    };
    if let Err(why) = &ssh {
        eprintln!("assist-bench: ssh baselines skipped: {why}");
    }
    let world =
        if needs_world { Some(World::start(&bins, &dir).context("starting relay and agent")?) } else { None };
    let ctx = Ctx { settings, bins, dir: dir.clone(), world, ssh };

    let mut figures: Vec<Figure> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    // A figure that fails is reported as such; the others still count.
    let mut record = |name: &str, got: Result<Vec<Figure>>| match got {
        Ok(f) => {
            eprint!("{}", report::table(&f));
            figures.extend(f);
        }
        Err(e) => {
            eprintln!("assist-bench: {name} failed: {e:#}");
            failures.push(format!("{name} failed: {e:#}"));
        }
    };
    if which.has("bulk") {
        record("bulk", crate::bulk::run(&ctx));
    }
    if which.has("cp") {
        record("cp", crate::cp::run(&ctx));
    }
    if which.has("echo") {
        record("echo", crate::echo::run(&ctx));
    }
    if which.has("setup") {
        record("setup", crate::setup::run(&ctx));
    }
    if which.has("tunnel") {
        record("tunnel", crate::tunnel::run(&ctx));
    }
    if which.has("watch") {
        record("watch", crate::watch::run(&ctx));
    }
    let approvals = ctx.world.as_ref().map(|w| w.approvals.load(std::sync::atomic::Ordering::Relaxed));
    // The idle figure restarts relays of its own: stop the shared one first.
    let Ctx { settings, bins, dir, world, ssh } = ctx;
    drop(world);
    let ctx = Ctx { settings, bins, dir, world: None, ssh };
    if which.has("idle") {
        record("idle", crate::idle::run(&ctx));
    }
    if which.has("console") {
        record("console", crate::console::run(&ctx));
    }
    if which.has("cluster") {
        crate::cluster::run(&ctx, &mut record);
    }

    let mut notes = vec![
        "ratios are subject median / baseline median; targets are from issue 3 and are not asserted"
            .to_owned(),
        "everything runs on 127.0.0.1 on this machine; other processes on it (builds) add noise".to_owned(),
    ];
    if let Some(n) = approvals {
        notes.push(format!("the harness answered {n} consent prompts at the agent"));
    }
    if let Err(why) = &ctx.ssh {
        notes.push(format!("ssh baselines skipped: {why}"));
    }
    notes.extend(failures.iter().cloned());
    let report = Report {
        tool: "assist-bench",
        commit,
        dirty,
        started_at: started_at.clone(),
        duration_s: clock.elapsed().as_secs_f64(),
        machine: Machine {
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            cpu: proc_field("/proc/cpuinfo", "model name"),
            mem_total: proc_field("/proc/meminfo", "MemTotal"),
            kernel: sh("uname", &["-r"]),
            loadavg_start,
            loadavg_end: loadavg(),
            ssh_version: sh("ssh", &["-V"]),
        },
        bins: ctx.bins.0.display().to_string(),
        settings: &ctx.settings,
        figures: &figures,
        notes,
    };
    print!("{}", report::table(&figures));
    for n in &report.notes {
        println!("note: {n}");
    }
    println!(
        "commit {}{}, {} cores, load {} -> {}",
        report.commit,
        if report.dirty { " (dirty)" } else { "" },
        report.machine.nproc,
        report.machine.loadavg_start,
        report.machine.loadavg_end
    );
    let path = opts.json.clone().unwrap_or_else(|| default_json(&started_at));
    write_json(&path, &report)?;
    println!("json: {}", path.display());
    if opts.keep {
        println!("kept: {}", tmp.keep().display());
    }
    if !failures.is_empty() {
        anyhow::bail!("{} figure group(s) failed: {}", failures.len(), failures.join("; "));
    }
    Ok(())
}

fn write_json(path: &Path, report: &Report<'_>) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")
        .with_context(|| path.display().to_string())
}
