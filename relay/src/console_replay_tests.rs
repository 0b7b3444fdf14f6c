//! A recorded desktop's replay through the console state, on a real relay state with a
//! real recording (the relay's recorder, its grant key, a local directory): the first
//! event, play to the end with every message unchanged, a seek, the audit event, and a
//! tampered recording refused with its verdict.

use super::*;
use crate::recording::format::Direction;
use assist_console::auditlog::AuditState;
use assist_console::{Down, ReplayControl};
use assist_proto::desktop::{AgentToViewer, Codec, Frame, StreamInfo};

const ID: &str = "s-000000000001";

/// Records a desktop on channel 1 (a size, then frames, a keyframe every 3) and a shell on
/// channel 2 for the stored session, sealed with the relay's key: the desktop's bytes.
async fn record(w: &World) -> Vec<u8> {
    let data = DataDir::open(&w._dir.path().join("data")).unwrap();
    let store = w.state.relay.recordings.clone().unwrap();
    let mut info =
        w.state.relay.session_for(&principal_of(w, "bob").await, &SessionId::new(ID)).await.unwrap();
    info.state = SessionState::Active;
    let rec = crate::recording::Recorder::start(
        store.create(&info.id).await.unwrap(),
        info,
        None,
        Arc::new(data.grant_key().unwrap()),
    )
    .await
    .unwrap();
    rec.marker("approved by bob").await.unwrap();
    let desktop = json!({"kind": "desktop", "request": {"desktop": {"control": true}}});
    rec.channel_open(1, desktop).await.unwrap();
    rec.channel_open(2, json!({"kind": "shell"})).await.unwrap();
    let mut stream =
        AgentToViewer::StreamInfo(StreamInfo { codec: Codec::H264, width: 64, height: 48 }).encode().unwrap();
    for i in 0..9u64 {
        let frame = Frame { timestamp_us: i * 1_500_000, keyframe: i % 3 == 0, data: vec![i as u8; 30] };
        stream.extend(AgentToViewer::Frame(frame).encode().unwrap());
    }
    for piece in stream.chunks(11) {
        rec.data(1, Direction::Out, bytes::Bytes::copy_from_slice(piece)).await.unwrap();
    }
    rec.marker("ended: engineer left").await.unwrap();
    rec.seal("engineer left".into(), Vec::new()).await.unwrap();
    stream
}

async fn principal_of(w: &World, user: &str) -> crate::broker::policy::Principal {
    principal(&w.state.account(user).await.unwrap().unwrap()).unwrap()
}

/// The next event, skipping desktop messages (collected into `bytes`).
async fn event(link: &mut assist_console::ReplayLink, bytes: &mut Vec<u8>) -> Value {
    loop {
        match link.down.recv().await.expect("the replay goes on") {
            Down::Event(v) => return v,
            Down::Output(b) => bytes.extend_from_slice(&b),
        }
    }
}

/// Events until one of `kind`.
async fn until(link: &mut assist_console::ReplayLink, bytes: &mut Vec<u8>, kind: &str) -> Value {
    loop {
        let v = event(link, bytes).await;
        if v["type"] == kind {
            return v;
        }
    }
}

