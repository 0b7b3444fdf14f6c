//! OpenSSH through assist and port forwarding (issue 17), beside OpenSSH and quinn.
//!
//! - Bulk, agent → engineer, MiB/s: `ssh AGENT.assist cat FILE` through `assist
//!   ssh-proxy` (whole process: session request, automatic approval, SSH handshake,
//!   transfer), against `ssh target cat FILE`, `ssh -J jump target cat FILE` and direct
//!   quinn (whole processes too); and the bytes of a TCP service on the agent's side read
//!   through one `assist forward` connection and through one `ssh -L` connection (the
//!   transfer alone: both tunnels are up before the clock starts).
//! - A forwarded connection's setup: TCP connect to the local port, then one byte echoed
//!   by a service on the far side (so the channel to the target is open), through
//!   `assist forward`, through `ssh -L`, and straight to the service.
//! - 100 concurrent connections through one session: all opened at once, each echoing
//!   64 KiB; the time until every one got its bytes back, through the same three paths.
//!
//! The services (a file server and an echo server) are threads of this process on
//! 127.0.0.1, which the agent and sshd reach as "remote" targets.

use crate::procs::{Lines, Proc, timed};
use crate::report::{Better, Figure, Series};
use crate::world::{AGENT, REASON, TICKET};
use crate::{Ctx, quic};
use anyhow::{Context, Result, anyhow, bail};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: f64 = 1024.0 * 1024.0;
const CONNS: usize = 100;
const ECHO_BYTES: usize = 64 * 1024;

/// Serves `file` whole to every connection.
fn file_server(file: PathBuf) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let file = file.clone();
            std::thread::spawn(move || {
                if let Ok(mut f) = std::fs::File::open(&file) {
                    let _ = std::io::copy(&mut f, &mut tcp);
                }
                let _ = tcp.shutdown(Shutdown::Write);
            });
        }
    });
    Ok(port)
}

