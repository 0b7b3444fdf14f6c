//! Unit tests of the broker: consent, grants, channels and the session's timers, driven
//! through the seam (`broker::peer`) by fake peers that queue what they are sent, on a
//! real SQLite store and a real local recording store, with tokio's clock paused so that
//! timeouts pass without waiting.
//!
//! The broker's wall clock ([`clock_ms`], what `broker::now_ms` reads in tests) is the
//! wall time at the thread's first reading moved on by tokio's clock, so advancing paused
//! time moves both. Each test holds the clock still ([`Still`]): a paused runtime with
//! nothing to run jumps its clock to the next timer, and the broker often waits on the
//! store's own thread (while the recorder keeps a 200 ms flush timer, and the store's pool
//! a 30 s connect timeout), so the clock would otherwise run on by itself while a test
//! waits for SQLite. Time moves only where a test says [`advance`].

use super::admit::ChannelRefused;
use super::peer::{AgentPeer, Close, Peer, PeerFuture, PeerGone};
use super::policy::Principal;
use super::*;
use crate::audit::AuditFilter;
use crate::store::WindowRow;
use crate::store::sqlite::SqliteStore;
use assist_proto::caps::Role;
use assist_proto::msg::{ChannelKind, ChannelOpen};
use std::any::Any;
use std::cell::Cell;
use tokio::sync::mpsc::error::TryRecvError;

mod bus;
mod lost;

thread_local! {
    static BASE: Cell<Option<(i64, tokio::time::Instant)>> = const { Cell::new(None) };
}

/// The broker's clock in tests (see the module docs).
pub(super) fn clock_ms() -> i64 {
    BASE.with(|base| {
        let (wall, at) = base.get().unwrap_or_else(|| {
            let first = (crate::now_ms(), tokio::time::Instant::now());
            base.set(Some(first));
            first
        });
        wall + at.elapsed().as_millis() as i64
    })
}

/// Moves paused time (and so the broker's clock) on by `d`.
async fn advance(d: Duration) {
    tokio::time::advance(d).await;
}

/// Holds paused time still while it lives (see the module docs): a runtime on one thread
/// with a blocking task in progress does not jump its clock, and this one's task only
/// waits, without using the processor, for the guard to go.
struct Still {
    _release: std::sync::mpsc::Sender<()>,
}

impl Still {
    fn hold() -> Self {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        tokio::task::spawn_blocking(move || {
            let _ = wait.recv();
        });
        Still { _release: release }
    }
}

/// A connection that queues what the broker sends it.
struct FakeAgent {
    tx: mpsc::UnboundedSender<RelayToAgent>,
    closed: Mutex<Vec<Close>>,
}

impl Peer for FakeAgent {
    fn close(&self, why: Close) {
        self.closed.lock().unwrap().push(why);
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl AgentPeer for FakeAgent {
    fn send(&self, msg: RelayToAgent) -> PeerFuture<'_, Result<(), PeerGone>> {
        let sent = self.tx.send(msg).map_err(|_| PeerGone);
        Box::pin(async move { sent })
    }
    fn finish_delivered(&self) -> PeerFuture<'_, ()> {
        Box::pin(async {})
    }
    fn open_channel(
        &self,
        _open: assist_proto::msg::AgentChannelOpen,
    ) -> PeerFuture<'_, Result<super::peer::AgentChannel, super::peer::OpenFailed>> {
        Box::pin(async { Err(super::peer::OpenFailed::NoStream) })
    }
}

/// An engineer's (or approver's) connection: its peer side does nothing.
struct FakeConn;

impl Peer for FakeConn {
    fn close(&self, _: Close) {}
    fn as_any(&self) -> &dyn Any {
        self
    }
}

const AGENT: &str = "db01";
const CONSENT_TIMEOUT: Duration = Duration::from_secs(300);

/// A relay with orgs `vendor` (engineers) and `acme` (supported by vendor, owns agent
/// `db01`, online in `consent` mode) and `other`, and the agent's queue.
struct World {
    relay: Arc<Relay>,
    agent: mpsc::UnboundedReceiver<RelayToAgent>,
    _still: Still,
    dir: tempfile::TempDir,
}

