//! Webhook bodies, built once when a delivery is queued and sent unchanged on every
//! attempt.
//!
//! - `json` ([`SCHEMA`] 1, described in `docs/webhooks.md`): the event (kind, sequence
//!   number, time, actor, organisation), the session it concerns (ticket, priority,
//!   engineer, agent, both organisations, requested capabilities: fields that never change
//!   once a session is requested, read from the sessions table), what this event says
//!   (approver, capabilities, end reason) and the audit event's whole `detail`.
//! - `chat`: `{"text": "..."}`, one sentence for people; text typed by engineers and
//!   approvers is defused so that it cannot mention (`@channel`) or link.
//!
//! It does no I/O: the caller reads the session.

use super::rows::PayloadFormat;
use crate::audit::AuditRecord;
use crate::fmt_time_ms;
use assist_proto::msg::SessionInfo;
use serde_json::{Value, json};

/// The version of the `json` body. Fields may be added within a version; none is removed
/// or changes meaning without a new version.
pub const SCHEMA: u32 = 1;

/// Session events whose session is over, and whose stored end reason is therefore final.
const ENDING_EVENTS: &[&str] = &["session.denied", "session.expired", "session.ended"];

/// The body for `event` (with its session, if it has one and it is stored).
pub fn body(format: PayloadFormat, event: &AuditRecord, session: Option<&SessionInfo>) -> String {
    let value = match format {
        PayloadFormat::Json => json_body(event, session),
        PayloadFormat::Chat => json!({ "text": chat_text(event, session) }),
    };
    value.to_string()
}

fn detail_of(event: &AuditRecord) -> Value {
    serde_json::from_str(&event.detail).unwrap_or_else(|_| Value::String(event.detail.clone()))
}

