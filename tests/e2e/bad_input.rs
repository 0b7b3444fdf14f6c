//! Bad input from every side: refused with a clear error, nothing changed, relay unharmed.

use assist_certs::{AgentKey, Ca, Fingerprint};
use assist_net::{ClientIdentity, read_msg, write_msg};
use assist_proto::msg::{AgentToRelay, EngineerToRelay, ErrorCode, RelayToAgent, RelayToEngineer};
use assist_relay::auth::TokenKeys;
use assist_relay::datadir::DataDir;
use assist_tests::TestRelay;
use std::net::SocketAddr;
use std::time::Duration;

pub(super) fn rt() -> tokio::runtime::Runtime {
    assist_net::install_crypto_provider();
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

pub(super) async fn connect(
    relay: &TestRelay,
    identity: Option<ClientIdentity>,
) -> anyhow::Result<(quinn::Endpoint, quinn::Connection)> {
    let addr: SocketAddr = relay.addr.parse()?;
    let fp: Fingerprint = relay.fingerprint.parse()?;
    let endpoint = assist_net::client_endpoint(addr)?;
    let conn = assist_net::connect(&endpoint, addr, fp, identity).await?;
    Ok((endpoint, conn))
}

/// Sends `Auth` with a token and returns the relay's answer.
pub(super) async fn auth_with(relay: &TestRelay, token: &str) -> anyhow::Result<RelayToEngineer> {
    let (_ep, conn) = connect(relay, None).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    write_msg(&mut send, &EngineerToRelay::Auth { token: token.to_owned() }).await?;
    write_msg(&mut send, &EngineerToRelay::ListAgents).await?;
    let first: RelayToEngineer = read_msg(&mut recv).await?.ok_or_else(|| anyhow::anyhow!("no answer"))?;
    Ok(first)
}

fn assert_unauthenticated(reply: RelayToEngineer) {
    match reply {
        RelayToEngineer::Error { code: ErrorCode::Unauthenticated, .. } => {}
        other => panic!("expected refusal, got {other:?}"),
    }
}

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn forged_expired_and_misaddressed_tokens_are_refused() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let dir = DataDir::open(&relay.data_dir())?;
    let keys = dir.token_keys()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let rt = rt();

    // The real key, but issued two hours ago for one hour.
    let (expired, _) = keys.issue(
        &"alice".into(),
        &"vendor".into(),
        assist_proto::caps::Role::Engineer,
        now - 7200,
        Duration::from_secs(3600),
    );
    assert_unauthenticated(rt.block_on(auth_with(&relay, &expired))?);

    // Same claims, signed by another key.
    let issuer = keys.issuer().to_owned();
    let other = TokenKeys::from_pem(&TokenKeys::generate_pem(), issuer.clone())?;
    let (forged, _) = other.issue(
        &"alice".into(),
        &"vendor".into(),
        assist_proto::caps::Role::Admin,
        now,
        Duration::from_secs(3600),
    );
    assert_unauthenticated(rt.block_on(auth_with(&relay, &forged))?);

    // alg: none.
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = serde_json::json!({"sub":"alice","org":"vendor","role":"admin","aud":"assist","iss":issuer,"iat":now,"exp":now+3600});
    let none = format!("{header}.{}.", b64(claims.to_string().as_bytes()));
    assert_unauthenticated(rt.block_on(auth_with(&relay, &none))?);

    // The real key, but for another audience.
    let pem = std::fs::read_to_string(relay.data_dir().join("token.key"))?;
    let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes())?;
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = "some-other-service".into();
    let t =
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA), &wrong_aud, &key)?;
    assert_unauthenticated(rt.block_on(auth_with(&relay, &t))?);

    // Garbage.
    assert_unauthenticated(rt.block_on(auth_with(&relay, "not.a.token"))?);

    // And a good login still works.
    relay.login("alice")?.ok(&["agents"])?;
    Ok(())
}

