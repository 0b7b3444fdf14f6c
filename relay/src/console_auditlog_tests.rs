//! Oneshot tests of the audit log page's routes, the session page's channels and raw
//! bytes, and the sessions list's new filters, against a real relay state.

use super::*;

#[tokio::test]
async fn the_audit_log_is_for_auditors_and_admins_scoped_filtered_paged_and_verified() {
    let w = world(Default::default()).await;
    let now = crate::now_ms();
    admin::org_add(w.store.as_ref(), "other", &[], "test", now).await.unwrap();
    admin::user_add(w.store.as_ref(), "olga", "other", Role::Auditor, "pw-olga-123", "test", now)
        .await
        .unwrap();
    admin::user_add(w.store.as_ref(), "vera", "vendor", Role::Auditor, "pw-vera-123", "test", now)
        .await
        .unwrap();
    for i in 0..30 {
        let agent = if i % 2 == 0 { "erp-db01" } else { "erp-db02" };
        stored_session(&w, &format!("s-{i:012}"), agent, &format!("INC-{i}"), now - 100_000 + i).await;
    }
    let get = async |cookie: &str, path: &str| split(w.send(World::get(path, Some(cookie))).await).await;
    assert_eq!(w.send(World::get("/api/v1/audit/log", None)).await.status(), StatusCode::UNAUTHORIZED);
    // Engineers and approvers do not read the log.
    for who in ["alice", "bob"] {
        let (_, _, cookie) = w.password(who, &format!("pw-{who}-123")).await;
        let cookie = cookie.unwrap();
        for path in ["/api/v1/audit/log", "/api/v1/audit/log/verify"] {
            let res = w.send(World::get(path, Some(&cookie))).await;
            // bob is still at the second factor's stage: refused before the role is asked.
            assert!(matches!(res.status(), StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED), "{who} {path}");
        }
    }
    let alice = w.signed_in("alice").await;
    assert_eq!(get(&alice, "/api/v1/audit/log").await.0, StatusCode::FORBIDDEN);

    let carol = w.signed_in("carol").await;
    let (status, v, _) = get(&carol, "/api/v1/audit/log").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let sessions = |v: &Value| -> Vec<String> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["session"].as_str().map(str::to_owned))
            .collect()
    };
    // 60 session events (requested, approved) and carol's own sign-in events.
    assert!(v["total"].as_u64().unwrap() >= 60, "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), assist_console::auditlog::PAGE);
    assert_eq!(v["pages"], 2);
    let seqs: Vec<i64> = v["events"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|p| p[0] > p[1]), "newest first: {seqs:?}");
    assert!(v["actions"].as_array().unwrap().iter().any(|a| a == "file.transferred"));
    // Filters: a family of actions, one action, an agent, a ticket, an engineer, times.
    let (_, v, _) = get(&carol, "/api/v1/audit/log?action=session").await;
    assert_eq!(v["total"], 60, "{v}");
    let (_, v, _) = get(&carol, "/api/v1/audit/log?action=session.approved&agent=erp-db02").await;
    assert_eq!(v["total"], 15, "{v}");
    assert!(v["events"].as_array().unwrap().iter().all(|e| e["actor"] == "bob"));
    let (_, v, _) = get(&carol, "/api/v1/audit/log?ticket=inc-29").await;
    assert_eq!(sessions(&v), ["s-000000000029", "s-000000000029"], "{v}");
    let (_, v, _) = get(&carol, "/api/v1/audit/log?engineer=alice&action=session.approved&org=acme").await;
    assert_eq!(v["total"], 30, "the session's engineer, though bob approved: {v}");
    let (_, v, _) = get(
        &carol,
        &format!("/api/v1/audit/log?action=session.approved&since={}", now - 100_000 + 1000 + 28),
    )
    .await;
    assert_eq!(sessions(&v), ["s-000000000029", "s-000000000028"], "{v}");
    let res = w.send(World::get("/api/v1/audit/log?colour=red", Some(&carol))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "unknown filters are refused");

    // The vendor's auditor reads the sessions of its engineers; another organisation's
    // auditor none of them.
    let vera = w.signed_in("vera").await;
    let (_, v, _) = get(&vera, "/api/v1/audit/log?action=session").await;
    assert_eq!(v["total"], 60, "{v}");
    let olga = w.signed_in("olga").await;
    let (status, v, _) = get(&olga, "/api/v1/audit/log").await;
    assert_eq!(status, StatusCode::OK);
    assert!(sessions(&v).is_empty(), "{v}");
    assert!(
        v["events"].as_array().unwrap().iter().all(|e| e["org"] == "other" || e["actor"] == "olga"),
        "{v}"
    );

    // The chain, as 'audit verify' sees it; then an event is changed behind its back.
    let (status, c, _) = get(&olga, "/api/v1/audit/log/verify").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(c["result"], "valid", "{c}");
    let count = c["verified"].as_u64().unwrap();
    assert!(count > 60, "{c}");
    assert!(c["detail"].as_str().unwrap().contains(c["head_hash"].as_str().unwrap()));
    let url = format!("sqlite://{}", w._dir.path().join("data/assist.db").display());
    let raw = sqlx::SqlitePool::connect(&url).await.unwrap();
    for sql in
        ["DROP TRIGGER audit_events_no_update", "UPDATE audit_events SET actor = 'mallory' WHERE seq = 5"]
    {
        sqlx::query(sql).execute(&raw).await.unwrap();
    }
    let (_, c, _) = get(&carol, "/api/v1/audit/log/verify").await;
    assert_eq!(
        (c["result"].as_str(), c["broken_at"].as_i64(), c["verified"].as_u64()),
        (Some("broken"), Some(5), Some(4)),
        "{c}"
    );
    assert!(c["detail"].as_str().unwrap().contains("event #5"), "{c}");
}

