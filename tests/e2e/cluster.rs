//! Several relays as one (issue 18): three relays made from one cluster bundle on one
//! PostgreSQL database (`assist-testpg`), real binaries on loopback. The agent keeps a
//! connection to every relay, so each lists it online; an engineer on relay 2 has a shell
//! approved there and uses it; relay 1 is killed with a live session of its own, which a
//! live relay ends as "relay lost" once relay 1's heartbeat is stale (its recording
//! verifies as truncated) while relay 2's session goes on; the audit chain stays intact;
//! relay 1 started again gets the agent back; relay 3 stopped gracefully is marked stopped,
//! not lost. A second test: one prompt and one kill key serve sessions of two relays.

use assist_tests::{Proc, TestRelay, bin, wait_until};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SHELL: &[&str] = &["shell", "erp-db01", "--ticket", "INC-18", "--reason", "cluster check", "--"];
/// Echoes each line it reads, after saying `tag` once.
pub(super) fn echo_shell(tag: &str) -> Vec<String> {
    let script = format!("echo {tag}-ready; while read l; do echo \"{tag} got $l\"; done");
    SHELL.iter().map(|s| s.to_string()).chain(["sh".into(), "-c".into(), script]).collect()
}

pub(super) fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `assist-relay cluster init` into `dir`: the bundle's path.
pub(super) fn new_bundle(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let bundle = dir.join("cluster.json");
    let out = Command::new(bin("assist-relay")).args(["cluster", "init", "--out"]).arg(&bundle).output()?;
    anyhow::ensure!(out.status.success(), "cluster init: {}", String::from_utf8_lossy(&out.stderr));
    Ok(bundle)
}

pub(super) fn start(
    dir: tempfile::TempDir,
    listen: &str,
    bundle: &Path,
    name: &str,
    db: &assist_testpg::Database,
) -> anyhow::Result<TestRelay> {
    let env = vec![("ASSIST_DATABASE".to_owned(), db.url().to_owned())];
    let bundle = bundle.to_str().expect("utf-8 path");
    TestRelay::start_with_env(dir, listen, &["--cluster-bundle", bundle, "--relay-name", name], env)
}

pub(super) fn psql(db: &assist_testpg::Database, sql: &str) -> anyhow::Result<String> {
    Ok(assist_testpg::server().psql(db.name(), sql).map_err(anyhow::Error::msg)?.trim().to_owned())
}

pub(super) fn online_on(relay: &TestRelay, agent: &str) -> anyhow::Result<bool> {
    let out = relay.login("alice")?.ok(&["agents", "--json"])?;
    let agents: serde_json::Value = serde_json::from_str(&out)?;
    Ok(agents.as_array().is_some_and(|a| a.iter().any(|x| x["name"] == agent && x["online"] == true)))
}

