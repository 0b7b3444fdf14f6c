//! File copy: `assist cp` beside `scp` and `scp -J`, the bulk file (1 GiB) each way.
//!
//! Per round, in this order, each a whole process timed from spawn to exit:
//! - download (agent → engineer): `assist cp AGENT:FILE DEST` in a new session, then
//!   `scp target:FILE DEST` and `scp -J jump target:FILE DEST`;
//! - upload (engineer → agent): `assist cp FILE AGENT:DIR/`, then `scp FILE target:DIR/`
//!   and `scp -J jump FILE target:DIR/`.
//!
//! Every copy writes a new file in the run's directory, on the same disk for all
//! variants, and it is deleted after the copy. assist syncs each file before it renames
//! it into place (both ends hash it as it streams and compare); scp does not sync. That
//! cost is inside assist's time: it is what the product promises.
//!
//! The CPU of every process on each variant's path is read from `/proc` around each copy,
//! per GiB, as for the bulk figure: on a small machine it is what bounds every variant.
//!
//! The approval is excluded the way the setup figure does it: the window between the
//! client's `assist: session … requested` and `assist: approved by` lines (stamped as
//! they arrive) is taken off the whole-process time; its median is printed in a note.
//! A new session per copy is what an engineer's `assist cp` does.

use crate::Ctx;
use crate::procs::{Line, timed};
use crate::report::{Better, Figure, Series, median};
use crate::world::{AGENT, REASON, TICKET};
use anyhow::{Result, anyhow, bail};
use std::path::Path;
use std::time::Duration;

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;
const NAMES: [&str; 3] = ["assist cp", "scp", "scp -J"];

/// The client's requested → approved window.
fn approval(lines: &[Line]) -> Result<Duration> {
    let at = |prefix: &str, contains: &str| {
        lines
            .iter()
            .find(|l| l.text.starts_with(prefix) && l.text.contains(contains))
            .map(|l| l.at)
            .ok_or_else(|| anyhow!("assist cp printed no {prefix:?} line"))
    };
    Ok(at("assist: approved by", "")?.saturating_duration_since(at("assist: session ", " requested")?))
}

