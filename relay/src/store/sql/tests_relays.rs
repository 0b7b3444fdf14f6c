//! The relays registry's conformance tests ([`crate::store::relays`]), run once per
//! backend: several stores on one database stand for several relays.

use super::tests::session;
use crate::audit::{Action, AuditEvent, AuditFilter};
use crate::store::relays::{LostRelay, RELAY_LOST, Relays};
use crate::store::{AgentRow, Store, StoreError};
use assist_proto::caps::ConsentMode;
use assist_proto::ids::AgentName;
use assist_proto::session::SessionState;

fn ev(action: Action) -> AuditEvent {
    AuditEvent::new("test", action)
}

#[tokio::test]
async fn relays_register_beat_stop_and_come_back_clean() {
    let (db, first) = super::test_store().await;
    let r1 = first.with_relay_name("r1");
    let r2 = super::reopen(&db).await.with_relay_name("r2");
    assert_eq!((r1.relay_name(), r2.relay_name()), ("r1", "r2"));
    r1.register_relay(Some("127.0.0.1:4001"), 10).await.unwrap();
    r2.register_relay(None, 11).await.unwrap();
    assert!(r1.relay_heartbeat(20).await.unwrap());
    let rows = r2.list_relays().await.unwrap();
    assert_eq!(rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["r1", "r2"]);
    assert_eq!(
        (rows[0].address.as_deref(), rows[0].started_at, rows[0].heartbeat_at),
        (Some("127.0.0.1:4001"), 10, 20)
    );
    assert!(rows[0].is_live(25, 10) && !rows[0].is_live(31, 10));

    r1.relay_stopped(30).await.unwrap();
    assert!(!r1.relay_heartbeat(31).await.unwrap(), "a stopped relay is not revived by a heartbeat");
    let stopped = &r2.list_relays().await.unwrap()[0];
    assert_eq!(stopped.stopped_at, Some(30));
    assert!(!stopped.is_live(30, 10));
    // A stopped relay is never declared lost, however old its heartbeat.
    assert_eq!(r2.end_lost_relays(1_000, RELAY_LOST, 1_000).await.unwrap(), []);

    r1.register_relay(Some("127.0.0.1:4002"), 40).await.unwrap();
    let again = &r2.list_relays().await.unwrap()[0];
    assert_eq!(
        (again.address.as_deref(), again.stopped_at, again.lost_at),
        (Some("127.0.0.1:4002"), None, None)
    );
    assert!(r1.relay_heartbeat(41).await.unwrap());
}

