//! More conformance tests, compiled and run once per backend like `tests.rs`: windows,
//! webhooks, the console's rows, CLI tokens and account changes, each checked with the
//! audit events it must leave.

use super::Backend;
use crate::audit::{Action, AuditEvent, AuditFilter};
use crate::store::accounts::Accounts;
use crate::store::credentials::Credentials;
use crate::store::webhooks::{AttemptRecord, DeliveryState, NewDelivery, PayloadFormat, WebhookRow};
use crate::store::{Store, StoreError, UserRow, WindowRow};
use assist_proto::caps::{Capability, Role};

fn ev(action: Action) -> AuditEvent {
    AuditEvent::new("test", action)
}

/// A store with orgs `vendor` and `acme` (supported by `vendor`) and user `alice` of
/// `acme`.
async fn seeded() -> (super::TestGuard, Backend) {
    let (guard, store) = super::test_store().await;
    store.add_org(&"vendor".into(), &[], 1, &ev(Action::OrgAdded)).await.unwrap();
    store.add_org(&"acme".into(), &["vendor".into()], 2, &ev(Action::OrgAdded)).await.unwrap();
    let alice = UserRow {
        name: "alice".into(),
        org: "acme".into(),
        role: Role::Engineer,
        password_hash: "$argon2id$fake".into(),
        created_at: 3,
    };
    store.add_user(&alice, &ev(Action::UserAdded)).await.unwrap();
    (guard, store)
}

async fn actions(store: &Backend) -> Vec<String> {
    store.list_audit(&AuditFilter::default()).await.unwrap().into_iter().map(|r| r.action).collect()
}

