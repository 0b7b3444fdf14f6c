//! Grants from the engineer's side: what an approval says, warnings before a grant runs
//! out, and `assist escalate` (ask for more, wait for the answer) and `assist revoke`.

use super::config::ConfigDir;
use super::{EngineerError, connect};
use crate::clock::{duration, now_ms};
use crate::term;
use assist_proto::caps::Capability;
use assist_proto::ids::SessionId;
use assist_proto::msg::{EngineerToRelay, GrantView, RelayToEngineer, SessionInfo};
use std::time::Duration;

fn list(caps: &[Capability]) -> String {
    caps.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", ")
}

/// "approved by bob: shell for 1h (note: ...)".
pub fn approved_line(s: &SessionInfo) -> String {
    let granted = s.granted.as_deref().unwrap_or(&s.capabilities);
    let mut line = format!("assist: approved by {}: {}", s.approver.as_deref().unwrap_or("?"), list(granted));
    if let Some(exp) = s.grant_expires_at {
        line.push_str(&format!(" for {}", duration(exp - now_ms())));
    }
    if granted.len() < s.capabilities.len() || granted.iter().any(|g| !s.capabilities.contains(g)) {
        line.push_str(&format!(" (asked for {})", list(&s.capabilities)));
    }
    line
}

/// Why the shell cannot go on under `grant`, if it cannot.
pub fn shell_lost(grant: &GrantView, in_force: bool) -> Option<String> {
    if !in_force {
        return Some("the grant is no longer in force".into());
    }
    if !grant.capabilities.iter().any(|c| Capability::Shell.within(c)) {
        return Some("the shell capability was revoked".into());
    }
    None
}

/// Warns once, five minutes (or half the grant, if shorter) before the grant expires.
pub struct ExpiryWarning {
    expires_at: Option<i64>,
    warned_for: Option<i64>,
}

impl ExpiryWarning {
    pub fn new(s: &SessionInfo) -> Self {
        Self { expires_at: s.grant_expires_at, warned_for: None }
    }

    pub fn update(&mut self, g: &GrantView) {
        self.expires_at = Some(g.expires_at);
    }

    fn due(&self) -> Option<i64> {
        let exp = self.expires_at?;
        if self.warned_for == Some(exp) {
            return None;
        }
        let lead = (5 * 60 * 1000).min((exp - now_ms()) / 2).max(0);
        Some(exp - lead)
    }

    /// Resolves when the warning is due; never, if none is.
    pub async fn wait(&mut self) {
        match self.due() {
            Some(at) => {
                tokio::time::sleep(Duration::from_millis((at - now_ms()).max(0) as u64)).await;
                self.warned_for = self.expires_at;
            }
            None => std::future::pending().await,
        }
    }

    pub fn message(&self, session: &SessionId) -> String {
        let left = self.expires_at.map_or(0, |e| e - now_ms());
        format!(
            "the grant of {session} expires in {}; ask for more time with: assist escalate {session} --extend 30m --reason ...",
            duration(left)
        )
    }
}

/// Asks for more in a live session and waits for the answer. Returns the message to show;
/// a denial or expiry is an [`EngineerError::Refused`].
pub async fn escalate(
    cfg: &ConfigDir,
    session: SessionId,
    add: Vec<Capability>,
    duration_secs: Option<u64>,
    reason: String,
) -> Result<String, EngineerError> {
    let req = EngineerToRelay::Escalate { session: session.clone(), add, duration_secs, reason };
    req.check_text()?;
    let (mut a, asked) = connect(cfg).await?.call_at_holder(&session, &req).await?;
    let (info, waiting_for) = match asked {
        RelayToEngineer::EscalationRequested { session, waiting_for } => (session, waiting_for),
        other => return Err(EngineerError::from_reply(other)),
    };
    let deadline = info.escalation.as_ref().map_or(info.consent_deadline, |e| e.deadline);
    eprintln!(
        "assist: escalation of {session} requested; waiting for {} (denied automatically in {})",
        assist_proto::text::line(&waiting_for),
        duration(deadline - now_ms())
    );
    let live = term::stderr_is_tty();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let answer = {
        // One read, polled across ticks: a frame is never abandoned half-read.
        let recv = a.control.recv::<RelayToEngineer>();
        tokio::pin!(recv);
        loop {
            tokio::select! {
                _ = tick.tick(), if live => eprint!("\r\x1b[2K{} left", duration(deadline - now_ms())),
                msg = &mut recv => break msg?,
            }
        }
    };
    if live {
        eprint!("\r\x1b[2K");
    }
    a.rc.close().await;
    match answer {
        RelayToEngineer::EscalationAnswered { approved: true, by, reason, .. } => Ok(format!(
            "escalation of {session} approved by {}{}",
            by.as_deref().unwrap_or("?"),
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        )),
        RelayToEngineer::EscalationAnswered { approved: false, by, reason, .. } => {
            Err(EngineerError::Refused(format!(
                "escalation of {session} {}: {}",
                by.map_or_else(|| "expired".to_owned(), |b| format!("denied by {b}")),
                reason.unwrap_or_else(|| "no reason given".into())
            )))
        }
        other => Err(EngineerError::from_reply(other)),
    }
}
