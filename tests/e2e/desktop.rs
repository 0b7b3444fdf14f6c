//! A customer's desktop in the engineer's browser, end to end: a real Xvfb (started once
//! for this test binary), a test X client drawing a known picture and printing the input
//! it receives (`assist-test-xclient`), the real agent capturing and encoding it, the real
//! relay, and a real headless Chromium decoding H.264 with WebCodecs. Screenshots go to
//! `<target>/artefacts/console/` (`desktop-*`).

use super::console::sign_in;
use assist_tests::browser::Browser;
use assist_tests::files_support::events;
use assist_tests::{Proc, TestRelay, bin, wait_for_some, wait_until};
use fantoccini::Locator;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

/// The Xvfb of this test binary: 640×480, its own display number.
pub(super) struct Xvfb {
    pub(super) display: String,
    _child: Child,
    // Closing this (when the test binary exits) makes the wrapper shell stop Xvfb.
    _stdin: ChildStdin,
    _stdout: BufReader<ChildStdout>,
}

static XVFB: OnceLock<Mutex<Xvfb>> = OnceLock::new();

fn start_xvfb() -> anyhow::Result<Xvfb> {
    // Xvfb picks a free display and writes its number on fd 1 once it accepts clients.
    let script =
        "Xvfb -displayfd 1 -screen 0 640x480x24 -nolisten tcp -noreset & x=$!; read _; kill $x; wait $x";
    let mut child = Command::new("sh")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdin = child.stdin.take().expect("piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    let n: u32 = line.trim().parse().map_err(|_| anyhow::anyhow!("Xvfb did not start (printed {line:?})"))?;
    Ok(Xvfb { display: format!(":{n}"), _child: child, _stdin: stdin, _stdout: stdout })
}

/// The shared Xvfb, held for the whole of one test (one picture on one screen at a time).
pub(super) fn xvfb() -> MutexGuard<'static, Xvfb> {
    let lock = XVFB.get_or_init(|| Mutex::new(start_xvfb().expect("Xvfb (install the Debian package xvfb)")));
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) const RED: (u8, u8, u8) = (0xd0, 0x30, 0x20);
pub(super) const BLUE: (u8, u8, u8) = (0x20, 0x50, 0xd0);
/// The customer's notice bar (`assist_desktop::indicator`): amber.
pub(super) const NOTICE: (u8, u8, u8) = (0xff, 0xc1, 0x07);
pub(super) const GREEN: (u8, u8, u8) = (0x30, 0xc0, 0x40);

pub(super) fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("{r:02x}{g:02x}{b:02x}")
}

/// The test X client on `display`: left half red, right half blue.
pub(super) fn picture(display: &str) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin("assist-test-xclient"));
    cmd.args([display, &hex(RED), &hex(BLUE)]);
    let mut p = Proc::spawn(cmd)?;
    p.stdout.wait_for("ready 640 480")?;
    Ok(p)
}

/// The colour of the decoded picture at (`x`, `y`) in screen pixels, once there is one.
fn pixel(b: &Browser, x: u32, y: u32) -> anyhow::Result<Option<(u8, u8, u8)>> {
    let script = "const [x, y] = arguments;
        const c = document.querySelector('#dk-screen canvas.desktop-screen');
        if (!c || !c.width || !document.querySelector('#dk-screen[data-frames]')) return null;
        const d = c.getContext('2d').getImageData(x, y, 1, 1).data;
        return [d[0], d[1], d[2]];";
    let v = b.rt.block_on(b.client.execute(script, vec![x.into(), y.into()]))?;
    let Some(a) = v.as_array() else { return Ok(None) };
    let c = |i: usize| a[i].as_u64().unwrap_or(0) as u8;
    Ok(Some((c(0), c(1), c(2))))
}

/// Within what H.264 at the encoder's rate leaves of a flat colour.
pub(super) fn near(a: (u8, u8, u8), b: (u8, u8, u8)) -> bool {
    let d = |x: u8, y: u8| (x as i32 - y as i32).abs() <= 24;
    d(a.0, b.0) && d(a.1, b.1) && d(a.2, b.2)
}

