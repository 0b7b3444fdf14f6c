//! OpenSSH's own tools through `assist ssh-proxy` (issue 17), with the block `assist
//! ssh-config` prints: `ssh` runs a command (its exit status back) and an interactive PTY
//! session recorded in clear; `scp` and `sftp` move files each way inside a granted root
//! and are refused outside it, every transfer audited with both digests; `rsync -e ssh`
//! syncs a directory; `ssh -L` reaches a TCP echo service, is refused a target outside the
//! grant, and its open connection closes when the grant is revoked; `psql` reaches a
//! PostgreSQL server of the test's own through `assist forward` and through `ssh -L`.

use anyhow::Context;
use assist_tests::files_support::{agent_with, events, hold_session, noise, sha256};
use assist_tests::{Cli, Proc, TestRelay, WAIT, wait_until};
use expectrl::Expect;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// `assist ssh-config`'s block, written where `ssh -F` reads it.
pub(super) fn ssh_config(cli: &Cli) -> anyhow::Result<PathBuf> {
    let text = cli.ok(&["ssh-config"])?;
    assert!(text.contains("Host *.assist"), "{text}");
    assert!(text.contains("ssh-proxy %h"), "{text}");
    let path = cli.dir.path().join("ssh_config");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// An OpenSSH tool (`ssh`, `scp`, `sftp`, `rsync`) as `cli`'s engineer, with the config
/// and the session settings in its environment (the proxy inherits it).
pub(super) fn tool(cli: &Cli, program: &str, config: &Path, env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("ASSIST_CONFIG_DIR", cli.dir.path());
    for (k, v) in env {
        cmd.env(k, v);
    }
    if program != "rsync" {
        cmd.arg("-F").arg(config).args(["-o", "BatchMode=yes"]);
    }
    cmd
}

pub(super) fn new_session(caps: &str) -> Vec<(&str, &str)> {
    vec![("ASSIST_TICKET", "INC-17"), ("ASSIST_REASON", "patch the ERP"), ("ASSIST_CAPABILITIES", caps)]
}

pub(super) fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

pub(super) fn session_row(cli: &Cli, id: &str) -> anyhow::Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["sessions", "--json"])?)?;
    Ok(v.as_array().and_then(|a| a.iter().find(|s| s["id"] == id)).cloned().unwrap_or_default())
}

/// Waits for the recording's seal, then exports it as asciicast.
pub(super) fn cast(relay: &TestRelay, id: &str) -> anyhow::Result<String> {
    let out = relay.dir.path().join(format!("{id}.cast"));
    wait_until("a sealed recording", || {
        let ok = Command::new(assist_tests::bin("assist-relay"))
            .arg("--data-dir")
            .arg(relay.data_dir())
            .args(["recording", "verify", id])
            .output()?
            .status
            .success();
        Ok(ok)
    })?;
    relay.admin(&[
        "recording",
        "export",
        id,
        "--format",
        "asciicast",
        "--output",
        out.to_str().unwrap_or(""),
    ])?;
    Ok(std::fs::read_to_string(out)?)
}

