//! Port forwarding (issue 17), through the real binaries: `assist forward` to a real TCP
//! echo server on loopback, reached from the agent's side; forty concurrent connections,
//! each its own channel; a target outside the grant refused; revocation closing an open
//! connection; every connection audited and recorded.

use assist_tests::files_support::{agent_with, events, hold_session, noise};
use assist_tests::{Proc, TestRelay, WAIT, wait_until};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP echo server on 127.0.0.1 (tasks of its own runtime), gone when dropped.
struct Echo {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
}

impl Echo {
    fn start() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        rt.spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tcp.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Ok(Self { rt, addr })
    }

    fn target(&self) -> String {
        format!("127.0.0.1:{}", self.addr.port())
    }
}

/// Waits for `assist forward`'s "forwarding 127.0.0.1:PORT -> ..." line; returns the port.
fn local_port(proc: &mut Proc) -> anyhow::Result<u16> {
    let line = proc.stderr.wait_for("forwarding 127.0.0.1:")?;
    let port = line.trim_start_matches("forwarding 127.0.0.1:").split(' ').next().unwrap_or("");
    Ok(port.parse()?)
}

/// Forwarded connections open at once in the concurrency test.
const CONNS: usize = 40;

fn forward_args<'a>(agent: &'a str, spec: &'a str) -> Vec<&'a str> {
    vec!["forward", agent, "-L", spec, "--ticket", "INC-17", "--reason", "the ERP database"]
}

/// Sends `data` through the forward at `port`, closes its writing side, returns what came back.
fn echo_once(port: u16, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(WAIT))?;
    tcp.write_all(data)?;
    tcp.shutdown(Shutdown::Write)?;
    let mut back = Vec::new();
    tcp.read_to_end(&mut back)?;
    Ok(back)
}

fn signal(proc: &Proc, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill").args([name, &proc.child.id().to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill {name} failed");
    Ok(())
}

fn session_row(cli: &assist_tests::Cli, id: &str) -> anyhow::Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["sessions", "--json"])?)?;
    Ok(v.as_array().and_then(|a| a.iter().find(|s| s["id"] == id)).cloned().unwrap_or_default())
}

