//! How sessions end: by an approver, by the agent going away, by revocation.

use assist_tests::{TestRelay, WAIT};
use std::time::{Duration, Instant};

const LONG: &[&str] =
    &["shell", "erp-db01", "--ticket", "INC-9", "--reason", "investigate", "--", "sleep", "600"];

/// Waits until `assist sessions --json` shows the newest session in `state`.
fn wait_state(cli: &assist_tests::Cli, state: &str) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let v: serde_json::Value = serde_json::from_str(&cli.ok(&["sessions", "--json"])?)?;
        if v[0]["state"] == state {
            return Ok(v[0].clone());
        }
        anyhow::ensure!(Instant::now() < deadline, "session never became {state}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// bob approves the pending request and waits until its channel runs; returns its id.
fn approve_and_wait_active(bob: &assist_tests::Cli) -> anyhow::Result<String> {
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    wait_state(bob, "active")?;
    Ok(id)
}

#[test]
fn approver_ends_a_live_session() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(LONG)?;
    let id = approve_and_wait_active(&bob)?;
    bob.ok(&["end", &id, "--reason", "enough for today"])?;
    let status = s.wait()?;
    assert_ne!(status.code(), Some(0));
    s.stderr.wait_for("ended by bob: enough for today")?;
    let row = wait_state(&bob, "closed")?;
    assert_eq!(row["end_reason"], "ended by bob: enough for today");
    Ok(())
}

#[test]
fn agent_vanishing_mid_session_is_reported_and_relay_keeps_serving() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let mut agent = relay.agent("erp-db01", "acme", "approver")?;
    let _other = relay.agent("erp-db02", "acme", "prompt")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(LONG)?;
    approve_and_wait_active(&bob)?;

    agent.kill();
    let status = s.wait()?;
    assert_ne!(status.code(), Some(0));
    s.stderr.wait_for("agent disconnected")?;
    let row = wait_state(&bob, "closed")?;
    assert_eq!(row["end_reason"], "agent disconnected");

    // The relay still serves: listings work and show who is online.
    let agents: serde_json::Value = serde_json::from_str(&alice.ok(&["agents", "--json"])?)?;
    let online = |name: &str| {
        agents.as_array().unwrap().iter().find(|a| a["name"] == name).map(|a| a["online"].clone())
    };
    assert_eq!(online("erp-db01"), Some(serde_json::Value::Bool(false)));
    assert_eq!(online("erp-db02"), Some(serde_json::Value::Bool(true)));
    Ok(())
}

#[test]
fn engineer_disconnecting_closes_the_session() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let s = alice.spawn(LONG)?;
    approve_and_wait_active(&bob)?;
    drop(s); // kills the engineer's client
    let row = wait_state(&bob, "closed")?;
    assert_eq!(row["end_reason"], "engineer disconnected");
    Ok(())
}

#[test]
fn an_interrupted_client_tells_the_relay_and_its_session_ends_as_interrupted() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(LONG)?;
    approve_and_wait_active(&bob)?;
    let pid = s.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status()?.success());
    assert_eq!(s.wait()?.code(), Some(130));
    s.stderr.wait_for("assist: interrupted")?;
    // A client that just vanished would read "engineer disconnected" (after the idle
    // timeout): this reason comes only from the client's own close.
    let row = wait_state(&bob, "closed")?;
    assert_eq!(row["end_reason"], "engineer interrupted the client");
    Ok(())
}

#[test]
fn revoked_agent_is_disconnected_and_refused() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let mut agent = relay.agent("erp-db01", "acme", "approver")?;
    relay.admin(&["agent", "revoke", "erp-db01"])?;
    let status = agent.proc().wait()?;
    assert_ne!(status.code(), Some(0));
    agent.proc().stderr.wait_for("revoked")?;
    let listed: serde_json::Value = serde_json::from_str(&relay.admin(&["agent", "list", "--json"])?)?;
    assert!(!listed[0]["revoked_at"].is_null() || listed[0]["revoked"] == true, "{listed}");
    // Starting again is refused at connect.
    let err = agent.start("approver").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("revoked"), "{err}");
    Ok(())
}

