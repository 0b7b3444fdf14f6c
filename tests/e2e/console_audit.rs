//! The auditor's console in a real Chromium, on real sessions (issue 14): the sessions
//! list filtered by priority and end reason, a real `assist cp` on its session page with
//! both digests, its channels and one channel's raw bytes (the same as `recording export
//! --format raw`), the replay sought to its end marker, the audit log with real events
//! and its chain verified; and a user of another organisation sees none of it.
//! Screenshots go to `<target>/artefacts/console/`.

use super::console::{fetch_from_page, sign_in, wait_markers};
use assist_tests::browser::Browser;
use assist_tests::files_support::{agent_with, approved, sha256, stderr};
use assist_tests::{TestRelay, wait_until};

/// Runs a script in the page and returns its string result.
fn js(b: &Browser, script: &str) -> anyhow::Result<String> {
    let v = b.rt.block_on(b.client.execute(script, vec![]))?;
    Ok(v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))
}

/// Sets one field of the sessions filters (the others cleared), submits them and waits
/// until the list shows `shown` and not `hidden`.
fn filter_sessions(b: &Browser, name: &str, value: &str, shown: &str, hidden: &str) -> anyhow::Result<()> {
    js(
        b,
        &format!(
            "document.getElementById('filters').reset(); document.querySelector('#filters [name={name}]').value = {value:?}; return ''"
        ),
    )?;
    b.click("#filters button[type=submit]")?;
    wait_until("the filtered list", || {
        let list = b.text("#review-list tbody")?;
        Ok(list.contains(shown) && !list.contains(hidden))
    })
}

