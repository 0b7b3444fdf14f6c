//! Maintenance windows: whether a request (or an escalation) falls inside a window that
//! pre-approves it.
//!
//! A window opens at each time its cron schedule (UTC) names and stays open for its
//! duration. It covers a request when it is open now, names the request's agent (or all
//! of its organisation's agents) and engineer, and every asked capability is within one
//! of its capabilities. The grant then lasts no longer than the window stays open.
//! Windows apply only to agents in `window` consent mode; the decision is audited like
//! any approval, with `window:ID` as the approver.

use super::Relay;
use crate::store::WindowRow;
use assist_proto::caps::Capability;
use assist_proto::msg::SessionInfo;
use chrono::{DateTime, Utc};
use std::str::FromStr;
use tracing::warn;

/// A schedule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule {0:?} must have 5 fields: minute hour day-of-month month day-of-week (UTC)")]
    Fields(String),
    #[error("schedule {schedule:?}: {reason}")]
    Invalid { schedule: String, reason: String },
}

/// Parses a schedule: 5 fields (minute hour day month weekday), UTC.
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, ScheduleError> {
    if schedule.split_whitespace().count() != 5 {
        return Err(ScheduleError::Fields(schedule.to_owned()));
    }
    croner::Cron::from_str(schedule)
        .map_err(|e| ScheduleError::Invalid { schedule: schedule.to_owned(), reason: e.to_string() })
}

/// If the window is open at `now_ms`, the seconds it stays open.
pub fn open_for(w: &WindowRow, now_ms: i64) -> Option<u64> {
    let cron = match parse_schedule(&w.schedule) {
        Ok(c) => c,
        Err(e) => {
            warn!(window = %w.id, error = %e, "stored window has a bad schedule; ignored");
            return None;
        }
    };
    let now: DateTime<Utc> = DateTime::from_timestamp_millis(now_ms)?;
    let start = cron.find_previous_occurrence(&now, true).ok()?;
    let end_ms = start.timestamp_millis() + w.duration_secs as i64 * 1000;
    (now_ms < end_ms).then(|| ((end_ms - now_ms) / 1000) as u64)
}

/// Whether `w` pre-approves `caps` for the session's engineer and agent at `now_ms`;
/// returns how long (seconds) a grant may then last.
pub fn covers(w: &WindowRow, s: &SessionInfo, caps: &[Capability], now_ms: i64) -> Option<u64> {
    if w.removed_at.is_some() || w.org != s.agent_org {
        return None;
    }
    if w.agent.as_ref().is_some_and(|a| a != &s.agent) || !w.engineers.contains(&s.engineer) {
        return None;
    }
    if !caps.iter().all(|c| w.capabilities.iter().any(|g| c.within(g))) {
        return None;
    }
    open_for(w, now_ms)
}

impl Relay {
    /// The first window that pre-approves `caps` in session `s` now, with the grant length
    /// (the lesser of `asked_secs` and what is left of the window).
    pub(super) async fn matching_window(
        &self,
        s: &SessionInfo,
        caps: &[Capability],
        asked_secs: u64,
        now_ms: i64,
    ) -> Option<(WindowRow, u64)> {
        let windows = match self.store.list_windows(Some(&s.agent_org)).await {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot read maintenance windows; asking approvers");
                return None;
            }
        };
        windows.into_iter().find_map(|w| covers(&w, s, caps, now_ms).map(|left| (w, left.min(asked_secs))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(schedule: &str, secs: u64) -> WindowRow {
        WindowRow {
            id: "w1".into(),
            org: "acme".into(),
            agent: None,
            schedule: schedule.into(),
            duration_secs: secs,
            capabilities: vec!["shell".parse().unwrap(), "files.read:/var/log".parse().unwrap()],
            engineers: vec!["alice".into()],
            note: None,
            created_by: "admin".into(),
            created_at: 0,
            removed_at: None,
        }
    }

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
    }

    #[test]
    fn windows_open_at_their_schedule_for_their_duration() {
        // Saturdays 22:00 UTC for 4 hours. 2026-11-21 is a Saturday.
        let w = window("0 22 * * SAT", 4 * 3600);
        assert_eq!(open_for(&w, ms("2026-11-21T22:00:00Z")), Some(4 * 3600));
        assert_eq!(open_for(&w, ms("2026-11-22T01:59:00Z")), Some(60));
        assert_eq!(open_for(&w, ms("2026-11-22T02:00:00Z")), None);
        assert_eq!(open_for(&w, ms("2026-11-21T21:59:59Z")), None);
        assert_eq!(parse_schedule("0 22 * *").unwrap_err(), ScheduleError::Fields("0 22 * *".into()));
        assert!(matches!(parse_schedule("61 22 * * *"), Err(ScheduleError::Invalid { .. })));
    }

    #[test]
    fn windows_cover_only_their_engineers_agents_and_capabilities() {
        let w = window("* * * * *", 3600);
        let now = ms("2026-11-22T10:00:30Z");
        let mut s = SessionInfo {
            id: "s-1".into(),
            engineer: "alice".into(),
            engineer_org: "vendor".into(),
            agent: "erp-db01".into(),
            agent_org: "acme".into(),
            ticket: "T".into(),
            priority: assist_proto::caps::Priority::P2,
            reason: "r".into(),
            capabilities: vec![],
            state: assist_proto::session::SessionState::Requested,
            approver: None,
            requested_at: 0,
            consent_deadline: 0,
            decided_at: None,
            started_at: None,
            ended_at: None,
            end_reason: None,
            duration_secs: 60,
            granted: None,
            grant_expires_at: None,
            escalation: None,
        };
        let cap = |c: &str| c.parse::<Capability>().unwrap();
        assert!(covers(&w, &s, &[cap("shell")], now).is_some());
        assert!(covers(&w, &s, &[cap("files.read:/var/log/erp")], now).is_some());
        assert!(covers(&w, &s, &[cap("files.read:/etc")], now).is_none());
        assert!(covers(&w, &s, &[cap("shell"), cap("clipboard")], now).is_none());
        s.engineer = "mallory".into();
        assert!(covers(&w, &s, &[cap("shell")], now).is_none());
        s.engineer = "alice".into();
        s.agent_org = "other".into();
        assert!(covers(&w, &s, &[cap("shell")], now).is_none());
    }
}
