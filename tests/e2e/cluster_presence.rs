//! Several relays (issue 18): where an agent is connected, a relay cut off from the
//! database, and administration with only the cluster bundle. Real binaries, one
//! PostgreSQL database (`assist-testpg`), loopback.
//!
//! - An agent connected to three relays is online on each (`agent list` names them); one
//!   relay killed leaves it online at once and after that relay is declared lost (with
//!   the two others); the agent killed is offline everywhere.
//! - The administration commands run with `--cluster-bundle` and `--database` and no data
//!   directory; a bundle without PostgreSQL is refused.
//! - A relay whose database access is cut (its role may no longer log in, its connections
//!   are terminated) refuses new requests after 10 s, is declared lost by another relay
//!   (which ends its session, once), and when it can reach the database again ends that
//!   session in memory (the engineer sees "relay lost"; no second ending is written),
//!   registers again, holds the agent again and serves a new session.

use super::cluster::{echo_shell, new_bundle, psql, refs, start};
use assist_tests::{Proc, TestRelay, bin, run_with_stdin, wait_until};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

/// Runs `assist-relay ARGS` with only the bundle and the database: its data directory
/// does not exist.
fn with_bundle(db: &str, bundle: &Path, args: &[&str], stdin: &str) -> anyhow::Result<Output> {
    let nowhere = tempfile::tempdir()?;
    let mut cmd = Command::new(bin("assist-relay"));
    cmd.arg("--data-dir").arg(nowhere.path().join("none")).args(["--database", db, "--cluster-bundle"]);
    cmd.arg(bundle).args(args);
    let out = run_with_stdin(&mut cmd, stdin)?;
    assert!(!nowhere.path().join("none").exists(), "no data directory is made");
    Ok(out)
}

fn bundle_ok(db: &str, bundle: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = with_bundle(db, bundle, args, "")?;
    anyhow::ensure!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?)
}

/// `erp-db01`'s (online, relays) as `agent list --json` reads them from the database.
fn presence(db: &str, bundle: &Path) -> anyhow::Result<(bool, Vec<String>)> {
    let listed: serde_json::Value =
        serde_json::from_str(&bundle_ok(db, bundle, &["agent", "list", "--json"])?)?;
    let agent = listed
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "erp-db01"))
        .ok_or_else(|| anyhow::anyhow!("erp-db01 not listed: {listed}"))?;
    let relays = serde_json::from_value(agent["relays"].clone())?;
    Ok((agent["online"] == true, relays))
}

