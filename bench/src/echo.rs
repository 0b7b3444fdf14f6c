//! Keystroke echo round trip, p50 and p99.
//!
//! The client (`assist shell -t AGENT -- sh -c …`, `ssh -tt target …`, `ssh -tt -J jump
//! target …`) runs in a local PTY, as under a person's terminal, and puts it in raw mode
//! itself. The remote command is `stty raw -echo; printf READY; exec cat` in the remote
//! PTY: after `READY`, every byte typed travels to the remote `cat` and back. One byte is
//! written to the local PTY master; the time until it comes back (read on a thread that
//! stamps each read) is one sample; then a short pause, as between keystrokes.
//!
//! It measures the whole path a keystroke takes, including both PTYs and `cat`; it does
//! not look inside it.
//!
//! `assist unrecorded` is the same through a second relay started with `serve
//! --no-recording`: what recording adds to a keystroke.
//!
//! `browser` is the engineer's browser (`crate::browser`): the same remote command through
//! the console's shell page in a real headless Chromium, from keydown to the echo rendered,
//! timed in the page.
//!
//! A floor is measured beside them: `direct quinn`, one byte echoed by the bare QUIC server
//! on one stream (`assist-bench quic-client --echo`), timed inside the client. It has no
//! PTY, no `cat` and no relay: one QUIC round trip, where a keystroke through the relay
//! takes two (client–relay and relay–agent) plus the PTYs.

use crate::report::{Better, Figure, Series, percentile};
use crate::{Ctx, world};
use anyhow::{Context, Result, anyhow, bail};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const REMOTE: &str = "stty raw -echo; printf READY; exec cat";
const KEY: u8 = b'x';

