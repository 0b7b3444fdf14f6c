//! The customer's clipboard beside their desktop, end to end: the shared Xvfb, an ordinary
//! X application using the `CLIPBOARD` (`assist-test-xclient --clipboard`, written from
//! the protocol, not with the agent's code), the real agent, relay and Chromium. And input
//! sent on a view-only desktop channel over QUIC, dropped and audited as the browser's is.

use super::desktop::{GREEN, RED, ask_for_desktop, hex, picture, wait_colour, xvfb};
use assist_proto::caps::{Capability, Priority};
use assist_proto::desktop::{InputEvent, MouseButton, ViewerToAgent};
use assist_proto::msg::{ChannelKind, ChannelOpen, ChannelReply, EngineerToRelay, RelayToEngineer};
use assist_tests::browser::Browser;
use assist_tests::files_support::events;
use assist_tests::rogue::RogueEngineer;
use assist_tests::{Proc, bin, wait_for_some, wait_until};
use std::process::Command;

/// The X application that copies and pastes.
fn clipboard_app(display: &str) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin("assist-test-xclient"));
    cmd.args(["--clipboard", display]);
    let mut p = Proc::spawn(cmd)?;
    p.stdout.wait_for("ready")?;
    Ok(p)
}

/// What the application gets when it pastes (`got "TEXT"` or `got none`).
fn paste(app: &mut Proc) -> anyhow::Result<String> {
    app.write_line("get")?;
    app.stdout.wait_for("got ")
}

/// The lines of the customer's notice bar, as the application reads them.
fn notices(app: &mut Proc) -> anyhow::Result<Vec<String>> {
    let from = app.stdout.seen.len();
    app.write_line("notice")?;
    app.stdout.wait_for("notices done")?;
    Ok(app.stdout.seen[from..].iter().filter(|l| l.starts_with("notice ")).cloned().collect())
}

/// Sends clipboard text on the page's socket as the page would, whatever it is granted.
fn send_anyway(b: &Browser, text: Option<&str>, repeat: usize) -> anyhow::Result<()> {
    let script = "const [text, repeat, done] = arguments;
        import('/clipboard.js').then(({ clipboardMessage }) => {
          window.assistDesktop.send(clipboardMessage(text ?? 'x'.repeat(repeat)));
          done(true);
        });";
    b.rt.block_on(b.client.execute_async(script, vec![text.into(), repeat.into()]))?;
    Ok(())
}

