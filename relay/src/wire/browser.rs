//! A browser's shell: the console's WebSocket as one more kind of engineer peer.
//!
//! The console hands the relay a [`ShellLink`] (what the page sends, what it shows); this
//! module plays the part `wire::engineer` plays for a QUIC connection:
//!
//! - the page's request goes to `Relay::request_session` with an [`EngineerLink`] of its
//!   own (its own connection number), so consent, expiry and every end are exactly
//!   `assist shell`'s; the broker's messages become the page's events;
//! - once approved, the shell channel is admitted by `Relay::admit_channel`, opened on the
//!   agent through the seam (`AgentPeer::open_channel`), recorded as the CLI's (the
//!   recording names the client, `browser`) and spliced by the same `splice` between the
//!   agent's stream and the socket ([`PageInput`], [`PageOutput`]);
//! - a revocation or expiry closes the channel through the same registration as any
//!   channel; when the grant no longer covers the shell the page is told why and the
//!   session is left (`Detach`), as `assist shell` does;
//! - the page going away (tab closed, network lost) ends the session's shell channel as
//!   an engineer disconnect; an approved session then waits ([`Parked`]) for the relay's
//!   linger time (the consent timeout, as a detached session does) for a new page of the
//!   same engineer to pick it up (`reattach`: no second consent, a new shell channel,
//!   audited `session.reattached`); after that it ends as an engineer disconnect. The
//!   page's own "Disconnect" (`leave`), signing out and the broker taking the person's
//!   access away end it at once.
//!
//! It decides nothing: every check is the broker's.

use super::browser_clipboard::{OpenClipboard, is_clipboard};
use super::browser_desktop;
use super::browser_open::{OpenFailed, Opened, open_for_browser};
use super::splice::{Tee, splice};
use crate::broker::peer::{ChunkSink, ChunkSource, Close, Peer, PeerFuture, StreamGone};
use crate::broker::policy::Principal;
use crate::broker::{EngineerLink, NewSession, Opener, Relay};
use crate::recording::format::Direction;
use assist_console::{Down, ShellLink, ShellRequest, ShellUp};
use assist_proto::caps::{Capability, Priority};
use assist_proto::ids::{AgentName, SessionId, UserName};
use assist_proto::msg::{ChannelKind, ChannelOpen, PtyRequest, RelayToEngineer};
use assist_proto::session::EndReason;
use bytes::Bytes;
use serde_json::json;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, info};

/// Messages queued towards the page (events and output) before the splice waits.
pub(super) const DOWN_QUEUE: usize = 64;
/// Keystroke messages queued from the page towards the agent.
const UP_QUEUE: usize = 64;

/// The browser as the broker's [`Peer`]: closing it stops the link's task.
struct BrowserPeer {
    closing: watch::Sender<Option<Close>>,
}