fn principal(user: &str, org: &str, role: Role) -> Principal {
    Principal { user: user.into(), org: org.into(), role }
}

fn engineer() -> Principal {
    principal("alice", "vendor", Role::Engineer)
}

fn approver() -> Principal {
    principal("bob", "acme", Role::Approver)
}

fn caps(list: &[&str]) -> Vec<Capability> {
    list.iter().map(|c| c.parse().unwrap()).collect()
}

fn ev(action: Action) -> AuditEvent {
    AuditEvent::new("test", action)
}

/// A temporary directory, in memory where the system has one: the store syncs each commit
/// to disk, which made the set three times slower on a loaded machine, and what is
/// tested here is the broker, not the disk.
fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap()
}

impl World {
    async fn new(consent: ConsentMode) -> World {
        let still = Still::hold();
        let dir = scratch_dir();
        let store = SqliteStore::open(&dir.path().join("assist.db")).await.unwrap();
        let now = now_ms();
        store.add_org(&"vendor".into(), &[], now, &ev(Action::OrgAdded)).await.unwrap();
        store.add_org(&"acme".into(), &["vendor".into()], now, &ev(Action::OrgAdded)).await.unwrap();
        store.add_org(&"other".into(), &["vendor".into()], now, &ev(Action::OrgAdded)).await.unwrap();
        store
            .add_join_token("t1", &"acme".into(), now + 60_000, now, &ev(Action::TokenIssued))
            .await
            .unwrap();
        let row = AgentRow {
            name: AGENT.into(),
            org: "acme".into(),
            cert_fingerprint: "ab".repeat(32),
            enrolled_at: now,
            revoked_at: None,
            last_seen: None,
            consent: Some(consent),
            online: false,
            relays: Vec::new(),
        };
        store.enroll_agent("t1", &row, now, &ev(Action::AgentEnrolled)).await.unwrap();
        let (_, grant_key) = crate::auth::ed25519_from_pem(&crate::auth::ed25519_pkcs8_pem()).unwrap();
        let tokens =
            crate::auth::TokenKeys::from_pem(&crate::auth::TokenKeys::generate_pem(), "test".into()).unwrap();
        let cfg = BrokerConfig {
            consent_timeout: CONSENT_TIMEOUT,
            recordings: Some(Arc::new(crate::recording::LocalDir::new(dir.path().join("recordings")))),
            ..BrokerConfig::default()
        };
        let ca = Ca::generate("test relay").unwrap();
        let relay = Arc::new(Relay::new(Arc::new(store), tokens, grant_key, ca, cfg));
        let (tx, agent) = mpsc::unbounded_channel();
        let peer = Arc::new(FakeAgent { tx, closed: Mutex::default() });
        let live = LiveAgent {
            conn_id: relay.conn_id(),
            since: now,
            org: "acme".into(),
            consent,
            peer,
            scripts: None,
            desktop: true,
            cluster: false,
        };
        relay.agent_online(AGENT.into(), live);
        World { relay, agent, _still: still, dir }
    }

    /// A new engineer connection and its queue.
    fn connect(&self) -> (EngineerLink, mpsc::Receiver<RelayToEngineer>) {
        let (tx, rx) = mpsc::channel(64);
        (EngineerLink { conn_id: self.relay.conn_id(), tx, peer: Arc::new(FakeConn) }, rx)
    }

    /// Alice asks for `asked` on the agent for `secs`; returns the session, the
    /// engineer's queue (past `SessionRequested`) and whom it waits for.
    async fn request(
        &self,
        asked: &[&str],
        secs: u64,
    ) -> (SessionId, EngineerLink, mpsc::Receiver<RelayToEngineer>, String) {
        let (link, mut rx) = self.connect();
        let req = NewSession {
            agent: AGENT.into(),
            ticket: "T-1".into(),
            priority: Priority::P2,
            reason: "disk full".into(),
            capabilities: caps(asked),
            duration_secs: Some(secs),
        };
        self.relay.request_session(&engineer(), link.clone(), req).await.unwrap();
        match rx.recv().await.unwrap() {
            RelayToEngineer::SessionRequested { session, waiting_for } => (session.id, link, rx, waiting_for),
            other => panic!("expected SessionRequested, got {other:?}"),
        }
    }

