//! The consent-bypass suite: a modified engineer client and a rogue relay try to get past
//! the grant. Every attempt is refused (by the relay, and again by the agent), the relay's
//! refusals are audited, and nothing reaches the agent's processes: each attempted command
//! would create a marker file, and none appears.

use assist_proto::caps::{Capability, Priority};
use assist_proto::grant::SignedGrant;
use assist_proto::msg::{
    ChannelKind, ChannelOpen, ChannelReply, EngineerToRelay, RelayToAgent, RelayToEngineer,
};
use assist_tests::TestRelay;
use assist_tests::rogue::{RogueEngineer, RogueRelay, command, grant};
use std::path::Path;
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// A command that would leave `marker` behind if it ever ran.
fn touch(session: &str, marker: &Path) -> ChannelOpen {
    command(session, &["touch", &marker.display().to_string()])
}

fn refused(reply: &ChannelReply) -> &str {
    match reply {
        ChannelReply::Refused { reason, .. } => reason,
        ChannelReply::Accepted => panic!("a channel outside the grant was accepted"),
    }
}

/// Requests a session over the rogue connection and returns its id.
async fn request(e: &mut RogueEngineer, caps: Vec<Capability>, secs: Option<u64>) -> anyhow::Result<String> {
    let req = EngineerToRelay::RequestSession {
        agent: "erp-db01".into(),
        ticket: "INC-666".into(),
        priority: Priority::P2,
        reason: "testing the walls".into(),
        capabilities: caps,
        duration_secs: secs,
    };
    let mut reply = e.call(&req).await?;
    // News of earlier sessions (an expired grant) may come first.
    while let RelayToEngineer::GrantChanged { .. } = reply {
        reply = e.next().await?;
    }
    match reply {
        RelayToEngineer::SessionRequested { session, .. } => Ok(session.id.to_string()),
        other => anyhow::bail!("request refused: {other:?}"),
    }
}

async fn approved(e: &mut RogueEngineer) -> anyhow::Result<()> {
    match e.next().await? {
        RelayToEngineer::SessionApproved { .. } => Ok(()),
        other => anyhow::bail!("not approved: {other:?}"),
    }
}

/// A served capability besides the shell.
fn read_tmp() -> Capability {
    Capability::FilesRead { roots: vec!["/tmp".into()] }
}

fn refusals(relay: &TestRelay) -> anyhow::Result<usize> {
    let out = relay.admin(&["audit", "export", "--format", "jsonl"])?;
    Ok(out.lines().filter(|l| l.contains("\"channel.refused\"")).count())
}

