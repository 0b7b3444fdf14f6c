//! The store's conformance tests, compiled and run once per backend (SQLite and a
//! PostgreSQL server of the test binary's own); the audit log has its own, in `audit.rs`.

use super::Backend;
use crate::audit::Action;
use crate::audit::AuditEvent;
use crate::store::*;
use assist_proto::caps::{Capability, Priority};
use assist_proto::caps::{ConsentMode, Role};
use assist_proto::ids::{AgentName, OrgName};
use assist_proto::msg::SessionInfo;
use assist_proto::session::SessionState;

fn ev(action: Action) -> AuditEvent {
    AuditEvent::new("test", action)
}

async fn open() -> (super::TestGuard, Backend) {
    super::test_store().await
}

/// A store with orgs `vendor` and `acme` (supported by `vendor`) and one join token
/// `t1` for `acme` valid until 1000.
async fn seeded() -> (super::TestGuard, Backend) {
    let (dir, store) = open().await;
    store.add_org(&"vendor".into(), &[], 1, &ev(Action::OrgAdded)).await.unwrap();
    store.add_org(&"acme".into(), &["vendor".into()], 2, &ev(Action::OrgAdded)).await.unwrap();
    store.add_join_token("t1", &"acme".into(), 1000, 10, &ev(Action::TokenIssued)).await.unwrap();
    (dir, store)
}

fn agent(name: &str, fingerprint: &str) -> AgentRow {
    AgentRow {
        name: name.into(),
        org: "ignored".into(),
        cert_fingerprint: fingerprint.into(),
        enrolled_at: 100,
        revoked_at: None,
        last_seen: None,
        consent: None,
        online: false,
        relays: Vec::new(),
    }
}

async fn token_used_at(store: &Backend, hash: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT used_at FROM join_tokens WHERE hash = $1")
        .bind(hash)
        .fetch_one(&store.pool)
        .await
        .unwrap()
}

fn rejected(r: Result<AgentRow>) -> TokenProblem {
    match r {
        Err(StoreError::TokenRejected(p)) => p,
        other => panic!("expected a rejected token, got {other:?}"),
    }
}

#[tokio::test]
async fn orgs_record_who_supports_them() {
    let (_dir, store) = seeded().await;
    let acme = store.org(&"acme".into()).await.unwrap().unwrap();
    assert_eq!((acme.supported_by, acme.created_at), (vec![OrgName::new("vendor")], 2));
    let names: Vec<_> = store.list_orgs().await.unwrap().into_iter().map(|o| o.name.0).collect();
    assert_eq!(names, ["acme", "vendor"]);
    assert!(matches!(
        store.add_org(&"acme".into(), &[], 3, &ev(Action::OrgAdded)).await,
        Err(StoreError::Exists { .. })
    ));
    assert_eq!(store.org(&"nobody".into()).await.unwrap(), None);
}

#[tokio::test]
async fn unknown_supporting_org_is_refused() {
    let (_dir, store) = open().await;
    let err = store.add_org(&"acme".into(), &["ghost".into()], 1, &ev(Action::OrgAdded)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { what: "organisation", ref name } if name == "ghost"));
    assert_eq!(store.org(&"acme".into()).await.unwrap(), None);
    let err =
        store.add_org(&"selfish".into(), &["selfish".into()], 1, &ev(Action::OrgAdded)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }));
}