    /// A session approved by bob (for all it asked), with the engineer past
    /// `SessionApproved` and the agent past `Granted`.
    async fn approved(
        &mut self,
        asked: &[&str],
        secs: u64,
    ) -> (SessionId, EngineerLink, mpsc::Receiver<RelayToEngineer>) {
        let (id, link, mut rx, _) = self.request(asked, secs).await;
        self.relay.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap();
        assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::SessionApproved { .. }));
        assert!(matches!(self.agent.recv().await.unwrap(), RelayToAgent::Granted { .. }));
        (id, link, rx)
    }

    async fn admit(&self, id: &SessionId, channel: ChannelKind) -> Result<Admission, ChannelRefused> {
        self.relay
            .admit_channel(&engineer(), &ChannelOpen { session: id.clone(), report_exit: false, channel })
            .await
    }

    /// Makes the store refuse (or, with `None`, accept again) every audit event of
    /// `action`, as a full disk would: the change it goes with is not stored either.
    async fn refuse_audit_of(&self, action: Option<Action>) {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new().filename(self.dir.path().join("assist.db")),
        )
        .await
        .unwrap();
        sqlx::query("DROP TRIGGER IF EXISTS refuse_audit").execute(&pool).await.unwrap();
        if let Some(action) = action {
            let sql = format!(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events WHEN NEW.action = '{action}' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }

    async fn stored(&self, id: &SessionId) -> SessionInfo {
        self.relay.store.session(id).await.unwrap().unwrap()
    }

    async fn actions(&self, id: &SessionId) -> Vec<String> {
        let filter = AuditFilter { session: Some(id.clone()), ..AuditFilter::default() };
        self.relay.store.list_audit(&filter).await.unwrap().into_iter().map(|r| r.action).collect()
    }
}

fn shell() -> ChannelKind {
    ChannelKind::Shell { pty: None, command: None }
}

fn exec(name: &str) -> ChannelKind {
    ChannelKind::Exec { name: name.into() }
}

/// Lets every task that is ready run (tasks woken by what the test just did).
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_nobody_answers_expires_at_its_deadline() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (id, _link, mut rx, waiting_for) = w.request(&["shell"], 600).await;
    assert_eq!(waiting_for, "an approver of acme");
    // The waiting timer holds no strong reference to the relay.
    assert_eq!(Arc::strong_count(&w.relay), 1);
    advance(CONSENT_TIMEOUT - Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(w.relay.list_requests(&approver()).await.len(), 1);
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    advance(Duration::from_secs(1)).await;
    match rx.recv().await.unwrap() {
        RelayToEngineer::SessionExpired { waited_ms } => {
            assert_eq!(waited_ms, CONSENT_TIMEOUT.as_millis() as i64)
        }
        other => panic!("expected SessionExpired, got {other:?}"),
    }
    match w.agent.recv().await.unwrap() {
        RelayToAgent::ConsentWithdrawn { session, reason } => {
            assert_eq!((session, reason.as_str()), (id.clone(), "expired"))
        }
        other => panic!("expected ConsentWithdrawn, got {other:?}"),
    }
    assert!(w.relay.list_requests(&approver()).await.is_empty());
    assert_eq!(w.stored(&id).await.state, SessionState::Expired);
    assert!(w.actions(&id).await.contains(&Action::SessionExpired.as_str().to_owned()));
    let late = w.relay.answer(&id, Answerer::User(&approver()), true, Approval::default()).await;
    assert_eq!(late.unwrap_err().code, ErrorCode::NotFound);
}

