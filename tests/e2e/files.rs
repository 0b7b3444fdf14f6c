//! File channels, diagnostics and log collection (issue 6), through the real binaries:
//! copies both ways with digests checked at both ends, audited and recorded; every path
//! trick refused; interrupted transfers resumed; limits; allowlisted scripts; log bundles.

use assist_tests::files_support::{agent_with, approved, events, hold_session, noise, sha256, stderr};
use assist_tests::{TestRelay, WAIT, wait_until};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// base/logs (read root: app.log), base/logs2 (a prefix sibling), base/secret, base/in
/// (write root), with links pointing out.
struct Tree {
    _tmp: tempfile::TempDir,
    base: PathBuf,
}

impl Tree {
    fn new() -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let base = std::fs::canonicalize(tmp.path())?;
        for d in ["logs/old", "logs2", "secret", "in", "local"] {
            std::fs::create_dir_all(base.join(d))?;
        }
        std::fs::write(base.join("logs/app.log"), noise(3 << 20, 1))?;
        std::fs::write(base.join("logs/old/2024.log"), b"last year\n")?;
        std::fs::write(base.join("logs2/other.log"), b"not granted\n")?;
        std::fs::write(base.join("secret/key"), b"secret\n")?;
        std::os::unix::fs::symlink(base.join("secret/key"), base.join("logs/key-link"))?;
        std::os::unix::fs::symlink(base.join("secret"), base.join("logs/secret-dir"))?;
        std::os::unix::fs::symlink(base.join("secret"), base.join("in/secret-dir"))?;
        Ok(Self { _tmp: tmp, base })
    }
    fn p(&self, rel: &str) -> String {
        self.base.join(rel).display().to_string()
    }
    fn remote(&self, rel: &str) -> String {
        format!("erp-db01:{}", self.p(rel))
    }
}

fn world(extra: &[&str]) -> anyhow::Result<(TestRelay, assist_tests::TestAgent)> {
    let relay = TestRelay::start_with(extra)?;
    relay.standard_world()?;
    let agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    Ok((relay, agent))
}

fn new_session() -> [&'static str; 4] {
    ["--ticket", "INC-6", "--reason", "collect logs"]
}

/// Waits until the session has `n` events of `action` (the relay may audit a refusal just
/// after the engineer heard of it).
fn wait_events(relay: &TestRelay, session: &str, action: &str, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = events(relay, session, action)?.len();
        if got == n {
            return Ok(());
        }
        anyhow::ensure!(got < n && Instant::now() < deadline, "{got} {action} events, expected {n}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// How session `id` ended, as `assist sessions` shows it to `cli`.
fn end_reason(cli: &assist_tests::Cli, id: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["sessions", "--json"])?)?;
    let row = v.as_array().and_then(|a| a.iter().find(|s| s["id"] == id)).cloned().unwrap_or_default();
    Ok(row["end_reason"].as_str().unwrap_or("").to_owned())
}