/// Checks that `path` holds `size` bytes, then deletes it.
fn check_and_remove(path: &Path, size: u64) -> Result<()> {
    let got = std::fs::metadata(path).map_err(|e| anyhow!("{}: {e}", path.display()))?.len();
    std::fs::remove_file(path)?;
    if got != size {
        bail!("{} has {got} bytes, expected {size}", path.display());
    }
    Ok(())
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let world = ctx.world()?;
    let size = ctx.settings.bulk_bytes;
    let file = ctx.dir.join("bulk.bin");
    eprintln!("assist-bench: cp: a {} MiB file", size / (1 << 20));
    crate::world::make_file(&file, size)?;
    let src = file.to_string_lossy().into_owned();
    let down = ctx.dir.join("cp-down");
    let up = ctx.dir.join("cp-up");
    std::fs::create_dir_all(&down)?;
    std::fs::create_dir_all(&up)?;
    let up_dir = format!("{}/", up.display());
    let limit = Duration::from_secs(60 + size / (5 << 20));
    let mib_s = |d: Duration| size as f64 / MIB / d.as_secs_f64();

    let assist = |args: [&str; 2]| {
        let mut cmd = world.bins.command("assist");
        cmd.env("ASSIST_CONFIG_DIR", &world.config);
        cmd.args(["cp", "--ticket", TICKET, "--reason", REASON]).args(args);
        cmd
    };
    let mut pids = vec![world.relay.proc.pid(), world.agent.pid()];
    if let Ok(s) = &ctx.ssh {
        pids.extend(s.daemon_pids());
    }
    // CPU of everything on the path: the clients (waited-for children of this process),
    // the relay, the agent, both sshd with their sessions and SFTP servers.
    let path_cpu = || crate::procs::path_cpu(&pids);
    let gib = size as f64 / GIB;
    let (mut down_mib, mut up_mib): ([Vec<f64>; 3], [Vec<f64>; 3]) = Default::default();
    let (mut down_cpu, mut up_cpu): ([Vec<f64>; 3], [Vec<f64>; 3]) = Default::default();
    let mut windows = vec![];
    for round in 1..=ctx.settings.rounds {
        eprintln!("assist-bench: cp round {round}/{}", ctx.settings.rounds);
        for upload in [false, true] {
            for (i, name) in NAMES.iter().enumerate() {
                let ssh = match (&ctx.ssh, i) {
                    (_, 0) => None,
                    (Ok(s), _) => Some(s),
                    (Err(_), _) => continue,
                };
                let dest = if upload { up.join("bulk.bin") } else { down.join(format!("{i}.bin")) };
                let dest_arg = dest.to_string_lossy().into_owned();
                let cpu0 = path_cpu()?;
                let took = match (ssh, upload) {
                    (None, false) => {
                        let remote = format!("{AGENT}:{src}");
                        let (took, lines) = timed(name, &mut assist([&remote, &dest_arg]), limit)?;
                        let window = approval(&lines)?;
                        windows.push(window.as_secs_f64() * 1e3);
                        took.saturating_sub(window)
                    }
                    (None, true) => {
                        let remote = format!("{AGENT}:{up_dir}");
                        let (took, lines) = timed(name, &mut assist([&src, &remote]), limit)?;
                        let window = approval(&lines)?;
                        windows.push(window.as_secs_f64() * 1e3);
                        took.saturating_sub(window)
                    }
                    (Some(s), false) => {
                        timed(name, &mut s.scp(i == 2, &[&format!("target:{src}"), &dest_arg]), limit)?.0
                    }
                    (Some(s), true) => {
                        timed(name, &mut s.scp(i == 2, &[&src, &format!("target:{up_dir}")]), limit)?.0
                    }
                };
                check_and_remove(&dest, size)?;
                let cpu = (path_cpu()? - cpu0) / gib;
                let (rate, cpus) =
                    if upload { (&mut up_mib, &mut up_cpu) } else { (&mut down_mib, &mut down_cpu) };
                rate[i].push(mib_s(took));
                cpus[i].push(cpu);
            }
        }
    }

    let human = crate::bulk::human_size(size);
    let mut figures = vec![];
    for (upload, samples) in [(false, &down_mib), (true, &up_mib)] {
        let (id, title) = if upload {
            ("cp_upload_mib_s", format!("file copy {human} engineer -> agent (upload)"))
        } else {
            ("cp_mib_s", format!("file copy {human} agent -> engineer (download)"))
        };
        let mut f = Figure::new(id, &title, "MiB/s", Better::Higher, "assist cp").target("scp -J", 1.5);
        for (i, name) in NAMES.iter().enumerate() {
            f.push(match (&ctx.ssh, i) {
                (Err(why), 1 | 2) => Series::skipped(name, why),
                _ => Series::new(name, samples[i].clone()),
            });
        }
        f.note(
            "whole process, size / time; assist cp: a new session per copy, approval excluded (the client's \
             requested->approved window is subtracted), the file synced before it is renamed into place and \
             hashed on both ends while it streams; scp: OpenSSH defaults (SFTP), no sync",
        );
        figures.push(f);
    }
    if let Some(m) = median(&windows) {
        figures[0].note(format!("median approval window subtracted: {m:.1} ms"));
    }
    for (upload, samples) in [(false, &down_cpu), (true, &up_cpu)] {
        let (id, way) = if upload {
            ("cp_upload_path_cpu_s_per_gib", "upload")
        } else {
            ("cp_path_cpu_s_per_gib", "download")
        };
        let title = format!("file copy {way}: CPU of every process on the path, per GiB");
        let mut f = Figure::new(id, &title, "CPU s/GiB", Better::Lower, "assist cp");
        for (i, name) in NAMES.iter().enumerate() {
            f.push(match (&ctx.ssh, i) {
                (Err(why), 1 | 2) => Series::skipped(name, why),
                _ => Series::new(name, samples[i].clone()),
            });
        }
        f.note(
            "assist: client + relay + agent; scp: client + sshd sessions with their SFTP server (both hosts \
             for -J); kernel time of the disk writes included. On 2 cores a CPU-bound path moves at most \
             2 / this GiB/s",
        );
        figures.push(f);
    }
    Ok(figures.into_iter().map(Figure::finish).collect())
}
