//! Files in the engineer's browser, end to end: a real headless Chromium, relay, agent and
//! disk. A download and an upload through the page, each checked against the file's real
//! SHA-256 and audited as `assist cp`'s; what the grant does not cover, a wrong digest, a
//! body longer than declared and a request from elsewhere change nothing. Screenshots go
//! to `<target>/artefacts/console/` (`files-*`).

use super::console::{sign_in, sign_in_and_enrol};
use assist_tests::browser::Browser;
use assist_tests::files_support::{events, noise, sha256};
use assist_tests::{TestRelay, wait_until};
use fantoccini::Locator;

/// POSTs `body` to `path` from the page (its Origin and cookie); returns status and text.
fn post_from_page(b: &Browser, path: &str, content_type: &str, body: &[u8]) -> anyhow::Result<(u64, String)> {
    let script = "const [path, type, bytes, done] = arguments;
        fetch(path, { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': type }, body: new Uint8Array(bytes) })
          .then(async (r) => done([r.status, await r.text()]))
          .catch((e) => done([0, String(e)]));";
    let args = vec![serde_json::json!(path), serde_json::json!(content_type), serde_json::json!(body)];
    let v = b.rt.block_on(b.client.execute_async(script, args))?;
    Ok((v[0].as_u64().unwrap_or(0), v[1].as_str().unwrap_or_default().to_owned()))
}

fn get_from_page(b: &Browser, path: &str) -> anyhow::Result<(u64, String)> {
    let (status, body) = super::console::fetch_from_page(b, path)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[test]
fn an_engineer_downloads_and_uploads_files_in_the_browser_within_the_grant() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let bob = relay.login("bob")?;
    let (url, _) = relay.console()?;

    // The customer's disk: a log to read, a folder to write into, and one outside both.
    let disk = tempfile::tempdir()?;
    let root = disk.path().join("erp");
    std::fs::create_dir_all(root.join("logs"))?;
    std::fs::create_dir_all(root.join("inbox"))?;
    let log = noise(300 * 1024 + 17, 7);
    std::fs::write(root.join("logs/app.log"), &log)?;
    std::fs::write(root.join("inbox/keep.sql"), b"old\n")?;
    let root_s = root.to_str().unwrap().to_owned();
    let inbox = format!("{root_s}/inbox");

    let eng = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in(&eng, &url, "alice")?;
    wait_until("the agent in the form", || Ok(eng.text("#sf-agent")?.contains("erp-db01")))?;
    eng.fill("#sf-ticket", "INC-5150")?;
    eng.fill("#sf-reason", "fetch the log, drop in the fix")?;
    eng.fill("#sf-caps", &format!("shell files.read:{root_s} files.write:{inbox}"))?;
    eng.click("#sf-submit")?;
    eng.wait_text("#sh-status", "Waiting for")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    eng.wait_text("#sh-status", "Connected")?;

    // List the granted root, go into logs/, download app.log.
    eng.wait_css("#sh-files")?;
    eng.click("#fl-roots button.root")?;
    eng.wait_text("#fl-list", "logs/")?;
    eng.click("#fl-list li[data-name='logs'] button.dir")?;
    eng.wait_text("#fl-list", "app.log")?;
    eng.click("#fl-list li[data-name='app.log'] button.download")?;
    let line = eng.wait_text("#fl-done li.transfer", "the same at the agent")?;
    assert!(line.contains(&sha256(&log)), "the page shows the file's real digest: {line}");
    eng.screenshot("files-1-downloaded")?;

    // Upload a file into the writable folder: it lands whole, digest checked.
    let local = tempfile::tempdir()?;
    let fix = noise(200 * 1024 + 3, 11);
    let fix_path = local.path().join("fix.sql");
    std::fs::write(&fix_path, &fix)?;
    let input = eng.rt.block_on(eng.client.find(Locator::Css("#fl-file")))?;
    eng.rt.block_on(input.send_keys(fix_path.to_str().unwrap()))?;
    eng.click("#fl-upload button[type=submit]")?;
    let line = eng.wait_text("#fl-done li.transfer", "uploaded")?;
    assert!(line.contains(&sha256(&fix)), "{line}");
    assert_eq!(std::fs::read(root.join("inbox/fix.sql"))?, fix);
    eng.screenshot("files-2-uploaded")?;

    // Both transfers are audited as `assist cp`'s: both digests, matching.
    let moved = events(&relay, &id, "file.transferred")?;
    let of = |dir: &str| moved.iter().find(|e| e["detail"]["direction"] == dir).cloned();
    let down = of("download").expect("the download is audited");
    assert_eq!(down["detail"]["sha256_agent"], sha256(&log));
    assert_eq!(down["detail"]["sha256_engineer"], sha256(&log));
    let up = of("upload").expect("the upload is audited");
    assert_eq!(up["detail"]["sha256_engineer"], sha256(&fix));
    assert_eq!(up["detail"]["match"], true);
    // The approver watching the session sees both transfers as they happened.
    let apr = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in_and_enrol(&apr, &url, "bob", "pw-bob-123", "files-approver")?;
    let live = format!("#live-sessions li[data-id='{id}']");
    apr.wait_text(&live, "erp-db01")?;
    apr.click(&format!("{live} a.watch"))?;
    apr.wait_text("#w-status", "read-only")?;
    let moved = apr.wait_text("#w-transfers", "fix.sql")?;
    assert!(moved.contains("app.log") && moved.contains("from the server"), "{moved}");
    assert!(moved.contains("to the server") && moved.contains("both ends agree"), "{moved}");
    assert!(moved.contains(&sha256(&fix)[..16]), "{moved}");
    apr.screenshot("files-3-approver-watching-transfers")?;
    let raw = std::fs::read(relay.data_dir().join("recordings").join(format!("{id}.arec")))?;
    let files_by_browser = br#""kind":"files""#;
    assert!(raw.windows(files_by_browser.len()).any(|w| w == files_by_browser), "the channels are recorded");

    // Refused, and nothing changes: outside the grant, a wrong digest, a longer body, a
    // name that is a path, a body that is not the file's type.
    let base = format!("/api/v1/sessions/{id}/files");
    let (status, said) = get_from_page(&eng, &format!("{base}?path=/etc"))?;
    assert_eq!(status, 403, "{said}");
    let (status, said) = get_from_page(&eng, &format!("{base}/download?path=/etc/passwd"))?;
    assert_eq!(status, 403, "{said}");
    let outside = disk.path().join("elsewhere");
    std::fs::create_dir_all(&outside)?;
    let body = b"DROP TABLE x;\n";
    let up = |dir: &str, name: &str, size: usize, sha: &str| {
        format!("{base}/upload?dir={dir}&name={name}&size={size}&sha256={sha}")
    };
    let (status, said) = post_from_page(
        &eng,
        &up(outside.to_str().unwrap(), "x.sql", body.len(), &sha256(body)),
        "application/octet-stream",
        body,
    )?;
    assert_eq!(status, 403, "{said}");
    let (status, said) = post_from_page(
        &eng,
        &up(&inbox, "keep.sql", body.len(), &sha256(b"other")),
        "application/octet-stream",
        body,
    )?;
    assert!(status == 409 || status == 400, "{status} {said}");
    let (status, said) = post_from_page(
        &eng,
        &format!("{}&replace=true", up(&inbox, "keep.sql", body.len(), &sha256(b"other"))),
        "application/octet-stream",
        body,
    )?;
    assert_eq!(status, 409, "{said}");
    assert!(said.contains("digests differ"), "{said}");
    let (status, said) = post_from_page(
        &eng,
        &format!("{}&replace=true", up(&inbox, "keep.sql", 4, &sha256(&body[..4]))),
        "application/octet-stream",
        body,
    )?;
    assert_eq!(status, 409, "{said}");
    let (status, said) = post_from_page(
        &eng,
        &up(&inbox, "..%2Fx.sql", body.len(), &sha256(body)),
        "application/octet-stream",
        body,
    )?;
    assert_eq!(status, 400, "{said}");
    let (status, said) =
        post_from_page(&eng, &up(&inbox, "y.sql", body.len(), &sha256(body)), "text/plain", body)?;
    assert_eq!(status, 400, "{said}");
    assert_eq!(std::fs::read(root.join("inbox/keep.sql"))?, b"old\n", "the old file is untouched");
    assert!(std::fs::read_dir(&outside)?.next().is_none(), "nothing was written outside the grant");
    assert!(!root.join("inbox/y.sql").exists() && !disk.path().join("x.sql").exists());
    let refused = events(&relay, &id, "channel.refused")?;
    assert!(!refused.is_empty(), "the refusals are audited");
    Ok(())
}
