//! Connections that follow a session they did not request (`EngineerToRelay::Follow`): a
//! command of the session's engineer working in it with `--session` (`assist forward`,
//! `assist ssh-proxy`) hears its grant changes and its end as the requesting command does,
//! so it can stop what the grant no longer covers and say why.
//!
//! It gives nothing else: what a follower may open is decided per channel, as always.

use super::policy::Principal;
use super::*;

impl Relay {
    /// Connection `link` of `who` follows session `id`.
    pub(crate) async fn follow(
        &self,
        who: &Principal,
        link: &EngineerLink,
        id: &SessionId,
    ) -> Result<String, Refusal> {
        let not_found = || Refusal::new(ErrorCode::NotFound, format!("no live session {id}"));
        let s = self.session(id).ok_or_else(not_found)?;
        let info = s.core.lock().await.info();
        if info.engineer != who.user {
            return Err(if who.may_see_session(&info) {
                Refusal::new(ErrorCode::Forbidden, format!("session {id} is not yours"))
            } else {
                not_found()
            });
        }
        if link.conn_id != s.engineer.conn_id {
            s.followers.lock().expect("followers lock").insert(link.conn_id, link.tx.downgrade());
        }
        Ok(format!("following session {id}"))
    }
}

impl LiveSession {
    /// Tells the session's own connection and its followers (those still connected).
    pub(crate) async fn tell_engineers(&self, msg: RelayToEngineer) {
        let followers: Vec<_> = {
            let mut map = self.followers.lock().expect("followers lock");
            map.retain(|_, tx| tx.strong_count() > 0);
            map.values().filter_map(|tx| tx.upgrade()).collect()
        };
        for tx in followers {
            let _ = tx.send(msg.clone()).await;
        }
        let _ = self.engineer.tx.send(msg).await;
    }
}
