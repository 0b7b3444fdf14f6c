//! The console's admin pages and the approver's narrowed roots, end to end in a real
//! headless Chromium against the real binaries: an admin adds an approver who then signs
//! in, and disabling them stops their open page; the agents page shows a real agent online
//! and revoking it there refuses its next connection; a webhook added in the page gets a
//! real, signed delivery; an approver narrows a file root, and a wider one is refused.
//! Screenshots go to `<target>/artefacts/console/admin-pages-*`.

use super::console::sign_in_and_enrol;
use super::webhooks::{Receiver, signature_ok};
use assist_tests::TestRelay;
use assist_tests::browser::Browser;

/// The first admin, signed in with an authenticator, on the admin pages.
fn admin(relay: &TestRelay, url: &str, shots: &str) -> anyhow::Result<Browser> {
    let b = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in_and_enrol(&b, url, "admin", &relay.admin_password, shots)?;
    b.click("#tab-admin")?;
    b.wait_css("#admin-nav a")?;
    Ok(b)
}

fn select(b: &Browser, css: &str, value: &str) -> anyhow::Result<()> {
    let e = b.wait_css(css)?;
    Ok(b.rt.block_on(e.select_by_value(value))?)
}

/// Clicks a guarded button in `row` and confirms.
fn confirm(b: &Browser, row: &str, button: &str) -> anyhow::Result<()> {
    b.click(&format!("{row} button.{button}"))?;
    b.click(&format!("{row} .confirm-{button}"))
}

/// Adds a user from the users page; returns the password the page shows once.
fn add_user(b: &Browser, name: &str, org: &str, role: &str) -> anyhow::Result<String> {
    b.click("#admin-tab-users")?;
    b.fill("#add-user-name", name)?;
    select(b, "#add-user-org", org)?;
    select(b, "#add-user-role", role)?;
    b.click("#add-user-submit")?;
    b.wait_text("#admin-once-title", name)?;
    let password = b.text("#admin-once-value")?;
    anyhow::ensure!(password.len() >= 12, "a generated password: {password:?}");
    b.wait_css(&format!("#admin-users tr[data-user='{name}']"))?;
    Ok(password)
}

#[test]
fn an_admin_adds_an_approver_who_signs_in_and_disabling_them_stops_their_page() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let (url, _) = relay.console()?;
    let b = admin(&relay, &url, "admin-pages-0-admin")?;
    b.click("#admin-tab-orgs")?;
    b.wait_text("#admin-orgs tr[data-org='acme']", "vendor")?;
    b.screenshot("admin-pages-1-organisations")?;

    let password = add_user(&b, "dora", "acme", "approver")?;
    b.wait_text("#message", "added approver dora to acme")?;
    b.screenshot("admin-pages-2-user-added")?;
    b.click("#admin-once-done")?;
    let row = "#admin-users tr[data-user='dora']";
    assert!(b.text(row)?.contains("active"));

    // The new approver signs in with the password shown, sets up an authenticator (their
    // role needs one) and gets the approver's page.
    let dora = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in_and_enrol(&dora, &url, "dora", &password, "admin-pages-0-dora")?;
    dora.wait_css("#none")?;
    assert!(dora.text("#who")?.contains("dora"));

    // Disabled from the admin page (after a confirmation): her open page stops at once.
    b.resize(390, 844)?;
    b.click(&format!("{row} button.disable"))?;
    b.wait_css(&format!("{row} .confirm-disable"))?;
    b.screenshot("admin-pages-3-confirm-disable-phone")?;
    b.click(&format!("{row} .confirm-disable"))?;
    b.wait_text("#message", "disabled dora")?;
    b.wait_text(row, "disabled")?;
    b.resize(1280, 900)?;
    dora.wait_text("#message", "Your session has ended")?;
    dora.wait_css("#signin-form")?;
    let audit = relay.admin(&["audit", "list", "--json"])?;
    let events: serde_json::Value = serde_json::from_str(&audit)?;
    let by_admin = |action: &str| {
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == action && e["actor"] == "admin" && e["target"] == "dora")
    };
    assert!(by_admin("user.added") && by_admin("user.disabled"), "the CLI's events, by the page's admin");
    Ok(())
}

