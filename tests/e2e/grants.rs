//! Partial and timed grants, escalation, revocation (and its one-second bound), the kill
//! key, and maintenance windows, through the real binaries.

use assist_tests::{Cli, TestRelay, wait_until};
use std::path::Path;
use std::time::{Duration, Instant};

/// `assist shell erp-db01 --ticket ... EXTRA -- CMD...`
fn shell(extra: &[&str], cmd: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        ["shell", "erp-db01", "--ticket", "INC-77", "--reason", "invoice export"].map(String::from).to_vec();
    v.extend(extra.iter().map(|s| s.to_string()));
    v.push("--".into());
    v.extend(cmd.iter().map(|s| s.to_string()));
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The session `id` as `assist sessions --json` shows it to `cli`.
fn session(cli: &Cli, id: &str) -> anyhow::Result<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["sessions", "--json"])?)?;
    v.as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == id))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no session {id} in {v}"))
}

/// The id of `cli`'s newest session.
fn session_id(cli: &Cli) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(&cli.ok(&["sessions", "--json"])?)?;
    v[0]["id"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no session in {v}"))
}

/// Whether the process whose id is in `pidfile` is still alive.
fn alive(pidfile: &Path) -> bool {
    let Ok(pid) = std::fs::read_to_string(pidfile) else { return false };
    Path::new(&format!("/proc/{}", pid.trim())).exists()
}

fn audit_actions(relay: &TestRelay, session: &str) -> anyhow::Result<Vec<String>> {
    let out = relay.admin(&["audit", "export", "--format", "jsonl", "--session", session])?;
    Ok(out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .map(|v| v["action"].as_str().unwrap_or("").to_owned())
        })
        .collect::<Result<_, _>>()?)
}

#[test]
fn approvers_grant_less_than_asked_and_escalation_adds_without_reconnecting() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;

    let args = shell(
        &["--also", "files.read:/var/log/erp", "--for", "30m"],
        &["sh", "-c", "echo started; sleep 600"],
    );
    let mut s = alice.spawn(&refs(&args))?;
    let id = bob.pending_request()?;
    let asked = bob.ok(&["requests"])?;
    assert!(asked.contains("shell,files.read:/var/log/erp") && asked.contains("30m"), "{asked}");
    // More than asked, or for longer, is refused and changes nothing.
    let wider = bob.run(&["approve", &id, "--only", "files.read:/var"])?;
    assert!(!wider.status.success());
    let said = String::from_utf8_lossy(&wider.stderr);
    assert!(said.contains("files.read:/var is not inside what was asked"), "{said}");
    let longer = bob.run(&["approve", &id, "--for", "2h"])?;
    assert!(String::from_utf8_lossy(&longer.stderr).contains("more than the 30m asked for"));
    bob.ok(&["approve", &id, "--only", "shell", "--for", "10m", "--note", "logs later"])?;
    let line = s.stderr.wait_for("approved by bob")?;
    assert!(
        line.contains("shell for") && line.contains("asked for shell, files.read:/var/log/erp"),
        "{line}"
    );
    s.stdout.wait_for("started")?;
    let row = session(&alice, &id)?;
    assert_eq!(row["granted"], serde_json::json!([{ "kind": "shell" }]));
    let left = row["grant_expires_at"].as_i64().unwrap() - row["decided_at"].as_i64().unwrap();
    assert!((599_000..=600_000).contains(&left), "granted for {left} ms");

    // Escalation from another terminal: the approver sees it as a request in the same session.
    let mut esc = alice.spawn(&[
        "escalate",
        &id,
        "--add",
        "files.read:/var/log/erp",
        "--reason",
        "need the export log",
    ])?;
    esc.stderr.wait_for("waiting for an approver of acme")?;
    let more = bob.ok(&["requests"])?;
    assert!(more.contains(&id) && more.contains("MORE: +files.read:/var/log/erp"), "{more}");
    bob.ok(&["approve", &id])?;
    assert_eq!(esc.wait()?.code(), Some(0));
    esc.stderr.wait_for("approved by bob")?;
    // The live shell is told, and keeps running.
    s.stderr.wait_for("bob granted files.read:/var/log/erp")?;
    assert!(s.child.try_wait()?.is_none(), "the shell survives an escalation");
    let row = session(&alice, &id)?;
    assert_eq!(row["state"], "active");
    assert_eq!(row["granted"].as_array().map(Vec::len), Some(2), "{row}");

    // A denied escalation changes nothing.
    let mut esc = alice.spawn(&["escalate", &id, "--add", "files.read:/tmp", "--reason", "read a query"])?;
    esc.stderr.wait_for("waiting for")?;
    bob.ok(&["deny", &id, "--reason", "not needed"])?;
    assert_eq!(esc.wait()?.code(), Some(2));
    esc.stderr.wait_for("denied by bob: not needed")?;
    assert_eq!(session(&alice, &id)?["granted"].as_array().map(Vec::len), Some(2));

    let actions = audit_actions(&relay, &id)?;
    for a in
        ["session.approved", "session.escalation_requested", "session.escalated", "session.escalation_denied"]
    {
        assert!(actions.iter().any(|x| x == a), "{a} missing from {actions:?}");
    }
    Ok(())
}

