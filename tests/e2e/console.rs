//! The web console, end to end: HTTPS from the relay's CA, and a real headless Chromium
//! signing in with a password and TOTP, and an approver answering a real `assist shell`'s
//! request from the open page. Screenshots of each page go to `<target>/artefacts/console/`.

use assist_tests::browser::{Browser, totp_code, unix_secs};
use assist_tests::{TestRelay, wait_until};
use std::process::Command;

/// `curl` against the console, trusting only `ca`; returns (status line and headers, body).
fn curl(url: &str, ca: &std::path::Path) -> anyhow::Result<std::process::Output> {
    Ok(Command::new("curl").args(["-sS", "-i", "--max-time", "30", "--cacert"]).arg(ca).arg(url).output()?)
}

#[test]
fn the_console_is_served_over_https_with_a_certificate_from_the_relay_ca() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    let (url, spki) = relay.console()?;
    assert_eq!(spki.len(), 44, "base64 of a SHA-256");
    let ca = relay.data_dir().join("ca.pem");
    let out = curl(&format!("{url}/api/v1/health"), &ca)?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout)?;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for header in [
        "content-security-policy: default-src 'self'",
        "strict-transport-security: max-age=",
        "x-content-type-options: nosniff",
    ] {
        assert!(text.to_lowercase().contains(header), "{header} missing: {text}");
    }
    assert!(text.contains("\"status\":\"ok\""), "{text}");
    // Another CA is not trusted: the certificate really comes from this relay's.
    let other = tempfile::tempdir()?;
    let other_ca = other.path().join("other.pem");
    std::fs::write(&other_ca, assist_certs::Ca::generate("other")?.cert_pem())?;
    let out = curl(&format!("{url}/api/v1/health"), &other_ca)?;
    assert!(!out.status.success(), "a certificate from another CA must fail");
    Ok(())
}

/// Signs in as `user` and sets up an authenticator from the page; returns its secret.
pub(crate) fn sign_in_and_enrol(
    b: &Browser,
    url: &str,
    user: &str,
    password: &str,
    shots: &str,
) -> anyhow::Result<(String, Vec<String>)> {
    b.goto(url)?;
    b.wait_css("#signin-form")?;
    b.screenshot(&format!("{shots}-1-sign-in"))?;
    b.fill("#user", user)?;
    b.fill("#password", password)?;
    b.click("#signin-form button[type=submit]")?;
    b.wait_css("#enrol-form")?;
    let secret = b.text("#secret")?;
    // The QR code image has loaded (its natural width is known only once it has).
    wait_until("the QR code to load", || {
        let w =
            b.rt.block_on(b.client.execute("return document.getElementById('qr').naturalWidth", vec![]))?;
        Ok(w.as_u64().unwrap_or(0) > 0)
    })?;
    b.screenshot(&format!("{shots}-2-enrol"))?;
    b.fill("#enrol-code", &totp_code(&secret, unix_secs())?)?;
    b.click("#enrol-form button[type=submit]")?;
    b.wait_css("#recovery-codes li")?;
    let codes: Vec<String> = b.text("#recovery-codes")?.split_whitespace().map(str::to_owned).collect();
    b.screenshot(&format!("{shots}-3-recovery-codes"))?;
    b.click("#recovery-done")?;
    b.wait_css("#home")?;
    Ok((secret, codes))
}

