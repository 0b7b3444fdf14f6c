//! Several relays on one PostgreSQL database (issue 18): people on any relay act on any
//! session at once, through the relays' bus (`LISTEN/NOTIFY`). The agent and the engineer
//! are on relay 1, which holds the session; approvers are on relays 2 and 3.
//!
//! Until the cluster bundle exists, relays 2 and 3 start from copies of relay 1's key
//! files ([`copy_of`]): the same CA, token, grant and TOTP keys, which is what the bundle
//! will hand every relay.

use assist_tests::browser::Browser;
use assist_tests::{Cli, TestRelay, wait_until};
use std::path::Path;
use std::time::{Duration, Instant};

/// What a relay of the cluster shares with the others: its keys (and the empty `assist.db`
/// that marks a completed first start).
const SHARED: [&str; 8] =
    ["ca.pem", "ca.key", "server.pem", "server.key", "token.key", "grant.key", "totp.key", "assist.db"];

fn env(db: &assist_testpg::Database) -> Vec<(String, String)> {
    vec![("ASSIST_DATABASE".to_owned(), db.url().to_owned())]
}

/// The first relay of a cluster on `db`.
fn first(db: &assist_testpg::Database) -> anyhow::Result<TestRelay> {
    TestRelay::start_with_env(tempfile::tempdir()?, "127.0.0.1:0", &[], env(db))
}

/// Another relay on the same database, from a copy of `first`'s key files.
fn copy_of(first: &TestRelay, db: &assist_testpg::Database) -> anyhow::Result<TestRelay> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::DirBuilder::new().mode(0o700).create(&data)?;
    for f in SHARED {
        let to = data.join(f);
        std::fs::copy(first.data_dir().join(f), &to)?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
    }
    let relay = TestRelay::start_with_env(dir, "127.0.0.1:0", &[], env(db))?;
    assert_eq!(relay.fingerprint, first.fingerprint, "one CA for the cluster");
    assert!(relay.admin_password.is_empty(), "no second first start");
    Ok(relay)
}

/// `assist shell erp-db01 --ticket INC-18 ... EXTRA -- CMD...`
fn shell_args<'a>(extra: &[&'a str], cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["shell", "erp-db01", "--ticket", "INC-18", "--reason", "several relays"];
    v.extend(extra);
    v.push("--");
    v.extend(cmd);
    v
}

/// The session `id` as `cli`'s `assist sessions --json` shows it.
fn session(cli: &Cli, id: &str) -> anyhow::Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["sessions", "--json"])?)?;
    v.as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == id))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no session {id} in {v}"))
}

