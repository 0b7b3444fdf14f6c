//! Tests of the control and channel messages: serialisation, capability mapping, checks.

use super::*;
use crate::frame::{FrameDecoder, HEADER_LEN, encode};

fn round_trip<T>(msg: T)
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = encode(&msg).unwrap();
    assert_eq!(u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize, bytes.len() - HEADER_LEN);
    let mut dec = FrameDecoder::new();
    dec.push(&bytes);
    assert_eq!(dec.next_msg::<T>().unwrap(), Some(msg));
}

#[test]
fn the_opening_frame_is_an_enrollment_or_a_persons_request() {
    let enroll = AgentToRelay::Enroll { token: "t".into(), name: "db01".into(), csr_pem: "csr".into() };
    let login = EngineerToRelay::Login { user: "alice".into(), password: "pw".into(), code: None };
    let parse = |json: String| serde_json::from_str::<Opening>(&json);
    assert_eq!(
        parse(serde_json::to_string(&enroll).unwrap()).unwrap(),
        Opening::Enroll { token: "t".into(), name: "db01".into(), csr_pem: "csr".into() }
    );
    assert_eq!(parse(serde_json::to_string(&login).unwrap()).unwrap(), Opening::Engineer(login.clone()));
    // An enrollment missing a field is not taken for a person's request.
    assert!(serde_json::from_str::<Opening>(r#"{"type":"enroll","token":"t"}"#).is_err());
    assert!(serde_json::from_str::<Opening>(r#"{"type":"nonsense"}"#).is_err());
}

fn info() -> SessionInfo {
    SessionInfo {
        id: "s-1".into(),
        engineer: "alice".into(),
        engineer_org: "vendor".into(),
        agent: "erp-db01".into(),
        agent_org: "acme".into(),
        ticket: "INC-1042".into(),
        priority: Priority::P2,
        reason: "month-end close fails".into(),
        capabilities: vec![Capability::Shell],
        state: SessionState::Requested,
        approver: None,
        requested_at: 1,
        consent_deadline: 2,
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

#[test]
fn every_message_round_trips() {
    round_trip(EngineerToRelay::Auth { token: "t".into() });
    round_trip(EngineerToRelay::RequestSession {
        agent: "erp-db01".into(),
        ticket: "INC-1".into(),
        priority: Priority::P0,
        reason: "r".into(),
        capabilities: vec![Capability::Shell],
        duration_secs: Some(600),
    });
    round_trip(EngineerToRelay::Escalate {
        session: "s".into(),
        add: vec![Capability::FilesRead { roots: vec!["/var/log/erp".into()] }],
        duration_secs: None,
        reason: "logs".into(),
    });
    round_trip(RelayToEngineer::GrantChanged {
        session: "s".into(),
        grant: GrantView {
            capabilities: vec![],
            expires_at: 5,
            revision: 2,
            approver: ConsentSource::Approver("bob".into()),
            note: None,
        },
        change: "revoked shell".into(),
        in_force: false,
    });
    round_trip(AgentToRelay::Kill { session: None });
    round_trip(EngineerToRelay::Resize { session: "s".into(), cols: 80, rows: 24 });
    round_trip(RelayToEngineer::SessionRequested { session: info(), waiting_for: "x".into() });
    round_trip(RelayToEngineer::SessionEnded {
        reason: EndReason::ShellExited { code: Some(3), signal: None },
    });
    round_trip(RelayToEngineer::Error { code: ErrorCode::Forbidden, message: "no".into(), held_by: None });
    round_trip(RelayToEngineer::Error {
        code: ErrorCode::Conflict,
        message: "there".into(),
        held_by: Some(held()),
    });
    round_trip(AgentToRelay::Hello {
        consent: ConsentMode::Prompt,
        version: "0".into(),
        scripts: None,
        desktop: Some(":0".into()),
        cluster: true,
    });
    round_trip(AgentToRelay::Hello {
        consent: ConsentMode::Prompt,
        version: "0".into(),
        scripts: Some(vec!["db-health".into()]),
        desktop: None,
        cluster: false,
    });
    round_trip(RelayToAgent::ConsentRequest { session: Box::new(info()) });
    round_trip(ChannelOpen {
        session: "s".into(),
        report_exit: false,
        channel: ChannelKind::Shell {
            pty: Some(PtyRequest { cols: 80, rows: 24, term: "xterm".into() }),
            command: None,
        },
    });
    round_trip(ChannelOpen {
        session: "s".into(),
        report_exit: true,
        channel: ChannelKind::Shell { pty: None, command: Some(vec!["true".into()]) },
    });
    round_trip(ChannelReply::refused("no grant"));
    round_trip(ChannelReply::Refused { reason: "there".into(), held_by: Some(held()) });
    round_trip(ChannelOpen {
        session: "s".into(),
        report_exit: false,
        channel: ChannelKind::Files {
            request: FileRequest::Read { path: "/var/log/erp/app.log".into(), offset: 7 },
        },
    });
    round_trip(ChannelOpen {
        session: "s".into(),
        report_exit: false,
        channel: ChannelKind::Exec { name: "db-health".into() },
    });
    round_trip(ChannelOpen {
        session: "s".into(),
        report_exit: false,
        channel: ChannelKind::Logs { paths: vec!["/var/log/erp".into()], since: Some(5) },
    });
    round_trip(ChannelOpen {
        session: "s".into(),
        report_exit: false,
        channel: ChannelKind::Forward { target: "db:5432".into() },
    });
}

fn held() -> HeldBy {
    HeldBy { relay: "relay-1".into(), address: "127.0.0.1:4433".into() }
}

/// A refusal naming the relay that holds a session reads as a plain refusal to clients
/// that do not know the field, and refusals from relays that do not send it read as
/// having nowhere else to go.
#[test]
fn a_refusal_naming_the_holder_is_a_plain_refusal_to_older_peers() {
    let error = serde_json::to_value(RelayToEngineer::Error {
        code: ErrorCode::Conflict,
        message: "held by relay-1".into(),
        held_by: Some(held()),
    })
    .unwrap();
    assert_eq!(error["code"], "conflict");
    assert_eq!(error["held_by"]["address"], "127.0.0.1:4433");
    let old: RelayToEngineer =
        serde_json::from_str(r#"{"type":"error","code":"not_found","message":"no live session s"}"#).unwrap();
    assert_eq!(
        old,
        RelayToEngineer::Error {
            code: ErrorCode::NotFound,
            message: "no live session s".into(),
            held_by: None
        }
    );
    let plain = serde_json::to_string(&ChannelReply::refused("no grant")).unwrap();
    assert_eq!(plain, r#"{"type":"refused","reason":"no grant"}"#);
    let old: ChannelReply = serde_json::from_str(r#"{"type":"refused","reason":"no"}"#).unwrap();
    assert_eq!(old, ChannelReply::refused("no"));
}

#[test]
fn a_forward_channel_needs_its_target_and_a_valid_one() {
    let fwd = |t: &str| ChannelKind::Forward { target: t.into() };
    assert_eq!(fwd("db:5432").required_capability(), Capability::Forward { target: "db:5432".into() });
    assert!(fwd("db:5432").validate().is_ok());
    assert!(fwd("db:0").validate().is_err());
    assert!(fwd("db").validate().is_err());
    assert_eq!(fwd("db:1").name(), "forward");
}

#[test]
fn a_desktop_channel_needs_view_or_control_and_says_which() {
    let view = ChannelKind::Desktop { control: false };
    let control = ChannelKind::Desktop { control: true };
    assert_eq!(view.required_capability(), Capability::DesktopView);
    assert_eq!(control.required_capability(), Capability::DesktopControl);
    assert_eq!(view.name(), "desktop");
    let json = serde_json::to_string(&control).unwrap();
    assert_eq!(json, r#"{"kind":"desktop","control":true}"#);
    assert_eq!(serde_json::from_str::<ChannelKind>(&json).unwrap(), control);
}

#[test]
fn the_clipboard_is_a_channel_of_its_own_needing_clipboard() {
    let clip = ChannelKind::Clipboard;
    assert_eq!(clip.required_capability(), Capability::Clipboard);
    assert_eq!(clip.name(), "clipboard");
    let json = serde_json::to_string(&clip).unwrap();
    assert_eq!(json, r#"{"kind":"clipboard"}"#);
    assert_eq!(serde_json::from_str::<ChannelKind>(&json).unwrap(), clip);
}

#[test]
fn free_text_of_every_request_is_checked() {
    let session = SessionId::new("s-1");
    let bad = "x\x1b[8m";
    let request = |ticket: &str, reason: &str| EngineerToRelay::RequestSession {
        agent: "erp".into(),
        ticket: ticket.into(),
        priority: Priority::P2,
        reason: reason.into(),
        capabilities: vec![Capability::Shell],
        duration_secs: None,
    };
    let approve = |note: Option<&str>| EngineerToRelay::Approve {
        session: session.clone(),
        capabilities: None,
        duration_secs: None,
        note: note.map(str::to_owned),
    };
    let revoke = |sel: &str, reason: Option<&str>| EngineerToRelay::Revoke {
        session: session.clone(),
        capabilities: vec![sel.into()],
        reason: reason.map(str::to_owned),
    };
    let escalate = |reason: &str| EngineerToRelay::Escalate {
        session: session.clone(),
        add: vec![],
        duration_secs: Some(60),
        reason: reason.into(),
    };
    for (msg, ok) in [
        (request("INC-1", "fine"), true),
        (request(bad, "fine"), false),
        (request("INC-1", bad), false),
        (request("", "fine"), false),
        (request("INC-1", &"r".repeat(501)), false),
        (escalate("more"), true),
        (escalate(bad), false),
        (EngineerToRelay::Deny { session: session.clone(), reason: "no".into() }, true),
        (EngineerToRelay::Deny { session: session.clone(), reason: bad.into() }, false),
        (approve(None), true),
        (approve(Some("ok")), true),
        (approve(Some(bad)), false),
        (revoke("shell", None), true),
        (revoke("shell\u{202e}", None), false),
        (revoke("shell", Some(bad)), false),
        (EngineerToRelay::End { session: session.clone(), reason: None }, true),
        (EngineerToRelay::End { session: session.clone(), reason: Some(bad.into()) }, false),
        (EngineerToRelay::ListSessions, true),
    ] {
        assert_eq!(msg.check_text().is_ok(), ok, "{msg:?}");
    }
}
