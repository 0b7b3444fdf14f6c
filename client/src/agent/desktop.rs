//! Serving a desktop channel: the screen's messages out, the viewer's input in, only as
//! far as the grant goes.
//!
//! - [`super::channel`] has checked the grant (signature, this agent and session, in
//!   force, the agent's own record) and that it covers the channel: `desktop.view`, or
//!   `desktop.control` for a channel that asks for control.
//! - The screen itself comes from a [`DesktopHost`] that the agent binary provides (the
//!   `assist-agent` package links the media crates; this crate does not), so an agent
//!   built without one, or started without a display, refuses with a clear reason.
//! - Latest frame wins: the next batch is taken from the screen only once the previous
//!   one was written to the stream, so a slow viewer gets fewer, newer frames and never a
//!   growing queue.
//! - Input is injected only on a channel opened for control; on a view channel it is
//!   dropped and logged (the relay drops it first; this is the second check). Keyframe
//!   requests are honoured either way; clipboard text is dropped (the clipboard is a channel
//!   of its own, [`super::clipboard`]).
//! - A revision or expiry that no longer covers the channel, or the session's end, stops
//!   it at once; held keys and buttons are released whenever the channel ends.
//!
//! It decodes no video and decides nothing the grant does not say.

use super::clipboard::SharedClipboard;
use super::process::Control;
use super::shared::{AgentState, Digest, countersign, refuse};
use assist_net::{codes, write_msg};
use assist_proto::desktop::{InputEvent, Splitter, ViewerToAgent};
use assist_proto::ids::SessionId;
use assist_proto::msg::{ChannelKind, ChannelReply};
use quinn::{RecvStream, SendStream};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Why a desktop could not be opened or went away, in words for the engineer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct DesktopFailed(pub String);

/// A live screen: encoded messages out, input in. Calls may block (X round trips, waiting
/// for the next picture); the agent makes them off its async thread.
pub trait DesktopScreen: Send + Sync {
    /// Waits up to `timeout` for the next batch of encoded desktop messages (whole
    /// messages, back to back); `Ok(None)` when nothing changed meanwhile.
    fn next(&self, timeout: Duration) -> Result<Option<Vec<u8>>, DesktopFailed>;
    /// The next batch starts with a keyframe.
    fn request_keyframe(&self);
    /// Injects one input event (the caller has checked that control is granted).
    fn inject(&self, event: &InputEvent) -> Result<(), DesktopFailed>;
    /// Releases every key and button held by injected input.
    fn release_all(&self) -> Result<(), DesktopFailed>;
}

/// Where the agent's desktops come from (X11 today), provided by the binary.
pub trait DesktopHost: Send + Sync + std::fmt::Debug {
    /// The display served (`:0`), said in the agent's `Hello`; `None` when there is none,
    /// so the relay refuses desktop requests before anyone is asked.
    fn display(&self) -> Option<String>;
    /// Opens the screen for one channel and shows the customer, on that screen, who is
    /// viewing or controlling it for as long as it is open. Fails (and nothing is
    /// captured) when that notice cannot be shown.
    fn open(&self, viewer: &Viewer) -> Result<Box<dyn DesktopScreen>, DesktopFailed>;
    /// Shares the display's clipboard with `engineer` for one clipboard channel, and shows
    /// the customer, on that screen, that it is shared for as long as it is. Fails (and
    /// nothing is read or set) when that notice cannot be shown.
    fn open_clipboard(&self, engineer: &str) -> Result<Box<dyn SharedClipboard>, DesktopFailed>;
}

/// Whom a desktop channel serves, as the customer's on-screen notice names them.
#[derive(Clone, Debug)]
pub struct Viewer {
    /// The engineer the grant names.
    pub engineer: String,
    /// Whether they may control the screen, not only view it.
    pub control: bool,
}

/// How long one wait for the next batch lasts before the loop looks at the channel again.
const NEXT_TICK: Duration = Duration::from_millis(200);

