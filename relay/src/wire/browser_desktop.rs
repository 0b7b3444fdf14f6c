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
//! - Control revoked while the view stays: the relay's registry resets the control channel
//!   (it needs `desktop.control`), and `wire::browser` opens a view channel in its place, so
//!   input stops at once and the picture comes back with the next keyframe.
//!
//! It decides nothing: every check is the broker's.

use super::browser::{PageInput, PageOutput, event};
use super::desktop::{Flow, Messages};
use super::splice::{Tee, splice};
use crate::broker::policy::Principal;
use crate::broker::{Client, NewSession, Opener, Relay};
use crate::recording::format::Direction;
use assist_console::{DesktopRequest, Down};
use assist_proto::caps::{Capability, Priority};
use assist_proto::ids::{AgentName, SessionId};
use assist_proto::msg::{AgentChannelOpen, ChannelKind, ChannelOpen, ChannelReply};
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
            let header = AgentChannelOpen { open: open.clone(), grant: admitted.grant.clone() };
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
                let _ = down.send(closed(format!("the agent refused the desktop: {reason}"))).await;
                return;
            }
            let (mut asend, mut arecv) = (ch.send, ch.recv);
            if admitted.record_open(ch.stream, None, Client::Browser).await.is_err() {
                asend.reset();
                arecv.stop();
                let _ = down.send(closed("the session could not be recorded".into())).await;
                return;
            }
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
                    let reason = "input on a view-only desktop dropped: desktop.control is not granted";
                    relay.audit_refusal(&self.who, &self.session, &open.channel, reason).await;
                    let _ = down.send(event(json!({ "type": "refused", "message": reason }))).await;
                }
            };
            let up = splice(from_page, asend, stop.clone(), tee(Direction::In), None);
            let from_agent = Messages::new(arecv, Flow::FromAgent);
            let down_splice =
                splice(from_agent, PageOutput::plain(down.clone()), stop.clone(), tee(Direction::Out), None);
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
    }

    #[test]
    fn control_is_only_what_the_grant_says() {
        assert_eq!(desktop_rights(&[Capability::DesktopView]), (true, false));
        assert_eq!(desktop_rights(&[Capability::DesktopView, Capability::DesktopControl]), (true, true));
        assert_eq!(desktop_rights(&[Capability::DesktopControl]), (true, true));
        assert_eq!(desktop_rights(&[Capability::Shell]), (false, false));
    }
}
