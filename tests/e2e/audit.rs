//! The audit log end to end: a session's events in order beside the logins and admin
//! actions around it, the SIEM export, and `audit verify` before and after one byte of the
//! database file is flipped.

use anyhow::{Context, ensure};
use assist_tests::{Cli, TestRelay, bin, run_with_stdin};
use serde_json::Value;
use std::process::{Command, Output};

const SESSION: &[&str] = &[
    "shell",
    "erp-db01",
    "--ticket",
    "INC-7001",
    "--reason",
    "audit trail check",
    "--",
    "sh",
    "-c",
    "exit 3",
];

/// Runs `assist-relay ARGS` against the relay's data directory, whatever its exit status.
fn relay_cmd(relay: &TestRelay, args: &[&str]) -> anyhow::Result<Output> {
    run_with_stdin(Command::new(bin("assist-relay")).arg("--data-dir").arg(relay.data_dir()).args(args), "")
}

fn audit_list(relay: &TestRelay, filter: &[&str]) -> anyhow::Result<Vec<Value>> {
    let mut args = vec!["audit", "list", "--json"];
    args.extend_from_slice(filter);
    let v: Value = serde_json::from_str(&relay.admin(&args)?)?;
    v.as_array().cloned().context("audit list --json is not an array")
}

/// `(action, actor)` of each event, leaving out the recorder's (`recording.*`), which come
/// and go with the recording feature and are tested with it.
fn actions(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| !e["action"].as_str().is_some_and(|a| a.starts_with("recording.")))
        .map(|e| {
            (e["action"].as_str().unwrap_or("").to_owned(), e["actor"].as_str().unwrap_or("").to_owned())
        })
        .collect()
}

fn pair(action: &str, actor: &str) -> (String, String) {
    (action.to_owned(), actor.to_owned())
}

