//! Many commands over one SSH connection through `assist ssh-proxy` (issue 17), as VS Code
//! Remote-SSH and `ssh -o ControlMaster` use it: each command's exit status goes to its
//! own SSH channel and the session goes on, until the SSH connection closes. With a live
//! session named by `ASSIST_SESSION`, `ssh` returns the remote command's exit status.

use super::ssh::{cast, new_session, session_row, ssh_config, text, tool};
use anyhow::Context;
use assist_tests::files_support::{events, hold_session};
use assist_tests::{Proc, TestRelay, WAIT, wait_until};
use expectrl::Expect;
use std::path::Path;
use std::process::Command;

/// `ssh` through the master's control socket.
fn muxed(cli: &assist_tests::Cli, config: &Path, socket: &Path) -> Command {
    let mut cmd = tool(cli, "ssh", config, &[]);
    cmd.arg("-S").arg(socket).args(["-o", "ControlMaster=no"]);
    cmd
}

#[test]
fn one_ssh_connection_runs_commands_in_a_row_at_once_and_a_pty_each_with_its_exit() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let config = ssh_config(&alice)?;
    let sockets = tempfile::tempdir()?;
    let socket = sockets.path().join("master");

    // The master: one SSH connection, one session, no command of its own.
    let mut master = tool(&alice, "ssh", &config, &new_session("shell"));
    master.args(["-M", "-N", "-o", "ControlPersist=no"]).arg("-S").arg(&socket).arg("erp-db01.assist");
    let mut master = Proc::spawn(master)?;
    master.stderr.wait_for("waiting for an approver of acme")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    wait_until("the control socket", || Ok(socket.exists()))?;

    // In a row: each status and stream its own.
    let out =
        muxed(&alice, &config, &socket).args(["erp-db01.assist", "echo one-$((1+1)); exit 3"]).output()?;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one-2\n", "{}", text(&out));
    let out =
        muxed(&alice, &config, &socket).args(["erp-db01.assist", "echo two-err >&2; exit 5"]).output()?;
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("two-err"), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));

    // At once: three commands running together, each waiting for its stdin; answered in
    // reverse order, each gets its own output, stderr and status.
    let mut running = Vec::new();
    for n in 11..=13 {
        let line = format!("echo started-{n}; read x; echo got-{n}-$x; echo err-{n} >&2; exit {n}");
        let mut cmd = muxed(&alice, &config, &socket);
        cmd.args(["erp-db01.assist", &line]);
        let mut p = Proc::spawn(cmd)?;
        p.stdout.wait_for(&format!("started-{n}"))?;
        running.push((n, p));
    }
    for (n, p) in running.iter_mut().rev() {
        p.write_line(&format!("x{n}"))?;
        drop(p.stdin.take());
        p.stdout.wait_for(&format!("got-{n}-x{n}"))?;
        p.stderr.wait_for(&format!("err-{n}"))?;
        assert_eq!(p.wait()?.code(), Some(*n), "{:?}", p.stderr.seen);
        for other in 11..=13 {
            if other != *n {
                let seen = format!("{:?}{:?}", p.stdout.seen, p.stderr.seen);
                assert!(!seen.contains(&format!("err-{other}")), "{seen}");
            }
        }
    }

    // An interactive PTY session over the same connection.
    let mut cmd = muxed(&alice, &config, &socket);
    cmd.args(["-tt", "erp-db01.assist"]).env("TERM", "xterm-256color");
    let mut p = expectrl::Session::spawn(cmd)?;
    p.set_expect_timeout(Some(WAIT));
    p.send_line("echo pty-$((6*7))")?;
    p.expect("pty-42").context("the PTY's output")?;
    p.send_line("exit 4")?;
    let status = p.get_process_mut().wait()?;
    assert!(matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 4)), "{status:?}");

    // The session is still there for the next command.
    let out = muxed(&alice, &config, &socket).args(["erp-db01.assist", "echo after-$((2*3))"]).output()?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "after-6\n");
    assert_eq!(session_row(&bob, &id)?["end_reason"], serde_json::Value::Null);
    let exits = events(&relay, &id, "command.exited")?;
    let mut codes: Vec<i64> = exits.iter().filter_map(|e| e["detail"]["code"].as_i64()).collect();
    codes.sort_unstable();
    assert_eq!(codes, [0, 3, 4, 5, 11, 12, 13], "{exits:?}");

    // The SSH connection closes: the session ends saying so, and its recording shows
    // every command.
    let out = muxed(&alice, &config, &socket).args(["-O", "exit", "erp-db01.assist"]).output()?;
    assert!(out.status.success(), "{}", text(&out));
    master.wait()?;
    wait_until("the session's end", || Ok(session_row(&bob, &id)?["end_reason"] == "ssh connection closed"))?;
    let recorded = cast(&relay, &id)?;
    for seen in ["one-2", "two-err", "got-13-x13", "err-11", "echo pty-$((6*7))", "pty-42", "after-6"] {
        assert!(recorded.contains(seen), "{seen} not in the recording: {recorded}");
    }
    Ok(())
}

#[test]
fn ssh_in_a_live_session_returns_the_commands_exit_status_and_leaves_the_session() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let config = ssh_config(&alice)?;
    let held = hold_session(&alice, &bob, "erp-db01", &[])?;
    let env = [("ASSIST_SESSION", held.id.as_str())];
    for code in [9, 0] {
        let line = format!("echo in-session-{code}; exit {code}");
        let out = tool(&alice, "ssh", &config, &env).args(["erp-db01.assist", &line]).output()?;
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("in-session-{code}\n"));
    }
    // The session held by another command goes on.
    assert_eq!(session_row(&bob, &held.id)?["end_reason"], serde_json::Value::Null);
    Ok(())
}