#[test]
fn an_auditor_reviews_a_real_transfer_the_audit_log_and_the_replays_end_and_others_see_none_of_it()
-> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    relay.add_user("carol", "acme", "auditor")?;
    relay.admin(&["org", "add", "other"])?;
    relay.add_user("olga", "other", "auditor")?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;

    // A shell at P1 that ends by itself, and a real download at the default P2.
    let shell_args = ["shell", "erp-db01", "--ticket", "INC-7001", "--priority", "P1", "--reason", "look"];
    let (out, shell_id) =
        approved(&alice, &bob, &[&shell_args[..], &["--", "sh", "-c", "echo audit-shell-output"]].concat())?;
    assert!(out.status.success(), "{}", stderr(&out));
    let files = tempfile::tempdir()?;
    let remote = std::fs::canonicalize(files.path())?.join("report.csv");
    let content = assist_tests::files_support::noise(200_000, 7);
    std::fs::write(&remote, &content)?;
    let local = files.path().join("local");
    std::fs::create_dir(&local)?;
    let cp = [
        "cp",
        &format!("erp-db01:{}", remote.display()),
        local.to_str().unwrap(),
        "--ticket",
        "INC-7002",
        "--reason",
        "the month's report",
    ];
    let (out, cp_id) = approved(&alice, &bob, &cp)?;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(local.join("report.csv"))?, content);
    for id in [&shell_id, &cp_id] {
        wait_until("the recording to be sealed", || {
            Ok(relay.admin(&["recording", "verify", id]).is_ok_and(|out| out.starts_with("valid")))
        })?;
    }

    let (url, _) = relay.console()?;
    let b = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in(&b, &url, "carol")?;
    b.wait_text("#review-list tbody", "INC-7002")?;
    // Priority and end reason narrow the list.
    filter_sessions(&b, "priority", "p1", "INC-7001", "INC-7002")?;
    b.wait_text("#page-of", "1 session")?;
    filter_sessions(&b, "end_reason", "transfer", "INC-7002", "INC-7001")?;
    b.wait_text("#page-of", "1 session")?;
    b.screenshot("audit-1-sessions-filtered")?;

    // The transfer's session page: both digests, the channel, its raw bytes.
    b.click(&format!("#review-list tr[data-id='{cp_id}']"))?;
    b.wait_text("#sp-recording", "valid")?;
    let want = sha256(&content);
    let transfers = b.wait_text("#sp-transfers", &want)?;
    assert_eq!(transfers.matches(&want).count(), 2, "both digests: {transfers}");
    assert!(transfers.contains("report.csv") && transfers.contains("yes"), "{transfers}");
    let channels = b.wait_text("#sp-channels tbody", "files")?;
    assert!(channels.contains("report.csv"), "{channels}");
    let link = b.wait_css("#sp-channels a.raw-out")?;
    let href = b.rt.block_on(link.attr("href"))?.unwrap_or_default();
    let channel: u32 =
        js(&b, "return document.querySelector('#sp-channels a.raw-out').closest('tr').dataset.channel")?
            .trim_matches('"')
            .parse()?;
    let (status, raw) = fetch_from_page(&b, &href)?;
    assert_eq!(status, 200, "{href}");
    let exported = files.path().join("exported.bin");
    relay.admin(&[
        "recording",
        "export",
        &cp_id,
        "--format",
        "raw",
        "--channel",
        &channel.to_string(),
        "--direction",
        "out",
        "--output",
        exported.to_str().unwrap(),
    ])?;
    let exported = std::fs::read(&exported)?;
    assert!(!raw.is_empty());
    assert_eq!(raw, exported, "the page's raw download is the recording's bytes");
    assert_eq!(raw, content, "a download's channel carries exactly the file");
    // A session of transfers only offers no terminal recording to download.
    let cast_hidden = js(&b, "return document.getElementById('sp-cast').parentElement.hidden")?;
    assert_eq!(cast_hidden, "true", "no asciicast download for a transfer session");
    b.wait_text("#sp-no-replay", "Nothing to replay")?;
    b.screenshot("audit-2-transfer-session")?;

    // The shell's replay: the end marker is on the bar, and seeking to it shows the end.
    b.goto(&format!("{url}/#session/{shell_id}"))?;
    // The title changes with the rest of the page (the previous session's player goes).
    b.wait_text("#sp-title", "INC-7001")?;
    b.wait_text("#sp-recording", "valid")?;
    wait_markers(&b, 2)?;
    // The shell's session offers its terminal recording (once its channels are listed).
    b.wait_text("#sp-channels tbody", "shell")?;
    let cast = b.rt.block_on(b.wait_css("#sp-cast")?.attr("href"))?.unwrap_or_default();
    assert!(cast.ends_with("/asciicast") && cast.contains(shell_id.as_str()), "{cast}");
    let cast_hidden = js(&b, "return document.getElementById('sp-cast').parentElement.hidden")?;
    assert_eq!(cast_hidden, "false", "the shell session offers its asciicast");
    let (status, body) = fetch_from_page(&b, &cast)?;
    assert_eq!(status, 200, "{cast}");
    assert!(body.starts_with(b"{"), "an asciicast begins with its JSON header");
    js(
        &b,
        "const m = document.querySelectorAll('#sp-player .ap-marker-container'); m[m.length - 1].id = 'end-marker'; return ''",
    )?;
    let last = "#end-marker";
    let tip = js(&b, &format!("return document.querySelector('{last} .ap-tooltip').textContent"))?;
    assert!(tip.contains("ended"), "{tip}");
    b.click(last)?;
    let shown = || {
        js(
            &b,
            "return document.querySelector('#sp-player .ap-term-text').textContent + ' @ ' + document.querySelector('#sp-player .ap-time-elapsed').textContent + ' markers ' + [...document.querySelectorAll('#sp-player .ap-marker-container')].map((m) => m.style.left + ' ' + m.textContent).join(' | ')",
        )
    };
    if wait_until("the replay to show the end", || Ok(shown()?.contains("audit-shell-output"))).is_err() {
        b.screenshot("audit-replay-end-failed")?;
        anyhow::bail!("seeking to the end marker never showed the output: {:?}", shown()?);
    }
    let past = js(
        &b,
        &format!(
            "return String(document.querySelector('{last} .ap-marker').classList.contains('ap-marker-past'))"
        ),
    )?;
    assert_eq!(past, "true", "the player stands at the end marker");
    b.screenshot("audit-3-replay-at-end")?;
    // Using the controls never scrolls the terminal inside the player's box (WebDriver's
    // click, like a keyboard's focus, scrolls the clicked control into view): the first
    // row stays where it is painted. (From the top of the page, so the click scrolls.)
    js(&b, "window.scrollTo(0, 0); return ''")?;
    b.click("#sp-player .ap-playback-button")?;
    let first_row = "const p = document.querySelector('#sp-player .ap-player'); \
        const l = document.querySelector('#sp-player .ap-line').getBoundingClientRect(); \
        return String(p.scrollTop === 0 && l.top >= p.getBoundingClientRect().top)";
    assert_eq!(js(&b, first_row)?, "true", "the terminal's first row is inside the player");

    // The audit log: real events, the chain valid, filtered by action.
    b.click("#tab-auditlog")?;
    b.wait_css("#al-chain.valid")?;
    let chain = b.text("#al-chain")?;
    assert!(chain.to_lowercase().contains("chain valid") && chain.contains("events verified"), "{chain}");
    let log = b.wait_text("#al-list tbody", &cp_id)?;
    for action in ["session.requested", "session.approved", "file.transferred", "session.ended"] {
        assert!(log.contains(action), "{action} missing: {log}");
    }
    js(&b, "document.querySelector('#al-filters [name=action]').value = 'file.transferred'; return ''")?;
    b.click("#al-filters button[type=submit]")?;
    b.wait_text("#al-page-of", "1 event")?;
    let log = b.text("#al-list tbody")?;
    assert!(log.contains("file.transferred") && log.contains(&want), "{log}");
    b.screenshot("audit-4-log")?;
    b.resize(390, 844)?;
    b.screenshot("audit-5-log-phone")?;
    b.resize(1280, 900)?;

    // Another organisation's auditor: no sessions, no session page, no channels or bytes,
    // and none of these events in their audit log.
    b.click("#logout")?;
    b.wait_css("#signin-form")?;
    sign_in(&b, &url, "olga")?;
    b.wait_css("#review-none:not([hidden])")?;
    for id in [&shell_id, &cp_id] {
        for path in [
            format!("/api/v1/audit/sessions/{id}"),
            format!("/api/v1/audit/sessions/{id}/channels"),
            format!("/api/v1/audit/sessions/{id}/channels/{channel}/out"),
            format!("/api/v1/audit/sessions/{id}/asciicast"),
        ] {
            assert_eq!(fetch_from_page(&b, &path)?.0, 404, "{path}");
        }
    }
    b.goto(&format!("{url}/#session/{cp_id}"))?;
    b.wait_text("#sp-title", "No such session")?;
    b.click("#tab-auditlog")?;
    b.wait_css("#al-chain.valid")?;
    b.wait_text("#al-page-of", "Page 1")?;
    let log = b.text("#auditlog")?;
    for secret in [shell_id.as_str(), cp_id.as_str(), "erp-db01", "INC-700", "acme"] {
        assert!(!log.contains(secret), "olga sees {secret}: {log}");
    }
    b.screenshot("audit-6-other-organisation")?;
    Ok(())
}