pub(super) fn wait_colour(b: &Browser, (x, y): (u32, u32), want: (u8, u8, u8)) -> anyhow::Result<()> {
    let mut last = None;
    wait_until(&format!("the canvas at {x},{y} to show {want:?} (last {last:?})"), || {
        last = pixel(b, x, y)?;
        Ok(last.is_some_and(|p| near(p, want)))
    })
}

/// Sends input through the page's socket as the page would, whatever it is granted.
fn send_click_anyway(b: &Browser, x: u16, y: u16) -> anyhow::Result<()> {
    let script = "const [x, y, done] = arguments;
        import('/desktop-view.js').then(({ input }) => {
          for (const m of [input.move(x, y), input.button(0, true), input.button(0, false)]) window.assistDesktop.send(m);
          done(true);
        });";
    b.rt.block_on(b.client.execute_async(script, vec![x.into(), y.into()]))?;
    Ok(())
}

/// Alice signs in on the console at `url` and asks for erp-ws01's desktop from her page,
/// ticking `boxes` (`#sf-control`, `#sf-clipboard`) first.
pub(super) fn ask_for_desktop(
    relay: &TestRelay,
    url: &str,
    (ticket, reason): (&str, &str),
    boxes: &[&str],
) -> anyhow::Result<Browser> {
    let eng = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in(&eng, url, "alice")?;
    wait_until("the agent in the form", || Ok(eng.text("#sf-agent")?.contains("erp-ws01")))?;
    eng.fill("#sf-ticket", ticket)?;
    eng.fill("#sf-reason", reason)?;
    for b in boxes {
        eng.click(b)?;
    }
    eng.click("#sf-desktop")?;
    Ok(eng)
}