#[test]
fn forward_carries_many_concurrent_connections_audited_and_recorded() -> anyhow::Result<()> {
    let echo = Echo::start()?;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);

    let spec = format!("0:{}", echo.target());
    let mut fwd = alice.spawn(&forward_args("erp-db01", &spec))?;
    let id = bob.pending_request()?;
    let asked = session_row(&bob, &id)?;
    assert_eq!(asked["capabilities"][0]["kind"], "forward", "{asked}");
    assert_eq!(asked["capabilities"][0]["target"], echo.target().as_str(), "{asked}");
    bob.ok(&["approve", &id])?;
    let port = local_port(&mut fwd)?;

    // A slow connection: opened, half an exchange, then left waiting while the others run.
    let setup = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", port))?;
    slow.set_read_timeout(Some(WAIT))?;
    slow.write_all(b"slow-")?;
    let mut first = [0u8; 5];
    slow.read_exact(&mut first)?;
    assert_eq!(&first, b"slow-");
    eprintln!("a forwarded connection's first round trip (its setup included): {:?}", setup.elapsed());

    // Forty connections open at once (more than a connection's default 16 streams), each
    // echoing its own data while all the others are open too.
    let len = 256 * 1024;
    let started = Instant::now();
    let all_open = std::sync::Arc::new(tokio::sync::Barrier::new(CONNS));
    let served = async {
        let mut tasks = Vec::new();
        for i in 0..CONNS as u64 {
            let all_open = all_open.clone();
            tasks.push(tokio::spawn(async move {
                let data = noise(len, i + 1);
                let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let (mut r, mut w) = tcp.split();
                let mut back = vec![0u8; len];
                let (sent, got) = tokio::join!(w.write_all(&data), r.read_exact(&mut back));
                sent?;
                got?;
                all_open.wait().await;
                w.shutdown().await?;
                let mut rest = Vec::new();
                r.read_to_end(&mut rest).await?;
                anyhow::Ok(back == data && rest.is_empty())
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.map_err(anyhow::Error::from).and_then(|r| r));
        }
        all
    };
    let results = echo.rt.block_on(async { tokio::time::timeout(WAIT, served).await });
    let results = results.map_err(|_| anyhow::anyhow!("{CONNS} connections were not all served at once"))?;
    for (i, r) in results.into_iter().enumerate() {
        assert!(r?, "connection {i} got back other bytes");
    }
    eprintln!("{CONNS} concurrent connections x {len} bytes echoed in {:?}", started.elapsed());

    // The slow one was not held up, and still works.
    slow.write_all(b"done")?;
    slow.shutdown(Shutdown::Write)?;
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest)?;
    assert_eq!(rest, b"done");

    // Each connection opened and closed on the record, with its bytes.
    let n = CONNS + 1;
    wait_until("forward.closed events", || Ok(events(&relay, &id, "forward.closed")?.len() >= n))?;
    let opened = events(&relay, &id, "forward.opened")?;
    assert_eq!(opened.len(), n, "{opened:?}");
    let closed = events(&relay, &id, "forward.closed")?;
    let full: Vec<_> = closed.iter().filter(|e| e["detail"]["bytes_in"] == len as u64).collect();
    assert_eq!(full.len(), CONNS, "{closed:?}");
    for e in &full {
        assert_eq!(e["detail"]["bytes_out"], len as u64, "{e}");
        assert_eq!(e["detail"]["target"], echo.target().as_str(), "{e}");
        assert!(e["detail"]["duration_ms"].is_u64() && e["detail"]["peer"].is_string(), "{e}");
        assert_eq!(e["actor"], "alice");
    }

    // Ctrl-C ends it cleanly: the session it asked for ends saying so.
    signal(&fwd, "-INT")?;
    let status = fwd.wait()?;
    assert_eq!(status.code(), Some(0), "{:?}", fwd.stderr.seen);
    fwd.stderr.wait_for("forwarding finished")?;
    wait_until("the session's end", || Ok(session_row(&bob, &id)?["end_reason"] == "forwarding finished"))?;

    // The recording verifies and holds the forwarded bytes: the slow connection's input
    // exactly, and one of the twenty's.
    let verified = verify(&relay, &id)?;
    assert!(verified.starts_with("valid"), "{verified}");
    let countersigned = format!("the agent countersigned {n} channel(s) and saw the same bytes");
    assert!(verified.contains(&countersigned), "{verified}");
    let file = relay.data_dir().join("recordings").join(format!("{id}.arec"));
    let note = "forwarded TCP; contents as sent (opaque if the protocol encrypts them)";
    let raw = std::fs::read(file)?;
    assert!(raw.windows(note.len()).any(|w| w == note.as_bytes()), "the channels say what their bytes are");
    let slow_channel = opened[0]["detail"]["channel"].as_u64().unwrap_or_default();
    assert_eq!(export(&relay, &id, slow_channel, "in")?, b"slow-done");
    let some = full[0]["detail"]["channel"].as_u64().unwrap_or_default();
    let out = export(&relay, &id, some, "out")?;
    assert_eq!(out.len(), len);
    assert!(
        (1..=CONNS as u64).any(|seed| noise(len, seed) == out),
        "the recorded bytes are one connection's data"
    );
    Ok(())
}

/// `assist-relay recording verify ID`, once the seal is written.
fn verify(relay: &TestRelay, id: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    wait_until("a sealed recording", || {
        let out = Command::new(assist_tests::bin("assist-relay"))
            .arg("--data-dir")
            .arg(relay.data_dir())
            .args(["recording", "verify", id])
            .output()?;
        text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        Ok(out.status.success())
    })?;
    Ok(text)
}

/// The raw bytes of one channel direction of a recording.
fn export(relay: &TestRelay, id: &str, channel: u64, direction: &str) -> anyhow::Result<Vec<u8>> {
    let out = relay.dir.path().join(format!("fwd-{channel}-{direction}"));
    let channel = channel.to_string();
    let args =
        ["recording", "export", id, "--format", "raw", "--channel", &channel, "--direction", direction];
    relay.admin(&[&args[..], &["--output", out.to_str().unwrap_or_default()]].concat())?;
    Ok(std::fs::read(out)?)
}