#[tokio::test(start_paused = true)]
async fn an_approver_may_grant_a_subset_for_less_time() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (id, _link, mut rx, _) = w.request(&["shell", "exec:diag"], 3600).await;
    let approval = Approval { capabilities: Some(caps(&["shell"])), duration_secs: Some(600), note: None };
    w.relay.answer(&id, Answerer::User(&approver()), true, approval).await.unwrap();
    match rx.recv().await.unwrap() {
        RelayToEngineer::SessionApproved { session } => {
            assert_eq!(session.state, SessionState::Approved);
            assert_eq!(session.granted, Some(caps(&["shell"])));
            assert_eq!(session.grant_expires_at, Some(session.decided_at.unwrap() + 600_000));
        }
        other => panic!("expected SessionApproved, got {other:?}"),
    }
    match w.agent.recv().await.unwrap() {
        RelayToAgent::Granted { grant } => {
            let g = grant.verify(&w.relay.grant_public_key()).unwrap();
            assert_eq!(g.capabilities, caps(&["shell"]));
        }
        other => panic!("expected Granted, got {other:?}"),
    }
    assert_eq!(w.stored(&id).await.state, SessionState::Approved);
    let refused = w.admit(&id, exec("diag")).await.err().expect("exec was not granted");
    assert!(matches!(&refused, ChannelRefused::Session(r) if r.message.contains("exec:diag")), "{refused}");
    let _shell = w.admit(&id, shell()).await.unwrap();
    assert_eq!(w.stored(&id).await.state, SessionState::Active);
    // Asking for more than was asked is refused, and changes nothing.
    let (id2, ..) = w.request(&["shell"], 600).await;
    let wider = Approval { capabilities: Some(caps(&["exec:diag"])), ..Approval::default() };
    let err = w.relay.answer(&id2, Answerer::User(&approver()), true, wider).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert_eq!(w.stored(&id2).await.state, SessionState::Requested);
}

