//! The engineer's shell in the browser and watching live, end to end: a real headless
//! Chromium for the engineer and another for the approver, a real relay, agent and PTY.
//! Screenshots go to `<target>/artefacts/console/` (`shell-*`).

use super::console::{fetch_from_page, sign_in, sign_in_and_enrol};
use assist_tests::browser::Browser;
use assist_tests::files_support::events;
use assist_tests::{Cli, TestAgent, TestRelay, wait_for_some, wait_until};
use fantoccini::Locator;

/// Types `text` into the terminal in `term_css` (its hidden textarea takes the keys), then
/// Enter.
fn type_line(b: &Browser, term_css: &str, text: &str) -> anyhow::Result<()> {
    // The textarea is kept out of sight, so WebDriver never calls it displayed: wait for
    // it to exist.
    let css = format!("{term_css} .xterm-helper-textarea");
    let area = wait_for_some(&format!("{css} to exist"), || {
        Ok(b.rt.block_on(b.client.find(Locator::Css(&css))).ok())
    })?;
    let keys = format!("{text}{}", char::from(fantoccini::key::Key::Enter));
    b.rt.block_on(area.send_keys(&keys))?;
    Ok(())
}

/// The terminal's text as rendered in the page.
fn screen(b: &Browser, term_css: &str) -> anyhow::Result<String> {
    let script = format!(
        "const rows = document.querySelector({:?}); return rows ? [...rows.children].map((r) => r.textContent).join('\\n') : '';",
        format!("{term_css} .xterm-rows")
    );
    Ok(b.rt.block_on(b.client.execute(&script, vec![]))?.as_str().unwrap_or_default().to_owned())
}

fn wait_screen(b: &Browser, term_css: &str, needle: &str) -> anyhow::Result<String> {
    wait_for_some(&format!("{needle:?} in {term_css}"), || {
        let s = screen(b, term_css)?;
        Ok(s.contains(needle).then_some(s))
    })
}

/// The terminal's size as the page shows it: (cols, rows).
fn page_size(b: &Browser) -> anyhow::Result<(u16, u16)> {
    let text = b.text("#sh-size")?;
    let (c, r) = text.split_once('×').ok_or_else(|| anyhow::anyhow!("no size in {text:?}"))?;
    Ok((c.trim().parse()?, r.trim().parse()?))
}

