//! Input through XTest arrives at a window as the right keysyms and coordinates, and
//! `release_all` leaves nothing held.

use anyhow::{Context, Result};
use assist_desktop::{Desktop, DesktopConfig};
use assist_proto::desktop::{AgentToViewer, CursorPosition, InputEvent, MouseButton};
use x11rb::protocol::Event;

use crate::harness::{Client, WAIT, xvfb};

fn open(display: &str) -> Result<Desktop> {
    Ok(Desktop::open(DesktopConfig { display: Some(display.into()), ..Default::default() })?)
}

fn key(code: &str, down: bool) -> InputEvent {
    InputEvent::Key { code: code.into(), down }
}

#[test]
fn keys_by_code_and_text_arrive_as_the_right_keysyms() -> Result<()> {
    let x = xvfb();
    let mut client = Client::connect(&x.display)?;
    let window = client.rectangle(0, 0, 200, 200, 0x80_80_80)?;
    client.focus(window)?;
    let desktop = open(&x.display)?;

    let next_press = |client: &Client| -> Result<(u8, bool)> {
        match client.wait_for("a key press", |e| matches!(e, Event::KeyPress(_)))? {
            Event::KeyPress(e) => Ok((e.detail, u16::from(e.state) & 1 != 0)),
            _ => unreachable!(),
        }
    };

    desktop.inject(&key("KeyQ", true))?;
    desktop.inject(&key("KeyQ", false))?;
    let (code, shift) = next_press(&client)?;
    assert_eq!(client.keysym(code, shift)?, 'q' as u32);

    // A shifted character, one the US layout lacks (typed through a spare keycode), and a
    // newline.
    desktop.inject(&InputEvent::Text("Ä€\n".into()))?;
    let mut got = Vec::new();
    for _ in 0..3 {
        let (code, shift) = next_press(&client)?;
        // Shift itself arrives as a press too.
        let sym = client.keysym(code, shift)?;
        if sym == 0xffe1 {
            let (code, shift) = next_press(&client)?;
            got.push(client.keysym(code, shift)?);
        } else {
            got.push(sym);
        }
    }
    assert_eq!(got, vec![0xc4, 0x0100_20ac, 0xff0d]);

    assert!(desktop.inject(&key("NoSuchKey", true)).is_err());
    Ok(())
}

#[test]
fn a_click_lands_at_the_right_coordinates_and_the_wheel_scrolls() -> Result<()> {
    let x = xvfb();
    let mut client = Client::connect(&x.display)?;
    let window = client.rectangle(200, 100, 300, 200, 0x30_30_30)?;
    let desktop = open(&x.display)?;

    desktop.inject(&InputEvent::MouseMove { x: 250, y: 175 })?;
    desktop.inject(&InputEvent::MouseButton { button: MouseButton::Left, down: true })?;
    desktop.inject(&InputEvent::MouseButton { button: MouseButton::Left, down: false })?;
    match client.wait_for("a button press", |e| matches!(e, Event::ButtonPress(_)))? {
        Event::ButtonPress(e) => {
            assert_eq!(e.event, window);
            assert_eq!((e.detail, e.event_x, e.event_y, e.root_x, e.root_y), (1, 50, 75, 250, 175));
        }
        _ => unreachable!(),
    }
    client.wait_for("the release", |e| matches!(e, Event::ButtonRelease(r) if r.detail == 1))?;
    // The viewer is told where the pointer went.
    let moved = AgentToViewer::CursorPosition(CursorPosition { x: 250, y: 175 });
    loop {
        let batch = desktop.next(WAIT)?.context("no batch with the pointer's position")?;
        if batch.contains(&moved) {
            break;
        }
    }

    desktop.inject(&InputEvent::MouseButton { button: MouseButton::Right, down: true })?;
    client.wait_for("a right press", |e| matches!(e, Event::ButtonPress(p) if p.detail == 3))?;
    desktop.inject(&InputEvent::MouseButton { button: MouseButton::Right, down: false })?;

    desktop.inject(&InputEvent::Wheel { dx: 0, dy: 2 })?;
    for _ in 0..2 {
        client.wait_for("a wheel step down", |e| matches!(e, Event::ButtonPress(p) if p.detail == 5))?;
    }
    desktop.inject(&InputEvent::Wheel { dx: 0, dy: -1 })?;
    client.wait_for("a wheel step up", |e| matches!(e, Event::ButtonPress(p) if p.detail == 4))?;
    Ok(())
}

#[test]
fn release_all_lets_go_of_held_keys_and_buttons() -> Result<()> {
    let x = xvfb();
    let mut client = Client::connect(&x.display)?;
    let window = client.rectangle(0, 0, 100, 100, 0x10_10_10)?;
    client.focus(window)?;
    let desktop = open(&x.display)?;

    desktop.inject(&InputEvent::MouseMove { x: 50, y: 50 })?;
    desktop.inject(&key("ShiftLeft", true))?;
    desktop.inject(&key("KeyA", true))?;
    desktop.inject(&InputEvent::MouseButton { button: MouseButton::Left, down: true })?;
    client.wait_for("the button press", |e| matches!(e, Event::ButtonPress(_)))?;
    assert_eq!(client.keys_down()?.len(), 2, "Shift and A are held");

    // A character the layout lacks borrows a spare keycode until control ends.
    let euro = 0x0100_20ac;
    let mapped = |client: &Client| -> Result<bool> {
        use x11rb::connection::Connection;
        use x11rb::protocol::xproto::ConnectionExt as _;
        let setup = client.conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        Ok(client.conn.get_keyboard_mapping(min, max - min + 1)?.reply()?.keysyms.contains(&euro))
    };
    desktop.inject(&InputEvent::Text("€".into()))?;
    assert!(mapped(&client)?);

    desktop.release_all()?;
    assert!(client.keys_down()?.is_empty(), "keys still held: {:?}", client.keys_down()?);
    assert!(!mapped(&client)?, "the spare keycode was given back");
    client.wait_for("the button release", |e| matches!(e, Event::ButtonRelease(_)))?;
    // Nothing remains to release: dropping the desktop releases nothing twice.
    drop(desktop);
    assert!(client.keys_down()?.is_empty());
    Ok(())
}
