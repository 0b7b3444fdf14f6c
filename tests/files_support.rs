//! Helpers for the file, exec and logs tests: an agent started with extra `run` arguments,
//! a held session with file capabilities, approved one-shot commands, audit lookups.

use crate::{Cli, Proc, TestAgent, TestRelay, bin, run_with_stdin};
use anyhow::{Result, bail};
use std::process::{Command, Output};

/// Enrolls `name` in `org` and runs it in approver mode with `extra` run arguments.
pub fn agent_with(relay: &TestRelay, name: &str, org: &str, extra: &[&str]) -> Result<TestAgent> {
    let dir = tempfile::tempdir()?;
    let token = relay.join_token(org)?;
    let out = Command::new(bin("assist-agent"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["enroll", "--relay", &relay.addr, "--token", &token, "--ca-fingerprint", &relay.fingerprint])
        .args(["--name", name])
        .output()?;
    if !out.status.success() {
        bail!("enroll failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut cmd = Command::new(bin("assist-agent"));
    cmd.arg("--data-dir").arg(dir.path()).args(["run", "--consent", "approver"]).args(extra);
    let mut proc = Proc::spawn(cmd)?;
    proc.stderr.wait_for("assist-agent: connected to")?;
    Ok(TestAgent { dir, proc: Some(proc), name: name.to_owned(), extra: Vec::new() })
}

/// Runs `assist ARGS` as `engineer` while `approver` approves the request it makes.
/// Returns the output and the session id.
pub fn approved(engineer: &Cli, approver: &Cli, args: &[&str]) -> Result<(Output, String)> {
    let mut cmd = engineer.command();
    cmd.args(args);
    let run = std::thread::spawn(move || run_with_stdin(&mut cmd, ""));
    let id = approver.pending_request()?;
    approver.ok(&["approve", &id])?;
    let out = run.join().map_err(|_| anyhow::anyhow!("command thread panicked"))??;
    Ok((out, id))
}

/// A shell session held open (`sleep`) with extra capabilities, for `--session` commands.
pub struct Held {
    pub proc: Proc,
    pub id: String,
}

pub fn hold_session(engineer: &Cli, approver: &Cli, agent: &str, also: &[String]) -> Result<Held> {
    let mut args: Vec<String> =
        ["shell", agent, "--ticket", "INC-6", "--reason", "files"].map(String::from).to_vec();
    for cap in also {
        args.push("--also".into());
        args.push(cap.clone());
    }
    args.extend(["--", "sh", "-c", "echo held; sleep 600"].map(String::from));
    let mut proc = engineer.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let id = approver.pending_request()?;
    approver.ok(&["approve", &id])?;
    proc.stdout.wait_for("held")?;
    Ok(Held { proc, id })
}

/// The session's audit events, as JSON.
pub fn audit(relay: &TestRelay, session: &str) -> Result<Vec<serde_json::Value>> {
    let out = relay.admin(&["audit", "export", "--format", "jsonl", "--session", session])?;
    out.lines().map(|l| Ok(serde_json::from_str(l)?)).collect()
}

/// Events of one action.
pub fn events(relay: &TestRelay, session: &str, action: &str) -> Result<Vec<serde_json::Value>> {
    Ok(audit(relay, session)?.into_iter().filter(|e| e["action"] == action).collect())
}

/// SHA-256 of bytes, hex.
pub fn sha256(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref())
}

/// Deterministic pseudo-random bytes (not compressible, not all equal).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