#[test]
fn ssh_runs_a_command_and_a_pty_session_through_the_proxy_recorded_in_clear() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let config = ssh_config(&alice)?;
    // The agent's host key is pinned before ssh ever connects: no question asked.
    let pinned = std::fs::read_to_string(alice.dir.path().join("ssh/known_hosts"))?;
    assert!(pinned.starts_with("erp-db01.assist ssh-ed25519 "), "{pinned}");

    // A command: waits for consent (said on stderr, where ssh shows it), then runs; its
    // stdout, stderr and exit status come back.
    let mut cmd = tool(&alice, "ssh", &config, &new_session("shell"));
    cmd.args(["erp-db01.assist", "echo out-$((40+2)); echo to-stderr >&2; exit 7"]);
    let mut ssh = Proc::spawn(cmd)?;
    ssh.stderr.wait_for("waiting for an approver of acme")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    ssh.stdout.wait_for("out-42")?;
    ssh.stderr.wait_for("to-stderr")?;
    assert_eq!(ssh.wait()?.code(), Some(7), "{:?}", ssh.stderr.seen);
    wait_until("the session's end", || {
        // The command's exit went to its SSH channel; ssh closing ended the session.
        Ok(session_row(&bob, &id)?["end_reason"] == "ssh connection closed")
    })?;
    let recorded = cast(&relay, &id)?;
    assert!(recorded.contains("out-42") && recorded.contains("to-stderr"), "{recorded}");

    // An interactive session in a real terminal: the PTY's size and later resizes reach
    // the remote shell, and what was typed and shown is in the recording in clear.
    let mut cmd = tool(&alice, "ssh", &config, &new_session("shell"));
    cmd.args(["-tt", "erp-db01.assist"]).env("TERM", "xterm-256color");
    let mut p = expectrl::Session::spawn(cmd)?;
    p.set_expect_timeout(Some(WAIT));
    p.get_process_mut().set_window_size(100, 30)?;
    p.expect("waiting for an approver of acme").context("the wait for consent")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    p.send_line("stty size; echo typed-$((6*7))")?;
    p.expect("30 100").context("the terminal's size")?;
    p.expect("typed-42").context("the command's output")?;
    p.get_process_mut().set_window_size(120, 40)?;
    p.set_expect_timeout(Some(std::time::Duration::from_secs(2)));
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        p.send_line(format!("stty size; echo probe-$(({n}+1000))"))?;
        let seen = p.expect(format!("probe-{}", n + 1000).as_str()).context("the probe")?;
        if String::from_utf8_lossy(seen.before()).contains("40 120") {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the remote PTY never saw the new size");
    }
    p.set_expect_timeout(Some(WAIT));
    p.send_line("exit 3")?;
    let status = p.get_process_mut().wait()?;
    assert!(matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 3)), "{status:?}");
    let recorded = cast(&relay, &id)?;
    assert!(recorded.contains("stty size; echo typed-$((6*7))"), "what was typed, in clear: {recorded}");
    assert!(recorded.contains("typed-42"), "what was shown, in clear: {recorded}");
    Ok(())
}