#[test]
fn the_first_admin_enrols_totp_signs_out_and_signs_in_again_with_a_code() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    let (url, _) = relay.console()?;
    let b = Browser::open(&relay.data_dir().join("ca.pem"))?;
    let (secret, recovery) = sign_in_and_enrol(&b, &url, "admin", &relay.admin_password, "admin")?;
    assert_eq!(recovery.len(), 10, "{recovery:?}");
    let who = b.text("#who")?;
    assert!(who.contains("admin") && who.contains("operator"), "{who}");
    b.screenshot("admin-4-home")?;

    b.click("#logout")?;
    b.wait_text("#message", "signed out")?;
    b.fill("#user", "admin")?;
    b.fill("#password", &relay.admin_password)?;
    b.click("#signin-form button[type=submit]")?;
    b.wait_css("#code-form")?;
    b.screenshot("admin-5-code")?;
    // The code of the next time step (accepted within the one-step skew): the one used at
    // enrolment would be refused as a replay.
    b.fill("#code-input", &totp_code(&secret, unix_secs() + 30)?)?;
    b.click("#code-form button[type=submit]")?;
    b.wait_css("#home")?;
    assert!(b.text("#who")?.contains("admin"));

    // A phone-sized screen.
    b.resize(390, 844)?;
    b.screenshot("admin-6-home-phone")?;
    // `assist login` now needs a code too: without one it is refused, with a recovery code
    // it works (once).
    let cli = assist_tests::Cli { dir: tempfile::tempdir()?, relay: relay.addr.clone() };
    let login = |stdin: &str| {
        cli.run_stdin(
            &[
                "login",
                "--relay",
                &relay.addr,
                "--user",
                "admin",
                "--password-stdin",
                "--ca-fingerprint",
                &relay.fingerprint,
            ],
            stdin,
        )
    };
    let out = login(&format!("{}\n", relay.admin_password))?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("authenticator"), "{out:?}");
    let out = login(&format!("{}\n{}\n", relay.admin_password, recovery[1]))?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    cli.ok(&["agents"])?;
    let out = login(&format!("{}\n{}\n", relay.admin_password, recovery[1]))?;
    assert!(!out.status.success(), "a recovery code works once");

    let audit = relay.admin(&["audit", "list", "--json"])?;
    for action in
        ["mfa.enrolled", "mfa.recovery_used", "mfa.failed", "console.signed_in", "console.signed_out"]
    {
        assert!(audit.contains(action), "{action} not audited");
    }
    Ok(())
}

#[test]
fn an_approver_approves_only_shell_for_ten_minutes_from_the_open_page() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let (url, _) = relay.console()?;
    let b = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in_and_enrol(&b, &url, "bob", "pw-bob-123", "approver")?;
    b.wait_css("#none")?;
    b.screenshot("approver-4-nothing-waiting")?;

    let mut shell = alice.spawn(&[
        "shell",
        "erp-db01",
        "--ticket",
        "INC-2001",
        "--priority",
        "P1",
        "--reason",
        "payments queue stuck",
        "--for",
        "1h",
        "--also",
        "files.read:/var/log",
        "--",
        "sh",
        "-c",
        "echo shell-is-open; read line; echo got-$line",
    ])?;
    shell.stderr.wait_for("waiting for an approver of acme")?;
    // The request appears in the open page without a reload.
    let card = b.wait_text("#requests .request", "INC-2001")?;
    for what in ["alice", "erp-db01", "payments queue stuck", "P1", "shell", "files.read:/var/log", "1 h"] {
        assert!(card.contains(what), "{what} missing from the card: {card}");
    }
    b.screenshot("approver-5-request")?;
    // Untick files.read, allow 10 minutes.
    b.click("#requests .request input[value='files.read:/var/log']")?;
    let select = b.wait_css("#requests .request select.minutes")?;
    b.rt.block_on(select.select_by_value("10"))?;
    b.fill("#requests .request input.note", "only the shell, please")?;
    b.resize(390, 844)?;
    b.screenshot("approver-6-request-phone")?;
    b.resize(1280, 900)?;
    b.click("#requests .request button.approve")?;
    b.wait_text("#message", "Approved")?;
    shell.stdout.wait_for("shell-is-open")?;
    b.screenshot("approver-7-approved")?;

    let listed: serde_json::Value = serde_json::from_str(&alice.ok(&["sessions", "--json"])?)?;
    let s = &listed[0];
    assert_eq!(s["approver"], "bob");
    assert_eq!(s["granted"], serde_json::json!([{ "kind": "shell" }]), "only the shell: {s}");
    let decided = s["decided_at"].as_i64().unwrap();
    let expires = s["grant_expires_at"].as_i64().unwrap();
    assert!((expires - decided - 10 * 60 * 1000).abs() < 2000, "a 10-minute grant: {s}");
    // An escalation in the live session appears the same way, and approving it from the
    // page adds exactly what was asked.
    let id = s["id"].as_str().unwrap().to_owned();
    let mut esc =
        alice.spawn(&["escalate", &id, "--add", "files.read:/var/log", "--reason", "need the log too"])?;
    esc.stderr.wait_for("waiting for an approver of acme")?;
    let card = b.wait_text("#requests .request", "need the log too")?;
    assert!(card.contains("no extra time") && card.contains("files.read:/var/log"), "{card}");
    b.screenshot("approver-7b-escalation")?;
    b.click("#requests .request button.approve")?;
    assert_eq!(esc.wait()?.code(), Some(0));
    let listed: serde_json::Value = serde_json::from_str(&alice.ok(&["sessions", "--json"])?)?;
    assert_eq!(listed[0]["granted"].as_array().map(Vec::len), Some(2), "{}", listed[0]);
    assert_eq!(listed[0]["grant_expires_at"], s["grant_expires_at"], "no extra time was asked or given");
    b.wait_css("#none")?;

    shell.write_line("done")?;
    shell.stdout.wait_for("got-done")?;
    assert_eq!(shell.wait()?.code(), Some(0));
    // The request left the page.
    b.wait_css("#none")?;

    // Another request, denied with a reason the engineer reads.
    let mut denied =
        alice.spawn(&["shell", "erp-db01", "--ticket", "INC-2002", "--reason", "again", "--", "true"])?;
    denied.stderr.wait_for("waiting for an approver of acme")?;
    b.wait_text("#requests .request", "INC-2002")?;
    b.click("#requests .request button.deny")?;
    b.fill("#requests .request input.deny-reason", "not during month-end close")?;
    b.screenshot("approver-8-deny")?;
    b.click("#requests .request button.deny-confirm")?;
    b.wait_text("#message", "Denied")?;
    assert_ne!(denied.wait()?.code(), Some(0));
    let line = denied.stderr.wait_for("denied by")?;
    assert!(line.contains("denied by bob: not during month-end close"), "{line}");
    Ok(())
}

