//! The real `assist` binary in a real terminal, typing into a remote shell.

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
    p.expect("waiting for an approver of acme")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    p.expect("approved by bob")?;

    // The engineer's terminal size and type reached the remote PTY.
    p.send_line("stty size; echo \"term=$TERM\"; echo $((6*7))")?;
    p.expect("30 100")?;
    p.expect("term=xterm-256color")?;
    p.expect("42")?;

    // A resize of the local terminal follows (SIGWINCH → Resize → the remote PTY).
    p.get_process_mut().set_window_size(120, 40)?;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        p.send_line("stty size")?;
        if p.expect("40 120").is_ok() || std::time::Instant::now() > deadline {
            break;
        }
    }

    // Ctrl-C interrupts the remote foreground program, not the local client.
    p.send_line("sleep 100")?;
    p.send("\x03")?;
    p.send_line("echo after-$((1+1))")?;
    p.expect("after-2")?;

    p.send_line("exit 5")?;
    p.expect("shell exited with status 5")?;
    let status = p.get_process_mut().wait()?;
    assert!(matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 5)), "{status:?}");
    Ok(())
}