#[tokio::test]
async fn a_lost_relays_sessions_end_once_however_many_notice() {
    let (db, first) = super::test_store().await;
    first.add_org(&"vendor".into(), &[], 1, &ev(Action::OrgAdded)).await.unwrap();
    first.add_org(&"acme".into(), &["vendor".into()], 2, &ev(Action::OrgAdded)).await.unwrap();
    let r1 = first.with_relay_name("r1");
    let r2 = super::reopen(&db).await.with_relay_name("r2");
    let r3 = super::reopen(&db).await.with_relay_name("r3");
    for (r, at) in [(&r1, 10), (&r2, 10), (&r3, 10)] {
        r.register_relay(None, at).await.unwrap();
    }
    r1.insert_session(&session("on-r1", SessionState::Active, 3), &ev(Action::SessionRequested))
        .await
        .unwrap();
    r1.insert_session(&session("asked-r1", SessionState::Requested, 4), &ev(Action::SessionRequested))
        .await
        .unwrap();
    r2.insert_session(&session("on-r2", SessionState::Active, 5), &ev(Action::SessionRequested))
        .await
        .unwrap();
    // Every relay reads which relay holds an open session, from its row.
    let held = |id: &'static str| {
        let r3 = r3.clone();
        async move { r3.open_session(&id.into()).await.unwrap().map(|o| o.relay) }
    };
    assert_eq!((held("on-r1").await, held("on-r2").await), (Some("r1".into()), Some("r2".into())));
    let listed = r3.open_sessions(10).await.unwrap();
    let by: Vec<(&str, &str)> = listed.iter().map(|o| (o.info.id.as_str(), o.relay.as_str())).collect();
    assert_eq!(by, [("on-r1", "r1"), ("asked-r1", "r1"), ("on-r2", "r2")]);
    // r2 and r3 keep beating; r1 went silent at 10.
    for r in [&r2, &r3] {
        assert!(r.relay_heartbeat(20_000).await.unwrap());
    }
    assert_eq!(r2.end_lost_relays(5, RELAY_LOST, 20_000).await.unwrap(), [], "not stale yet");

    let (a, b) = tokio::join!(
        r2.end_lost_relays(10_000, RELAY_LOST, 20_001),
        r3.end_lost_relays(10_000, RELAY_LOST, 20_001)
    );
    let mut found: Vec<LostRelay> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    assert_eq!(found.len(), 1, "exactly one relay declares r1 lost: {found:?}");
    assert_eq!(found.remove(0), LostRelay { name: "r1".into(), sessions: 2, agents: 0 });

    let get = |id: &'static str| {
        let r2 = r2.clone();
        async move { r2.session(&id.into()).await.unwrap().unwrap() }
    };
    let ended = get("on-r1").await;
    assert_eq!((ended.state, ended.end_reason.as_deref()), (SessionState::Closed, Some(RELAY_LOST)));
    assert_eq!(get("asked-r1").await.state, SessionState::Expired);
    assert_eq!(get("on-r2").await.state, SessionState::Active, "other relays' sessions are left alone");
    assert_eq!(held("on-r1").await, None, "a closed session is held by nobody");
    let lost = &r3.list_relays().await.unwrap()[0];
    assert_eq!(lost.lost_at, Some(20_001));
    assert!(!r1.relay_heartbeat(20_002).await.unwrap(), "a lost relay learns it from its heartbeat");
    // r1, alive after all, cannot write a second ending over the one r2 wrote.
    let mut late = get("on-r1").await;
    late.end_reason = Some("shell exited".into());
    assert!(matches!(
        r1.update_session(&late, 20_003, &ev(Action::SessionEnded)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(get("on-r1").await.end_reason.as_deref(), Some(RELAY_LOST));
    let of_session = AuditFilter { session: Some("on-r1".into()), ..AuditFilter::default() };
    assert_eq!(r1.list_audit(&of_session).await.unwrap().len(), 1, "ended once, by r2");

    let by_relay = AuditFilter { actor: Some("relay".into()), ..AuditFilter::default() };
    let events: Vec<_> = r3
        .list_audit(&by_relay)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            (e.action, e.session, detail["reason"].clone(), detail["lost_relay"].clone())
        })
        .collect();
    let closed = |action: &str, id: &str| {
        (action.to_owned(), Some(id.to_owned()), serde_json::json!(RELAY_LOST), serde_json::json!("r1"))
    };
    assert_eq!(events, [closed("session.ended", "on-r1"), closed("session.expired", "asked-r1")]);
    assert!(crate::audit::verify_chain(&r3.list_audit(&AuditFilter::default()).await.unwrap()).is_ok());

    // Back under the same name: clean, and its restart closes nothing more; r2's own
    // restart closes only its own session.
    r1.register_relay(None, 30_000).await.unwrap();
    assert_eq!(r1.close_dangling_sessions("relay restarted", 30_001).await.unwrap(), 0);
    assert_eq!(r2.close_dangling_sessions("relay restarted", 30_002).await.unwrap(), 1);
    assert!(matches!(
        r2.insert_session(&session("on-r2", SessionState::Active, 5), &ev(Action::SessionRequested)).await,
        Err(StoreError::Exists { .. })
    ));
}

/// The relays the agent `db01` is connected to, as `store` reads them.
async fn presence_of(store: &dyn Store) -> Vec<String> {
    let listed = store.list_agents().await.unwrap();
    let one = store.agent(&"db01".into()).await.unwrap().unwrap();
    assert_eq!(listed, std::slice::from_ref(&one), "one agent, read alike by name and in the list");
    assert_eq!(one.online, !one.relays.is_empty());
    one.relays
}