#[tokio::test]
async fn windows_are_added_listed_and_removed() {
    let (_guard, store) = seeded().await;
    let window = WindowRow {
        id: "w1".into(),
        org: "acme".into(),
        agent: Some("db01".into()),
        schedule: "0 2 * * *".into(),
        duration_secs: 3600,
        capabilities: vec![Capability::Shell],
        engineers: vec!["alice".into()],
        note: Some("backups".into()),
        created_by: "admin".into(),
        created_at: 10,
        removed_at: None,
    };
    store.add_window(&window, &ev(Action::WindowAdded)).await.unwrap();
    assert!(matches!(
        store.add_window(&window, &ev(Action::WindowAdded)).await,
        Err(StoreError::Exists { what: "window", .. })
    ));
    let ghost = WindowRow { id: "w2".into(), org: "ghost".into(), ..window.clone() };
    assert!(matches!(
        store.add_window(&ghost, &ev(Action::WindowAdded)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.list_windows(Some(&"acme".into())).await.unwrap(), std::slice::from_ref(&window));
    assert_eq!(store.list_windows(Some(&"vendor".into())).await.unwrap(), []);
    store.remove_window("w1", 20, &ev(Action::WindowRemoved)).await.unwrap();
    assert_eq!(store.list_windows(None).await.unwrap(), []);
    assert!(matches!(
        store.remove_window("w1", 21, &ev(Action::WindowRemoved)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(actions(&store).await[3..], ["window.added", "window.removed"]);
}

#[tokio::test]
async fn webhook_deliveries_are_queued_once_attempted_and_cancelled() {
    let (_guard, store) = seeded().await;
    let hook = WebhookRow {
        id: "h1".into(),
        org: "acme".into(),
        url: "http://127.0.0.1:9/hook".into(),
        events: Some(vec!["session.requested".into()]),
        format: PayloadFormat::Json,
        secret: "s3cret".into(),
        created_at: 10,
        after_seq: 0,
    };
    let stored = store.add_webhook(&hook, &ev(Action::WebhookAdded)).await.unwrap();
    assert_eq!(stored.after_seq, 4, "after its own webhook.added event");
    assert_eq!(store.list_webhooks().await.unwrap(), std::slice::from_ref(&stored));

    let requested = store.append_audit(&ev(Action::SessionRequested), 11).await.unwrap();
    let scan = store.webhook_scan(10).await.unwrap();
    assert_eq!((scan.cursor, scan.page_end, scan.hooks.len()), (0, requested.seq, 1));
    assert_eq!(scan.events.last(), Some(&requested));
    let delivery = NewDelivery {
        id: "d1".into(),
        webhook: "h1".into(),
        event_seq: requested.seq,
        event: requested.action.clone(),
        session: None,
        body: "{}".into(),
        created_at: 12,
    };
    assert!(
        store.enqueue_webhook_deliveries(0, scan.page_end, std::slice::from_ref(&delivery)).await.unwrap()
    );
    // The cursor moved: a second relay working from the same scan queues nothing.
    assert!(
        !store.enqueue_webhook_deliveries(0, scan.page_end, std::slice::from_ref(&delivery)).await.unwrap()
    );
    // A repeat of (hook, event) from a later cursor is skipped, not an error.
    let again = NewDelivery { id: "d2".into(), ..delivery };
    assert!(store.enqueue_webhook_deliveries(scan.page_end, scan.page_end, &[again]).await.unwrap());

    let due = store.due_webhook_deliveries(12, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].delivery.id.as_str(), due[0].url.as_str()), ("d1", "http://127.0.0.1:9/hook"));
    let attempt = AttemptRecord {
        delivery: "d1".into(),
        attempt: 1,
        state: DeliveryState::Pending,
        next_attempt_at: 100,
        status: Some(503),
        error: Some("unavailable".into()),
    };
    store.record_webhook_attempt(&attempt, 13, &ev(Action::WebhookFailed)).await.unwrap();
    assert_eq!(store.due_webhook_deliveries(50, 10).await.unwrap().len(), 0, "not due before 100");
    let listed = store.list_webhook_deliveries(Some("h1"), 10).await.unwrap();
    assert_eq!(
        (listed[0].attempts, listed[0].last_status, listed[0].state),
        (1, Some(503), DeliveryState::Pending)
    );

    assert_eq!(store.remove_webhook("h1", 14, &ev(Action::WebhookRemoved)).await.unwrap(), 1);
    assert_eq!(store.list_webhooks().await.unwrap(), []);
    assert_eq!(store.list_webhook_deliveries(None, 10).await.unwrap()[0].state, DeliveryState::Cancelled);
}

#[tokio::test]
async fn console_sessions_totp_and_recovery_codes() {
    let (_guard, store) = seeded().await;
    store.console_open_session("hash1", "alice", "code", "127.0.0.1", 10).await.unwrap();
    let row = store.console_session("hash1").await.unwrap().unwrap();
    assert_eq!((row.user.as_str(), row.stage.as_str(), row.last_seen), ("alice", "code", 10));
    store.console_touch("hash1", 30).await.unwrap();
    store.console_touch("hash1", 20).await.unwrap();
    assert_eq!(store.console_session("hash1").await.unwrap().unwrap().last_seen, 30, "never moved back");

    store.totp_set_pending("alice", b"first").await.unwrap();
    store.totp_set_pending("alice", b"second").await.unwrap();
    assert!(!store.totp_confirm("alice", b"first", 5, &[], 40).await.unwrap(), "replaced meanwhile");
    let codes = ["rc1".to_owned(), "rc2".to_owned()];
    assert!(store.totp_confirm("alice", b"second", 5, &codes, 40).await.unwrap());
    assert_eq!(store.totp_secret("alice").await.unwrap().as_deref(), Some(&b"second"[..]));
    assert!(!store.accept_totp_step("alice", 5).await.unwrap(), "a step is accepted once");
    assert!(store.accept_totp_step("alice", 6).await.unwrap());
    assert!(store.use_recovery_code("alice", "rc1", "127.0.0.1", 50).await.unwrap());
    assert!(!store.use_recovery_code("alice", "rc1", "127.0.0.1", 51).await.unwrap(), "used once");

    assert!(store.console_end_session("hash1", "signed out", 60).await.unwrap());
    assert!(!store.console_end_session("hash1", "signed out", 61).await.unwrap());
    assert_eq!(
        actions(&store).await[3..],
        ["console.signed_in", "mfa.enrolled", "mfa.recovery_used", "console.signed_out"]
    );
}

#[tokio::test]
async fn disabling_and_removing_a_user_ends_their_access() {
    let (_guard, store) = seeded().await;
    store.record_token("jti-1", "alice", 1000, &ev(Action::LoginSucceeded), 10).await.unwrap();
    assert!(store.token_in_force("jti-1", "alice").await.unwrap());
    assert!(!store.token_in_force("jti-1", "bob").await.unwrap());
    store.console_open_session("hash1", "alice", "full", "127.0.0.1", 10).await.unwrap();

    assert!(store.disable_user("alice", &ev(Action::UserDisabled), 20).await.unwrap());
    assert!(store.is_disabled("alice").await.unwrap());
    assert!(!store.token_in_force("jti-1", "alice").await.unwrap());
    assert_eq!(store.console_session("hash1").await.unwrap(), None);
    assert!(store.enable_user("alice", &ev(Action::UserEnabled), 30).await.unwrap());
    assert!(!store.enable_user("alice", &ev(Action::UserEnabled), 31).await.unwrap(), "not disabled");

    assert!(store.remove_user("alice", &ev(Action::UserRemoved), 40).await.unwrap());
    assert_eq!(store.user(&"alice".into()).await.unwrap(), None);
    assert!(!store.remove_user("alice", &ev(Action::UserRemoved), 41).await.unwrap());
    assert!(!store.disable_user("ghost", &ev(Action::UserDisabled), 42).await.unwrap());
}

#[tokio::test]
async fn roles_support_and_join_tokens_are_administered() {
    let (_guard, store) = seeded().await;
    assert!(store.set_role("alice", Role::Approver, &ev(Action::UserRoleChanged), 10).await.unwrap());
    assert_eq!(store.user(&"alice".into()).await.unwrap().unwrap().role, Role::Approver);
    assert!(!store.set_role("ghost", Role::Approver, &ev(Action::UserRoleChanged), 10).await.unwrap());
    assert!(store.reset_password("alice", "$argon2id$new", &ev(Action::PasswordSet), 11).await.unwrap());

    let (acme, vendor) = ("acme".into(), "vendor".into());
    assert!(
        !store.set_support(&acme, &vendor, true, &ev(Action::OrgSupportAdded), 12).await.unwrap(),
        "already"
    );
    assert!(store.set_support(&acme, &vendor, false, &ev(Action::OrgSupportRemoved), 13).await.unwrap());
    assert_eq!(store.org(&acme).await.unwrap().unwrap().supported_by, []);
    assert!(matches!(
        store.set_support(&acme, &"ghost".into(), true, &ev(Action::OrgSupportAdded), 14).await,
        Err(StoreError::NotFound { .. })
    ));

    store.add_join_token("aaaabbbbccccddddeeee", &acme, 1000, 15, &ev(Action::TokenIssued)).await.unwrap();
    let tokens = store.list_join_tokens(10).await.unwrap();
    assert_eq!((tokens[0].id.as_str(), tokens[0].used_at), ("aaaabbbbccccdddd", None));
}
