//! `assist-test-xclient --clipboard DISPLAY`: an ordinary X application's use of the
//! `CLIPBOARD`, written here from the protocol (not with `assist_desktop`), so the tests
//! check the agent against an independent client. Prints `ready`, then answers lines on
//! stdin:
//!
//! - `get`: asks the clipboard's owner for `UTF8_STRING` and prints `got "TEXT"`
//!   (Rust's debug quoting) or `got none`;
//! - `set TEXT`: takes the clipboard with TEXT (the rest of the line) and prints `owned`;
//!   it then serves `TARGETS` and `UTF8_STRING` to whoever asks until another client takes
//!   the clipboard (`lost`);
//! - `notice`: prints `notice "TEXT"` for each top-level window whose `_NET_WM_NAME`
//!   mentions the screen or the clipboard (the agent's notice bar), then `notices done`.

use std::io::BufRead;
use std::sync::mpsc;

use anyhow::Result;
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ConnectionExt as _, CreateWindowAux, EventMask, PropMode, SelectionNotifyEvent,
    SelectionRequestEvent, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{CURRENT_TIME, NONE};

use crate::say;

fn atom(conn: &RustConnection, name: &str) -> Result<Atom> {
    Ok(conn.intern_atom(false, name.as_bytes())?.reply()?.atom)
}

pub fn run(display: &str) -> Result<()> {
    let (conn, n) = x11rb::connect(Some(display))?;
    let root = conn.setup().roots[n].root;
    let window = conn.generate_id()?;
    let aux = CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE);
    conn.create_window(0, window, root, -1, -1, 1, 1, 0, WindowClass::INPUT_ONLY, 0, &aux)?;
    let clipboard = atom(&conn, "CLIPBOARD")?;
    let utf8 = atom(&conn, "UTF8_STRING")?;
    let targets = atom(&conn, "TARGETS")?;
    let slot = atom(&conn, "_TEST_CLIPBOARD")?;
    let wm_name = atom(&conn, "_NET_WM_NAME")?;
    conn.sync()?;

    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    say("ready".into());
    let mut ours: Option<String> = None;
    loop {
        match lines.try_recv() {
            Ok(line) if line == "get" => match &ours {
                Some(text) => say(format!("got {text:?}")),
                None => {
                    conn.convert_selection(window, clipboard, utf8, slot, CURRENT_TIME)?;
                    conn.flush()?;
                }
            },
            Ok(line) if line.starts_with("set ") => {
                ours = Some(line["set ".len()..].to_owned());
                conn.set_selection_owner(window, clipboard, CURRENT_TIME)?;
                let owner = conn.get_selection_owner(clipboard)?.reply()?.owner;
                say(if owner == window { "owned".into() } else { "not owned".into() });
            }
            Ok(line) if line == "notice" => {
                for w in conn.query_tree(root)?.reply()?.children {
                    let name = conn.get_property(false, w, wm_name, utf8, 0, 4096)?.reply()?.value;
                    let name = String::from_utf8_lossy(&name).into_owned();
                    if name.contains("your screen") || name.contains("clipboard") {
                        say(format!("notice {name:?}"));
                    }
                }
                say("notices done".into());
            }
            Ok(_) | Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
        }
        let Some(event) = conn.poll_for_event()? else {
            let mut fds = [rustix::event::PollFd::new(conn.stream(), rustix::event::PollFlags::IN)];
            let tick = rustix::event::Timespec { tv_sec: 0, tv_nsec: 20_000_000 };
            let _ = rustix::event::poll(&mut fds, Some(&tick));
            continue;
        };
        match event {
            Event::SelectionNotify(e) if e.requestor == window => {
                if e.property == NONE {
                    say("got none".into());
                } else {
                    let reply =
                        conn.get_property(true, window, slot, AtomEnum::ANY, 0, u32::MAX / 4)?.reply()?;
                    say(format!("got {:?}", String::from_utf8_lossy(&reply.value)));
                }
            }
            Event::SelectionRequest(e) => answer(&conn, &e, ours.as_deref(), (targets, utf8))?,
            Event::SelectionClear(e) if e.selection == clipboard => {
                ours = None;
                say("lost".into());
            }
            _ => {}
        }
    }
}

/// Gives a requestor what it asked for of our clipboard, or refuses (property `NONE`).
fn answer(
    conn: &RustConnection,
    e: &SelectionRequestEvent,
    text: Option<&str>,
    (targets, utf8): (Atom, Atom),
) -> Result<()> {
    let property = if e.property == NONE { e.target } else { e.property };
    let given = match text {
        Some(_) if e.target == targets => {
            conn.change_property32(
                PropMode::REPLACE,
                e.requestor,
                property,
                AtomEnum::ATOM,
                &[targets, utf8],
            )?;
            property
        }
        Some(text) if e.target == utf8 => {
            conn.change_property8(PropMode::REPLACE, e.requestor, property, utf8, text.as_bytes())?;
            property
        }
        _ => NONE,
    };
    let notify = SelectionNotifyEvent {
        response_type: x11rb::protocol::xproto::SELECTION_NOTIFY_EVENT,
        sequence: 0,
        time: e.time,
        requestor: e.requestor,
        selection: e.selection,
        target: e.target,
        property: given,
    };
    conn.send_event(false, e.requestor, EventMask::NO_EVENT, notify)?;
    conn.flush()?;
    Ok(())
}
