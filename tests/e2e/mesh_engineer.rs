//! Several relays (issue 18): an engineer's own follow-up commands reach the session's
//! relay whichever relay they land on. Two relays from one cluster bundle on one
//! PostgreSQL database; the agent is connected to both. Alice asks for a shell on relay 2
//! (which holds the session); then, with her CLI pointed at relay 1 (as behind one DNS
//! name), `escalate`, `cp --session`, `forward --session` and an approver's `watch` each
//! land on relay 1, are told the session is relay 2's and carry on there: recorded once,
//! by relay 2. A raw `detach` and channel on relay 1 are answered with the holder's name
//! and address. A forged token is refused before anything is said; a holder that is gone
//! gives a clear error and changes nothing; a session open nowhere is "no live session"
//! as on one relay; a login revoked on the database is refused by every relay. A second
//! test: an approver on relay 1's console who opens the live view of relay 2's session is
//! told which relay holds it.

use assist_proto::ids::SessionId;
use assist_proto::msg::{ChannelReply, EngineerToRelay, RelayToEngineer};
use assist_tests::browser::Browser;
use assist_tests::files_support::{events, hold_session, stderr};
use assist_tests::rogue::{RogueEngineer, command};
use assist_tests::{Cli, Proc, TestRelay, WAIT, wait_until};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn start(bundle: &Path, name: &str, db: &assist_testpg::Database) -> anyhow::Result<TestRelay> {
    let env = vec![("ASSIST_DATABASE".to_owned(), db.url().to_owned())];
    let bundle = bundle.to_str().expect("utf-8 path");
    let dir = tempfile::tempdir()?;
    TestRelay::start_with_env(dir, "127.0.0.1:0", &["--cluster-bundle", bundle, "--relay-name", name], env)
}

fn psql(db: &assist_testpg::Database, sql: &str) -> anyhow::Result<String> {
    Ok(assist_testpg::server().psql(db.name(), sql).map_err(anyhow::Error::msg)?.trim().to_owned())
}

/// The same login (token, CA pin) as `cli`'s, with the CLI pointed at `relay`: the
/// engineer's next command landing on another relay of the cluster.
fn pointed_at(cli: &Cli, relay: &TestRelay) -> anyhow::Result<Cli> {
    let dir = tempfile::tempdir()?;
    let mut login: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cli.dir.path().join("login.json"))?)?;
    login["relay"] = relay.addr.clone().into();
    write_private(&dir.path().join("login.json"), &login.to_string())?;
    Ok(Cli { dir, relay: relay.addr.clone() })
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// A TCP echo server on 127.0.0.1 (a thread per connection), for as long as the test runs.
fn echo_server() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let (mut r, mut w) = (&tcp, &tcp);
                let _ = std::io::copy(&mut r, &mut w);
                let _ = tcp.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    Ok(addr.to_string())
}

/// Waits for `assist forward`'s "forwarding 127.0.0.1:PORT -> ..." line; returns the port.
fn local_port(proc: &mut Proc) -> anyhow::Result<u16> {
    let line = proc.stderr.wait_for("forwarding 127.0.0.1:")?;
    let port = line.trim_start_matches("forwarding 127.0.0.1:").split(' ').next().unwrap_or("");
    Ok(port.parse()?)
}

