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

#[test]
fn approver_ends_a_live_session() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(LONG)?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    wait_state(&bob, "active")?;
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
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    wait_state(&bob, "active")?;

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
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    wait_state(&bob, "active")?;
    drop(s); // kills the engineer's client
    let row = wait_state(&bob, "closed")?;
    assert_eq!(row["end_reason"], "engineer disconnected");
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
