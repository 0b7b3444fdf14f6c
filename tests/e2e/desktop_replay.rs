//! A recorded desktop replayed on the console's session page, end to end: a real desktop
//! session (Xvfb, the test X client, the real agent, relay and Chromium, as in
//! `desktop.rs`) whose screen turns from red to green, ended; then an auditor's session
//! page plays it through the same viewer (WebCodecs), the relay pacing the recorded
//! messages: red first, then green; a seek back and forth shows each colour; pause holds
//! the position; the replay is audited; another organisation's auditor gets nothing.
//! Screenshots: `<target>/artefacts/console/desktop-replay-*.png`.

use super::console::{fetch_from_page, sign_in};
use super::desktop::{GREEN, RED, ask_for_desktop, hex, near, picture, xvfb};
use assist_tests::browser::Browser;
use assist_tests::files_support::events;
use assist_tests::{TestRelay, wait_for_some, wait_until};

/// The colour at (`x`, `y`) of the canvas under `css`, once it has drawn a frame.
fn pixel(b: &Browser, css: &str, x: u32, y: u32) -> anyhow::Result<Option<(u8, u8, u8)>> {
    let script = "const [css, x, y] = arguments;
        const box = document.querySelector(css);
        const c = box && box.querySelector('canvas.desktop-screen');
        if (!c || !c.width || !box.dataset.frames) return null;
        const d = c.getContext('2d').getImageData(x, y, 1, 1).data;
        return [d[0], d[1], d[2]];";
    let v = b.rt.block_on(b.client.execute(script, vec![css.into(), x.into(), y.into()]))?;
    let Some(a) = v.as_array() else { return Ok(None) };
    let c = |i: usize| a[i].as_u64().unwrap_or(0) as u8;
    Ok(Some((c(0), c(1), c(2))))
}

fn wait_colour(b: &Browser, css: &str, want: (u8, u8, u8)) -> anyhow::Result<()> {
    let waited = wait_until(&format!("{css} to show {want:?}"), || {
        Ok(pixel(b, css, 160, 240)?.is_some_and(|p| near(p, want)))
    });
    if waited.is_err() {
        let state = js(
            b,
            &format!(
                "const p = document.querySelector('{PLAYER}'); const c = p.querySelector('canvas.desktop-screen');
                 return [p.outerHTML.length, document.querySelectorAll('{PLAYER}').length, p.dataset, p.querySelector('.rp-status').textContent, c.width, p.querySelector('.replay-screen').dataset];"
            ),
        )?;
        b.screenshot("desktop-replay-failed")?;
        anyhow::bail!(
            "{css} did not show {want:?}; last {:?}; the player: {state}",
            pixel(b, css, 160, 240)?
        );
    }
    Ok(())
}

fn js(b: &Browser, script: &str) -> anyhow::Result<serde_json::Value> {
    Ok(b.rt.block_on(b.client.execute(script, vec![]))?)
}

const PLAYER: &str = "#sp-desktops .replay";
const SCREEN: &str = "#sp-desktops .replay .replay-screen";

/// Moves the seek bar to `ms` as a person letting go of its thumb there does.
fn seek(b: &Browser, ms: u64) -> anyhow::Result<()> {
    js(
        b,
        &format!(
            "const s = document.querySelector('{PLAYER} .rp-seek'); s.value = '{ms}';
             s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); return 0;"
        ),
    )?;
    Ok(())
}

fn position(b: &Browser) -> anyhow::Result<u64> {
    let v = js(b, &format!("return Number(document.querySelector('{PLAYER}').dataset.position || 0);"))?;
    Ok(v.as_u64().unwrap_or(0))
}

