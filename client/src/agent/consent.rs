//! The consent prompt on the agent's terminal (`assist-agent run --consent prompt`).
//!
//! Requests (and escalations of live sessions) are shown one at a time, most urgent first;
//! the answer is a line on stdin: `y` approves all, `n` (or nothing) denies, capability
//! numbers (`1,3`) approve only those. A request that expires or is answered elsewhere is
//! withdrawn from the queue. `k` at any time is the kill key: every live session here ends
//! at once, locally and at the relay. Prompts go to stdout, the log to stderr.

use super::grants::Grants;
use assist_proto::caps::Capability;
use assist_proto::grant::Grant;
use assist_proto::ids::SessionId;
use assist_proto::msg::{AgentToRelay, SessionInfo};
use assist_proto::text;
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What the prompt task is told.
#[derive(Debug)]
pub enum PromptEvent {
    /// A request, or an escalation of a live session (`escalation` is set), to answer.
    Ask(Box<SessionInfo>),
    Withdraw {
        session: SessionId,
        reason: String,
    },
    /// A grant (or a new revision of it) was received: the customer sees what runs.
    Granted(Box<Grant>),
    Ended {
        session: SessionId,
        reason: String,
    },
}

/// Reads stdin lines on a dedicated thread (stdin is blocking).
fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// What is asked: the request's capabilities, or an escalation's additions.
fn asked(s: &SessionInfo) -> &[Capability] {
    s.escalation.as_ref().map_or(&s.capabilities, |e| &e.add)
}

/// The first asked capability that no channel of this agent serves, if any.
pub(crate) fn unserved(s: &SessionInfo) -> Option<assist_proto::caps::NotServed> {
    asked(s).iter().find_map(|c| c.check_served("agent").err())
}

/// The prompt for `s`: first the free text that came from the engineer, each piece made
/// inert on its own labelled line; then a separator and everything our own code decides
/// (what is asked, for how long, the question). Free text holds no control character
/// after [`text::line`], so it can neither move the cursor nor hide or overwrite what
/// follows it, and whatever it imitates stands above the separator.
fn render(s: &SessionInfo, now: i64) -> String {
    let free = |t: &str| text::line(t);
    let mut out = String::from("\n");
    let (deadline, extend) = match &s.escalation {
        Some(e) => {
            out.push_str(&format!(
                "assist: {} asks for MORE in live session {} on {}\n  reason:       {}\n",
                free(s.engineer.as_str()),
                free(s.id.as_str()),
                free(s.agent.as_str()),
                free(&e.reason),
            ));
            (e.deadline, Some(e.duration_secs))
        }
        None => {
            out.push_str(&format!(
                "assist: session requested on {}\n  engineer:     {} ({})\n  ticket:       {} ({})\n  reason:       {}\n",
                free(s.agent.as_str()),
                free(s.engineer.as_str()),
                free(s.engineer_org.as_str()),
                free(&s.ticket),
                s.priority,
                free(&s.reason),
            ));
            (s.consent_deadline, None)
        }
    };
    out.push_str(SEPARATOR);
    out.push_str(if extend.is_some() { "  asks to ADD:\n" } else { "  asks for:\n" });
    for (i, c) in asked(s).iter().enumerate() {
        out.push_str(&format!("    {}. {}\n", i + 1, free(&c.to_string())));
    }
    let render_secs = |d: u64| crate::clock::duration(d as i64 * 1000);
    match extend {
        Some(Some(d)) => out.push_str(&format!("  extend by:    {}\n", render_secs(d))),
        Some(None) => {}
        None => out.push_str(&format!("  for:          {}\n", render_secs(s.duration_secs))),
    }
    out.push_str(&format!("  answer within {}\n", crate::clock::duration(deadline - now)));
    out.push_str(if asked(s).len() > 1 {
        "Allow? [y = all, N = deny, or numbers to allow only those, e.g. 1,3] "
    } else {
        "Allow? [y/N] "
    });
    out
}

/// Drawn by us between the engineer's free text and what is asked.
const SEPARATOR: &str = "  ──────────────── what is asked (shown by assist-agent) ────────────────\n";

fn show(s: &SessionInfo, now: i64) {
    let mut out = std::io::stdout();
    // On a terminal, start from plain attributes whatever was printed before.
    let reset = if std::io::IsTerminal::is_terminal(&out) { "\x1b[0m" } else { "" };
    let _ = write!(out, "{reset}{}", render(s, now));
    let _ = out.flush();
}