#[test]
fn the_clipboard_is_shared_both_ways_only_while_clipboard_is_granted() -> anyhow::Result<()> {
    let x = xvfb();
    let mut screen = picture(&x.display)?;
    let mut app = clipboard_app(&x.display)?;
    // What the customer had copied before: it stays theirs.
    app.write_line("set the customer's own note")?;
    app.stdout.wait_for("owned")?;
    let relay = assist_tests::TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent_with("erp-ws01", "acme", "approver", &["--display", &x.display])?;
    let (url, _) = relay.console()?;

    let eng = ask_for_desktop(
        &relay,
        &url,
        ("INC-6120", "paste the licence key into the ERP client"),
        &["#sf-clipboard"],
    )?;
    eng.wait_text("#dk-status", "Waiting for an approver of acme")?;
    let bob = relay.login("bob")?;
    let id = bob.pending_request()?;
    let asked: serde_json::Value = serde_json::from_str(&bob.ok(&["requests", "--json"])?)?;
    let kinds = serde_json::json!([{ "kind": "desktop_view" }, { "kind": "clipboard" }]);
    assert_eq!(asked[0]["capabilities"], kinds, "{asked}");
    bob.ok(&["approve", &id])?;
    eng.wait_css("#dk-clip[data-shared='yes']")?;
    wait_colour(&eng, (160, 240), RED)?;
    // The customer is told, on their screen, that the clipboard is shared.
    let said = notices(&mut app)?;
    assert!(
        said.iter().any(|n| n.contains("alice is viewing your screen and shares your clipboard")),
        "{said:?}"
    );

    // The engineer's text becomes the customer's clipboard, as any application pastes it.
    let key = "LIC-4711-ÄÖÜ – grüße";
    eng.fill("#dk-clip-out", key)?;
    eng.click("#dk-clip-send")?;
    wait_until("the customer's clipboard to hold the engineer's text", || {
        Ok(paste(&mut app)? == format!("got {key:?}"))
    })?;
    // What was on the customer's clipboard before the channel opened never went up.
    assert!(eng.text("#dk-clip-in")?.is_empty(), "{}", eng.text("#dk-clip-in")?);

    // What the customer copies appears in the page.
    app.write_line("set ERR-0042: posting period 13 is closed")?;
    app.stdout.wait_for("owned")?;
    eng.wait_text("#dk-clip-in", "ERR-0042: posting period 13 is closed")?;
    eng.screenshot("desktop-4-clipboard")?;
    // At a phone's width the page reads top to bottom with nothing wider than the screen.
    eng.resize(390, 844)?;
    let js = |script: &str| eng.rt.block_on(eng.client.execute(script, vec![]));
    js("document.getElementById('dk-title').scrollIntoView();")?;
    eng.screenshot("desktop-6-phone")?;
    js("document.getElementById('dk-clip').scrollIntoView();")?;
    eng.screenshot("desktop-7-phone-clipboard")?;
    let wider = js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")?;
    assert_eq!(wider.as_i64(), Some(0), "the page is wider than a phone's screen");
    eng.resize(1280, 900)?;

    // Too long: the page says so and sends nothing; sent anyway, the relay resets the
    // clipboard's channel from the header alone. The customer's clipboard stays as it was.
    let copied = format!("got {:?}", "ERR-0042: posting period 13 is closed");
    eng.rt.block_on(
        eng.client.execute("document.getElementById('dk-clip-out').value = 'x'.repeat(70000);", vec![]),
    )?;
    eng.click("#dk-clip-send")?;
    let note = eng.wait_text("#dk-clip-note", "Too long for the clipboard")?;
    assert!(note.contains("69 KiB, at most 64 KiB. Nothing was sent."), "{note}");
    send_anyway(&eng, None, 70_000)?;
    eng.wait_css("#dk-clip[data-state='closed']")?;
    assert_eq!(paste(&mut app)?, copied);
    // Text sent again opens the clipboard's channel again: it is still granted.
    send_anyway(&eng, Some("second try"), 0)?;
    eng.wait_css("#dk-clip[data-state='open']")?;
    let mut last = String::new();
    let second = wait_until("the second text on the clipboard", || {
        last = paste(&mut app)?;
        Ok(last == format!("got {:?}", "second try"))
    });
    second.map_err(|e| e.context(format!("the application last pasted {last}")))?;

    // Revoked: the clipboard's channel closes at once, the customer's notice no longer
    // mentions it, and the picture goes on.
    bob.ok(&["revoke", &id, "--capability", "clipboard"])?;
    eng.wait_css("#dk-clip[data-state='closed']")?;
    eng.wait_text("#dk-clip-status", "the clipboard is not granted")?;
    wait_until("the notice to stop mentioning the clipboard", || {
        let said = notices(&mut app)?;
        Ok(said.iter().any(|n| n.contains("alice is viewing your screen"))
            && !said.iter().any(|n| n.contains("clipboard")))
    })?;
    screen.write_line(&format!("left {}", hex(GREEN)))?;
    screen.stdout.wait_for("drawn")?;
    wait_colour(&eng, (160, 240), GREEN)?;

    // Without the grant nothing moves either way: text sent anyway is refused (audited)
    // before any channel opens, and the customer's copies stay on their machine.
    send_anyway(&eng, Some("after the revocation"), 0)?;
    let refused = wait_for_some("the refused clipboard channel in the audit log", || {
        Ok(events(&relay, &id, "channel.refused")?
            .into_iter()
            .find(|e| e["detail"]["reason"].as_str().is_some_and(|r| r.contains("clipboard"))))
    })?;
    assert_eq!(refused["actor"], "alice", "{refused}");
    eng.wait_text("#dk-notes", "Clipboard not shared")?;
    app.write_line("set copied after the revocation")?;
    app.stdout.wait_for("owned")?;
    assert_eq!(paste(&mut app)?, format!("got {:?}", "copied after the revocation"));
    screen.write_line(&format!("left {}", hex(RED)))?;
    screen.stdout.wait_for("drawn")?;
    wait_colour(&eng, (160, 240), RED)?;
    let shown = eng.text("#dk-clip-in")?;
    // Neither the text copied after the revocation nor the engineer's own text came up.
    assert!(shown.contains("ERR-0042"), "{shown}");
    eng.screenshot("desktop-5-clipboard-revoked")?;

    bob.ok(&["end", &id, "--reason", "licence entered"])?;
    eng.wait_text("#dk-status", "The session ended")?;
    wait_until("the recording to verify", || {
        Ok(relay.admin(&["recording", "verify", &id]).is_ok_and(|out| out.starts_with("valid")))
    })?;
    Ok(())
}