#[test]
fn disabling_an_approver_stops_their_open_page_and_their_cli_at_once() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let bob_cli = relay.login("bob")?;
    bob_cli.ok(&["requests"])?;
    let (url, _) = relay.console()?;
    let b = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in_and_enrol(&b, &url, "bob", "pw-bob-123", "disabled")?;
    b.wait_css("#none")?;

    relay.admin(&["user", "disable", "bob"])?;
    // The open page learns it on its own, without a click.
    b.wait_text("#message", "Your session has ended")?;
    b.wait_css("#signin-form")?;
    b.screenshot("disabled-4-signed-out")?;
    let out = bob_cli.run(&["requests"])?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("revoked"), "{err}");
    // And neither can sign in again.
    b.fill("#user", "bob")?;
    b.fill("#password", "pw-bob-123")?;
    b.click("#signin-form button[type=submit]")?;
    b.wait_text("#message", "wrong user name or password")?;
    let out = bob_cli.run_stdin(
        &[
            "login",
            "--relay",
            &relay.addr,
            "--user",
            "bob",
            "--password-stdin",
            "--ca-fingerprint",
            &relay.fingerprint,
        ],
        "pw-bob-123\n",
    )?;
    assert!(!out.status.success(), "a disabled user's CLI login is refused");
    Ok(())
}

#[test]
fn a_browser_that_does_not_trust_the_relay_ca_gets_no_page() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    let (url, _) = relay.console()?;
    let other = tempfile::tempdir()?;
    let other_ca = other.path().join("other-ca.pem");
    std::fs::write(&other_ca, assist_certs::Ca::generate("other")?.cert_pem())?;
    let b = Browser::open(&other_ca)?;
    b.goto(&url)?;
    let source = b.rt.block_on(b.client.source())?;
    assert!(source.contains("ERR_CERT_AUTHORITY_INVALID"), "the browser must refuse the certificate");
    assert!(!source.contains("signin-form"));
    b.screenshot("untrusted-ca")?;
    Ok(())
}