#[tokio::test]
async fn a_recorded_desktop_replays_paced_from_its_file_and_a_tampered_one_is_refused() {
    let w = world_recording().await;
    stored_session(&w, ID, "erp-db01", "INC-1", crate::now_ms() - 10_000).await;
    let stream = record(&w).await;
    // Grant revisions during the recording: control granted, then revoked.
    for (revision, action, granted) in [
        (
            2,
            crate::audit::Action::EscalationApproved,
            json!([{"kind": "desktop_view"}, {"kind": "desktop_control"}]),
        ),
        (3, crate::audit::Action::GrantRevoked, json!([{"kind": "desktop_view"}])),
    ] {
        let event = crate::audit::AuditEvent::new("bob", action)
            .org(&OrgName::new("acme"))
            .session(&SessionId::new(ID))
            .detail(json!({ "granted": granted, "grant_revision": revision }));
        w.store.append_audit(&event, crate::now_ms()).await.unwrap();
    }
    let carol = w.state.account("carol").await.unwrap().unwrap();

    // A shell channel, or none, is not a desktop to replay.
    for channel in [2, 9] {
        let refused = w.state.desktop_replay(&carol, ID, channel).await.err();
        let says = format!("the recording of {ID} has no desktop channel {channel}");
        assert_eq!(refused, Some(ApiError::NotFound(says)));
    }

    let mut link = w.state.desktop_replay(&carol, ID, 1).await.unwrap();
    let mut bytes = Vec::new();
    let first = event(&mut link, &mut bytes).await;
    assert_eq!(first["type"], "replay");
    assert_eq!(first["verdict"], "valid");
    let labels: Vec<&str> =
        first["markers"].as_array().unwrap().iter().filter_map(|m| m["label"].as_str()).collect();
    // The recording's markers, then the revisions stored after it ended (at its end).
    assert_eq!(
        labels,
        [
            "approved by bob",
            "desktop opened (view and control)",
            "ended: engineer left",
            "grant revision 2 by bob",
            "control revoked by bob"
        ]
    );
    let grants: Vec<&Value> = first["grants"].as_array().unwrap().iter().map(|g| &g["granted"]).collect();
    assert_eq!(
        grants,
        [&json!(["shell"]), &json!(["desktop.view", "desktop.control"]), &json!(["desktop.view"])]
    );
    let duration = first["duration_ms"].as_u64().unwrap();
    for m in first["markers"].as_array().unwrap() {
        assert!(m["at_ms"].as_u64().unwrap() <= duration, "a marker past the end: {m}");
    }
    assert_eq!(until(&mut link, &mut bytes, "seek").await["ms"], 0);

    // Played at 4×: every recorded message, unchanged and in order, then the end.
    link.up.send(ReplayControl::Speed { speed: 4.0 }).await.unwrap();
    link.up.send(ReplayControl::Play {}).await.unwrap();
    let end = until(&mut link, &mut bytes, "end").await;
    assert_eq!(end["ms"], first["duration_ms"]);
    assert_eq!(bytes, stream);

    // A seek to the end (paused there): what lies between the last indexed keyframe and
    // it comes at once, starting with the size.
    let mut again = Vec::new();
    link.up.send(ReplayControl::Seek { ms: duration }).await.unwrap();
    let sought = until(&mut link, &mut again, "seek").await["ms"].as_u64().unwrap();
    assert!(sought <= duration && sought + 1 >= duration, "{sought} of {duration}");
    let state = until(&mut link, &mut again, "state").await;
    assert_eq!(state["playing"], false);
    let size =
        AgentToViewer::StreamInfo(StreamInfo { codec: Codec::H264, width: 64, height: 48 }).encode().unwrap();
    assert!(again.starts_with(&size), "the size first");
    let rest = &again[size.len()..];
    assert!(rest.len() < stream.len() - size.len() && stream.ends_with(rest), "from a keyframe to the end");
    assert_eq!(rest[..2], [2, 1], "a keyframe");

    // Opened once, audited once, with the channel.
    let filter = AuditFilter { session: Some(SessionId::new(ID)), ..Default::default() };
    let exported: Vec<_> = w
        .store
        .list_audit(&filter)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "recording.exported")
        .collect();
    assert_eq!(exported.len(), 1);
    let detail: Value = serde_json::from_str(&exported[0].detail).unwrap();
    assert_eq!(detail["format"], "desktop-replay");
    assert_eq!(detail["channel"], 1);
    assert_eq!(detail["bytes"], stream.len());
    assert_eq!(exported[0].actor, "carol");
    drop(link);

    // One flipped byte: refused, with the verifier's verdict.
    let file = w._dir.path().join("data").join("recordings").join(format!("{ID}.arec"));
    let mut recorded = std::fs::read(&file).unwrap();
    let middle = recorded.len() / 2;
    recorded[middle] ^= 1;
    std::fs::write(&file, &recorded).unwrap();
    let refused = w.state.desktop_replay(&carol, ID, 1).await.err();
    assert!(
        matches!(&refused, Some(ApiError::Conflict(m)) if m.starts_with("the recording cannot be replayed: tampered")),
        "{refused:?}"
    );
}
