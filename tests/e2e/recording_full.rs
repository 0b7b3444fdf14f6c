//! Nothing is forwarded before it is recorded: with the recordings on a small tmpfs that
//! fills up, what the receiving side got of each kind of channel (shell output, engineer
//! input, download, upload, log bundle) never exceeds what the (truncated, unsealed)
//! recording holds for that channel plus the documented budget, and the session ends as
//! "recording failed", audited.
//!
//! It does not test the speed of recording (the bench does) nor a crash (recording.rs).

use assist_tests::files_support::{agent_with, events, hold_session, noise};
use assist_tests::{Cli, TestRelay, Tmpfs, bin, wait_until};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

/// `recording::budget::HELD`: data bytes a session may have forwarded that are not yet in
/// its recording's file (docs/recording.md).
const HELD: u64 = 512 * 1024;
/// The recordings' disk: room for the header and a little data, far less than is sent.
const DISK: &str = "64k";
/// What each test tries to move: many times the disk and the budget.
const VOLUME: usize = 8 << 20;

struct World {
    _disk: Tmpfs,
    recordings: String,
    relay: TestRelay,
    _agent: assist_tests::TestAgent,
    alice: Cli,
    bob: Cli,
    /// The agent's files, on an ordinary disk.
    files: tempfile::TempDir,
}

fn world() -> anyhow::Result<World> {
    let disk = Tmpfs::mount(DISK)?;
    let recordings = disk.path().to_str().expect("a UTF-8 path").to_owned();
    let relay = TestRelay::start_with(&["--recordings-dir", &recordings])?;
    relay.standard_world()?;
    let agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let files = tempfile::tempdir()?;
    Ok(World { _disk: disk, recordings, relay, _agent: agent, alice, bob, files })
}

impl World {
    fn p(&self, rel: &str) -> String {
        self.files.path().join(rel).display().to_string()
    }

    /// The data bytes the recording holds for `channels` in `direction`, read from its
    /// chunks that verify (the recording is cut short and unsealed).
    fn recorded(
        &self,
        id: &str,
        channels: std::ops::RangeInclusive<u32>,
        direction: &str,
    ) -> anyhow::Result<u64> {
        let out = tempfile::tempdir()?;
        let mut total = 0;
        for channel in channels {
            let file = out.path().join(format!("{channel}.raw"));
            let run = Command::new(bin("assist-relay"))
                .arg("--data-dir")
                .arg(self.relay.data_dir())
                .args(["recording", "export", id, "--format", "raw", "--recordings", &self.recordings])
                .args(["--channel", &channel.to_string(), "--direction", direction, "--output"])
                .arg(&file)
                .output()?;
            anyhow::ensure!(run.status.success(), "export failed: {}", String::from_utf8_lossy(&run.stderr));
            total += std::fs::metadata(&file)?.len();
        }
        Ok(total)
    }

    /// The session's end reason, once it ended.
    fn end_reason(&self, id: &str) -> anyhow::Result<String> {
        let mut reason = String::new();
        wait_until("the session's end", || {
            let sessions: serde_json::Value = serde_json::from_str(&self.bob.ok(&["sessions", "--json"])?)?;
            let row = sessions.as_array().into_iter().flatten().find(|s| s["id"] == id);
            reason = row.and_then(|s| s["end_reason"].as_str()).unwrap_or_default().to_owned();
            Ok(!reason.is_empty())
        })?;
        eprintln!("end reason: {reason}");
        Ok(reason)
    }

    /// The session ended as a recording failure (`reason`), and the failure is audited.
    fn ended_by_the_recording(&self, id: &str, reason: &str) -> anyhow::Result<()> {
        // Never the exit the cut provoked (a shell killed by SIGPIPE) or another reason.
        assert!(reason.starts_with("failed: recording failed: "), "the end reason: {reason}");
        let failed = events(&self.relay, id, "recording.failed")?;
        assert_eq!(failed.len(), 1, "one recording.failed: {failed:?}");
        let ended = events(&self.relay, id, "session.ended")?;
        assert!(ended.len() == 1 && ended[0]["detail"]["reason"].as_str() == Some(reason), "{ended:?}");
        Ok(())
    }