#[test]
fn garbage_and_oversized_frames_close_only_that_connection() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let rt = rt();
    rt.block_on(async {
        // A frame announcing 1 GiB.
        let (_ep, conn) = connect(&relay, None).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&(1u32 << 30).to_be_bytes()).await?;
        let reply: Option<RelayToEngineer> = read_msg(&mut recv).await.ok().flatten();
        assert!(
            matches!(reply, Some(RelayToEngineer::Error { code: ErrorCode::BadRequest, .. })),
            "{reply:?}"
        );
        let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await?;
        assert!(matches!(closed, quinn::ConnectionError::ApplicationClosed(_)), "{closed:?}");

        // A well-framed message that is not JSON of any known message.
        let (_ep, conn) = connect(&relay, None).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(b"\x00\x00\x00\x0bhello world").await?;
        let reply: Option<RelayToEngineer> = read_msg(&mut recv).await.ok().flatten();
        assert!(
            matches!(reply, Some(RelayToEngineer::Error { code: ErrorCode::BadRequest, .. })),
            "{reply:?}"
        );

        // After authenticating, garbage ends the conversation too.
        let (_ep, conn) = connect(&relay, None).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        write_msg(
            &mut send,
            &EngineerToRelay::Login { user: "alice".into(), password: "pw-alice-123".into(), code: None },
        )
        .await?;
        assert!(matches!(
            read_msg::<RelayToEngineer, _>(&mut recv).await?,
            Some(RelayToEngineer::LoggedIn { .. })
        ));
        send.write_all(b"\x00\x00\x00\x03{{{").await?;
        let reply: Option<RelayToEngineer> = read_msg(&mut recv).await.ok().flatten();
        assert!(
            matches!(reply, Some(RelayToEngineer::Error { code: ErrorCode::BadRequest, .. })),
            "{reply:?}"
        );
        anyhow::Ok(())
    })?;
    // The relay is unharmed.
    relay.login("alice")?.ok(&["agents"])?;
    Ok(())
}

#[test]
fn join_tokens_are_single_use_and_expire() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let token = relay.join_token("acme")?;
    let enroll = |dir: &std::path::Path, name: &str, token: &str| {
        std::process::Command::new(assist_tests::bin("assist-agent"))
            .arg("--data-dir")
            .arg(dir)
            .args([
                "enroll",
                "--relay",
                &relay.addr,
                "--token",
                token,
                "--ca-fingerprint",
                &relay.fingerprint,
                "--name",
                name,
            ])
            .output()
    };
    let a = tempfile::tempdir()?;
    assert!(enroll(a.path(), "first", &token)?.status.success());
    let b = tempfile::tempdir()?;
    let reused = enroll(b.path(), "second", &token)?;
    assert!(!reused.status.success());
    assert!(String::from_utf8_lossy(&reused.stderr).contains("already used"), "{reused:?}");
    assert!(!b.path().join("agent.json").exists(), "nothing saved on refusal");

    // An expired token, planted directly in the relay's database.
    let rt = rt();
    let expired = "ajt_expired_for_test";
    rt.block_on(async {
        let store = assist_relay::store::SqliteStore::open(&relay.data_dir().join("assist.db")).await?;
        use assist_relay::store::Store;
        let now = assist_relay::now_ms();
        let event = assist_relay::audit::AuditEvent::new("test", assist_relay::audit::Action::TokenIssued);
        store
            .add_join_token(
                &assist_relay::auth::token_hash(expired),
                &"acme".into(),
                now - 1,
                now - 60_000,
                &event,
            )
            .await?;
        anyhow::Ok(())
    })?;
    let c = tempfile::tempdir()?;
    let out = enroll(c.path(), "third", expired)?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"), "{out:?}");

    let listed = relay.admin(&["agent", "list", "--json"])?;
    assert!(listed.contains("first") && !listed.contains("second") && !listed.contains("third"), "{listed}");
    Ok(())
}

#[test]
fn agent_certificate_from_another_ca_is_refused() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let foreign = Ca::generate("mallory")?;
    let key = AgentKey::generate("erp-db01")?;
    let cert = foreign.sign_agent_csr(&key.csr_pem, "erp-db01", "acme")?;
    let identity = ClientIdentity {
        chain: assist_certs::certs_from_pem(&cert.cert_pem)?,
        key: assist_certs::key_from_pem(&key.key_pem)?,
    };
    let rt = rt();
    let refused = rt.block_on(async {
        let Ok((_ep, conn)) = connect(&relay, Some(identity)).await else { return true };
        let Ok((mut send, mut recv)) = conn.open_bi().await else { return true };
        let hello = AgentToRelay::Hello {
            consent: assist_proto::caps::ConsentMode::Approver,
            version: "x".into(),
            scripts: None,
            desktop: None,
            cluster: false,
        };
        if write_msg(&mut send, &hello).await.is_err() {
            return true;
        }
        !matches!(read_msg::<RelayToAgent, _>(&mut recv).await, Ok(Some(RelayToAgent::Welcome { .. })))
    });
    assert!(refused, "an agent with a foreign certificate got in");
    Ok(())
}

