//! The timers of live sessions: each one belongs to its session and ends with it.
//!
//! Every timer is armed through [`LiveSession::arm`], which keeps its abort handle on the
//! session; [`Relay::forget`](super::Relay) (every end goes through it) aborts them all,
//! except the one that is ending the session itself. While a timer waits it holds only a
//! `Weak<Relay>` and the session's id, never a strong reference: a relay or a session that
//! is gone is not kept alive by a timer, and a timer that fires finds the session again by
//! its id (or nothing, and does nothing).
//!
//! Who arms which timer:
//!
//! - the consent timeout of a request, armed when it is made (`sessions`: it expires a
//!   request nobody answered);
//! - the timeout of each escalation, armed when it is asked (`grants`: it expires an
//!   escalation nobody answered);
//! - the expiry of each revision of the grant, armed when it is signed (`grants`: it
//!   closes the channels, unless a newer revision replaced it);
//! - the lapse of a detached session, armed when its command leaves or its grant expires
//!   (`sessions`: it ends the session unless it was extended);
//! - the drain after the shell exited (`sessions`: it ends the session once the output has
//!   reached the engineer, or after a bound);
//! - the watch on the recorder, armed when recording starts (`recording`: a recorder that
//!   fails ends the session; a failure while sealing is audited by the seal itself).
//!
//! This module decides nothing about what a timer does; it only owns the waiting.

use super::{LiveSession, Relay};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

impl LiveSession {
    /// Runs `then` with the relay and what `wait` gave once it is over, unless the session
    /// ended (or the relay went away) first.
    pub(super) fn arm<T, W, F, Fut>(&self, relay: &Arc<Relay>, wait: W, then: F)
    where
        T: Send + 'static,
        W: Future<Output = T> + Send + 'static,
        F: FnOnce(Arc<Relay>, T) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let relay = Arc::downgrade(relay);
        let task = tokio::spawn(
            async move {
                let waited = wait.await;
                if let Some(relay) = relay.upgrade() {
                    then(relay, waited).await;
                }
            }
            .instrument(self.span.clone()),
        );
        let mut timers = self.timers.lock().expect("timers lock");
        timers.retain(|t| !t.is_finished());
        // Checked under the lock that `disarm` takes after the session ended: a timer armed
        // by a late caller is aborted here or there, never left behind.
        if *self.ended.borrow() {
            task.abort();
        } else {
            timers.push(task.abort_handle());
        }
    }

    /// Aborts the session's timers, all but the one running this call (it is ending the
    /// session, and must finish doing so). Called once `ended` is true.
    pub(super) fn disarm(&self) {
        let current = tokio::task::try_id();
        for t in self.timers.lock().expect("timers lock").drain(..) {
            if Some(t.id()) != current {
                t.abort();
            }
        }
    }
}

/// A wait until `at` (Unix ms on the broker's clock), or none if it is past.
pub(super) fn until(at: i64) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis((at - super::now_ms()).max(0) as u64))
}