impl Peer for BrowserPeer {
    fn close(&self, why: Close) {
        self.closing.send_replace(Some(why));
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Starts a browser link for `who` (a shell, or a desktop: the page's first request
/// says which); the task behind it ends when the page goes.
pub(crate) fn open_shell(
    relay: Arc<Relay>,
    parked: Arc<Parked>,
    who: Principal,
    source: std::net::IpAddr,
) -> ShellLink {
    let (up_tx, up_rx) = mpsc::channel(UP_QUEUE);
    let (down_tx, down_rx) = mpsc::channel(DOWN_QUEUE);
    let span = tracing::info_span!("browser", user = %who.user, %source);
    tokio::spawn(run(relay, parked, who, up_rx, down_tx).instrument(span));
    ShellLink { up: up_tx, down: down_rx }
}

pub(super) fn event(v: serde_json::Value) -> Down {
    Down::Event(v)
}

/// The request as the broker takes it, or what is wrong with it in words.
fn new_session(r: ShellRequest) -> Result<(NewSession, (u16, u16)), String> {
    let priority = Priority::from_str(&r.priority).map_err(|e| e.to_string())?;
    let capabilities =
        r.capabilities.iter().map(|c| Capability::from_str(c.trim())).collect::<Result<Vec<_>, _>>()?;
    if !capabilities.contains(&Capability::Shell) {
        return Err("a shell in the browser needs the capability shell".into());
    }
    let req = NewSession {
        agent: AgentName::new(r.agent.trim()),
        ticket: r.ticket,
        priority,
        reason: r.reason,
        capabilities,
        duration_secs: Some(r.minutes.saturating_mul(60)),
    };
    Ok((req, (r.cols.max(1), r.rows.max(1))))
}

/// Browser sessions whose page went away (tab closed, network lost), each waiting, for
/// the relay's linger time (the consent timeout), to be picked up by a new page of the
/// same engineer.
#[derive(Default)]
pub(crate) struct Parked(std::sync::Mutex<HashMap<SessionId, ParkedLink>>);

struct ParkedLink {
    user: UserName,
    hand: mpsc::Sender<Page>,
}

/// A page's socket, as the link task reads and writes it.
struct Page {
    up: mpsc::Receiver<ShellUp>,
    down: mpsc::Sender<Down>,
    size: (u16, u16),
}

impl Parked {
    /// Hands `page` to the parked session `id` if it is `user`'s; gives it back if not.
    fn pick_up(&self, id: &SessionId, user: &UserName, page: Page) -> Result<(), Page> {
        let hand = {
            let parked = self.0.lock().expect("parked lock");
            match parked.get(id) {
                Some(p) if &p.user == user => p.hand.clone(),
                _ => return Err(page),
            }
        };
        hand.try_send(page).map_err(|e| match e {
            mpsc::error::TrySendError::Full(p) | mpsc::error::TrySendError::Closed(p) => p,
        })
    }
}

/// What the page knows of its session, to tell a page that picks it up.
#[derive(Default)]
struct Known {
    granted: Vec<String>,
    expires_at: Option<i64>,
    approver: Option<String>,
}

async fn run(
    relay: Arc<Relay>,
    parked: Arc<Parked>,
    who: Principal,
    up: mpsc::Receiver<ShellUp>,
    down: mpsc::Sender<Down>,
) {
    let conn_id = relay.conn_id();
    let (tx, mut rx) = mpsc::channel::<RelayToEngineer>(32);
    let peer = Arc::new(BrowserPeer { closing: watch::Sender::new(None) });
    let mut closing = peer.closing.subscribe();
    let link = EngineerLink { conn_id, tx: tx.clone(), peer: peer.clone() };
    relay.person_online(conn_id, who.user.clone(), peer.clone());
    let opener = Opener { conn_id, tx: tx.downgrade(), peer };
    let mut page = Page { up, down, size: (80, 24) };
    let mut session: Option<SessionId> = None;
    let mut known = Known::default();
    let mut requested = false;
    let mut approved = false;
    // For a desktop link: whether the page asked for control, and whether the open
    // channel has it.
    let mut desktop: Option<DesktopAsked> = None;
    // A desktop link's clipboard channel, while there is one.
    let mut clip: Option<OpenClipboard> = None;
    // Keystrokes towards the open shell, while there is one.
    let mut input: Option<mpsc::Sender<Bytes>> = None;
    let mut shell: Option<tokio::task::JoinHandle<()>> = None;
    let mut shell_stream: Arc<std::sync::OnceLock<u64>> = Arc::default();
    let mut left = false;
    // The inner loop ends only when the page's socket went; everything else ends the link.
    'link: loop {
        let down = page.down.clone();
        loop {
            tokio::select! {
                m = page.up.recv() => match m {
                    None => break,
                    Some(ShellUp::Leave) => break 'link,
                    Some(ShellUp::Reattach { session: id, cols, rows }) if !requested => {
                        page.size = (cols.max(1), rows.max(1));
                        // This link had no session: it only carries the page over.
                        relay.person_gone(conn_id);
                        let id = SessionId::new(&id);
                        if let Err(back) = parked.pick_up(&id, &who.user, page) {
                            let message = format!("session {id} cannot be picked up: it is not live, not yours, or already open in another page");
                            let _ = back.down.send(event(json!({ "type": "ended", "message": message }))).await;
                        }
                        return;
                    }
                    Some(ShellUp::Request(r)) if !requested => match new_session(r) {
                        Ok((req, pty)) => {
                            page.size = pty;
                            match relay.request_session(&who, link.clone(), req).await {
                                Ok(()) => requested = true,
                                Err(r) => {
                                    let _ = down.send(event(json!({ "type": "error", "message": r.message }))).await;
                                }
                            }
                        }
                        Err(message) => {
                            let _ = down.send(event(json!({ "type": "error", "message": message }))).await;
                        }
                    },
                    Some(ShellUp::Desktop(r)) if !requested => match browser_desktop::new_session(r.clone()) {
                        Ok(req) => match relay.request_session(&who, link.clone(), req).await {
                            Ok(()) => {
                                requested = true;
                                desktop = Some(DesktopAsked {
                                    control: r.control,
                                    clipboard: r.clipboard,
                                    open_with_control: false,
                                });
                            }
                            Err(r) => {
                                let _ = down.send(event(json!({ "type": "error", "message": r.message }))).await;
                            }
                        },
                        Err(message) => {
                            let _ = down.send(event(json!({ "type": "error", "message": message }))).await;
                        }
                    },
                    Some(ShellUp::Request(_) | ShellUp::Reattach { .. } | ShellUp::Desktop(_)) => {
                        let message = "this page already asked for a session; open a new page for another";
                        let _ = down.send(event(json!({ "type": "error", "message": message }))).await;
                    }
                    Some(ShellUp::Resize { cols, rows }) => {
                        page.size = (cols.max(1), rows.max(1));
                        if let Some(id) = &session {
                            relay.resize(conn_id, id, page.size.0, page.size.1).await;
                        }
                    }
                    Some(ShellUp::Input(bytes)) if desktop.is_some() && is_clipboard(&bytes) => {
                        // The clipboard's own channel, opened now if none is: without the
                        // grant the attempt is refused (and audited) and the text goes nowhere.
                        match (&clip, &session) {
                            (Some(c), _) if c.is_open() => {
                                let _ = c.input.send(bytes).await;
                            }
                            (_, Some(id)) if approved => {
                                clip = Some(OpenClipboard::start(&relay, &who, &opener, id.clone(), &down, Some(bytes)));
                            }
                            _ => {
                                let message = "the clipboard can be shared once the session is approved";
                                let _ = down.send(event(json!({ "type": "clipboard", "state": "refused", "message": message }))).await;
                            }
                        }
                    }
                    Some(ShellUp::Input(bytes)) => {
                        if let Some(tx) = &input {
                            // Waits while the shell does not read: backpressure to the page.
                            let _ = tx.send(bytes).await;
                        }
                    }
                },
                m = rx.recv() => {
                    let Some(msg) = m else { break 'link };
                    match msg {
                        RelayToEngineer::SessionRequested { session: s, waiting_for } => {
                            session = Some(s.id.clone());
                            let ev = json!({ "type": "requested", "session": s.id, "waiting_for": waiting_for, "deadline": s.consent_deadline });
                            let _ = down.send(event(ev)).await;
                        }
                        RelayToEngineer::SessionApproved { session: s } => {
                            approved = true;
                            known.granted = s.granted.iter().flatten().map(ToString::to_string).collect();
                            known.expires_at = s.grant_expires_at;
                            known.approver = s.approver.clone();
                            let ev = json!({
                                "type": "approved", "session": s.id, "by": s.approver,
                                "granted": &known.granted, "expires_at": s.grant_expires_at,
                            });
                            let _ = down.send(event(ev)).await;
                            if let Some(asked) = &mut desktop {
                                let granted: Vec<Capability> = s.granted.iter().flatten().cloned().collect();
                                asked.open_with_control = asked.control && browser_desktop::desktop_rights(&granted).1;
                                let (in_tx, in_rx) = mpsc::channel(UP_QUEUE);
                                input = Some(in_tx);
                                let channel = browser_desktop::DesktopChannel {
                                    relay: relay.clone(),
                                    who: who.clone(),
                                    opener: opener.clone(),
                                    session: s.id.clone(),
                                    control: asked.open_with_control,
                                };
                                shell = Some(tokio::spawn(channel.run(in_rx, down.clone()).in_current_span()));
                                if asked.clipboard && granted.iter().any(|g| Capability::Clipboard.within(g)) {
                                    clip = Some(OpenClipboard::start(&relay, &who, &opener, s.id.clone(), &down, None));
                                }
                                continue;
                            }
                            let open = open_shell_channel(&relay, &who, &opener, s.id.clone(), page.size, &down);
                            input = Some(open.input);
                            shell = Some(open.task);
                            shell_stream = open.stream;
                        }
                        RelayToEngineer::SessionDenied { by, reason } => {
                            let by = by.map(|b| format!(" by {b}")).unwrap_or_default();
                            let _ = down.send(event(json!({ "type": "denied", "message": format!("denied{by}: {reason}") }))).await;
                            break 'link;
                        }
                        RelayToEngineer::SessionExpired { .. } => {
                            let message = "nobody answered the request in time";
                            let _ = down.send(event(json!({ "type": "denied", "message": message }))).await;
                            break 'link;
                        }
                        RelayToEngineer::GrantChanged { grant, change, in_force, .. } => {
                            let granted: Vec<String> = grant.capabilities.iter().map(ToString::to_string).collect();
                            known.granted = granted.clone();
                            known.expires_at = in_force.then_some(grant.expires_at);
                            let shell_lost = match &desktop {
                                // For a desktop link: the view is what it holds on to.
                                Some(_) => !in_force || !browser_desktop::desktop_rights(&grant.capabilities).0,
                                None => !in_force || !grant.capabilities.iter().any(|c| Capability::Shell.within(c)),
                            };
                            let control = !shell_lost && browser_desktop::desktop_rights(&grant.capabilities).1;
                            let ev = json!({ "type": "grant", "change": change, "in_force": in_force, "granted": granted, "expires_at": grant.expires_at, "shell_lost": shell_lost, "control": control });
                            let _ = down.send(event(ev)).await;
                            if in_force
                                && !shell_lost
                                && let Some(asked) = &desktop
                                && asked.clipboard
                                && !clip.as_ref().is_some_and(OpenClipboard::is_open)
                                && grant.capabilities.iter().any(|g| Capability::Clipboard.within(g))
                                && let Some(id) = &session
                            {
                                // The clipboard granted later (an escalation): shared from now.
                                clip = Some(OpenClipboard::start(&relay, &who, &opener, id.clone(), &down, None));
                            }
                            if !shell_lost
                                && let Some(asked) = &mut desktop
                                && asked.open_with_control
                                && !control
                                && let Some(id) = &session
                            {
                                // Control revoked, the view kept: the control channel goes (the
                                // relay resets it; the page's input ends here at once) and a
                                // view channel takes its place.
                                drop(input.take());
                                if let Some(task) = shell.take() {
                                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
                                }
                                asked.open_with_control = false;
                                let (in_tx, in_rx) = mpsc::channel(UP_QUEUE);
                                input = Some(in_tx);
                                let channel = browser_desktop::DesktopChannel {
                                    relay: relay.clone(),
                                    who: who.clone(),
                                    opener: opener.clone(),
                                    session: id.clone(),
                                    control: false,
                                };
                                shell = Some(tokio::spawn(channel.run(in_rx, down.clone()).in_current_span()));
                            }
                            if shell_lost && let Some(id) = &session {
                                // Only the shell is gone: the session stays for what else it
                                // holds, as `assist shell` leaves it.
                                input = None;
                                if let Some(task) = shell.take() {
                                    let _ = task.await;
                                }
                                let message = match relay.detach(&who, conn_id, id).await {
                                    Ok(m) => m,
                                    Err(r) => r.message,
                                };
                                let _ = down.send(event(json!({ "type": "left", "message": message }))).await;
                                left = true;
                                break 'link;
                            }
                        }
                        RelayToEngineer::SessionEnded { reason } => {
                            input = None;
                            if let Some(task) = shell.take() {
                                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
                            }
                            let _ = down.send(event(json!({ "type": "ended", "message": reason.to_string() }))).await;
                            break 'link;
                        }
                        RelayToEngineer::Watching { watcher, org, watching, .. } => {
                            let message = if watching { format!("{watcher} ({org}) is watching") } else { format!("{watcher} ({org}) stopped watching") };
                            let _ = down.send(event(json!({ "type": "watching", "message": message, "watching": watching }))).await;
                        }
                        RelayToEngineer::Error { message, .. } => {
                            let _ = down.send(event(json!({ "type": "error", "message": message }))).await;
                        }
                        _ => {}
                    }
                }
                why = async { closing.wait_for(Option::is_some).await.ok().and_then(|w| *w) } => {
                    let why = why.map(Close::message).unwrap_or("closed");
                    let _ = down.send(event(json!({ "type": "ended", "message": why }))).await;
                    break 'link;
                }
            }
        }
        // The page's socket went. Its shell channel ends with it (an engineer
        // disconnect for the channels); an approved session waits to be picked up.
        if let (Some(id), Some(stream)) = (&session, shell_stream.get()) {
            relay.page_left_shell(id, *stream);
        }
        input = None;
        if let Some(task) = shell.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
        }
        if let Some(c) = clip.take() {
            drop(c.input);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), c.task).await;
        }
        // A desktop is not parked: its page going ends the session (an engineer disconnect).
        let Some(id) = session.clone().filter(|_| approved && desktop.is_none()) else { break };
        let (hand, mut handed) = mpsc::channel(1);
        parked.0.lock().expect("parked lock").insert(id.clone(), ParkedLink { user: who.user.clone(), hand });
        info!(session = %id, "the page went; the session waits to be picked up");
        let gone_at = tokio::time::Instant::now();
        let until = gone_at + relay.linger();
        let picked = loop {
            tokio::select! {
                p = handed.recv() => break p,
                m = rx.recv() => match m {
                    None | Some(RelayToEngineer::SessionEnded { .. }) => break None,
                    Some(RelayToEngineer::GrantChanged { grant, in_force, .. }) => {
                        known.granted = grant.capabilities.iter().map(ToString::to_string).collect();
                        known.expires_at = in_force.then_some(grant.expires_at);
                    }
                    Some(_) => {}
                },
                _ = tokio::time::sleep_until(until) => break None,
                _ = closing.wait_for(Option::is_some) => break None,
            }
        };
        parked.0.lock().expect("parked lock").remove(&id);
        let Some(next) = picked else { break };
        page = next;
        let away = gone_at.elapsed();
        match relay.reattached(&who, &id, away).await {
            Ok(()) => {}
            Err(r) => {
                let _ = page.down.send(event(json!({ "type": "ended", "message": r.message }))).await;
                break;
            }
        }
        let ev = json!({
            "type": "reattached", "session": id, "by": known.approver, "granted": &known.granted,
            "expires_at": known.expires_at, "away_ms": away.as_millis() as u64,
        });
        let _ = page.down.send(event(ev)).await;
        let open = open_shell_channel(&relay, &who, &opener, id.clone(), page.size, &page.down);
        input = Some(open.input);
        shell = Some(open.task);
        shell_stream = open.stream;
    }
    drop(input);
    relay.person_gone(conn_id);
    if !left {
        relay.engineer_gone(conn_id, EndReason::EngineerDisconnected).await;
    }
    if let Some(task) = shell {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
    }
    if let Some(c) = clip {
        drop(c.input);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), c.task).await;
    }
    info!("browser shell link closed");
}