#[test]
fn revoking_the_shell_stops_it_within_a_second_at_both_ends_and_the_session_goes_on() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let tmp = tempfile::tempdir()?;
    let dir = std::fs::canonicalize(tmp.path())?;
    std::fs::write(dir.join("export.log"), b"rows: 12\n")?;
    let pidfile = dir.join("pid");
    let script = format!("echo $$ > {}; echo running; exec sleep 600", pidfile.display());
    let read = format!("files.read:{}", dir.display());
    let remote = format!("erp-db01:{}", dir.display());

    let args = shell(&["--also", &read], &["sh", "-c", &script]);
    let mut s = alice.spawn(&refs(&args))?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    s.stdout.wait_for("running")?;
    wait_until("the remote process", || Ok(alive(&pidfile)))?;

    let asked = Instant::now();
    let out = bob.ok(&["revoke", &id, "--capability", "shell", "--reason", "done with the shell"]);
    let answered = Instant::now();
    out?;
    // The bound: from the relay's answer to the agent's process being gone, and the
    // engineer's shell told and ended.
    wait_until("the agent to kill the process", || Ok(!alive(&pidfile)))?;
    let agent_side = answered.elapsed();
    let status = s.wait()?;
    let engineer_side = answered.elapsed();
    eprintln!(
        "revocation: command {:?}, then agent process gone after {agent_side:?}, engineer's shell ended after {engineer_side:?}",
        answered - asked
    );
    assert!(agent_side < Duration::from_secs(1), "agent process still alive {agent_side:?} after revocation");
    assert!(
        engineer_side < Duration::from_secs(1),
        "engineer's shell still open {engineer_side:?} after revocation"
    );
    assert_ne!(status.code(), Some(0));
    s.stderr.wait_for("shell revoked by bob: done with the shell")?;
    // Said as what happened, not as a failure, and the session is not over.
    let last = s.stderr.wait_for("the shell capability was revoked; ")?;
    assert!(last.contains(&format!("session {id} stays open with {read}")), "{last}");

    // Losing the shell did not end the session: the shell's command left it, and what else
    // was granted still works from other commands.
    assert_eq!(session(&bob, &id)?["state"], "active");
    let listed = alice.ok(&["ls", &remote, "--session", &id])?;
    assert!(listed.contains("export.log"), "{listed}");
    // ... and it can still be extended: the time asked for is added to what was left,
    // within what the relay grants at most (4 h).
    let before = session(&bob, &id)?["grant_expires_at"].as_i64().unwrap();
    let over = alice.run(&["escalate", &id, "--extend", "4h", "--reason", "all day"])?;
    let over = String::from_utf8_lossy(&over.stderr);
    assert!(over.contains("would pass the 4h this relay grants at most"), "{over}");
    let mut esc = alice.spawn(&["escalate", &id, "--extend", "10m", "--reason", "one more look"])?;
    esc.stderr.wait_for("waiting for an approver of acme")?;
    bob.ok(&["approve", &id])?;
    assert_eq!(esc.wait()?.code(), Some(0));
    let after = session(&bob, &id)?["grant_expires_at"].as_i64().unwrap();
    assert_eq!(after - before, 600_000, "extended by exactly 10m");
    assert_eq!(session(&bob, &id)?["state"], "active");

    let actions = audit_actions(&relay, &id)?;
    assert!(actions.iter().any(|a| a == "grant.revoked"), "{actions:?}");
    assert!(!actions.iter().any(|a| a == "session.ended"), "{actions:?}");
    // Revoking something not held is refused.
    let again = bob.run(&["revoke", &id, "--capability", "files.write"])?;
    assert!(!again.status.success());
    // Ending it is still up to people.
    bob.ok(&["end", &id, "--reason", "done"])?;
    assert_eq!(session(&bob, &id)?["state"], "closed");
    Ok(())
}

