//! Idle agents: the relay's resident memory per connected agent, against a bare quinn
//! server holding the same number of idle connections, at each N.
//!
//! A relay of its own (its own data directory) enrolls the largest N agents once through
//! `assist-bench idle-enroll`. Then per round and per N, each server in turn:
//! 1. starts fresh (the relay on that data directory, or `assist-bench bare-server` with
//!    the relay's certificate), and after a second its `VmRSS` is read;
//! 2. one `assist-bench idle-load` process connects N agents (one UDP socket, one
//!    certificate each, `Hello`/`Welcome` on the control stream) and says when all are in;
//! 3. after the settle time (by default longer than the 10 s keep-alive interval, so a
//!    keep-alive has gone both ways) `VmRSS` is read again, with the CPU time used while
//!    idle, and the load process confirms that every connection is still up.
//!
//! Bytes per connection = (RSS after − RSS before) ÷ connections. A note splits it: the
//! anonymous part (`RssAnon`: heap and stacks, what connections hold) and the rest, pages
//! of files, mostly the server's own code paged in as the first connections run it (a
//! fixed cost, which at N = 1,000 comes to about 1.5 KB per connection for either server).
//! It does not look further (heap profiles are for `valgrind --tool=massif`, by hand).

use crate::procs::{Proc, cpu_seconds, rss_bytes};
use crate::report::{Better, Figure, Series, median};
use crate::world::{Relay, START};
use crate::{Ctx, quic};
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Server {
    Relay,
    Bare,
}

pub(crate) struct Sample {
    pub failed: usize,
    pub bytes_per_conn: f64,
    pub idle_cpu_pct: f64,
    pub connect_s: f64,
    pub rss_before: u64,
    pub rss_after: u64,
    /// Growth of anonymous memory (`RssAnon`) per connection.
    pub anon_per_conn: f64,
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let data = ctx.dir.join("idle-relay");
    let ids = ctx.dir.join("idle-identities.jsonl");
    let max_n = ctx.settings.idle_ns.iter().copied().max().unwrap_or(0);
    let fingerprint = {
        let relay = Relay::start(&ctx.bins, &data, &ctx.dir.join("idle-relay.log"), &[])?;
        relay.admin(&ctx.bins, &["org", "add", "idle"], "")?;
        enroll(ctx, &relay, "idle", max_n, &ids)?;
        relay.fingerprint.clone()
    };

    let ns = ctx.settings.idle_ns.clone();
    let mut samples: Vec<[Vec<Sample>; 2]> = ns.iter().map(|_| [vec![], vec![]]).collect();
    for round in 1..=ctx.settings.idle_rounds {
        for (i, &n) in ns.iter().enumerate() {
            for (j, server) in [Server::Relay, Server::Bare].into_iter().enumerate() {
                let name = if server == Server::Relay { "relay" } else { "bare quinn" };
                eprintln!("assist-bench: idle round {round}/{}: {name}, N = {n}", ctx.settings.idle_rounds);
                let s = measure(ctx, server, n, &data, &ids, &fingerprint)
                    .with_context(|| format!("idle agents, {name}, N = {n}"))?;
                samples[i][j].push(s);
            }
        }
    }

    let mut figures = Vec::new();
    for (i, n) in ns.iter().enumerate() {
        let [relay, bare] = &samples[i];
        let pick = |v: &[Sample], f: fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
        let mut mem = Figure::new(
            &format!("idle_bytes_per_agent_n{n}"),
            &format!("idle agents: server RSS per connection, N = {n}"),
            "bytes",
            Better::Lower,
            "assist relay",
        )
        .target("bare quinn", 1.0);
        mem.push(Series::new("assist relay", pick(relay, |s| s.bytes_per_conn)));
        mem.push(Series::new("bare quinn", pick(bare, |s| s.bytes_per_conn)));
        for (label, v) in [("relay", relay), ("bare quinn", bare)] {
            let mib = |x: Option<f64>| x.unwrap_or(0.0) / 1_048_576.0;
            mem.note(format!(
                "{label}: RSS {:.1} MiB before, {:.1} MiB after; all N connected in {:.1} s (medians)",
                mib(median(&pick(v, |s| s.rss_before as f64))),
                mib(median(&pick(v, |s| s.rss_after as f64))),
                median(&pick(v, |s| s.connect_s)).unwrap_or(0.0),
            ));
        }
        let anon = |v: &[Sample]| median(&pick(v, |s| s.anon_per_conn)).unwrap_or(0.0);
        mem.note(format!(
            "of that, anonymous memory (heap, stacks) per connection: relay {:.0} B, bare quinn {:.0} B \
             (medians); the rest is pages of files, mostly each server's own code",
            anon(relay),
            anon(bare)
        ));
        let failed: usize = relay.iter().chain(bare).map(|s| s.failed).sum();
        if failed > 0 {
            mem.note(format!("{failed} connections failed after retries over all rounds; counted out"));
        }
        let mut cpu = Figure::new(
            &format!("idle_cpu_pct_n{n}"),
            &format!("idle agents: server CPU while idle, N = {n}"),
            "% of a core",
            Better::Lower,
            "assist relay",
        );
        cpu.push(Series::new("assist relay", pick(relay, |s| s.idle_cpu_pct)));
        cpu.push(Series::new("bare quinn", pick(bare, |s| s.idle_cpu_pct)));
        cpu.note(format!("over the {} s settle window after all connected", ctx.settings.idle_settle_s));
        figures.push(mem.finish());
        figures.push(cpu.finish());
    }
    Ok(figures)
}