/// Starts the shell channel of an approved session: its keystrokes' way in, and its task.
fn open_shell_channel(
    relay: &Arc<Relay>,
    who: &Principal,
    opener: &Opener,
    session: SessionId,
    size: (u16, u16),
    down: &mpsc::Sender<Down>,
) -> OpenShell {
    let (input, in_rx) = mpsc::channel(UP_QUEUE);
    let stream = Arc::new(std::sync::OnceLock::new());
    let channel = ShellChannel {
        relay: relay.clone(),
        who: who.clone(),
        opener: opener.clone(),
        session,
        size,
        stream: stream.clone(),
    };
    let task = tokio::spawn(channel.run(in_rx, down.clone()).in_current_span());
    OpenShell { input, task, stream }
}

/// What a desktop link's page asked for, and what its open channel has.
struct DesktopAsked {
    control: bool,
    /// The clipboard too (its own channel, `browser_clipboard`).
    clipboard: bool,
    open_with_control: bool,
}

/// A browser's shell channel, from the link's side.
struct OpenShell {
    /// Keystrokes towards it.
    input: mpsc::Sender<Bytes>,
    task: tokio::task::JoinHandle<()>,
    /// The agent's stream id, once open.
    stream: Arc<std::sync::OnceLock<u64>>,
}