#[test]
fn the_agents_page_shows_the_real_agent_online_and_revoking_it_refuses_it() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let mut agent = relay.agent("erp-db01", "acme", "approver")?;
    let (url, _) = relay.console()?;
    let b = admin(&relay, &url, "admin-pages-0-agents-admin")?;
    b.click("#admin-tab-agents")?;
    let row = "#admin-agents tr[data-agent='erp-db01']";
    let text = b.wait_text(row, "online")?;
    assert!(text.contains("acme") && text.contains("approver"), "{text}");
    b.screenshot("admin-pages-4-agents")?;

    confirm(&b, row, "revoke")?;
    b.wait_text("#message", "revoked agent erp-db01")?;
    b.wait_text(row, "revoked")?;
    b.screenshot("admin-pages-5-agent-revoked")?;
    // Its connection closes, and its next connection is refused.
    assert_ne!(agent.proc().wait()?.code(), Some(0));
    agent.proc().stderr.wait_for("revoked")?;
    let err = agent.start("approver").err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("revoked"), "{err}");

    // A join token made in the page, shown once, enrols a new agent.
    b.click("#admin-tab-tokens")?;
    select(&b, "#add-token-org", "acme")?;
    b.click("#add-token-submit")?;
    b.wait_text("#admin-once-title", "Join token for acme")?;
    let token = b.text("#admin-once-value")?;
    b.wait_css("#admin-tokens")?;
    assert!(!b.text("#admin-tokens")?.contains(&token), "listed by fingerprint only");
    b.screenshot("admin-pages-6-token")?;
    let dir = tempfile::tempdir()?;
    let out = std::process::Command::new(assist_tests::bin("assist-agent"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["enroll", "--relay", &relay.addr, "--token", &token, "--ca-fingerprint", &relay.fingerprint])
        .args(["--name", "erp-db02"])
        .output()?;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[test]
fn a_webhook_added_in_the_page_gets_a_real_signed_delivery() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let receiver = Receiver::start(&[], None)?;
    let (url, _) = relay.console()?;
    let b = admin(&relay, &url, "admin-pages-0-hooks-admin")?;
    b.click("#admin-tab-webhooks")?;
    select(&b, "#add-webhook-org", "operator")?;
    b.fill("#add-webhook-url", &format!("{}/hooks/assist", receiver.url))?;
    b.fill("#add-webhook-events", "user.added")?;
    b.click("#add-webhook-submit")?;
    b.wait_text("#admin-once-title", "secret")?;
    let secret = b.text("#admin-once-value")?;
    b.click("#admin-once-done")?;

    add_user(&b, "erin", "vendor", "engineer")?;
    let got = receiver.next()?;
    assert_eq!(got.event, "user.added");
    assert!(signature_ok(&secret, &got), "signed with the secret the page showed");

    // The page lists the delivery with its outcome.
    b.click("#admin-tab-webhooks")?;
    let shown = assist_tests::wait_for_some("the delivery to show as delivered", || {
        // Each click redraws the section: an element found just before a redraw is stale,
        // and the next round finds the new one.
        let _ = b.click("#admin-webhooks button.refresh");
        Ok(b.text("#admin-webhooks").ok().filter(|t| t.contains("delivered")))
    })?;
    assert!(shown.contains("HTTP 200"), "{shown}");
    b.screenshot("admin-pages-7-webhook-delivered")?;
    Ok(())
}

#[test]
fn an_approver_narrows_a_file_root_and_a_wider_one_is_refused() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let (url, _) = relay.console()?;
    let b = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in_and_enrol(&b, &url, "bob", "pw-bob-123", "admin-pages-0-narrow-bob")?;
    b.wait_css("#none")?;
    let mut shell = alice.spawn(&[
        "shell",
        "erp-db01",
        "--ticket",
        "INC-4001",
        "--reason",
        "read the ERP logs",
        "--also",
        "files.read:/srv/erp",
        "--",
        "sh",
        "-c",
        "echo shell-is-open; read line",
    ])?;
    shell.stderr.wait_for("waiting for an approver of acme")?;
    b.wait_text("#requests .request", "INC-4001")?;
    let root = "#requests .request input.narrow";

    // Wider than asked: refused with words, nothing approved.
    b.fill(root, "/srv")?;
    b.click("#requests .request button.approve")?;
    b.wait_text("#message", "is not inside what was asked")?;
    b.screenshot("admin-pages-8-narrow-refused")?;
    let listed: serde_json::Value = serde_json::from_str(&alice.ok(&["sessions", "--json"])?)?;
    assert_eq!(listed[0]["state"], "requested", "nothing changed: {}", listed[0]);

    // Narrower: the session gets exactly that root.
    b.fill(root, "/srv/erp/logs")?;
    b.click("#requests .request button.approve")?;
    b.wait_text("#message", "Approved")?;
    shell.stdout.wait_for("shell-is-open")?;
    let listed: serde_json::Value = serde_json::from_str(&alice.ok(&["sessions", "--json"])?)?;
    assert_eq!(
        listed[0]["granted"],
        serde_json::json!([{ "kind": "shell" }, { "kind": "files_read", "roots": ["/srv/erp/logs"] }]),
        "{}",
        listed[0]
    );
    shell.write_line("done")?;
    assert_eq!(shell.wait()?.code(), Some(0));
    Ok(())
}

