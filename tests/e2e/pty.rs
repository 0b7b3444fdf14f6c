//! The real `assist` binary in a real terminal, typing into a remote shell.

use anyhow::Context;
use assist_tests::{TestRelay, WAIT};
use expectrl::Expect;

#[test]
fn interactive_shell_in_a_pty_with_resize_and_ctrl_c() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;

    let mut cmd = alice.command();
    cmd.args(["shell", "erp-db01", "--ticket", "INC-7", "--priority", "P1", "--reason", "locked database"]);
    cmd.env("TERM", "xterm-256color");
    let mut p = expectrl::Session::spawn(cmd)?;
    p.set_expect_timeout(Some(WAIT));
    p.get_process_mut().set_window_size(100, 30)?;
    p.expect("waiting for an approver of acme").context("expecting waiting for an approver of acme")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    p.expect("approved by bob").context("expecting approved by bob")?;

    // The engineer's terminal size and type reached the remote PTY.
    p.send_line("stty size; echo \"term=$TERM\"; echo $((6*7))")?;
    p.expect("30 100").context("expecting 30 100")?;
    p.expect("term=xterm-256color").context("expecting term=xterm-256color")?;
    p.expect("42").context("expecting 42")?;

    // A resize of the local terminal follows (SIGWINCH → Resize → the remote PTY). The
    // resize travels on the control stream and the typing on the channel, so ask again
    // until the new size shows.
    p.get_process_mut().set_window_size(120, 40)?;
    p.set_expect_timeout(Some(std::time::Duration::from_secs(2)));
    let deadline = std::time::Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        // The marker is computed remotely, so the echo of the typed line does not match it.
        p.send_line(format!("stty size; echo probe-$(({n}+1000))"))?;
        let seen = p.expect(format!("probe-{}", n + 1000).as_str()).context("expecting the probe")?;
        if String::from_utf8_lossy(seen.before()).contains("40 120") {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the remote PTY never saw the new size");
    }
    p.set_expect_timeout(Some(WAIT));

    // The marker is printed by the foreground job itself, which then becomes `sleep`: the
    // Ctrl-C cannot land in the gap between the shell printing it and starting the job.
    p.send_line("sh -c 'echo started-$((2+3)); exec sleep 100'")?;
    p.expect("started-5").context("expecting started-5")?;
    p.send("\x03")?;
    // The terminal discards input queued when ^C arrives (no NOFLSH), and under load the
    // next line can arrive in the same read as the ^C: ask again until the shell answers.
    p.set_expect_timeout(Some(std::time::Duration::from_secs(2)));
    let deadline = std::time::Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        p.send_line(format!("echo after-$(({n}+2000))"))?;
        if p.expect(format!("after-{}", n + 2000).as_str()).is_ok() {
            break;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "the shell never came back after Ctrl-C");
    }
    p.set_expect_timeout(Some(WAIT));

    p.send_line("exit 5")?;
    p.expect("shell exited with status 5").context("expecting shell exited with status 5")?;
    let status = p.get_process_mut().wait()?;
    assert!(matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 5)), "{status:?}");
    Ok(())
}