/// The shell channel of an approved browser session.
struct ShellChannel {
    relay: Arc<Relay>,
    who: Principal,
    opener: Opener,
    session: SessionId,
    size: (u16, u16),
    /// The agent's stream id of the channel, once open.
    stream: Arc<std::sync::OnceLock<u64>>,
}

impl ShellChannel {
    async fn run(self, input: mpsc::Receiver<Bytes>, down: mpsc::Sender<Down>) {
        let closed = |message: String| event(json!({ "type": "closed", "message": message }));
        let pty = PtyRequest { cols: self.size.0, rows: self.size.1, term: "xterm-256color".into() };
        let open = ChannelOpen {
            session: self.session.clone(),
            report_exit: false,
            channel: ChannelKind::Shell { pty: Some(pty), command: None },
        };
        let relay = &self.relay;
        let Opened { admitted, ch } = match open_for_browser(relay, &self.who, open, Some(&self.opener)).await
        {
            Ok(opened) => opened,
            Err(OpenFailed::AgentRefused(reason)) => {
                let _ = down.send(closed(format!("the agent refused the shell: {reason}"))).await;
                return;
            }
            Err(e) => {
                let _ = down.send(closed(e.to_string())).await;
                return;
            }
        };
        let _ = self.stream.set(ch.stream);
        let span = admitted.session.span.clone();
        async move {
            let (asend, arecv) = (ch.send, ch.recv);
            let _ = down.send(event(json!({ "type": "open" }))).await;
            let channel = admitted.channel;
            info!(channel, "browser shell open");
            let tee =
                |direction| admitted.recorder.clone().map(|recorder| Tee { recorder, channel, direction });
            let session = &admitted.session;
            let stop = &admitted.handle.stop;
            session.open_outputs.send_modify(|n| *n += 1);
            let up = splice(PageInput(input), asend, stop.clone(), tee(Direction::In), None);
            let down_splice = async {
                let left = (relay.clone(), self.session.clone(), ch.stream);
                let sink = session.mirror(PageOutput { down: down.clone(), left: Some(left), few: None });
                let r = splice(arecv, sink, stop.clone(), tee(Direction::Out), None).await;
                session.open_outputs.send_modify(|n| *n -= 1);
                r
            };
            let ((up_bytes, up_end), (down_bytes, down_end)) = tokio::join!(up, down_splice);
            let ends = (format!("{up_end:?}"), format!("{down_end:?}"));
            admitted
                .record_close(
                    json!({ "in": up_bytes, "out": down_bytes, "in_end": &ends.0, "out_end": &ends.1 }),
                )
                .await;
            info!(up_bytes, ?up_end, down_bytes, ?down_end, "browser shell closed");
            let _ = down.send(closed("the shell closed".into())).await;
        }
        .instrument(span)
        .await;
    }
}

