//! Idle agents per relay: a relay of a 3-relay cluster on PostgreSQL against one relay on
//! SQLite, with the idle figure's method ([`crate::idle`]).
//!
//! - The agents are enrolled once per variant (`assist-bench idle-enroll`, through relay 1
//!   on the cluster's database).
//! - Per round, SQLite: [`crate::idle::measure`] as the idle figure does it. Cluster: the
//!   three relays start fresh; after a second each one's `VmRSS` is read; one
//!   `assist-bench idle-load --cluster` process per relay connects the N agents to it
//!   (every agent of a cluster keeps a connection to every relay, so each relay holds all
//!   N); after the settle time each relay's RSS and CPU are read again, every connection is
//!   checked alive, and the relays are stopped gracefully. A round's sample is the mean of
//!   the three relays.
//!
//! Nothing here is asserted.

use crate::Ctx;
use crate::cluster::{CLUSTER, SQLITE};
use crate::cluster_world::{start_relays, stop};
use crate::idle::{self, Sample, Server};
use crate::pg::Postgres;
use crate::procs::{Lines, Proc, cpu_seconds, rss_bytes};
use crate::report::{Better, Figure, Series, median};
use crate::world::Relay;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub fn run(ctx: &Ctx, pg: &Postgres) -> Result<Vec<Figure>> {
    let n = ctx.settings.cluster_agents;
    let dir = ctx.dir.join("cluster-idle");
    let bins = &ctx.bins;

    let sqlite_dir = dir.join("sqlite");
    let sqlite_ids = dir.join("sqlite-identities.jsonl");
    let sqlite_data = sqlite_dir.join("r1");
    let sqlite_fp = {
        let relays = start_relays(bins, &sqlite_dir, None, 1)?;
        relays[0].admin(bins, &["org", "add", "idle"], "")?;
        idle::enroll(ctx, &relays[0], "idle", n, &sqlite_ids)?;
        relays[0].fingerprint.clone()
    };

    let database = pg.create_database("idle_cluster")?;
    let cluster_dir = dir.join("cluster");
    let cluster_ids = dir.join("cluster-identities.jsonl");
    {
        let relays = start_relays(bins, &cluster_dir, Some(&database), 3)?;
        relays[0].admin(bins, &["org", "add", "idle"], "")?;
        idle::enroll(ctx, &relays[0], "idle", n, &cluster_ids)?;
        for r in relays {
            stop(r)?;
        }
    }

    let (mut sqlite, mut cluster): (Vec<Sample>, Vec<Sample>) = (vec![], vec![]);
    for round in 1..=ctx.settings.idle_rounds {
        eprintln!("assist-bench: cluster idle round {round}/{}: {SQLITE}, N = {n}", ctx.settings.idle_rounds);
        let s = idle::measure(ctx, Server::Relay, n, &sqlite_data, &sqlite_ids, &sqlite_fp)
            .context("idle agents, one relay on SQLite")?;
        sqlite.push(s);
        eprintln!(
            "assist-bench: cluster idle round {round}/{}: {CLUSTER}, N = {n}",
            ctx.settings.idle_rounds
        );
        let relays = start_relays(bins, &cluster_dir, Some(&database), 3)?;
        let s = measure_cluster(ctx, &relays, n, &cluster_ids).context("idle agents, cluster")?;
        for r in relays {
            stop(r)?;
        }
        cluster.push(s);
    }

    let pick = |v: &[Sample], f: fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<f64>>();
    let mut mem = Figure::new(
        "cluster_idle_bytes_per_agent",
        &format!("cluster: idle agents, relay RSS per connected agent, N = {n} per relay"),
        "bytes",
        Better::Lower,
        CLUSTER,
    );
    mem.push(Series::new(CLUSTER, pick(&cluster, |s| s.bytes_per_conn)));
    mem.push(Series::new(SQLITE, pick(&sqlite, |s| s.bytes_per_conn)));
    let mut cpu = Figure::new(
        "cluster_idle_cpu_pct",
        &format!("cluster: idle agents, relay CPU while idle, N = {n} per relay"),
        "% of a core",
        Better::Lower,
        CLUSTER,
    );
    cpu.push(Series::new(CLUSTER, pick(&cluster, |s| s.idle_cpu_pct)));
    cpu.push(Series::new(SQLITE, pick(&sqlite, |s| s.idle_cpu_pct)));
    let connect = |v: &[Sample]| median(&pick(v, |s| s.connect_s)).unwrap_or(0.0);
    mem.note(format!(
        "cluster: mean of its three relays, each holding all N agents (every agent keeps a connection to \
         every relay: the per-agent cost is paid on each relay); all N connected to a relay in {:.1} s \
         (three at once), to the SQLite relay in {:.1} s (medians)",
        connect(&cluster),
        connect(&sqlite)
    ));
    let anon = |v: &[Sample]| median(&pick(v, |s| s.anon_per_conn)).unwrap_or(0.0);
    mem.note(format!(
        "of that, anonymous memory (heap, stacks) per agent: cluster {:.0} B, SQLite {:.0} B (medians)",
        anon(&cluster),
        anon(&sqlite)
    ));
    mem.note("each connection writes its agent's row and an audit event: on PostgreSQL the chain's head row is locked per write");
    cpu.note(format!(
        "over the {} s settle window after all connected; the cluster's relays also beat their heartbeat \
         every 2 s and listen on the bus",
        ctx.settings.idle_settle_s
    ));
    Ok(vec![mem.finish(), cpu.finish()])
}

