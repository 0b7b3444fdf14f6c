//! The X11 clipboard (the `CLIPBOARD` selection) as UTF-8 text, at most
//! [`MAX_CLIPBOARD`] bytes either way.
//!
//! [`X11Clipboard::set`] makes us the selection's owner; a thread on a connection of its
//! own answers other clients' requests for it (`TARGETS` and `UTF8_STRING`) until another
//! client takes the selection or the clipboard is dropped. [`X11Clipboard::get`] asks the
//! current owner for `UTF8_STRING` (or, from older clients, `STRING` as Latin-1) on a
//! second connection and waits at most [`ANSWER_WAIT`] for the answer.
//!
//! Text larger than the cap is refused, never cut: an owner that offers more, or that
//! answers incrementally (`INCR`, which clients use only for large data), is refused with
//! [`DesktopError::ClipboardTooLarge`]. It decides nothing: whether a session may read or
//! set the customer's clipboard (the `clipboard` capability) is checked before it is
//! called.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use assist_proto::desktop::MAX_CLIPBOARD;
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use x11rb::connection::Connection;
use x11rb::protocol::Event;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ClientMessageEvent, ConnectionExt as _, CreateWindowAux, EventMask, PropMode,
    SelectionNotifyEvent, SelectionRequestEvent, Timestamp, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;
use x11rb::wrapper::ConnectionExt as _;
use x11rb::{CURRENT_TIME, NONE};

use crate::DesktopError;

/// How long [`X11Clipboard::get`] waits for the owner's answer.
pub const ANSWER_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug)]
struct Atoms {
    clipboard: Atom,
    targets: Atom,
    utf8: Atom,
    incr: Atom,
    /// The property our reader receives answers in.
    slot: Atom,
    stop: Atom,
}

/// The clipboard of one X display.
pub struct X11Clipboard {
    /// Owns the selection and answers requests, on its own thread.
    owner: Arc<RustConnection>,
    owner_window: Window,
    /// Reads the selection, on the caller's thread.
    reader: RustConnection,
    reader_window: Window,
    atoms: Atoms,
    /// What we offer while we own the selection.
    text: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for X11Clipboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Clipboard").field("owner_window", &self.owner_window).finish_non_exhaustive()
    }
}

fn connect(display: &str) -> Result<(RustConnection, Window), DesktopError> {
    if display.is_empty() || display.contains('\0') {
        return Err(DesktopError::BadDisplay(display.to_owned()));
    }
    let (conn, n) = x11rb::connect(Some(display))
        .map_err(|source| DesktopError::Connect { display: display.to_owned(), source })?;
    let root = conn.setup().roots[n].root;
    let window = conn.generate_id()?;
    let aux = CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE);
    conn.create_window(0, window, root, -1, -1, 1, 1, 0, WindowClass::INPUT_ONLY, 0, &aux)?;
    Ok((conn, window))
}

fn atom(conn: &RustConnection, name: &[u8]) -> Result<Atom, DesktopError> {
    Ok(conn.intern_atom(false, name)?.reply()?.atom)
}

impl X11Clipboard {
    /// Opens two connections to `display` (for example `:0`): one that owns and serves the
    /// selection, one that reads it.
    pub fn open(display: &str) -> Result<Self, DesktopError> {
        let (owner, owner_window) = connect(display)?;
        let (reader, reader_window) = connect(display)?;
        let atoms = Atoms {
            clipboard: atom(&reader, b"CLIPBOARD")?,
            targets: atom(&reader, b"TARGETS")?,
            utf8: atom(&reader, b"UTF8_STRING")?,
            incr: atom(&reader, b"INCR")?,
            slot: atom(&reader, b"_ASSIST_CLIPBOARD")?,
            stop: atom(&reader, b"_ASSIST_CLIPBOARD_STOP")?,
        };
        owner.sync()?;
        reader.sync()?;
        let owner = Arc::new(owner);
        let text = Arc::new(Mutex::new(None));
        let thread = {
            let (owner, text) = (owner.clone(), text.clone());
            std::thread::Builder::new()
                .name("assist-clipboard".into())
                .spawn(move || serve(&owner, owner_window, atoms, &text))
                .map_err(|e| DesktopError::Stopped(e.to_string()))?
        };
        Ok(X11Clipboard { owner, owner_window, reader, reader_window, atoms, text, thread: Some(thread) })
    }