/// The usual world, made with the bundle alone.
fn world(db: &str, bundle: &Path) -> anyhow::Result<()> {
    bundle_ok(db, bundle, &["org", "add", "vendor"])?;
    bundle_ok(db, bundle, &["org", "add", "acme", "--supported-by", "vendor"])?;
    for (user, org, role) in [("alice", "vendor", "engineer"), ("bob", "acme", "approver")] {
        let args = ["user", "add", user, "--org", org, "--role", role, "--password-stdin"];
        let out = with_bundle(db, bundle, &args, &format!("pw-{user}-123\n"))?;
        anyhow::ensure!(out.status.success(), "user add: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn online_here(relay: &TestRelay) -> anyhow::Result<bool> {
    let agents: serde_json::Value = serde_json::from_str(&relay.login("alice")?.ok(&["agents", "--json"])?)?;
    Ok(agents.as_array().is_some_and(|a| a.iter().any(|x| x["name"] == "erp-db01" && x["online"] == true)))
}

#[test]
fn an_agent_is_online_while_any_relay_holds_it_and_admin_commands_need_only_the_bundle() -> anyhow::Result<()>
{
    let db = assist_testpg::database();
    let keys = tempfile::tempdir()?;
    let bundle = new_bundle(keys.path())?;

    // A bundle without PostgreSQL is refused, as `serve` refuses it.
    let sqlite = format!("sqlite://{}", keys.path().join("x.db").display());
    let refused = with_bundle(&sqlite, &bundle, &["org", "list"], "")?;
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("several relays need one PostgreSQL database"),
        "{said}"
    );

    world(db.url(), &bundle)?;
    let mut relays = Vec::new();
    for name in ["r1", "r2", "r3"] {
        relays.push(start(tempfile::tempdir()?, "127.0.0.1:0", &bundle, name, &db)?);
    }
    // The public keys from the bundle are those every relay serves with.
    let from_bundle = bundle_ok(db.url(), &bundle, &["keys", "export"])?;
    assert_eq!(from_bundle, relays[1].admin(&["keys", "export"])?);
    let token = bundle_ok(db.url(), &bundle, &["token", "create", "--org", "acme"])?;
    assert!(!token.trim().is_empty());
    let tokens: serde_json::Value = serde_json::from_str(&relays[2].admin(&["token", "list", "--json"])?)?;
    assert_eq!(tokens.as_array().map(Vec::len), Some(1), "the relays' database holds the token: {tokens}");

    let mut agent = relays[0].agent_with("erp-db01", "acme", "approver", &["--max-backoff", "2s"])?;
    wait_until("the agent to be present on the three relays", || {
        Ok(presence(db.url(), &bundle)? == (true, vec!["r1".into(), "r2".into(), "r3".into()]))
    })?;
    let table = bundle_ok(db.url(), &bundle, &["agent", "list"])?;
    assert!(table.lines().next().is_some_and(|h| h.contains("RELAYS")), "{table}");
    assert!(table.contains("r1,r2,r3"), "{table}");

    // A session recorded on relay 1, to verify with the bundle's key later.
    let (alice1, bob1) = (relays[0].login("alice")?, relays[0].login("bob")?);
    let mut on_r1 = alice1.spawn(&refs(&echo_shell("r1")))?;
    let id = bob1.pending_request()?;
    bob1.ok(&["approve", &id])?;
    on_r1.stdout.wait_for("r1-ready")?;
    on_r1.write_line("x")?;
    on_r1.stdout.wait_for("r1 got x")?;

    // Relay 1 killed: the agent is online at once, and still after relay 1 is lost.
    let TestRelay { dir: r1_dir, proc, .. } = relays.remove(0);
    drop(proc);
    let killed = Instant::now();
    assert!(presence(db.url(), &bundle)?.0, "online at once: the other relays hold it");
    wait_until("relay 1 to be declared lost", || {
        Ok(presence(db.url(), &bundle)? == (true, vec!["r2".into(), "r3".into()]))
    })?;
    eprintln!("relay 1's presence went {:?} after the kill", killed.elapsed());
    assert!(online_here(&relays[0])? && online_here(&relays[1])?);

    // Its recording, verified with the bundle's key: truncated (relay 1 died mid-session).
    let recordings = r1_dir.path().join("data").join("recordings");
    let recordings = recordings.to_str().expect("utf-8 path");
    let verify =
        with_bundle(db.url(), &bundle, &["recording", "verify", &id, "--recordings", recordings], "")?;
    let verdict = String::from_utf8_lossy(&verify.stdout);
    assert!(verdict.starts_with("truncated"), "{verdict} {}", String::from_utf8_lossy(&verify.stderr));
    assert_eq!(verify.status.code(), Some(3));

    // The agent killed: offline everywhere, once the relays see its connections go.
    agent.kill();
    wait_until("the agent to be offline in the database", || {
        Ok(presence(db.url(), &bundle)? == (false, vec![]))
    })?;
    assert!(!online_here(&relays[0])? && !online_here(&relays[1])?);
    let disconnected = psql(
        &db,
        "SELECT string_agg(coalesce(detail::json->>'relay', actor), ',' ORDER BY seq) FROM audit_events \
         WHERE action = 'agent.disconnected'",
    )?;
    let mut seen: Vec<&str> = disconnected.split(',').collect();
    seen.sort();
    assert_eq!(
        seen,
        ["agent:erp-db01", "agent:erp-db01", "r1"],
        "one disconnection per relay: {disconnected}"
    );

    let verified = bundle_ok(db.url(), &bundle, &["audit", "verify"])?;
    assert!(verified.starts_with("audit log intact:"), "{verified}");
    Ok(())
}

#[test]
fn a_relay_cut_off_from_the_database_ends_its_sessions_once_declared_lost_and_serves_again()
-> anyhow::Result<()> {
    let db = assist_testpg::database();
    let keys = tempfile::tempdir()?;
    let bundle = new_bundle(keys.path())?;
    // Relay 1 logs in as a role of its own, which the test can shut out.
    let role = format!("cut_{}", db.name());
    psql(&db, &format!("CREATE ROLE {role} LOGIN SUPERUSER"))?;
    let r1_url = db.url().replacen("assist@", &format!("{role}@"), 1);
    world(db.url(), &bundle)?;
    let r1 = {
        let env = vec![("ASSIST_DATABASE".to_owned(), r1_url.clone())];
        let b = bundle.to_str().expect("utf-8 path");
        TestRelay::start_with_env(
            tempfile::tempdir()?,
            "127.0.0.1:0",
            &["--cluster-bundle", b, "--relay-name", "r1"],
            env,
        )?
    };
    let r2 = start(tempfile::tempdir()?, "127.0.0.1:0", &bundle, "r2", &db)?;
    let mut agent = r2.agent_with("erp-db01", "acme", "approver", &["--max-backoff", "2s"])?;
    wait_until("the agent on both relays", || {
        Ok(presence(db.url(), &bundle)?.1 == ["r1".to_owned(), "r2".to_owned()])
    })?;

    let (alice1, bob1) = (r1.login("alice")?, r1.login("bob")?);
    let mut on_r1: Proc = alice1.spawn(&refs(&echo_shell("r1")))?;
    let id = bob1.pending_request()?;
    bob1.ok(&["approve", &id])?;
    on_r1.stdout.wait_for("r1-ready")?;

    // Cut: the role may no longer log in, and its connections are ended.
    psql(&db, &format!("ALTER ROLE {role} NOLOGIN"))?;
    psql(
        &db,
        &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{role}'"),
    )?;
    let cut = Instant::now();
    let mut r1 = r1;
    r1.proc.stderr.wait_for("new session requests are refused")?;
    eprintln!("relay 1 refused new requests {:?} after the cut", cut.elapsed());
    // An engineer's command there is told why, not "internal error".
    let asked = Instant::now();
    let out = alice1.run(&["agents"])?;
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("cannot reach its database"), "{said}");
    eprintln!("a command on the cut-off relay was answered in {:?}", asked.elapsed());
    // Its session goes on meanwhile: the streams need no database.
    on_r1.write_line("cut")?;
    on_r1.stdout.wait_for("r1 got cut")?;
    let state = format!("SELECT state || ':' || coalesce(end_reason, '') FROM sessions WHERE id = '{id}'");
    wait_until("relay 2 to declare relay 1 lost", || Ok(psql(&db, &state)? == "closed:relay lost"))?;
    eprintln!("relay 1 was declared lost {:?} after the cut", cut.elapsed());
    assert_eq!(presence(db.url(), &bundle)?, (true, vec!["r2".into()]));

    // Back: relay 1 learns it was lost, ends the session here too, and rejoins.
    psql(&db, &format!("ALTER ROLE {role} LOGIN"))?;
    let back = Instant::now();
    on_r1.stderr.wait_for("relay lost")?;
    assert_ne!(on_r1.wait()?.code(), Some(0));
    eprintln!("the engineer saw the end {:?} after the database came back", back.elapsed());
    let endings = format!(
        "SELECT count(*) FROM audit_events WHERE session = '{id}' AND action IN ('session.ended', 'session.expired')"
    );
    assert_eq!(psql(&db, &endings)?, "1", "ended once, by relay 2");
    wait_until("relay 1 to hold the agent again", || {
        Ok(presence(db.url(), &bundle)?.1 == ["r1".to_owned(), "r2".to_owned()])
    })?;
    let row = "SELECT (lost_at IS NULL)::text FROM relays WHERE name = 'r1'";
    assert_eq!(psql(&db, row)?, "true", "registered again");

    // A new session on relay 1 is served.
    let mut again = alice1.spawn(&refs(&echo_shell("again")))?;
    let id2 = bob1.pending_request()?;
    bob1.ok(&["approve", &id2])?;
    again.stdout.wait_for("again-ready")?;
    again.write_line("y")?;
    again.stdout.wait_for("again got y")?;
    assert_eq!(psql(&db, &format!("SELECT relay FROM sessions WHERE id = '{id2}'"))?, "r1");

    let verified = bundle_ok(db.url(), &bundle, &["audit", "verify"])?;
    assert!(verified.starts_with("audit log intact:"), "{verified}");
    agent.kill();
    Ok(())
}

