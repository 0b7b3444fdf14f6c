//! Bulk throughput, agent → engineer, and the relay's CPU per GiB relayed.
//!
//! Per round, in this order, each a whole process timed from spawn to exit with its
//! stdout on `/dev/null`:
//! - assist: `assist shell AGENT -T -- cat FILE` through the relay (the approval, by the
//!   auto-answering prompt, is inside the time; it is milliseconds against seconds);
//! - assist unrecorded: the same through a second relay started with `serve
//!   --no-recording` (its own agent), which shows what recording costs (issue 4's target);
//! - direct quinn: `assist-bench quic-client` against `assist-bench quic-server`, one
//!   stream, the relay's TLS and transport settings (the client counts the bytes);
//! - `ssh target cat FILE` and `ssh -J jump target cat FILE`.
//!
//! The relay's user+system CPU seconds (`/proc/PID/stat`) are read around each assist
//! transfer and divided by the GiB moved; so is the CPU of every process on each
//! variant's path, since on this 2-core machine CPU is what bounds every variant.

use crate::procs::{Lines, Proc, cpu_seconds, timed};
use crate::report::{Better, Figure, Series};
use crate::{Ctx, quic};
use anyhow::{Context, Result, anyhow, bail};
use std::process::Stdio;
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;
const NAMES: [&str; 5] = ["assist", "assist unrecorded", "direct quinn", "ssh", "ssh -J"];

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let world = ctx.world()?;
    let unrecorded =
        crate::world::World::start_with(&ctx.bins, &ctx.dir.join("unrecorded"), &["--no-recording"])
            .context("starting the unrecorded relay")?;
    let size = ctx.settings.bulk_bytes;
    let file = ctx.dir.join("bulk.bin");
    eprintln!("assist-bench: bulk: writing a {} MiB file", size / (1 << 20));
    crate::world::make_file(&file, size)?;
    let file_arg = file.to_string_lossy().into_owned();
    let limit = Duration::from_secs(60 + size / (5 << 20));

    let (server, addr) = quic::spawn_server(ctx, &world.relay.data, &file)?;

    let relay_pids = [world.relay.proc.pid(), unrecorded.relay.proc.pid()];
    let mut pids = vec![
        world.relay.proc.pid(),
        world.agent.pid(),
        unrecorded.relay.proc.pid(),
        unrecorded.agent.pid(),
        server.pid(),
    ];
    if let Ok(s) = &ctx.ssh {
        pids.extend(s.daemon_pids());
    }
    // CPU of everything on the path: this process's waited-for children (the clients),
    // the relay, the agent with its `cat`, the quinn server, both sshd with their sessions.
    let path_cpu = || crate::procs::path_cpu(&pids);
    let gib = size as f64 / GIB;
    let mut mibs: [Vec<f64>; 5] = Default::default();
    let mut cpus: [Vec<f64>; 5] = Default::default();
    let mut machine: [Vec<f64>; 5] = Default::default();
    let mut relay_cpu_samples: [Vec<f64>; 2] = Default::default();
    let mib_s = |d: Duration| size as f64 / MIB / d.as_secs_f64();
    for round in 1..=ctx.settings.rounds {
        eprintln!("assist-bench: bulk round {round}/{}", ctx.settings.rounds);
        for (i, variant) in NAMES.iter().enumerate() {
            let ssh = match (&ctx.ssh, i) {
                (_, 0..=2) => None,
                (Ok(s), _) => Some(s),
                (Err(_), _) => continue,
            };
            let path0 = path_cpu()?;
            let machine0 = crate::procs::machine_cpu()?;
            let relay0 = match relay_pids.get(i) {
                Some(pid) => cpu_seconds(*pid)?,
                None => 0.0,
            };
            let took = match (i, ssh) {
                (0, _) => timed(variant, &mut world.shell(&["-T", "--", "cat", &file_arg]), limit)?.0,
                (1, _) => timed(variant, &mut unrecorded.shell(&["-T", "--", "cat", &file_arg]), limit)?.0,
                (2, _) => quic_fetch(ctx, addr, &world.relay.fingerprint, size, limit)?,
                (_, Some(s)) => timed(variant, &mut s.command(i == 4, &[], &["cat", &file_arg]), limit)?.0,
                (_, None) => unreachable!("ssh variants run only with ssh"),
            };
            if let Some(pid) = relay_pids.get(i) {
                relay_cpu_samples[i].push((cpu_seconds(*pid)? - relay0) / gib);
            }
            mibs[i].push(mib_s(took));
            cpus[i].push((path_cpu()? - path0) / gib);
            machine[i].push((crate::procs::machine_cpu()? - machine0) / gib);
        }
    }
    drop(server);
    drop(unrecorded);

    let title = format!("bulk {} agent -> engineer", human_size(size));
    let mut bulk = Figure::new("bulk_mib_s", &title, "MiB/s", Better::Higher, "assist")
        .target("ssh -J", 1.5)
        .target("direct quinn", 0.5)
        .target("assist unrecorded", 0.9);
    let mut path = Figure::new(
        "bulk_path_cpu_s_per_gib",
        "bulk: CPU of every process on the path, per GiB",
        "CPU s/GiB",
        Better::Lower,
        "assist",
    );
    let mut whole = Figure::new(
        "bulk_machine_cpu_s_per_gib",
        "bulk: CPU of the whole machine, per GiB",
        "CPU s/GiB",
        Better::Lower,
        "assist",
    );
    for (i, name) in NAMES.iter().enumerate() {
        for (f, values) in [(&mut bulk, &mibs[i]), (&mut path, &cpus[i]), (&mut whole, &machine[i])] {
            f.push(match (&ctx.ssh, i) {
                (Err(why), 3 | 4) => Series::skipped(name, why),
                _ => Series::new(name, values.clone()),
            });
        }
    }
    bulk.note(
        "whole process, stdout to /dev/null; assist includes session set-up and the automatic approval; \
         assist unrecorded: a second relay with `serve --no-recording` (issue 4: recording costs < 10%)",
    );
    path.note(
        "assist: client + relay + agent + cat (both relays and agents are counted for either); quinn: client + server; ssh: client + sshd sessions (both hosts \
         for -J). On 2 cores a CPU-bound path moves at most 2 / this GiB/s",
    );
    whole.note(
        "busy time of every CPU from /proc/stat around each transfer: the path plus what the kernel \
         does for it on its own threads (page-cache writeback of the recording), and anything else running",
    );
    let mut relay_cpu =
        Figure::new("relay_cpu_s_per_gib", "relay CPU per GiB relayed", "CPU s/GiB", Better::Lower, "assist");
    let [recorded, unrecorded] = relay_cpu_samples;
    relay_cpu.push(Series::new("assist", recorded));
    relay_cpu.push(Series::new("assist unrecorded", unrecorded));
    relay_cpu.note(
        "user+system time of the relay process from /proc/PID/stat around each assist transfer; \
         the difference is what recording costs the relay",
    );
    Ok(vec![bulk.finish(), relay_cpu.finish(), path.finish(), whole.finish()])
}

pub(crate) fn quic_fetch(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    ca: &str,
    size: u64,
    limit: Duration,
) -> Result<Duration> {
    let mut cmd = ctx.helper(&["quic-client", "--addr", &addr.to_string(), "--ca-fingerprint", ca]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let start = Instant::now();
    let mut proc = Proc::spawn("quic-client", &mut cmd)?;
    let mut out: Lines = proc.stdout_lines()?;
    let status = proc.wait(limit)?;
    let took = start.elapsed();
    if !status.success() {
        bail!("quic-client failed ({status})");
    }
    let line =
        out.finish(Duration::from_secs(1)).first().ok_or_else(|| anyhow!("quic-client said nothing"))?;
    let got: u64 = line.text.trim().parse().context("quic-client output")?;
    quic::check_size(got, size)?;
    Ok(took)
}

pub fn human_size(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}
