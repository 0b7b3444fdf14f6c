//! A relay declared lost while it is still alive ([`crate::broker::lost`]): another store on
//! the same database stands for the relay that noticed its heartbeat stop and ended its
//! sessions in the store; this relay then ends them in memory only, rejoins, and serves.

use super::*;
use crate::store::relays::{RELAY_LOST, Relays};

#[tokio::test(start_paused = true)]
async fn a_relay_declared_lost_ends_its_sessions_here_without_a_second_ending_and_serves_again() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (id, _link, mut rx) = w.approved(&["shell"], 600).await;
    let (asked, _link2, mut rx2, _) = w.request(&["shell"], 600).await;
    let now = now_ms();
    w.relay.store.register_relay(None, now).await.unwrap();
    let other = SqliteStore::open(&w.dir.path().join("assist.db")).await.unwrap().with_relay_name("other");
    other.register_relay(None, now).await.unwrap();
    let lost = other.end_lost_relays(now + 1, RELAY_LOST, now + 1).await.unwrap();
    assert_eq!((lost.len(), lost[0].sessions), (1, 2), "{lost:?}");
    assert!(!w.relay.store.relay_heartbeat(now + 2).await.unwrap());
    let (events, ended) = (w.actions(&id).await, w.stored(&id).await);

    assert_eq!(w.relay.declared_lost().await, 2);
    for rx in [&mut rx, &mut rx2] {
        match rx.recv().await.unwrap() {
            RelayToEngineer::SessionEnded { reason } => assert_eq!(reason, EndReason::RelayLost),
            other => panic!("expected SessionEnded, got {other:?}"),
        }
    }
    let mut told = Vec::new();
    for _ in 0..2 {
        told.push(match w.agent.recv().await.unwrap() {
            RelayToAgent::EndSession { session, reason } => (session, reason.to_string()),
            RelayToAgent::ConsentWithdrawn { session, reason } => (session, reason),
            other => panic!("expected the sessions' ends, got {other:?}"),
        });
    }
    told.sort();
    let mut expected = vec![(id.clone(), "relay lost".to_owned()), (asked.clone(), "relay lost".to_owned())];
    expected.sort();
    assert_eq!(told, expected);
    // What the other relay stored stands: no second ending, no seal.
    assert_eq!(w.actions(&id).await, events);
    assert_eq!(w.stored(&id).await, ended);
    assert_eq!(ended.end_reason.as_deref(), Some(RELAY_LOST));
    assert!(w.admit(&id, shell()).await.is_err(), "its channels are refused");
    assert_eq!(w.relay.live_session_count(), 0);

    // Registered again, it stores the agent it still holds as present again.
    w.relay.store.register_relay(None, now + 3).await.unwrap();
    assert!(w.relay.store.agent(&AGENT.into()).await.unwrap().unwrap().relays.is_empty());
    assert_eq!(w.relay.rejoined().await, 1);
    assert_eq!(w.relay.store.agent(&AGENT.into()).await.unwrap().unwrap().relays, ["default"]);

    // Cut off from the database, it refuses new requests; back, it serves them.
    w.relay.set_cut_off(true);
    let (link, _rx) = w.connect();
    let req = NewSession {
        agent: AGENT.into(),
        ticket: "T-2".into(),
        priority: Priority::P2,
        reason: "again".into(),
        capabilities: caps(&["shell"]),
        duration_secs: None,
    };
    let refused = w.relay.request_session(&engineer(), link, req).await.unwrap_err();
    assert!(refused.message.contains("cannot reach the cluster's database"), "{refused:?}");
    w.relay.set_cut_off(false);
    let _ = w.approved(&["shell"], 600).await;
}