#[test]
fn a_recorded_desktop_replays_on_the_session_page_with_seek_pause_and_speed() -> anyhow::Result<()> {
    let x = xvfb();
    let mut client = picture(&x.display)?;
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    relay.add_user("carol", "acme", "auditor")?;
    relay.admin(&["org", "add", "other"])?;
    relay.add_user("olga", "other", "auditor")?;
    let _agent = relay.agent_with("erp-ws01", "acme", "approver", &["--display", &x.display])?;
    let (url, _) = relay.console()?;
    let ca = relay.data_dir().join("ca.pem");

    // A desktop session: the left half red, then green, then ended.
    let eng = ask_for_desktop(&relay, &url, ("INC-1616", "the report renders wrong"), &[])?;
    let bob = relay.login("bob")?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    eng.wait_text("#dk-status", "Connected: view only")?;
    super::desktop::wait_colour(&eng, (160, 240), RED)?;
    // The customer's notice is on the picture too (and the red part of the recording
    // lasts long enough to be found again).
    super::desktop::wait_colour(&eng, (320, 5), super::desktop::NOTICE)?;
    eng.screenshot("desktop-replay-0-live")?;
    client.write_line(&format!("left {}", hex(GREEN)))?;
    client.stdout.wait_for("drawn")?;
    super::desktop::wait_colour(&eng, (160, 240), GREEN)?;
    bob.ok(&["end", &id, "--reason", "the report is understood"])?;
    eng.wait_text("#dk-status", "The session ended")?;
    wait_until("the recording to be sealed", || {
        Ok(relay.admin(&["recording", "verify", &id]).is_ok_and(|out| out.starts_with("valid")))
    })?;

    // The auditor's session page has a player for the desktop channel, with the markers
    // (and no terminal player: no terminal was recorded).
    let b = Browser::open(&ca)?;
    sign_in(&b, &url, "carol")?;
    b.goto(&format!("{url}/#session/{id}"))?;
    b.wait_css(&format!("{PLAYER} .rp-play:not([disabled])"))?;
    let markers = b.text(&format!("{PLAYER} .rp-markers"))?;
    for m in ["approved by bob", "desktop opened (view only)", "ended:"] {
        assert!(markers.contains(m), "{m} in {markers}");
    }
    let time = b.text(&format!("{PLAYER} .rp-time"))?;
    assert!(time.starts_with("0:00.0 / 0:"), "{time}");
    assert_eq!(js(&b, "return document.getElementById('sp-player').hidden;")?, true);
    b.wait_text(&format!("{PLAYER} .rp-granted"), "desktop.view")?;

    // The page notes each colour it draws, with the replay's position then.
    js(
        &b,
        &format!(
            "const box = document.querySelector('{SCREEN}');
             const c = box.querySelector('canvas.desktop-screen').getContext('2d');
             window.seen = [];
             let last = '';
             const look = () => {{
               if (box.dataset.frames) {{
                 const d = c.getImageData(160, 240, 1, 1).data;
                 const now = `${{d[0] >> 5}},${{d[1] >> 5}},${{d[2] >> 5}}`;
                 if (now !== last) {{ last = now; window.seen.push([Math.round(box.closest('.replay').player.currentMs()), d[0], d[1], d[2]]); }}
               }}
               setTimeout(look, 1);
             }};
             look(); return 0;"
        ),
    )?;
    // Played at half speed (the test's session lasts about a second): red first, then
    // green, then the end.
    b.rt.block_on(b.client.execute(
        &format!("const s = document.querySelector('{PLAYER} .rp-speed'); s.value = '0.5'; s.dispatchEvent(new Event('change')); return 0;"),
        vec![],
    ))?;
    b.click(&format!("{PLAYER} .rp-play"))?;
    b.wait_text(&format!("{PLAYER} .rp-status"), "The end of the recording")?;
    let seen = js(&b, "return window.seen;")?;
    let colours: Vec<(u64, (u8, u8, u8))> = seen
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let c = |i: usize| e[i].as_u64().unwrap_or(0) as u8;
            (e[0].as_u64().unwrap_or(0), (c(1), c(2), c(3)))
        })
        .collect();
    let first = colours.iter().position(|(_, c)| near(*c, RED));
    let then = colours.iter().position(|(_, c)| near(*c, GREEN));
    assert!(matches!((first, then), (Some(r), Some(g)) if r < g), "red, then green: {colours:?}");
    let red_at = colours[first.expect("red")].0;
    let green_at = colours[then.expect("green")].0;
    assert!(red_at < green_at, "{colours:?}");

    // Seeking (at the end, so paused) to where it was red shows red; past the change, green.
    // A quarter into the red part as the page saw it: past the keyframe that drew it, and
    // before the change (both were drawn a decoder's delay after they were due).
    let red_at = red_at + (green_at - red_at) / 4;
    seek(&b, red_at)?;
    wait_colour(&b, SCREEN, RED)?;
    b.screenshot("desktop-replay-1-red")?;
    let end: u64 = js(&b, &format!("return Number(document.querySelector('{PLAYER} .rp-seek').max);"))?
        .as_u64()
        .unwrap_or(0);
    // The end: everything recorded has been drawn there, the green included.
    seek(&b, end)?;
    wait_colour(&b, SCREEN, GREEN)?;
    b.screenshot("desktop-replay-2-green")?;

    // Back to red, play, pause: the position holds and the picture with it.
    seek(&b, red_at)?;
    wait_colour(&b, SCREEN, RED)?;
    b.click(&format!("{PLAYER} .rp-play"))?;
    b.wait_css(&format!("{PLAYER}[data-playing='yes']"))?;
    b.click(&format!("{PLAYER} .rp-play"))?;
    b.wait_css(&format!("{PLAYER}[data-playing='no']"))?;
    let held = position(&b)?;
    // Each replay opened is audited, with the channel (the page opened one).
    let exported = wait_for_some("the replay's audit event", || {
        Ok(events(&relay, &id, "recording.exported")?
            .into_iter()
            .find(|e| e["detail"]["format"] == "desktop-replay"))
    })?;
    assert_eq!(exported["actor"], "carol", "{exported}");
    assert_eq!(exported["detail"]["verdict"], "valid", "{exported}");
    let channel = exported["detail"]["channel"].as_u64().unwrap_or(0);
    assert!(channel > 0, "{exported}");
    // A round trip to the relay later, nothing has moved.
    assert_eq!(fetch_from_page(&b, &format!("/api/v1/audit/sessions/{id}"))?.0, 200);
    assert_eq!(position(&b)?, held, "paused, the position holds");
    b.resize(390, 844)?;
    b.screenshot("desktop-replay-3-phone")?;
    b.resize(1280, 900)?;

    // Another organisation's auditor: not found, and no replay opened.
    b.click("#logout")?;
    b.wait_css("#signin-form")?;
    sign_in(&b, &url, "olga")?;
    assert_eq!(fetch_from_page(&b, &format!("/api/v1/audit/sessions/{id}"))?.0, 404);
    let got = b.rt.block_on(b.client.execute_async(
        "const [path, done] = arguments;
         const ws = new WebSocket(`wss://${location.host}${path}`);
         let said = [];
         ws.onmessage = (ev) => said.push(String(ev.data));
         ws.onclose = () => done(said);",
        vec![format!("/api/v1/audit/sessions/{id}/channels/{channel}/desktop").into()],
    ))?;
    assert_eq!(got, serde_json::json!([]), "olga's socket is refused before it opens");
    let replays: Vec<_> = events(&relay, &id, "recording.exported")?
        .into_iter()
        .filter(|e| e["detail"]["format"] == "desktop-replay")
        .collect();
    assert!(replays.iter().all(|e| e["actor"] == "carol"), "{replays:?}");
    Ok(())
}