/// The note the CLI gives when it goes on to the relay holding the session.
fn went_on(id: &str, holder: &TestRelay) -> String {
    format!("session {id} is held by relay r2 ({}); continuing there", holder.addr)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn an_engineers_commands_on_relay_one_reach_the_session_relay_two_holds() -> anyhow::Result<()> {
    let db = assist_testpg::database();
    let keys = tempfile::tempdir()?;
    let bundle = super::cluster::new_bundle(keys.path())?;
    let r1 = start(&bundle, "r1", &db)?;
    let mut r2 = Some(start(&bundle, "r2", &db)?);
    let holder = r2.as_ref().expect("relay 2");
    r1.standard_world()?;
    let _agent = r1.agent("erp-db01", "acme", "approver")?;
    // Alice logs in on relay 2.
    let (alice2, bob2) = (holder.login("alice")?, holder.login("bob")?);
    wait_until("relay 2 to reach the agent", || {
        let agents: serde_json::Value = serde_json::from_str(&alice2.ok(&["agents", "--json"])?)?;
        Ok(agents.as_array().is_some_and(|a| a.iter().any(|x| x["online"] == true)))
    })?;

    let files = tempfile::tempdir()?;
    let remote = std::fs::canonicalize(files.path())?;
    std::fs::write(remote.join("app.log"), b"a log line from erp-db01\n")?;
    let echo = echo_server()?;

    // She has a shell approved there: relay 2 holds the session.
    let held = hold_session(&alice2, &bob2, "erp-db01", &[format!("forward:{echo}")])?;
    let id = held.id.clone();
    assert_eq!(psql(&db, &format!("SELECT relay FROM sessions WHERE id = '{id}'"))?, "r2");

    // Her next commands land on relay 1, with the token relay 2 issued.
    let alice1 = pointed_at(&alice2, &r1)?;
    let listed = alice1.ok(&["sessions", "--json"])?;
    assert!(listed.contains(&id), "relay 1 takes relay 2's token: {listed}");

    // `escalate`: relay 1 names relay 2, the CLI asks there and waits for the answer.
    let read = format!("files.read:{}", remote.display());
    let mut esc = alice1.spawn(&["escalate", &id, "--add", &read, "--reason", "the log"])?;
    esc.stderr.wait_for(&went_on(&id, holder))?;
    esc.stderr.wait_for("waiting for an approver of acme")?;
    bob2.ok(&["approve", &id])?;
    assert_eq!(esc.wait()?.code(), Some(0), "{:?}", esc.stderr.seen);
    esc.stderr.wait_for("approved by bob")?;

    // `cp --session`: the channel opens on relay 2 (one copy; ten more are timed below).
    let local = tempfile::tempdir()?;
    let src = format!("erp-db01:{}", remote.join("app.log").display());
    let out = alice1.run(&["cp", &src, local.path().to_str().unwrap(), "--session", &id])?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&went_on(&id, holder)), "{}", stderr(&out));
    assert_eq!(std::fs::read(local.path().join("app.log"))?, b"a log line from erp-db01\n");

    // What the detour costs (printed, not asserted): the same copy straight to relay 2 and
    // through relay 1, a whole `assist cp` process each.
    let timed = |cli: &Cli| -> anyhow::Result<Duration> {
        let to = tempfile::tempdir()?;
        let started = Instant::now();
        let out = cli.run(&["cp", &src, to.path().to_str().unwrap(), "--session", &id])?;
        anyhow::ensure!(out.status.success(), "{}", stderr(&out));
        Ok(started.elapsed())
    };
    let mut straight = Vec::new();
    let mut detour = Vec::new();
    for _ in 0..5 {
        straight.push(timed(&alice2)?);
        detour.push(timed(&alice1)?);
    }
    straight.sort();
    detour.sort();
    eprintln!(
        "assist cp --session, median of 5: to the holder {:?}, through relay 1 {:?}",
        straight[2], detour[2]
    );

    // `forward --session`: every forwarded connection goes to relay 2.
    let spec = format!("0:{echo}");
    let mut fwd = alice1.spawn(&["forward", "erp-db01", "--session", &id, "-L", &spec])?;
    fwd.stderr.wait_for(&went_on(&id, holder))?;
    let port = local_port(&mut fwd)?;
    for round in 0..2 {
        let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(WAIT))?;
        let sent = format!("through relay 2, round {round}");
        tcp.write_all(sent.as_bytes())?;
        tcp.shutdown(std::net::Shutdown::Write)?;
        let mut back = String::new();
        tcp.read_to_string(&mut back)?;
        assert_eq!(back, sent);
    }
    let stopped = Command::new("kill").args(["-INT", &fwd.child.id().to_string()]).status()?;
    assert!(stopped.success());
    assert_eq!(fwd.wait()?.code(), Some(0), "{:?}", fwd.stderr.seen);

    // `watch` by an approver on relay 1: the screen is relay 2's, watched there.
    let bob1 = r1.login("bob")?;
    let mut watch = bob1.spawn(&["watch", &id])?;
    watch.stderr.wait_for(&went_on(&id, holder))?;
    watch.stdout.wait_for("held")?;

    // The protocol underneath: relay 1 answers `detach` and a channel with the holder's
    // name and address; relay 2 answers `detach` with its own rule (only the command that
    // requested the session leaves it).
    let rt = runtime();
    let (detach, channel) = rt.block_on(async {
        let mut raw = RogueEngineer::connect(&alice1).await?;
        let detach = raw.call(&EngineerToRelay::Detach { session: SessionId::new(id.clone()) }).await?;
        let (channel, ..) = raw.open(&command(&id, &["true"])).await?;
        anyhow::Ok((detach, channel))
    })?;
    let RelayToEngineer::Error { held_by: Some(there), message, .. } = &detach else {
        anyhow::bail!("relay 1 did not name the holder: {detach:?}")
    };
    assert_eq!((there.relay.as_str(), there.address.as_str()), ("r2", holder.addr.as_str()), "{message}");
    let ChannelReply::Refused { held_by: Some(there), .. } = &channel else {
        anyhow::bail!("relay 1 did not name the holder: {channel:?}")
    };
    assert_eq!(there.relay, "r2");
    let on_holder = rt.block_on(async {
        let mut raw = RogueEngineer::connect(&alice2).await?;
        raw.call(&EngineerToRelay::Detach { session: SessionId::new(id.clone()) }).await
    })?;
    assert!(
        matches!(&on_holder, RelayToEngineer::Error { message, held_by: None, .. }
            if message.contains("only the command that requested")),
        "{on_holder:?}"
    );

    // A forged token is refused on relay 1 before anything is said of the session.
    let forged = pointed_at(&alice2, &r1)?;
    let path = forged.dir.path().join("login.json");
    let mut login: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let token = login["token"].as_str().unwrap_or_default().to_owned();
    let (body, sig) = token.rsplit_once('.').expect("a JWT");
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    login["token"] = format!("{body}.{flipped}{}", &sig[1..]).into();
    std::fs::remove_file(&path)?;
    write_private(&path, &login.to_string())?;
    let elsewhere = tempfile::tempdir()?;
    let out = forged.run(&["cp", &src, elsewhere.path().to_str().unwrap(), "--session", &id])?;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("token not accepted"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("held by"), "{}", stderr(&out));

    // Relay 2 ends the session: each command was recorded once, by relay 2.
    bob2.ok(&["end", &id, "--reason", "done"])?;
    let ended = watch.wait()?;
    assert_eq!(ended.code(), Some(0), "{:?}", watch.stderr.seen);
    drop(held);
    let verdict = wait_for_verdict(holder, &id)?;
    assert!(verdict.starts_with("valid"), "{verdict}");
    assert!(r1.admin(&["recording", "verify", &id]).is_err(), "relay 1 recorded nothing of it");
    for (action, n) in [
        ("session.escalated", 1),
        ("file.transferred", 11),
        ("forward.opened", 2),
        ("session.watch_started", 1),
        ("channel.refused", 0),
    ] {
        let found = events(&r1, &id, action)?;
        assert_eq!(found.len(), n, "{action}: {found:?}");
    }
    for moved in events(&r1, &id, "file.transferred")? {
        assert_eq!(moved["detail"]["match"], true, "{moved}");
    }
    let verified = r1.admin(&["audit", "verify"])?;
    assert!(verified.starts_with("audit log intact:"), "{verified}");

    // A holder that is gone: a clear error, and nothing changes.
    let again = hold_session(&alice2, &bob2, "erp-db01", std::slice::from_ref(&read))?;
    let before = r1.admin(&["audit", "export", "--format", "jsonl", "--session", &again.id])?;
    drop(r2.take());
    let lost = tempfile::tempdir()?;
    let out = alice1.run(&["cp", &src, lost.path().to_str().unwrap(), "--session", &again.id])?;
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains(&format!("session {} is held by relay r2", again.id)), "{said}");
    assert!(said.contains("cannot be reached"), "{said}");
    assert!(std::fs::read_dir(lost.path())?.next().is_none(), "nothing was copied");
    let after = r1.admin(&["audit", "export", "--format", "jsonl", "--session", &again.id])?;
    assert_eq!(before, after, "nothing was audited");

    // Once relay 1 declares relay 2 lost, the session is open nowhere: "no live session",
    // as one relay says of a session it does not know.
    let state = format!("SELECT state FROM sessions WHERE id = '{}'", again.id);
    wait_until("relay 2 to be declared lost", || Ok(psql(&db, &state)? == "closed"))?;
    let gone = alice1.run(&["cp", &src, lost.path().to_str().unwrap(), "--session", &again.id])?;
    let never = alice1.run(&["cp", &src, lost.path().to_str().unwrap(), "--session", "s-000000000000"])?;
    assert!(!gone.status.success() && !never.status.success());
    assert_eq!(
        stderr(&gone).replace(&again.id, "ID"),
        stderr(&never).replace("s-000000000000", "ID"),
        "the same refusal"
    );
    assert!(stderr(&gone).contains(&format!("no live session {}", again.id)), "{}", stderr(&gone));

    // A login revoked on the database is refused by every relay, this one too.
    r1.admin(&["user", "disable", "alice"])?;
    let out = alice1.run(&["sessions"])?;
    assert!(!out.status.success() && stderr(&out).contains("revoked"), "{}", stderr(&out));
    Ok(())
}