#[test]
fn a_revoked_name_is_enrolled_again_with_a_new_token_and_the_old_certificate_stays_refused()
-> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let mut old = relay.agent("erp-db01", "acme", "approver")?;
    relay.admin(&["agent", "revoke", "erp-db01"])?;
    old.proc().wait()?;

    // A new machine (or the same one, reinstalled) takes the name with a new token.
    let _new = relay.agent("erp-db01", "acme", "approver")?;
    let listed: serde_json::Value = serde_json::from_str(&relay.admin(&["agent", "list", "--json"])?)?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert!(listed[0]["revoked_at"].is_null(), "{listed}");
    let audit: serde_json::Value = serde_json::from_str(&relay.admin(&["audit", "list", "--json"])?)?;
    let again = audit
        .as_array()
        .and_then(|a| a.iter().find(|e| e["action"] == "agent.reenrolled"))
        .ok_or_else(|| anyhow::anyhow!("no agent.reenrolled event: {audit}"))?;
    assert_eq!(again["target"], "erp-db01");
    assert!(again["detail"]["revoked_at"].is_i64(), "{again}");
    let first = audit
        .as_array()
        .and_then(|a| a.iter().find(|e| e["action"] == "agent.enrolled"))
        .ok_or_else(|| anyhow::anyhow!("no agent.enrolled event: {audit}"))?;
    assert_eq!(again["detail"]["previous_fingerprint"], first["detail"]["fingerprint"], "{again}");
    assert_ne!(again["detail"]["fingerprint"], first["detail"]["fingerprint"], "{again}");

    // The revoked certificate is still refused.
    assert!(old.start("approver").is_err(), "the old certificate got in again");
    // And the new agent serves sessions.
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s =
        alice.spawn(&["shell", "erp-db01", "--ticket", "T", "--reason", "r", "--", "echo", "new-agent"])?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    s.stdout.wait_for("new-agent")?;
    Ok(())
}

#[test]
fn agent_reconnects_after_a_relay_crash_and_dangling_sessions_are_closed() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let mut agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(LONG)?;
    let id = approve_and_wait_active(&bob)?;

    let relay = relay.restart()?;
    assert_ne!(s.wait()?.code(), Some(0), "the engineer's session ended with the relay");
    // The agent finds the new relay process by itself (jittered backoff).
    agent.proc().stderr.wait_for("assist-agent: connected to")?;
    let agents: serde_json::Value = serde_json::from_str(&alice.ok(&["agents", "--json"])?)?;
    assert_eq!(agents[0]["online"], true, "{agents}");
    // The session the crash interrupted is not left open.
    let row = wait_state(&bob, "closed")?;
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["end_reason"], "relay restarted");
    // And the relay works as before.
    let out = alice.ok(&["agents"])?;
    assert!(out.contains("erp-db01"));
    drop(relay);
    Ok(())
}

#[test]
fn health_endpoint_reports_online_agents() -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut relay = TestRelay::start_with(&["--http", "127.0.0.1:0"])?;
    relay.standard_world()?;
    let http = relay
        .proc
        .stdout
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("assist-relay http on ").map(str::to_owned));
    let http = http.ok_or_else(|| anyhow::anyhow!("no http line"))?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let mut conn = std::net::TcpStream::connect(&http)?;
    conn.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"online_agents\":1"), "{response}");
    let _ = &mut relay;
    Ok(())
}

#[test]
fn a_killed_relay_is_reported_as_lost_within_seconds() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut shell = alice.spawn(&[
        "shell",
        "erp-db01",
        "--ticket",
        "INC-9",
        "--reason",
        "r",
        "--",
        "sh",
        "-c",
        "echo shell-is-up; sleep 600",
    ])?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    shell.stdout.wait_for("shell-is-up")?;
    // kill -9: the relay sends nothing more, not even a close.
    let TestRelay { dir: _dir, proc, .. } = relay;
    drop(proc);
    let killed = Instant::now();
    shell.stderr.wait_for("relay connection lost")?;
    let status = shell.wait()?;
    assert!(!status.success(), "{status:?}");
    // The point of the change: well before the 30 s an agent's connection waits (and
    // the 38 s the shell froze before), with room for a loaded machine.
    assert!(killed.elapsed() < Duration::from_secs(25), "lost after {:?}", killed.elapsed());
    Ok(())
}

#[test]
fn disabling_an_engineer_ends_their_live_session_and_connection() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(LONG)?;
    let id = approve_and_wait_active(&bob)?;
    // Another process, as an operator would run it while the relay serves.
    relay.admin(&["user", "disable", "alice"])?;
    s.stderr.wait_for("the access of alice was revoked")?;
    let status = s.wait()?;
    assert_ne!(status.code(), Some(0));
    let row = wait_state(&bob, "closed")?;
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["end_reason"], "the access of alice was revoked (user disabled or removed)");
    // The end is on the record like any other.
    let audit = relay.admin(&["audit", "list", "--session", &id, "--json"])?;
    assert!(audit.contains("session.ended") && audit.contains("was revoked"), "{audit}");
    Ok(())
}