#[test]
fn organisations_are_isolated() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    relay.admin(&["org", "add", "othervendor"])?;
    relay.admin(&["org", "add", "globex", "--supported-by", "othervendor"])?;
    relay.add_user("eve", "globex", "approver")?;
    let _acme = relay.agent("erp-db01", "acme", "approver")?;
    let _globex = relay.agent("gx-app01", "globex", "approver")?;
    let alice = relay.login("alice")?;
    let eve = relay.login("eve")?;

    // alice's vendor does not support globex: she neither sees nor reaches its agent.
    let agents = alice.ok(&["agents"])?;
    assert!(agents.contains("erp-db01") && !agents.contains("gx-app01"), "{agents}");
    let out = alice.run(&["shell", "gx-app01", "--ticket", "T-1", "--reason", "r", "--", "true"])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no agent named gx-app01"), "{out:?}");

    // eve approves for globex only: alice's request on acme is not hers to answer.
    let mut s = alice.spawn(&["shell", "erp-db01", "--ticket", "T-2", "--reason", "r", "--", "true"])?;
    s.stderr.wait_for("waiting for")?;
    assert!(eve.ok(&["requests"])?.lines().count() <= 1, "eve sees no acme requests");
    let bob = relay.login("bob")?;
    let id = bob.pending_request()?;
    let out = eve.run(&["approve", &id])?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("no pending request {id}")), "{out:?}");
    let pending = bob.ok(&["requests", "--json"])?;
    assert!(pending.contains(&id), "still pending after the refused approval");

    // Ticket and reason are mandatory.
    let out = alice.run(&["shell", "erp-db01", "--reason", "r"])?;
    assert!(!out.status.success());
    Ok(())
}

#[test]
fn user_add_without_a_terminal_says_to_use_password_stdin_and_a_short_password_is_refused_at_once()
-> anyhow::Result<()> {
    use expectrl::Expect;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let add = |name: &str| {
        let mut cmd = std::process::Command::new(assist_tests::bin("assist-relay"));
        cmd.arg("--data-dir")
            .arg(relay.data_dir())
            .args(["user", "add", name, "--org", "acme", "--role", "engineer"]);
        cmd
    };
    // No controlling terminal (a new session), stdin empty: as from cron or a container.
    let mut cmd = std::process::Command::new("setsid");
    let inner = add("carol");
    cmd.arg(inner.get_program()).args(inner.get_args()).stdin(std::process::Stdio::null());
    let out = cmd.output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--password-stdin"), "{err}");
    assert!(!relay.admin(&["user", "list"])?.contains("carol"));

    // In a terminal: a short password is refused before it is asked for again.
    let mut p = expectrl::Session::spawn(add("dave"))?;
    p.set_expect_timeout(Some(assist_tests::WAIT));
    p.expect("Password for dave:")?;
    p.send_line("short")?;
    let seen = p.expect("too short")?;
    assert!(!String::from_utf8_lossy(seen.before()).contains("Repeat"), "asked twice for a short password");
    assert!(!relay.admin(&["user", "list"])?.contains("dave"));
    Ok(())
}

#[test]
fn a_path_over_a_limit_is_refused_saying_which_in_the_cli_and_at_the_relay() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let local = tempfile::tempdir()?;
    let local = local.path().to_str().unwrap_or(".");
    let component = format!("erp-db01:/var/{}", "a".repeat(5000));
    let long = format!("erp-db01:/{}", vec!["b".repeat(100); 700].join("/"));
    let ask = ["--ticket", "T-1", "--reason", "r"];
    for (args, why) in [
        (vec!["cp", component.as_str(), local], "NAME_MAX"),
        (vec!["ls", component.as_str()], "NAME_MAX"),
        (vec!["cp", long.as_str(), local], "PATH_MAX"),
        (vec!["ls", long.as_str()], "PATH_MAX"),
    ] {
        let out = alice.run(&[&args[..], &ask[..]].concat())?;
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{}: {err}", args[0]);
        assert!(!err.contains("frame"), "{err}");
    }
    // Nothing reached the relay: no session was asked for.
    let audit = relay.admin(&["audit", "list", "--json"])?;
    assert!(!audit.contains("session.requested"), "a request went out");

    // A client that sends it anyway is told the same by the relay.
    let rt = rt();
    let reply = rt.block_on(async {
        let mut rogue = assist_tests::rogue::RogueEngineer::connect(&alice).await?;
        rogue
            .call(&EngineerToRelay::RequestSession {
                agent: "erp-db01".into(),
                ticket: "T-2".into(),
                priority: assist_proto::caps::Priority::P3,
                reason: "r".into(),
                capabilities: vec![assist_proto::caps::Capability::FilesRead {
                    roots: vec![format!("/var/{}", "a".repeat(300))],
                }],
                duration_secs: None,
            })
            .await
    })?;
    match reply {
        RelayToEngineer::Error { code: ErrorCode::BadRequest, message, .. } => {
            assert!(message.contains("NAME_MAX"), "{message}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    Ok(())
}
