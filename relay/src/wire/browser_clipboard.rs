//! A browser's clipboard channel: the customer's `CLIPBOARD` as text, on the desktop's link
//! (`wire::browser`), as a `ChannelKind::Clipboard` of its own beside the desktop channel.
//!
//! - The link opens it when the grant holds `clipboard` and the page asked for it, and
//!   again, on demand, when the page sends clipboard text with none open: without the
//!   grant that attempt is refused by `Relay::admit_channel` (audited `channel.refused`)
//!   and the page is told why; the text goes nowhere.
//! - Admitted, opened on the agent and recorded like any channel
//!   (`browser_open::open_for_browser`); both directions go through [`Messages`] with
//!   [`Flow::Clipboard`]: clipboard messages only, each within `MAX_CLIPBOARD`, so an
//!   oversized text resets the channel before it is buffered.
//! - Revoking `clipboard` resets it through the relay's registry like any channel; the page
//!   is told and the desktop goes on.
//! - The page tells the two apart by message: clipboard messages and `clipboard` events
//!   (`open`, `closed`, `refused`) belong to this channel.
//!
//! It decides nothing: every check is the broker's, and the agent checks the grant again.

use super::browser::{PageInput, PageOutput, event};
use super::browser_open::{OpenFailed, Opened, open_for_browser};
use super::desktop::{Flow, Messages};
use super::splice::{Tee, splice};
use crate::broker::policy::Principal;
use crate::broker::{Opener, Relay};
use crate::recording::format::Direction;
use assist_console::Down;
use assist_proto::desktop::Kind;
use assist_proto::ids::SessionId;
use assist_proto::msg::{ChannelKind, ChannelOpen};
use bytes::Bytes;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{Instrument, info};

/// Clipboard messages queued from the page (each up to `MAX_CLIPBOARD`).
const UP_QUEUE: usize = 4;

/// Whether a message from the page is the clipboard's (its header's kind byte).
pub(super) fn is_clipboard(message: &[u8]) -> bool {
    message.first() == Some(&Kind::Clipboard.to_u8())
}

/// The clipboard channel of a browser's desktop session, from the link's side.
pub(super) struct OpenClipboard {
    /// Clipboard messages towards it.
    pub input: mpsc::Sender<Bytes>,
    pub task: tokio::task::JoinHandle<()>,
}

impl OpenClipboard {
    /// Starts opening the clipboard channel of `session`; `first` is sent once it is open.
    pub(super) fn start(
        relay: &Arc<Relay>,
        who: &Principal,
        opener: &Opener,
        session: SessionId,
        down: &mpsc::Sender<Down>,
        first: Option<Bytes>,
    ) -> OpenClipboard {
        let (input, in_rx) = mpsc::channel(UP_QUEUE);
        if let Some(first) = first {
            let _ = input.try_send(first);
        }
        let channel =
            ClipboardChannel { relay: relay.clone(), who: who.clone(), opener: opener.clone(), session };
        let task = tokio::spawn(channel.run(in_rx, down.clone()).in_current_span());
        OpenClipboard { input, task }
    }

    /// Whether the channel is still there to take text (not refused, not closed).
    pub(super) fn is_open(&self) -> bool {
        !self.task.is_finished() && !self.input.is_closed()
    }
}

struct ClipboardChannel {
    relay: Arc<Relay>,
    who: Principal,
    opener: Opener,
    session: SessionId,
}

fn said(state: &str, message: &str) -> Down {
    event(json!({ "type": "clipboard", "state": state, "message": message }))
}

impl ClipboardChannel {
    async fn run(self, input: mpsc::Receiver<Bytes>, down: mpsc::Sender<Down>) {
        let open = ChannelOpen {
            session: self.session.clone(),
            channel: ChannelKind::Clipboard,
            report_exit: false,
        };
        let relay = &self.relay;
        let Opened { admitted, ch } = match open_for_browser(relay, &self.who, open, Some(&self.opener)).await
        {
            Ok(opened) => opened,
            Err(OpenFailed::AgentRefused(reason)) => {
                let message = format!("the agent refused the clipboard: {reason}");
                let _ = down.send(said("refused", &message)).await;
                return;
            }
            Err(e) => {
                let _ = down.send(said("refused", &e.to_string())).await;
                return;
            }
        };
        let span = admitted.session.span.clone();
        async move {
            let _ = down.send(said("open", "the customer's clipboard is shared")).await;
            let channel = admitted.channel;
            info!(channel, "browser clipboard open");
            let tee =
                |direction| admitted.recorder.clone().map(|recorder| Tee { recorder, channel, direction });
            let stop = &admitted.handle.stop;
            let from_page = Messages::new(PageInput(input), Flow::Clipboard);
            let up = splice(from_page, ch.send, stop.clone(), tee(Direction::In), None);
            let from_agent = Messages::new(ch.recv, Flow::Clipboard);
            let down_splice =
                splice(from_agent, PageOutput::plain(down.clone()), stop.clone(), tee(Direction::Out), None);
            let ((up_bytes, up_end), (down_bytes, down_end)) = tokio::join!(up, down_splice);
            let ends = (format!("{up_end:?}"), format!("{down_end:?}"));
            admitted
                .record_close(
                    json!({ "in": up_bytes, "out": down_bytes, "in_end": &ends.0, "out_end": &ends.1 }),
                )
                .await;
            info!(up_bytes, ?up_end, down_bytes, ?down_end, "browser clipboard closed");
            let _ = down.send(said("closed", "the clipboard's channel closed")).await;
        }
        .instrument(span)
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_proto::desktop::{AgentToViewer, ViewerToAgent};

    #[test]
    fn the_link_tells_clipboard_messages_by_their_kind() {
        assert!(is_clipboard(&ViewerToAgent::Clipboard("x".into()).encode().unwrap()));
        assert!(is_clipboard(&AgentToViewer::Clipboard(String::new()).encode().unwrap()));
        assert!(!is_clipboard(&ViewerToAgent::KeyframeRequest.encode().unwrap()));
        assert!(!is_clipboard(&[]));
    }
}
