//! Long lists sent as several messages.
//!
//! Every frame is bounded ([`MAX_FRAME_LEN`]), but a relay with thousands of agents, or a
//! history of hundreds of sessions, has lists longer than one frame holds. The relay sends
//! such a list as parts ([`RelayToEngineer::into_parts`]), each marked `more` but the
//! last, and the reader joins them ([`RelayToEngineer::join`]) before using the list.
//!
//! It splits only the list answers (`Agents`, `Sessions`); every other message goes as
//! one part. It does no I/O.

use crate::frame::MAX_FRAME_LEN;
use crate::msg::RelayToEngineer;
use serde::Serialize;

/// The most bytes of entries one part carries: half a frame, so the envelope (and JSON's
/// escaping, already counted in each entry's size) always fits.
const PART_BUDGET: usize = MAX_FRAME_LEN / 2;

impl RelayToEngineer {
    /// The message as parts that each fit in a frame: a list answer longer than one
    /// frame holds becomes several, in order, all but the last marked `more`.
    pub fn into_parts(self) -> Vec<RelayToEngineer> {
        match self {
            RelayToEngineer::Agents { agents, .. } => {
                mark(split(agents), |agents, more| RelayToEngineer::Agents { agents, more })
            }
            RelayToEngineer::Sessions { sessions, .. } => {
                mark(split(sessions), |sessions, more| RelayToEngineer::Sessions { sessions, more })
            }
            other => vec![other],
        }
    }

    /// Whether more parts of this list follow.
    pub fn more(&self) -> bool {
        matches!(
            self,
            RelayToEngineer::Agents { more: true, .. } | RelayToEngineer::Sessions { more: true, .. }
        )
    }

    /// Adds `next`, the following part of this list, to it. Anything else (an error, a
    /// different message) is given back, and this list is left as it was.
    pub fn join(&mut self, next: RelayToEngineer) -> Result<(), Box<RelayToEngineer>> {
        match (self, next) {
            (
                RelayToEngineer::Agents { agents, more },
                RelayToEngineer::Agents { agents: rest, more: further },
            ) if *more => {
                agents.extend(rest);
                *more = further;
                Ok(())
            }
            (
                RelayToEngineer::Sessions { sessions, more },
                RelayToEngineer::Sessions { sessions: rest, more: further },
            ) if *more => {
                sessions.extend(rest);
                *more = further;
                Ok(())
            }
            (_, next) => Err(Box::new(next)),
        }
    }
}

/// Entries in runs of at most [`PART_BUDGET`] encoded bytes (one entry per run when a
/// single entry is larger); always at least one run, so an empty list is one empty part.
fn split<T: Serialize>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut runs = vec![Vec::new()];
    let mut size = 0;
    for item in items {
        // The comma between entries is the +1.
        let len = serde_json::to_vec(&item).map_or(PART_BUDGET, |v| v.len() + 1);
        let run = runs.last_mut().expect("never empty");
        if size + len > PART_BUDGET && !run.is_empty() {
            runs.push(Vec::new());
            size = 0;
        }
        size += len;
        runs.last_mut().expect("never empty").push(item);
    }
    runs
}

fn mark<T>(runs: Vec<Vec<T>>, make: impl Fn(Vec<T>, bool) -> RelayToEngineer) -> Vec<RelayToEngineer> {
    let last = runs.len() - 1;
    runs.into_iter().enumerate().map(|(i, run)| make(run, i < last)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::encode;
    use crate::ids::{AgentName, OrgName};
    use crate::msg::AgentInfo;

    fn agents(n: usize) -> Vec<AgentInfo> {
        (0..n)
            .map(|i| AgentInfo {
                name: AgentName::new(format!("erp-db-{i:05}")),
                org: OrgName::new("acme"),
                online: i % 3 == 0,
                consent: None,
                enrolled_at: 1_700_000_000_000 + i as i64,
                last_seen: Some(1_700_000_000_000),
                revoked: false,
            })
            .collect()
    }

    #[test]
    fn a_list_longer_than_a_frame_goes_in_parts_that_each_fit_and_join_to_the_whole() {
        let all = agents(5_000);
        let whole = RelayToEngineer::Agents { agents: all.clone(), more: false };
        assert!(encode(&whole).is_err(), "the test's list must not fit in one frame");
        let parts = whole.into_parts();
        assert!(parts.len() > 2, "{} parts", parts.len());
        for (i, p) in parts.iter().enumerate() {
            assert!(encode(p).is_ok(), "part {i} fits in a frame");
            assert_eq!(p.more(), i + 1 < parts.len(), "all but the last say more");
        }
        let mut parts = parts.into_iter();
        let mut joined = parts.next().unwrap();
        for p in parts {
            joined.join(p).unwrap();
        }
        assert!(!joined.more());
        assert_eq!(joined, RelayToEngineer::Agents { agents: all, more: false });
    }

    #[test]
    fn a_short_list_and_other_messages_go_whole_and_an_old_list_without_more_parses() {
        let short = RelayToEngineer::Agents { agents: agents(3), more: false };
        assert_eq!(short.clone().into_parts(), vec![short.clone()]);
        let empty = RelayToEngineer::Sessions { sessions: vec![], more: false };
        assert_eq!(empty.clone().into_parts(), vec![empty]);
        let done = RelayToEngineer::Done { message: "ok".into() };
        assert_eq!(done.clone().into_parts(), vec![done]);
        // A relay from before parts sends no `more`: the list is whole.
        let old = br#"{"type":"agents","agents":[]}"#;
        let parsed: RelayToEngineer = crate::frame::decode_body(old).unwrap();
        assert!(!parsed.more());
        // A part that is not the list's next is given back, the list unchanged.
        let mut first = RelayToEngineer::Agents { agents: agents(2), more: true };
        let err = first.join(RelayToEngineer::Done { message: "x".into() }).unwrap_err();
        assert_eq!(*err, RelayToEngineer::Done { message: "x".into() });
        assert!(first.more());
    }
}