#[tokio::test]
async fn users_are_unique_and_belong_to_an_org() {
    let (_dir, store) = seeded().await;
    let alice = UserRow {
        name: "alice".into(),
        org: "vendor".into(),
        role: Role::Engineer,
        password_hash: "$argon2id$x".into(),
        created_at: 5,
    };
    store.add_user(&alice, &ev(Action::UserAdded)).await.unwrap();
    assert_eq!(store.user(&"alice".into()).await.unwrap().as_ref(), Some(&alice));
    let again = UserRow { org: "acme".into(), ..alice.clone() };
    assert!(matches!(
        store.add_user(&again, &ev(Action::UserAdded)).await,
        Err(StoreError::Exists { what: "user", .. })
    ));
    let orphan = UserRow { name: "bob".into(), org: "ghost".into(), ..alice.clone() };
    assert!(matches!(
        store.add_user(&orphan, &ev(Action::UserAdded)).await,
        Err(StoreError::NotFound { what: "organisation", .. })
    ));
    store.set_password(&"alice".into(), "new", 0, &ev(Action::PasswordSet)).await.unwrap();
    assert_eq!(store.list_users().await.unwrap()[0].password_hash, "new");
    assert!(matches!(
        store.set_password(&"bob".into(), "x", 0, &ev(Action::PasswordSet)).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_token_enrolls_once_into_its_own_org() {
    let (_dir, store) = seeded().await;
    let row = store.enroll_agent("t1", &agent("db01", "f1"), 20, &ev(Action::AgentEnrolled)).await.unwrap();
    assert_eq!(row.org.as_str(), "acme");
    assert_eq!(store.agent(&"db01".into()).await.unwrap(), Some(row));
    assert_eq!(token_used_at(&store, "t1").await, Some(20));

    let again = store.enroll_agent("t1", &agent("db02", "f2"), 21, &ev(Action::AgentEnrolled)).await;
    assert_eq!(rejected(again), TokenProblem::AlreadyUsed);
    assert_eq!(store.agent(&"db02".into()).await.unwrap(), None);
    assert_eq!(token_used_at(&store, "t1").await, Some(20));
}

#[tokio::test]
async fn expired_and_unknown_tokens_change_nothing() {
    let (_dir, store) = seeded().await;
    assert_eq!(
        rejected(store.enroll_agent("t1", &agent("db01", "f1"), 1000, &ev(Action::AgentEnrolled)).await),
        TokenProblem::Expired
    );
    assert_eq!(
        rejected(store.enroll_agent("t2", &agent("db01", "f1"), 20, &ev(Action::AgentEnrolled)).await),
        TokenProblem::Unknown
    );
    assert_eq!(token_used_at(&store, "t1").await, None);
    assert!(store.list_agents().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_insert_leaves_the_token_unused() {
    let (_dir, store) = seeded().await;
    store.add_join_token("t2", &"acme".into(), 1000, 10, &ev(Action::TokenIssued)).await.unwrap();
    store.enroll_agent("t1", &agent("db01", "f1"), 20, &ev(Action::AgentEnrolled)).await.unwrap();
    let dup_name = store.enroll_agent("t2", &agent("db01", "f2"), 21, &ev(Action::AgentEnrolled)).await;
    assert!(matches!(dup_name, Err(StoreError::Exists { what: "agent", .. })), "{dup_name:?}");
    let dup_cert = store.enroll_agent("t2", &agent("db02", "f1"), 21, &ev(Action::AgentEnrolled)).await;
    assert!(matches!(dup_cert, Err(StoreError::Exists { what: "agent certificate", .. })), "{dup_cert:?}");
    assert_eq!(token_used_at(&store, "t2").await, None);
    store.enroll_agent("t2", &agent("db02", "f2"), 22, &ev(Action::AgentEnrolled)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enrollments_with_one_token_let_exactly_one_in() {
    let (_dir, store) = seeded().await;
    let tasks: Vec<_> = (0..2)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .enroll_agent(
                        "t1",
                        &agent(&format!("a{i}"), &format!("f{i}")),
                        20,
                        &ev(Action::AgentEnrolled),
                    )
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    let loser = results.into_iter().find(|r| r.is_err()).unwrap();
    assert_eq!(rejected(loser), TokenProblem::AlreadyUsed);
    assert_eq!(store.list_agents().await.unwrap().len(), 1);
}

#[tokio::test]
async fn agents_connect_disconnect_and_stay_revoked() {
    let (_dir, store) = seeded().await;
    store.enroll_agent("t1", &agent("db01", "f1"), 20, &ev(Action::AgentEnrolled)).await.unwrap();
    let name = AgentName::new("db01");
    store.agent_connected(&name, ConsentMode::Approver, 30, &ev(Action::AgentConnected)).await.unwrap();
    let a = store.agent_by_fingerprint("f1").await.unwrap().unwrap();
    assert_eq!((a.online, a.consent, a.last_seen), (true, Some(ConsentMode::Approver), Some(30)));
    assert_eq!(a.relays, ["default"]);
    // An older connection stored again (a relay rejoining) neither displaces the newer
    // one nor turns `last_seen` back.
    store.agent_connected(&name, ConsentMode::Approver, 25, &ev(Action::AgentConnected)).await.unwrap();
    assert_eq!(store.agent(&name).await.unwrap().unwrap().last_seen, Some(30));
    assert!(!store.agent_disconnected(&name, 25, 33, &ev(Action::AgentDisconnected)).await.unwrap());
    // A disconnection of an older connection (overtaken by this one) leaves it present.
    assert!(!store.agent_disconnected(&name, 29, 35, &ev(Action::AgentDisconnected)).await.unwrap());
    assert!(store.agent(&name).await.unwrap().unwrap().online);
    assert!(store.agent_disconnected(&name, 30, 40, &ev(Action::AgentDisconnected)).await.unwrap());
    let disconnects = AuditFilter { actor: Some("test".into()), ..AuditFilter::default() };
    let said: Vec<String> =
        store.list_audit(&disconnects).await.unwrap().into_iter().map(|r| r.action).collect();
    assert_eq!(said.iter().filter(|a| *a == "agent.disconnected").count(), 1, "{said:?}");
    store.revoke_agent(&name, 50, &ev(Action::AgentRevoked)).await.unwrap();
    store.revoke_agent(&name, 60, &ev(Action::AgentRevoked)).await.unwrap();
    let a = store.agent(&name).await.unwrap().unwrap();
    assert_eq!((a.online, a.last_seen, a.revoked_at), (false, Some(40), Some(50)));
    assert!(a.relays.is_empty());
    let ghost = AgentName::new("ghost");
    assert!(matches!(
        store.revoke_agent(&ghost, 1, &ev(Action::AgentRevoked)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.agent_disconnected(&ghost, 1, 1, &ev(Action::AgentDisconnected)).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub(super) fn session(id: &str, state: SessionState, requested_at: i64) -> SessionInfo {
    SessionInfo {
        id: id.into(),
        engineer: "alice".into(),
        engineer_org: "vendor".into(),
        agent: "db01".into(),
        agent_org: "acme".into(),
        ticket: "INC-1042".into(),
        priority: Priority::P1,
        reason: "month-end close fails".into(),
        capabilities: vec![
            Capability::Shell,
            Capability::Exec { scripts: vec!["db-health".into()] },
            Capability::Forward { target: "db:5432".into() },
        ],
        state,
        approver: None,
        requested_at,
        consent_deadline: requested_at + 300_000,
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

#[tokio::test]
async fn sessions_round_trip() {
    let (_dir, store) = open().await;
    let mut s1 = session("s-1", SessionState::Requested, 1);
    let s2 = session("s-2", SessionState::Requested, 2);
    store.insert_session(&s1, &ev(Action::SessionRequested)).await.unwrap();
    store.insert_session(&s2, &ev(Action::SessionRequested)).await.unwrap();
    assert!(matches!(
        store.insert_session(&s1, &ev(Action::SessionRequested)).await,
        Err(StoreError::Exists { what: "session", .. })
    ));
    assert_eq!(store.session(&s1.id).await.unwrap().as_ref(), Some(&s1));

    s1.state = SessionState::Active;
    s1.approver = Some("carol".into());
    s1.decided_at = Some(5);
    s1.started_at = Some(6);
    store.update_session(&s1, 0, &ev(Action::SessionStarted)).await.unwrap();
    assert_eq!(store.list_sessions(10).await.unwrap(), [s2.clone(), s1.clone()]);
    assert_eq!(store.list_sessions(1).await.unwrap(), [s2]);
    let ghost = session("s-9", SessionState::Closed, 1);
    assert!(matches!(
        store.update_session(&ghost, 0, &ev(Action::SessionStarted)).await,
        Err(StoreError::NotFound { .. })
    ));
}

#[tokio::test]
async fn open_sessions_carry_their_pending_escalation_and_their_agents_consent() {
    let (_dir, store) = seeded().await;
    store.enroll_agent("t1", &agent("db01", "f1"), 20, &ev(Action::AgentEnrolled)).await.unwrap();
    store
        .agent_connected(&"db01".into(), ConsentMode::Approver, 30, &ev(Action::AgentConnected))
        .await
        .unwrap();
    let mut live = session("s-live", SessionState::Active, 1);
    live.granted = Some(vec![Capability::Shell]);
    store.insert_session(&live, &ev(Action::SessionRequested)).await.unwrap();
    let asked = session("s-asked", SessionState::Requested, 2);
    store.insert_session(&asked, &ev(Action::SessionRequested)).await.unwrap();
    store
        .insert_session(&session("s-done", SessionState::Closed, 3), &ev(Action::SessionRequested))
        .await
        .unwrap();

    live.escalation = Some(assist_proto::msg::Escalation {
        add: vec![Capability::FilesRead { roots: vec!["/var/log".into()] }],
        duration_secs: Some(600),
        reason: "the log".into(),
        requested_at: 40,
        deadline: 340,
    });
    store.update_session(&live, 40, &ev(Action::EscalationRequested)).await.unwrap();
    assert_eq!(store.session(&live.id).await.unwrap().as_ref(), Some(&live));
    let open = store.open_sessions(10).await.unwrap();
    let ids: Vec<&str> = open.iter().map(|o| o.info.id.as_str()).collect();
    assert_eq!(ids, ["s-live", "s-asked"], "open ones only, oldest first");
    assert_eq!(open[0].info, live);
    assert_eq!(open[0].agent_consent, Some(ConsentMode::Approver));
    assert_eq!(store.open_sessions(1).await.unwrap().len(), 1, "bounded");

    // Ending keeps no escalation in the row.
    live.state = SessionState::Closed;
    store.update_session(&live, 50, &ev(Action::SessionEnded)).await.unwrap();
    assert_eq!(store.session(&live.id).await.unwrap().unwrap().escalation, None);
    assert_eq!(store.open_sessions(10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn dangling_sessions_are_closed_and_agents_go_offline() {
    let (_dir, store) = seeded().await;
    store.enroll_agent("t1", &agent("db01", "f1"), 20, &ev(Action::AgentEnrolled)).await.unwrap();
    store
        .agent_connected(&"db01".into(), ConsentMode::Prompt, 30, &ev(Action::AgentConnected))
        .await
        .unwrap();
    let mut done = session("done", SessionState::Closed, 4);
    done.ended_at = Some(7);
    done.end_reason = Some("shell exited".into());
    let states = [
        ("req", SessionState::Requested),
        ("appr", SessionState::Approved),
        ("act", SessionState::Active),
        ("den", SessionState::Denied),
    ];
    for (i, (id, state)) in states.iter().enumerate() {
        store.insert_session(&session(id, *state, i as i64), &ev(Action::SessionRequested)).await.unwrap();
    }
    store.insert_session(&done, &ev(Action::SessionRequested)).await.unwrap();

    assert_eq!(store.close_dangling_sessions("relay restarted", 99).await.unwrap(), 3);
    let get = |id: &'static str| {
        let store = store.clone();
        async move { store.session(&id.into()).await.unwrap().unwrap() }
    };
    let req = get("req").await;
    assert_eq!(
        (req.state, req.ended_at, req.end_reason.as_deref()),
        (SessionState::Expired, Some(99), Some("relay restarted"))
    );
    assert_eq!(get("appr").await.state, SessionState::Closed);
    assert_eq!(get("act").await.state, SessionState::Closed);
    assert_eq!(get("den").await.state, SessionState::Denied);
    assert_eq!(get("done").await, done);
    assert!(!store.agent(&"db01".into()).await.unwrap().unwrap().online);
    assert_eq!(store.close_dangling_sessions("again", 100).await.unwrap(), 0);

    let by_relay = AuditFilter { actor: Some("relay".into()), ..AuditFilter::default() };
    let events: Vec<_> = store
        .list_audit(&by_relay)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.action, r.session, r.target, r.org, r.at))
        .collect();
    let closed = |action: &str, id: &str| {
        (action.to_owned(), Some(id.to_owned()), Some("db01".to_owned()), Some("acme".to_owned()), 99)
    };
    assert_eq!(
        events,
        [
            closed("session.expired", "req"),
            closed("session.ended", "appr"),
            closed("session.ended", "act"),
            ("agent.disconnected".into(), None, Some("db01".into()), Some("acme".into()), 99),
        ]
    );
    let all = store.list_audit(&AuditFilter::default()).await.unwrap();
    assert!(crate::audit::verify_chain(&all).is_ok());
}