/// `recording verify` on `relay` once the session's recording is sealed.
fn wait_for_verdict(relay: &TestRelay, id: &str) -> anyhow::Result<String> {
    let mut verdict = String::new();
    wait_until("the recording to be sealed", || {
        match relay.admin(&["recording", "verify", id]) {
            Ok(v) => verdict = v,
            Err(_) => return Ok(false),
        }
        Ok(!verdict.starts_with("truncated"))
    })?;
    Ok(verdict)
}

#[test]
fn the_live_view_on_relay_one_names_the_relay_holding_the_session() -> anyhow::Result<()> {
    let db = assist_testpg::database();
    let keys = tempfile::tempdir()?;
    let bundle = super::cluster::new_bundle(keys.path())?;
    let r1 = start(&bundle, "r1", &db)?;
    let r2 = start(&bundle, "r2", &db)?;
    r1.standard_world()?;
    let _agent = r1.agent("erp-db01", "acme", "approver")?;
    let (alice2, bob2) = (r2.login("alice")?, r2.login("bob")?);
    wait_until("relay 2 to reach the agent", || {
        let agents: serde_json::Value = serde_json::from_str(&alice2.ok(&["agents", "--json"])?)?;
        Ok(agents.as_array().is_some_and(|a| a.iter().any(|x| x["online"] == true)))
    })?;
    let held = hold_session(&alice2, &bob2, "erp-db01", &[])?;

    let (url, _) = r1.console()?;
    let b = Browser::open(&r1.data_dir().join("ca.pem"))?;
    crate::console::sign_in_and_enrol(&b, &url, "bob", "pw-bob-123", "approver")?;
    // Relay 1 lists relay 2's live session; its live view says where it runs.
    let live = format!("#live-sessions li[data-id='{}']", held.id);
    b.wait_text(&live, "INC-6")?;
    b.click(&format!("{live} a.watch"))?;
    let said = b.wait_text("#w-status", "runs on relay r2")?;
    assert!(said.contains("open that relay's console to watch it live"), "{said}");
    let hidden =
        b.rt.block_on(b.client.execute("return document.getElementById('w-term').hidden", vec![]))?;
    assert_eq!(hidden, serde_json::Value::Bool(true), "no empty terminal under the message");
    b.screenshot("mesh-2-live-view-held-by-another-relay")?;
    assert!(events(&r1, &held.id, "session.watch_started")?.is_empty());
    Ok(())
}
