//! The clipboard against a second, independent X client: what we set, it reads (and its
//! TARGETS); what it sets, we read; both ways capped.

use anyhow::{Result, bail};
use assist_desktop::{DesktopError, X11Clipboard};
use assist_proto::desktop::MAX_CLIPBOARD;
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ConnectionExt as _, CreateWindowAux, EventMask, PropMode, SELECTION_NOTIFY_EVENT,
    SelectionNotifyEvent, Window, WindowClass,
};
use x11rb::wrapper::ConnectionExt as _;

use crate::harness::{Client, xvfb};

struct Other {
    client: Client,
    window: Window,
    clipboard: Atom,
    utf8: Atom,
    targets: Atom,
    slot: Atom,
}

impl Other {
    fn connect(display: &str) -> Result<Self> {
        let client = Client::connect(display)?;
        let atom = |n: &[u8]| -> Result<Atom> { Ok(client.conn.intern_atom(false, n)?.reply()?.atom) };
        let (clipboard, utf8, targets, slot) =
            (atom(b"CLIPBOARD")?, atom(b"UTF8_STRING")?, atom(b"TARGETS")?, atom(b"OTHER_SLOT")?);
        let window = client.conn.generate_id()?;
        let aux = CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE);
        client.conn.create_window(0, window, client.root, 0, 0, 1, 1, 0, WindowClass::INPUT_ONLY, 0, &aux)?;
        client.conn.sync()?;
        Ok(Other { client, window, clipboard, utf8, targets, slot })
    }

    /// Asks the clipboard's owner for `target`, as any X application does.
    fn read(&self, target: Atom) -> Result<Vec<u8>> {
        let conn = &self.client.conn;
        conn.convert_selection(self.window, self.clipboard, target, self.slot, x11rb::CURRENT_TIME)?;
        conn.flush()?;
        let e = self.client.wait_for("SelectionNotify", |e| matches!(e, Event::SelectionNotify(_)))?;
        let Event::SelectionNotify(n) = e else { unreachable!() };
        if n.property == x11rb::NONE {
            bail!("the owner refused");
        }
        Ok(conn.get_property(true, self.window, self.slot, AtomEnum::ANY, 0, 1 << 20)?.reply()?.value)
    }

    /// Takes the clipboard and answers one request for it with `text`.
    fn own(&self) -> Result<()> {
        let conn = &self.client.conn;
        conn.set_selection_owner(self.window, self.clipboard, x11rb::CURRENT_TIME)?;
        conn.sync()?;
        Ok(())
    }

    fn answer_one(&self, text: &[u8]) -> Result<()> {
        let conn = &self.client.conn;
        let e = self.client.wait_for("SelectionRequest", |e| matches!(e, Event::SelectionRequest(_)))?;
        let Event::SelectionRequest(r) = e else { unreachable!() };
        assert_eq!(r.target, self.utf8, "we ask for UTF-8 first");
        conn.change_property8(PropMode::REPLACE, r.requestor, r.property, self.utf8, text)?;
        let notify = SelectionNotifyEvent {
            response_type: SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: r.time,
            requestor: r.requestor,
            selection: r.selection,
            target: r.target,
            property: r.property,
        };
        conn.send_event(false, r.requestor, EventMask::NO_EVENT, notify)?;
        conn.sync()?;
        Ok(())
    }
}

#[test]
fn text_goes_both_ways_with_another_client_capped() -> Result<()> {
    let x = xvfb();
    let other = Other::connect(&x.display)?;
    let ours = X11Clipboard::open(&x.display)?;

    // We set; the other client reads our TARGETS and the text.
    let text = "Rechnung 2026-0042 — 1 234,56 € ✓";
    ours.set(text)?;
    let targets: Vec<u32> =
        other.read(other.targets)?.chunks(4).map(|b| u32::from_ne_bytes(b.try_into().unwrap())).collect();
    assert!(targets.contains(&other.utf8), "{targets:?}");
    assert_eq!(String::from_utf8(other.read(other.utf8)?)?, text);
    assert_eq!(ours.get()?.as_deref(), Some(text));

    // The other client sets; we read it (it answers while we wait).
    other.own()?;
    let reading = std::thread::scope(|s| -> Result<_> {
        let got = s.spawn(|| ours.get());
        other.answer_one("from the other side ✓".as_bytes())?;
        Ok(got.join().expect("reader"))
    })?;
    assert_eq!(reading?.as_deref(), Some("from the other side ✓"));

    // Over the cap, either way, refused whole.
    let big = "x".repeat(MAX_CLIPBOARD + 1);
    assert!(matches!(ours.set(&big), Err(DesktopError::ClipboardTooLarge { .. })));
    let reading = std::thread::scope(|s| -> Result<_> {
        let got = s.spawn(|| ours.get());
        other.answer_one(big.as_bytes())?;
        Ok(got.join().expect("reader"))
    })?;
    assert!(matches!(reading, Err(DesktopError::ClipboardTooLarge { .. })), "{reading:?}");

    // Exactly the cap is fine.
    let full = "y".repeat(MAX_CLIPBOARD);
    ours.set(&full)?;
    assert_eq!(other.read(other.utf8)?.len(), MAX_CLIPBOARD);
    Ok(())
}