/// A relay killed and started again at once under its name (as a service manager restarts
/// it) waits until its old heartbeat is known to have stopped, instead of being refused as
/// a second process of a running relay; then it serves, and the other relay is undisturbed.
#[test]
fn a_relay_restarted_at_once_after_a_crash_waits_out_its_old_heartbeat_and_serves() -> anyhow::Result<()> {
    let db = assist_testpg::database();
    let keys = tempfile::tempdir()?;
    let bundle = new_bundle(keys.path())?;
    let r1 = start(tempfile::tempdir()?, "127.0.0.1:0", &bundle, "r1", &db)?;
    let r2 = start(tempfile::tempdir()?, "127.0.0.1:0", &bundle, "r2", &db)?;
    let started = psql(&db, "SELECT started_at FROM relays WHERE name = 'r1'")?;

    // Killed, not stopped: its row stays live until its heartbeat is 10 s old.
    let TestRelay { dir, proc, addr, .. } = r1;
    drop(proc);
    let mut again = start(dir, &addr, &bundle, "r1", &db)?;
    again.proc.stderr.wait_for("waiting until its heartbeat is known to have stopped")?;
    let live = psql(
        &db,
        "SELECT string_agg(name, ',' ORDER BY name) FROM relays WHERE stopped_at IS NULL AND lost_at IS NULL",
    )?;
    assert_eq!(live, "r1,r2");
    assert_ne!(psql(&db, "SELECT started_at FROM relays WHERE name = 'r1'")?, started, "registered afresh");
    // Both serve: alice logs in on each.
    again.standard_world()?;
    for relay in [&again, &r2] {
        relay.login("alice")?;
    }
    Ok(())
}
