//! Tables for people. `--json` output is serde's, not this.
//!
//! Every cell is made inert ([`assist_proto::text`]) where the table is drawn, so no field,
//! whoever filled it (a reason, a ticket, a remote file name), can move the cursor or
//! break out of its column.

use crate::clock::duration;
use assist_proto::msg::{AgentInfo, SessionInfo};

/// RFC 3339 UTC to the second, or `-`.
pub fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms > 0 => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
            humantime::format_rfc3339_seconds(t).to_string()
        }
        _ => "-".into(),
    }
}

/// How much of one cell is shown; `--json` has the whole text.
const CELL_CHARS: usize = 200;

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> =
        rows.iter().map(|r| r.iter().map(|c| assist_proto::text::inert(c, CELL_CHARS)).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A listing: mode, size, modification time, name (`/` after directories, `@` after links).
pub fn entries(entries: &[assist_proto::files::FileEntry]) -> String {
    use assist_proto::files::EntryKind;
    let rows: Vec<Vec<String>> = entries
        .iter()
        .filter(|e| !(e.path.is_empty() && e.kind == EntryKind::Dir))
        .map(|e| {
            let suffix = match e.kind {
                EntryKind::Dir => "/",
                EntryKind::Symlink => "@",
                _ => "",
            };
            let name = if e.path.is_empty() { "." } else { e.path.as_str() };
            vec![
                format!("{:04o}", e.mode),
                e.size.to_string(),
                time(Some(e.modified)),
                format!("{name}{suffix}"),
            ]
        })
        .collect();
    table(&["MODE", "SIZE", "MODIFIED", "NAME"], &rows)
}

pub fn agents(agents: &[AgentInfo]) -> String {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.to_string(),
                a.org.to_string(),
                if a.revoked {
                    "revoked".into()
                } else if a.online {
                    "online".into()
                } else {
                    "offline".into()
                },
                a.consent.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                time(a.last_seen),
            ]
        })
        .collect();
    table(&["AGENT", "ORG", "STATE", "CONSENT", "LAST SEEN"], &rows)
}

pub fn requests(sessions: &[SessionInfo], now: i64) -> String {
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let caps = |c: &[assist_proto::caps::Capability]| {
                c.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
            };
            let (asked_at, deadline, asks, reason, secs) = match &s.escalation {
                Some(e) => (
                    e.requested_at,
                    e.deadline,
                    format!("MORE: +{}", if e.add.is_empty() { "time".into() } else { caps(&e.add) }),
                    e.reason.clone(),
                    e.duration_secs,
                ),
                None => (
                    s.requested_at,
                    s.consent_deadline,
                    caps(&s.capabilities),
                    s.reason.clone(),
                    Some(s.duration_secs),
                ),
            };
            vec![
                s.id.to_string(),
                s.priority.to_string(),
                duration(now - asked_at),
                duration(deadline - now),
                s.ticket.clone(),
                format!("{}@{}", s.engineer, s.engineer_org),
                s.agent.to_string(),
                asks,
                secs.map_or_else(|| "-".into(), |d| duration(d as i64 * 1000)),
                reason,
            ]
        })
        .collect();
    table(
        &[
            "SESSION",
            "PRI",
            "WAITING",
            "EXPIRES IN",
            "TICKET",
            "ENGINEER",
            "AGENT",
            "ASKS FOR",
            "FOR",
            "REASON",
        ],
        &rows,
    )
}

pub fn sessions(sessions: &[SessionInfo]) -> String {
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.state.to_string(),
                s.ticket.clone(),
                s.priority.to_string(),
                format!("{}@{}", s.engineer, s.engineer_org),
                s.agent.to_string(),
                s.approver.clone().unwrap_or_else(|| "-".into()),
                s.granted.as_ref().map_or_else(
                    || "-".into(),
                    |g| g.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(","),
                ),
                time(s.grant_expires_at),
                time(s.started_at),
                time(s.ended_at),
                s.end_reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "SESSION",
            "STATE",
            "TICKET",
            "PRI",
            "ENGINEER",
            "AGENT",
            "APPROVER",
            "GRANTED",
            "UNTIL",
            "STARTED",
            "ENDED",
            "END REASON",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()], vec!["x".into(), "22".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\nx    22\n");
    }

    #[test]
    fn cells_cannot_move_the_cursor_or_leave_their_row() {
        let t = table(&["A", "B"], &[vec!["x\r\x1b[1A\x1b[2Kforged".into(), "y\nz".into()]]);
        assert_eq!(t, "A                        B\nx\\r\\x1b[1A\\x1b[2Kforged  y\\nz\n");
        let long = table(&["A"], &[vec!["é".repeat(300)]]);
        assert!(long.ends_with(&format!("{}…[+100 chars]\n", "é".repeat(200))), "{long}");
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(time(None), "-");
        assert_eq!(time(Some(0)), "-");
        assert_eq!(time(Some(1_000)), "1970-01-01T00:00:01Z");
    }
}