#[test]
fn a_target_outside_the_grant_is_refused_and_revocation_closes_what_is_open() -> anyhow::Result<()> {
    let (echo, other) = (Echo::start()?, Echo::start()?);
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);

    // A port nothing listens on (the agent's connect is refused).
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let nobody = format!("127.0.0.1:{closed_port}");

    // A live session granting two targets; a forward to another through it is refused.
    let granted = [format!("forward:{}", echo.target()), format!("forward:{nobody}")];
    let held = hold_session(&alice, &bob, "erp-db01", &granted)?;
    let specs = [format!("0:{}", other.target()), format!("0:{nobody}"), format!("0:{}", echo.target())];
    let mut args = vec!["forward", "erp-db01", "--session", &held.id];
    for spec in &specs {
        args.extend(["-L", spec]);
    }
    let mut outside = alice.spawn(&args)?;
    let port = local_port(&mut outside)?;
    let port2 = local_port(&mut outside)?;
    let port3 = local_port(&mut outside)?;
    let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(WAIT))?;
    let _ = tcp.write_all(b"hello");
    let mut buf = Vec::new();
    let read = tcp.read_to_end(&mut buf);
    assert!(read.is_err() || buf.is_empty(), "nothing comes back from a refused target: {buf:?}");
    let line = outside.stderr.wait_for("refused")?;
    assert!(line.contains(&other.target()), "{line}");
    wait_until("channel.refused", || Ok(!events(&relay, &held.id, "channel.refused")?.is_empty()))?;
    let refused = events(&relay, &held.id, "channel.refused")?;
    assert_eq!(refused[0]["detail"]["channel"]["target"], other.target().as_str(), "{refused:?}");
    assert!(events(&relay, &held.id, "forward.opened")?.is_empty());
    // The refusal made the command look at the session: the target outside the grant is
    // no longer listened for.
    outside.stderr.wait_for(&format!("stopped forwarding 127.0.0.1:{port} -> {}", other.target()))?;

    // A granted target that refuses the agent's connection: said so, nothing opened.
    let mut tcp = TcpStream::connect(("127.0.0.1", port2))?;
    tcp.set_read_timeout(Some(WAIT))?;
    let mut buf = Vec::new();
    let read = tcp.read_to_end(&mut buf);
    assert!(read.is_err() || buf.is_empty(), "{buf:?}");
    let line = outside.stderr.wait_for("connection refused by")?;
    assert!(line.contains(&nobody), "{line}");
    assert!(events(&relay, &held.id, "forward.opened")?.is_empty());

    // The granted target works; revoking it in the session closes its open connection,
    // and the command stops that listener (it follows the session: told of the change).
    let mut open = TcpStream::connect(("127.0.0.1", port3))?;
    open.set_read_timeout(Some(WAIT))?;
    open.write_all(b"ping")?;
    let mut pong = [0u8; 4];
    open.read_exact(&mut pong)?;
    bob.ok(&["revoke", &held.id, "--capability", &format!("forward:{}", echo.target())])?;
    let mut rest = Vec::new();
    let closed = open.read_to_end(&mut rest);
    assert!(closed.is_err() || rest.is_empty(), "{rest:?}");
    let line = outside.stderr.wait_for("stopped forwarding")?;
    assert!(line.contains(&format!("127.0.0.1:{port3} -> {}", echo.target())), "{line}");

    // The session's end: told at once, the command leaves saying so and stops listening.
    bob.ok(&["end", &held.id, "--reason", "enough for today"])?;
    assert_eq!(outside.wait()?.code(), Some(255), "{:?}", outside.stderr.seen);
    let line = outside.stderr.wait_for("ended")?;
    assert!(line.contains("enough for today"), "{line}");
    assert!(TcpStream::connect(("127.0.0.1", port2)).is_err(), "still listening on {port2}");

    // Its own session, two targets: an open connection works, then revoking its target
    // closes it and stops that listener; the other goes on until it is revoked too, which
    // ends the session, and the command leaves saying why.
    let (spec, spec2) = (format!("0:{}", echo.target()), format!("0:{}", other.target()));
    let mut args = forward_args("erp-db01", &spec);
    args.extend(["-L", &spec2]);
    let mut fwd = alice.spawn(&args)?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    let port = local_port(&mut fwd)?;
    let port2 = local_port(&mut fwd)?;
    let mut open = TcpStream::connect(("127.0.0.1", port))?;
    open.set_read_timeout(Some(WAIT))?;
    open.write_all(b"ping")?;
    let mut pong = [0u8; 4];
    open.read_exact(&mut pong)?;
    assert_eq!(&pong, b"ping");
    assert_eq!(echo_once(port2, b"another")?, b"another");

    let cap = format!("forward:{}", echo.target());
    let asked = Instant::now();
    bob.ok(&["revoke", &id, "--capability", &cap, "--reason", "done with the db"])?;
    let revoked = Instant::now();
    let mut rest = Vec::new();
    let closed = open.read_to_end(&mut rest);
    let took = revoked.elapsed();
    assert!(closed.is_err() || rest.is_empty(), "{rest:?}");
    eprintln!(
        "open connection closed {took:?} after the revocation was answered ({:?} after `assist revoke` started)",
        asked.elapsed()
    );
    // The relay resets the streams before it answers: closed within a second of that.
    assert!(took < Duration::from_secs(1), "closed only after {took:?}");
    let line = fwd.stderr.wait_for("stopped forwarding")?;
    assert!(line.contains(&format!("-> {}", echo.target())), "{line}");
    wait_until("the listener to go", || Ok(TcpStream::connect(("127.0.0.1", port)).is_err()))?;
    assert_eq!(echo_once(port2, b"still")?, b"still");

    bob.ok(&["revoke", &id, "--capability", "forward", "--reason", "all done"])?;
    let status = fwd.wait()?;
    assert_eq!(status.code(), Some(255), "{:?}", fwd.stderr.seen);
    let why = fwd.stderr.wait_for("all capabilities revoked")?;
    assert!(why.contains("all done"), "{why}");
    assert!(TcpStream::connect(("127.0.0.1", port2)).is_err(), "still listening on {port2}");
    Ok(())
}