    /// A shell session held open with file capabilities; its files go on other channels.
    fn held(&self) -> anyhow::Result<assist_tests::files_support::Held> {
        for dir in ["out", "in"] {
            std::fs::create_dir_all(self.files.path().join(dir))?;
        }
        let caps = [format!("files.read:{}", self.p("out")), format!("files.write:{}", self.p("in"))];
        hold_session(&self.alice, &self.bob, "erp-db01", &caps)
    }
}

/// Waits for a child to exit, bounded by [`assist_tests::WAIT`].
fn exit_of(child: &mut Child) -> anyhow::Result<ExitStatus> {
    let mut status = None;
    wait_until("the client to exit", || {
        status = child.try_wait()?;
        Ok(status.is_some())
    })?;
    Ok(status.expect("waited for"))
}

fn within_bound(what: &str, received: u64, recorded: u64) {
    eprintln!(
        "{what}: received {received} B, recorded {recorded} B, excess {}",
        received as i64 - recorded as i64
    );
    assert!(
        received <= recorded + HELD,
        "{what}: the receiver got {received} B, the recording holds {recorded} B: {} B crossed unrecorded, \
         more than the budget of {HELD} B",
        received - recorded
    );
}

/// Runs `assist shell` with `stdin` and stdout into a file; returns its status, the file
/// and the session id.
fn shell(w: &World, cmd: &str, stdin: Stdio) -> anyhow::Result<(ExitStatus, std::path::PathBuf, String)> {
    let out = w.files.path().join("engineer-stdout");
    let mut child = w
        .alice
        .command()
        .args(["shell", "erp-db01", "--ticket", "INC-12", "--reason", "full disk", "--", "sh", "-c", cmd])
        .stdin(stdin)
        .stdout(std::fs::File::create(&out)?)
        .stderr(Stdio::null())
        .spawn()?;
    let id = w.bob.pending_request()?;
    w.bob.ok(&["approve", &id])?;
    Ok((exit_of(&mut child)?, out, id))
}

#[test]
fn shell_output_beyond_the_recording_never_reaches_the_engineer() -> anyhow::Result<()> {
    let w = world()?;
    // No `sleep` after it: the cut kills `tr` (SIGPIPE), and the agent reports the exit
    // (141) at once; the end must still be the recording's failure.
    let cmd = format!("head -c {VOLUME} /dev/zero | tr '\\0' x");
    let (status, out, id) = shell(&w, &cmd, Stdio::null())?;
    assert_ne!(status.code(), Some(0), "the session must not go on unrecorded");
    let reason = w.end_reason(&id)?;
    let received = std::fs::metadata(&out)?.len();
    within_bound("shell output", received, w.recorded(&id, 1..=1, "out")?);
    assert!(received < VOLUME as u64, "the output was cut");
    w.ended_by_the_recording(&id, &reason)
}

#[test]
fn engineer_input_beyond_the_recording_never_reaches_the_shell() -> anyhow::Result<()> {
    let w = world()?;
    let input = w.files.path().join("input");
    std::fs::write(&input, vec![b'y'; VOLUME])?;
    let got = w.files.path().join("got");
    let pid = w.files.path().join("pid");
    // `exec` so that the pid is the reader's: once it is gone, the file holds all it got.
    let cmd = format!("echo $$ > {}; exec cat > {}", pid.display(), got.display());
    let (status, _, id) = shell(&w, &cmd, Stdio::from(std::fs::File::open(&input)?))?;
    assert_ne!(status.code(), Some(0), "the session must not go on unrecorded");
    let pid = std::fs::read_to_string(&pid)?.trim().to_owned();
    wait_until("the shell's end", || Ok(!Path::new(&format!("/proc/{pid}")).exists()))?;
    let reason = w.end_reason(&id)?;
    let received = std::fs::metadata(&got)?.len();
    within_bound("engineer input", received, w.recorded(&id, 1..=1, "in")?);
    assert!(received < VOLUME as u64, "the input was cut");
    w.ended_by_the_recording(&id, &reason)
}

