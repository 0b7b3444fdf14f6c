//! The bus seam (`broker::bus`) between two relays on one store, joined by an in-process
//! bus that hands each ask to the relay holding its session (the PostgreSQL transport is
//! tested end to end in `tests/e2e/mesh.rs`): what a person on the other relay lists, is
//! answered and is refused is what one relay would give.

use super::*;
use crate::broker::bus::{Answer, Ask, Bus, BusError};

/// Relays joined in one process. `gone` makes every ask go unanswered, as when the holder
/// stopped.
#[derive(Default)]
struct Loop {
    relays: Mutex<Vec<std::sync::Weak<Relay>>>,
    gone: std::sync::atomic::AtomicBool,
}

/// One relay's end of a [`Loop`].
struct End {
    hub: Arc<Loop>,
    me: usize,
}

#[async_trait::async_trait]
impl Bus for End {
    async fn ask(&self, _holder: Option<&str>, ask: &Ask) -> Result<Answer, BusError> {
        if self.hub.gone.load(Ordering::Relaxed) {
            return Err(BusError::NoHolder(Duration::from_secs(3)));
        }
        let relays: Vec<Arc<Relay>> =
            self.hub.relays.lock().unwrap().iter().filter_map(std::sync::Weak::upgrade).collect();
        // Through the wire format, as the real bus carries it.
        let ask: Ask = serde_json::from_value(serde_json::to_value(ask).unwrap()).unwrap();
        match relays.into_iter().find(|r| r.holds(&ask.session)) {
            Some(holder) => Ok(holder.asked(ask).await),
            None => Err(BusError::NoHolder(Duration::from_secs(3))),
        }
    }

    fn changed(&self) {
        for (i, r) in self.hub.relays.lock().unwrap().iter().enumerate() {
            if let (true, Some(r)) = (i != self.me, r.upgrade()) {
                r.changed_elsewhere();
            }
        }
    }
}

impl World {
    /// A second relay on this world's store, both joined to one in-process bus.
    fn second_relay(&self) -> (Arc<Relay>, Arc<Loop>) {
        self.joined(self.relay.store.clone())
    }

    /// A second relay of a cluster, named `name` (this world's relay is `default`), on the
    /// same database, both joined to one in-process bus.
    async fn named_relay(&self, name: &str) -> (Arc<Relay>, Arc<Loop>) {
        let store =
            SqliteStore::open(&self.dir.path().join("assist.db")).await.unwrap().with_relay_name(name);
        self.joined(Arc::new(store))
    }

    fn joined(&self, store: Arc<dyn crate::store::Store>) -> (Arc<Relay>, Arc<Loop>) {
        let (_, grant_key) = crate::auth::ed25519_from_pem(&crate::auth::ed25519_pkcs8_pem()).unwrap();
        let tokens =
            crate::auth::TokenKeys::from_pem(&crate::auth::TokenKeys::generate_pem(), "test".into()).unwrap();
        let ca = Ca::generate("second relay").unwrap();
        let other = Arc::new(Relay::new(store, tokens, grant_key, ca, BrokerConfig::default()));
        let hub = Arc::new(Loop::default());
        for (me, r) in [&self.relay, &other].into_iter().enumerate() {
            hub.relays.lock().unwrap().push(Arc::downgrade(r));
            r.join_bus(Arc::new(End { hub: hub.clone(), me }));
        }
        (other, hub)
    }
}

fn outsider() -> Principal {
    principal("eve", "other", Role::Approver)
}