    /// Puts `text` on the clipboard: we own the selection and give `text` to whoever asks
    /// until another client takes it. Text over the cap is refused.
    pub fn set(&self, text: &str) -> Result<(), DesktopError> {
        if text.len() > MAX_CLIPBOARD {
            return Err(DesktopError::ClipboardTooLarge { len: text.len(), max: MAX_CLIPBOARD });
        }
        *self.text.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.to_owned());
        let time = self.server_time()?;
        self.owner.set_selection_owner(self.owner_window, self.atoms.clipboard, time)?;
        self.owner.sync()?;
        let owner = self.owner.get_selection_owner(self.atoms.clipboard)?.reply()?.owner;
        if owner != self.owner_window {
            return Err(DesktopError::Clipboard("another client took the clipboard at the same moment"));
        }
        Ok(())
    }

    /// The clipboard's text, or `None` when nobody owns it or the owner has no text.
    pub fn get(&self) -> Result<Option<String>, DesktopError> {
        let owner = self.reader.get_selection_owner(self.atoms.clipboard)?.reply()?.owner;
        if owner == NONE {
            return Ok(None);
        }
        if owner == self.owner_window {
            return Ok(self.text.lock().unwrap_or_else(|p| p.into_inner()).clone());
        }
        for target in [self.atoms.utf8, AtomEnum::STRING.into()] {
            if let Some(text) = self.convert(target)? {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }

    /// Asks the owner for the selection as `target`; `None` if it refuses that target.
    fn convert(&self, target: Atom) -> Result<Option<String>, DesktopError> {
        let (conn, window, atoms) = (&self.reader, self.reader_window, self.atoms);
        drain(conn)?;
        conn.delete_property(window, atoms.slot)?;
        conn.convert_selection(window, atoms.clipboard, target, atoms.slot, CURRENT_TIME)?;
        conn.flush()?;
        let notify = wait(conn, "the clipboard owner did not answer", |e| match e {
            Event::SelectionNotify(n) if n.requestor == window && n.selection == atoms.clipboard => Some(*n),
            _ => None,
        })?;
        if notify.property == NONE {
            return Ok(None);
        }
        // One byte more than the cap tells an oversized answer apart.
        let longs = (MAX_CLIPBOARD as u32).div_ceil(4) + 1;
        let reply = conn.get_property(true, window, atoms.slot, AtomEnum::ANY, 0, longs)?.reply()?;
        if reply.type_ == atoms.incr {
            return Err(DesktopError::ClipboardTooLarge { len: MAX_CLIPBOARD + 1, max: MAX_CLIPBOARD });
        }
        let len = reply.value.len() + reply.bytes_after as usize;
        if len > MAX_CLIPBOARD {
            return Err(DesktopError::ClipboardTooLarge { len, max: MAX_CLIPBOARD });
        }
        if reply.format != 8 {
            return Err(DesktopError::Clipboard("the owner's answer is not text"));
        }
        let text = if target == atoms.utf8 {
            String::from_utf8(reply.value)
                .map_err(|_| DesktopError::Clipboard("the owner's text is not UTF-8"))?
        } else {
            reply.value.iter().map(|&b| char::from(b)).collect()
        };
        Ok(Some(text))
    }

    /// A server timestamp (selection ownership must not use `CurrentTime`): the time of a
    /// property change on our reader's window.
    fn server_time(&self) -> Result<Timestamp, DesktopError> {
        let (conn, window, slot) = (&self.reader, self.reader_window, self.atoms.slot);
        drain(conn)?;
        conn.change_property8(PropMode::APPEND, window, slot, AtomEnum::STRING, &[])?;
        conn.flush()?;
        let notify = wait(conn, "the X server sent no timestamp", |e| match e {
            Event::PropertyNotify(p) if p.window == window && p.atom == slot => Some(p.time),
            _ => None,
        })?;
        Ok(notify)
    }
}

/// Drops the reader's queued events, so that an answer or a timestamp is never taken from
/// an earlier request (a late answer after a timeout, an older property change).
fn drain(conn: &RustConnection) -> Result<(), DesktopError> {
    conn.sync()?;
    while conn.poll_for_event()?.is_some() {}
    Ok(())
}

/// Waits at most [`ANSWER_WAIT`] for the event `want` picks on `conn` (others dropped).
fn wait<T>(
    conn: &RustConnection,
    timeout: &'static str,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> Result<T, DesktopError> {
    let deadline = Instant::now() + ANSWER_WAIT;
    loop {
        while let Some(e) = conn.poll_for_event()? {
            if let Some(t) = want(&e) {
                return Ok(t);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(DesktopError::Clipboard(timeout));
        }
        let mut fds = [PollFd::new(conn.stream(), PollFlags::IN)];
        let timespec = Timespec::try_from(left).map_err(|_| DesktopError::Clipboard(timeout))?;
        let _ = poll(&mut fds, Some(&timespec));
    }
}

/// The owner's thread: answers selection requests while we own the selection, forgets the
/// text when another client takes it, ends on the stop message.
fn serve(conn: &RustConnection, window: Window, atoms: Atoms, text: &Mutex<Option<String>>) {
    loop {
        let event = match conn.wait_for_event() {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(error = %e, "clipboard: the display connection ended");
                return;
            }
        };
        let result = match event {
            Event::ClientMessage(m) if m.window == window && m.type_ == atoms.stop => return,
            Event::SelectionClear(c) if c.owner == window && c.selection == atoms.clipboard => {
                *text.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Event::SelectionRequest(r) => {
                let offered = text.lock().unwrap_or_else(|p| p.into_inner()).clone();
                answer(conn, &r, atoms, offered.as_deref())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "clipboard: answering a request failed");
        }
    }
}

/// Gives a requestor what it asked for, or refuses (property `None`).
fn answer(
    conn: &RustConnection,
    r: &SelectionRequestEvent,
    atoms: Atoms,
    text: Option<&str>,
) -> Result<(), DesktopError> {
    // Clients from before ICCCM 2 name no property: the target's name is used.
    let property = if r.property == NONE { r.target } else { r.property };
    let served = match text {
        Some(_) if r.selection == atoms.clipboard && r.target == atoms.targets => {
            let targets = [atoms.targets, atoms.utf8];
            conn.change_property32(PropMode::REPLACE, r.requestor, property, AtomEnum::ATOM, &targets)?;
            true
        }
        Some(text) if r.selection == atoms.clipboard && r.target == atoms.utf8 => {
            conn.change_property8(PropMode::REPLACE, r.requestor, property, atoms.utf8, text.as_bytes())?;
            true
        }
        _ => false,
    };
    let notify = SelectionNotifyEvent {
        response_type: x11rb::protocol::xproto::SELECTION_NOTIFY_EVENT,
        sequence: 0,
        time: r.time,
        requestor: r.requestor,
        selection: r.selection,
        target: r.target,
        property: if served { property } else { NONE },
    };
    conn.send_event(false, r.requestor, EventMask::NO_EVENT, notify)?;
    conn.flush()?;
    Ok(())
}

impl Drop for X11Clipboard {
    fn drop(&mut self) {
        // An event sent with no mask goes to the window's creator: the owner's thread.
        let stop = ClientMessageEvent::new(32, self.owner_window, self.atoms.stop, [0u32; 5]);
        let _ = self.owner.send_event(false, self.owner_window, EventMask::NO_EVENT, stop);
        let _ = self.owner.flush();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = self.owner.destroy_window(self.owner_window);
        let _ = self.owner.sync();
        let _ = self.reader.destroy_window(self.reader_window);
        let _ = self.reader.sync();
    }
}
