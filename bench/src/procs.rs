//! Child processes for the benchmark: spawned with a name, killed when dropped; their
//! output lines read on a thread and timestamped on arrival; and what `/proc` tells about
//! a process (resident memory, CPU time).
//!
//! It does not restart anything, and it reads `/proc` only (Linux).

use anyhow::{Context, Result, anyhow, bail};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A line of a child's output and when the harness read it.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Instant,
    pub text: String,
}

/// Lines of a child's output, read on a thread as they arrive.
pub struct Lines {
    rx: mpsc::Receiver<Line>,
    pub seen: Vec<Line>,
}

impl Lines {
    pub fn spawn(read: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for text in BufReader::new(read).lines() {
                let Ok(text) = text else { break };
                if tx.send(Line { at: Instant::now(), text }).is_err() {
                    break;
                }
            }
        });
        Self { rx, seen: Vec::new() }
    }

    /// Waits up to `limit` for a line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, limit: Duration) -> Result<Line> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.text.contains(needle) {
                        return Ok(line);
                    }
                }
                Err(_) => {
                    let seen: Vec<&str> = self.seen.iter().map(|l| l.text.as_str()).collect();
                    bail!("no line containing {needle:?} within {limit:?}; saw:\n{}", seen.join("\n"))
                }
            }
        }
    }

    /// Everything that arrived so far (and, once the writer closed, everything).
    pub fn drain(&mut self) -> &[Line] {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// Hands the rest of the lines to a thread that writes them to `sink`, or drops them,
    /// so the child never blocks on a full pipe.
    pub fn forward(self, mut sink: Option<std::fs::File>) {
        std::thread::spawn(move || {
            for line in self.rx.iter() {
                if let Some(f) = sink.as_mut() {
                    let _ = writeln!(f, "{}", line.text);
                }
            }
        });
    }

    /// Waits until the writer closed, up to `limit`, and returns every line.
    pub fn finish(&mut self, limit: Duration) -> &[Line] {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return &self.seen,
            }
        }
    }
}

/// A named child process, killed and reaped when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    /// Spawns `cmd` as it is configured (the caller sets up its stdio).
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        let child = cmd.spawn().with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Self { name: name.to_owned(), child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Takes the child's stdout as timestamped lines.
    pub fn stdout_lines(&mut self) -> Result<Lines> {
        let out = self.child.stdout.take().ok_or_else(|| anyhow!("{}: stdout not piped", self.name))?;
        Ok(Lines::spawn(out))
    }

    pub fn stderr_lines(&mut self) -> Result<Lines> {
        let err = self.child.stderr.take().ok_or_else(|| anyhow!("{}: stderr not piped", self.name))?;
        Ok(Lines::spawn(err))
    }

    /// Waits for the child to exit, up to `limit`; kills it if it does not.
    pub fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("{} did not exit within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to completion (stdin empty, output captured); fails unless it exits 0.
pub fn run_ok(name: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {name}: {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{name} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Resident memory of a process, in bytes: all of it (`VmRSS`) and its anonymous part
/// (`RssAnon`: heap and stacks, without the pages of files such as its own code).
pub fn rss_bytes(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        let line = status.lines().find(|l| l.starts_with(name)).ok_or_else(|| anyhow!("no {name}"))?;
        let kib: u64 = line.split_whitespace().nth(1).ok_or_else(|| anyhow!("bad {name}"))?.parse()?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?))
}

fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User plus system CPU seconds of a process so far, all its threads included.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    stat_cpu(&pid.to_string(), false)
}

/// The same plus the CPU of every child it has waited for (`cutime`, `cstime`);
/// `"self"` for this process.
pub fn cpu_seconds_with_children(pid: &str) -> Result<f64> {
    stat_cpu(pid, true)
}

fn stat_cpu(pid: &str, children: bool) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow!("bad stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) of stat(5); `rest` starts at field 3.
    let utime: f64 = fields.get(11).ok_or_else(|| anyhow!("bad stat"))?.parse()?;
    let stime: f64 = fields.get(12).ok_or_else(|| anyhow!("bad stat"))?.parse()?;
    let mut ticks = utime + stime;
    if children {
        let cutime: f64 = fields.get(13).ok_or_else(|| anyhow!("bad stat"))?.parse()?;
        let cstime: f64 = fields.get(14).ok_or_else(|| anyhow!("bad stat"))?.parse()?;
        ticks += cutime + cstime;
    }
    Ok(ticks / clock_ticks())
}

/// Whether a program is on `PATH` (or is an existing path).
pub fn have(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Runs `cmd` to its end with stdin empty and stdout discarded; returns its wall time and
/// its stderr lines, stamped. Fails, with those lines, if it does not succeed.
pub fn timed(name: &str, cmd: &mut Command, limit: Duration) -> Result<(Duration, Vec<Line>)> {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut proc = Proc::spawn(name, cmd)?;
    let mut err = proc.stderr_lines()?;
    let status = proc.wait(limit)?;
    let took = start.elapsed();
    let lines = err.finish(Duration::from_secs(5)).to_vec();
    if !status.success() {
        let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        bail!("{name} failed ({status}): {}", text.join("\n"));
    }
    Ok((took, lines))
}

/// CPU seconds so far of everything on a measured path: this process's waited-for
/// children (the clients) and each of `pids` with its reaped children.
/// CPU seconds the whole machine has spent busy (every CPU, user, system, interrupts and
/// kernel threads such as writeback; idle and iowait excluded), from `/proc/stat`.
pub fn machine_cpu() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line =
        stat.lines().next().filter(|l| l.starts_with("cpu ")).ok_or_else(|| anyhow!("bad /proc/stat"))?;
    let fields: Vec<f64> = line.split_whitespace().skip(1).map(str::parse).collect::<Result<_, _>>()?;
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
    // already inside user.
    let busy: f64 =
        fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Ok(busy / clock_ticks())
}

pub fn path_cpu(pids: &[u32]) -> Result<f64> {
    std::thread::sleep(Duration::from_millis(300)); // let daemons reap their children
    let mut total = cpu_seconds_with_children("self")?;
    for pid in pids {
        total += cpu_seconds_with_children(&pid.to_string())?;
    }
    Ok(total)
}
