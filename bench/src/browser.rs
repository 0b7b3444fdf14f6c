//! Keystroke echo from the engineer's browser, measured in the page: a real headless
//! Chromium (the e2e tests' driver, `assist_tests::browser`) signs in to the relay's
//! console, asks for a shell on the agent (approved by the agent's prompt as for the CLI),
//! and runs the same remote command as the echo figure. Each sample is one key: from the
//! `keydown` on xterm.js's input to the echoed character rendered in the terminal's rows
//! (a `MutationObserver`), both stamped with `performance.now()` in the page. It adds, to
//! the CLI's path, the page's WebSocket, the console's TLS and the rendering.

use crate::world::World;
use anyhow::{Context, Result, anyhow};
use assist_tests::browser::Browser;
use fantoccini::Locator;
use std::time::{Duration, Instant};

const PASSWORD: &str = "bench-password-123";
const LIMIT: Duration = Duration::from_secs(60);

fn wait(what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + LIMIT;
    while !f()? {
        if Instant::now() > deadline {
            return Err(anyhow!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// `keystrokes` echoes through the browser's shell, in microseconds.
pub fn echo(world: &World, remote: &str, keystrokes: usize, gap: Duration) -> Result<Vec<f64>> {
    let console = world.relay.console.as_ref().ok_or_else(|| anyhow!("the relay has no console"))?;
    let port = console.rsplit(':').next().unwrap_or_default();
    let url = format!("https://localhost:{port}");
    let b = Browser::open(&world.relay.data.join("ca.pem")).context("opening Chromium")?;
    let js =
        |script: &str| -> Result<serde_json::Value> { Ok(b.rt.block_on(b.client.execute(script, vec![]))?) };
    b.goto(&url)?;
    b.fill("#user", "alice")?;
    b.fill("#password", PASSWORD)?;
    b.click("#signin-form button[type=submit]")?;
    b.wait_css("#home:not([hidden])")?;
    wait("the agent in the form", || Ok(b.text("#sf-agent")?.contains(crate::world::AGENT)))?;
    b.fill("#sf-ticket", crate::world::TICKET)?;
    b.fill("#sf-reason", crate::world::REASON)?;
    b.click("#sf-submit")?;
    b.wait_text("#sh-status", "Connected")?;
    let area_css = "#sh-term .xterm-helper-textarea";
    let area = b.rt.block_on(b.client.find(Locator::Css(area_css)))?;
    b.rt.block_on(area.send_keys(&format!("{remote}{}", char::from(fantoccini::key::Key::Enter))))?;
    wait("READY", || {
        let rows = js("return document.querySelector('#sh-term .xterm-rows').textContent")?;
        Ok(rows.as_str().unwrap_or_default().matches("READY").count() >= 2)
    })?;
    js("window.__echo = { down: [], seen: [] };
        const area = document.querySelector('#sh-term .xterm-helper-textarea');
        area.addEventListener('keydown', () => window.__echo.down.push(performance.now()), true);
        const rows = document.querySelector('#sh-term .xterm-rows');
        let count = (rows.textContent.match(/x/g) || []).length;
        new MutationObserver(() => {
          const n = (rows.textContent.match(/x/g) || []).length;
          while (count < n) { count++; window.__echo.seen.push(performance.now()); }
        }).observe(rows, { subtree: true, childList: true, characterData: true });")?;
    for i in 1..=keystrokes {
        b.rt.block_on(area.send_keys("x"))?;
        wait("the echo", || Ok(js("return window.__echo.seen.length")?.as_u64().unwrap_or(0) as usize >= i))?;
        std::thread::sleep(gap);
    }
    let v = js("return window.__echo")?;
    let nums = |k: &str| -> Vec<f64> {
        v[k].as_array().map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect()).unwrap_or_default()
    };
    let samples: Vec<f64> = nums("seen").iter().zip(nums("down")).map(|(s, d)| (s - d) * 1000.0).collect();
    if samples.len() != keystrokes {
        return Err(anyhow!("{} echoes for {keystrokes} keys", samples.len()));
    }
    // Leaving on purpose ends the session at once.
    b.click("#sh-leave")?;
    Ok(samples)
}