#[test]
fn an_expired_grant_closes_the_shell_and_an_extension_keeps_it() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;

    let tmp = tempfile::tempdir()?;
    let dir = std::fs::canonicalize(tmp.path())?;
    std::fs::write(dir.join("export.log"), b"rows: 12\n")?;
    let remote = format!("erp-db01:{}", dir.display());

    // Two sessions at once, so that their grants run out in the same seconds (the relay's
    // side of both, and the lapse of a session nobody extends, are proven without waiting
    // by the broker's unit tests: `expiry_closes_channels_and_an_extension_keeps_them`,
    // `a_detached_session_lapses_unless_its_grant_is_extended`).
    // Expiry: the grant lasts 3 s; the engineer is warned, then told, and the shell stops.
    let read = format!("files.read:{}", dir.display());
    let mut s = alice.spawn(&refs(&shell(&["--for", "3s", "--also", &read], &["sleep", "600"])))?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    // Extension: asked and approved before the 4 s run out, the shell outlives them.
    let mut kept = alice.spawn(&refs(&shell(&["--for", "4s"], &["sh", "-c", "sleep 7; echo still-here"])))?;
    let kept_id = bob.pending_request()?;
    bob.ok(&["approve", &kept_id])?;
    let esc = alice.spawn(&["escalate", &kept_id, "--extend", "1m", "--reason", "the export is slow"])?;
    let _ = esc;
    wait_until("the extension request", || Ok(bob.ok(&["requests"])?.contains("MORE: +time")))?;
    bob.ok(&["approve", &kept_id])?;

    s.stderr.wait_for("expires in")?;
    s.stderr.wait_for("the grant expired")?;
    assert_ne!(s.wait()?.code(), Some(0));
    s.stderr.wait_for(&format!("the grant is no longer in force; session {id} stays open"))?;
    wait_until("grant.expired in the audit log", || {
        Ok(audit_actions(&relay, &id)?.iter().any(|a| a == "grant.expired"))
    })?;
    // The session outlives its grant, so the extension the engineer was told to ask for
    // works, and what it grants is usable.
    let expired = alice.run(&["ls", &remote, "--session", &id])?;
    assert!(String::from_utf8_lossy(&expired.stderr).contains("expired"), "{expired:?}");
    let mut esc = alice.spawn(&["escalate", &id, "--extend", "1m", "--reason", "the export is slow"])?;
    esc.stderr.wait_for("waiting for an approver of acme")?;
    bob.ok(&["approve", &id])?;
    assert_eq!(esc.wait()?.code(), Some(0));
    assert!(alice.ok(&["ls", &remote, "--session", &id])?.contains("export.log"));

    kept.stdout.wait_for("still-here")?;
    assert_eq!(kept.wait()?.code(), Some(0));
    Ok(())
}

#[test]
fn the_prompt_grants_a_subset_and_the_kill_key_ends_the_session() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let mut agent = relay.agent("erp-db01", "acme", "prompt")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;

    let mut s = alice
        .spawn(&refs(&shell(&["--also", "files.read:/tmp"], &["sh", "-c", "echo running; sleep 600"])))?;
    agent.proc().stdout.wait_for("2. files.read:/tmp")?;
    agent.proc().stdout.wait_for("answer within")?;
    // Only the customer can answer: approvers are not shown it, and cannot approve it.
    assert_eq!(bob.ok(&["requests", "--json"])?.trim(), "[]");
    let asked = session_id(&alice)?;
    let approve = bob.run(&["approve", &asked])?;
    assert!(!approve.status.success());
    let err = String::from_utf8_lossy(&approve.stderr);
    assert!(err.contains("answered by the customer at erp-db01's own prompt"), "{err}");
    agent.proc().write_line("7")?;
    agent.proc().stdout.wait_for("there is no capability 7")?;
    agent.proc().write_line("1")?;
    s.stderr.wait_for("approved by prompt@erp-db01: shell for")?;
    s.stdout.wait_for("running")?;
    agent.proc().stdout.wait_for("type k and Enter")?;

    // An escalation is asked at the same prompt, and answered there.
    let id = session_id(&alice)?;
    let mut esc =
        alice.spawn(&["escalate", &id, "--add", "files.read:/tmp", "--reason", "read the query"])?;
    agent.proc().stdout.wait_for("asks for MORE in live session")?;
    agent.proc().stdout.wait_for("answer within")?;
    assert_eq!(bob.ok(&["requests", "--json"])?.trim(), "[]");
    agent.proc().write_line("y")?;
    assert_eq!(esc.wait()?.code(), Some(0));
    s.stderr.wait_for("prompt@erp-db01 granted files.read:/tmp")?;

    agent.proc().write_line("k")?;
    assert_ne!(s.wait()?.code(), Some(0));
    s.stderr.wait_for("ended by customer@erp-db01: kill key pressed on the agent")?;
    agent.proc().stdout.wait_for("kill key: ended 1 live session")?;
    Ok(())
}

