//! The `--http` listener cannot be exhausted: idle, half-sent requests are capped per
//! address and in all (at most half the open-file limit), dropped after the header
//! timeout, idle connections after the idle timeout, and sessions keep recording while
//! the caps are full.

use assist_tests::{Proc, TestRelay, WAIT, bin, wait_until};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Instant;

const HALF_SENT: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: relay\r\n";

/// Starts a relay with `extra` serve arguments, run by `sh -c SCRIPT` (for `ulimit`).
fn start(script: &str, extra: &[&str]) -> anyhow::Result<(TestRelay, SocketAddr)> {
    let dir = tempfile::tempdir()?;
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("{script}; exec \"$0\" \"$@\"")])
        .arg(bin("assist-relay"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--no-console"])
        .args(extra)
        .env("RUST_LOG", "info");
    let mut proc = Proc::spawn(cmd)?;
    let ready = proc.stdout.wait_for("listening on")?;
    let words: Vec<&str> = ready.split_whitespace().collect();
    anyhow::ensure!(words.len() == 6, "bad ready line {ready}");
    let http = proc
        .stdout
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("assist-relay http on "))
        .ok_or_else(|| anyhow::anyhow!("no http line"))?
        .parse()?;
    let admin_password = String::new();
    let (addr, fingerprint) = (words[3].to_owned(), words[5].to_owned());
    Ok((TestRelay { dir, proc, addr, fingerprint, admin_password, env: vec![] }, http))
}

/// A connection from `from` (any 127.x address) that sent half a request.
fn half_sent(from: &str, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(format!("{from}:0").parse()?)?;
        let stream = socket.connect(to).await?;
        anyhow::Ok(stream.into_std()?)
    })?;
    stream.set_nonblocking(false)?;
    // A connection over a cap may be closed before this write: it fails, and the
    // connection is then counted as closed.
    match (&stream).write_all(HALF_SENT) {
        Err(e) if !gone(&e) => Err(e.into()),
        _ => Ok(stream),
    }
}

fn gone(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)
}

/// Whether the relay has closed this connection (without waiting).
fn closed(s: &TcpStream) -> anyhow::Result<bool> {
    s.set_nonblocking(true)?;
    let mut b = [0u8; 64];
    let r = match (&*s).read(&mut b) {
        Ok(0) => true,
        Ok(_) => anyhow::bail!("the relay answered half a request"),
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) if gone(&e) => true,
        Err(e) => return Err(e.into()),
    };
    s.set_nonblocking(false)?;
    Ok(r)
}

fn count_closed(conns: &[TcpStream]) -> anyhow::Result<usize> {
    let mut n = 0;
    for c in conns {
        n += usize::from(closed(c)?);
    }
    Ok(n)
}

fn health(from: &str, to: SocketAddr) -> anyhow::Result<Option<String>> {
    let s = half_sent(from, to)?;
    match (&s).write_all(b"Connection: close\r\n\r\n") {
        Err(e) if gone(&e) => return Ok(None),
        r => r?,
    }
    s.set_read_timeout(Some(WAIT))?;
    let mut body = String::new();
    match (&s).read_to_string(&mut body) {
        Ok(_) if !body.is_empty() => Ok(Some(body)),
        Ok(_) => Ok(None),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[test]
fn idle_half_sent_requests_are_capped_and_sessions_still_record() -> anyhow::Result<()> {
    // 256 open files at most (soft and hard): the listener keeps at most 128 connections,
    // 50 per address (the flag); the rest stays for recordings and the database.
    let (relay, http) = start(
        "ulimit -n 256",
        &["--http-max-per-address", "50", "--http-header-timeout", "10m", "--http-idle-timeout", "10m"],
    )?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;

    let mut conns = Vec::new();
    for from in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        for _ in 0..60 {
            conns.push(half_sent(from, http)?);
        }
    }
    // 10 over the per-address cap from each of the first two addresses, then 32 past
    // the 128 in all from the third.
    let want_closed = 180 - 128;
    wait_until("connections over the caps to be closed", || Ok(count_closed(&conns)? >= want_closed))?;
    assert!(health("127.0.0.4", http)?.is_none(), "a new connection is refused while the cap is full");

    // A shell session runs and records while the listener is full.
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(&[
        "shell",
        "erp-db01",
        "--ticket",
        "INC-6",
        "--reason",
        "flooded",
        "--",
        "sh",
        "-c",
        "echo still-$((6*7))",
    ])?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    s.stdout.wait_for("still-42")?;
    assert_eq!(s.wait()?.code(), Some(0));
    wait_until("the recording to be sealed valid", || {
        let out = Command::new(bin("assist-relay"))
            .arg("--data-dir")
            .arg(relay.data_dir())
            .args(["recording", "verify", &id])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).starts_with("valid"))
    })?;

    // The admitted ones are still held (the header timeout is long here) …
    assert_eq!(count_closed(&conns)?, want_closed);
    // … and once some go, new clients are served again.
    conns.truncate(60);
    wait_until("the health endpoint to answer again", || {
        Ok(health("127.0.0.4", http)?.is_some_and(|b| b.starts_with("HTTP/1.1 200")))
    })?;
    Ok(())
}

#[test]
fn half_sent_and_idle_connections_are_dropped_after_their_timeouts() -> anyhow::Result<()> {
    // Started with a low soft limit on open files: the relay raises it to the hard limit.
    let (relay, http) =
        start("ulimit -Sn 200", &["--http-header-timeout", "1s", "--http-idle-timeout", "1m"])?;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", relay.proc.child.id()))?;
    let open_files: Vec<&str> =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or("").split_whitespace().collect();
    assert_eq!(open_files.get(3), open_files.get(4), "soft limit not raised to the hard one: {limits}");
    let started = Instant::now();
    let s = half_sent("127.0.0.1", http)?;
    s.set_read_timeout(Some(WAIT))?;
    let mut rest = Vec::new();
    let _ = (&s).read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(took.as_millis() >= 900 && took < WAIT, "closed after {took:?}");

    // A keep-alive connection that answered one request and then sits idle.
    drop(relay);
    let (_relay, http) = start("true", &["--http-header-timeout", "1m", "--http-idle-timeout", "1s"])?;
    let s = half_sent("127.0.0.1", http)?;
    (&s).write_all(b"\r\n")?;
    let started = Instant::now();
    s.set_read_timeout(Some(WAIT))?;
    let mut got = Vec::new();
    let _ = (&s).read_to_end(&mut got);
    let took = started.elapsed();
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(took.as_millis() >= 900 && took < WAIT, "idle connection closed after {took:?}");
    Ok(())
}
