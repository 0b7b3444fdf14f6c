//! `assist-agent run --show-sessions` in a real terminal: the customer at the machine sees
//! the engineer's shell as it happens, as labelled plain lines; the shell's escape
//! sequences never reach the agent's terminal.

use anyhow::Context;
use assist_tests::{TestRelay, WAIT, bin};
use expectrl::Expect;

#[test]
fn the_agent_shows_a_live_shell_on_its_own_terminal_without_its_escapes() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let mut agent = relay.agent("erp-db01", "acme", "approver")?;
    // The same enrolled agent, run again in a terminal of its own, showing sessions.
    agent.kill();
    let mut cmd = std::process::Command::new(bin("assist-agent"));
    cmd.arg("--data-dir").arg(agent.dir.path());
    cmd.args(["run", "--consent", "approver", "--show-sessions"]);
    let mut at_machine = expectrl::Session::spawn(cmd)?;
    at_machine.set_expect_timeout(Some(WAIT));
    at_machine.expect("connected to").context("the agent connects")?;

    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut cmd = alice.command();
    cmd.args(["shell", "erp-db01", "--ticket", "INC-64", "--reason", "show me"]);
    cmd.env("TERM", "xterm-256color");
    let mut eng = expectrl::Session::spawn(cmd)?;
    eng.set_expect_timeout(Some(WAIT));
    eng.expect("waiting for an approver").context("waiting")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    eng.expect("approved by bob").context("approved")?;
    at_machine
        .expect(format!("showing the terminal of session {id} (alice)").as_str())
        .context("announced")?;

    // The engineer clears the screen and prints: the machine shows the text, not the clear.
    eng.send_line("printf '\\033[2J\\033[H\\033]0;owned\\007cleared-%s\\n' $((6*7))")?;
    eng.expect("cleared-42").context("the engineer sees it")?;
    let seen =
        at_machine.expect(format!("│ {id} alice │ cleared-42").as_str()).context("the machine sees it")?;
    let before = seen.before();
    for bad in [&b"\x1b[2J"[..], b"\x1b[H", b"\x1b]0;"] {
        assert!(!before.windows(bad.len()).any(|w| w == bad), "{bad:?} reached the agent's terminal");
    }
    // What was typed shows too (the shell echoes it), escaped.
    assert!(
        String::from_utf8_lossy(before).contains("printf '\\033[2J"),
        "{}",
        String::from_utf8_lossy(before)
    );

    eng.send_line("exit")?;
    eng.expect("ended").context("the session ends")?;
    at_machine.expect(format!("session {id} ended").as_str()).context("the machine is told")?;
    Ok(())
}
