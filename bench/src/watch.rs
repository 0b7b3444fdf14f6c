//! What watching costs the relay: its user+system CPU (`/proc/PID/stat`) while one session's
//! shell prints a fixed amount of output, with 0, 1 and 4 approvers watching it live
//! (`assist watch SESSION`, each its own process and connection, output thrown away).
//!
//! The shell (`assist shell AGENT -- sh -c 'read go; head -c N /dev/urandom | base64;
//! echo DONE'`, no PTY) waits for a line before printing, so every watcher has joined (the
//! engineer's own client says "… is watching" once per watcher) before the relay's CPU is
//! read; it is read again when `DONE` reaches the engineer. The figure is the relay's CPU
//! per MiB of output; the difference between the rows is what the watchers add. The
//! baseline is the same session watched by nobody, in the same run.

use crate::Ctx;
use crate::procs::{Proc, cpu_seconds};
use crate::report::{Better, Figure, Series};
use anyhow::{Context, Result, anyhow};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const PASSWORD: &str = "bench-password-123";
/// Longest wait for one step.
const LIMIT: Duration = Duration::from_secs(60);
/// Watchers per row.
const WATCHERS: [usize; 3] = [0, 1, 4];

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let world = ctx.world()?;
    let relay = &world.relay;
    // An approver of the agent's organisation, logged in with a config of its own.
    relay.admin(
        &world.bins,
        &["user", "add", "watcher", "--org", "acme", "--role", "approver", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    )?;
    let config = ctx.dir.join("watcher");
    let mut login = world.bins.command("assist");
    login.env("ASSIST_CONFIG_DIR", &config).args([
        "login",
        "--relay",
        &relay.addr,
        "--user",
        "watcher",
        "--password-stdin",
        "--ca-fingerprint",
        &relay.fingerprint,
    ]);
    login.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = login.spawn()?;
    child.stdin.take().ok_or_else(|| anyhow!("stdin"))?.write_all(format!("{PASSWORD}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(anyhow!("assist login (watcher): {}", String::from_utf8_lossy(&out.stderr)));
    }

    let bytes: u64 = if ctx.settings.quick { 2 << 20 } else { 24 << 20 };
    let mut rows: Vec<Vec<f64>> = vec![Vec::new(); WATCHERS.len()];
    for round in 1..=ctx.settings.rounds {
        eprintln!("assist-bench: watch round {round}/{}", ctx.settings.rounds);
        for (i, n) in WATCHERS.iter().enumerate() {
            rows[i].push(one(ctx, &config, *n, bytes).with_context(|| format!("{n} watchers"))?);
        }
    }
    let mut f = Figure::new(
        "watch_relay_cpu_ms_per_mib",
        "relay CPU per MiB of shell output, by watchers",
        "CPU ms/MiB",
        Better::Lower,
        "1 watcher",
    );
    f = f.target("0 watchers", 1.5);
    for (i, n) in WATCHERS.iter().enumerate() {
        let name = if *n == 1 { "1 watcher".to_owned() } else { format!("{n} watchers") };
        f.push(Series::new(&name, rows[i].clone()));
    }
    f.note(format!(
        "per round and row: one `assist shell` printing base64 of {} MiB of random bytes (no PTY), \
         watched by that many `assist watch` processes; the relay's user+system CPU from the moment \
         the shell starts printing to DONE reaching the engineer, per MiB printed",
        bytes >> 20
    ));
    Ok(vec![f.finish()])
}

/// One session printing base64 of `bytes` random bytes with `watchers` watching: the relay's
/// CPU milliseconds per MiB printed.
fn one(ctx: &Ctx, watcher_config: &Path, watchers: usize, bytes: u64) -> Result<f64> {
    let world = ctx.world()?;
    let script = format!("read go; head -c {bytes} /dev/urandom | base64; echo DONE");
    let mut cmd = world.shell(&["--", "sh", "-c", &script]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut eng = Proc::spawn("assist shell", &mut cmd)?;
    let mut input = eng.child.stdin.take().ok_or_else(|| anyhow!("engineer stdin"))?;
    let mut out = eng.stdout_lines()?;
    let mut err = eng.stderr_lines()?;
    let requested = err.wait_for("requested; waiting for", LIMIT)?;
    let session = requested
        .text
        .split_whitespace()
        .find(|w| w.starts_with("s-"))
        .ok_or_else(|| anyhow!("no session id in {:?}", requested.text))?
        .to_owned();
    err.wait_for("approved", LIMIT)?;
    let mut watching = Vec::new();
    for _ in 0..watchers {
        let mut w = world.bins.command("assist");
        w.env("ASSIST_CONFIG_DIR", watcher_config).args(["watch", &session]);
        w.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        watching.push(Proc::spawn("assist watch", &mut w)?);
    }
    for _ in 0..watchers {
        err.wait_for("is watching", LIMIT)?;
    }
    let pid = world.relay.proc.pid();
    let before = cpu_seconds(pid)?;
    input.write_all(b"go\n")?;
    input.flush()?;
    out.wait_for("DONE", LIMIT)?;
    let after = cpu_seconds(pid)?;
    drop(input);
    eng.wait(LIMIT)?;
    for mut w in watching {
        let _ = w.wait(LIMIT);
    }
    let printed_mib = (bytes as f64 * 4.0 / 3.0) / (1024.0 * 1024.0);
    Ok((after - before) * 1000.0 / printed_mib)
}