#[test]
fn an_engineer_sees_and_controls_a_desktop_in_the_browser_until_control_is_revoked() -> anyhow::Result<()> {
    let x = xvfb();
    let mut client = picture(&x.display)?;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent_with("erp-ws01", "acme", "approver", &["--display", &x.display])?;
    let (url, _) = relay.console()?;

    // The engineer asks for the desktop with control, from their page.
    let eng = ask_for_desktop(
        &relay,
        &url,
        ("INC-5150", "the ERP client shows an error dialog"),
        &["#sf-control"],
    )?;
    eng.wait_text("#dk-status", "Waiting for an approver of acme")?;
    let bob = relay.login("bob")?;
    let id = bob.pending_request()?;
    let asked: serde_json::Value = serde_json::from_str(&bob.ok(&["requests", "--json"])?)?;
    let kinds = serde_json::json!([{ "kind": "desktop_view" }, { "kind": "desktop_control" }]);
    assert_eq!(asked[0]["capabilities"], kinds, "{asked}");
    bob.ok(&["approve", &id])?;
    eng.wait_text("#dk-status", "Connected: view and control")?;
    eng.wait_text("#dk-mode", "You may use the mouse and keyboard")?;

    // The picture arrives, decoded by WebCodecs: each half in its colour.
    wait_colour(&eng, (160, 240), RED)?;
    wait_colour(&eng, (480, 240), BLUE)?;
    // The customer's screen says who is looking: the agent's notice bar at the top centre,
    // captured like the rest of the screen, so the engineer sees it too.
    wait_colour(&eng, (320, 5), NOTICE)?;
    eng.screenshot("desktop-1-view-and-control")?;
    // And follows a change.
    client.write_line(&format!("left {}", hex(GREEN)))?;
    client.stdout.wait_for("drawn")?;
    wait_colour(&eng, (160, 240), GREEN)?;

    // A click in the middle of the picture arrives at the middle of the screen, and a word
    // typed after it arrives key by key.
    // WebDriver clicks the middle of the part of the element in view.
    let expected = eng.rt.block_on(eng.client.execute(
        "const r = document.querySelector('#dk-screen').getBoundingClientRect();
         const top = Math.max(r.top, 0), bottom = Math.min(r.bottom, innerHeight);
         const left = Math.max(r.left, 0), right = Math.min(r.right, innerWidth);
         const x = Math.floor((left + right) / 2), y = Math.floor((top + bottom) / 2);
         return [Math.floor((x - r.left) / r.width * 640), Math.floor((y - r.top) / r.height * 480)];",
        vec![],
    ))?;
    let expected: Vec<i64> = expected.as_array().into_iter().flatten().filter_map(|v| v.as_i64()).collect();
    let screen = eng.rt.block_on(eng.client.find(Locator::Css("#dk-screen")))?;
    eng.rt.block_on(screen.clone().click())?;
    let click = client.stdout.wait_for("button 1 ")?;
    let at: Vec<i64> = click.split(' ').skip(2).map(|n| n.parse().unwrap_or(-1)).collect();
    assert!(
        (at[0] - expected[0]).abs() <= 2 && (at[1] - expected[1]).abs() <= 2,
        "{click}, expected {expected:?}"
    );
    eng.rt.block_on(screen.send_keys("hi"))?;
    client.stdout.wait_for("key 68")?;
    client.stdout.wait_for("key 69")?;

    // Control revoked: the page knows within a second, input stops, the view goes on.
    bob.ok(&["revoke", &id, "--capability", "desktop.control"])?;
    // Measured from the revocation's answer (the relay has signed and applied it), not from
    // the CLI's start.
    let revoked = Instant::now();
    eng.wait_css("#dk-screen[data-control='no']")?;
    let told = revoked.elapsed();
    assert!(told.as_millis() < 1000, "the page was told after {told:?}");
    eng.wait_text("#dk-mode", "View only")?;
    client.write_line(&format!("left {}", hex(RED)))?;
    client.stdout.wait_for("drawn")?;
    wait_colour(&eng, (160, 240), RED)?;
    eng.screenshot("desktop-2-view-only")?;

    // Input sent anyway on the view channel is dropped by the relay, and audited.
    let before = client.stdout.seen.len();
    send_click_anyway(&eng, 100, 100)?;
    let refused = wait_for_some("the refused input in the audit log", || {
        Ok(events(&relay, &id, "channel.refused")?
            .into_iter()
            .find(|e| e["detail"]["reason"].as_str().is_some_and(|r| r.contains("view-only desktop"))))
    })?;
    assert_eq!(refused["actor"], "alice", "{refused}");
    eng.wait_text("#dk-notes", "desktop.control is not granted")?;
    // What the X client saw since: the colour change only, no button.
    client.write_line(&format!("right {}", hex(GREEN)))?;
    client.stdout.wait_for("drawn")?;
    wait_colour(&eng, (480, 240), GREEN)?;
    let since: Vec<&String> =
        client.stdout.seen[before..].iter().filter(|l| !l.starts_with("drawn")).collect();
    assert!(since.is_empty(), "input reached the desktop after control was revoked: {since:?}");

    // The session's recording verifies, desktop channels and all.
    bob.ok(&["end", &id, "--reason", "the dialog is understood"])?;
    eng.wait_text("#dk-status", "The session ended")?;
    wait_until("the recording to verify", || {
        Ok(relay.admin(&["recording", "verify", &id]).is_ok_and(|out| out.starts_with("valid")))
    })?;
    Ok(())
}

