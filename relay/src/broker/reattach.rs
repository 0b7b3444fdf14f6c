//! A browser's page picking up its engineer's live session again after the page went away
//! (tab closed, network lost): no second consent, but an audit event
//! (`session.reattached`, with how long the session was without a page). The shell
//! channel the page held ends with it; its process's exit, reported by the agent, then
//! does not end the session as a shell's exit otherwise does.
//!
//! It decides only that the session is still live and the caller's; keeping the session
//! while no page holds it, and handing it to the new page, is the transport's
//! (`wire::browser`), which alone knows what a page is.

use super::audit::session_event;
use super::policy::Principal;
use super::{Refusal, Relay};
use crate::audit::Action;
use assist_proto::ids::SessionId;
use assist_proto::msg::ErrorCode;
use serde_json::json;
use std::time::Duration;
use tracing::info;

impl Relay {
    /// The shell channel on agent stream `stream` of session `id` ends because the page
    /// went away: called before its end reaches the agent.
    pub(crate) fn page_left_shell(&self, id: &SessionId, stream: u64) {
        if let Some(s) = self.session(id) {
            s.left_shells.lock().expect("left shells lock").insert(stream);
        }
    }

    /// Whether the exit of the shell on `stream` follows its page going away (once).
    pub(crate) fn shell_was_left(&self, id: &SessionId, stream: u64) -> bool {
        let left =
            self.session(id).is_some_and(|s| s.left_shells.lock().expect("left shells lock").remove(&stream));
        if left {
            info!(session = %id, stream, "the shell of a page that went away exited; the session waits");
        }
        left
    }

    /// Session `id`, live and `who`'s, is picked up by a new page after `away` without one.
    pub(crate) async fn reattached(
        &self,
        who: &Principal,
        id: &SessionId,
        away: Duration,
    ) -> Result<(), Refusal> {
        let gone = || Refusal::new(ErrorCode::NotFound, format!("no live session {id}"));
        let s = self.session(id).ok_or_else(gone)?;
        let info = s.core.lock().await.info();
        if info.engineer != who.user || info.state.is_final() {
            return Err(gone());
        }
        let event = session_event(who.user.as_str(), Action::SessionReattached, &info)
            .detail(json!({ "away_ms": away.as_millis() as u64, "client": "browser" }));
        let _ = self.audit(event).await;
        s.span.in_scope(|| info!(away_ms = away.as_millis() as u64, "a new page picked the session up"));
        Ok(())
    }
}