#[test]
fn an_engineer_opens_a_shell_in_the_browser_and_an_approver_watches_and_revokes_it() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (url, _) = relay.console()?;
    let ca = relay.data_dir().join("ca.pem");

    // The engineer asks from their page.
    let eng = Browser::open(&ca)?;
    sign_in(&eng, &url, "alice")?;
    eng.wait_css("#mine")?;
    wait_until("the agent in the form", || Ok(eng.text("#sf-agent")?.contains("erp-db01")))?;
    eng.fill("#sf-ticket", "INC-4242")?;
    eng.fill("#sf-reason", "queue stuck since the upgrade")?;
    eng.fill("#sf-caps", "shell files.read:/var/log")?;
    eng.screenshot("shell-1-engineer-form")?;
    eng.click("#sf-submit")?;
    let waiting = eng.wait_text("#sh-status", "Waiting for an approver of acme")?;
    assert!(waiting.contains("acme"), "{waiting}");
    eng.wait_text("#sh-left", "left to answer")?;
    eng.screenshot("shell-2-engineer-waiting")?;

    // The approver approves in another browser.
    let apr = Browser::open(&ca)?;
    sign_in_and_enrol(&apr, &url, "bob", "pw-bob-123", "shell-approver")?;
    let card = apr.wait_text("#requests .request", "INC-4242")?;
    assert!(card.contains("alice") && card.contains("queue stuck"), "{card}");
    apr.click("#requests .request button.approve")?;
    apr.wait_text("#message", "Approved")?;
    eng.wait_text("#sh-status", "Connected")?;
    let id = eng.text("#sh-session")?.trim().to_owned();
    assert!(id.starts_with("s-"), "{id}");

    // Typing reaches the remote shell and its output the page.
    type_line(&eng, "#sh-term", "echo browser-$((6*7))")?;
    wait_screen(&eng, "#sh-term", "browser-42")?;
    eng.screenshot("shell-3-engineer-terminal")?;

    // The window shrinks: the terminal follows, and so does the remote PTY.
    let before = page_size(&eng)?;
    eng.resize(900, 700)?;
    let (cols, rows) = wait_for_some("the terminal to follow the window", || {
        let now = page_size(&eng)?;
        Ok((now != before).then_some(now))
    })?;
    // The resize goes on its own path: ask until the shell reports the new size.
    wait_until("stty size to follow", || {
        type_line(&eng, "#sh-term", "stty size")?;
        Ok(screen(&eng, "#sh-term")?.contains(&format!("{rows} {cols}")))
    })?;
    eng.screenshot("shell-4-engineer-resized")?;

    // The approver watches from the live session: the current screen first, read-only.
    let live = format!("#live-sessions li[data-id='{id}']");
    apr.wait_text(&live, "INC-4242")?;
    apr.click(&format!("{live} a.watch"))?;
    apr.wait_text("#w-status", "read-only")?;
    wait_screen(&apr, "#w-term", "browser-42")?;
    eng.wait_text("#sh-notes", "bob (acme) is watching")?;
    // What the engineer does next shows up at the watcher's.
    type_line(&eng, "#sh-term", "echo after-$((7*6))")?;
    wait_screen(&eng, "#sh-term", "after-42")?;
    wait_screen(&apr, "#w-term", "after-42")?;
    apr.screenshot("shell-5-approver-watching")?;

    // A watcher's typing goes nowhere: the page sends none, and the relay refuses what a
    // socket of the watch sends anyway.
    type_line(&apr, "#w-term", "echo watcher-$((2*21))")?;
    let refused = apr.rt.block_on(apr.client.execute_async(
        "const [path, done] = arguments;
         const ws = new WebSocket(`wss://${location.host}${path}`);
         ws.onopen = () => ws.send(new TextEncoder().encode('echo sneaky-$((40+2))\\r'));
         ws.onmessage = (ev) => { if (typeof ev.data === 'string' && ev.data.includes('refused')) { ws.close(); done(ev.data); } };
         ws.onerror = () => done('error');",
        vec![serde_json::json!(format!("/api/v1/sessions/{id}/watch"))],
    ))?;
    assert!(refused.as_str().unwrap_or_default().contains("read-only"), "{refused}");
    type_line(&eng, "#sh-term", "echo mark-$((1+1))")?;
    let seen = wait_screen(&eng, "#sh-term", "mark-2")?;
    assert!(
        !seen.contains("watcher-42") && !seen.contains("sneaky-42"),
        "a watcher's input reached the shell: {seen}"
    );

    // The approver revokes the shell from the watching page: the engineer's terminal
    // closes with the reason, and the session goes on with what else it holds.
    apr.click("#w-granted button.revoke[data-cap='shell']")?;
    let closed = eng.wait_text("#sh-status", "The terminal was closed")?;
    assert!(closed.contains("shell revoked by bob"), "{closed}");
    eng.screenshot("shell-6-engineer-revoked")?;
    wait_until("the watching page to show the narrower grant", || {
        Ok(!apr.text("#w-granted")?.lines().any(|l| l.trim() == "shell"))
    })?;
    // Then ends it from the same page.
    apr.fill("#w-end-reason", "done for today")?;
    apr.click("#w-end-form button[type=submit]")?;
    apr.wait_text("#w-status", "ended")?;
    apr.screenshot("shell-7-approver-ended")?;

    // Watching was audited, joining and leaving; the revocation is bob's.
    assert!(!events(&relay, &id, "session.watch_started")?.is_empty());
    wait_until("the watch to be left", || Ok(!events(&relay, &id, "session.watch_stopped")?.is_empty()))?;
    assert!(events(&relay, &id, "grant.revoked")?.iter().any(|e| e["actor"] == "bob"));

    // The recording holds the engineer's output and says the client was a browser.
    wait_until("the session to end", || Ok(!events(&relay, &id, "recording.sealed")?.is_empty()))?;
    let (status, cast) = fetch_from_page(&apr, &format!("/api/v1/audit/sessions/{id}/asciicast"))?;
    let cast = String::from_utf8_lossy(&cast);
    assert_eq!(status, 200, "{cast}");
    assert!(cast.contains("browser-42") && cast.contains("after-42"), "{cast}");
    let raw = std::fs::read(relay.data_dir().join("recordings").join(format!("{id}.arec")))?;
    let needle = br#""client":"browser""#;
    assert!(raw.windows(needle.len()).any(|w| w == needle), "the recording names the client");

    // The engineer's own page says where each of their sessions stands: this one ended,
    // and why; another, denied with the approver's reason.
    eng.click("#tab-mine")?;
    let mine = eng.wait_text("#mine-list", "done for today")?;
    assert!(mine.contains("INC-4242") && mine.contains("Ended: ended by bob"), "{mine}");
    eng.fill("#sf-ticket", "INC-4243")?;
    eng.fill("#sf-reason", "one more look")?;
    eng.fill("#sf-caps", "shell")?;
    eng.click("#sf-submit")?;
    eng.wait_text("#sh-status", "Waiting for")?;
    apr.click("#tab-approvals")?;
    apr.wait_text("#requests .request", "INC-4243")?;
    apr.click("#requests .request button.deny")?;
    apr.fill("#requests .request input.deny-reason", "not during month-end")?;
    apr.click("#requests .request button.deny-confirm")?;
    let said = eng.wait_text("#sh-status", "not during month-end")?;
    assert!(said.contains("denied by bob"), "{said}");
    eng.click("#tab-mine")?;
    let mine = eng.wait_text("#mine-list", "Denied by bob: not during month-end")?;
    assert!(mine.contains("INC-4243"), "{mine}");
    eng.resize(1280, 900)?;
    eng.rt.block_on(eng.client.execute("document.getElementById('mine-list').scrollIntoView()", vec![]))?;
    eng.screenshot("shell-8-engineer-my-sessions")?;
    eng.resize(390, 844)?;
    eng.rt.block_on(eng.client.execute("document.getElementById('mine-list').scrollIntoView()", vec![]))?;
    eng.screenshot("shell-9-engineer-my-sessions-phone")?;
    Ok(())
}