#[tokio::test(start_paused = true)]
async fn an_escalation_is_denied_then_approved() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (id, link, mut rx) = w.approved(&["shell"], 3600).await;
    let ask = |w: &World| {
        let relay = w.relay.clone();
        let (link, id) = (link.clone(), id.clone());
        async move {
            relay.escalate(&engineer(), &link, &id, caps(&["exec:diag"]), None, "need diag".into()).await
        }
    };
    ask(&w).await.unwrap();
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::EscalationRequested { .. }));
    assert_eq!(w.relay.list_requests(&approver()).await.len(), 1);
    let no = Approval { note: Some("not now".into()), ..Approval::default() };
    w.relay.answer(&id, Answerer::User(&approver()), false, no).await.unwrap();
    match rx.recv().await.unwrap() {
        RelayToEngineer::EscalationAnswered { approved, by, reason, .. } => {
            assert_eq!((approved, by.as_deref(), reason.as_deref()), (false, Some("bob"), Some("not now")))
        }
        other => panic!("expected EscalationAnswered, got {other:?}"),
    }
    assert!(w.admit(&id, exec("diag")).await.is_err());
    assert_eq!(w.stored(&id).await.state, SessionState::Approved, "a denied escalation leaves the session");

    ask(&w).await.unwrap();
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::EscalationRequested { .. }));
    w.relay.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap();
    match rx.recv().await.unwrap() {
        RelayToEngineer::GrantChanged { grant, in_force, .. } => {
            assert_eq!(
                (grant.capabilities, grant.revision, in_force),
                (caps(&["shell", "exec:diag"]), 2, true)
            )
        }
        other => panic!("expected GrantChanged, got {other:?}"),
    }
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::EscalationAnswered { approved: true, .. }));
    assert!(matches!(w.agent.recv().await.unwrap(), RelayToAgent::Granted { .. }));
    w.admit(&id, exec("diag")).await.unwrap();
    let actions = w.actions(&id).await;
    for a in [Action::EscalationDenied, Action::EscalationApproved] {
        assert!(actions.contains(&a.as_str().to_owned()), "{a:?} in {actions:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_escalation_nobody_answers_expires_and_the_session_goes_on() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (id, link, mut rx) = w.approved(&["shell"], 3600).await;
    w.relay.escalate(&engineer(), &link, &id, vec![], Some(600), "longer".into()).await.unwrap();
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::EscalationRequested { .. }));
    advance(CONSENT_TIMEOUT).await;
    match rx.recv().await.unwrap() {
        RelayToEngineer::EscalationAnswered { approved, by, reason, .. } => {
            assert_eq!(
                (approved, by, reason.as_deref()),
                (false, None, Some("no answer before the deadline"))
            )
        }
        other => panic!("expected EscalationAnswered, got {other:?}"),
    }
    assert!(w.relay.list_requests(&approver()).await.is_empty());
    w.admit(&id, shell()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn revoking_one_capability_closes_only_its_channels() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (id, _link, mut rx) = w.approved(&["shell", "exec:diag"], 3600).await;
    let mut sh = w.admit(&id, shell()).await.unwrap();
    let ex = w.admit(&id, exec("diag")).await.unwrap();
    let said = w.relay.revoke(&approver(), &id, vec!["shell".into()], Some("done".into())).await.unwrap();
    assert!(said.contains("1 channel(s) closed"), "{said}");
    sh.handle.stop.wait_for(|stop| *stop).await.unwrap();
    assert!(!*ex.handle.stop.borrow());
    match rx.recv().await.unwrap() {
        RelayToEngineer::GrantChanged { grant, in_force, .. } => {
            assert_eq!((grant.capabilities, in_force), (caps(&["exec:diag"]), true))
        }
        other => panic!("expected GrantChanged, got {other:?}"),
    }
    match w.agent.recv().await.unwrap() {
        RelayToAgent::Granted { grant } => {
            let g = grant.verify(&w.relay.grant_public_key()).unwrap();
            assert_eq!((g.capabilities, g.revision), (caps(&["exec:diag"]), 2));
        }
        other => panic!("expected Granted, got {other:?}"),
    }
    assert!(w.admit(&id, shell()).await.is_err());
    w.admit(&id, exec("diag")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn expiry_closes_channels_and_an_extension_keeps_them() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (id, link, mut rx) = w.approved(&["shell"], 60).await;
    let mut first = w.admit(&id, shell()).await.unwrap();
    advance(Duration::from_secs(30)).await;
    w.relay.escalate(&engineer(), &link, &id, vec![], Some(60), "longer".into()).await.unwrap();
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::EscalationRequested { .. }));
    w.relay.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap();
    match rx.recv().await.unwrap() {
        RelayToEngineer::GrantChanged { grant, .. } => assert_eq!(grant.revision, 2),
        other => panic!("expected GrantChanged, got {other:?}"),
    }
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::EscalationAnswered { approved: true, .. }));

    // Past the first grant's end: the extension keeps the channel open.
    advance(Duration::from_secs(31)).await;
    let mut second = w.admit(&id, shell()).await.unwrap();
    settle().await;
    assert!(!*first.handle.stop.borrow());
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));

    // Past the extension's end: both close, and the engineer is told (once, for revision 2).
    advance(Duration::from_secs(60)).await;
    first.handle.stop.wait_for(|stop| *stop).await.unwrap();
    second.handle.stop.wait_for(|stop| *stop).await.unwrap();
    match rx.recv().await.unwrap() {
        RelayToEngineer::GrantChanged { grant, in_force, .. } => {
            assert_eq!((grant.revision, in_force), (2, false))
        }
        other => panic!("expected GrantChanged, got {other:?}"),
    }
    let refused = w.admit(&id, shell()).await.err().expect("expired");
    assert!(refused.to_string().contains("expired"), "{refused}");
    assert!(w.actions(&id).await.contains(&Action::GrantExpired.as_str().to_owned()));
}

#[tokio::test(start_paused = true)]
async fn the_kill_key_ends_the_session_and_its_timers() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (id, _link, mut rx) = w.approved(&["shell"], 60).await;
    let mut sh = w.admit(&id, shell()).await.unwrap();
    w.relay.kill_from_agent(&AGENT.into(), None).await;
    sh.handle.stop.wait_for(|stop| *stop).await.unwrap();
    match rx.recv().await.unwrap() {
        RelayToEngineer::SessionEnded { reason: EndReason::EndedBy { user, reason } } => {
            assert_eq!(
                (user.as_str(), reason.as_deref()),
                ("customer@db01", Some("kill key pressed on the agent"))
            )
        }
        other => panic!("expected SessionEnded, got {other:?}"),
    }
    assert!(matches!(w.agent.recv().await.unwrap(), RelayToAgent::EndSession { .. }));
    let stored = w.stored(&id).await;
    assert_eq!(stored.state, SessionState::Closed);
    assert!(w.admit(&id, shell()).await.is_err());
    // Its timers ended with it: the grant's expiry says nothing any more.
    advance(Duration::from_secs(3600)).await;
    settle().await;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert!(!w.actions(&id).await.contains(&Action::GrantExpired.as_str().to_owned()));
    let sealed = w.actions(&id).await.contains(&Action::RecordingSealed.as_str().to_owned());
    assert!(sealed, "the recording is sealed at the end");
}