/// Waits until the recording's raw export of `channel`/`direction` equals `expected`.
fn recorded(
    relay: &TestRelay,
    session: &str,
    channel: u32,
    direction: &str,
    expected: &[u8],
) -> anyhow::Result<()> {
    let out = relay.dir.path().join(format!("export-{channel}-{direction}"));
    let deadline = Instant::now() + WAIT;
    loop {
        let args = ["recording", "export", session, "--format", "raw", "--channel", &channel.to_string()];
        let ok = relay
            .admin(&[&args[..], &["--direction", direction, "--output", out.to_str().unwrap()]].concat())
            .is_ok();
        if ok && std::fs::read(&out).is_ok_and(|b| b == expected) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "recording of channel {channel} never matched the file");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn cp_both_ways_checks_digests_audits_and_records_the_bytes() -> anyhow::Result<()> {
    let t = Tree::new()?;
    let (relay, _agent) = world(&[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let original = std::fs::read(t.base.join("logs/app.log"))?;
    let want = sha256(&original);

    // Download into a local directory: the file keeps its name.
    let local = t.p("local");
    let (out, id) =
        approved(&alice, &bob, &[&["cp", &t.remote("logs/app.log"), &local][..], &new_session()].concat())?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.base.join("local/app.log"))?, original);
    assert!(stderr(&out).contains(&format!("sha256 {want}")), "{}", stderr(&out));
    assert!(!t.base.join("local/.app.log.assist-part").exists());
    // The session the copy asked for ended with it, saying so (stored before cp returned).
    assert_eq!(end_reason(&bob, &id)?, "transfer finished");
    let ev = events(&relay, &id, "file.transferred")?;
    assert_eq!(ev.len(), 1, "{ev:?}");
    let d = &ev[0]["detail"];
    assert_eq!(
        (d["sha256_agent"].as_str(), d["sha256_engineer"].as_str()),
        (Some(want.as_str()), Some(want.as_str()))
    );
    assert_eq!(
        (d["match"].as_bool(), d["direction"].as_str(), d["size"].as_u64()),
        (Some(true), Some("download"), Some(3 << 20))
    );
    assert_eq!(d["path"], t.p("logs/app.log"));
    let channel = d["channel"].as_u64().unwrap() as u32;
    recorded(&relay, &id, channel, "out", &original)?;
    // Sealed, and the agent's countersignature of the file's bytes checks out.
    let deadline = Instant::now() + WAIT;
    let verdict = loop {
        match relay.admin(&["recording", "verify", &id]) {
            Ok(v) => break v,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
        }
    };
    assert!(verdict.contains("valid") && verdict.contains("countersign"), "{verdict}");

    // Upload into a remote directory; then again, refused without --force.
    let patch = t.base.join("local/patch.sql");
    std::fs::write(&patch, noise(100_000, 2))?;
    let in_dir = t.remote("in");
    let up = [&["cp", patch.to_str().unwrap(), &in_dir][..], &new_session()].concat();
    let (out, id) = approved(&alice, &bob, &up)?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.base.join("in/patch.sql"))?, std::fs::read(&patch)?);
    let ev = events(&relay, &id, "file.transferred")?;
    let d = &ev[0]["detail"];
    assert_eq!(d["sha256_agent"].as_str(), Some(sha256(&std::fs::read(&patch)?).as_str()));
    assert_eq!((d["match"].as_bool(), d["direction"].as_str()), (Some(true), Some("upload")));
    recorded(&relay, &id, d["channel"].as_u64().unwrap() as u32, "in", &std::fs::read(&patch)?)?;

    // What fails on the engineer's side fails before anyone is asked: an existing local
    // file without --force, a local file that is not there.
    let again = alice.run(&[&["cp", &t.remote("logs/app.log"), &local][..], &new_session()].concat())?;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("app.log exists; use --force to replace it"), "{}", stderr(&again));
    let missing = t.p("local/missing.sql");
    let gone = alice.run(&[&["cp", &missing, &in_dir][..], &new_session()].concat())?;
    assert!(stderr(&gone).contains("missing.sql: No such file"), "{}", stderr(&gone));
    let asked: serde_json::Value = serde_json::from_str(&alice.ok(&["sessions", "--json"])?)?;
    assert_eq!(asked.as_array().map(Vec::len), Some(2), "no session was requested for them: {asked}");

    // A remote file that exists is learnt only with consent (the agent says nothing
    // about its disk before), so this one is refused after approval, changing nothing.
    std::fs::write(&patch, b"new version\n")?;
    let (out, id) = approved(&alice, &bob, &up)?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("exists; use --force"), "{}", stderr(&out));
    assert_ne!(std::fs::read(t.base.join("in/patch.sql"))?, b"new version\n");
    wait_events(&relay, &id, "channel.refused", 1)?;
    let forced = [&up[..], &["--force"]].concat();
    let (out, _) = approved(&alice, &bob, &forced)?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.base.join("in/patch.sql"))?, b"new version\n");
    Ok(())
}