/// How a line answers the question about `s`: `None` is a denial; `Some(None)` approves
/// everything asked; `Some(Some(list))` approves only those; `Err` asks again.
fn parse_answer(line: &str, s: &SessionInfo) -> Result<Option<Option<Vec<Capability>>>, String> {
    let t = line.trim().to_ascii_lowercase();
    match t.as_str() {
        "y" | "yes" => return Ok(Some(None)),
        "" | "n" | "no" => return Ok(None),
        _ => {}
    }
    let asked = asked(s);
    let mut chosen = Vec::new();
    for part in t.split([',', ' ']).filter(|p| !p.is_empty()) {
        let n: usize = part.parse().map_err(|_| format!("{part:?} is not y, n or a capability number"))?;
        let cap = asked.get(n.wrapping_sub(1)).ok_or_else(|| format!("there is no capability {n}"))?;
        if !chosen.contains(cap) {
            chosen.push(cap.clone());
        }
    }
    if chosen.is_empty() {
        return Err("answer y, n, or capability numbers".into());
    }
    Ok(Some(Some(chosen)))
}

/// Ends every live session here and tells the relay (the kill key).
async fn kill_all(grants: &Grants, answers: &mpsc::Sender<AgentToRelay>) {
    let live = grants.live_sessions();
    for s in &live {
        grants.end(s);
    }
    let _ = answers.send(AgentToRelay::Kill { session: None }).await;
    println!("assist: kill key: ended {} live session(s) on this machine", live.len());
}