pub(crate) async fn serve(
    state: Arc<AgentState>,
    session: SessionId,
    channel: ChannelKind,
    mut send: SendStream,
    recv: RecvStream,
) {
    let control_granted = matches!(channel, ChannelKind::Desktop { control: true });
    let Some(host) = state.desktop.clone() else {
        return refuse(&mut send, "this agent serves no desktop (it runs without a display)".into()).await;
    };
    let Some(grant) = state.grants.record(&session) else {
        return refuse(&mut send, "no grant is in force for this session".into()).await;
    };
    let looking = Viewer { engineer: grant.engineer.to_string(), control: control_granted };
    let screen = match tokio::task::spawn_blocking(move || host.open(&looking)).await {
        Ok(Ok(screen)) => Arc::<dyn DesktopScreen>::from(screen),
        Ok(Err(e)) => return refuse(&mut send, format!("cannot open the desktop: {e}")).await,
        Err(_) => return refuse(&mut send, "cannot open the desktop".into()).await,
    };
    let stream = u64::from(send.id());
    let (control, mut kill) = Control::for_task();
    if !state.grants.add_running(&session, stream, channel.required_capability(), control) {
        let _ = send.reset(codes::SESSION_ENDED);
        close(screen).await;
        return;
    }
    if write_msg(&mut send, &ChannelReply::Accepted).await.is_err() {
        state.grants.remove_running(&session, stream);
        close(screen).await;
        return;
    }
    info!(%session, control = control_granted, "desktop channel open");
    let mut down = Digest::new(stream, "out");
    let mut up = Digest::new(stream, "in");
    let output = pictures(&screen, &mut send, &mut down);
    let input = viewer(&screen, recv, &mut up, control_granted, &session);
    let ended = tokio::select! {
        r = output => r,
        r = input => r,
        _ = kill.wait_for(|k| *k) => false,
    };
    if !ended {
        let _ = send.reset(codes::SESSION_ENDED);
    } else {
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    }
    state.grants.remove_running(&session, stream);
    close(screen).await;
    info!(%session, "desktop channel closed");
    countersign(&state, &session, vec![up.finish(), down.finish()]).await;
}

/// Releases held input and drops the screen (which stops its capture thread) off the
/// async thread.
async fn close(screen: Arc<dyn DesktopScreen>) {
    let _ = tokio::task::spawn_blocking(move || {
        if let Err(e) = screen.release_all() {
            warn!(error = %e, "releasing held input failed");
        }
        drop(screen);
    })
    .await;
}

/// The screen's batches onto the stream, one at a time. Returns false when the stream or
/// the screen failed.
async fn pictures(screen: &Arc<dyn DesktopScreen>, send: &mut SendStream, digest: &mut Digest) -> bool {
    loop {
        let s = screen.clone();
        let batch = match tokio::task::spawn_blocking(move || s.next(NEXT_TICK)).await {
            Ok(Ok(Some(batch))) => batch,
            Ok(Ok(None)) => continue,
            Ok(Err(e)) => {
                warn!(error = %e, "desktop stopped");
                return false;
            }
            Err(_) => return false,
        };
        digest.update(&batch);
        if send.write_all(&batch).await.is_err() {
            return false;
        }
    }
}

/// The viewer's messages: keyframe requests always, input only with control. Returns
/// whether the viewer ended its side cleanly.
async fn viewer(
    screen: &Arc<dyn DesktopScreen>,
    mut recv: RecvStream,
    digest: &mut Digest,
    control: bool,
    session: &SessionId,
) -> bool {
    let mut split = Splitter::new();
    let mut refused_once = false;
    loop {
        let chunk = match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(c)) => c.bytes,
            Ok(None) => return true,
            Err(_) => return false,
        };
        digest.update(&chunk);
        split.push(&chunk);
        loop {
            let msg = match split.next_from_viewer() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    warn!(%session, error = %e, "bad desktop message from the viewer");
                    return false;
                }
            };
            match msg {
                ViewerToAgent::KeyframeRequest => screen.request_keyframe(),
                ViewerToAgent::Input(event) if control => {
                    let s = screen.clone();
                    match tokio::task::spawn_blocking(move || s.inject(&event)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => warn!(%session, error = %e, "input not injected"),
                        Err(_) => return false,
                    }
                }
                ViewerToAgent::Input(_) if !refused_once => {
                    refused_once = true;
                    warn!(%session, "input on a view-only desktop channel dropped");
                }
                _ => {}
            }
        }
    }
}