#[test]
fn an_approver_revokes_the_shell_and_ends_a_session_from_the_live_sessions() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let (url, _) = relay.console()?;
    let b = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in_and_enrol(&b, &url, "bob", "pw-bob-123", "live")?;
    b.wait_css("#live-none")?;

    // A real shell, approved (from the CLI here: the page's approval has its own test).
    let mut shell = alice.spawn(&[
        "shell",
        "erp-db01",
        "--ticket",
        "INC-3001",
        "--reason",
        "disk filling up",
        "--for",
        "30m",
        "--also",
        "files.read:/var/log",
        "--",
        "sh",
        "-c",
        "echo shell-is-open; sleep 600",
    ])?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    shell.stdout.wait_for("shell-is-open")?;
    let card_css = format!("#live-sessions li[data-id='{id}']");
    let card = b.wait_text(&card_css, "files.read:/var/log")?;
    for what in ["alice", "erp-db01", "INC-3001", "disk filling up", "shell", "left", "connected"] {
        assert!(card.contains(what), "{what} missing from the live card: {card}");
    }
    b.screenshot("live-5-session")?;
    b.resize(390, 844)?;
    b.screenshot("live-6-session-phone")?;
    b.resize(1280, 900)?;

    b.click(&format!("{card_css} button.revoke[data-cap='shell']"))?;
    b.wait_text("#message", "Revoked shell")?;
    assert_ne!(shell.wait()?.code(), Some(0));
    shell.stderr.wait_for("shell revoked by bob")?;
    // The page shows the narrower grant by itself; the session stays open with the rest.
    let card = b.wait_text(&format!("{card_css}:not(.done)"), "files.read:/var/log")?;
    assert!(!card.lines().any(|l| l.trim() == "shell"), "shell is still shown: {card}");
    b.screenshot("live-7-revoked")?;

    // Another session, ended from the page with a reason the engineer reads.
    let mut held = assist_tests::files_support::hold_session(&alice, &bob, "erp-db01", &[])?;
    let held_css = format!("#live-sessions li[data-id='{}']", held.id);
    b.wait_text(&held_css, "INC-6")?;
    b.click(&format!("{held_css} button.end"))?;
    b.fill(&format!("{held_css} input.end-reason"), "month-end close starts")?;
    b.screenshot("live-8-end")?;
    b.click(&format!("{held_css} button.end-confirm"))?;
    b.wait_text("#message", "Ended")?;
    assert_ne!(held.proc.wait()?.code(), Some(0));
    held.proc.stderr.wait_for("month-end close starts")?;
    wait_until("the ended session to leave the page", || {
        Ok(b.rt.block_on(b.client.find_all(fantoccini::Locator::Css(&held_css)))?.is_empty())
    })?;

    // Both are the same audit events as from the CLI, by bob.
    use assist_tests::files_support::events;
    let revoked = events(&relay, &id, "grant.revoked")?;
    assert!(revoked.iter().any(|e| e["actor"] == "bob"), "{revoked:?}");
    let ended = events(&relay, &held.id, "session.ended")?;
    assert!(ended.iter().any(|e| e["actor"] == "bob"), "{ended:?}");

    // The history lists both decisions, by bob.
    b.click("#history-load")?;
    let history = b.wait_text("#history tbody", "INC-6")?;
    assert!(history.contains("INC-3001") && history.contains("bob"), "{history}");
    b.rt.block_on(b.client.execute("document.getElementById('history').scrollIntoView()", vec![]))?;
    b.screenshot("live-9-history")?;
    b.resize(390, 844)?;
    b.screenshot("live-10-history-phone")?;
    Ok(())
}

/// Waits until the player shows at least `n` markers.
pub(crate) fn wait_markers(b: &Browser, n: u64) -> anyhow::Result<()> {
    let count = || -> anyhow::Result<u64> {
        let v =
            b.rt.block_on(b.client.execute(
                "return document.querySelectorAll('#sp-player .ap-marker-container').length",
                vec![],
            ))?;
        Ok(v.as_u64().unwrap_or(0))
    };
    wait_until("the player's markers", || Ok(count()? >= n))
}

