//! Serving a clipboard channel: the engineer's text set as the customer's clipboard, and
//! the customer's clipboard text sent to the engineer each time it changes.
//!
//! - [`super::channel`] has checked the grant (signature, this agent and session, in
//!   force, the agent's own record) and that it holds `clipboard`.
//! - The clipboard comes from the [`DesktopHost`](super::desktop::DesktopHost) the binary
//!   provides ([`SharedClipboard`]), which shows the customer that it is shared for as long
//!   as it is: no notice, no clipboard.
//! - Only what the customer copies after the channel opened goes up: the text on the
//!   clipboard at that moment stays theirs. It is looked at every [`LOOK_EVERY`]; text the
//!   engineer just set is not sent back to them.
//! - Only clipboard messages travel (the relay checks each header too); anything else, or
//!   text over `MAX_CLIPBOARD`, ends the channel.
//! - A revision or expiry that no longer holds `clipboard`, or the session's end, stops it
//!   at once (the grants' registry).
//!
//! It decides nothing the grant does not say, and keeps no copy of the text once sent.

use super::desktop::DesktopFailed;
use super::process::Control;
use super::shared::{AgentState, Digest, countersign, refuse};
use assist_net::{codes, write_msg};
use assist_proto::desktop::{AgentToViewer, Splitter, ViewerToAgent};
use assist_proto::ids::SessionId;
use assist_proto::msg::{ChannelKind, ChannelReply};
use quinn::{RecvStream, SendStream};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::{info, warn};

/// How often the customer's clipboard is looked at for a change.
pub const LOOK_EVERY: Duration = Duration::from_millis(250);

/// The customer's clipboard as text, shared with one channel's engineer while it lives
/// (the customer is shown so for as long). Calls may block (X round trips); the agent makes
/// them off its async thread.
pub trait SharedClipboard: Send + Sync {
    /// The clipboard's text now, `None` when it holds none (or no text).
    fn get(&self) -> Result<Option<String>, DesktopFailed>;
    /// Puts `text` on the clipboard. Calls may come from two threads at once (a look for
    /// the customer's copies, the engineer's text): an implementation that cannot take
    /// them together serialises them.
    fn set(&self, text: &str) -> Result<(), DesktopFailed>;
}

/// What the engineer last saw of the clipboard, or put there: not sent (back) to them.
type Last = Arc<Mutex<Seen>>;

struct Seen {
    text: Option<String>,
    /// Texts the engineer has set so far. A look at the clipboard that overlapped a set may
    /// have read the owner before it (the customer's older text): it is not sent, or the
    /// engineer would get that, and then their own text, back.
    sets: u64,
}

pub(crate) async fn serve(
    state: Arc<AgentState>,
    session: SessionId,
    mut send: SendStream,
    recv: RecvStream,
) {
    let Some(host) = state.desktop.clone() else {
        return refuse(&mut send, "this agent serves no desktop (it runs without a display)".into()).await;
    };
    let Some(grant) = state.grants.record(&session) else {
        return refuse(&mut send, "no grant is in force for this session".into()).await;
    };
    let who = grant.engineer.to_string();
    let clipboard = match tokio::task::spawn_blocking(move || host.open_clipboard(&who)).await {
        Ok(Ok(c)) => Arc::<dyn SharedClipboard>::from(c),
        Ok(Err(e)) => return refuse(&mut send, format!("cannot share the clipboard: {e}")).await,
        Err(_) => return refuse(&mut send, "cannot share the clipboard".into()).await,
    };
    // What is there now stays the customer's: only a change after this goes up.
    let now = {
        let c = clipboard.clone();
        tokio::task::spawn_blocking(move || c.get()).await.ok().and_then(Result::ok).flatten()
    };
    let last: Last = Arc::new(Mutex::new(Seen { text: now, sets: 0 }));
    let stream = u64::from(send.id());
    let (control, mut kill) = Control::for_task();
    if !state.grants.add_running(&session, stream, ChannelKind::Clipboard.required_capability(), control) {
        let _ = send.reset(codes::SESSION_ENDED);
        return;
    }
    if write_msg(&mut send, &ChannelReply::Accepted).await.is_err() {
        state.grants.remove_running(&session, stream);
        return;
    }
    info!(%session, "clipboard channel open");
    let mut down = Digest::new(stream, "out");
    let mut up = Digest::new(stream, "in");
    let copies = customer(&clipboard, &last, &mut send, &mut down);
    let pastes = engineer(&clipboard, &last, recv, &mut up, &session);
    let ended = tokio::select! {
        r = copies => r,
        r = pastes => r,
        _ = kill.wait_for(|k| *k) => false,
    };
    if ended {
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    } else {
        let _ = send.reset(codes::SESSION_ENDED);
    }
    state.grants.remove_running(&session, stream);
    // Dropped off the async thread: it stops serving the clipboard and removes the notice.
    let _ = tokio::task::spawn_blocking(move || drop(clipboard)).await;
    info!(%session, "clipboard channel closed");
    countersign(&state, &session, vec![up.finish(), down.finish()]).await;
}