#[test]
fn assist_desktop_opens_the_viewer_and_an_agent_without_a_display_is_refused_before_anyone_is_asked()
-> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    // No --display, and the tests run without DISPLAY: this agent has no desktop.
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let (console, _) = relay.console()?;
    let alice = relay.login("alice")?;
    let args = ["--ticket", "INC-77", "--reason", "error dialog & 100% CPU", "--control", "--no-browser"];
    let url = alice.ok(&[&["desktop", "erp-db01", "--console", &console][..], &args[..]].concat())?;
    let url = url.trim();
    assert!(url.starts_with(&format!("{}/#desktop/", console.trim_end_matches('/'))), "{url}");

    let eng = Browser::open(&relay.data_dir().join("ca.pem"))?;
    sign_in(&eng, &console, "alice")?;
    eng.goto(url)?;
    let refused = eng.wait_text("#dk-status", "has no desktop to show")?;
    assert!(refused.contains("erp-db01") && refused.contains("nobody was asked"), "{refused}");
    eng.screenshot("desktop-3-no-display")?;
    let bob = relay.login("bob")?;
    assert_eq!(bob.ok(&["requests", "--json"])?.trim(), "[]", "nobody was asked");
    Ok(())
}

/// Epoch milliseconds, as the page's `performance.timeOrigin + performance.now()` counts.
fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

#[test]
#[ignore = "a measurement; prints figures"]
fn measure_desktop_glass_to_glass_and_frames_delivered() -> anyhow::Result<()> {
    let x = xvfb();
    let mut client = picture(&x.display)?;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent_with("erp-ws01", "acme", "approver", &["--display", &x.display])?;
    let (url, _) = relay.console()?;
    let eng = ask_for_desktop(&relay, &url, ("BENCH-1", "measure the desktop"), &[])?;
    let bob = relay.login("bob")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    wait_colour(&eng, (160, 240), RED)?;
    // The page notes when the sampled pixel changes colour, by its own clock.
    eng.rt.block_on(eng.client.execute(
        "const c = document.querySelector('#dk-screen canvas.desktop-screen').getContext('2d');
         window.seen = [];
         let last = '';
         const look = () => {
           const d = c.getImageData(160, 240, 1, 1).data;
           const now = `${d[0] >> 5},${d[1] >> 5},${d[2] >> 5}`;
           if (now !== last) { last = now; window.seen.push([performance.timeOrigin + performance.now(), d[0], d[1], d[2]]); }
           setTimeout(look, 1);
         };
         look();",
        vec![],
    ))?;
    let mut latencies = Vec::new();
    for i in 0..20 {
        let want = if i % 2 == 0 { GREEN } else { RED };
        let sent = epoch_ms();
        client.write_line(&format!("left {}", hex(want)))?;
        client.stdout.wait_for("drawn")?;
        let seen = wait_for_some("the page to see the change", || {
            let v = eng.rt.block_on(eng.client.execute("return window.seen;", vec![]))?;
            Ok(v.as_array().into_iter().flatten().rev().find_map(|e| {
                let c = |i: usize| e[i].as_u64().unwrap_or(0) as u8;
                let at = e[0].as_f64().unwrap_or(0.0);
                (at > sent && near((c(1), c(2), c(3)), want)).then_some(at)
            }))
        })?;
        latencies.push(seen - sent);
    }
    latencies.sort_by(f64::total_cmp);
    // Frames delivered while the screen changes as fast as the client can repaint.
    let frames = |b: &Browser| -> anyhow::Result<u64> {
        let v = b.rt.block_on(
            b.client
                .execute("return Number(document.querySelector('#dk-screen').dataset.frames || 0);", vec![]),
        )?;
        Ok(v.as_u64().unwrap_or(0))
    };
    let (f0, t0) = (frames(&eng)?, Instant::now());
    // Three seconds of a change as often as the client can draw one.
    let mut changes = 0u64;
    while t0.elapsed().as_secs() < 3 {
        client.write_line(&format!("right {:02x}50d0", (changes * 7) % 256))?;
        client.stdout.wait_for("drawn")?;
        changes += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let fps = (frames(&eng)? - f0) as f64 / secs;
    println!(
        "desktop 640x480 on loopback (debug build): glass-to-glass (X client asked to draw → canvas shows it) p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms over {} changes; {:.1} frames/s decoded while the screen changed {:.1} times/s",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 9 / 10],
        latencies[latencies.len() - 1],
        latencies.len(),
        fps,
        changes as f64 / secs
    );
    Ok(())
}