#[test]
fn three_relays_share_an_agent_and_one_lost_relay_ends_only_its_own_sessions() -> anyhow::Result<()> {
    let db = assist_testpg::database();
    let keys = tempfile::tempdir()?;
    let bundle = new_bundle(keys.path())?;
    let again = Command::new(bin("assist-relay")).args(["cluster", "init", "--out"]).arg(&bundle).output()?;
    assert!(!again.status.success(), "a bundle is never overwritten");

    // Without PostgreSQL, a cluster relay is refused.
    let alone = Command::new(bin("assist-relay"))
        .arg("--data-dir")
        .arg(keys.path().join("alone"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-console", "--relay-name", "x", "--cluster-bundle"])
        .arg(&bundle)
        .output()?;
    let said = String::from_utf8_lossy(&alone.stderr);
    assert!(
        !alone.status.success() && said.contains("several relays need one PostgreSQL database"),
        "{said}"
    );

    let mut relays = Vec::new();
    for name in ["r1", "r2", "r3"] {
        relays.push(start(tempfile::tempdir()?, "127.0.0.1:0", &bundle, name, &db)?);
    }
    assert!(relays.iter().all(|r| r.fingerprint == relays[0].fingerprint), "one CA for the cluster");
    relays[0].standard_world()?;
    let mut agent = relays[0].agent_with("erp-db01", "acme", "approver", &["--max-backoff", "2s"])?;
    for (i, relay) in relays.iter().enumerate() {
        wait_until(&format!("relay {} to list the agent online", i + 1), || online_on(relay, "erp-db01"))?;
    }
    let live = psql(&db, "SELECT string_agg(name, ',' ORDER BY name) FROM relays WHERE stopped_at IS NULL")?;
    assert_eq!(live, "r1,r2,r3");
    // A second process under a running relay's name is refused before it touches anything
    // (it would otherwise close that relay's sessions as its own leftovers).
    let twin = Command::new(bin("assist-relay"))
        .arg("--data-dir")
        .arg(keys.path().join("twin"))
        .env("ASSIST_DATABASE", db.url())
        .args(["serve", "--listen", "127.0.0.1:0", "--no-console", "--relay-name", "r2", "--cluster-bundle"])
        .arg(&bundle)
        .output()?;
    let said = String::from_utf8_lossy(&twin.stderr);
    assert!(
        !twin.status.success() && said.contains("relay r2 is already running on this database"),
        "{said}"
    );

    // An engineer and an approver on relay 2: the session is relay 2's.
    let (alice2, bob2) = (relays[1].login("alice")?, relays[1].login("bob")?);
    let mut on_r2 = alice2.spawn(&refs(&echo_shell("r2")))?;
    let id2 = bob2.pending_request()?;
    bob2.ok(&["approve", &id2])?;
    on_r2.stdout.wait_for("r2-ready")?;
    on_r2.write_line("one")?;
    on_r2.stdout.wait_for("r2 got one")?;
    assert_eq!(psql(&db, &format!("SELECT relay FROM sessions WHERE id = '{id2}'"))?, "r2");

    // Relay 1's own live session.
    let (alice1, bob1) = (relays[0].login("alice")?, relays[0].login("bob")?);
    let mut on_r1: Proc = alice1.spawn(&refs(&echo_shell("r1")))?;
    let id1 = bob1.pending_request()?;
    bob1.ok(&["approve", &id1])?;
    on_r1.stdout.wait_for("r1-ready")?;
    on_r1.write_line("before-crash")?;
    on_r1.stdout.wait_for("r1 got before-crash")?;

    // Relay 1 dies (killed, not stopped).
    let TestRelay { dir: r1_dir, proc, addr: r1_addr, env, .. } = relays.remove(0);
    drop(proc);
    let killed = Instant::now();
    let reason = format!("SELECT state || ':' || coalesce(end_reason, '') FROM sessions WHERE id = '{id1}'");
    wait_until("relay 1's session to end as relay lost", || Ok(psql(&db, &reason)? == "closed:relay lost"))?;
    let took = killed.elapsed();
    eprintln!("relay 1's session ended as relay lost {took:?} after the kill");
    assert!(took < Duration::from_secs(15), "lost after 10 s of silence, seen within a heartbeat: {took:?}");
    let lost_by = psql(
        &db,
        &format!(
            "SELECT count(*) FROM audit_events WHERE session = '{id1}' AND action = 'session.ended' \
             AND detail LIKE '%relay lost%'"
        ),
    )?;
    assert_eq!(lost_by, "1", "ended once, however many relays noticed");

    // Relay 2's session is not disturbed.
    on_r2.write_line("two")?;
    on_r2.stdout.wait_for("r2 got two")?;
    assert_eq!(psql(&db, &format!("SELECT state FROM sessions WHERE id = '{id2}'"))?, "active");
    assert!(online_on(&relays[0], "erp-db01")? && online_on(&relays[1], "erp-db01")?);

    // Relay 1's recording was never sealed: truncated.
    let verify = Command::new(bin("assist-relay"))
        .arg("--data-dir")
        .arg(r1_dir.path().join("data"))
        .args(["recording", "verify", &id1])
        .output()?;
    let verdict = String::from_utf8_lossy(&verify.stdout);
    assert!(verdict.starts_with("truncated"), "{verdict} {}", String::from_utf8_lossy(&verify.stderr));
    assert_eq!(verify.status.code(), Some(3));

    let verified = relays[0].admin(&["--database", db.url(), "audit", "verify"])?;
    assert!(verified.starts_with("audit log intact:"), "{verified}");

    // Relay 1 comes back under its name and address: clean, and the agent returns to it.
    let r1 = start(r1_dir, &r1_addr, &bundle, "r1", &db)?;
    assert_eq!(r1.env, env);
    let back = Instant::now();
    wait_until("the agent to reconnect to relay 1", || online_on(&r1, "erp-db01"))?;
    eprintln!("the agent was back on relay 1 {:?} after it started", back.elapsed());
    let row = psql(
        &db,
        "SELECT (lost_at IS NULL)::text || ',' || (stopped_at IS NULL)::text FROM relays WHERE name = 'r1'",
    )?;
    assert_eq!(row, "true,true");
    on_r2.write_line("three")?;
    on_r2.stdout.wait_for("r2 got three")?;

    // A relay stopped gracefully marks itself stopped: nobody declares it lost.
    let mut r3 = relays.remove(1);
    let term = Command::new("kill").args(["-TERM", &r3.proc.child.id().to_string()]).status()?;
    assert!(term.success());
    r3.proc.wait()?;
    let r3_row = "SELECT (stopped_at IS NOT NULL)::text || ',' || (lost_at IS NULL)::text FROM relays WHERE name = 'r3'";
    assert_eq!(psql(&db, r3_row)?, "true,true");
    agent.kill();
    Ok(())
}

/// The agent's one prompt answers requests from either relay on the connection each came
/// on, and its kill key ends the sessions of every relay.
#[test]
fn one_prompt_and_one_kill_key_serve_every_relay() -> anyhow::Result<()> {
    let db = assist_testpg::database();
    let keys = tempfile::tempdir()?;
    let bundle = new_bundle(keys.path())?;
    let r1 = start(tempfile::tempdir()?, "127.0.0.1:0", &bundle, "r1", &db)?;
    let r2 = start(tempfile::tempdir()?, "127.0.0.1:0", &bundle, "r2", &db)?;
    r1.standard_world()?;
    let mut agent = r1.agent("erp-db01", "acme", "prompt")?;
    wait_until("relay 2 to list the agent online", || online_on(&r2, "erp-db01"))?;

    // Each CLI's configuration directory lives as long as its binding.
    let alice2 = r2.login("alice")?;
    let mut on_r2 = alice2.spawn(&refs(&echo_shell("r2")))?;
    on_r2.stderr.wait_for("the customer at erp-db01")?;
    agent.proc().stdout.wait_for("answer within")?;
    agent.proc().write_line("y")?;
    on_r2.stdout.wait_for("r2-ready")?;
    let alice1 = r1.login("alice")?;
    let mut on_r1 = alice1.spawn(&refs(&echo_shell("r1")))?;
    on_r1.stderr.wait_for("the customer at erp-db01")?;
    agent.proc().stdout.wait_for("answer within")?;
    agent.proc().write_line("y")?;
    on_r1.stdout.wait_for("r1-ready")?;
    let relays =
        psql(&db, "SELECT string_agg(relay, ',' ORDER BY relay) FROM sessions WHERE state = 'active'")?;
    assert_eq!(relays, "r1,r2");

    agent.proc().write_line("k")?;
    for shell in [&mut on_r1, &mut on_r2] {
        assert_ne!(shell.wait()?.code(), Some(0));
        shell.stderr.wait_for("kill key pressed on the agent")?;
    }
    agent.proc().stdout.wait_for("kill key: ended 2 live session")?;
    wait_until("both sessions to be closed", || {
        Ok(psql(&db, "SELECT count(*) FROM sessions WHERE state = 'closed'")? == "2")
    })?;
    Ok(())
}