#[test]
fn recursive_copies_and_listing() -> anyhow::Result<()> {
    let t = Tree::new()?;
    let (relay, _agent) = world(&[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let held = hold_session(
        &alice,
        &bob,
        "erp-db01",
        &[format!("files.read:{}", t.p("logs")), format!("files.write:{}", t.p("in"))],
    )?;
    let s = ["--session", held.id.as_str()];

    let listing = alice.ok(&[&["ls", &t.remote("logs")][..], &s].concat())?;
    assert!(
        listing.contains("app.log") && listing.contains("old/") && listing.contains("key-link@"),
        "{listing}"
    );

    let out = alice.run(&[&["cp", "-r", &t.remote("logs"), &t.p("local")][..], &s].concat())?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.base.join("local/logs/old/2024.log"))?, b"last year\n");
    assert_eq!(
        std::fs::read(t.base.join("local/logs/app.log"))?,
        std::fs::read(t.base.join("logs/app.log"))?
    );
    assert!(!t.base.join("local/logs/key-link").exists(), "links are not followed");

    let out = alice.run(&[&["cp", "-r", &t.p("local/logs"), &t.remote("in")][..], &s].concat())?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.base.join("in/logs/old/2024.log"))?, b"last year\n");
    assert_eq!(events(&relay, &held.id, "file.transferred")?.len(), 4);
    // Commands in a session they did not ask for leave it as it was.
    assert_eq!(end_reason(&bob, &held.id)?, "");

    // A listing in a session of its own ends it as such.
    let (out, id) = approved(&alice, &bob, &[&["ls", &t.remote("logs")][..], &new_session()].concat())?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(end_reason(&bob, &id)?, "listing finished");
    Ok(())
}