#[test]
fn input_on_a_view_only_desktop_channel_over_quic_is_dropped_and_audited_once() -> anyhow::Result<()> {
    let x = xvfb();
    let mut screen = picture(&x.display)?;
    let relay = assist_tests::TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent_with("erp-ws01", "acme", "approver", &["--display", &x.display])?;
    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut e = rt.block_on(RogueEngineer::connect(&alice))?;
    let req = EngineerToRelay::RequestSession {
        agent: "erp-ws01".into(),
        ticket: "INC-77".into(),
        priority: Priority::P2,
        reason: "look at the dialog".into(),
        capabilities: vec![Capability::DesktopView],
        duration_secs: None,
    };
    let id = match rt.block_on(e.call(&req))? {
        RelayToEngineer::SessionRequested { session, .. } => session.id.to_string(),
        other => anyhow::bail!("request refused: {other:?}"),
    };
    bob.ok(&["approve", &id])?;
    let open = ChannelOpen {
        session: id.as_str().into(),
        report_exit: false,
        channel: ChannelKind::Desktop { control: false },
    };
    let (reply, mut send, _recv) = rt.block_on(e.open(&open))?;
    assert_eq!(reply, ChannelReply::Accepted);
    // Two clicks where the picture is, as a modified client would send them.
    let click = [
        ViewerToAgent::Input(InputEvent::MouseMove { x: 100, y: 100 }),
        ViewerToAgent::Input(InputEvent::MouseButton { button: MouseButton::Left, down: true }),
        ViewerToAgent::Input(InputEvent::MouseButton { button: MouseButton::Left, down: false }),
    ];
    let bytes: Vec<u8> =
        click.iter().chain(click.iter()).flat_map(|m| m.encode().expect("encodes")).collect();
    rt.block_on(send.write_all(&bytes))?;
    send.finish()?;
    let refused = wait_for_some("the refused input in the audit log", || {
        Ok(events(&relay, &id, "channel.refused")?
            .into_iter()
            .find(|e| e["detail"]["reason"].as_str().is_some_and(|r| r.contains("view-only desktop"))))
    })?;
    assert_eq!(refused["actor"], "alice", "{refused}");
    // Once the session is over and its recording sealed (every channel closed), the
    // refusal is there exactly once, and the desktop saw no button.
    bob.ok(&["end", &id, "--reason", "seen"])?;
    wait_until("the recording to verify", || {
        Ok(relay.admin(&["recording", "verify", &id]).is_ok_and(|out| out.starts_with("valid")))
    })?;
    let refusals = events(&relay, &id, "channel.refused")?;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    screen.write_line(&format!("left {}", hex(GREEN)))?;
    screen.stdout.wait_for("drawn")?;
    let pressed: Vec<&String> = screen.stdout.seen.iter().filter(|l| l.starts_with("button")).collect();
    assert!(pressed.is_empty(), "input reached a view-only desktop: {pressed:?}");
    Ok(())
}