#[test]
fn a_modified_engineer_client_gets_nothing_the_grant_does_not_cover() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    relay.add_user("mallory", "vendor", "engineer")?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let mallory = relay.login("mallory")?;
    let bob = relay.login("bob")?;
    let tmp = tempfile::tempdir()?;
    let marker = |n: &str| tmp.path().join(n);
    let rt = runtime();
    let mut e = rt.block_on(RogueEngineer::connect(&alice))?;
    let mut attempts = 0;

    // Granted only reading /tmp, out of shell + reading /tmp.
    let narrow = rt.block_on(request(&mut e, vec![Capability::Shell, read_tmp()], None))?;
    bob.ok(&["approve", &narrow, "--only", "files.read:/tmp"])?;
    rt.block_on(approved(&mut e))?;
    let (reply, ..) = rt.block_on(e.open(&touch(&narrow, &marker("not-granted"))))?;
    assert!(refused(&reply).contains("does not cover shell"), "{reply:?}");
    attempts += 1;

    // A stream kind only the agent may open.
    let stderr =
        ChannelOpen { session: narrow.as_str().into(), report_exit: false, channel: ChannelKind::Stderr };
    let (reply, ..) = rt.block_on(e.open(&stderr))?;
    refused(&reply);
    attempts += 1;

    // Someone else's session, and a session that does not exist.
    let mut m = rt.block_on(RogueEngineer::connect(&mallory))?;
    let full = rt.block_on(request(&mut e, vec![Capability::Shell], Some(2)))?;
    bob.ok(&["approve", &full])?;
    rt.block_on(approved(&mut e))?;
    let (reply, ..) = rt.block_on(m.open(&touch(&full, &marker("not-yours"))))?;
    assert!(refused(&reply).contains("is not yours"), "{reply:?}");
    let (reply, ..) = rt.block_on(m.open(&touch("s-000000000000", &marker("no-such-session"))))?;
    assert!(refused(&reply).contains("no live session"), "{reply:?}");
    attempts += 2;
    // Nor can mallory escalate or revoke in it.
    let esc = EngineerToRelay::Escalate {
        session: full.as_str().into(),
        add: vec![read_tmp()],
        duration_secs: None,
        reason: "x".into(),
    };
    assert!(matches!(rt.block_on(m.call(&esc))?, RelayToEngineer::Error { .. }));

    // An expired grant: the session asked for 2 s; the relay says when it ran out.
    loop {
        if let RelayToEngineer::GrantChanged { in_force: false, .. } = rt.block_on(e.next())? {
            break;
        }
    }
    let (reply, ..) = rt.block_on(e.open(&touch(&full, &marker("expired"))))?;
    assert!(refused(&reply).contains("grant expired"), "{reply:?}");
    attempts += 1;

    // Racing a revocation: channels keep opening while the shell is revoked. Whatever
    // was accepted before is stopped; nothing is accepted after.
    let racing = rt.block_on(request(&mut e, vec![Capability::Shell, read_tmp()], None))?;
    bob.ok(&["approve", &racing])?;
    rt.block_on(approved(&mut e))?;
    let e = std::sync::Arc::new(e);
    let pids = tmp.path().join("pids");
    std::fs::create_dir(&pids)?;
    let opener = {
        let e = e.clone();
        let (session, pids) = (racing.clone(), pids.clone());
        rt.spawn(async move {
            let mut held = Vec::new();
            for i in 0..200 {
                let script = format!("echo $$ > {}/{i}; exec sleep 600", pids.display());
                match e.open(&command(&session, &["sh", "-c", &script])).await {
                    Ok((ChannelReply::Accepted, send, recv)) => held.push((send, recv)),
                    Ok((ChannelReply::Refused { reason, .. }, ..)) => return (held.len(), Some(reason)),
                    // A channel still being opened when the revocation lands is reset with
                    // the others: it was never accepted. The next one must be refused.
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (held.len(), None)
        })
    };
    // Revoke once some channels run.
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_dir(&pids)?.count() < 3 {
        anyhow::ensure!(Instant::now() < deadline, "no channel ran before the revocation");
        std::thread::sleep(Duration::from_millis(10));
    }
    bob.ok(&["revoke", &racing, "--capability", "shell"])?;
    let revoked_at = Instant::now();
    let (accepted, stopped_by) = rt.block_on(opener)?;
    let reason = stopped_by.expect("opening stopped being accepted after the revocation");
    assert!(reason.contains("does not cover shell"), "{reason}");
    assert!(accepted > 0, "some channels ran before the revocation");
    // Everything that ran is gone within a second of the revocation.
    let deadline = revoked_at + Duration::from_secs(1);
    loop {
        let alive: Vec<String> = std::fs::read_dir(&pids)?
            .filter_map(|f| std::fs::read_to_string(f.ok()?.path()).ok())
            .filter(|pid| Path::new(&format!("/proc/{}", pid.trim())).exists())
            .collect();
        if alive.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes {alive:?} outlived the revocation by a second");
        std::thread::sleep(Duration::from_millis(20));
    }
    attempts += 1;

    for m in ["not-granted", "not-yours", "no-such-session", "expired"] {
        assert!(!marker(m).exists(), "a refused channel ran on the agent: {m}");
    }
    assert!(refusals(&relay)? >= attempts, "every refusal is audited");
    Ok(())
}

#[test]
fn the_agent_refuses_forged_replayed_and_expired_grants_even_from_its_relay() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _approver_mode = relay.agent("erp-db01", "acme", "approver")?;
    let mut prompt_mode = relay.agent("erp-db02", "acme", "prompt")?;
    let data = relay.data_dir();
    let addr = relay.addr.parse()?;
    let TestRelay { dir: _dir, proc, .. } = relay;
    drop(proc);
    let tmp = tempfile::tempdir()?;
    let marker = |n: &str| tmp.path().join(n);
    let rt = runtime();
    let rogue = {
        let _in_runtime = rt.enter();
        RogueRelay::start(&data, addr)?
    };
    let (mut a, mut b) = rt.block_on(async {
        let first = rogue.accept_agent("erp-db01", "acme").await?;
        let second = rogue.accept_agent("erp-db02", "acme").await?;
        anyhow::Ok((first, second))
    })?;
    // Which link is which depends on which agent reconnected first; a grant for the wrong
    // agent is refused either way, so try each grant on the link that names it.
    let shell = || vec![Capability::Shell];
    let sign = |g| SignedGrant::sign(&g, &rogue.grant_key);

    rt.block_on(async {
        // Positive control: a grant the agent holds as its own record opens a channel.
        let held = sign(grant("s-held", "erp-db01", "bob", shell(), 600));
        a.send(&RelayToAgent::Granted { grant: held.clone() }).await?;
        b.send(&RelayToAgent::Granted { grant: held.clone() }).await?;
        let mut link_of_01 = None;
        for (i, link) in [&a, &b].into_iter().enumerate() {
            if link.channel(touch("s-held", &marker(&format!("control-{i}"))), held.clone()).await?
                == ChannelReply::Accepted
            {
                link_of_01 = Some(i);
            }
        }
        let i = link_of_01.expect("the agent accepts a grant it holds");
        let (l01, l02) = if i == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };

        // Forged: signed by another key.
        let pkcs8 =
            aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        let other = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let forged = SignedGrant::sign(&grant("s-held", "erp-db01", "bob", shell(), 600), &other);
        let r = l01.channel(touch("s-held", &marker("forged")), forged).await?;
        assert!(refused(&r).contains("signature is not valid"), "{r:?}");
        // Replayed from another session, or for another agent.
        let replayed = sign(grant("s-other", "erp-db01", "bob", shell(), 600));
        let r = l01.channel(touch("s-held", &marker("replayed")), replayed).await?;
        assert!(refused(&r).contains("is for session s-other"), "{r:?}");
        let elsewhere = sign(grant("s-held", "erp-db02", "bob", shell(), 600));
        let r = l01.channel(touch("s-held", &marker("other-agent")), elsewhere).await?;
        assert!(refused(&r).contains("is for agent erp-db02"), "{r:?}");
        // Expired.
        let expired = sign(grant("s-held", "erp-db01", "bob", shell(), -1));
        let r = l01.channel(touch("s-held", &marker("expired")), expired).await?;
        assert!(refused(&r).contains("expired"), "{r:?}");
        // Validly signed, but never given to the agent as an approval.
        let unheld = sign(grant("s-unheld", "erp-db01", "bob", shell(), 600));
        let r = l01.channel(touch("s-unheld", &marker("unheld")), unheld).await?;
        assert!(refused(&r).contains("no record of an approval"), "{r:?}");
        // Wider than the record: the same session, shell and reading /tmp, never sent.
        let wider = sign(grant("s-held", "erp-db01", "bob", vec![Capability::Shell, read_tmp()], 600));
        let r = l01.channel(touch("s-held", &marker("wider")), wider).await?;
        refused(&r);

        // An agent that asks its own prompt accepts no approval its prompt did not give,
        // whoever signs it.
        for approver in ["bob", "prompt@erp-db02", "window:w-1"] {
            let claimed = sign(grant("s-p", "erp-db02", approver, shell(), 600));
            // Sent as an approval on the control stream (refused there), then used.
            l02.send(&RelayToAgent::Granted { grant: claimed.clone() }).await?;
            let r = l02.channel(touch("s-p", &marker(&format!("prompt-{approver}"))), claimed).await?;
            assert!(refused(&r).contains("no record of an approval"), "{approver}: {r:?}");
        }
        anyhow::Ok(())
    })?;
    // The prompt-mode agent refused each grant it was sent, and says why.
    prompt_mode.proc().stderr.wait_for("did not give")?;
    prompt_mode.proc().stderr.wait_for("cannot approve here")?;
    for m in [
        "forged",
        "replayed",
        "other-agent",
        "expired",
        "unheld",
        "wider",
        "prompt-bob",
        "prompt-prompt@erp-db02",
        "prompt-window:w-1",
    ] {
        assert!(!marker(m).exists(), "a refused grant ran a command: {m}");
    }
    Ok(())
}