#[tokio::test(start_paused = true)]
async fn an_approver_of_another_organisation_is_refused() {
    let w = World::new(ConsentMode::Approver).await;
    let (id, _link, mut rx, _) = w.request(&["shell"], 600).await;
    let stranger = principal("eve", "other", Role::Approver);
    assert!(w.relay.list_requests(&stranger).await.is_empty());
    let err = w.relay.answer(&id, Answerer::User(&stranger), true, Approval::default()).await.unwrap_err();
    // `eve` may not see the session either: she is told it does not exist.
    assert_eq!(err.code, ErrorCode::NotFound);
    settle().await;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(w.stored(&id).await.state, SessionState::Requested);
    let filter = AuditFilter { actor: Some("eve".into()), ..AuditFilter::default() };
    let refused = w.relay.store.list_audit(&filter).await.unwrap();
    assert_eq!(
        refused.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        [Action::AccessRefused.as_str()]
    );
    // The session's own approver still can.
    w.relay.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_window_pre_approves_only_what_it_names() {
    let mut w = World::new(ConsentMode::Window).await;
    let window = WindowRow {
        id: "w1".into(),
        org: "acme".into(),
        agent: None,
        schedule: "* * * * *".into(),
        duration_secs: 3600,
        capabilities: caps(&["shell"]),
        engineers: vec!["alice".into()],
        note: None,
        created_by: "admin".into(),
        created_at: now_ms(),
        removed_at: None,
    };
    w.relay.store.add_window(&window, &ev(Action::WindowAdded)).await.unwrap();

    let (id, _link, mut rx, waiting_for) = w.request(&["shell"], 600).await;
    assert_eq!(waiting_for, "maintenance window w1");
    match rx.recv().await.unwrap() {
        RelayToEngineer::SessionApproved { session } => {
            assert_eq!(session.granted, Some(caps(&["shell"])));
            assert!(session.approver.unwrap().contains("w1"));
        }
        other => panic!("expected SessionApproved, got {other:?}"),
    }
    assert!(matches!(w.agent.recv().await.unwrap(), RelayToAgent::Granted { .. }));
    w.admit(&id, shell()).await.unwrap();

    // Something it does not name waits for an approver, as does a request naming both.
    let (id2, _link2, mut rx2, waiting_for) = w.request(&["shell", "exec:diag"], 600).await;
    assert_eq!(waiting_for, "an approver of acme (no maintenance window is open for this request)");
    settle().await;
    assert!(matches!(rx2.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(w.stored(&id2).await.state, SessionState::Requested);
    let pending: Vec<SessionId> =
        w.relay.list_requests(&approver()).await.into_iter().map(|s| s.id).collect();
    assert_eq!(pending, [id2]);
}

#[tokio::test(start_paused = true)]
async fn a_detached_session_lapses_unless_its_grant_is_extended() {
    let mut w = World::new(ConsentMode::Approver).await;
    // Left by its command with 60 s of grant, nobody extends it: it ends a consent
    // timeout after the grant ran out.
    let (id, link, mut rx) = w.approved(&["shell", "exec:diag"], 60).await;
    let mut sh = w.admit(&id, shell()).await.unwrap();
    w.relay.detach(&engineer(), link.conn_id, &id).await.unwrap();
    advance(Duration::from_secs(60)).await;
    match rx.recv().await.unwrap() {
        RelayToEngineer::GrantChanged { in_force, .. } => assert!(!in_force),
        other => panic!("expected GrantChanged, got {other:?}"),
    }
    sh.handle.stop.wait_for(|stop| *stop).await.unwrap();
    assert_eq!(w.stored(&id).await.state, SessionState::Active, "it outlives its grant");
    advance(CONSENT_TIMEOUT - Duration::from_secs(1)).await;
    settle().await;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    advance(Duration::from_secs(1)).await;
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::SessionEnded { reason: EndReason::Lapsed }));
    let row = w.stored(&id).await;
    assert_eq!(row.state, SessionState::Closed);
    assert_eq!(row.ended_at.unwrap() - row.grant_expires_at.unwrap(), CONSENT_TIMEOUT.as_millis() as i64);
    assert!(matches!(w.agent.recv().await.unwrap(), RelayToAgent::EndSession { .. }));

    // Extended after its grant ran out, it stays until the extension runs out too.
    let (id, link, mut rx) = w.approved(&["shell"], 60).await;
    w.relay.detach(&engineer(), link.conn_id, &id).await.unwrap();
    advance(Duration::from_secs(60)).await;
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::GrantChanged { in_force: false, .. }));
    w.relay.escalate(&engineer(), &link, &id, vec![], Some(600), "longer".into()).await.unwrap();
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::EscalationRequested { .. }));
    w.relay.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap();
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::GrantChanged { in_force: true, .. }));
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::EscalationAnswered { approved: true, .. }));
    advance(CONSENT_TIMEOUT).await;
    settle().await;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)));
    assert_eq!(w.stored(&id).await.state, SessionState::Approved);
    w.admit(&id, shell()).await.unwrap();
    advance(Duration::from_secs(600)).await;
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::GrantChanged { in_force: false, .. }));
    advance(CONSENT_TIMEOUT).await;
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::SessionEnded { reason: EndReason::Lapsed }));
}