#[test]
fn closing_the_tab_ends_the_session_as_an_engineer_disconnect() -> anyhow::Result<()> {
    // A page that went away is waited for as long as consent is: short here.
    let relay = TestRelay::start_with(&["--consent-timeout", "15s"])?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let bob = relay.login("bob")?;
    let (url, _) = relay.console()?;
    let eng = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in(&eng, &url, "alice")?;
    wait_until("the agent in the form", || Ok(eng.text("#sf-agent")?.contains("erp-db01")))?;
    eng.fill("#sf-ticket", "INC-77")?;
    eng.fill("#sf-reason", "check the disk")?;
    eng.click("#sf-submit")?;
    eng.wait_text("#sh-status", "Waiting for")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    eng.wait_text("#sh-status", "Connected")?;
    type_line(&eng, "#sh-term", "echo up-$((40+2))")?;
    wait_screen(&eng, "#sh-term", "up-42")?;
    eng.resize(390, 844)?;
    eng.screenshot("shell-10-engineer-terminal-phone")?;
    drop(eng);
    // Nobody picks it up: once the linger passed, it ends as an engineer disconnect.
    wait_until("the session to end", || Ok(!events(&relay, &id, "session.ended")?.is_empty()))?;
    let ended = events(&relay, &id, "session.ended")?;
    assert_eq!(ended[0]["detail"]["reason"], "engineer disconnected", "{ended:?}");
    assert!(events(&relay, &id, "session.reattached")?.is_empty());
    Ok(())
}