/// `assist login` as `user` with `password`; whether it succeeded.
fn cli_login(relay: &TestRelay, user: &str, password: &str) -> anyhow::Result<bool> {
    let cli = assist_tests::Cli { dir: tempfile::tempdir()?, relay: relay.addr.clone() };
    let args = ["login", "--relay", &relay.addr, "--user", user, "--password-stdin", "--ca-fingerprint"];
    let mut all = args.to_vec();
    all.push(&relay.fingerprint);
    Ok(cli.run_stdin(&all, &format!("{password}\n"))?.status.success())
}

#[test]
fn the_cli_changes_roles_resets_passwords_enables_and_changes_support() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let users = |name: &str| -> anyhow::Result<serde_json::Value> {
        let all: serde_json::Value = serde_json::from_str(&relay.admin(&["user", "list", "--json"])?)?;
        all.as_array()
            .and_then(|a| a.iter().find(|u| u["name"] == name).cloned())
            .ok_or_else(|| anyhow::anyhow!("no {name}"))
    };
    relay.admin(&["user", "role", "bob", "auditor"])?;
    assert_eq!(users("bob")?["role"], "auditor");

    let password = relay.admin(&["user", "reset-password", "bob"])?.trim().to_owned();
    assert!(!cli_login(&relay, "bob", "pw-bob-123")?, "the old password no longer works");
    assert!(cli_login(&relay, "bob", &password)?);

    relay.admin(&["user", "disable", "bob"])?;
    assert!(!cli_login(&relay, "bob", &password)?);
    relay.admin(&["user", "enable", "bob"])?;
    assert!(cli_login(&relay, "bob", &password)?);

    relay.admin(&["org", "unsupport", "acme", "--by", "vendor"])?;
    let orgs: serde_json::Value = serde_json::from_str(&relay.admin(&["org", "list", "--json"])?)?;
    let acme = orgs.as_array().unwrap().iter().find(|o| o["name"] == "acme").unwrap().clone();
    assert_eq!(acme["supported_by"], serde_json::json!([]));
    relay.admin(&["org", "support", "acme", "--by", "vendor"])?;

    let token = relay.join_token("acme")?;
    let tokens = relay.admin(&["token", "list"])?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    assert!(tokens.contains(&hex::encode(digest.as_ref())[..16]), "{tokens}");
    assert!(!tokens.contains(&token));
    let audit = relay.admin(&["audit", "list", "--json"])?;
    for action in
        ["user.role_changed", "user.password_set", "user.enabled", "org.support_removed", "org.support_added"]
    {
        assert!(audit.contains(action), "{action} not audited");
    }
    Ok(())
}

#[test]
fn an_organisations_admin_sees_only_their_organisation() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    relay.add_user("ann", "acme", "admin")?;
    let _ours = relay.agent("erp-db01", "acme", "approver")?;
    let _theirs = relay.agent("build-01", "vendor", "prompt")?;
    let (url, _) = relay.console()?;
    let b = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in_and_enrol(&b, &url, "ann", "pw-ann-123", "admin-pages-0-ann")?;
    b.click("#tab-admin")?;
    b.wait_css("#admin-orgs tr[data-org='acme']")?;
    let orgs = b.text("#admin-orgs")?;
    assert!(
        !orgs.contains("operator") && !orgs.contains("Stop"),
        "only their organisation, read-only: {orgs}"
    );
    let forms = b.rt.block_on(
        b.client.execute("return document.querySelectorAll('#add-org, #add-support').length", vec![]),
    )?;
    assert_eq!(forms.as_u64(), Some(0), "organisations are the operator's");

    b.click("#admin-tab-users")?;
    b.wait_css("#admin-users tr[data-user='bob']")?;
    let users = b.text("#admin-users")?;
    assert!(!users.contains("alice") && !users.contains("admin\n"), "{users}");
    let orgs = b.rt.block_on(
        b.client
            .execute("return [...document.getElementById('add-user-org').options].map(o => o.value)", vec![]),
    )?;
    assert_eq!(orgs, serde_json::json!(["acme"]));
    b.resize(390, 844)?;
    b.screenshot("admin-pages-9-org-admin-users-phone")?;
    b.resize(1280, 900)?;

    b.click("#admin-tab-agents")?;
    b.wait_text("#admin-agents tr[data-agent='erp-db01']", "online")?;
    assert!(!b.text("#admin-agents")?.contains("build-01"));
    Ok(())
}