/// One round on a started cluster: N idle agents on every relay, the relays' mean growth.
fn measure_cluster(ctx: &Ctx, relays: &[Relay], n: usize, ids: &std::path::Path) -> Result<Sample> {
    std::thread::sleep(Duration::from_secs(1));
    let before: Vec<(u64, u64)> = relays.iter().map(|r| rss_bytes(r.proc.pid())).collect::<Result<_>>()?;
    let started = Instant::now();
    let mut loads: Vec<(Proc, Lines)> = Vec::new();
    for r in relays {
        let mut cmd =
            ctx.helper(&["idle-load", "--cluster", "--relay", &r.addr, "--ca-fingerprint", &r.fingerprint]);
        cmd.args(["--n", &n.to_string(), "--parallel", "64", "--identities"]).arg(ids);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut load = Proc::spawn("idle-load", &mut cmd)?;
        let out = load.stdout_lines()?;
        loads.push((load, out));
    }
    let mut ok = Vec::new();
    let mut failed = 0;
    for (_, out) in &mut loads {
        let line = out.wait_for("connected ", Duration::from_secs(120 + n as u64 / 20))?;
        let words: Vec<&str> = line.text.split_whitespace().collect();
        let good: usize = words.get(1).context("bad load line")?.parse()?;
        let bad: usize = words.get(3).context("bad load line")?.parse()?;
        if good == 0 || bad * 100 > n {
            bail!("{bad} of {n} agents failed to connect");
        }
        ok.push(good);
        failed += bad;
    }
    let connect_s = started.elapsed().as_secs_f64();
    let cpu0: Vec<f64> = relays.iter().map(|r| cpu_seconds(r.proc.pid())).collect::<Result<_>>()?;
    let settle = Duration::from_secs_f64(ctx.settings.idle_settle_s);
    std::thread::sleep(settle);
    let cpu1: Vec<f64> = relays.iter().map(|r| cpu_seconds(r.proc.pid())).collect::<Result<_>>()?;
    let after: Vec<(u64, u64)> = relays.iter().map(|r| rss_bytes(r.proc.pid())).collect::<Result<_>>()?;
    for ((load, out), good) in loads.iter_mut().zip(&ok) {
        let stdin = load.child.stdin.as_mut().context("load stdin")?;
        stdin.write_all(b"check\n")?;
        stdin.flush()?;
        let alive: usize = out.wait_for("alive ", Duration::from_secs(30))?.text[6..].trim().parse()?;
        if alive != *good {
            bail!("only {alive} of {good} connections survived the settle time");
        }
    }
    drop(loads);
    let k = relays.len() as f64;
    let mean = |f: &dyn Fn(usize) -> f64| (0..relays.len()).map(f).sum::<f64>() / k;
    Ok(Sample {
        failed,
        bytes_per_conn: mean(&|i| after[i].0.saturating_sub(before[i].0) as f64 / ok[i] as f64),
        idle_cpu_pct: mean(&|i| 100.0 * (cpu1[i] - cpu0[i]) / settle.as_secs_f64()),
        connect_s,
        rss_before: mean(&|i| before[i].0 as f64) as u64,
        rss_after: mean(&|i| after[i].0 as f64) as u64,
        anon_per_conn: mean(&|i| after[i].1.saturating_sub(before[i].1) as f64 / ok[i] as f64),
    })
}