/// One interactive session: `keystrokes` round trips, in microseconds.
fn session(argv: &[String], config: Option<&Path>, keystrokes: usize, gap: Duration) -> Result<Vec<f64>> {
    let pair = native_pty_system()
        .openpty(PtySize { rows: 24, cols: 80, pixel_width: 0, pixel_height: 0 })
        .map_err(|e| anyhow!("openpty: {e}"))?;
    let mut cmd = CommandBuilder::new(&argv[0]);
    cmd.args(&argv[1..]);
    cmd.env("TERM", "xterm-256color");
    cmd.env_remove("ASSIST_LOG");
    if let Some(c) = config {
        cmd.env("ASSIST_CONFIG_DIR", c);
    }
    let mut child = pair.slave.spawn_command(cmd).map_err(|e| anyhow!("spawn {}: {e}", argv[0]))?;
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().map_err(|e| anyhow!("pty reader: {e}"))?;
    let mut writer = pair.master.take_writer().map_err(|e| anyhow!("pty writer: {e}"))?;
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    let result = (|| {
        let mut seen = Vec::new();
        let deadline = Instant::now() + world::START;
        while !seen.windows(5).any(|w| w == b"READY") {
            let left = deadline.saturating_duration_since(Instant::now());
            let (_, bytes) = rx.recv_timeout(left).map_err(|_| {
                anyhow!("no READY from {}; saw {:?}", argv.join(" "), String::from_utf8_lossy(&seen))
            })?;
            seen.extend_from_slice(&bytes);
        }
        // Anything after READY would be a stray byte, not an echo.
        while rx.recv_timeout(Duration::from_millis(50)).is_ok() {}
        let mut samples = Vec::with_capacity(keystrokes);
        for _ in 0..keystrokes {
            let sent = Instant::now();
            writer.write_all(&[KEY])?;
            writer.flush()?;
            let (at, bytes) = rx.recv_timeout(Duration::from_secs(10)).context("no echo within 10 s")?;
            if bytes != [KEY] {
                bail!("unexpected echo {:?}", String::from_utf8_lossy(&bytes));
            }
            samples.push(at.duration_since(sent).as_secs_f64() * 1e6);
            std::thread::sleep(gap);
        }
        Ok(samples)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let world = ctx.world()?;
    let keystrokes = ctx.settings.keystrokes;
    let gap = Duration::from_millis(ctx.settings.keystroke_gap_ms);
    let unrecorded =
        world::World::start_with(&ctx.bins, &ctx.dir.join("echo-unrecorded"), &["--no-recording"])
            .context("starting the unrecorded relay")?;
    let argv = |w: &world::World| -> Vec<String> {
        let cmd = w.shell(&["-t", "--", "sh", "-c", REMOTE]);
        std::iter::once(cmd.get_program()).chain(cmd.get_args()).map(|s| s.to_string_lossy().into()).collect()
    };
    let (assist_argv, unrecorded_argv) = (argv(world), argv(&unrecorded));
    let names = ["assist", "ssh", "ssh -J", "direct quinn", "assist unrecorded", "browser"];
    // Why the browser's series is skipped (no Chromium here), once it failed.
    let mut browser_skipped: Option<String> = None;
    let mut p50: Vec<Vec<f64>> = vec![vec![]; names.len()];
    let mut p99: Vec<Vec<f64>> = vec![vec![]; names.len()];
    // The server wants a file to serve; the echo never reads it.
    let (server, addr) = crate::quic::spawn_server(ctx, &world.relay.data, Path::new("/dev/null"))?;
    for round in 1..=ctx.settings.rounds {
        eprintln!("assist-bench: echo round {round}/{}", ctx.settings.rounds);
        for (i, name) in names.iter().enumerate() {
            let samples = match (i, &ctx.ssh) {
                (0, _) => session(&assist_argv, Some(&world.config), keystrokes, gap)?,
                (3, _) => quic_echo(ctx, addr, &world.relay.fingerprint, keystrokes, gap)?,
                (4, _) => session(&unrecorded_argv, Some(&unrecorded.config), keystrokes, gap)?,
                (5, _) if browser_skipped.is_some() => continue,
                (5, _) => match crate::browser::echo(world, REMOTE, keystrokes, gap) {
                    Ok(samples) => samples,
                    Err(e) => {
                        eprintln!("assist-bench: browser echo skipped: {e:#}");
                        browser_skipped = Some(format!("{e:#}"));
                        continue;
                    }
                },
                (_, Ok(ssh)) => session(&ssh.argv(i == 2, &["-tt"], &[REMOTE]), None, keystrokes, gap)
                    .with_context(|| format!("echo through {name}"))?,
                (_, Err(_)) => continue,
            };
            p50[i].extend(percentile(&samples, 50.0));
            p99[i].extend(percentile(&samples, 99.0));
        }
    }
    drop(server);
    drop(unrecorded);
    let mut figures = Vec::new();
    for (id, title, values) in [
        ("echo_p50_us", "keystroke echo round trip, p50", &p50),
        ("echo_p99_us", "keystroke echo round trip, p99", &p99),
    ] {
        let mut f = Figure::new(id, title, "us", Better::Lower, "assist");
        if id == "echo_p50_us" {
            f = f.target("ssh -J", 0.8);
        }
        for (i, name) in names.iter().enumerate() {
            f.push(match (i, &ctx.ssh) {
                (5, _) if let Some(why) = &browser_skipped => Series::skipped(name, why),
                (0 | 3 | 4 | 5, _) | (_, Ok(_)) => Series::new(name, values[i].clone()),
                (_, Err(why)) => Series::skipped(name, why),
            });
        }
        f.note(format!(
            "per round: {keystrokes} keystrokes, {}ms apart, into a local PTY; remote: {REMOTE}; \
             assist unrecorded: through a relay with `serve --no-recording`; \
             direct quinn: the same count of one-byte echoes on one stream to the bare QUIC server, \
             without PTYs or relay (one QUIC round trip; assist makes two); \
             browser: the console's shell in headless Chromium, keydown on xterm.js to the echo \
             rendered, timed in the page",
            gap.as_millis()
        ));
        figures.push(f.finish());
    }
    Ok(figures)
}

/// `keystrokes` one-byte echoes through the bare QUIC server, in microseconds.
fn quic_echo(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    ca: &str,
    keystrokes: usize,
    gap: Duration,
) -> Result<Vec<f64>> {
    let out = ctx
        .helper(&["quic-client", "--addr", &addr.to_string(), "--ca-fingerprint", ca])
        .args(["--echo", &keystrokes.to_string(), "--gap-ms", &gap.as_millis().to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .context("running quic-client --echo")?;
    if !out.status.success() {
        bail!("quic-client --echo failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let samples: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("quic-client --echo output")?;
    if samples.len() != keystrokes {
        bail!("quic-client --echo gave {} samples, expected {keystrokes}", samples.len());
    }
    Ok(samples)
}
