//! A relay asked to stop (SIGTERM, SIGHUP, SIGINT) ends its live sessions as "relay
//! shutting down", tells the engineer and seals the recordings valid, also when its stdout
//! and stderr are a pipe nobody reads.

use assist_tests::{Lines, Proc, TestRelay, bin, wait_until};
use std::process::{Command, Stdio};

const SHELL: &[&str] = &[
    "shell",
    "erp-db01",
    "--ticket",
    "INC-5",
    "--reason",
    "stop test",
    "--",
    "sh",
    "-c",
    "echo started-$((40+2)); sleep 600",
];

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let ok = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status()?.success();
    anyhow::ensure!(ok, "kill -{sig} {pid} failed");
    Ok(())
}

/// Runs a live shell session, stops the relay with `sig` and checks everything a graceful
/// stop promises: the engineer is told, the relay exits 0, the recording is sealed valid
/// and the session is stored as ended by the shutdown.
fn live_session_survives_stop(relay: TestRelay, sig: &str) -> anyhow::Result<()> {
    let mut agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(SHELL)?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    s.stdout.wait_for("started-42")?;

    let TestRelay { dir, mut proc, addr, .. } = relay;
    signal(proc.child.id(), sig)?;
    s.stderr.wait_for("relay shutting down")?;
    // The agent is told too, as the end of the session (not only as a lost connection).
    let told = agent.proc().stderr.wait_for("session ended by the relay")?;
    assert!(told.contains("relay shutting down"), "{told}");
    let status = proc.wait()?;
    assert!(status.success(), "relay after {sig}: {status:?}");
    drop(proc);

    let verify = Command::new(bin("assist-relay"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["recording", "verify", &id])
        .output()?;
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{verify:?}");
    assert!(text.starts_with("valid") && text.contains("ended: relay shutting down"), "{text}");

    let relay = TestRelay::start_in(dir, &addr, &[])?;
    let sessions: serde_json::Value = serde_json::from_str(&bob.ok(&["sessions", "--json"])?)?;
    assert_eq!(sessions[0]["id"], id.as_str());
    assert_eq!(sessions[0]["end_reason"], "relay shutting down", "{sessions}");
    drop(relay);
    Ok(())
}

#[test]
fn sigterm_ends_live_sessions_gracefully() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    live_session_survives_stop(relay, "TERM")
}

#[test]
fn sigint_ends_live_sessions_gracefully() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    live_session_survives_stop(relay, "INT")
}

#[test]
fn sighup_ends_live_sessions_gracefully() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    live_session_survives_stop(relay, "HUP")
}

#[test]
fn a_relay_whose_stdout_and_stderr_are_closed_pipes_still_serves_and_stops_gracefully() -> anyhow::Result<()>
{
    // The first start prints the admin password; this test is about later starts, on the
    // same address and with the same CA.
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let TestRelay { dir, mut proc, addr, fingerprint, .. } = relay;
    signal(proc.child.id(), "TERM")?;
    assert!(proc.wait()?.success());
    drop(proc);

    // `assist-relay serve 2>&1 | true`: stdout and stderr are a pipe whose reader is gone
    // before the relay writes its first line.
    let mut child = Command::new(bin("assist-relay"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", &addr, "--console", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    drop(child.stderr.take());
    let proc = Proc {
        child,
        stdin: None,
        stdout: Lines::spawn(std::io::empty()),
        stderr: Lines::spawn(std::io::empty()),
    };
    let relay = TestRelay { dir, proc, addr, fingerprint, admin_password: String::new(), env: vec![] };
    wait_until("the relay to serve", || Ok(relay.login("alice").is_ok()))?;
    live_session_survives_stop(relay, "TERM")
}

#[test]
fn a_first_start_with_stdout_a_closed_pipe_says_how_to_get_an_admin_and_serves() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(bin("assist-relay"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0", "--console", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    drop(child.stdout.take());
    let stderr = Lines::spawn(child.stderr.take().expect("stderr"));
    let mut proc = Proc { child, stdin: None, stdout: Lines::spawn(std::io::empty()), stderr };
    proc.stderr.wait_for("assist-relay listening on")?;
    let warning = proc.stderr.seen.iter().find(|l| l.contains("password could not be shown")).cloned();
    let warning = warning.unwrap_or_default();
    assert!(
        warning.contains("assist-relay user add NAME --org operator --role admin"),
        "{:?}",
        proc.stderr.seen
    );
    assert!(!proc.stderr.seen.iter().any(|l| l.contains("admin password:")), "the password is never logged");
    signal(proc.child.id(), "TERM")?;
    assert!(proc.wait()?.success());
    Ok(())
}