#[test]
fn a_grant_expiring_closes_the_pages_terminal_with_the_reason() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let bob = relay.login("bob")?;
    let (url, _) = relay.console()?;
    let eng = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in(&eng, &url, "alice")?;
    wait_until("the agent in the form", || Ok(eng.text("#sf-agent")?.contains("erp-db01")))?;
    eng.fill("#sf-ticket", "INC-12")?;
    eng.fill("#sf-reason", "a quick look")?;
    eng.click("#sf-submit")?;
    eng.wait_text("#sh-status", "Waiting for")?;
    let id = bob.pending_request()?;
    // The approver grants less time than asked: a few seconds.
    bob.ok(&["approve", &id, "--for", "4s"])?;
    eng.wait_text("#sh-status", "Connected")?;
    type_line(&eng, "#sh-term", "echo before-$((3*3))")?;
    wait_screen(&eng, "#sh-term", "before-9")?;
    let closed = eng.wait_text("#sh-status", "The terminal was closed")?;
    assert!(closed.contains("the grant expired"), "{closed}");
    eng.wait_text("#sh-notes", &format!("session {id} stays open"))?;
    eng.screenshot("shell-12-engineer-grant-expired")?;
    // Typing goes nowhere now: the terminal takes no input.
    let disabled = eng.rt.block_on(
        eng.client.execute("return document.querySelector('#sh-term').classList.contains('closed')", vec![]),
    )?;
    assert_eq!(disabled, serde_json::json!(true));
    assert!(!events(&relay, &id, "grant.expired")?.is_empty());
    Ok(())
}

/// erp-db01 online; alice asks for a shell from her page and bob approves it from the
/// CLI: the page is connected. Returns the agent (alive while held), alice's page, bob and
/// the session.
fn an_approved_shell(
    relay: &TestRelay,
    url: &str,
    (ticket, reason): (&str, &str),
) -> anyhow::Result<(TestAgent, Browser, Cli, String)> {
    relay.standard_world()?;
    let agent = relay.agent("erp-db01", "acme", "approver")?;
    let bob = relay.login("bob")?;
    let eng = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in(&eng, url, "alice")?;
    wait_until("the agent in the form", || Ok(eng.text("#sf-agent")?.contains("erp-db01")))?;
    eng.fill("#sf-ticket", ticket)?;
    eng.fill("#sf-reason", reason)?;
    eng.click("#sf-submit")?;
    eng.wait_text("#sh-status", "Waiting for")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    eng.wait_text("#sh-status", "Connected")?;
    Ok((agent, eng, bob, id))
}

#[test]
fn a_page_that_went_away_picks_its_session_up_again_without_a_second_consent() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    let (url, _) = relay.console()?;
    let (_agent, eng, _bob, id) = an_approved_shell(&relay, &url, ("INC-31", "watch the nightly import"))?;
    type_line(&eng, "#sh-term", "echo first-$((2*3))")?;
    wait_screen(&eng, "#sh-term", "first-6")?;

    // The page goes away as a reload or a lost network makes it go: the socket closes
    // without the page saying it leaves. The shell channel ends; the session stays.
    eng.goto(&url)?;
    eng.wait_css("#home:not([hidden])")?;

    // "My sessions" offers to reconnect; doing so asks nobody again.
    eng.click("#tab-mine")?;
    eng.click(&format!("#mine-list li[data-id='{id}'] button.reattach"))?;
    eng.wait_text("#sh-notes", "Reconnected")?;
    eng.wait_text("#sh-status", "Connected")?;
    type_line(&eng, "#sh-term", "echo again-$((6*7))")?;
    wait_screen(&eng, "#sh-term", "again-42")?;
    eng.screenshot("shell-11-engineer-reconnected")?;
    let back = events(&relay, &id, "session.reattached")?;
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(back[0]["actor"], "alice");
    assert_eq!(events(&relay, &id, "session.approved")?.len(), 1, "no second consent");

    assert!(events(&relay, &id, "session.ended")?.is_empty());

    // "Disconnect" leaves on purpose: the session ends at once.
    eng.click("#sh-leave")?;
    wait_until("the session to end", || Ok(!events(&relay, &id, "session.ended")?.is_empty()))?;
    let ended = events(&relay, &id, "session.ended")?;
    assert_eq!(ended[0]["detail"]["reason"], "engineer disconnected", "{ended:?}");
    Ok(())
}

