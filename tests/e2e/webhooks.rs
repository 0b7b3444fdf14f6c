//! Outgoing webhooks through the real relay: a real HTTP receiver on 127.0.0.1 gets a
//! session's events, signed, in order; a receiver that fails first gets the delivery again;
//! a receiver holding the wrong secret refuses it. The receiver checks signatures with its
//! own HMAC (the `hmac` and `sha2` crates), as a ticketing system's would, not with the
//! relay's code.

use anyhow::{Context, ensure};
use assist_tests::{TestRelay, WAIT};
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// A request as the receiver got it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    path: String,
    pub(crate) event: String,
    delivery: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// What a receiver does: `sha256=HEX` over `TIMESTAMP.BODY`, keyed with the secret.
pub(crate) fn signature_ok(secret: &str, r: &Received) -> bool {
    let Some(tag) = r.signature.strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else {
        return false;
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(r.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    mac.verify_slice(&tag).is_ok()
}

/// An HTTP receiver on 127.0.0.1:0. Answers with the statuses in `script` (then 200), or
/// 401 when `secret` is given and the signature does not verify with it.
pub(crate) struct Receiver {
    pub(crate) url: String,
    rx: mpsc::Receiver<Received>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    pub(crate) fn start(script: &[u16], secret: Option<&str>) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let (tx, rx) = mpsc::channel();
        let tx = Arc::new(Mutex::new(tx));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<u16>>()));
        let secret = secret.map(str::to_owned);
        let app =
            axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: axum::body::Bytes| {
                let (tx, script, secret) = (tx.clone(), script.clone(), secret.clone());
                async move {
                    let h =
                        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                    let r = Received {
                        path: uri.path().to_owned(),
                        event: h("x-assist-event"),
                        delivery: h("x-assist-delivery"),
                        timestamp: h("x-assist-timestamp"),
                        signature: h("x-assist-signature"),
                        body: body.to_vec(),
                    };
                    let refused = secret.as_deref().is_some_and(|s| !signature_ok(s, &r));
                    let _ = tx.lock().unwrap().send(r);
                    if refused {
                        return StatusCode::UNAUTHORIZED;
                    }
                    let status = script.lock().unwrap().pop_front().unwrap_or(200);
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                }
            });
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}", listener.local_addr()?);
        runtime.spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, rx, _runtime: runtime })
    }

    pub(crate) fn next(&self) -> anyhow::Result<Received> {
        self.rx.recv_timeout(WAIT).context("no webhook request arrived")
    }
}

/// `webhook add ... --json`: the new hook's id and secret.
fn add_hook(relay: &TestRelay, args: &[&str], stdin: &str) -> anyhow::Result<(String, String)> {
    let mut all = vec!["webhook", "add", "--json"];
    all.extend_from_slice(args);
    let v: Value = serde_json::from_str(&relay.admin_with_stdin(&all, stdin)?)?;
    let text = |k: &str| v[k].as_str().map(str::to_owned).with_context(|| format!("no {k} in {v}"));
    Ok((text("id")?, text("secret")?))
}

fn audit_of(relay: &TestRelay, action: &str) -> anyhow::Result<Vec<Value>> {
    let v: Value = serde_json::from_str(&relay.admin(&["audit", "list", "--json"])?)?;
    let all = v.as_array().context("audit list --json is not an array")?;
    Ok(all.iter().filter(|e| e["action"] == action).cloned().collect())
}

/// Waits until the audit log holds at least `n` events of `action`.
fn wait_audit(relay: &TestRelay, action: &str, n: usize) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = audit_of(relay, action)?;
        if found.len() >= n {
            return Ok(found);
        }
        ensure!(Instant::now() < deadline, "only {} {action} events", found.len());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn deliveries(relay: &TestRelay) -> anyhow::Result<Vec<Value>> {
    let v: Value = serde_json::from_str(&relay.admin(&["webhook", "deliveries", "--json"])?)?;
    v.as_array().cloned().context("webhook deliveries --json is not an array")
}

const SHELL: &[&str] = &[
    "shell",
    "erp-db01",
    "--ticket",
    "INC-1042",
    "--priority",
    "P2",
    "--reason",
    "month-end close fails",
    "--",
    "echo",
    "hello",
];