#[tokio::test(start_paused = true)]
async fn a_change_the_store_refuses_leaves_the_state_as_it_was() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (id, _link, mut rx, _) = w.request(&["shell"], 600).await;
    w.refuse_audit_of(Some(Action::SessionApproved)).await;
    let err = w.relay.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal);
    let pending = w.relay.list_requests(&approver()).await;
    assert_eq!(
        pending.iter().map(|s| (&s.id, s.state)).collect::<Vec<_>>(),
        [(&id, SessionState::Requested)]
    );
    assert_eq!(w.stored(&id).await.state, SessionState::Requested);
    settle().await;
    assert!(matches!(rx.try_recv(), Err(TryRecvError::Empty)), "nobody is told");

    w.refuse_audit_of(Some(Action::SessionStarted)).await;
    w.relay.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap();
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::SessionApproved { .. }));
    assert!(matches!(w.agent.recv().await.unwrap(), RelayToAgent::Granted { .. }));
    assert!(w.admit(&id, shell()).await.is_err());
    assert_eq!(w.stored(&id).await.state, SessionState::Approved);
    assert!(w.relay.session_of_agent(&AGENT.into(), &id).await.is_none(), "not active");

    w.refuse_audit_of(None).await;
    w.admit(&id, shell()).await.unwrap();
    assert_eq!(w.stored(&id).await.state, SessionState::Active);
    assert!(w.relay.session_of_agent(&AGENT.into(), &id).await.is_some());
}

#[tokio::test(start_paused = true)]
async fn every_change_to_requests_and_live_sessions_is_announced() {
    fn announced(changes: &mut tokio::sync::watch::Receiver<u64>, what: &str) {
        assert!(changes.has_changed().unwrap(), "{what} was not announced");
        changes.borrow_and_update();
    }
    let mut w = World::new(ConsentMode::Approver).await;
    let mut changes = w.relay.watch_changes();
    let (id, ..) = w.request(&["shell"], 600).await;
    announced(&mut changes, "a request");
    w.relay.answer(&id, Answerer::User(&approver()), true, Approval::default()).await.unwrap();
    announced(&mut changes, "an approval");
    let _shell = w.admit(&id, shell()).await.unwrap();
    announced(&mut changes, "the session's start");
    let (id2, link, _rx) = w.approved(&["shell"], 3600).await;
    changes.borrow_and_update();
    w.relay.escalate(&engineer(), &link, &id2, vec![], Some(600), "longer".into()).await.unwrap();
    announced(&mut changes, "an escalation");
    w.relay.end_by(&approver(), &id2, Some("done".into())).await.unwrap();
    announced(&mut changes, "an end");
    let (id3, ..) = w.request(&["shell"], 600).await;
    changes.borrow_and_update();
    advance(CONSENT_TIMEOUT).await;
    settle().await;
    assert!(w.relay.list_requests(&approver()).await.iter().all(|s| s.id != id3));
    announced(&mut changes, "an expiry");
}