#[test]
fn assist_watch_in_a_pty_shows_a_running_session_and_ends_when_it_ends() -> anyhow::Result<()> {
    use anyhow::Context;
    use assist_tests::WAIT;
    use expectrl::Expect;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;

    let mut cmd = alice.command();
    cmd.args(["shell", "erp-db01", "--ticket", "INC-88", "--reason", "slow reports"]);
    cmd.env("TERM", "xterm-256color");
    let mut eng = expectrl::Session::spawn(cmd)?;
    eng.set_expect_timeout(Some(WAIT));
    eng.expect("waiting for an approver of acme").context("waiting")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    eng.expect("approved by bob").context("approved")?;
    eng.send_line("echo before-$((6*7))")?;
    eng.expect("before-42").context("before-42")?;

    // Bob watches in a terminal of his own: the screen so far first.
    let mut cmd = bob.command();
    cmd.args(["watch", &id]);
    let mut watcher = expectrl::Session::spawn(cmd)?;
    watcher.set_expect_timeout(Some(WAIT));
    watcher.expect("before-42").context("the current screen at the watcher's")?;
    eng.expect("bob (acme) is watching").context("the engineer is told")?;
    // What bob types goes nowhere; what alice does shows at once.
    watcher.send_line("echo from-bob-$((1+1))")?;
    eng.send_line("echo during-$((5*5))")?;
    eng.expect("during-25").context("during-25")?;
    let seen = watcher.expect("during-25").context("the live output at the watcher's")?;
    assert!(!String::from_utf8_lossy(seen.before()).contains("from-bob-2"), "bob's typing reached the shell");

    // The session ends: so does the watch.
    eng.send_line("exit")?;
    eng.expect("ended").context("the engineer's session ends")?;
    watcher.expect(format!("session {id} ended").as_str()).context("the watch ends with the session")?;
    let status = watcher.get_process_mut().wait()?;
    assert!(matches!(status, expectrl::process::unix::WaitStatus::Exited(_, 0)), "{status:?}");
    wait_until("the watch to be left", || Ok(!events(&relay, &id, "session.watch_stopped")?.is_empty()))?;
    let started = events(&relay, &id, "session.watch_started")?;
    assert_eq!(started[0]["actor"], "bob", "{started:?}");
    Ok(())
}