/// The page's keystrokes (or desktop messages), as a splice reads them.
pub(super) struct PageInput(pub(super) mpsc::Receiver<Bytes>);

impl ChunkSource for PageInput {
    fn read_chunks<'a>(
        &'a mut self,
        bufs: &'a mut [Bytes],
    ) -> PeerFuture<'a, Result<Option<usize>, StreamGone>> {
        Box::pin(async move {
            let Some(first) = self.0.recv().await else { return Ok(None) };
            let Some(slot) = bufs.first_mut() else { return Ok(Some(0)) };
            *slot = first;
            let mut n = 1;
            while n < bufs.len() {
                match self.0.try_recv() {
                    Ok(b) => {
                        bufs[n] = b;
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            Ok(Some(n))
        })
    }
    fn stop(&mut self) {
        self.0.close();
    }
}

/// The page's terminal (or viewer), as a splice writes it: each chunk one binary message.
/// When a shell's page is gone, the broker is told (session, agent stream) before the
/// splice ends the channel, so that the shell's exit does not end the session.
pub(super) struct PageOutput {
    down: mpsc::Sender<Down>,
    left: Option<(Arc<Relay>, SessionId, u64)>,
    /// For a desktop's picture: at most this many messages waiting for the page.
    few: Option<usize>,
}

/// Desktop messages a page may have waiting (of the link's [`DOWN_QUEUE`]) before the
/// splice waits, and with it the agent: a slow page gets fewer, newer frames (the agent
/// takes the next picture only once the last was written) rather than seconds of old ones.
pub(super) const DESKTOP_QUEUED: usize = 4;

impl PageOutput {
    /// A sink whose page going away tells nobody (a clipboard's).
    pub(super) fn plain(down: mpsc::Sender<Down>) -> Self {
        Self { down, left: None, few: None }
    }

    /// A desktop viewer's sink: [`DESKTOP_QUEUED`] messages at most wait for the page.
    pub(super) fn latest(down: mpsc::Sender<Down>) -> Self {
        Self { down, left: None, few: Some(DESKTOP_QUEUED) }
    }
}

impl ChunkSink for PageOutput {
    fn write_all_chunks<'a>(&'a mut self, bufs: &'a mut [Bytes]) -> PeerFuture<'a, Result<(), StreamGone>> {
        Box::pin(async move {
            for b in bufs.iter_mut() {
                let chunk = std::mem::take(b);
                let sent = match self.few {
                    // Room for all but `few - 1` of the queue means at most `few - 1`
                    // messages wait; ours makes `few`. The rest of the room is given back.
                    Some(few) => match self.down.reserve_many(DOWN_QUEUE + 1 - few).await {
                        Ok(mut room) => {
                            room.next().expect("one permit at least").send(Down::Output(chunk));
                            Ok(())
                        }
                        Err(_) => Err(()),
                    },
                    None => self.down.send(Down::Output(chunk)).await.map_err(|_| ()),
                };
                if sent.is_err() {
                    if let Some((relay, session, stream)) = self.left.take() {
                        relay.page_left_shell(&session, stream);
                    }
                    return Err(StreamGone);
                }
            }
            Ok(())
        })
    }
    fn finish(&mut self) {}
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(priority: &str, caps: &[&str]) -> ShellRequest {
        ShellRequest {
            agent: " db01 ".into(),
            ticket: "T-1".into(),
            priority: priority.into(),
            reason: "disk".into(),
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            minutes: 30,
            cols: 0,
            rows: 40,
        }
    }

    #[tokio::test]
    async fn a_desktop_page_has_only_a_few_messages_waiting_and_the_splice_waits_for_it() {
        use futures_util::FutureExt;
        let (tx, mut page) = mpsc::channel(DOWN_QUEUE);
        let mut out = PageOutput::latest(tx.clone());
        let frame = || [Bytes::from_static(b"frame")];
        for _ in 0..DESKTOP_QUEUED {
            out.write_all_chunks(&mut frame()).await.unwrap();
        }
        // A page that reads nothing holds the next message, and with it the agent.
        let mut more = frame();
        let mut next = out.write_all_chunks(&mut more);
        assert!((&mut next).now_or_never().is_none(), "written past {DESKTOP_QUEUED} waiting");
        assert!(page.recv().await.is_some());
        next.await.unwrap();
        assert_eq!(page.len(), DESKTOP_QUEUED);
        // A shell's output fills the whole queue as before.
        let mut shell = PageOutput { down: tx, left: None, few: None };
        shell.write_all_chunks(&mut frame()).now_or_never().expect("room").unwrap();
        assert_eq!(page.len(), DESKTOP_QUEUED + 1);
    }

    #[test]
    fn the_page_asks_as_assist_shell_does() {
        let (ok, size) = new_session(req("p1", &["shell", "files.read:/var/log"])).unwrap();
        assert_eq!(ok.agent.as_str(), "db01");
        assert_eq!(ok.duration_secs, Some(1800));
        assert_eq!(ok.capabilities, vec![Capability::Shell, "files.read:/var/log".parse().unwrap()]);
        assert_eq!(size, (1, 40), "a zero size is made 1");
        let refused = |r| new_session(r).err().unwrap_or_default();
        assert!(refused(req("p1", &["files.read:/var/log"])).contains("shell"));
        assert!(new_session(req("p9", &["shell"])).is_err());
        assert!(refused(req("p2", &["shell", "files.read"])).contains("roots"));
    }
}