/// Whether the process whose id is in `pidfile` is still alive.
fn alive(pidfile: &Path) -> bool {
    let Ok(pid) = std::fs::read_to_string(pidfile) else { return false };
    Path::new(&format!("/proc/{}", pid.trim())).exists()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `assist ARGS`, requires success, and returns what it said (on stderr).
fn said(cli: &Cli, args: &[&str]) -> anyhow::Result<String> {
    let out = cli.run(args)?;
    anyhow::ensure!(out.status.success(), "assist {args:?} failed: {}", stderr(&out));
    Ok(stderr(&out))
}

#[test]
fn approvers_on_other_relays_approve_escalate_revoke_and_end_a_session_held_by_relay_one()
-> anyhow::Result<()> {
    let db = assist_testpg::database();
    let r1 = first(&db)?;
    r1.standard_world()?;
    // All relays up before any session: a starting relay still closes every open session
    // it finds (one relay per database, until relays have names).
    let r2 = copy_of(&r1, &db)?;
    let r3 = copy_of(&r1, &db)?;
    let _agent = r1.agent("erp-db01", "acme", "approver")?;
    let alice = r1.login("alice")?;
    let bob2 = r2.login("bob")?;
    let bob3 = r3.login("bob")?;

    let tmp = tempfile::tempdir()?;
    let dir = std::fs::canonicalize(tmp.path())?;
    let pidfile = dir.join("pid");
    let script = format!("echo $$ > {}; echo running; exec sleep 600", pidfile.display());
    // With roots that make the approval, and its answer, larger than a notification may
    // carry (8,000 bytes): both travel through a row of `bus_messages`.
    let long = "a".repeat(200);
    let roots: Vec<String> = (0..20).map(|i| format!("/srv/{long}/{long}/{i}")).collect();
    let read = format!("files.read:{},{}", dir.display(), roots.join(","));
    assert!(read.len() > 8000);
    let mut s = alice.spawn(&shell_args(&["--also", &read], &["sh", "-c", &script]))?;
    s.stderr.wait_for("waiting for an approver of acme")?;

    // Relay 2 lists the request relay 1 holds, and approves it.
    let id = bob2.pending_request()?;
    let listed = bob2.ok(&["requests"])?;
    assert!(listed.contains(&id) && listed.contains("alice") && listed.contains("erp-db01"), "{listed}");
    let approved =
        said(&bob2, &["approve", &id, "--only", "shell", "--only", &read, "--note", "from relay 2"])?;
    let head = format!("approved {id}: shell, files.read:{},/srv/", dir.display());
    // The CLI cuts a long line with a visible mark, as it does any text.
    assert!(approved.starts_with(&head), "{approved}");
    s.stderr.wait_for("approved by bob")?;
    s.stdout.wait_for("running")?;
    wait_until("the remote process", || Ok(alive(&pidfile)))?;
    assert_eq!(session(&alice, &id)?["approver"], "bob");
    let rows = assist_testpg::server()
        .psql(db.name(), "SELECT count(*) FROM bus_messages")
        .map_err(anyhow::Error::msg)?;
    assert!(rows.trim().parse::<u32>()? >= 2, "the ask and its answer went through rows: {rows}");

    // An escalation, listed on relay 2 from the session's row and approved there.
    let mut esc = alice.spawn(&["escalate", &id, "--extend", "10m", "--reason", "one more look"])?;
    esc.stderr.wait_for("waiting for an approver of acme")?;
    let more = bob2.ok(&["requests"])?;
    assert!(more.contains(&id) && more.contains("MORE"), "{more}");
    let escalated = said(&bob2, &["approve", &id])?;
    assert!(escalated.contains(&format!("approved the escalation of {id}")), "{escalated}");
    assert_eq!(esc.wait()?.code(), Some(0));
    s.stderr.wait_for("bob granted")?;
    assert!(s.child.try_wait()?.is_none(), "the shell survives the escalation");

    // Relay 3 revokes the shell: relay 1 resets it and the agent kills it at once.
    let revoked = said(&bob3, &["revoke", &id, "--capability", "shell", "--reason", "enough shell"])?;
    let answered = Instant::now();
    assert!(revoked.contains(&format!("revoked shell from {id}; ")), "{revoked}");
    wait_until("the agent to kill the process", || Ok(!alive(&pidfile)))?;
    let gone = answered.elapsed();
    s.stderr.wait_for("shell revoked by bob: enough shell")?;
    assert_ne!(s.wait()?.code(), Some(0));
    assert!(gone < Duration::from_secs(1), "the process lived {gone:?} after the revocation");
    assert_eq!(session(&bob2, &id)?["state"], "active", "the session goes on with {read}");

    // Refusals are the holder's, word for word as on one relay.
    let nothing = bob2.run(&["revoke", &id, "--capability", "files.write"])?;
    assert!(!nothing.status.success());
    assert!(
        stderr(&nothing).contains(&format!("session {id} holds nothing matching files.write")),
        "{}",
        stderr(&nothing)
    );

    // Relay 2 ends it.
    let ended = said(&bob2, &["end", &id, "--reason", "done for today"])?;
    assert_eq!(ended.trim(), format!("ended {id}"));
    let row = session(&alice, &id)?;
    assert_eq!(row["state"], "closed", "{row}");
    assert!(row["end_reason"].as_str().unwrap_or("").contains("done for today"), "{row}");

    // A command for a session whose relay is gone says so.
    let mut waiting = alice.spawn(&shell_args(&[], &["true"]))?;
    waiting.stderr.wait_for("waiting for an approver of acme")?;
    let id2 = bob2.pending_request()?;
    assert_ne!(id2, id);
    // Killed, not stopped: the request stays open in the database, held by nobody.
    drop(r1);
    drop(waiting);
    let refused = bob2.run(&["approve", &id2])?;
    assert!(!refused.status.success());
    let refusal = stderr(&refused);
    assert!(
        refusal.contains(&format!(
            "session {id2} is held by another relay of the cluster, which did not answer"
        )),
        "{refusal}"
    );

    let verified = r2.admin(&["audit", "verify"])?;
    assert!(verified.starts_with("audit log intact:"), "{verified}");
    let actions = r2.admin(&["audit", "export", "--format", "jsonl", "--session", &id])?;
    for a in ["session.approved", "session.escalated", "grant.revoked", "session.ended"] {
        assert_eq!(actions.matches(&format!("\"action\":\"{a}\"")).count(), 1, "{a} once in {actions}");
    }
    Ok(())
}

#[test]
fn the_approver_page_on_relay_two_shows_a_request_made_on_relay_one_and_approves_it() -> anyhow::Result<()> {
    let db = assist_testpg::database();
    let r1 = first(&db)?;
    r1.standard_world()?;
    let r2 = copy_of(&r1, &db)?;
    let _agent = r1.agent("erp-db01", "acme", "approver")?;
    let alice = r1.login("alice")?;
    let (url, _) = r2.console()?;
    let b = Browser::open(&r2.data_dir().join("ca.pem"))?;
    crate::console::sign_in_and_enrol(&b, &url, "bob", "pw-bob-123", "approver")?;
    b.wait_css("#none")?;

    let mut shell = alice.spawn(&shell_args(
        &["--priority", "P1"],
        &["sh", "-c", "echo shell-is-open; read line; echo got-$line"],
    ))?;
    shell.stderr.wait_for("waiting for an approver of acme")?;
    let asked = Instant::now();
    // The open page on relay 2 shows it without a reload: relay 1's change woke relay 2.
    let card = b.wait_text("#requests .request", "INC-18")?;
    let shown = asked.elapsed();
    eprintln!("request made on relay 1 shown on relay 2's page after {shown:?}");
    for what in ["alice", "erp-db01", "several relays", "P1"] {
        assert!(card.contains(what), "{what} missing from the card: {card}");
    }
    // Well inside the page's 10-second safety-net re-read: the bus woke it.
    assert!(shown < Duration::from_secs(5), "shown after {shown:?}");
    b.screenshot("mesh-1-request-from-another-relay")?;
    b.click("#requests .request button.approve")?;
    b.wait_text("#message", "Approved")?;
    shell.stdout.wait_for("shell-is-open")?;
    shell.write_line("relays")?;
    shell.stdout.wait_for("got-relays")?;
    assert_eq!(shell.wait()?.code(), Some(0));
    let row: serde_json::Value = serde_json::from_str(&alice.ok(&["sessions", "--json"])?)?;
    assert_eq!(row[0]["approver"], "bob");
    let verified = r2.admin(&["audit", "verify"])?;
    assert!(verified.starts_with("audit log intact:"), "{verified}");
    Ok(())
}

/// The `…_us=N` figure of a relay's log line.
fn micros(line: &str) -> anyhow::Result<u64> {
    let n = line.split("_us=").nth(1).and_then(|r| r.split_whitespace().next());
    Ok(n.ok_or_else(|| anyhow::anyhow!("no figure in {line}"))?.parse()?)
}

/// Answer latency, approving from the session's relay and from another (printed, not
/// asserted): `cargo test -p assist-tests --test e2e mesh::answer_latency -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement"]
fn answer_latency_same_relay_and_across_relays() -> anyhow::Result<()> {
    let db = assist_testpg::database();
    let mut r1 = first(&db)?;
    r1.standard_world()?;
    let mut r2 = copy_of(&r1, &db)?;
    let _agent = r1.agent("erp-db01", "acme", "approver")?;
    let alice = r1.login("alice")?;
    let here = r1.login("bob")?;
    let there = r2.login("bob")?;
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    // The relays' own account of each carried answer: relay 2 from sending the ask to
    // reading the reply, relay 1 its broker's answer (store write included).
    let mut carried = Vec::new();
    for round in 0..10 {
        for (i, bob) in [&here, &there].into_iter().enumerate() {
            let mut s = alice.spawn(&shell_args(&[], &["echo", "ok"]))?;
            s.stderr.wait_for("waiting for an approver of acme")?;
            let id = bob.pending_request()?;
            let t = Instant::now();
            bob.ok(&["approve", &id])?;
            let took = t.elapsed();
            s.stdout.wait_for("ok")?;
            s.wait()?;
            if i == 1 {
                let sent = micros(&r2.proc.stderr.wait_for("command carried to the session's relay")?)?;
                let held = micros(&r1.proc.stderr.wait_for("answered a command from another relay")?)?;
                if round > 0 {
                    carried.push((sent, held));
                }
            }
            if round > 0 {
                times[i].push(took);
            }
        }
    }
    for (name, mut t) in ["same relay", "across relays"].into_iter().zip(times) {
        t.sort();
        eprintln!(
            "assist approve, {name}: median {:?}, min {:?}, max {:?}",
            t[t.len() / 2],
            t[0],
            t[t.len() - 1]
        );
    }
    let (total, held): (Vec<u64>, Vec<u64>) = carried.iter().copied().unzip();
    let bus: Vec<u64> = carried.iter().map(|(t, h)| t - h).collect();
    for (name, mut v) in
        [("ask to reply, relay 2", total), ("answer on relay 1", held), ("the bus's share", bus)]
    {
        v.sort();
        eprintln!("{name}: median {} µs, min {} µs, max {} µs", v[v.len() / 2], v[0], v[v.len() - 1]);
    }
    Ok(())
}