#[tokio::test]
async fn channels_and_raw_bytes_follow_the_session_pages_rule() {
    let w = world(Default::default()).await;
    let now = crate::now_ms();
    admin::org_add(w.store.as_ref(), "other", &[], "test", now).await.unwrap();
    admin::user_add(w.store.as_ref(), "olga", "other", Role::Auditor, "pw-olga-123", "test", now)
        .await
        .unwrap();
    stored_session(&w, "s-000000000001", "erp-db01", "INC-1", now - 10_000).await;
    let carol = w.signed_in("carol").await;
    let olga = w.signed_in("olga").await;
    // Nothing is recorded on this relay: no channels, and no bytes.
    let (status, v, _) =
        split(w.send(World::get("/api/v1/audit/sessions/s-000000000001/channels", Some(&carol))).await).await;
    assert_eq!((status, v), (StatusCode::OK, json!([])));
    let res = w.send(World::get("/api/v1/audit/sessions/s-000000000001/channels/1/out", Some(&carol))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res =
        w.send(World::get("/api/v1/audit/sessions/s-000000000001/channels/1/sideways", Some(&carol))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Another organisation's: 404 like a missing session.
    for path in [
        "/api/v1/audit/sessions/s-000000000001/channels",
        "/api/v1/audit/sessions/s-000000000001/channels/1/out",
    ] {
        let res = w.send(World::get(path, Some(&olga))).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(w.send(World::get(path, None)).await.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn sessions_filter_by_organisation_priority_and_end_reason() {
    let w = world(Default::default()).await;
    let now = crate::now_ms();
    for i in 0..3 {
        stored_session(&w, &format!("s-{i:012}"), "erp-db01", &format!("INC-{i}"), now - 10_000 + i).await;
    }
    let carol = w.signed_in("carol").await;
    for (query, total) in [
        ("?org=acme", 3),
        ("?org=vendor", 3),
        ("?org=other", 0),
        ("?priority=p2", 3),
        ("?priority=P2", 3),
        ("?priority=p1", 0),
        ("?end_reason=FINI", 3),
        ("?end_reason=revoked", 0),
    ] {
        let (status, v, _) =
            split(w.send(World::get(&format!("/api/v1/audit/sessions{query}"), Some(&carol))).await).await;
        assert_eq!((status, v["total"].as_u64()), (StatusCode::OK, Some(total)), "{query}: {v}");
    }
}

#[test]
fn channels_are_read_from_the_recordings_events() {
    use crate::recording::format::{Direction, Event, EventKind};
    let ev = |kind, channel, direction, wall_ms, data: &[u8]| Event {
        kind,
        offset_us: 0,
        wall_ms,
        channel,
        direction,
        data: data.to_vec(),
    };
    let open = br#"{"kind":"files","request":{"kind":"files","request":{"op":"read","path":"/srv/report.csv","offset":0}}}"#;
    let events = [
        ev(EventKind::Marker, 0, Direction::None, 1, b"approved by bob"),
        ev(EventKind::ChannelOpen, 1, Direction::None, 10, br#"{"kind":"shell"}"#),
        ev(EventKind::Data, 1, Direction::In, 11, b"ls\r"),
        ev(EventKind::Data, 1, Direction::Out, 12, b"a b c\r\n"),
        ev(EventKind::ChannelOpen, 2, Direction::None, 13, open),
        ev(EventKind::Data, 2, Direction::Out, 14, &[0; 100]),
        ev(EventKind::ChannelClose, 2, Direction::None, 15, b"{}"),
        ev(EventKind::Data, 9, Direction::Out, 16, b"no such channel"),
    ];
    let list = crate::console_auditlog::channels(&events);
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0].kind.as_str(), list[0].bytes_in, list[0].bytes_out, list[0].closed_at),
        ("shell", 3, 7, None)
    );
    assert_eq!((list[1].kind.as_str(), list[1].what.as_deref()), ("files", Some("read /srv/report.csv")));
    assert_eq!((list[1].opened_at, list[1].closed_at, list[1].bytes_out), (13, Some(15), 100));
}

#[tokio::test]
async fn an_open_event_stream_keeps_its_sign_in_alive() {
    let w = world(Default::default()).await;
    let cookie = w.signed_in("carol").await;
    let res = w.send(World::get("/api/v1/requests/events", Some(&cookie))).await;
    let mut body = res.into_body();
    assert!(next_event(&mut body).await.contains("event: requests"));
    assert!(next_event(&mut body).await.contains("event: live"));
    // Read on by itself from now on, as a page's EventSource does.
    let reader =
        tokio::spawn(
            async move { while let Some(Ok(_)) = http_body_util::BodyExt::frame(&mut body).await {} },
        );
    let last_seen = async || w.state.session(&cookie).await.unwrap().unwrap().last_seen;
    for _ in 0..3 {
        // 29 minutes without a request but the stream's: the stream notes activity.
        let before = last_seen().await;
        w.state.advance_clock(29 * 60 * 1000);
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while last_seen().await == before {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the open stream counted as activity");
    }
    let (status, me, _) = split(w.send(World::get("/api/v1/me", Some(&cookie))).await).await;
    assert_eq!(status, StatusCode::OK, "87 minutes with an open page and no other request: {me}");
    reader.abort();
}