#[test]
fn a_session_reaches_the_receiver_signed_and_in_order() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    relay.admin(&["org", "add", "other"])?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let receiver = Receiver::start(&[], None)?;
    let (hook, secret) =
        add_hook(&relay, &["--org", "acme", "--url", &format!("{}/acme", receiver.url)], "")?;
    let (other, _) = add_hook(&relay, &["--org", "other", "--url", &format!("{}/other", receiver.url)], "")?;
    let listed = relay.admin(&["webhook", "list", "--json"])?;
    ensure!(listed.contains(&hook) && !listed.contains(&secret), "listed without the secret: {listed}");

    let alice = relay.login("alice")?;
    let bob = relay.login("bob")?;
    let mut session = alice.spawn(SHELL)?;
    let id = bob.pending_request()?;
    bob.ok(&["approve", &id])?;
    assert_eq!(session.wait()?.code(), Some(0));

    let got: Vec<Received> = (0..4).map(|_| receiver.next()).collect::<anyhow::Result<_>>()?;
    let events: Vec<&str> = got.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["session.requested", "session.approved", "session.started", "session.ended"]);
    let mut seqs = Vec::new();
    for r in &got {
        assert_eq!(r.path, "/acme", "only the customer's hook is concerned");
        assert!(signature_ok(&secret, r), "{} is signed with the hook's secret", r.event);
        assert!(!signature_ok("not-the-secret-at-all", r), "another secret does not verify");
        let mut tampered = r.clone();
        tampered.body = String::from_utf8(r.body.clone())?.replace("INC-1042", "INC-1043").into_bytes();
        assert!(!signature_ok(&secret, &tampered), "a changed body does not verify");
        let v = r.json();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["event"], r.event.as_str());
        assert_eq!(v["session"]["id"], id.as_str());
        assert_eq!(v["session"]["ticket"], "INC-1042");
        assert_eq!(v["session"]["priority"], "P2");
        assert_eq!(
            (v["session"]["engineer"].as_str(), v["session"]["engineer_org"].as_str()),
            (Some("alice"), Some("vendor"))
        );
        assert_eq!(
            (v["session"]["agent"].as_str(), v["session"]["agent_org"].as_str()),
            (Some("erp-db01"), Some("acme"))
        );
        seqs.push(v["seq"].as_i64().context("seq")?);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let mut ids: Vec<&str> = got.iter().map(|r| r.delivery.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "one delivery id per event");
    assert_eq!(got[1].json()["approver"], "bob");
    assert_eq!(got[3].json()["end_reason"], "shell exited with status 0");

    // Every delivery is audited, against the session; the other org's hook got nothing.
    let delivered = wait_audit(&relay, "webhook.delivered", 4)?;
    assert!(delivered.iter().all(|e| e["session"] == id.as_str() && e["target"] == hook.as_str()));
    let rows = deliveries(&relay)?;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(
        rows.iter().all(|d| d["state"] == "delivered" && d["attempts"] == 1 && d["webhook"] == hook.as_str())
    );
    assert!(!rows.iter().any(|d| d["webhook"] == other.as_str()));
    Ok(())
}

#[test]
fn a_failing_receiver_gets_the_delivery_again_and_both_attempts_are_audited() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let receiver = Receiver::start(&[500], None)?;
    let secret = "a-secret-chosen-by-the-ticketing-system";
    let url = format!("{}/vendor", receiver.url);
    // The vendor's ticketing system: its engineers' sessions on customers' agents.
    let (hook, _) = add_hook(
        &relay,
        &["--org", "vendor", "--url", &url, "--events", "session.requested", "--secret-stdin"],
        &format!("{secret}\n"),
    )?;

    let alice = relay.login("alice")?;
    let _session = alice.spawn(SHELL)?;
    let first = receiver.next()?;
    let second = receiver.next()?;
    assert_eq!((first.event.as_str(), second.event.as_str()), ("session.requested", "session.requested"));
    assert_eq!(first.delivery, second.delivery, "the same delivery, for the receiver to de-duplicate");
    assert!(signature_ok(secret, &first) && signature_ok(secret, &second));

    let delivered = wait_audit(&relay, "webhook.delivered", 1)?;
    let failed = audit_of(&relay, "webhook.failed")?;
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (f, d) = (&failed[0]["detail"], &delivered[0]["detail"]);
    assert_eq!(
        (f["attempt"].as_u64(), f["status"].as_u64(), f["gave_up"].as_bool()),
        (Some(1), Some(500), Some(false))
    );
    assert_eq!((d["attempt"].as_u64(), d["status"].as_u64()), (Some(2), Some(200)));
    assert_eq!(f["delivery"], first.delivery.as_str());
    assert_eq!(d["delivery"], first.delivery.as_str());
    assert_eq!(failed[0]["target"], hook.as_str());
    assert_eq!(f["url"], receiver.url.as_str(), "the audit shows the origin, not the path");
    let rows = deliveries(&relay)?;
    assert_eq!((rows[0]["state"].as_str(), rows[0]["attempts"].as_u64()), (Some("delivered"), Some(2)));
    Ok(())
}

#[test]
fn a_receiver_with_another_secret_refuses_the_request() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = relay.agent("erp-db01", "acme", "approver")?;
    let receiver = Receiver::start(&[], Some("the-secret-the-receiver-holds"))?;
    add_hook(
        &relay,
        &["--org", "acme", "--url", &receiver.url, "--events", "session.requested", "--secret-stdin"],
        "a-different-secret-given-to-the-relay\n",
    )?;
    let alice = relay.login("alice")?;
    let _session = alice.spawn(SHELL)?;
    let got = receiver.next()?;
    assert!(!signature_ok("the-secret-the-receiver-holds", &got));
    assert!(signature_ok("a-different-secret-given-to-the-relay", &got));
    let failed = wait_audit(&relay, "webhook.failed", 1)?;
    assert_eq!(failed[0]["detail"]["status"], 401, "the refusal is audited: {failed:?}");
    assert_eq!(failed[0]["detail"]["gave_up"], false, "and retried");
    Ok(())
}
