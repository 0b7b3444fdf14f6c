//! Refusals on the record, without letting a flood fill the log.
//!
//! A refused attempt (an approval, denial, end, revocation or escalation by someone who
//! may not; a forged or expired token; a handshake with a certificate from another CA)
//! changes nothing, so it has no transaction to ride in: it is appended on its own. To
//! keep a flood of them from filling the audit log, refusals are counted per **kind**:
//! (action, who or where from, what was attempted).
//!
//! - The first refusal of a kind is audited at once, with `"count": 1`.
//! - Further refusals of that kind within the window (`serve --refusal-window`, default
//!   one minute) are only counted. When the window closes (a sweep runs every second) or
//!   at the next refusal of that kind after it closed, one event is written for them: the
//!   last refusal's event, with `"count": N` and `"repeats": N` (how many it stands for),
//!   and `"window_ms"`.
//! - So the sum of `count` over the events of a kind is the number of refusals, and one
//!   kind writes at most two events per window, however fast it is flooded.
//! - At most [`MAX_KINDS`] kinds are tracked; past that (many sources at once), refusals
//!   of one action share a single kind whose `who` is `*`, so memory stays bounded too.
//!
//! This module does not decide what is refused, nor what the refused party is told: it
//! only writes the record.

use super::Relay;
use crate::audit::{Action, AuditEvent};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most kinds tracked at once.
pub(crate) const MAX_KINDS: usize = 4096;

/// One kind of refusal: the audit action, who (a user, or the source address) and what
/// was attempted.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Kind {
    action: Action,
    who: String,
    what: String,
}

/// The refusals of one kind within the current window.
struct Window {
    opened: Instant,
    /// Refusals counted but not yet written.
    repeats: u64,
    /// The event of the last of them, written with their count.
    last: Option<AuditEvent>,
}

/// Counts refusals per kind; see the module documentation.
pub(crate) struct RefusalLog {
    window: Duration,
    kinds: Mutex<HashMap<Kind, Window>>,
}

impl RefusalLog {
    pub(crate) fn new(window: Duration) -> Self {
        Self { window, kinds: Mutex::default() }
    }

    /// Takes one refusal; returns the events to write now (none, one, or the summary of
    /// the window that closed and then this one).
    fn take(&self, who: &str, what: &str, event: AuditEvent, now: Instant) -> Vec<AuditEvent> {
        let mut kinds = self.kinds.lock().expect("refusal log lock");
        let mut kind = Kind { action: event.action, who: who.to_owned(), what: what.to_owned() };
        let mut out = Vec::new();
        if !kinds.contains_key(&kind) && kinds.len() >= MAX_KINDS {
            out.extend(self.sweep_locked(&mut kinds, now));
            if kinds.len() >= MAX_KINDS {
                kind.who = "*".to_owned();
            }
        }
        match kinds.get_mut(&kind) {
            Some(w) if now.duration_since(w.opened) < self.window => {
                w.repeats += 1;
                w.last = Some(event);
            }
            Some(w) => {
                out.extend(self.summary(w));
                *w = Window { opened: now, repeats: 0, last: None };
                out.push(event.merge_detail(json!({ "count": 1 })));
            }
            None => {
                kinds.insert(kind, Window { opened: now, repeats: 0, last: None });
                out.push(event.merge_detail(json!({ "count": 1 })));
            }
        }
        out
    }

    /// The summary event of a window's counted refusals, if there were any.
    fn summary(&self, w: &mut Window) -> Option<AuditEvent> {
        let n = std::mem::take(&mut w.repeats);
        let last = w.last.take()?;
        Some(last.merge_detail(json!({
            "count": n,
            "repeats": n,
            "window_ms": self.window.as_millis() as u64,
        })))
    }

    /// Closes every window that has run out (all of them if `all`): returns their
    /// summaries and forgets them.
    fn sweep(&self, now: Instant, all: bool) -> Vec<AuditEvent> {
        let mut kinds = self.kinds.lock().expect("refusal log lock");
        if all {
            let mut out = Vec::new();
            for (_, mut w) in kinds.drain() {
                out.extend(self.summary(&mut w));
            }
            return out;
        }
        self.sweep_locked(&mut kinds, now)
    }

    fn sweep_locked(&self, kinds: &mut HashMap<Kind, Window>, now: Instant) -> Vec<AuditEvent> {
        let mut out = Vec::new();
        kinds.retain(|_, w| {
            if now.duration_since(w.opened) < self.window {
                return true;
            }
            out.extend(self.summary(w));
            false
        });
        out
    }
}

impl Relay {
    /// Audits a refusal of kind (`event.action`, `who`, `what`), rate-limited as the
    /// module documentation says. Never fails: the attempt is refused either way.
    pub(crate) async fn audit_refused(&self, who: &str, what: &str, event: AuditEvent) {
        for e in self.refusals.take(who, what, event, Instant::now()) {
            let _ = self.audit(e).await;
        }
    }

    /// Writes the counts of the windows that have closed (of all windows if `all`, at
    /// shutdown).
    pub async fn flush_refusals(&self, all: bool) {
        for e in self.refusals.sweep(Instant::now(), all) {
            let _ = self.audit(e).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> AuditEvent {
        AuditEvent::new("eve", Action::AccessRefused)
    }

    fn count(events: &[AuditEvent]) -> u64 {
        events.iter().map(|e| e.detail["count"].as_u64().expect("count")).sum()
    }

    #[test]
    fn a_flood_is_one_event_and_one_count_per_window() {
        let log = RefusalLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let mut written = Vec::new();
        for i in 0..200 {
            written.extend(log.take("eve", "session.approve", ev(), t0 + Duration::from_millis(i)));
        }
        assert_eq!(written.len(), 1, "only the first is written at once");
        written.extend(log.sweep(t0 + Duration::from_secs(30), false));
        assert_eq!(written.len(), 1, "the window is still open");
        written.extend(log.sweep(t0 + Duration::from_secs(61), false));
        assert_eq!(written.len(), 2);
        assert_eq!(written[1].detail["repeats"], 199);
        assert_eq!(count(&written), 200);
        assert!(log.sweep(t0 + Duration::from_secs(200), true).is_empty(), "nothing counted twice");
    }

    #[test]
    fn the_next_refusal_after_the_window_writes_the_count_and_itself() {
        let log = RefusalLog::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let mut written = log.take("eve", "session.end", ev(), t0);
        written.extend(log.take("eve", "session.end", ev(), t0 + Duration::from_millis(10)));
        written.extend(log.take("eve", "session.end", ev(), t0 + Duration::from_secs(2)));
        assert_eq!(written.len(), 3);
        assert_eq!(written[1].detail["repeats"], 1);
        assert_eq!(written[2].detail["count"], 1);
        assert_eq!(count(&written), 3);
    }

    #[test]
    fn kinds_are_apart_and_bounded() {
        let log = RefusalLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(log.take("eve", "session.end", ev(), t0).len(), 1);
        assert_eq!(log.take("eve", "session.approve", ev(), t0).len(), 1, "another attempt");
        assert_eq!(log.take("mallory", "session.end", ev(), t0).len(), 1, "another person");
        for i in 0..MAX_KINDS + 100 {
            log.take(&format!("10.0.0.{i}"), "token", ev(), t0);
        }
        // One more: the overflow kind of this action.
        assert!(log.kinds.lock().unwrap().len() <= MAX_KINDS + 1);
        let rest = log.sweep(t0, true);
        assert_eq!(rest.len(), 1, "the overflow kind holds the repeats");
        // 103 did not fit: the first of them was written, 102 counted.
        assert_eq!(rest[0].detail["repeats"], 102);
    }
}