#[test]
fn scp_sftp_and_rsync_move_files_inside_the_granted_root_and_nowhere_else() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let config = ssh_config(&alice)?;
    let disk = tempfile::tempdir()?;
    let (root, outside, local) =
        (disk.path().join("root"), disk.path().join("outside"), disk.path().join("local"));
    for d in [&root, &outside, &local] {
        std::fs::create_dir(d)?;
    }
    let r = root.to_str().unwrap_or_default().to_owned();
    let grant = [format!("files.read:{r}"), format!("files.write:{r}")];
    let held = hold_session(&alice, &bob, "erp-db01", &grant)?;
    let in_session = [("ASSIST_SESSION", held.id.as_str())];

    // scp up and down inside the root.
    let up = noise(300 * 1024 + 7, 1);
    std::fs::write(local.join("up.bin"), &up)?;
    let out = tool(&alice, "scp", &config, &in_session)
        .arg(local.join("up.bin"))
        .arg(format!("erp-db01.assist:{r}/up.bin"))
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(root.join("up.bin"))?, up);
    let down = noise(200 * 1024 + 3, 2);
    std::fs::write(root.join("down.bin"), &down)?;
    let out = tool(&alice, "scp", &config, &in_session)
        .arg(format!("erp-db01.assist:{r}/down.bin"))
        .arg(&local)
        .output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(local.join("down.bin"))?, down);

    // Outside the root: refused both ways, as SFTP errors; nothing written.
    std::fs::write(outside.join("secret.txt"), "not yours")?;
    let o = outside.to_str().unwrap_or_default();
    let out = tool(&alice, "scp", &config, &in_session)
        .arg(format!("erp-db01.assist:{o}/secret.txt"))
        .arg(local.join("secret.txt"))
        .output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("refused"), "{}", text(&out));
    assert!(!local.join("secret.txt").exists());
    let out = tool(&alice, "scp", &config, &in_session)
        .arg(local.join("up.bin"))
        .arg(format!("erp-db01.assist:{o}/planted.bin"))
        .output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!outside.join("planted.bin").exists());

    // sftp: put and get inside, a get outside refused.
    let put = noise(64 * 1024, 3);
    std::fs::write(local.join("put.bin"), &put)?;
    let batch = disk.path().join("batch");
    let script =
        format!("put {l}/put.bin {r}/put.bin\nget {r}/down.bin {l}/got.bin\nls {r}\n", l = local.display());
    std::fs::write(&batch, script)?;
    let out =
        tool(&alice, "sftp", &config, &in_session).arg("-b").arg(&batch).arg("erp-db01.assist").output()?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("up.bin"), "{}", text(&out));
    assert_eq!(std::fs::read(root.join("put.bin"))?, put);
    assert_eq!(std::fs::read(local.join("got.bin"))?, down);
    std::fs::write(&batch, format!("get {o}/secret.txt {}/s.txt\n", local.display()))?;
    let out =
        tool(&alice, "sftp", &config, &in_session).arg("-b").arg(&batch).arg("erp-db01.assist").output()?;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!local.join("s.txt").exists());

    // Every transfer is audited with both digests, as `assist cp`'s are.
    let moved = events(&relay, &held.id, "file.transferred")?;
    for (name, data) in [("up.bin", &up), ("down.bin", &down), ("put.bin", &put)] {
        let e = moved
            .iter()
            .find(|e| e["detail"]["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .with_context(|| format!("no file.transferred for {name}: {moved:?}"))?;
        assert_eq!(e["detail"]["sha256_agent"], sha256(data), "{e}");
        assert_eq!(e["detail"]["sha256_engineer"], sha256(data), "{e}");
    }
    drop(held);

    // rsync -e ssh: a directory synced into the root, in a session of its own.
    let tree = local.join("tree");
    std::fs::create_dir_all(tree.join("sub"))?;
    std::fs::write(tree.join("a.txt"), "alpha\n")?;
    std::fs::write(tree.join("sub/b.bin"), noise(50_000, 4))?;
    let caps = "shell";
    let ssh = format!("ssh -F {} -o BatchMode=yes", config.to_str().unwrap_or_default());
    let mut cmd = tool(&alice, "rsync", &config, &new_session(caps));
    cmd.args(["-a", "-e", &ssh]).arg(&tree).arg(format!("erp-db01.assist:{r}/"));
    let mut rsync = Proc::spawn(cmd)?;
    rsync.stderr.wait_for("waiting for an approver of acme")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    assert_eq!(rsync.wait()?.code(), Some(0), "{:?}", rsync.stderr.seen);
    assert_eq!(std::fs::read_to_string(root.join("tree/a.txt"))?, "alpha\n");
    assert_eq!(std::fs::read(root.join("tree/sub/b.bin"))?, noise(50_000, 4));
    Ok(())
}

/// A TCP echo server on 127.0.0.1, on a thread per connection; gone with the process.
fn echo() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { return };
            std::thread::spawn(move || {
                let Ok(mut back) = tcp.try_clone() else { return };
                let _ = std::io::copy(&mut tcp, &mut back);
                let _ = back.shutdown(Shutdown::Write);
            });
        }
    });
    Ok(port)
}