#[tokio::test(start_paused = true)]
async fn a_person_on_another_relay_lists_answers_revokes_and_ends_what_the_holder_holds() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (b, _hub) = w.second_relay();
    let changes = b.watch_changes();
    let (id, _link, mut rx, _) = w.request(&["shell", "files.read:/var/log"], 600).await;
    assert!(changes.has_changed().unwrap(), "the holder's change woke the other relay");
    assert!(!b.holds(&id) && w.relay.holds(&id));

    let listed = b.list_requests(&approver()).await;
    assert_eq!(listed.iter().map(|s| &s.id).collect::<Vec<_>>(), [&id]);
    assert_eq!(listed, w.relay.list_requests(&approver()).await, "listed as the holder lists it");
    assert!(b.list_requests(&outsider()).await.is_empty());

    // An outsider is refused as one relay refuses them, and the holder audits it.
    let refused = b.answer(&id, Answerer::User(&outsider()), true, Approval::default()).await.unwrap_err();
    assert_eq!(refused, Refusal::new(ErrorCode::NotFound, format!("no pending request {id}")));

    let approval = Approval { note: Some("from the other relay".into()), ..Approval::default() };
    let said = b.answer(&id, Answerer::User(&approver()), true, approval).await.unwrap();
    assert!(said.starts_with(&format!("approved {id}: shell, files.read:/var/log until")), "{said}");
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::SessionApproved { .. }));
    assert!(matches!(w.agent.recv().await.unwrap(), RelayToAgent::Granted { .. }));
    assert_eq!(w.stored(&id).await.approver.as_deref(), Some("bob"));
    assert_eq!(b.list_live(&approver()).await.iter().map(|s| &s.id).collect::<Vec<_>>(), [&id]);

    let link = w.connect().0;
    w.relay.escalate(&engineer(), &link, &id, vec![], Some(600), "more time".into()).await.unwrap();
    let pending = b.list_requests(&approver()).await;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].escalation.as_ref().map(|e| e.duration_secs), Some(Some(600)), "from the row");
    let said = b.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap();
    assert!(said.starts_with(&format!("approved the escalation of {id}")), "{said}");
    assert!(b.list_requests(&approver()).await.is_empty());

    let nothing = b.revoke(&approver(), &id, vec!["files.write".into()], None).await.unwrap_err();
    assert_eq!(
        nothing,
        w.relay.revoke(&approver(), &id, vec!["files.write".into()], None).await.unwrap_err()
    );
    let said = b.revoke(&approver(), &id, vec!["shell".into()], None).await.unwrap();
    assert_eq!(said, format!("revoked shell from {id}; 0 channel(s) closed"));
    assert_eq!(w.stored(&id).await.granted, Some(caps(&["files.read:/var/log"])));

    assert_eq!(b.end_by(&approver(), &id, Some("done".into())).await.unwrap(), format!("ended {id}"));
    assert!(!w.relay.holds(&id));
    assert_eq!(w.stored(&id).await.state, SessionState::Closed);
    // Over: handled where it is asked, as one relay does.
    let over = b.end_by(&approver(), &id, None).await.unwrap_err();
    assert_eq!(over, Refusal::new(ErrorCode::NotFound, format!("no live session {id}")));
    let actions = w.actions(&id).await;
    for a in ["session.approved", "session.escalated", "grant.revoked", "session.ended"] {
        assert_eq!(actions.iter().filter(|x| *x == a).count(), 1, "{a} once in {actions:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn with_its_holder_gone_a_command_says_so_and_an_outsider_learns_nothing() {
    let w = World::new(ConsentMode::Approver).await;
    let (b, hub) = w.second_relay();
    // A denial travels like an approval.
    let (denied, _link, mut rx, _) = w.request(&["shell"], 600).await;
    let no = Approval { note: Some("not today".into()), ..Approval::default() };
    assert_eq!(
        b.answer(&denied, Answerer::User(&approver()), false, no).await.unwrap(),
        format!("denied {denied}")
    );
    assert!(
        matches!(rx.recv().await.unwrap(), RelayToEngineer::SessionDenied { reason, .. } if reason == "not today")
    );

    let (id, _link, _rx, _) = w.request(&["shell"], 600).await;
    hub.gone.store(true, Ordering::Relaxed);
    let refused = b.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Conflict);
    assert!(
        refused.message.starts_with(&format!(
            "session {id} is held by another relay of the cluster, which did not answer"
        )),
        "{}",
        refused.message
    );
    let hidden = b.end_by(&outsider(), &id, None).await.unwrap_err();
    assert_eq!(hidden, Refusal::new(ErrorCode::NotFound, format!("no live session {id}")));
    assert_eq!(w.stored(&id).await.state, SessionState::Requested, "nothing changed");
}

/// The cluster as `relay` would read it from the registry: `live` relays with addresses.
fn cluster_of(relay: &Relay, live: &[(&str, &str)]) {
    use assist_proto::msg::{ClusterRelays, RelayAddress};
    let relays =
        live.iter().map(|(n, a)| RelayAddress { name: n.to_string(), address: a.to_string() }).collect();
    relay.set_cluster(Some(ClusterRelays { relay: relay.store.relay_name().to_owned(), relays }));
}

#[tokio::test(start_paused = true)]
async fn an_engineers_own_commands_on_another_relay_are_sent_to_the_holder() {
    let w = World::new(ConsentMode::Approver).await;
    let (b, _hub) = w.named_relay("r2").await;
    cluster_of(&b, &[("default", "127.0.0.1:4001"), ("r2", "127.0.0.1:4002")]);
    let (id, _link, _rx, _) = w.request(&["shell"], 600).await;
    w.relay.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap();

    let there = b.holder_elsewhere(&engineer(), &id).await.expect("sent to the holder");
    assert_eq!(there.code, ErrorCode::Conflict);
    let held = there.held_by.as_ref().expect("names the holder");
    assert_eq!((held.relay.as_str(), held.address.as_str()), ("default", "127.0.0.1:4001"));
    assert_eq!(there.message, format!("session {id} is held by relay default (127.0.0.1:4001)"));
    assert!(
        matches!(there.to_engineer(), RelayToEngineer::Error { held_by: Some(h), .. } if h == *held),
        "carried to the engineer"
    );
    // The holder answers itself; one who may not see the session learns nothing of it.
    assert!(w.relay.holder_elsewhere(&engineer(), &id).await.is_none());
    assert!(b.holder_elsewhere(&outsider(), &id).await.is_none());

    // A channel and a watch are refused the same way, and the redirect is not audited.
    let open = ChannelOpen {
        session: id.clone(),
        report_exit: false,
        channel: ChannelKind::Shell { pty: None, command: None },
    };
    let refused = b.admit_channel(&engineer(), &open).await.err().expect("not here");
    assert_eq!(refused.held_by().map(|h| h.relay), Some("default".to_owned()));
    let watch = b.watch(&approver(), &id).await.err().expect("not here");
    assert_eq!(watch.held_by.map(|h| h.address), Some("127.0.0.1:4001".to_owned()));
    let actions = w.actions(&id).await;
    assert!(!actions.iter().any(|a| a == "channel.refused" || a.starts_with("access.")), "{actions:?}");

    // A holder the registry no longer lists is named without an address.
    cluster_of(&b, &[("r2", "127.0.0.1:4002")]);
    let stale = b.holder_elsewhere(&engineer(), &id).await.expect("still held there");
    assert!(stale.held_by.is_none());
    assert!(
        stale.message.contains("held by relay default, which is not running or advertises no address"),
        "{}",
        stale.message
    );

    // Over: open nowhere, so each relay answers as one relay does.
    w.relay.end_by(&approver(), &id, None).await.unwrap();
    assert!(b.holder_elsewhere(&engineer(), &id).await.is_none());
}