/// Signs in a user whose role needs no second factor.
pub(crate) fn sign_in(b: &Browser, url: &str, user: &str) -> anyhow::Result<()> {
    b.goto(url)?;
    b.fill("#user", user)?;
    b.fill("#password", &format!("pw-{user}-123"))?;
    b.click("#signin-form button[type=submit]")?;
    b.wait_css("#home:not([hidden])")?;
    Ok(())
}

/// `fetch` from the page (its origin, its cookie): the status and the body's bytes.
pub(crate) fn fetch_from_page(b: &Browser, path: &str) -> anyhow::Result<(u64, Vec<u8>)> {
    let script = "const [path, done] = arguments;
        fetch(path, { credentials: 'same-origin' })
          .then(async (r) => done([r.status, Array.from(new Uint8Array(await r.arrayBuffer()))]))
          .catch((e) => done([0, []]));";
    let v = b.rt.block_on(b.client.execute_async(script, vec![serde_json::json!(path)]))?;
    let status = v[0].as_u64().unwrap_or(0);
    let body = v[1].as_array().map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u8).collect());
    Ok((status, body.unwrap_or_default()))
}

#[test]
fn an_auditor_opens_a_finished_session_sees_it_valid_and_verifies_its_bundle_offline() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    relay.add_user("carol", "acme", "auditor")?;
    relay.admin(&["org", "add", "other"])?;
    relay.add_user("olga", "other", "auditor")?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut shell = alice.spawn(&[
        "shell",
        "erp-db01",
        "--ticket",
        "INC-4001",
        "--reason",
        "check the backup",
        "--",
        "sh",
        "-c",
        "echo backup-is-fine",
    ])?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id, "--note", "read only please"])?;
    assert_eq!(shell.wait()?.code(), Some(0));
    // The relay seals the recording once the session has ended.
    wait_until("the recording to be sealed", || {
        Ok(relay.admin(&["recording", "verify", &id]).is_ok_and(|out| out.starts_with("valid")))
    })?;

    let (url, _) = relay.console()?;
    let b = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in(&b, &url, "carol")?;
    // An auditor lands on the sessions list.
    let list = b.wait_text("#review-list tbody", "INC-4001")?;
    assert!(list.contains("alice") && list.contains("erp-db01") && list.contains("closed"), "{list}");
    b.screenshot("auditor-1-sessions")?;
    b.fill("#filters input[name=ticket]", "INC-9999")?;
    b.click("#filters button[type=submit]")?;
    b.wait_css("#review-none:not([hidden])")?;
    b.fill("#filters input[name=ticket]", "inc-4001")?;
    b.click("#filters button[type=submit]")?;
    b.wait_text("#page-of", "1 session")?;

    b.click(&format!("#review-list tr[data-id='{id}']"))?;
    let verdict = b.wait_text("#sp-recording", "valid")?;
    assert!(verdict.contains("sealed and signed by the relay"), "{verdict}");
    let facts = b.text("#sp-facts")?;
    assert!(facts.contains("bob") && facts.contains("read only please"), "{facts}");
    let grants = b.text("#sp-grants")?;
    assert!(grants.contains("session.approved") && grants.contains("shell"), "{grants}");
    let timeline = b.text("#sp-events")?;
    for action in ["session.requested", "session.approved", "session.started", "session.ended"] {
        assert!(timeline.contains(action), "{action} missing from the timeline: {timeline}");
    }
    // The replay, in the page: the recording's approval marker on the progress bar, and
    // playing it shows the session's output. (Seeking to the end marker: console_audit.)
    b.wait_css("#sp-player .ap-player")?;
    wait_markers(&b, 1)?;
    let marker = b.rt.block_on(b.client.execute(
        "return document.querySelector('#sp-player .ap-marker-container .ap-tooltip').textContent",
        vec![],
    ))?;
    assert!(marker.as_str().unwrap_or("").contains("approved by bob"), "{marker}");
    b.click("#sp-player .ap-playback-button")?;
    let shown = || -> anyhow::Result<String> {
        let v = b.rt.block_on(b.client.execute(
            "return document.querySelector('#sp-player .ap-term-text').textContent + ' @ ' + document.querySelector('#sp-player .ap-time-elapsed').textContent",
            vec![],
        ))?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    };
    let played = wait_until("the replay to show the output", || Ok(shown()?.contains("backup-is-fine")));
    if played.is_err() {
        b.screenshot("auditor-replay-failed")?;
        anyhow::bail!("the replay never showed the output: {:?}", shown()?.trim());
    }
    b.screenshot("auditor-2b-replay")?;
    b.rt.block_on(b.client.execute("window.scrollTo(0, 0)", vec![]))?;
    b.screenshot("auditor-2-session")?;
    b.resize(390, 844)?;
    b.screenshot("auditor-3-session-phone")?;
    b.resize(1280, 900)?;

    // The evidence bundle, downloaded with the page's cookie, verifies offline with the
    // relay's own command and nothing but the bundle.
    let href = b.rt.block_on(b.wait_css("#sp-bundle")?.attr("href"))?.unwrap_or_default();
    let (status, tar) = fetch_from_page(&b, &href)?;
    assert_eq!(status, 200);
    let dir = tempfile::tempdir()?;
    let tar_path = dir.path().join("evidence.tar");
    std::fs::write(&tar_path, &tar)?;
    let out = Command::new("tar").arg("-xf").arg(&tar_path).arg("-C").arg(dir.path()).output()?;
    assert!(out.status.success(), "{out:?}");
    let bundle = dir.path().join(&id);
    let readme = std::fs::read_to_string(bundle.join("README.txt"))?;
    assert!(readme.contains("assist-relay recording verify --file"), "{readme}");
    let audit = std::fs::read_to_string(bundle.join("audit.jsonl"))?;
    assert!(audit.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
    assert!(audit.contains("session.approved"), "{audit}");
    let empty = tempfile::tempdir()?;
    let out = Command::new(assist_tests::bin("assist-relay"))
        .arg("--data-dir")
        .arg(empty.path())
        .args(["recording", "verify", "--file"])
        .arg(bundle.join("recording.arec"))
        .arg("--keys")
        .arg(bundle.join("keys.json"))
        .output()?;
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(said.starts_with("valid"), "{said}");
    // The download is on the record: who, and the SHA-256 of the very bytes given; so is
    // the replay the page fetched.
    let events = relay.admin(&["audit", "export", "--format", "jsonl", "--session", &id])?;
    let exported = |format: &str| -> Vec<serde_json::Value> {
        events
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| e["action"] == "recording.exported" && e["detail"]["format"] == format)
            .collect()
    };
    let bundles = exported("bundle");
    assert_eq!(bundles.len(), 1, "{events}");
    assert_eq!(bundles[0]["actor"], "carol");
    assert_eq!(bundles[0]["detail"]["via"], "console");
    assert_eq!(bundles[0]["detail"]["sha256"], hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&tar)));
    assert!(!exported("asciicast").is_empty(), "{events}");

    // A user of another organisation gets nothing: no list, no page, no bundle.
    b.click("#logout")?;
    b.wait_css("#signin-form")?;
    sign_in(&b, &url, "olga")?;
    b.wait_css("#review-none:not([hidden])")?;
    b.goto(&format!("{url}/#session/{id}"))?;
    b.wait_text("#sp-title", "No such session")?;
    let shown = b.rt.block_on(b.client.execute(
        "return document.getElementById('sp-events').childElementCount + document.getElementById('sp-facts').childElementCount",
        vec![],
    ))?;
    assert_eq!(shown.as_u64(), Some(0), "nothing of the session shows");
    b.screenshot("auditor-4-other-organisation")?;
    for path in [format!("/api/v1/audit/sessions/{id}"), format!("/api/v1/audit/sessions/{id}/bundle")] {
        assert_eq!(fetch_from_page(&b, &path)?.0, 404, "{path}");
    }
    Ok(())
}