/// A port that was free a moment ago (ssh -L does not say which port 0 became).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[test]
fn ssh_l_reaches_a_granted_service_is_refused_others_and_closes_on_revocation() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let config = ssh_config(&alice)?;
    let (granted, other) = (echo()?, echo()?);
    let (port, refused_port) = (free_port()?, free_port()?);
    let cap = format!("forward:127.0.0.1:{granted}");
    let mut cmd = tool(&alice, "ssh", &config, &new_session(&cap));
    cmd.args(["-N", "-o", "ExitOnForwardFailure=yes"])
        .args(["-L", &format!("127.0.0.1:{port}:127.0.0.1:{granted}")])
        .args(["-L", &format!("127.0.0.1:{refused_port}:127.0.0.1:{other}")])
        .arg("erp-db01.assist");
    let mut ssh = Proc::spawn(cmd)?;
    ssh.stderr.wait_for("waiting for an approver of acme")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;

    // Granted: bytes go there and back.
    let mut open = None;
    wait_until("ssh's listener", || {
        open = TcpStream::connect(("127.0.0.1", port)).ok();
        Ok(open.is_some())
    })?;
    let mut open = open.context("connected")?;
    open.set_read_timeout(Some(WAIT))?;
    open.write_all(b"ping")?;
    let mut pong = [0u8; 4];
    open.read_exact(&mut pong)?;
    assert_eq!(&pong, b"ping");

    // Not granted: the channel open fails with the reason, as ssh reports such things.
    let mut tcp = TcpStream::connect(("127.0.0.1", refused_port))?;
    tcp.set_read_timeout(Some(WAIT))?;
    let _ = tcp.write_all(b"hello");
    let mut buf = Vec::new();
    let read = tcp.read_to_end(&mut buf);
    assert!(read.is_err() || buf.is_empty(), "{buf:?}");
    let line = ssh.stderr.wait_for("administratively prohibited")?;
    assert!(line.contains(&format!("127.0.0.1:{other}")) && line.contains("refused"), "{line}");

    // Revoked: the open connection closes within a second, and ssh is let go.
    bob.ok(&["revoke", &id, "--capability", "forward", "--reason", "done with the db"])?;
    let revoked = Instant::now();
    let mut rest = Vec::new();
    let closed = open.read_to_end(&mut rest);
    let took = revoked.elapsed();
    assert!(closed.is_err() || rest.is_empty(), "{rest:?}");
    eprintln!("ssh -L connection closed {took:?} after the revocation was answered");
    assert!(took < std::time::Duration::from_secs(1), "closed only after {took:?}");
    assert_eq!(ssh.wait()?.code(), Some(255), "{:?}", ssh.stderr.seen);
    let forwarded = events(&relay, &id, "forward.opened")?;
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    Ok(())
}

fn run(what: &str, cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| what.to_owned())?;
    anyhow::ensure!(out.status.success(), "{what} failed: {}", text(&out));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `psql` against 127.0.0.1:PORT: the query's one value.
fn psql(port: u16, query: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "assist", "-d", "postgres", "-Atc", query])
        .output()?;
    anyhow::ensure!(out.status.success(), "psql: {}", text(&out));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn psql_reaches_postgresql_through_assist_forward_and_ssh_l() -> anyhow::Result<()> {
    // The test binary's own server (assist-testpg), on 127.0.0.1.
    let pg = assist_testpg::server();
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let target = format!("127.0.0.1:{}", pg.port());

    // assist forward.
    let spec = format!("0:{target}");
    let mut fwd =
        alice.spawn(&["forward", "erp-db01", "-L", &spec, "--ticket", "INC-17", "--reason", "the db"])?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    let line = fwd.stderr.wait_for("forwarding 127.0.0.1:")?;
    let port: u16 =
        line.trim_start_matches("forwarding 127.0.0.1:").split(' ').next().unwrap_or("").parse()?;
    assert_eq!(psql(port, "select 'pg-' || 6*7")?, "pg-42");
    drop(fwd);

    // ssh -L through assist ssh-proxy.
    let config = ssh_config(&alice)?;
    let local = free_port()?;
    let cap = format!("forward:{target}");
    let mut cmd = tool(&alice, "ssh", &config, &new_session(&cap));
    cmd.args(["-N", "-L", &format!("127.0.0.1:{local}:{target}"), "erp-db01.assist"]);
    let mut ssh = Proc::spawn(cmd)?;
    ssh.stderr.wait_for("waiting for an approver of acme")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    wait_until("ssh's listener", || Ok(TcpStream::connect(("127.0.0.1", local)).is_ok()))?;
    assert_eq!(psql(local, "select current_user || '@' || current_database()")?, "assist@postgres");
    // The listener's probe and psql's connection, each a forward of its own.
    wait_until("forward.opened events", || Ok(events(&relay, &id, "forward.opened")?.len() == 2))?;

    // ssh stopped: it stops its proxy in turn, and the session the proxy asked for ends
    // saying so.
    run("kill", Command::new("kill").args(["-TERM", &ssh.child.id().to_string()]))?;
    ssh.wait()?;
    let mut row = serde_json::Value::Null;
    wait_until("the session's end", || {
        row = session_row(&bob, &id)?;
        Ok(row["end_reason"] == "ssh connection closed")
    })
    .with_context(|| format!("{row}"))?;
    Ok(())
}