/// p50 and p99 of `v` (sorted here), in milliseconds.
fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// A measurement, not a test (run it with `--ignored`): keystroke echo through the relay
/// from the browser (keydown in the page to the echoed character rendered by xterm.js)
/// and from `assist shell` in a PTY (a byte written to the terminal to its echo read
/// back), in the same run, against `stty raw -echo; exec cat` on the agent.
#[test]
#[ignore = "a measurement; prints figures"]
fn measure_keystroke_echo_browser_and_cli() -> anyhow::Result<()> {
    use anyhow::Context;
    use expectrl::Expect;
    const N: usize = 200;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let (url, _) = relay.console()?;

    // The browser.
    let eng = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in(&eng, &url, "alice")?;
    wait_until("the agent in the form", || Ok(eng.text("#sf-agent")?.contains("erp-db01")))?;
    // Every binary message the page's socket receives is timed too, to split the figure
    // into the round trip to the agent and the terminal's rendering.
    eng.rt.block_on(eng.client.execute(
        "window.__recv = []; window.__sent = [];
         const Plain = window.WebSocket;
         window.WebSocket = function (...args) {
           const ws = new Plain(...args);
           ws.addEventListener('message', (e) => { if (typeof e.data !== 'string') window.__recv.push(performance.now()); });
           const send = ws.send.bind(ws);
           ws.send = (d) => { if (typeof d !== 'string') window.__sent.push(performance.now()); send(d); };
           return ws;
         };",
        vec![],
    ))?;
    eng.fill("#sf-ticket", "BENCH-1")?;
    eng.fill("#sf-reason", "echo")?;
    eng.click("#sf-submit")?;
    eng.wait_text("#sh-status", "Waiting for")?;
    bob.ok(&["approve", &bob.pending_request()?])?;
    eng.wait_text("#sh-status", "Connected")?;
    type_line(&eng, "#sh-term", "stty raw -echo; printf RE; printf 'ADY\\n'; exec cat")?;
    wait_screen(&eng, "#sh-term", "READY")?;
    eng.rt.block_on(eng.client.execute(
        "window.__echo = { down: [], seen: [] };
         const area = document.querySelector('#sh-term .xterm-helper-textarea');
         area.addEventListener('keydown', () => window.__echo.down.push(performance.now()), true);
         const rows = document.querySelector('#sh-term .xterm-rows');
         let count = (rows.textContent.match(/x/g) || []).length;
         new MutationObserver(() => {
           const n = (rows.textContent.match(/x/g) || []).length;
           while (count < n) { count++; window.__echo.seen.push(performance.now()); }
         }).observe(rows, { subtree: true, childList: true, characterData: true });",
        vec![],
    ))?;
    let css = "#sh-term .xterm-helper-textarea";
    let area = eng.rt.block_on(eng.client.find(Locator::Css(css)))?;
    for i in 1..=N {
        eng.rt.block_on(area.send_keys("x"))?;
        wait_until("the echo", || {
            let n = eng.rt.block_on(eng.client.execute("return window.__echo.seen.length", vec![]))?;
            Ok(n.as_u64().unwrap_or(0) as usize >= i)
        })?;
    }
    let v = eng.rt.block_on(eng.client.execute("return window.__echo", vec![]))?;
    let nums = |k: &str| -> Vec<f64> { v[k].as_array().unwrap().iter().filter_map(|x| x.as_f64()).collect() };
    let browser: Vec<f64> = nums("seen").iter().zip(nums("down")).map(|(s, d)| s - d).collect();
    // The last N messages are the N echoes.
    let recv = eng.rt.block_on(eng.client.execute("return window.__recv", vec![]))?;
    let recv: Vec<f64> = recv.as_array().unwrap().iter().filter_map(|x| x.as_f64()).collect();
    let recv = &recv[recv.len().saturating_sub(N)..];
    let wire: Vec<f64> = recv.iter().zip(nums("down")).map(|(r, d)| r - d).collect();
    let sent = eng.rt.block_on(eng.client.execute("return window.__sent", vec![]))?;
    let sent: Vec<f64> = sent.as_array().unwrap().iter().filter_map(|x| x.as_f64()).collect();
    let sent = &sent[sent.len().saturating_sub(N)..];
    let relay_trip: Vec<f64> = recv.iter().zip(sent).map(|(r, s)| r - s).collect();

    // The CLI, in the same run.
    let mut cmd = alice.command();
    cmd.args(["shell", "erp-db01", "--ticket", "BENCH-2", "--reason", "echo", "-t", "--"]);
    cmd.args(["sh", "-c", "stty raw -echo; printf RE; printf 'ADY\\n'; exec cat"]);
    let mut p = expectrl::Session::spawn(cmd)?;
    p.set_expect_timeout(Some(assist_tests::WAIT));
    p.expect("waiting for").context("waiting")?;
    bob.ok(&["approve", &bob.pending_request()?])?;
    p.expect("READY").context("READY")?;
    let mut cli = Vec::with_capacity(N);
    for _ in 0..N {
        let t = std::time::Instant::now();
        p.send("x")?;
        p.expect("x").context("echo")?;
        cli.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (b50, b99) = percentiles(browser);
    let (w50, w99) = percentiles(wire);
    let (r50, r99) = percentiles(relay_trip);
    let (c50, c99) = percentiles(cli);
    println!(
        "keystroke echo over {N} keys: browser p50 {b50:.2} ms p99 {b99:.2} ms \
         (keydown to the echo's message: p50 {w50:.2} ms p99 {w99:.2} ms; \
         the page's send to the echo's message: p50 {r50:.2} ms p99 {r99:.2} ms); \
         assist shell p50 {c50:.2} ms p99 {c99:.2} ms"
    );
    Ok(())
}

#[test]
fn signing_out_closes_an_open_shell_and_ends_its_session() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    let (url, _) = relay.console()?;
    let (_agent, eng, _bob, id) = an_approved_shell(&relay, &url, ("INC-91", "rotate logs"))?;
    // The console session ends behind the page's back (as from another tab): the open
    // socket notices and closes, and the page says why.
    eng.rt.block_on(eng.client.execute_async(
        "const [done] = arguments;
         fetch('/api/v1/logout', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })
           .then(() => done(true), () => done(false));",
        vec![],
    ))?;
    eng.wait_text("#sh-status", "console session has ended")?;
    wait_until("the session to end", || Ok(!events(&relay, &id, "session.ended")?.is_empty()))?;
    let ended = events(&relay, &id, "session.ended")?;
    assert_eq!(ended[0]["detail"]["reason"], "engineer disconnected", "{ended:?}");
    Ok(())
}