#[test]
fn a_session_is_audited_in_order_and_one_flipped_byte_breaks_the_chain() -> anyhow::Result<()> {
    let mut relay = TestRelay::start()?;
    relay.standard_world()?;
    // Kept running until the relay stops, so that its events are all there.
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let stranger = Cli { dir: tempfile::tempdir()?, relay: relay.addr.clone() };
    let wrong = stranger.run_stdin(
        &[
            "login",
            "--relay",
            &relay.addr,
            "--user",
            "bob",
            "--password-stdin",
            "--ca-fingerprint",
            &relay.fingerprint,
        ],
        "secret-guess-4711\n",
    )?;
    ensure!(!wrong.status.success(), "a wrong password logged in");

    let mut session = alice.spawn(SESSION)?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    assert_eq!(session.wait()?.code(), Some(3));

    // Stop the relay (killed: it writes nothing more), so the log holds still for the
    // checks; the administration commands read the database on their own.
    relay.proc.child.kill()?;
    relay.proc.child.wait()?;

    // Everything, in order: first start, admin actions, enrollment, logins, the session.
    let all = audit_list(&relay, &[])?;
    let seqs: Vec<i64> = all.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>());
    let seen = actions(&all);
    let cli_actor = seen
        .iter()
        .find(|(a, _)| a == "token.issued")
        .map(|(_, who)| who.clone())
        .context("no token.issued")?;
    assert!(cli_actor.starts_with("admin-cli"), "{cli_actor}");
    assert_eq!(
        seen,
        [
            pair("org.added", "relay"),
            pair("user.added", "relay"),
            pair("org.added", &cli_actor),
            pair("org.added", &cli_actor),
            pair("user.added", &cli_actor),
            pair("user.added", &cli_actor),
            pair("token.issued", &cli_actor),
            pair("agent.enrolled", "agent:erp-db01"),
            pair("agent.connected", "agent:erp-db01"),
            pair("login.succeeded", "alice"),
            pair("login.succeeded", "bob"),
            pair("login.failed", "bob"),
            pair("session.requested", "alice"),
            pair("session.approved", "bob"),
            pair("session.started", "alice"),
            pair("session.ended", "agent:erp-db01"),
        ]
    );
    let failed = all.iter().find(|e| e["action"] == "login.failed").context("no login.failed")?;
    assert_eq!(failed["detail"]["reason"], "wrong password");
    let text = serde_json::to_string(&all)?;
    assert!(!text.contains("secret-guess") && !text.contains("pw-alice-123"), "a password in the audit log");

    // The session's own events, by filter, with the customer's organisation.
    let of_session: Vec<Value> = audit_list(&relay, &["--session", &id])?
        .into_iter()
        .filter(|e| e["action"].as_str().is_some_and(|a| a.starts_with("session.")))
        .collect();
    assert_eq!(
        actions(&of_session).iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["session.requested", "session.approved", "session.started", "session.ended"]
    );
    for e in &of_session {
        assert_eq!((e["org"].as_str(), e["target"].as_str()), (Some("acme"), Some("erp-db01")), "{e}");
    }
    assert_eq!(of_session[0]["detail"]["ticket"], "INC-7001");
    let ended = &of_session[3];
    assert_eq!(ended["detail"]["reason"], "shell exited with status 3");
    let ended_seq = ended["seq"].as_i64().context("seq")?;
    assert_eq!(
        audit_list(&relay, &["--actor", "bob", "--org", "acme"])?.len(),
        3,
        "login, approval, failed login"
    );
    assert_eq!(audit_list(&relay, &["--since", "1h"])?.len(), all.len());
    assert_eq!(audit_list(&relay, &["--until", "2000-01-01T00:00:00Z"])?.len(), 0);

    // The SIEM export: one JSON object per line, the same events as the listing.
    let export = relay.admin(&["audit", "export", "--format", "jsonl", "--session", &id])?;
    let lines: Vec<Value> = export.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    let session_lines: Vec<Value> = lines
        .iter()
        .filter(|e| e["action"].as_str().is_some_and(|a| a.starts_with("session.")))
        .cloned()
        .collect();
    assert_eq!(session_lines, of_session);
    assert!(lines.iter().all(|e| e["session"] == id.as_str()));
    let file = relay.dir.path().join("export.jsonl");
    relay.admin(&[
        "audit",
        "export",
        "--format",
        "jsonl",
        "--session",
        &id,
        "--output",
        file.to_str().context("path")?,
    ])?;
    assert_eq!(std::fs::read_to_string(&file)?, export);

    let intact = relay.admin(&["audit", "verify"])?;
    let head = all.last().and_then(|e| e["hash"].as_str()).context("no hash")?;
    assert_eq!(intact.trim(), format!("audit log intact: {} events, head SHA256:{head}", all.len()));

    // Fold the WAL into the database file, so that the file holds every row.
    let db = relay.data_dir().join("assist.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        assist_relay::store::SqliteStore::open(&db).await?.close().await;
        anyhow::Ok(())
    })?;
    ensure!(!relay.data_dir().join("assist.db-wal").exists(), "the WAL was not checkpointed");

    // Flip one bit of one byte of the stored event: the `3` of its reason becomes `2`.
    // Pages can hold stale copies of a row in free space, so flip each occurrence in turn
    // until the stored event itself reads differently.
    let original = std::fs::read(&db)?;
    let needle = br#""reason":"shell exited with status 3""#;
    let mut flipped = None;
    for (at, _) in original.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle) {
        let mut bytes = original.clone();
        bytes[at + needle.len() - 2] ^= 0x01;
        std::fs::write(&db, &bytes)?;
        let rows = audit_list(&relay, &["--session", &id])?;
        let now = rows.iter().find(|e| e["seq"] == ended_seq).context("the ended event")?;
        if now["detail"]["reason"] == "shell exited with status 2" {
            flipped = Some(at);
            break;
        }
    }
    ensure!(flipped.is_some(), "the event's reason was not found in the database file");

    let out = relay_cmd(&relay, &["audit", "verify"])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "verify passed a changed log: {stdout}");
    assert!(
        stdout.starts_with(&format!("audit log broken at event #{ended_seq}: ")),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// SIGPIPE's number on Linux.
const SIGPIPE: i32 = 13;

/// Stdout a pipe whose reader is already gone, as after `| head -1` read its line.
fn closed_pipe() -> anyhow::Result<std::io::PipeWriter> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    Ok(writer)
}

/// A listing whose reader went away stops by SIGPIPE, as `head`'s other writers do, not by
/// a panic ("failed printing to stdout: Broken pipe", exit 101) (issue 12).
#[test]
fn listings_whose_reader_went_away_stop_quietly() -> anyhow::Result<()> {
    use std::os::unix::process::ExitStatusExt;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let bob = relay.login("bob")?;
    let admin = Command::new(bin("assist-relay"))
        .arg("--data-dir")
        .arg(relay.data_dir())
        .args(["audit", "list"])
        .stdout(closed_pipe()?)
        .output()?;
    let cli = bob.command().arg("sessions").stdout(closed_pipe()?).output()?;
    for (what, out) in [("assist-relay audit list", admin), ("assist sessions", cli)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!stderr.contains("panicked"), "{what} panicked: {stderr}");
        ensure!(out.status.signal() == Some(SIGPIPE), "{what}: {:?} {stderr}", out.status);
    }
    Ok(())
}