fn text_field(detail: &Value, key: &str) -> Option<String> {
    detail.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn approver(event: &AuditRecord, detail: &Value, session: Option<&SessionInfo>) -> Option<String> {
    text_field(detail, "approver").or_else(|| {
        (event.action != "session.requested").then(|| session.and_then(|s| s.approver.clone())).flatten()
    })
}

fn end_reason(event: &AuditRecord, detail: &Value, session: Option<&SessionInfo>) -> Option<String> {
    if !ENDING_EVENTS.contains(&event.action.as_str()) {
        return None;
    }
    session.and_then(|s| s.end_reason.clone()).or_else(|| text_field(detail, "reason"))
}

fn json_body(event: &AuditRecord, session: Option<&SessionInfo>) -> Value {
    let detail = detail_of(event);
    let session_part = match (session, &event.session) {
        (Some(s), _) => json!({
            "id": s.id,
            "ticket": s.ticket,
            "priority": s.priority.to_string(),
            "reason": s.reason,
            "engineer": s.engineer,
            "engineer_org": s.engineer_org,
            "agent": s.agent,
            "agent_org": s.agent_org,
            "requested_at": fmt_time_ms(s.requested_at),
            "requested_capabilities": s.capabilities,
        }),
        (None, Some(id)) => json!({ "id": id }),
        (None, None) => Value::Null,
    };
    json!({
        "schema": SCHEMA,
        "event": event.action,
        "seq": event.seq,
        "time": fmt_time_ms(event.at),
        "at_ms": event.at,
        "actor": event.actor,
        "org": event.org,
        "target": event.target,
        "session": session_part,
        "approver": approver(event, &detail, session),
        "capabilities": detail.get("capabilities").cloned().unwrap_or(Value::Null),
        "end_reason": end_reason(event, &detail, session),
        "detail": detail,
    })
}

/// How much of one piece of foreign text a chat message shows.
const CHAT_CHARS: usize = 300;

/// Text from people, made inert for chat: control, bidi and invisible characters escaped
/// visibly and the length bounded ([`assist_proto::text::inert`]); then what chat formats
/// interpret is broken: no `<link|...>`, `<!channel>` or `<at>` markup (`<`, `>` become
/// `‹`, `›`), no entities (`&` becomes `＆`), no `[text](url)` links (`[`, `]` become
/// `［`, `］`), no bare `scheme://` links and no `@mentions` (a zero-width space goes after
/// every `@` and inside every `://`).
fn defuse(text: &str) -> String {
    let inert = assist_proto::text::inert(text, CHAT_CHARS);
    let mut out = String::with_capacity(inert.len() + 8);
    for c in inert.chars() {
        match c {
            '<' => out.push('‹'),
            '>' => out.push('›'),
            '&' => out.push('＆'),
            '[' => out.push('［'),
            ']' => out.push('］'),
            '@' => out.push_str("@\u{200b}"),
            c => out.push(c),
        }
    }
    out.replace("://", ":/\u{200b}/")
}

fn chat_text(event: &AuditRecord, session: Option<&SessionInfo>) -> String {
    let detail = detail_of(event);
    let id = defuse(event.session.as_deref().unwrap_or("-"));
    let about = session.map_or_else(String::new, |s| {
        format!(
            " ({}@{} on {} of {}, ticket {} {})",
            defuse(s.engineer.as_str()),
            defuse(s.engineer_org.as_str()),
            defuse(s.agent.as_str()),
            defuse(s.agent_org.as_str()),
            defuse(&s.ticket),
            s.priority
        )
    });
    let reason = || defuse(&end_reason(event, &detail, session).unwrap_or_else(|| "no reason given".into()));
    let who = || defuse(&approver(event, &detail, session).unwrap_or_else(|| event.actor.clone()));
    let body = match event.action.as_str() {
        "session.requested" => {
            let why = session.map_or_else(String::new, |s| format!(": {}", defuse(&s.reason)));
            let until = detail
                .get("consent_deadline")
                .and_then(Value::as_i64)
                .map_or_else(String::new, |d| format!(". Waiting for consent until {}", fmt_time_ms(d)));
            format!("session {id} requested{about}{why}{until}")
        }
        "session.approved" => format!("session {id} approved by {}{about}", who()),
        "session.denied" => format!("session {id} denied{about}: {}", reason()),
        "session.expired" => format!("session {id} expired without an answer{about}"),
        "session.started" => format!("session {id} is active{about}"),
        "session.ended" => format!("session {id} ended{about}: {}", reason()),
        other => {
            let org = event.org.as_deref().map_or_else(String::new, |o| format!(" in {}", defuse(o)));
            format!("{other} by {}{org}", defuse(&event.actor))
        }
    };
    format!("[assist] {body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Action, AuditEvent, GENESIS};
    use assist_proto::caps::{Capability, Priority};
    use assist_proto::session::SessionState;

    fn session() -> SessionInfo {
        SessionInfo {
            id: "s-1".into(),
            engineer: "alice".into(),
            engineer_org: "vendor".into(),
            agent: "erp-db01".into(),
            agent_org: "acme".into(),
            ticket: "INC-1042".into(),
            priority: Priority::P1,
            reason: "ping <!channel> @here".into(),
            capabilities: vec![Capability::Shell],
            state: SessionState::Closed,
            approver: Some("bob".into()),
            requested_at: 1_700_000_000_000,
            consent_deadline: 1_700_000_120_000,
            decided_at: Some(1_700_000_001_000),
            started_at: Some(1_700_000_002_000),
            ended_at: Some(1_700_000_003_000),
            end_reason: Some("shell exited with status 0".into()),
            duration_secs: 3600,
            granted: None,
            grant_expires_at: None,
            escalation: None,
        }
    }

    fn record(action: Action, detail: Value) -> AuditRecord {
        AuditEvent::new("bob", action)
            .org(&"acme".into())
            .target("erp-db01")
            .session(&"s-1".into())
            .detail(detail)
            .seal(7, 1_700_000_001_234, GENESIS)
    }

    #[test]
    fn json_bodies_carry_the_session_and_what_the_event_says() {
        let s = session();
        let approved =
            record(Action::SessionApproved, json!({"approver": "bob", "capabilities": [{"kind": "shell"}]}));
        let v: Value = serde_json::from_str(&body(PayloadFormat::Json, &approved, Some(&s))).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!((v["event"].as_str(), v["seq"].as_i64()), (Some("session.approved"), Some(7)));
        assert_eq!(v["time"], "2023-11-14T22:13:21.234Z");
        assert_eq!(v["session"]["ticket"], "INC-1042");
        assert_eq!(v["session"]["priority"], "P1");
        assert_eq!(v["session"]["engineer_org"], "vendor");
        assert_eq!(v["session"]["requested_capabilities"], json!([{"kind": "shell"}]));
        assert_eq!(v["approver"], "bob");
        assert_eq!(v["capabilities"], json!([{"kind": "shell"}]));
        assert_eq!(v["end_reason"], Value::Null, "not an end");

        let ended = record(Action::SessionEnded, json!({"reason": "shell exited with status 0"}));
        let v: Value = serde_json::from_str(&body(PayloadFormat::Json, &ended, Some(&s))).unwrap();
        assert_eq!(v["end_reason"], "shell exited with status 0");
        assert_eq!(v["detail"]["reason"], "shell exited with status 0");

        let v: Value = serde_json::from_str(&body(PayloadFormat::Json, &ended, None)).unwrap();
        assert_eq!(v["session"], json!({"id": "s-1"}), "a session not found still names its id");
    }

    #[test]
    fn chat_text_is_one_defused_sentence() {
        let s = session();
        let requested = record(Action::SessionRequested, json!({"consent_deadline": 1_700_000_120_000_i64}));
        let v: Value = serde_json::from_str(&body(PayloadFormat::Chat, &requested, Some(&s))).unwrap();
        let text = v["text"].as_str().unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1, "only text: strict chat endpoints refuse other fields");
        assert!(
            text.starts_with("[assist] session s-1 requested (alice@vendor on erp-db01 of acme"),
            "{text}"
        );
        assert!(text.contains("ticket INC-1042 P1"), "{text}");
        assert!(!text.contains("<!channel>") && !text.contains("@here"), "{text}");
        assert!(text.contains("Waiting for consent until 2023-11-14T22:15:20.000Z"), "{text}");
    }

    #[track_caller]
    fn check_defused(input: &str, expected: &str) {
        assert_eq!(defuse(input), expected, "input {input:?}");
    }

    #[test]
    fn chat_markup_mentions_links_and_controls_are_defused() {
        for (input, expected) in [
            ("month-end close fails", "month-end close fails"),
            ("<!channel> <!here|here> <@U123>", "‹!channel› ‹!here|here› ‹@\u{200b}U123›"),
            ("<https://evil.example|click here>", "‹https:/\u{200b}/evil.example|click here›"),
            ("[approve now](https://evil.example)", "［approve now］(https:/\u{200b}/evil.example)"),
            ("@channel @here ping @bob", "@\u{200b}channel @\u{200b}here ping @\u{200b}bob"),
            ("&lt;!channel&gt; R&D", "＆lt;!channel＆gt; R＆D"),
            ("<at>bob</at>", "‹at›bob‹/at›"),
            ("line\nbreak\r\x1b[8mhidden", "line\\nbreak\\r\\x1b［8mhidden"),
            ("abc\u{202e}txt.exe\u{200b}", "abc\\u{202e}txt.exe\\u{200b}"),
        ] {
            check_defused(input, expected);
        }
        let long = defuse(&"x".repeat(1000));
        assert!(long.ends_with("…［+700 chars］"), "{long}");
    }

    #[test]
    fn a_hostile_reason_reaches_chat_defused_in_every_event() {
        let mut s = session();
        s.reason = "<!channel> urgent\n[click](https://evil.example) \u{202e}".into();
        s.ticket = "INC-1<@U1>".into();
        s.end_reason = Some("denied by bob: <!everyone> @here".into());
        for (action, detail) in [
            (Action::SessionRequested, json!({})),
            (Action::SessionDenied, json!({})),
            (Action::SessionEnded, json!({})),
        ] {
            let v: Value =
                serde_json::from_str(&body(PayloadFormat::Chat, &record(action, detail), Some(&s))).unwrap();
            let text = v["text"].as_str().unwrap().strip_prefix("[assist] ").unwrap();
            assert!(!text.contains(['<', '>', '[', ']', '\n', '\u{202e}']), "{text}");
            assert!(!text.contains("@here") && !text.contains("https://"), "{text}");
        }
    }
}