#[test]
fn every_path_trick_is_refused_and_audited() -> anyhow::Result<()> {
    let t = Tree::new()?;
    let (relay, _agent) = world(&[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let held = hold_session(
        &alice,
        &bob,
        "erp-db01",
        &[format!("files.read:{}", t.p("logs")), format!("files.write:{}", t.p("in"))],
    )?;
    let s = ["--session", held.id.as_str()];
    let dotdot = format!("erp-db01:{}/logs/../secret/key", t.base.display());
    let cases = [
        (dotdot.clone(), "absolute and normalised"),
        (t.remote("logs/key-link"), "outside the granted roots"),
        (t.remote("logs/secret-dir/key"), "outside the granted roots"),
        (t.remote("secret/key"), "does not cover"),
        (t.remote("logs2/other.log"), "does not cover"),
        ("erp-db01:/etc/passwd".to_owned(), "does not cover"),
    ];
    for (i, (src, why)) in cases.iter().enumerate() {
        let out = alice.run(&[&["cp", src.as_str(), &t.p("local")][..], &s].concat())?;
        assert!(!out.status.success(), "{src} was copied");
        assert!(stderr(&out).contains(why), "{src}: {}", stderr(&out));
        // key-link points at secret/key: the refusal must not say so.
        assert!(!stderr(&out).contains("secret/key") || src.contains("secret"), "{src}: {}", stderr(&out));
        assert_eq!(std::fs::read_dir(t.base.join("local"))?.count(), 0, "{src} left a file");
        wait_events(&relay, &held.id, "channel.refused", i + 1)?;
    }
    // Writes: through a link out of the root, or outside it.
    std::fs::write(t.base.join("local/x"), b"x")?;
    for (dst, why) in
        [(t.remote("in/secret-dir"), "outside the granted roots"), (t.remote("logs"), "does not cover")]
    {
        let out = alice.run(&[&["cp", &t.p("local/x"), &dst][..], &s].concat())?;
        assert!(stderr(&out).contains(why), "{dst}: {}", stderr(&out));
    }
    assert!(!t.base.join("secret/x").exists() && !t.base.join("logs/x").exists());
    assert_eq!(events(&relay, &held.id, "file.transferred")?.len(), 0);
    Ok(())
}

/// Waits until `path` holds at least `n` bytes.
fn grows_to(path: &Path, n: u64) -> anyhow::Result<()> {
    wait_until(&format!("{} to reach {n} bytes", path.display()), || {
        Ok(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) >= n)
    })
}

#[test]
fn an_interrupted_upload_leaves_the_old_file_and_resumes() -> anyhow::Result<()> {
    let t = Tree::new()?;
    let (relay, _agent) = world(&[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let held = hold_session(&alice, &bob, "erp-db01", &[format!("files.write:{}", t.p("in"))])?;
    let s = ["--session", held.id.as_str()];
    std::fs::write(t.base.join("in/big.bin"), b"old contents\n")?;
    let big = noise(6 << 20, 3);
    std::fs::write(t.base.join("local/big.bin"), &big)?;

    let (src, dst) = (t.p("local/big.bin"), t.remote("in"));
    let slow = [&["cp", "--force", "--limit-rate", "1M", &src, &dst][..], &s].concat();
    let mut cp = alice.spawn(&slow)?;
    grows_to(&t.base.join("in/.big.bin.assist-part"), 1 << 20)?;
    drop(cp.stdin.take());
    cp.child.kill()?;
    cp.wait()?;
    // The old file is untouched; the partial is kept.
    wait_until("the report of the interrupted transfer", || {
        Ok(!events(&relay, &held.id, "file.transferred")?.is_empty())
    })?;
    assert_eq!(std::fs::read(t.base.join("in/big.bin"))?, b"old contents\n");
    let kept = std::fs::metadata(t.base.join("in/.big.bin.assist-part"))?.len();
    assert!(kept >= 1 << 20 && kept < big.len() as u64, "{kept}");

    let out = alice
        .run(&[&["cp", "--force", "--resume", &t.p("local/big.bin"), &t.remote("in")][..], &s].concat())?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(t.base.join("in/big.bin"))?, big);
    assert!(!t.base.join("in/.big.bin.assist-part").exists());
    let ev = events(&relay, &held.id, "file.transferred")?;
    let (first, last) = (&ev[0]["detail"], &ev[ev.len() - 1]["detail"]);
    assert_eq!(first["ok"], false);
    assert_eq!(
        (last["ok"].as_bool(), last["sha256_agent"].as_str()),
        (Some(true), Some(sha256(&big).as_str()))
    );
    assert!(last["resumed_from"].as_u64().unwrap() >= kept.min(1 << 20), "{last}");
    Ok(())
}

#[test]
fn a_transfer_cut_short_by_the_end_of_its_session_is_still_audited() -> anyhow::Result<()> {
    let t = Tree::new()?;
    let (relay, _agent) = world(&[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let held = hold_session(&alice, &bob, "erp-db01", &[format!("files.write:{}", t.p("in"))])?;
    std::fs::write(t.base.join("local/big.bin"), noise(6 << 20, 5))?;
    let (src, dst) = (t.p("local/big.bin"), t.remote("in"));
    let mut cp = alice.spawn(&["cp", "--limit-rate", "1M", &src, &dst, "--session", &held.id])?;
    grows_to(&t.base.join("in/.big.bin.assist-part"), 1 << 20)?;
    bob.ok(&["end", &held.id, "--reason", "month-end close is done"])?;
    assert!(!cp.wait()?.success());
    // The relay forgets the session before it resets the streams, so the agent's report
    // always arrives after the end: it is audited all the same, without a channel number.
    wait_events(&relay, &held.id, "file.transferred", 1)?;
    let ev = events(&relay, &held.id, "file.transferred")?;
    let d = &ev[0]["detail"];
    assert_eq!((d["ok"].as_bool(), d["direction"].as_str()), (Some(false), Some("upload")), "{d}");
    assert!(d["error"].as_str().is_some_and(|e| e.contains("kept for --resume")), "{d}");
    assert!(!t.base.join("in/big.bin").exists());
    Ok(())
}

#[test]
fn transfers_over_the_limit_are_refused_before_any_byte_moves() -> anyhow::Result<()> {
    let t = Tree::new()?;
    let (relay, _agent) = world(&["--max-transfer", "1MiB", "--max-files", "2"])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let held = hold_session(
        &alice,
        &bob,
        "erp-db01",
        &[format!("files.read:{}", t.p("logs")), format!("files.write:{}", t.p("in"))],
    )?;
    let s = ["--session", held.id.as_str()];
    let out = alice.run(&[&["cp", &t.remote("logs/app.log"), &t.p("local")][..], &s].concat())?;
    assert!(stderr(&out).contains("over the limit of 1.0 MiB"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(t.base.join("local"))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    assert!(left.is_empty(), "{left:?}");
    std::fs::write(t.base.join("local/big"), noise(2 << 20, 4))?;
    let out = alice.run(&[&["cp", &t.p("local/big"), &t.remote("in")][..], &s].concat())?;
    assert!(stderr(&out).contains("over the limit"), "{}", stderr(&out));
    assert!(!t.base.join("in/big").exists() && !t.base.join("in/.big.assist-part").exists());
    std::fs::remove_file(t.base.join("logs/app.log"))?;
    std::fs::write(t.base.join("logs/a"), b"a")?;
    std::fs::write(t.base.join("logs/b"), b"b")?;
    let out = alice.run(&[&["cp", "-r", &t.remote("logs"), &t.p("local")][..], &s].concat())?;
    assert!(stderr(&out).contains("3 files is over the limit of 2"), "{}", stderr(&out));
    assert!(!t.base.join("local/logs").exists());
    assert_eq!(events(&relay, &held.id, "file.transferred")?.len(), 0);
    Ok(())
}

#[test]
fn exec_runs_only_allowlisted_scripts_with_their_own_arguments() -> anyhow::Result<()> {
    let t = Tree::new()?;
    let scripts = t.base.join("scripts.json");
    let config = serde_json::json!({ "scripts": [
        { "name": "hello", "path": "/bin/echo", "args": ["hello", "$(id)", ";", "rm -rf /"] },
        { "name": "fails", "path": "/bin/sh", "args": ["-c", "echo bad >&2; exit 3"] },
        { "name": "hangs", "path": "/bin/sleep", "args": ["600"], "timeout_secs": 1 },
    ]});
    std::fs::write(&scripts, config.to_string())?;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &["--scripts", scripts.to_str().unwrap()])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let exec = |name: &'static str| [&["exec", "erp-db01", name][..], &new_session()].concat();

    let (out, id) = approved(&alice, &bob, &exec("hello"))?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout)?, "hello $(id) ; rm -rf /\n");
    let granted = events(&relay, &id, "session.approved")?;
    assert!(granted[0].to_string().contains("exec"), "{granted:?}");

    let (out, id) = approved(&alice, &bob, &exec("fails"))?;
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("bad"), "{}", stderr(&out));
    wait_until("the end to be stored", || Ok(!end_reason(&bob, &id)?.is_empty()))?;
    assert_eq!(end_reason(&bob, &id)?, "script fails exited with status 3");

    let (out, _) = approved(&alice, &bob, &exec("hangs"))?;
    assert!(!out.status.success());

    // A script the agent does not have is refused before anyone is asked: the agent told
    // the relay its script names (only the names) when it connected.
    let out = alice.run(&exec("nope"))?;
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("agent erp-db01 has no script nope in its allowlist (it has: hello, fails, hangs)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(bob.ok(&["requests", "--json"])?.trim(), "[]");
    // The same for an escalation.
    let held = hold_session(&alice, &bob, "erp-db01", &[])?;
    let out = alice.run(&["escalate", &held.id, "--add", "exec:nope", "--reason", "r"])?;
    assert!(stderr(&out).contains("has no script nope"), "{}", stderr(&out));
    assert_eq!(bob.ok(&["requests", "--json"])?.trim(), "[]");
    // A name that could carry shell syntax is not even asked for.
    let out = alice.run(&exec("hello;id"))?;
    assert!(!out.status.success());
    Ok(())
}

#[test]
fn exec_runs_in_a_live_session_once_its_grant_covers_the_script() -> anyhow::Result<()> {
    let t = Tree::new()?;
    let scripts = t.base.join("scripts.json");
    let config = serde_json::json!({ "scripts": [
        { "name": "hello", "path": "/bin/echo", "args": ["hello"] },
        { "name": "fails", "path": "/bin/sh", "args": ["-c", "echo bad >&2; exit 3"] },
    ]});
    std::fs::write(&scripts, config.to_string())?;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &["--scripts", scripts.to_str().unwrap()])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let mut held = hold_session(&alice, &bob, "erp-db01", &[])?;
    let exec = |name: &str| alice.run(&["exec", "erp-db01", name, "--session", &held.id]);

    // Not granted yet: refused by the relay, and nothing ran.
    let out = exec("hello")?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not cover exec:hello"), "{}", stderr(&out));
    let mut esc = alice.spawn(&[
        "escalate",
        &held.id,
        "--add",
        "exec:hello",
        "--add",
        "exec:fails",
        "--reason",
        "diagnostics",
    ])?;
    esc.stderr.wait_for("waiting for an approver of acme")?;
    bob.ok(&["approve", &held.id])?;
    assert_eq!(esc.wait()?.code(), Some(0));

    // Granted: each runs in the session, its exit code is ours, and the session goes on.
    let out = exec("hello")?;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout.clone())?, "hello\n");
    let out = exec("fails")?;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("bad"), "{}", stderr(&out));
    assert!(held.proc.child.try_wait()?.is_none(), "the session's shell goes on");
    let row: serde_json::Value = serde_json::from_str(&alice.ok(&["sessions", "--json"])?)?;
    assert_eq!(row[0]["state"], "active", "{row}");

    // Recorded as channels of the session (the shell is 1, its stderr 2), and each exit
    // audited.
    recorded(&relay, &held.id, 3, "out", b"hello\n")?;
    wait_events(&relay, &held.id, "exec.exited", 2)?;
    let exits = events(&relay, &held.id, "exec.exited")?;
    assert_eq!(exits[1]["detail"]["script"], "fails", "{exits:?}");
    assert_eq!(exits[1]["detail"]["code"], 3, "{exits:?}");
    Ok(())
}

