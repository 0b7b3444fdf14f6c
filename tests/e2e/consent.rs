//! A session from request to exit, with each source of consent.

use assist_tests::TestRelay;

const SHELL: &[&str] =
    &["shell", "erp-db01", "--ticket", "INC-1042", "--priority", "P2", "--reason", "month-end close fails"];

fn shell_args(cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = SHELL.iter().map(|s| s.to_string()).collect();
    v.push("--".into());
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

fn as_refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn approver_consent_runs_a_command_with_pipes_and_exit_code() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;

    let args = shell_args(&["sh", "-c", "read line; echo \"got $line\"; echo oops >&2; exit 3"]);
    let mut session = alice.spawn(&as_refs(&args))?;
    session.write_line("hello")?;
    session.stderr.wait_for("waiting for an approver of acme")?;
    let id = bob.pending_request()?;
    let requests = bob.ok(&["requests"])?;
    assert!(requests.contains("INC-1042") && requests.contains("alice@vendor"), "{requests}");
    bob.ok(&["approve", &id])?;

    let status = session.wait()?;
    assert_eq!(status.code(), Some(3), "remote exit code passes through");
    session.stdout.wait_for("got hello")?;
    session.stderr.wait_for("oops")?;

    let listed: serde_json::Value = serde_json::from_str(&alice.ok(&["sessions", "--json"])?)?;
    let s = &listed[0];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["state"], "closed");
    assert_eq!(s["approver"], "bob");
    assert_eq!(s["ticket"], "INC-1042");
    assert_eq!(s["end_reason"], "shell exited with status 3");
    assert!(s["started_at"].is_i64() && s["ended_at"].is_i64());
    Ok(())
}

#[test]
fn prompt_consent_yes_and_no() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let mut agent = relay.agent("erp-db01", "acme", "prompt")?;
    let alice = relay.login("alice")?;

    let args = shell_args(&["echo", "from-the-agent"]);
    let mut yes = alice.spawn(&as_refs(&args))?;
    yes.stderr.wait_for("the customer at erp-db01")?;
    agent.proc().stdout.wait_for("answer within")?;
    agent.proc().write_line("y")?;
    assert_eq!(yes.wait()?.code(), Some(0));
    yes.stdout.wait_for("from-the-agent")?;

    let mut no = alice.spawn(&as_refs(&args))?;
    agent.proc().stdout.wait_for("answer within")?;
    agent.proc().write_line("n")?;
    let status = no.wait()?;
    assert_ne!(status.code(), Some(0));
    let line = no.stderr.wait_for("denied by")?;
    assert!(line.contains("denied by prompt@erp-db01: declined at the agent"), "{line}");
    assert!(!no.stdout.seen.iter().any(|l| l.contains("from-the-agent")));
    Ok(())
}

#[test]
fn the_agent_says_each_event_once() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let mut agent = relay.agent("erp-db01", "acme", "prompt")?;
    let alice = relay.login("alice")?;
    let mut s = alice.spawn(&as_refs(&shell_args(&["echo", "once"])))?;
    agent.proc().stdout.wait_for("answer within")?;
    agent.proc().write_line("y")?;
    assert_eq!(s.wait()?.code(), Some(0));
    agent.proc().stdout.wait_for("ended")?;
    // Everything the agent wrote, to its end.
    agent.proc().child.kill()?;
    agent.proc().wait()?;
    let _ = agent.proc().stdout.wait_for("\0 the end");
    let _ = agent.proc().stderr.wait_for("\0 the end");
    let p = agent.proc();
    let all: Vec<&String> = p.stdout.seen.iter().chain(p.stderr.seen.iter()).collect();
    let count = |what: &[&str]| all.iter().filter(|l| what.iter().any(|w| l.contains(w))).count();
    assert_eq!(count(&["connected to"]), 1, "{all:#?}");
    assert_eq!(count(&["granted", "grant received"]), 1, "{all:#?}");
    assert_eq!(count(&["ended"]), 1, "{all:#?}");
    Ok(())
}

#[test]
fn unanswered_request_expires_and_is_denied() -> anyhow::Result<()> {
    let relay = TestRelay::start_with(&["--consent-timeout", "2s"])?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let mut s = alice.spawn(&as_refs(&shell_args(&["true"])))?;
    let status = s.wait()?;
    assert_ne!(status.code(), Some(0));
    s.stderr.wait_for("expired")?;
    let listed: serde_json::Value = serde_json::from_str(&alice.ok(&["sessions", "--json"])?)?;
    assert_eq!(listed[0]["state"], "expired");
    Ok(())
}
