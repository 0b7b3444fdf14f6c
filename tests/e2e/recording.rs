//! Recordings made by the real relay: verified, exported for a real player, tamper and
//! crash detection, and failing closed when the disk is full.

use assist_tests::{TestRelay, Tmpfs, WAIT};
use std::process::Command;
use std::time::{Duration, Instant};

fn shell(cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["shell", "erp-db01", "--ticket", "INC-77", "--reason", "audit me", "--"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs one approved session to its end and returns its id.
fn run_session(relay: &TestRelay, cmd: &[&str]) -> anyhow::Result<(String, std::process::ExitStatus)> {
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(&refs(&shell(cmd)))?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    let status = s.wait()?;
    Ok((id, status))
}

fn recording_path(relay: &TestRelay, id: &str) -> std::path::PathBuf {
    relay.data_dir().join("recordings").join(format!("{id}.arec"))
}

/// `recording verify` output, waiting for the seal if the session just ended.
fn verify(relay: &TestRelay, args: &[&str], want: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = Command::new(assist_tests::bin("assist-relay"))
            .envs(relay.env.iter().map(|(k, v)| (k, v)))
            .arg("--data-dir")
            .arg(relay.data_dir())
            .args(["recording", "verify"])
            .args(args)
            .output()?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if text.contains(want) || Instant::now() > deadline {
            return Ok(text);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `recording verify ARGS`'s exit status.
fn verify_status(relay: &TestRelay, args: &[&str]) -> anyhow::Result<Option<i32>> {
    let out = Command::new(assist_tests::bin("assist-relay"))
        .envs(relay.env.iter().map(|(k, v)| (k, v)))
        .arg("--data-dir")
        .arg(relay.data_dir())
        .args(["recording", "verify"])
        .args(args)
        .output()?;
    Ok(out.status.code())
}

#[test]
fn sessions_are_recorded_sealed_and_exported_for_standard_players() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (id, status) =
        run_session(&relay, &["sh", "-c", "echo recorded-line-$((40+2)); echo to-stderr >&2"])?;
    assert_eq!(status.code(), Some(0));

    let text = verify(&relay, &[&id], "valid")?;
    assert!(text.starts_with("valid"), "{text}");
    assert_eq!(verify_status(&relay, &[&id])?, Some(0));
    assert_eq!(verify_status(&relay, &["s-000000000000"])?, Some(1), "no such recording: not checked");
    // The agent countersigned what it served (stdin, stdout and the stderr stream), and
    // what it saw matches the recording.
    assert!(text.contains("the agent countersigned 1 channel(s) and saw the same bytes"), "{text}");

    // asciicast v2 that the real asciinema player accepts.
    let dir = tempfile::tempdir()?;
    let cast = dir.path().join("s.cast");
    relay.admin(&[
        "recording",
        "export",
        &id,
        "--format",
        "asciicast",
        "--output",
        cast.to_str().unwrap(),
    ])?;
    let body = std::fs::read_to_string(&cast)?;
    let head: serde_json::Value = serde_json::from_str(body.lines().next().unwrap())?;
    assert_eq!(head["version"], 2);
    assert!(body.contains("recorded-line-42"), "{body}");
    assert!(body.contains("to-stderr"), "stderr is recorded too: {body}");
    assert!(body.contains("approved by bob"), "markers are in the cast: {body}");
    let played = Command::new("script")
        .args(["-qec", &format!("asciinema cat {}", cast.display()), "/dev/null"])
        .output()?;
    assert!(played.status.success(), "asciinema cat failed: {played:?}");
    assert!(String::from_utf8_lossy(&played.stdout).contains("recorded-line-42"), "{played:?}");

    // Replay in a terminal, fast.
    let played = relay.admin(&["recording", "play", &id, "--speed", "100"])?;
    assert!(played.contains("recorded-line-42"), "{played}");

    // The raw bytes of the output channel are exactly what the command wrote.
    let raw = relay.admin(&[
        "recording",
        "export",
        &id,
        "--format",
        "raw",
        "--channel",
        "1",
        "--direction",
        "out",
    ])?;
    assert_eq!(raw, "recorded-line-42\n");

    // Offline: the exported public keys verify a copy of the file, away from the data dir.
    let keys = dir.path().join("keys.json");
    relay.admin(&["keys", "export", "--output", keys.to_str().unwrap()])?;
    let copy = dir.path().join("copy.arec");
    std::fs::copy(recording_path(&relay, &id), &copy)?;
    let text =
        verify(&relay, &["--file", copy.to_str().unwrap(), "--keys", keys.to_str().unwrap()], "valid")?;
    assert!(text.starts_with("valid"), "{text}");

    // One flipped byte in the middle of the file is caught.
    let mut bytes = std::fs::read(&copy)?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&copy, &bytes)?;
    let out = Command::new(assist_tests::bin("assist-relay"))
        .arg("--data-dir")
        .arg(relay.data_dir())
        .args(["recording", "verify", "--file", copy.to_str().unwrap(), "--keys", keys.to_str().unwrap()])
        .output()?;
    assert_eq!(out.status.code(), Some(4), "tampered has its own status: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("tampered"), "{out:?}");
    Ok(())
}

#[test]
fn valid_missing_and_tampered_recordings_have_their_own_exit_status() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (id, _) = run_session(&relay, &["echo", "statuses"])?;
    verify(&relay, &[&id], "valid")?;
    assert_eq!(verify_status(&relay, &[&id])?, Some(0));
    assert_eq!(verify_status(&relay, &["s-000000000000"])?, Some(1), "no such recording: not checked");
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("copy.arec");
    let mut bytes = std::fs::read(recording_path(&relay, &id))?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&copy, &bytes)?;
    assert_eq!(verify_status(&relay, &["--file", copy.to_str().unwrap()])?, Some(4));
    // A recording cut short is truncated (3), not tampered: also after a crash, below.
    std::fs::write(&copy, &std::fs::read(recording_path(&relay, &id))?[..mid])?;
    assert_eq!(verify_status(&relay, &["--file", copy.to_str().unwrap()])?, Some(3));
    Ok(())
}

#[test]
fn exports_are_private_like_the_store() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (id, _) = run_session(&relay, &["echo", "exported"])?;
    verify(&relay, &[&id], "valid")?;
    let dir = tempfile::tempdir()?;
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    // One of them exists already, readable by all: it is replaced, not reused.
    std::fs::write(out("s.cast"), "old")?;
    std::fs::set_permissions(out("s.cast"), std::fs::Permissions::from_mode(0o644))?;
    relay.admin(&["recording", "export", &id, "--format", "asciicast", "--output", &out("s.cast")])?;
    let raw = out("s.raw");
    relay.admin(&[
        "recording",
        "export",
        &id,
        "--format",
        "raw",
        "--channel",
        "1",
        "--direction",
        "out",
        "--output",
        &raw,
    ])?;
    relay.admin(&["keys", "export", "--output", &out("keys.json")])?;
    relay.admin(&["audit", "export", "--format", "jsonl", "--output", &out("audit.jsonl")])?;
    for name in ["s.cast", "s.raw", "keys.json", "audit.jsonl"] {
        let mode = std::fs::metadata(out(name))?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name} is {mode:o}");
    }
    assert_eq!(std::fs::read_to_string(&raw)?, "exported\n");
    assert!(std::fs::read_to_string(out("s.cast"))?.contains("exported"));
    assert_eq!(std::fs::read_dir(dir.path())?.count(), 4, "no temporary file left");
    Ok(())
}

