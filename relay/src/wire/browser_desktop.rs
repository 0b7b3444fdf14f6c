//! A browser's desktop: the desktop channel of a session asked for on the console's link
//! (`wire::browser`), spliced between the agent's stream and the page's socket.
//!
//! - The request is `assist desktop`'s: `desktop.view`, and `desktop.control` too when the
//!   page asks for control, with the same ticket, priority, reason and duration rules.
//! - Once approved, the channel is admitted by `Relay::admit_channel`, opened on the agent
//!   through the seam and recorded like any other; it asks for control only when the grant
//!   holds `desktop.control`.
//! - Both directions go through [`Messages`]: headers checked, one whole message per
//!   WebSocket message, and on a view channel the page's input dropped before the splice
//!   (audited once per channel, as a refused channel attempt is).
//! - Its messages wait for the page [`super::browser::DESKTOP_QUEUED`] at most
//!   ([`PageOutput::latest`]): a slow page holds the splice, so the agent, which takes the
//!   next picture only once the last was written, sends fewer and newer frames.
//! - The clipboard is a channel of its own (`browser_clipboard`) on the same link.
//! - Control revoked while the view stays: the relay's registry resets the control channel
//!   (it needs `desktop.control`), and `wire::browser` opens a view channel in its place, so
//!   input stops at once and the picture comes back with the next keyframe.
//!
//! It decides nothing: every check is the broker's.

use super::browser::{PageInput, PageOutput, event};
use super::browser_open::{OpenFailed, Opened, open_for_browser};
use super::desktop::{Flow, Messages, VIEW_ONLY_INPUT};
use super::splice::{Tee, splice};
use crate::broker::policy::Principal;
use crate::broker::{NewSession, Opener, Relay};
use crate::recording::format::Direction;
use assist_console::{DesktopRequest, Down};
use assist_proto::caps::{Capability, Priority};
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::{ChannelKind, ChannelOpen};
use bytes::Bytes;
use serde_json::json;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tracing::{Instrument, info};

/// The request as the broker takes it, or what is wrong with it in words.
pub(super) fn new_session(r: DesktopRequest) -> Result<NewSession, String> {
    let priority = Priority::from_str(&r.priority).map_err(|e| e.to_string())?;
    let mut capabilities = vec![Capability::DesktopView];
    if r.control {
        capabilities.push(Capability::DesktopControl);
    }
    if r.clipboard {
        capabilities.push(Capability::Clipboard);
    }
    Ok(NewSession {
        agent: AgentName::new(r.agent.trim()),
        ticket: r.ticket,
        priority,
        reason: r.reason,
        capabilities,
        duration_secs: Some(r.minutes.saturating_mul(60)),
    })
}

/// Whether a grant's capabilities let the page view, and control, the desktop.
pub(super) fn desktop_rights(granted: &[Capability]) -> (bool, bool) {
    let has = |c: &Capability| granted.iter().any(|g| c.within(g));
    (has(&Capability::DesktopView) || has(&Capability::DesktopControl), has(&Capability::DesktopControl))
}

/// The desktop channel of an approved browser session.
pub(super) struct DesktopChannel {
    pub relay: Arc<Relay>,
    pub who: Principal,
    pub opener: Opener,
    pub session: SessionId,
    pub control: bool,
}

impl DesktopChannel {
    pub(super) async fn run(self, input: mpsc::Receiver<Bytes>, down: mpsc::Sender<Down>) {
        let closed = |message: String| event(json!({ "type": "closed", "message": message }));
        let control = self.control;
        let open = ChannelOpen {
            session: self.session.clone(),
            channel: ChannelKind::Desktop { control },
            report_exit: false,
        };
        let relay = &self.relay;
        let Opened { admitted, ch } =
            match open_for_browser(relay, &self.who, open.clone(), Some(&self.opener)).await {
                Ok(opened) => opened,
                Err(OpenFailed::AgentRefused(reason)) => {
                    let _ = down.send(closed(format!("the agent refused the desktop: {reason}"))).await;
                    return;
                }
                Err(e) => {
                    let _ = down.send(closed(e.to_string())).await;
                    return;
                }
            };
        let span = admitted.session.span.clone();
        async move {
            let (asend, arecv) = (ch.send, ch.recv);
            let _ = down.send(event(json!({ "type": "open", "control": control }))).await;
            let channel = admitted.channel;
            info!(channel, control, "browser desktop open");
            let tee =
                |direction| admitted.recorder.clone().map(|recorder| Tee { recorder, channel, direction });
            let stop = &admitted.handle.stop;
            let mut from_page = Messages::new(PageInput(input), Flow::FromViewer { control });
            let refused = from_page.refusals();
            let audit = async {
                if refused.await.is_ok() {
                    admitted.refused(relay, VIEW_ONLY_INPUT).await;
                    let _ = down.send(event(json!({ "type": "refused", "message": VIEW_ONLY_INPUT }))).await;
                }
            };
            let up = splice(from_page, asend, stop.clone(), tee(Direction::In), None);
            let from_agent = Messages::new(arecv, Flow::FromAgent);
            let down_splice =
                splice(from_agent, PageOutput::latest(down.clone()), stop.clone(), tee(Direction::Out), None);
            // The refusal's audit ends with the page's side at the latest (its sender goes).
            let ((up_bytes, up_end), (down_bytes, down_end), ()) = tokio::join!(up, down_splice, audit);
            let ends = (format!("{up_end:?}"), format!("{down_end:?}"));
            admitted
                .record_close(
                    json!({ "in": up_bytes, "out": down_bytes, "in_end": &ends.0, "out_end": &ends.1 }),
                )
                .await;
            info!(up_bytes, ?up_end, down_bytes, ?down_end, "browser desktop closed");
            let _ = down.send(closed("the desktop closed".into())).await;
        }
        .instrument(span)
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(control: bool, priority: &str) -> DesktopRequest {
        DesktopRequest {
            agent: " erp-ws01 ".into(),
            ticket: "INC-1".into(),
            priority: priority.into(),
            reason: "error dialog".into(),
            control,
            clipboard: false,
            minutes: 30,
        }
    }

    #[test]
    fn the_page_asks_for_the_view_and_control_only_if_it_wants_it() {
        let view = new_session(req(false, "p2")).unwrap();
        assert_eq!(view.agent.as_str(), "erp-ws01");
        assert_eq!(view.capabilities, vec![Capability::DesktopView]);
        assert_eq!(view.duration_secs, Some(1800));
        let control = new_session(req(true, "p1")).unwrap();
        assert_eq!(control.capabilities, vec![Capability::DesktopView, Capability::DesktopControl]);
        assert!(new_session(req(true, "p9")).is_err());
        let clip = new_session(DesktopRequest { clipboard: true, ..req(false, "p2") }).unwrap();
        assert_eq!(clip.capabilities, vec![Capability::DesktopView, Capability::Clipboard]);
    }

    #[test]
    fn control_is_only_what_the_grant_says() {
        assert_eq!(desktop_rights(&[Capability::DesktopView]), (true, false));
        assert_eq!(desktop_rights(&[Capability::DesktopView, Capability::DesktopControl]), (true, true));
        assert_eq!(desktop_rights(&[Capability::DesktopControl]), (true, true));
        assert_eq!(desktop_rights(&[Capability::Shell]), (false, false));
    }
}