#[tokio::test]
async fn an_agent_is_online_while_any_live_relay_holds_a_connection_of_it() {
    let (db, first) = super::test_store().await;
    first.add_org(&"acme".into(), &[], 1, &ev(Action::OrgAdded)).await.unwrap();
    first.add_join_token("t1", &"acme".into(), 100, 2, &ev(Action::TokenIssued)).await.unwrap();
    let row = AgentRow {
        name: "db01".into(),
        org: "acme".into(),
        cert_fingerprint: "f1".into(),
        enrolled_at: 3,
        revoked_at: None,
        last_seen: None,
        consent: None,
        online: true,
        relays: vec!["made-up".into()],
    };
    let enrolled = first.enroll_agent("t1", &row, 3, &ev(Action::AgentEnrolled)).await.unwrap();
    assert!(!enrolled.online && enrolled.relays.is_empty(), "enrolled is not connected");
    let r1 = first.with_relay_name("r1");
    let r2 = super::reopen(&db).await.with_relay_name("r2");
    let r3 = super::reopen(&db).await.with_relay_name("r3");
    let name = AgentName::new("db01");
    for (r, at) in [(&r1, 10), (&r2, 11), (&r3, 12)] {
        r.register_relay(None, at).await.unwrap();
        r.agent_connected(&name, ConsentMode::Approver, at, &ev(Action::AgentConnected)).await.unwrap();
    }
    assert_eq!(presence_of(&r2).await, ["r1", "r2", "r3"]);

    // One relay loses it: the others still hold it (one flag, last writer wins, said
    // offline here).
    assert!(r1.agent_disconnected(&name, 10, 20, &ev(Action::AgentDisconnected)).await.unwrap());
    assert_eq!(presence_of(&r1).await, ["r2", "r3"]);

    // r3 goes silent and is declared lost: its connection goes with its sessions.
    for r in [&r1, &r2] {
        assert!(r.relay_heartbeat(20_000).await.unwrap());
    }
    let lost = r2.end_lost_relays(10_000, RELAY_LOST, 20_001).await.unwrap();
    assert_eq!(lost, [LostRelay { name: "r3".into(), sessions: 0, agents: 1 }]);
    assert_eq!(presence_of(&r2).await, ["r2"]);
    // Still alive, r3 writes a connection before it learns it was lost: not counted
    // while the registry holds it lost, counted once it registers again.
    r3.agent_connected(&name, ConsentMode::Approver, 20_002, &ev(Action::AgentConnected)).await.unwrap();
    assert_eq!(presence_of(&r2).await, ["r2"]);
    r3.register_relay(None, 20_003).await.unwrap();
    assert_eq!(presence_of(&r2).await, ["r2", "r3"]);

    // A graceful stop removes the stopping relay's connections, a restart its leftovers.
    r2.relay_stopped(20_010).await.unwrap();
    assert_eq!(presence_of(&r3).await, ["r3"]);
    assert_eq!(r3.close_dangling_sessions("relay restarted", 20_020).await.unwrap(), 0);
    assert_eq!(presence_of(&r1).await, Vec::<String>::new());
    // The late disconnection of a connection removed wholesale is not audited again.
    assert!(!r3.agent_disconnected(&name, 20_002, 20_030, &ev(Action::AgentDisconnected)).await.unwrap());

    let said: Vec<(String, String)> = r1
        .list_audit(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "agent.disconnected")
        .map(|e| {
            let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap();
            (e.actor, detail["reason"].as_str().unwrap_or("-").to_owned())
        })
        .collect();
    let by = |actor: &str, reason: &str| (actor.to_owned(), reason.to_owned());
    assert_eq!(
        said,
        [
            by("test", "-"),
            by("relay", RELAY_LOST),
            by("relay", "relay stopped"),
            by("relay", "relay restarted")
        ],
        "one event per connection removed"
    );
    assert!(crate::audit::verify_chain(&r1.list_audit(&AuditFilter::default()).await.unwrap()).is_ok());
}