#[test]
fn a_relay_killed_mid_session_leaves_a_truncated_recording() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(&refs(&shell(&["sh", "-c", "echo before-crash; sleep 600"])))?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    s.stdout.wait_for("before-crash")?;
    // Let the recorder write what it has (it syncs every second).
    let path = recording_path(&relay, &id);
    let deadline = Instant::now() + WAIT;
    while std::fs::read(&path).map(|b| !String::from_utf8_lossy(&b).contains("before-crash")).unwrap_or(true)
    {
        anyhow::ensure!(Instant::now() < deadline, "output never reached the recording");
        std::thread::sleep(Duration::from_millis(50));
    }
    let relay = relay.restart()?;
    let text = verify(&relay, &[&id], "truncated")?;
    assert!(text.starts_with("truncated"), "{text}");
    assert_eq!(verify_status(&relay, &[&id])?, Some(3), "truncated has its own status");
    Ok(())
}

#[test]
fn a_full_disk_ends_the_session_and_is_audited() -> anyhow::Result<()> {
    let disk = Tmpfs::mount("256k")?;
    let recordings = disk.path().to_str().unwrap().to_owned();
    let relay = TestRelay::start_with(&["--recordings-dir", &recordings])?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    // Far more output than the recording disk holds.
    let (id, status) =
        run_session(&relay, &["sh", "-c", "head -c 20000000 /dev/zero | tr '\\0' x; sleep 600"])?;
    assert_ne!(status.code(), Some(0), "the session must not go on unrecorded");
    let bob = relay.login("bob")?;
    let sessions: serde_json::Value = serde_json::from_str(&bob.ok(&["sessions", "--json"])?)?;
    let reason = sessions[0]["end_reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("recording failed"), "{reason}");
    let audit = relay.admin(&["audit", "list", "--json", "--session", &id])?;
    assert!(audit.contains("recording.failed"), "{audit}");
    Ok(())
}

#[test]
fn a_relay_told_not_to_record_runs_sessions_unrecorded() -> anyhow::Result<()> {
    let relay = TestRelay::start_with(&["--no-recording"])?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (id, status) = run_session(&relay, &["echo", "unrecorded"])?;
    assert_eq!(status.code(), Some(0));
    assert!(!recording_path(&relay, &id).exists());
    let text = verify(&relay, &[&id], "no recording")?;
    assert!(text.contains("no recording for session"), "{text}");
    Ok(())
}

#[test]
fn recordings_can_go_to_an_object_store_as_segments() -> anyhow::Result<()> {
    let objects = tempfile::tempdir()?;
    let url = format!("file://{}/objects", objects.path().display());
    let relay = TestRelay::start_with(&["--recordings", &url])?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (id, status) = run_session(&relay, &["sh", "-c", "echo segmented-$((40+2))"])?;
    assert_eq!(status.code(), Some(0));

    // Verified where it was written, not in the data directory.
    let text = verify(&relay, &[&id, "--recordings", &url], "valid")?;
    assert!(text.starts_with("valid"), "{text}");
    assert!(text.contains("the agent countersigned"), "{text}");
    assert!(!recording_path(&relay, &id).exists());
    let segments: Vec<_> = std::fs::read_dir(objects.path().join("objects").join(&id))?
        .map(|e| e.map(|e| e.file_name().into_string().unwrap_or_default()))
        .collect::<Result<_, _>>()?;
    assert!(segments.contains(&"000000.seg".to_string()) && segments.len() >= 3, "{segments:?}");

    let raw = relay.admin(&["recording", "export", &id, "--format", "raw", "--recordings", &url])?;
    assert_eq!(raw, "segmented-42\n");
    let missing = verify(&relay, &[&id], "no recording")?;
    assert!(missing.contains("no recording"), "{missing}");
    Ok(())
}

/// `--recordings s3://BUCKET/PREFIX` with the bucket's settings from the `AWS_*`
/// environment, against a real S3 API on loopback: the recording is written as segment
/// objects, verifies with the agent's countersignature, and exports its exact bytes.
#[test]
fn recordings_can_go_to_an_s3_bucket() -> anyhow::Result<()> {
    let s3 = assist_tests::S3Server::start()?;
    s3.create_bucket("assist-rec")?;
    let url = "s3://assist-rec/relay-1";
    let relay =
        TestRelay::start_with_env(tempfile::tempdir()?, "127.0.0.1:0", &["--recordings", url], s3.env())?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (id, status) = run_session(&relay, &["sh", "-c", "echo in-a-bucket-$((40+2))"])?;
    assert_eq!(status.code(), Some(0));

    let text = verify(&relay, &[&id, "--recordings", url], "valid")?;
    assert!(text.starts_with("valid"), "{text}");
    assert!(text.contains("the agent countersigned"), "{text}");
    assert!(!recording_path(&relay, &id).exists());
    let raw = relay.admin(&["recording", "export", &id, "--format", "raw", "--recordings", url])?;
    assert_eq!(raw, "in-a-bucket-42\n");
    Ok(())
}