/// Enrolls `n` agents of `org` through `relay` (`assist-bench idle-enroll`, on the relay's
/// own database) and writes their identities to `ids`.
pub(crate) fn enroll(ctx: &Ctx, relay: &Relay, org: &str, n: usize, ids: &Path) -> Result<()> {
    eprintln!("assist-bench: idle: enrolling {n} agents through the relay");
    let started = Instant::now();
    let mut cmd =
        ctx.helper(&["idle-enroll", "--relay", &relay.addr, "--ca-fingerprint", &relay.fingerprint]);
    cmd.args(["--org", org, "--n", &n.to_string(), "--parallel", "16", "--data-dir"]).arg(&relay.data);
    if let Some(url) = crate::cluster_world::database_of(relay) {
        cmd.args(["--database", &url]);
    }
    cmd.arg("--out").arg(ids).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
    let status = Proc::spawn("idle-enroll", &mut cmd)?.wait(Duration::from_secs(600 + n as u64 / 10))?;
    if !status.success() {
        bail!("idle-enroll failed ({status})");
    }
    eprintln!("assist-bench: idle: enrolled {n} agents in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

pub(crate) fn measure(
    ctx: &Ctx,
    server: Server,
    n: usize,
    data: &Path,
    ids: &Path,
    fingerprint: &str,
) -> Result<Sample> {
    let (proc, addr) = match server {
        Server::Relay => {
            let relay = Relay::start(&ctx.bins, data, &ctx.dir.join("idle-relay.log"), &[])?;
            (relay.proc, relay.addr)
        }
        Server::Bare => {
            let mut cmd = ctx.helper(&["bare-server", "--data-dir"]);
            cmd.arg(data).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
            let mut proc = Proc::spawn("bare-server", &mut cmd)?;
            let mut out = proc.stdout_lines()?;
            let addr = quic::listening_addr(&out.wait_for("listening on", START)?.text)?.to_string();
            out.forward(None);
            (proc, addr)
        }
    };
    let pid = proc.pid();
    std::thread::sleep(Duration::from_secs(1));
    let (rss_before, anon_before) = rss_bytes(pid)?;

    let mut cmd = ctx.helper(&["idle-load", "--relay", &addr, "--ca-fingerprint", fingerprint]);
    cmd.args(["--n", &n.to_string(), "--parallel", "64", "--identities"]).arg(ids);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let started = Instant::now();
    let mut load = Proc::spawn("idle-load", &mut cmd)?;
    let mut out = load.stdout_lines()?;
    let line = out.wait_for("connected ", Duration::from_secs(120 + n as u64 / 20))?;
    let connect_s = started.elapsed().as_secs_f64();
    let words: Vec<&str> = line.text.split_whitespace().collect();
    let ok: usize = words.get(1).context("bad load line")?.parse()?;
    let failed: usize = words.get(3).context("bad load line")?.parse()?;
    // A few lost handshakes (after retries) do not spoil the figure: it is per connection.
    if ok == 0 || failed * 100 > n {
        bail!("{failed} of {n} agents failed to connect");
    }

    let cpu0 = cpu_seconds(pid)?;
    let settle = Duration::from_secs_f64(ctx.settings.idle_settle_s);
    std::thread::sleep(settle);
    let cpu1 = cpu_seconds(pid)?;
    let (rss_after, anon_after) = rss_bytes(pid)?;
    let stdin = load.child.stdin.as_mut().context("load stdin")?;
    stdin.write_all(b"check\n")?;
    stdin.flush()?;
    let alive: usize = out.wait_for("alive ", Duration::from_secs(30))?.text[6..].trim().parse()?;
    if alive != ok {
        bail!("only {alive} of {ok} connections survived the settle time");
    }
    drop(load);
    drop(proc);
    Ok(Sample {
        failed,
        bytes_per_conn: rss_after.saturating_sub(rss_before) as f64 / ok as f64,
        idle_cpu_pct: 100.0 * (cpu1 - cpu0) / settle.as_secs_f64(),
        connect_s,
        rss_before,
        rss_after,
        anon_per_conn: anon_after.saturating_sub(anon_before) as f64 / ok as f64,
    })
}
