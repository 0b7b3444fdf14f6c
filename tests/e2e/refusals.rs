//! What is refused is on the record: attempts by people who may not, forged and expired
//! tokens and certificates from another CA are audited, a flood of them is counted rather
//! than written row by row, and a refusal never says whose a session is.

use super::bad_input::{auth_with, connect, rt};
use anyhow::{Context, ensure};
use assist_certs::{AgentKey, Ca};
use assist_net::ClientIdentity;
use assist_net::{read_msg, write_msg};
use assist_proto::msg::{AgentToRelay, ChannelReply, EngineerToRelay, RelayToAgent, RelayToEngineer};
use assist_relay::auth::TokenKeys;
use assist_relay::datadir::DataDir;
use assist_tests::rogue::RogueEngineer;
use assist_tests::{Cli, TestRelay, wait_until};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The audit events of `action`, oldest first.
fn events(relay: &TestRelay, action: &str) -> anyhow::Result<Vec<Value>> {
    let v: Value = serde_json::from_str(&relay.admin(&["audit", "list", "--json"])?)?;
    let all = v.as_array().cloned().context("audit list --json is not an array")?;
    Ok(all.into_iter().filter(|e| e["action"] == action).collect())
}

/// How many refusals the events stand for.
fn total(events: &[Value]) -> u64 {
    events.iter().map(|e| e["detail"]["count"].as_u64().unwrap_or(0)).sum()
}