/// A chunk sink that keeps what it is sent (the engineer's side of a shell's output).
#[derive(Default)]
struct Collect(Vec<bytes::Bytes>);

impl super::peer::ChunkSink for Collect {
    fn write_all_chunks<'a>(
        &'a mut self,
        bufs: &'a mut [bytes::Bytes],
    ) -> PeerFuture<'a, Result<(), super::peer::StreamGone>> {
        self.0.extend(bufs.iter().cloned());
        Box::pin(async { Ok(()) })
    }
    fn finish(&mut self) {}
    fn reset(&mut self) {}
}

#[tokio::test(start_paused = true)]
async fn only_the_agents_approvers_and_admins_watch_and_the_engineer_is_told_of_each() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (pending, _plink, _prx, _) = w.request(&["shell"], 600).await;
    let (id, _link, mut rx) = w.approved(&["shell"], 600).await;
    // Not the engineer, not another organisation's approver: as if there were no session.
    for who in
        [engineer(), principal("carol", "other", Role::Approver), principal("aud", "acme", Role::Auditor)]
    {
        let refused = w.relay.watch(&who, &id).await.err().expect("refused");
        assert_eq!(
            (refused.code, refused.message.clone()),
            (ErrorCode::NotFound, format!("no live session {id}"))
        );
    }
    assert_eq!(w.relay.watch(&approver(), &pending).await.err().map(|r| r.code), Some(ErrorCode::Conflict));
    assert!(w.actions(&id).await.iter().filter(|a| *a == "access.refused").count() >= 1);

    let watching = w.relay.watch(&approver(), &id).await.unwrap();
    match rx.recv().await.unwrap() {
        RelayToEngineer::Watching { watcher, org, watching, .. } => {
            assert_eq!((watcher.as_str(), org.as_str(), watching), ("bob", "acme", true))
        }
        other => panic!("expected Watching, got {other:?}"),
    }
    let admin = principal("root", crate::broker::policy::OPERATOR_ORG, Role::Admin);
    let by_admin = w.relay.watch(&admin, &id).await.unwrap();
    assert!(matches!(rx.recv().await.unwrap(), RelayToEngineer::Watching { watching: true, .. }));
    drop(watching);
    drop(by_admin);
    for _ in 0..2 {
        match rx.recv().await.unwrap() {
            RelayToEngineer::Watching { watching, .. } => assert!(!watching),
            other => panic!("expected Watching, got {other:?}"),
        }
    }
    let actions = w.actions(&id).await;
    assert_eq!(actions.iter().filter(|a| *a == "session.watch_started").count(), 2, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| *a == "session.watch_stopped").count(), 2, "{actions:?}");
}

#[tokio::test(start_paused = true)]
async fn a_watcher_starts_from_the_current_screen_and_gets_what_follows_until_the_end() {
    let mut w = World::new(ConsentMode::Approver).await;
    let (id, _link, _rx) = w.approved(&["shell"], 600).await;
    let s = w.relay.session(&id).unwrap();
    let mut sink = s.mirror(Collect::default());
    let mut first = [bytes::Bytes::from_static(b"old\x1b[2Jscreen "), bytes::Bytes::from_static(b"now")];
    super::peer::ChunkSink::write_all_chunks(&mut sink, &mut first).await.unwrap();
    let mut watching = w.relay.watch(&approver(), &id).await.unwrap();
    let screen: Vec<u8> = watching.screen.iter().flat_map(|b| b.to_vec()).collect();
    assert_eq!(screen, b"\x1b[2Jscreen now");
    let mut next = [bytes::Bytes::from_static(b" later")];
    super::peer::ChunkSink::write_all_chunks(&mut sink, &mut next).await.unwrap();
    assert_eq!(watching.live.recv().await.unwrap(), bytes::Bytes::from_static(b" later"));
    w.relay.end_by(&approver(), &id, Some("done".into())).await.unwrap();
    watching.ended.wait_for(|e| *e).await.unwrap();
}