#[test]
fn logs_collects_recent_files_inside_the_grant_with_a_manifest() -> anyhow::Result<()> {
    let t = Tree::new()?;
    let old = std::fs::File::options().write(true).open(t.base.join("logs/old/2024.log"))?;
    old.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(5 * 86400))?;
    drop(old);
    let (relay, _agent) = world(&[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let archive = t.base.join("local/logs.tar.gz");
    let root = t.p("logs");
    let args =
        [&["logs", "erp-db01", "--since", "2d", "-o", archive.to_str().unwrap(), &root][..], &new_session()]
            .concat();
    let (out, id) = approved(&alice, &bob, &args)?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(end_reason(&bob, &id)?, "log bundle sent");
    let x = t.base.join("local/x");
    std::fs::create_dir(&x)?;
    let tar = std::process::Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&x).output()?;
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(x.join("MANIFEST.json"))?)?;
    let files = manifest["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "only the recent file, no links: {manifest}");
    let app = std::fs::read(t.base.join("logs/app.log"))?;
    assert_eq!(files[0]["path"], t.p("logs/app.log"));
    assert_eq!(files[0]["sha256"].as_str(), Some(sha256(&app).as_str()));
    let inside = x.join(t.p("logs/app.log").trim_start_matches('/'));
    assert_eq!(std::fs::read(inside)?, app);
    Ok(())
}