/// The customer's copies, each new text once. Returns false when the stream or the
/// clipboard failed.
async fn customer(
    clipboard: &Arc<dyn SharedClipboard>,
    last: &Last,
    send: &mut SendStream,
    digest: &mut Digest,
) -> bool {
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = None;
    loop {
        tick.tick().await;
        let sets = last.lock().await.sets;
        let c = clipboard.clone();
        let text = match tokio::task::spawn_blocking(move || c.get()).await {
            Ok(Ok(Some(text))) => text,
            Ok(Ok(None)) => continue,
            // Over the cap, or an owner that did not answer: not sent, looked at again (and
            // said once, not at every look).
            Ok(Err(e)) => {
                let said = e.to_string();
                if failing.as_ref() != Some(&said) {
                    warn!(error = %said, "the customer's clipboard was not read");
                    failing = Some(said);
                }
                continue;
            }
            Err(_) => return false,
        };
        failing = None;
        let message = {
            let mut last = last.lock().await;
            if last.sets != sets || last.text.as_deref() == Some(text.as_str()) {
                continue;
            }
            let Ok(message) = AgentToViewer::Clipboard(text.clone()).encode() else { continue };
            last.text = Some(text);
            message
        };
        digest.update(&message);
        if send.write_all(&message).await.is_err() {
            return false;
        }
    }
}

/// The engineer's texts onto the clipboard. Returns whether the engineer ended their side
/// cleanly.
async fn engineer(
    clipboard: &Arc<dyn SharedClipboard>,
    last: &Last,
    mut recv: RecvStream,
    digest: &mut Digest,
    session: &SessionId,
) -> bool {
    let mut split = Splitter::new();
    loop {
        let chunk = match recv.read_chunk(64 * 1024, true).await {
            Ok(Some(c)) => c.bytes,
            Ok(None) => return true,
            Err(_) => return false,
        };
        digest.update(&chunk);
        split.push(&chunk);
        loop {
            let text = match split.next_from_viewer() {
                Ok(Some(ViewerToAgent::Clipboard(text))) => text,
                Ok(None) => break,
                Ok(Some(other)) => {
                    warn!(%session, ?other, "not clipboard text on a clipboard channel");
                    return false;
                }
                Err(e) => {
                    warn!(%session, error = %e, "bad clipboard message from the engineer");
                    return false;
                }
            };
            // Held while it is set, and counted as seen, so that the engineer's own text
            // (or what it replaced) is not sent back.
            let mut seen = last.lock().await;
            let c = clipboard.clone();
            let shown = text.clone();
            let set = tokio::task::spawn_blocking(move || c.set(&shown)).await;
            seen.text = Some(text);
            seen.sets += 1;
            drop(seen);
            match set {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(%session, error = %e, "the engineer's text was not put on the clipboard"),
                Err(_) => return false,
            }
        }
    }
}
