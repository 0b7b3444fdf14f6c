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
//! - the page going away (tab closed, network lost) ends the link's sessions as an
//!   engineer disconnect; the broker taking the person's access away closes it.
//!
//! It decides nothing: every check is the broker's.

use super::browser_desktop;
use super::splice::{Tee, splice};
use crate::broker::peer::{ChunkSink, ChunkSource, Close, Peer, PeerFuture, StreamGone};
use crate::broker::policy::Principal;
use crate::broker::{Client, EngineerLink, NewSession, Opener, Relay};
use crate::recording::format::Direction;
use assist_console::{Down, ShellLink, ShellRequest, ShellUp};
use assist_proto::caps::{Capability, Priority};
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::{
    AgentChannelOpen, ChannelKind, ChannelOpen, ChannelReply, PtyRequest, RelayToEngineer,
};
use assist_proto::session::EndReason;
use bytes::Bytes;
use serde_json::json;
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
pub(crate) fn open_shell(relay: Arc<Relay>, who: Principal, source: std::net::IpAddr) -> ShellLink {
    let (up_tx, up_rx) = mpsc::channel(UP_QUEUE);
    let (down_tx, down_rx) = mpsc::channel(DOWN_QUEUE);
    let span = tracing::info_span!("browser", user = %who.user, %source);
    tokio::spawn(run(relay, who, up_rx, down_tx).instrument(span));
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

async fn run(relay: Arc<Relay>, who: Principal, mut up: mpsc::Receiver<ShellUp>, down: mpsc::Sender<Down>) {
    let conn_id = relay.conn_id();
    let (tx, mut rx) = mpsc::channel::<RelayToEngineer>(32);
    let peer = Arc::new(BrowserPeer { closing: watch::Sender::new(None) });
    let mut closing = peer.closing.subscribe();
    let link = EngineerLink { conn_id, tx: tx.clone(), peer: peer.clone() };
    relay.person_online(conn_id, who.user.clone(), peer.clone());
    let opener = Opener { conn_id, tx: tx.downgrade(), peer };
    let mut session: Option<SessionId> = None;
    let mut size = (80, 24);
    let mut requested = false;
    // For a desktop link: whether the page asked for control, and whether the open
    // channel has it.
    let mut desktop: Option<DesktopAsked> = None;
    // Keystrokes towards the open shell, while there is one.
    let mut input: Option<mpsc::Sender<Bytes>> = None;
    let mut shell: Option<tokio::task::JoinHandle<()>> = None;
    let mut left = false;
    loop {
        tokio::select! {
            m = up.recv() => match m {
                None => break,
                Some(ShellUp::Request(r)) if !requested => match new_session(r) {
                    Ok((req, pty)) => {
                        size = pty;
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
                            desktop = Some(DesktopAsked { control: r.control, open_with_control: false });
                        }
                        Err(r) => {
                            let _ = down.send(event(json!({ "type": "error", "message": r.message }))).await;
                        }
                    },
                    Err(message) => {
                        let _ = down.send(event(json!({ "type": "error", "message": message }))).await;
                    }
                },
                Some(ShellUp::Request(_) | ShellUp::Desktop(_)) => {
                    let message = "this page already asked for a session; open a new page for another";
                    let _ = down.send(event(json!({ "type": "error", "message": message }))).await;
                }
                Some(ShellUp::Resize { cols, rows }) => {
                    size = (cols.max(1), rows.max(1));
                    if let Some(id) = &session {
                        relay.resize(conn_id, id, size.0, size.1).await;
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
                let Some(msg) = m else { break };
                match msg {
                    RelayToEngineer::SessionRequested { session: s, waiting_for } => {
                        session = Some(s.id.clone());
                        let ev = json!({ "type": "requested", "session": s.id, "waiting_for": waiting_for, "deadline": s.consent_deadline });
                        let _ = down.send(event(ev)).await;
                    }
                    RelayToEngineer::SessionApproved { session: s } => {
                        let ev = json!({
                            "type": "approved", "session": s.id, "by": s.approver,
                            "granted": s.granted.iter().flatten().map(ToString::to_string).collect::<Vec<_>>(),
                            "expires_at": s.grant_expires_at,
                        });
                        let _ = down.send(event(ev)).await;
                        let (in_tx, in_rx) = mpsc::channel(UP_QUEUE);
                        input = Some(in_tx);
                        if let Some(asked) = &mut desktop {
                            let granted: Vec<Capability> = s.granted.iter().flatten().cloned().collect();
                            asked.open_with_control = asked.control && browser_desktop::desktop_rights(&granted).1;
                            let channel = browser_desktop::DesktopChannel {
                                relay: relay.clone(),
                                who: who.clone(),
                                opener: opener.clone(),
                                session: s.id.clone(),
                                control: asked.open_with_control,
                            };
                            shell = Some(tokio::spawn(channel.run(in_rx, down.clone()).in_current_span()));
                            continue;
                        }
                        let channel = ShellChannel {
                            relay: relay.clone(),
                            who: who.clone(),
                            opener: opener.clone(),
                            session: s.id.clone(),
                            size,
                        };
                        shell = Some(tokio::spawn(channel.run(in_rx, down.clone()).in_current_span()));
                    }
                    RelayToEngineer::SessionDenied { by, reason } => {
                        let by = by.map(|b| format!(" by {b}")).unwrap_or_default();
                        let _ = down.send(event(json!({ "type": "denied", "message": format!("denied{by}: {reason}") }))).await;
                        break;
                    }
                    RelayToEngineer::SessionExpired { .. } => {
                        let message = "nobody answered the request in time";
                        let _ = down.send(event(json!({ "type": "denied", "message": message }))).await;
                        break;
                    }
                    RelayToEngineer::GrantChanged { grant, change, in_force, .. } => {
                        let granted: Vec<String> = grant.capabilities.iter().map(ToString::to_string).collect();
                        let shell_lost = match &desktop {
                            // For a desktop link: the view is what it holds on to.
                            Some(_) => !in_force || !browser_desktop::desktop_rights(&grant.capabilities).0,
                            None => !in_force || !grant.capabilities.iter().any(|c| Capability::Shell.within(c)),
                        };
                        let control = !shell_lost && browser_desktop::desktop_rights(&grant.capabilities).1;
                        let ev = json!({ "type": "grant", "change": change, "in_force": in_force, "granted": granted, "expires_at": grant.expires_at, "shell_lost": shell_lost, "control": control });
                        let _ = down.send(event(ev)).await;
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
                            break;
                        }
                    }
                    RelayToEngineer::SessionEnded { reason } => {
                        input = None;
                        if let Some(task) = shell.take() {
                            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
                        }
                        let _ = down.send(event(json!({ "type": "ended", "message": reason.to_string() }))).await;
                        break;
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
                break;
            }
        }
    }
    drop(input);
    relay.person_gone(conn_id);
    if !left {
        relay.engineer_gone(conn_id, EndReason::EngineerDisconnected).await;
    }
    if let Some(task) = shell {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
    }
    info!("browser shell link closed");
}

/// What a desktop link's page asked for, and what its open channel has.
struct DesktopAsked {
    control: bool,
    open_with_control: bool,
}

/// The shell channel of an approved browser session.
struct ShellChannel {
    relay: Arc<Relay>,
    who: Principal,
    opener: Opener,
    session: SessionId,
    size: (u16, u16),
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
        let admitted = match self.relay.admit_channel(&self.who, &open).await {
            Ok(a) => a,
            Err(refused) => {
                let _ = down.send(closed(refused.to_string())).await;
                return;
            }
        };
        let span = admitted.session.span.clone();
        let relay = &self.relay;
        async move {
            let agent = admitted.agent.clone();
            let header = AgentChannelOpen { open, grant: admitted.grant.clone() };
            let ch = match admitted.peer.open_channel(header).await {
                Ok(ch) => ch,
                Err(e) => {
                    let _ = down.send(closed(format!("agent {agent}: {e}"))).await;
                    return;
                }
            };
            admitted.agent_stream(relay, ch.stream, &self.opener, None);
            if let ChannelReply::Refused { reason } = &ch.reply {
                admitted.refused(relay, &format!("refused by the agent: {reason}")).await;
                let _ = down.send(closed(format!("the agent refused the shell: {reason}"))).await;
                return;
            }
            let (mut asend, mut arecv) = (ch.send, ch.recv);
            if admitted.record_open(ch.stream, None, Client::Browser).await.is_err() {
                asend.reset();
                arecv.stop();
                let _ = down.send(closed("the session could not be recorded".into())).await;
                return;
            }
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
                let sink = session.mirror(PageOutput(down.clone()));
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
pub(super) struct PageOutput(pub(super) mpsc::Sender<Down>);

impl ChunkSink for PageOutput {
    fn write_all_chunks<'a>(&'a mut self, bufs: &'a mut [Bytes]) -> PeerFuture<'a, Result<(), StreamGone>> {
        Box::pin(async move {
            for b in bufs.iter_mut() {
                let chunk = std::mem::take(b);
                self.0.send(Down::Output(chunk)).await.map_err(|_| StreamGone)?;
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