#[test]
fn maintenance_windows_pre_approve_only_what_they_name() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    relay.add_user("carol", "vendor", "engineer")?;
    let _agent = relay.agent("erp-db01", "acme", "window")?;
    // Bad windows are refused and change nothing.
    let bad = relay.admin(&[
        "window",
        "add",
        "--org",
        "acme",
        "--schedule",
        "0 22 * *",
        "--duration",
        "2h",
        "--capability",
        "shell",
        "--engineer",
        "alice",
    ]);
    assert!(bad.is_err());
    let id = relay.admin(&[
        "window",
        "add",
        "--org",
        "acme",
        "--agent",
        "erp-db01",
        "--schedule",
        "* * * * *",
        "--duration",
        "1h",
        "--capability",
        "shell",
        "--engineer",
        "alice",
        "--note",
        "month-end close",
    ])?;
    let window = id.trim();
    assert!(relay.admin(&["window", "list"])?.contains(window));

    // Inside the window: approved by it, with nobody asked.
    let alice = relay.login("alice")?;
    let out = alice.run(&refs(&shell(&[], &["echo", "unattended"])))?;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("unattended"));
    let row: serde_json::Value = serde_json::from_str(&alice.ok(&["sessions", "--json"])?)?;
    assert_eq!(row[0]["approver"], format!("window:{window}"));

    // Outside what the window names (a capability, an engineer): an approver must answer.
    let bob = relay.login("bob")?;
    let mut more = alice.spawn(&refs(&shell(&["--also", "files.read:/tmp"], &["echo", "x"])))?;
    more.stderr.wait_for("no maintenance window is open for this request")?;
    let carol = relay.login("carol")?;
    let mut other = carol.spawn(&refs(&shell(&[], &["echo", "x"])))?;
    other.stderr.wait_for("waiting for an approver of acme")?;
    let pending = bob.ok(&["requests", "--json"])?;
    assert_eq!(serde_json::from_str::<serde_json::Value>(&pending)?.as_array().map(Vec::len), Some(2));

    // Removed: the next request waits for an approver too.
    relay.admin(&["window", "remove", window])?;
    let mut after = alice.spawn(&refs(&shell(&[], &["echo", "x"])))?;
    after.stderr.wait_for("no maintenance window is open")?;
    Ok(())
}

#[test]
fn the_relay_bounds_how_long_a_grant_may_be_asked_for() -> anyhow::Result<()> {
    let relay = TestRelay::start_with(&["--grant-max", "10m", "--grant-default", "5m"])?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let out = alice.run(&refs(&shell(&["--for", "1h"], &["true"])))?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1h is longer than this relay grants (at most 10m)"), "{err}");
    let bob = relay.login("bob")?;
    let mut s = alice.spawn(&refs(&shell(&[], &["sleep", "600"])))?;
    let id = bob.pending_request()?;
    assert_eq!(session(&bob, &id)?["duration_secs"], 300, "the relay's default applies");
    bob.ok(&["deny", &id, "--reason", "not now"])?;
    assert_ne!(s.wait()?.code(), Some(0));
    Ok(())
}

#[test]
fn capabilities_the_agent_cannot_serve_are_refused_before_anything_is_stored_or_asked() -> anyhow::Result<()>
{
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    // A desktop and its clipboard are served, but not by an agent without a display:
    // refused clearly, and before anyone is asked.
    for cap in ["desktop.view", "desktop.control", "clipboard"] {
        let out = alice.run(&refs(&shell(&["--also", cap], &["echo", "x"])))?;
        assert_eq!(out.status.code(), Some(1), "{cap}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("agent erp-db01 has no desktop to show"), "{cap}: {err}");
        assert!(err.contains("nobody was asked"), "{cap}: {err}");
    }
    assert_eq!(alice.ok(&["sessions", "--json"])?.trim(), "[]", "no session was stored");
    assert_eq!(bob.ok(&["requests", "--json"])?.trim(), "[]", "nobody was asked");

    // In a live session, an escalation asking for one is refused the same way, and the
    // session keeps what it had with nothing pending.
    let mut s = alice.spawn(&refs(&shell(&[], &["sleep", "600"])))?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    s.stderr.wait_for("approved by bob")?;
    let esc = alice.run(&["escalate", &id, "--add", "clipboard", "--reason", "paste the config"])?;
    assert_eq!(esc.status.code(), Some(1));
    let err = String::from_utf8_lossy(&esc.stderr);
    assert!(err.contains("agent erp-db01 has no desktop to show"), "{err}");
    assert_eq!(bob.ok(&["requests", "--json"])?.trim(), "[]", "nobody was asked");
    assert_eq!(session(&alice, &id)?["granted"].as_array().map(Vec::len), Some(1));

    let audit = relay.admin(&["audit", "export", "--format", "jsonl"])?;
    let actions: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .map(|v| v["action"].as_str().unwrap_or("").to_owned())
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(actions.iter().filter(|a| *a == "session.requested").count(), 1, "{actions:?}");
    assert!(!actions.iter().any(|a| a == "session.escalation_requested"), "{actions:?}");
    Ok(())
}