/// Echoes every connection until it closes its writing side.
fn echo_server() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let _ = tcp.set_nodelay(true);
            std::thread::spawn(move || {
                let Ok(mut back) = tcp.try_clone() else { return };
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match tcp.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if back.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = back.shutdown(Shutdown::Write);
            });
        }
    });
    Ok(port)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn connect(port: u16, limit: Duration) -> Result<TcpStream> {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(tcp) => {
                tcp.set_nodelay(true)?;
                tcp.set_read_timeout(Some(limit))?;
                return Ok(tcp);
            }
            Err(e) if Instant::now() > deadline => bail!("127.0.0.1:{port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads everything the service behind `port` sends; returns the time and byte count.
fn drain(port: u16, limit: Duration) -> Result<(Duration, u64)> {
    let start = Instant::now();
    let mut tcp = connect(port, limit)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = tcp.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    Ok((start.elapsed(), got))
}

/// Connect, one byte out and back: a forwarded connection's setup.
fn first_byte(port: u16) -> Result<Duration> {
    let start = Instant::now();
    let mut tcp = connect(port, Duration::from_secs(30))?;
    tcp.write_all(b"x")?;
    let mut one = [0u8; 1];
    tcp.read_exact(&mut one)?;
    let took = start.elapsed();
    tcp.shutdown(Shutdown::Write)?;
    Ok(took)
}

/// `CONNS` connections at once, each echoing `ECHO_BYTES`; the time until all are done.
fn concurrent(port: u16) -> Result<Duration> {
    let start = Instant::now();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(CONNS));
    let threads: Vec<_> = (0..CONNS)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || -> Result<()> {
                let tcp = connect(port, Duration::from_secs(60))?;
                barrier.wait();
                let data: Vec<u8> = (0..ECHO_BYTES).map(|j| (i * 31 + j) as u8).collect();
                let mut w = tcp.try_clone()?;
                let sent = data.clone();
                let writer = std::thread::spawn(move || -> std::io::Result<()> {
                    w.write_all(&sent)?;
                    w.shutdown(Shutdown::Write)
                });
                let mut back = Vec::with_capacity(ECHO_BYTES);
                (&tcp).read_to_end(&mut back)?;
                writer.join().map_err(|_| anyhow!("writer panicked"))??;
                if back != data {
                    bail!("connection {i} got {} other bytes back", back.len());
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow!("a connection thread panicked"))??;
    }
    Ok(start.elapsed())
}

/// `assist forward AGENT -L 0:127.0.0.1:PORT…`, running; the local ports in order.
fn assist_forward(ctx: &Ctx, targets: &[u16]) -> Result<(Proc, Vec<u16>)> {
    let world = ctx.world()?;
    let mut cmd = ctx.bins.command("assist");
    cmd.env("ASSIST_CONFIG_DIR", &world.config).args(["forward", AGENT]);
    for t in targets {
        cmd.args(["-L", &format!("0:127.0.0.1:{t}")]);
    }
    cmd.args(["--ticket", TICKET, "--reason", REASON]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut proc = Proc::spawn("assist forward", &mut cmd)?;
    let mut err: Lines = proc.stderr_lines()?;
    let mut ports = Vec::new();
    for _ in targets {
        let line = err.wait_for("forwarding 127.0.0.1:", Duration::from_secs(60))?;
        let port = line.text.trim_start_matches("forwarding 127.0.0.1:").split(' ').next().unwrap_or("");
        ports.push(port.parse().with_context(|| line.text.clone())?);
    }
    err.forward(None);
    Ok((proc, ports))
}

/// `ssh -N -L P:127.0.0.1:T…` to the benchmark's target sshd; the local ports in order.
fn ssh_forward(ssh: &crate::ssh::Ssh, targets: &[u16]) -> Result<(Proc, Vec<u16>)> {
    let mut specs = Vec::new();
    let mut ports = Vec::new();
    for t in targets {
        let p = free_port()?;
        specs.push(format!("127.0.0.1:{p}:127.0.0.1:{t}"));
        ports.push(p);
    }
    let mut opts = vec!["-N"];
    for s in &specs {
        opts.extend(["-L", s.as_str()]);
    }
    let mut cmd = ssh.command(false, &opts, &[]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let proc = Proc::spawn("ssh -L", &mut cmd)?;
    for p in &ports {
        drop(connect(*p, Duration::from_secs(30))?);
    }
    Ok((proc, ports))
}

/// `assist ssh-config`'s block for the engineer, written for `ssh -F`.
fn proxy_config(ctx: &Ctx) -> Result<PathBuf> {
    let world = ctx.world()?;
    let out =
        ctx.bins.command("assist").env("ASSIST_CONFIG_DIR", &world.config).arg("ssh-config").output()?;
    if !out.status.success() {
        bail!("assist ssh-config: {}", String::from_utf8_lossy(&out.stderr));
    }
    let path = ctx.dir.join("assist_ssh_config");
    std::fs::write(&path, &out.stdout)?;
    Ok(path)
}

fn via_proxy(ctx: &Ctx, config: &Path, remote: &[&str]) -> Result<Command> {
    let world = ctx.world()?;
    let mut cmd = Command::new("ssh");
    cmd.arg("-F").arg(config).args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]);
    cmd.env("ASSIST_CONFIG_DIR", &world.config)
        .env("ASSIST_TICKET", TICKET)
        .env("ASSIST_REASON", REASON)
        .env("ASSIST_CAPABILITIES", "shell");
    cmd.arg(format!("{AGENT}.assist")).args(remote);
    Ok(cmd)
}

pub fn run(ctx: &Ctx) -> Result<Vec<Figure>> {
    let world = ctx.world()?;
    let size = ctx.settings.bulk_bytes;
    let file = ctx.dir.join("bulk.bin");
    crate::world::make_file(&file, size)?;
    let file_arg = file.to_string_lossy().into_owned();
    let limit = Duration::from_secs(60 + size / (5 << 20));
    let (fport, eport) = (file_server(file.clone())?, echo_server()?);
    let config = proxy_config(ctx)?;
    let (server, addr) = quic::spawn_server(ctx, &world.relay.data, &file)?;
    let (fwd, fwd_ports) = assist_forward(ctx, &[fport, eport])?;
    let sshl = match &ctx.ssh {
        Ok(s) => Some(ssh_forward(s, &[fport, eport])?),
        Err(_) => None,
    };
    let skip = |name: &str| match &ctx.ssh {
        Err(why) => Some(Series::skipped(name, why)),
        Ok(_) => None,
    };

    // Bulk.
    let names = ["ssh via ssh-proxy", "assist forward", "ssh -L", "direct quinn", "ssh", "ssh -J"];
    let mut mibs: [Vec<f64>; 6] = Default::default();
    let mib_s = |d: Duration| size as f64 / MIB / d.as_secs_f64();
    for round in 1..=ctx.settings.rounds {
        eprintln!("assist-bench: tunnel bulk round {round}/{}", ctx.settings.rounds);
        let took = timed("ssh via ssh-proxy", &mut via_proxy(ctx, &config, &["cat", &file_arg])?, limit)?.0;
        mibs[0].push(mib_s(took));
        let (took, got) = drain(fwd_ports[0], limit)?;
        quic::check_size(got, size)?;
        mibs[1].push(mib_s(took));
        if let Some((_, ports)) = &sshl {
            let (took, got) = drain(ports[0], limit)?;
            quic::check_size(got, size)?;
            mibs[2].push(mib_s(took));
        }
        mibs[3].push(mib_s(crate::bulk::quic_fetch(ctx, addr, &world.relay.fingerprint, size, limit)?));
        if let Ok(s) = &ctx.ssh {
            mibs[4].push(mib_s(timed("ssh", &mut s.command(false, &[], &["cat", &file_arg]), limit)?.0));
            mibs[5].push(mib_s(timed("ssh -J", &mut s.command(true, &[], &["cat", &file_arg]), limit)?.0));
        }
    }
    drop(server);
    let title = format!("tunnels: bulk {} agent -> engineer", crate::bulk::human_size(size));
    let mut bulk = Figure::new("tunnel_bulk_mib_s", &title, "MiB/s", Better::Higher, "ssh via ssh-proxy")
        .target("ssh -J", 1.0);
    for (i, name) in names.iter().enumerate() {
        bulk.push(match (i, skip(name)) {
            (2 | 4 | 5, Some(s)) => s,
            _ => Series::new(name, mibs[i].clone()),
        });
    }
    bulk.note(
        "ssh via ssh-proxy, ssh, ssh -J, direct quinn: whole process (ssh-proxy's includes the session \
         request and the automatic approval); assist forward and ssh -L: one TCP connection's transfer \
         through an established tunnel, from a file server on the far side",
    );

    // A forwarded connection's setup.
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let samples = if ctx.settings.quick { 10 } else { 50 };
    let (mut a, mut s, mut d) = (vec![], vec![], vec![]);
    for _ in 0..samples {
        a.push(ms(first_byte(fwd_ports[1])?));
        if let Some((_, ports)) = &sshl {
            s.push(ms(first_byte(ports[1])?));
        }
        d.push(ms(first_byte(eport)?));
    }
    let mut setup = Figure::new(
        "forward_setup_ms",
        "a forwarded connection's setup: connect + first byte echoed",
        "ms",
        Better::Lower,
        "assist forward",
    );
    setup.push(Series::new("assist forward", a));
    setup.push(skip("ssh -L").unwrap_or_else(|| Series::new("ssh -L", s)));
    setup.push(Series::new("direct TCP", d));
    setup.note("the forward's channel to the target is open once the byte comes back");

    // 100 concurrent connections through one session.
    let (mut a, mut s, mut d) = (vec![], vec![], vec![]);
    for round in 1..=ctx.settings.rounds {
        eprintln!("assist-bench: {CONNS} concurrent connections, round {round}/{}", ctx.settings.rounds);
        a.push(ms(concurrent(fwd_ports[1])?));
        if let Some((_, ports)) = &sshl {
            s.push(ms(concurrent(ports[1])?));
        }
        d.push(ms(concurrent(eport)?));
    }
    let title = format!("{CONNS} concurrent forwarded connections x 64 KiB echoed, one session");
    let mut many = Figure::new("forward_concurrent_ms", &title, "ms", Better::Lower, "assist forward");
    many.push(Series::new("assist forward", a));
    many.push(skip("ssh -L").unwrap_or_else(|| Series::new("ssh -L", s)));
    many.push(Series::new("direct TCP", d));
    many.note(format!(
        "wall time from the first connect until all {CONNS} got their bytes back; assist: each its own \
         QUIC stream in one session; ssh -L: channels of one SSH connection"
    ));
    drop(fwd);
    drop(sshl);
    Ok(vec![bulk.finish(), setup.finish(), many.finish()])
}