fn stderr_of(cli: &Cli, args: &[&str]) -> anyhow::Result<String> {
    let out = cli.run(args)?;
    ensure!(!out.status.success(), "assist {args:?} succeeded");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// acme's world, and globex (supported by othervendor) with its approver eve.
fn two_orgs(extra: &[&str]) -> anyhow::Result<TestRelay> {
    let relay = TestRelay::start_with(extra)?;
    relay.standard_world()?;
    relay.admin(&["org", "add", "othervendor"])?;
    relay.admin(&["org", "add", "globex", "--supported-by", "othervendor"])?;
    relay.add_user("eve", "globex", "approver")?;
    Ok(relay)
}

#[test]
fn another_orgs_approver_is_told_not_found_and_the_attempt_is_audited() -> anyhow::Result<()> {
    let relay = two_orgs(&[])?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (alice, bob, eve) = (relay.login("alice")?, relay.login("bob")?, relay.login("eve")?);
    let _shell = alice
        .spawn(&["shell", "erp-db01", "--ticket", "INC-1", "--reason", "refusals", "--", "sleep", "60"])?;
    let id = bob.pending_request()?;
    let ghost = "s-000000000000";

    // Whatever eve tries on acme's session, she is told what she is told for a session
    // that does not exist: nothing names acme.
    for verb in [&["approve"][..], &["deny", "--reason", "no"][..], &["end"][..]] {
        let real = stderr_of(&eve, &[verb, &[id.as_str()][..]].concat())?;
        let none = stderr_of(&eve, &[verb, &[ghost][..]].concat())?;
        assert_eq!(real.replace(&id, "ID"), none.replace(ghost, "ID"), "{verb:?}");
        assert!(!real.contains("acme"), "{verb:?}: {real}");
    }
    bob.ok(&["approve", &id])?;
    let real = stderr_of(&eve, &["end", &id])?;
    let none = stderr_of(&eve, &["end", ghost])?;
    assert_eq!(real.replace(&id, "ID"), none.replace(ghost, "ID"));
    assert!(real.contains("no live session"), "{real}");
    let real = stderr_of(&eve, &["revoke", &id, "--capability", "shell"])?;
    let none = stderr_of(&eve, &["revoke", ghost, "--capability", "shell"])?;
    assert_eq!(real.replace(&id, "ID"), none.replace(ghost, "ID"));

    // Each kind of attempt is on the record at once (the first of its kind in the window):
    // on acme's session, where there is one.
    let attempts = ["session.approve", "session.deny", "session.end", "grant.revoke"];
    let on_acme = |e: &Value, attempt: &str| {
        e["actor"] == "eve" && e["detail"]["attempt"] == attempt && e["session"] == id.as_str()
    };
    let mut seen = Vec::new();
    wait_until("eve's attempts in the audit log", || {
        seen = events(&relay, "access.refused")?;
        Ok(attempts.iter().all(|a| seen.iter().any(|e| on_acme(e, a))))
    })?;
    for e in seen.iter().filter(|e| e["session"] == id.as_str()) {
        assert_eq!(e["org"], "acme", "{e}");
        assert_eq!(e["detail"]["actor_org"], "globex", "{e}");
    }
    // The session went on untouched.
    let sessions = bob.ok(&["sessions"])?;
    assert!(sessions.contains(&id), "{sessions}");
    Ok(())
}

#[test]
fn forged_and_expired_tokens_and_foreign_certificates_are_audited() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let keys = DataDir::open(&relay.data_dir())?.token_keys()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let alice = ("alice".into(), "vendor".into(), assist_proto::caps::Role::Engineer);
    let (expired, _) = keys.issue(&alice.0, &alice.1, alice.2, now - 7200, Duration::from_secs(3600));
    let other = TokenKeys::from_pem(&TokenKeys::generate_pem(), keys.issuer().to_owned())?;
    let (forged, _) =
        other.issue(&alice.0, &alice.1, assist_proto::caps::Role::Admin, now, Duration::from_secs(60));
    let rt = rt();
    for token in [&expired, &forged] {
        let reply = rt.block_on(auth_with(&relay, token))?;
        assert!(matches!(reply, RelayToEngineer::Error { .. }), "{reply:?}");
    }

    let foreign = Ca::generate("mallory")?;
    let key = AgentKey::generate("erp-db01")?;
    let cert = foreign.sign_agent_csr(&key.csr_pem, "erp-db01", "acme")?;
    let identity = ClientIdentity {
        chain: assist_certs::certs_from_pem(&cert.cert_pem)?,
        key: assist_certs::key_from_pem(&key.key_pem)?,
    };
    // Whether the client sees the handshake fail or its first stream reset, it is refused.
    let _ = rt.block_on(async {
        let (_ep, conn) = connect(&relay, Some(identity)).await?;
        let _ = conn.open_bi().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        anyhow::Ok(())
    });

    wait_until("the refused tokens and certificate in the audit log", || {
        Ok(events(&relay, "login.token_refused")?.len() >= 2
            && !events(&relay, "connection.refused")?.is_empty())
    })?;
    let tokens = events(&relay, "login.token_refused")?;
    let expired =
        tokens.iter().find(|e| e["detail"]["reason"] == "expired").context("no expired token event")?;
    assert_eq!(expired["actor"], "alice", "an expired token is still ours: it says whose it was");
    assert!(expired["detail"]["remote"].as_str().is_some_and(|r| r.starts_with("127.0.0.1:")));
    let forged =
        tokens.iter().find(|e| e["detail"]["reason"] != "expired").context("no forged token event")?;
    assert_eq!(forged["actor"], "relay", "a forged token names nobody");
    assert!(forged["detail"]["reason"].as_str().is_some_and(|r| r.contains("signature")), "{forged}");
    let handshake = &events(&relay, "connection.refused")?[0];
    assert_eq!(handshake["target"], "127.0.0.1");
    assert!(handshake["detail"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{handshake}");
    Ok(())
}

#[test]
fn a_flood_of_refusals_is_counted_not_written_row_by_row() -> anyhow::Result<()> {
    let relay = two_orgs(&["--refusal-window", "1s"])?;
    let eve = relay.login("eve")?;
    let rt = rt();
    let started = Instant::now();
    rt.block_on(async {
        let mut rogue = RogueEngineer::connect(&eve).await?;
        for _ in 0..200 {
            let reply =
                rogue.call(&EngineerToRelay::End { session: "s-000000000000".into(), reason: None }).await?;
            ensure!(matches!(reply, RelayToEngineer::Error { .. }), "{reply:?}");
        }
        // 200 guessed join tokens.
        let key = AgentKey::generate("guess")?;
        for i in 0..200 {
            let (_ep, conn) = connect(&relay, None).await?;
            let (mut send, mut recv) = conn.open_bi().await?;
            let enroll = AgentToRelay::Enroll {
                token: format!("guess-{i}"),
                name: "guess".into(),
                csr_pem: key.csr_pem.clone(),
            };
            write_msg(&mut send, &enroll).await?;
            let reply: Option<RelayToAgent> = read_msg(&mut recv).await?;
            ensure!(matches!(reply, Some(RelayToAgent::Error { .. })), "{reply:?}");
            conn.close(0u32.into(), b"");
        }
        // And 200 channels on it.
        for _ in 0..200 {
            let (reply, ..) = rogue.open(&assist_tests::rogue::command("s-000000000000", &["true"])).await?;
            ensure!(matches!(reply, ChannelReply::Refused { .. }), "{reply:?}");
        }
        anyhow::Ok(())
    })?;
    let flood = started.elapsed();
    // At most two events per one-second window the flood lasted (the first of the window
    // and the count of its repeats), plus the window still open when it ended.
    let bound = 2 * (flood.as_secs() as usize + 2);
    for action in ["access.refused", "channel.refused", "agent.enrollment_refused"] {
        let mut rows = Vec::new();
        wait_until(&format!("all 200 refusals counted as {action}"), || {
            rows = events(&relay, action)?;
            Ok(total(&rows) == 200)
        })?;
        assert!(rows.len() <= bound, "{} {action} rows for a flood of {flood:?}", rows.len());
        assert!(rows.iter().any(|e| e["detail"]["repeats"].as_u64().unwrap_or(0) > 1), "{rows:#?}");
    }
    Ok(())
}

#[test]
fn a_revoked_agent_reconnecting_in_a_loop_is_counted() -> anyhow::Result<()> {
    let relay = TestRelay::start_with(&["--refusal-window", "1s"])?;
    relay.standard_world()?;
    let mut agent = relay.agent("erp-db01", "acme", "approver")?;
    relay.admin(&["agent", "revoke", "erp-db01"])?;
    agent.proc().wait()?;
    let read = |name: &str| std::fs::read_to_string(agent.dir.path().join(name));
    let (cert, key) = (read("agent.pem")?, read("agent.key")?);
    let rt = rt();
    let started = Instant::now();
    rt.block_on(async {
        for _ in 0..200 {
            let identity = ClientIdentity {
                chain: assist_certs::certs_from_pem(&cert)?,
                key: assist_certs::key_from_pem(&key)?,
            };
            let (_ep, conn) = connect(&relay, Some(identity)).await?;
            // The relay closes it at once; the next attempt follows.
            conn.closed().await;
        }
        anyhow::Ok(())
    })?;
    let flood = started.elapsed();
    let mut rows = Vec::new();
    wait_until("the reconnects counted as agent.refused", || {
        rows = events(&relay, "agent.refused")?;
        Ok(total(&rows) >= 200)
    })?;
    let bound = 2 * (flood.as_secs() as usize + 3);
    assert!(rows.len() <= bound, "{} rows for a flood of {flood:?}", rows.len());
    Ok(())
}

#[test]
fn an_agent_answering_another_agents_request_is_told_not_found_and_audited() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let mut other = relay.agent("rogue-01", "acme", "prompt")?;
    other.kill();
    let read = |name: &str| std::fs::read_to_string(other.dir.path().join(name));
    let (cert, key) = (read("agent.pem")?, read("agent.key")?);
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let _shell = alice.spawn(&["shell", "erp-db01", "--ticket", "INC-2", "--reason", "r", "--", "true"])?;
    let id = bob.pending_request()?;

    let rt = rt();
    let message = rt.block_on(async {
        let identity = ClientIdentity {
            chain: assist_certs::certs_from_pem(&cert)?,
            key: assist_certs::key_from_pem(&key)?,
        };
        let (_ep, conn) = connect(&relay, Some(identity)).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        let hello = AgentToRelay::Hello {
            consent: assist_proto::caps::ConsentMode::Prompt,
            version: "x".into(),
            scripts: None,
            desktop: None,
            cluster: false,
        };
        write_msg(&mut send, &hello).await?;
        let welcome: Option<RelayToAgent> = read_msg(&mut recv).await?;
        ensure!(matches!(welcome, Some(RelayToAgent::Welcome { .. })), "{welcome:?}");
        let answer = AgentToRelay::ConsentAnswer {
            session: id.as_str().into(),
            approve: true,
            reason: None,
            capabilities: None,
        };
        write_msg(&mut send, &answer).await?;
        loop {
            match read_msg::<RelayToAgent, _>(&mut recv).await? {
                Some(RelayToAgent::Error { message, .. }) => return Ok(message),
                Some(_) => continue,
                None => anyhow::bail!("no answer"),
            }
        }
    })?;
    assert_eq!(message, format!("no pending request {id}"));
    let mut seen = Vec::new();
    wait_until("the agent's attempt in the audit log", || {
        seen = events(&relay, "access.refused")?;
        Ok(seen.iter().any(|e| e["actor"] == "agent:rogue-01" && e["session"] == id.as_str()))
    })?;
    assert!(bob.ok(&["requests", "--json"])?.contains(&id), "still pending");
    Ok(())
}
