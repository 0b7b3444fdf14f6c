//! The consent prompt on the agent's terminal (`assist-agent run --consent prompt`).
//!
//! Requests are shown one at a time, most urgent first; the answer is a line on stdin
//! (`y`/`yes` approves, anything else denies). A request that expires or is answered
//! elsewhere is withdrawn from the queue. Prompts go to stdout, the log to stderr.

use assist_proto::ids::SessionId;
use assist_proto::msg::{AgentToRelay, SessionInfo};
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use tokio::sync::mpsc;

/// What the prompt task is told.
#[derive(Debug)]
pub enum PromptEvent {
    Ask(Box<SessionInfo>),
    Withdraw { session: SessionId, reason: String },
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

fn show(s: &SessionInfo, now: i64) {
    let left = crate::engineer::render::duration(s.consent_deadline - now);
    let caps: Vec<String> = s.capabilities.iter().map(|c| c.to_string()).collect();
    let mut out = std::io::stdout();
    let _ = write!(
        out,
        "\nassist: {engineer} ({org}) requests a session on {agent}\n  ticket:       {ticket} ({pri})\n  reason:       {reason}\n  capabilities: {caps}\n  answer within {left}\nAllow? [y/N] ",
        engineer = s.engineer,
        org = s.engineer_org,
        agent = s.agent,
        ticket = s.ticket,
        pri = s.priority,
        reason = s.reason,
        caps = caps.join(", "),
    );
    let _ = out.flush();
}

/// Runs the prompt until `events` closes. Answers go out on `answers`; the session ids
/// approved here are sent on `approved` so the agent can hold its own record of them.
pub async fn run(
    mut events: mpsc::Receiver<PromptEvent>,
    answers: mpsc::Sender<AgentToRelay>,
    approved: mpsc::Sender<SessionId>,
) {
    let mut lines = stdin_lines();
    let mut queue: VecDeque<SessionInfo> = VecDeque::new();
    let mut current: Option<SessionInfo> = None;
    let mut stdin_open = true;
    loop {
        if current.is_none()
            && let Some(next) = queue.pop_front()
        {
            show(&next, crate::engineer::now_ms());
            current = Some(next);
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
                        println!("\nassist: request {session} withdrawn ({reason})");
                        current = None;
                    }
                }
            },
            line = lines.recv(), if stdin_open => match line {
                None => stdin_open = false,
                Some(line) => {
                    let Some(s) = current.take() else { continue };
                    let yes = matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes");
                    if yes {
                        let _ = approved.send(s.id.clone()).await;
                        println!("assist: approved {}", s.id);
                    } else {
                        println!("assist: denied {}", s.id);
                    }
                    let reason = (!yes).then(|| "declined at the agent".to_owned());
                    let _ = answers.send(AgentToRelay::ConsentAnswer { session: s.id, approve: yes, reason }).await;
                }
            },
        }
    }
}