#[test]
fn the_grant_running_out_closes_open_connections_and_the_command() -> anyhow::Result<()> {
    let echo = Echo::start()?;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);

    let spec = format!("0:{}", echo.target());
    let mut args = forward_args("erp-db01", &spec);
    args.extend(["--for", "3s"]);
    let mut fwd = alice.spawn(&args)?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    let port = local_port(&mut fwd)?;
    let mut open = TcpStream::connect(("127.0.0.1", port))?;
    open.set_read_timeout(Some(WAIT))?;
    open.write_all(b"ping")?;
    let mut pong = [0u8; 4];
    open.read_exact(&mut pong)?;
    assert_eq!(&pong, b"ping");

    // Held open until the grant runs out: then closed, within a second of the expiry.
    let mut rest = Vec::new();
    let closed = open.read_to_end(&mut rest);
    let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    assert!(closed.is_err() || rest.is_empty(), "{rest:?}");
    let expires = session_row(&bob, &id)?["grant_expires_at"].as_i64().unwrap_or_default();
    eprintln!("closed {} ms after the grant's expiry", at - expires);
    assert!(at - expires < 1000, "closed {} ms after the expiry", at - expires);

    assert_eq!(fwd.wait()?.code(), Some(2), "{:?}", fwd.stderr.seen);
    fwd.stderr.wait_for("forwarding stopped")?;
    wait_until("the session's end", || Ok(session_row(&bob, &id)?["end_reason"] == "forwarding stopped"))?;
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "still listening on {port}");
    Ok(())
}

#[test]
fn forward_in_a_live_session_is_told_of_extensions_and_revocations_as_they_happen() -> anyhow::Result<()> {
    let (echo, other) = (Echo::start()?, Echo::start()?);
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let granted = [format!("forward:{}", echo.target()), format!("forward:{}", other.target())];
    let held = hold_session(&alice, &bob, "erp-db01", &granted)?;
    let (spec, spec2) = (format!("0:{}", echo.target()), format!("0:{}", other.target()));
    let mut fwd = alice.spawn(&["forward", "erp-db01", "--session", &held.id, "-L", &spec, "-L", &spec2])?;
    let port = local_port(&mut fwd)?;
    let port2 = local_port(&mut fwd)?;
    assert_eq!(echo_once(port2, b"before")?, b"before");

    // An extension is said on stderr; the forwards go on.
    let mut esc = alice.spawn(&["escalate", &held.id, "--extend", "10m", "--reason", "one more look"])?;
    esc.stderr.wait_for("waiting for an approver of acme")?;
    bob.ok(&["approve", &held.id])?;
    assert_eq!(esc.wait()?.code(), Some(0));
    fwd.stderr.wait_for("bob granted")?;

    // A revocation, with no connection open to notice it: told at once, that listener
    // stops and the other goes on.
    bob.ok(&[
        "revoke",
        &held.id,
        "--capability",
        &format!("forward:{}", echo.target()),
        "--reason",
        "db done",
    ])?;
    fwd.stderr.wait_for("db done")?;
    let line = fwd.stderr.wait_for("stopped forwarding")?;
    assert!(line.contains(&format!("127.0.0.1:{port} -> {}", echo.target())), "{line}");
    assert!(line.contains("no longer covers it"), "told, not found out by a connection: {line}");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "still listening on {port}");
    assert_eq!(echo_once(port2, b"after")?, b"after");

    // Nothing left to forward: the command leaves saying why; the session stays.
    bob.ok(&["revoke", &held.id, "--capability", "forward", "--reason", "all done"])?;
    assert_eq!(fwd.wait()?.code(), Some(2), "{:?}", fwd.stderr.seen);
    fwd.stderr.wait_for("forwarding stopped")?;
    assert!(TcpStream::connect(("127.0.0.1", port2)).is_err(), "still listening on {port2}");
    assert_eq!(session_row(&bob, &held.id)?["state"], "active");
    Ok(())
}