/// Runs the prompt until `events` closes. Answers and the kill key go out on `answers`; a
/// "yes" is recorded in `grants` before it is sent, so the grant that follows finds it.
pub(crate) async fn run(
    mut events: mpsc::Receiver<PromptEvent>,
    answers: mpsc::Sender<AgentToRelay>,
    grants: Arc<Grants>,
    shown: Option<Arc<super::show::Shown>>,
) {
    let mut lines = stdin_lines();
    let mut queue: VecDeque<SessionInfo> = VecDeque::new();
    let mut current: Option<SessionInfo> = None;
    let mut stdin_open = true;
    loop {
        if current.is_none()
            && let Some(next) = queue.pop_front()
        {
            if let Some(shown) = &shown {
                // Nothing of the sessions is printed between the question and its answer.
                shown.set_asking(true);
            }
            show(&next, crate::clock::now_ms());
            current = Some(next);
        }
        if current.is_none()
            && let Some(shown) = &shown
        {
            shown.set_asking(false);
        }
        tokio::select! {
            ev = events.recv() => match ev {
                None => return,
                Some(PromptEvent::Ask(s)) => {
                    queue.push_back(*s);
                    queue.make_contiguous().sort_by_key(|s| (s.priority, s.requested_at));
                }
                Some(PromptEvent::Withdraw { session, reason }) => {
                    queue.retain(|s| s.id != session);
                    if current.as_ref().is_some_and(|c| c.id == session) {
                        println!("\nassist: request {session} withdrawn ({})", text::line(&reason));
                        current = None;
                    }
                }
                Some(PromptEvent::Granted(g)) => {
                    let caps: Vec<String> = g.capabilities.iter().map(|c| c.to_string()).collect();
                    println!(
                        "assist: session {} of {}: granted {} by {} for {}; type k and Enter to end it at any time",
                        text::line(g.session.as_str()),
                        text::line(g.engineer.as_str()),
                        text::line(&caps.join(", ")),
                        text::line(&g.approver.to_string()),
                        crate::clock::duration(g.expires_at - crate::clock::now_ms()),
                    );
                }
                Some(PromptEvent::Ended { session, reason }) => {
                    println!("assist: session {} ended: {}", text::line(session.as_str()), text::line(&reason))
                }
            },
            line = lines.recv(), if stdin_open => match line {
                None => stdin_open = false,
                Some(line) if matches!(line.trim(), "k" | "K" | "kill") => {
                    if let Some(s) = current.take() {
                        let _ = answers.send(AgentToRelay::ConsentAnswer { session: s.id, approve: false, reason: Some("declined at the agent (kill key)".into()), capabilities: None }).await;
                    }
                    kill_all(&grants, &answers).await;
                }
                Some(line) => {
                    let Some(s) = current.take() else { continue };
                    let answer = match parse_answer(&line, &s) {
                        Ok(a) => a,
                        Err(e) => {
                            println!("assist: {e}");
                            show(&s, crate::clock::now_ms());
                            current = Some(s);
                            continue;
                        }
                    };
                    let msg = match answer {
                        Some(capabilities) => {
                            grants.prompt_said_yes(&s.id);
                            println!("assist: approved {}", s.id);
                            AgentToRelay::ConsentAnswer { session: s.id, approve: true, reason: None, capabilities }
                        }
                        None => {
                            println!("assist: denied {}", s.id);
                            AgentToRelay::ConsentAnswer {
                                session: s.id,
                                approve: false,
                                reason: Some("declined at the agent".into()),
                                capabilities: None,
                            }
                        }
                    };
                    let _ = answers.send(msg).await;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_proto::caps::Priority;
    use assist_proto::msg::Escalation;
    use assist_proto::session::SessionState;

    fn request(ticket: &str, reason: &str, caps: Vec<Capability>) -> SessionInfo {
        SessionInfo {
            id: "s-1".into(),
            engineer: "alice".into(),
            engineer_org: "vendor".into(),
            agent: "erp-db01".into(),
            agent_org: "acme".into(),
            ticket: ticket.into(),
            priority: Priority::P2,
            reason: reason.into(),
            capabilities: caps,
            state: SessionState::Requested,
            approver: None,
            requested_at: 0,
            consent_deadline: 300_000,
            decided_at: None,
            started_at: None,
            ended_at: None,
            end_reason: None,
            duration_secs: 3600,
            granted: None,
            grant_expires_at: None,
            escalation: None,
        }
    }

    /// What follows the separator: drawn by us alone, whatever the free text held.
    #[track_caller]
    fn check(s: &SessionInfo, expected_after_separator: &str) {
        let shown = render(s, 1_000);
        assert!(
            !shown.chars().any(|c| c != '\n' && assist_proto::text::is_unsafe(c)),
            "an unsafe character reaches the terminal: {shown:?}"
        );
        let (before, after) = shown.split_once(SEPARATOR).expect("a separator");
        assert!(!after.contains(SEPARATOR) && !before.contains("Allow?\n"), "{shown}");
        assert_eq!(after, expected_after_separator, "{shown}");
    }

    #[test]
    fn free_text_stands_above_the_separator_and_cannot_hide_what_follows() {
        let forged =
            "x\n  asks for:\n    1. files.read:/var/log\n  for:          10m 00s\nAllow? [y/N] \x1b[8m";
        let real =
            "  asks for:\n    1. shell\n  for:          60m 00s\n  answer within 4m 59s\nAllow? [y/N] ";
        for (ticket, reason) in [
            ("INC-1", "month-end close fails"),
            ("INC-1", forged),
            ("INC-1\r\x1b[2K", "\x1b]0;title\x07\u{9b}2J\u{202e}\u{200b}"),
            (forged, forged),
        ] {
            check(&request(ticket, reason, vec![Capability::Shell]), real);
        }
        let shown = render(&request("INC-1", forged, vec![Capability::Shell]), 1_000);
        assert!(shown.contains("  reason:       x\\n  asks for:\\n    1. files.read:/var/log\\n"), "{shown}");
        assert!(shown.contains("\\x1b[8m\n"), "{shown}");

        let two = request(
            "T",
            "r",
            vec![Capability::Shell, Capability::FilesRead { roots: vec!["/a\x1b[8m".into()] }],
        );
        check(
            &two,
            "  asks for:\n    1. shell\n    2. files.read:/a\\x1b[8m\n  for:          60m 00s\n  answer within 4m 59s\nAllow? [y = all, N = deny, or numbers to allow only those, e.g. 1,3] ",
        );
        let mut more = request("T", "r", vec![Capability::Shell]);
        more.escalation = Some(Escalation {
            add: vec![Capability::Clipboard],
            duration_secs: Some(600),
            reason: "\x1b[8m".into(),
            requested_at: 0,
            deadline: 121_000,
        });
        check(
            &more,
            "  asks to ADD:\n    1. clipboard\n  extend by:    10m 00s\n  answer within 2m 00s\nAllow? [y/N] ",
        );
    }

    #[test]
    fn a_request_or_escalation_naming_the_clipboard_is_put_to_the_customer_now_it_is_served() {
        let clip = request("T", "r", vec![Capability::Shell, Capability::Clipboard]);
        assert!(unserved(&clip).is_none());
        assert!(unserved(&request("T", "r", vec![Capability::DesktopView])).is_none());
        let mut more = request("T", "r", vec![Capability::Shell]);
        more.escalation = Some(Escalation {
            add: vec![Capability::Clipboard],
            duration_secs: None,
            reason: "r".into(),
            requested_at: 0,
            deadline: 1,
        });
        assert!(unserved(&more).is_none());
    }
}