#[test]
fn a_download_beyond_the_recording_never_reaches_the_engineer() -> anyhow::Result<()> {
    let w = world()?;
    let held = w.held()?;
    std::fs::write(w.files.path().join("out/big.bin"), noise(VOLUME, 12))?;
    let local = tempfile::tempdir()?;
    let out = w.alice.run(&[
        "cp",
        &format!("erp-db01:{}", w.p("out/big.bin")),
        local.path().to_str().unwrap(),
        "--session",
        &held.id,
    ])?;
    assert!(!out.status.success(), "the copy must not complete unrecorded");
    assert!(!local.path().join("big.bin").exists(), "nothing was put in place");
    // The client keeps what it received for --resume.
    let received = std::fs::metadata(local.path().join(".big.bin.assist-part"))?.len();
    // Channel 1 is the held shell; the file is on the next.
    let reason = w.end_reason(&held.id)?;
    within_bound("download", received, w.recorded(&held.id, 2..=4, "out")?);
    w.ended_by_the_recording(&held.id, &reason)
}

#[test]
fn an_upload_beyond_the_recording_never_reaches_the_agent_and_replaces_nothing() -> anyhow::Result<()> {
    let w = world()?;
    let held = w.held()?;
    let target = w.files.path().join("in/target.bin");
    std::fs::write(&target, b"the customer's own file\n")?;
    let source = w.files.path().join("upload.bin");
    std::fs::write(&source, noise(VOLUME, 13))?;
    let out = w.alice.run(&[
        "cp",
        "--force",
        source.to_str().unwrap(),
        &format!("erp-db01:{}", target.display()),
        "--session",
        &held.id,
    ])?;
    assert!(!out.status.success(), "the copy must not complete unrecorded");
    let reason = w.end_reason(&held.id)?;
    assert_eq!(std::fs::read(&target)?, b"the customer's own file\n", "the target was not replaced");
    // The agent keeps what it received for --resume, once its writer is done with it.
    let partial = w.files.path().join("in/.target.bin.assist-part");
    wait_until("the agent's partial file", || Ok(partial.exists()))?;
    let received = std::fs::metadata(&partial)?.len();
    within_bound("upload", received, w.recorded(&held.id, 2..=4, "in")?);
    w.ended_by_the_recording(&held.id, &reason)
}

#[test]
fn a_log_bundle_beyond_the_recording_never_reaches_the_engineer() -> anyhow::Result<()> {
    let w = world()?;
    let held = w.held()?;
    // Noise does not compress: the archive is as large as the logs.
    std::fs::create_dir_all(w.files.path().join("out/logs"))?;
    std::fs::write(w.files.path().join("out/logs/app.log"), noise(VOLUME, 14))?;
    let local = tempfile::tempdir()?;
    let archive = local.path().join("bundle.tar.gz");
    // The client writes what it receives to this partial file: a FIFO, so that the test
    // counts every byte, even those of a bundle the client deletes when it breaks off.
    let partial = local.path().join(".bundle.tar.gz.assist-part");
    let made = Command::new("mkfifo").arg(&partial).status()?;
    anyhow::ensure!(made.success(), "mkfifo failed");
    let counter = std::thread::spawn({
        let partial = partial.clone();
        move || -> std::io::Result<u64> {
            let mut fifo = std::fs::File::open(&partial)?;
            std::io::copy(&mut fifo, &mut std::io::sink())
        }
    });
    let mut client = w
        .alice
        .command()
        .args([
            "logs",
            "erp-db01",
            &w.p("out/logs"),
            "--output",
            archive.to_str().unwrap(),
            "--session",
            &held.id,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let status = exit_of(&mut client)?;
    assert!(!status.success(), "the bundle must not complete unrecorded");
    // A client that never opened the FIFO leaves the counter waiting in open: open and
    // close its other end (without blocking: O_NONBLOCK, Linux's value) to end it.
    wait_until("the count of the bundle's bytes", || {
        if !counter.is_finished() {
            use std::os::unix::fs::OpenOptionsExt;
            let _ = std::fs::OpenOptions::new().write(true).custom_flags(0o4000).open(&partial);
        }
        Ok(counter.is_finished())
    })?;
    let received = counter.join().expect("the counting thread")?;
    let reason = w.end_reason(&held.id)?;
    within_bound("log bundle", received, w.recorded(&held.id, 2..=4, "out")?);
    assert!(!archive.exists(), "no archive was put in place");
    w.ended_by_the_recording(&held.id, &reason)
}
