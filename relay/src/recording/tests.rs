//! Recorder → file → verify/export, on a real directory.

use super::format::Direction;
use super::store::{LocalDir, RecordingStore};
use super::{Recorder, Verdict, export, verify};
use assist_proto::caps::{Capability, Priority};
use assist_proto::msg::SessionInfo;
use assist_proto::session::SessionState;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use bytes::Bytes;
use std::sync::Arc;

pub(super) fn key() -> Arc<Ed25519KeyPair> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Arc::new(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
}

pub(super) fn info() -> SessionInfo {
    SessionInfo {
        id: "s-rec".into(),
        engineer: "alice".into(),
        engineer_org: "vendor".into(),
        agent: "erp-db01".into(),
        agent_org: "acme".into(),
        ticket: "INC-1".into(),
        priority: Priority::P2,
        reason: "r".into(),
        capabilities: vec![Capability::Shell],
        state: SessionState::Active,
        approver: Some("bob".into()),
        requested_at: 0,
        consent_deadline: 0,
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

/// Records a small shell session and returns the file's bytes and the public key.
async fn record(seal: bool) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDir::new(dir.path());
    let k = key();
    let rec =
        Recorder::start(store.create(&"s-rec".into()).await.unwrap(), info(), None, k.clone()).await.unwrap();
    rec.marker("approved by bob").await.unwrap();
    rec.channel_open(1, serde_json::json!({"kind": "shell"})).await.unwrap();
    rec.resize(1, 100, 30).await.unwrap();
    rec.data(1, Direction::In, Bytes::from_static(b"ls\r")).await.unwrap();
    rec.data(1, Direction::Out, Bytes::from("ls\r\nfile-é.txt\r\n$ ".as_bytes())).await.unwrap();
    if seal {
        // As the broker marks a session's end before sealing.
        rec.marker("ended: shell exited with status 0").await.unwrap();
        let body = rec.seal("shell exited with status 0".into(), Vec::new()).await.unwrap();
        assert_eq!(body.channels.len(), 2);
    } else {
        drop(rec);
    }
    // Unsealed, the recorder flushes on its own when the last handle goes: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut bytes = store.read(&"s-rec".into()).await.unwrap();
    while super::format::read_chunks(&bytes).0.len() < 2 && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
        bytes = store.read(&"s-rec".into()).await.unwrap();
    }
    // A recording is never overwritten.
    assert!(store.create(&"s-rec".into()).await.is_err());
    (bytes, k.public_key().as_ref().to_vec())
}

#[tokio::test]
async fn sealed_recording_verifies_and_exports() {
    let (bytes, pk) = record(true).await;
    let verdict = verify(&bytes, &pk);
    assert!(matches!(verdict, Verdict::Valid { .. }), "{verdict}");

    let (header, events) = export::read_events(&bytes).unwrap();
    assert_eq!(export::raw(&events, 1, Direction::In), b"ls\r");
    let cast = export::asciicast(&header, &events);
    let mut lines = cast.lines();
    let head: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(head["version"], 2);
    assert_eq!(head["width"], 100);
    assert_eq!(head["height"], 30);
    let rest: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(rest.iter().any(|e| e[1] == "m" && e[2] == "approved by bob"));
    assert!(rest.iter().any(|e| e[1] == "r" && e[2] == "100x30"));
    assert!(rest.iter().any(|e| e[1] == "o" && e[2].as_str().unwrap().contains("file-é.txt")));
    assert!(!rest.iter().any(|e| e[1] == "o" && e[2] == "ls\r"), "input is not output");
    // Players draw a marker only before the end: an empty output follows the end marker.
    let (end, after) = (&rest[rest.len() - 2], &rest[rest.len() - 1]);
    assert!(end[1] == "m" && end[2].as_str().unwrap().starts_with("ended"), "{end}");
    assert_eq!((after[1].as_str(), after[2].as_str()), (Some("o"), Some("")));
    assert!(after[0].as_f64().unwrap() > end[0].as_f64().unwrap());
}

#[tokio::test]
async fn every_single_flipped_byte_is_detected() {
    let (bytes, pk) = record(true).await;
    for i in 0..bytes.len() {
        let mut copy = bytes.clone();
        copy[i] ^= 0x01;
        let verdict = verify(&copy, &pk);
        assert!(!matches!(verdict, Verdict::Valid { .. }), "flip at byte {i} went unnoticed");
    }
}

#[tokio::test]
async fn cut_recordings_are_truncated_never_valid() {
    let (bytes, pk) = record(true).await;
    for cut in [bytes.len() - 1, bytes.len() - 40, bytes.len() / 2, 50] {
        let verdict = verify(&bytes[..cut], &pk);
        assert!(matches!(verdict, Verdict::Truncated { .. }), "cut at {cut}: {verdict}");
    }
    let (unsealed, pk) = record(false).await;
    let verdict = verify(&unsealed, &pk);
    assert!(matches!(verdict, Verdict::Truncated { chunks: 2, .. }), "{verdict}");
}

#[tokio::test]
async fn another_relay_key_is_refused() {
    let (bytes, _) = record(true).await;
    let other = key();
    let verdict = verify(&bytes, other.public_key().as_ref());
    assert!(matches!(verdict, Verdict::Tampered { chunk: 0, .. }), "{verdict}");
}

#[tokio::test]
async fn a_failing_sink_fails_the_recorder() {
    /// Takes the header, then is full.
    struct Full(usize);
    #[async_trait::async_trait]
    impl super::store::RecordingSink for Full {
        async fn append(&mut self, _parts: Vec<bytes::Bytes>) -> std::io::Result<()> {
            self.0 += 1;
            if self.0 > 1 { Err(std::io::Error::other("No space left on device")) } else { Ok(()) }
        }
        async fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let rec = Recorder::start(Box::new(Full(0)), info(), None, key()).await.unwrap();
    let failed = {
        let rec = rec.clone();
        tokio::spawn(async move { rec.wait_failed().await })
    };
    // Keep feeding until the recorder refuses: it must refuse, not drop silently.
    let mut refused = false;
    for _ in 0..10_000 {
        if rec.data(1, Direction::Out, Bytes::from(vec![b'x'; 1024])).await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused);
    assert!(failed.await.unwrap().0.contains("No space left"));
    assert!(rec.seal("x".into(), Vec::new()).await.is_err());
}

/// A sink whose file takes the header, then never finishes a write (a stuck disk), or
/// fails every write (a full one). Appends only gather in memory, as the local writer's do.
struct Disk {
    syncs: usize,
    full: bool,
}

impl Disk {
    async fn write(&mut self) -> std::io::Result<()> {
        self.syncs += 1;
        match (self.syncs, self.full) {
            (1, _) => Ok(()),
            (_, true) => Err(std::io::Error::other("No space left on device")),
            (_, false) => std::future::pending().await,
        }
    }
}

#[async_trait::async_trait]
impl super::store::RecordingSink for Disk {
    async fn append(&mut self, _parts: Vec<bytes::Bytes>) -> std::io::Result<()> {
        Ok(())
    }
    async fn sync(&mut self) -> std::io::Result<()> {
        self.write().await
    }
    async fn write_out(&mut self) -> std::io::Result<()> {
        self.write().await
    }
}

/// Feeds 16 KiB data events from a task until one is refused, or until the feeder stops
/// moving: on this single-threaded runtime the recorder and the feeder are the only tasks,
/// and both wait on nothing but each other and the sink, so a hundred turns of the
/// scheduler without progress mean it waits for good. Returns the bytes taken and whether
/// the last event was refused.
async fn accepted_by(rec: &Recorder) -> (usize, bool) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let counter = Arc::new(AtomicUsize::new(0));
    let feeder = tokio::spawn({
        let (rec, counter) = (rec.clone(), counter.clone());
        async move {
            while counter.load(Ordering::SeqCst) < 64 << 20 {
                rec.data(1, Direction::Out, Bytes::from(vec![b'x'; 16 * 1024])).await?;
                counter.fetch_add(16 * 1024, Ordering::SeqCst);
            }
            Ok::<_, super::RecordingFailed>(())
        }
    });
    let (mut last, mut still) = (usize::MAX, 0);
    while still < 100 && !feeder.is_finished() {
        tokio::task::yield_now().await;
        let now = counter.load(Ordering::SeqCst);
        (last, still) = if now == last { (last, still + 1) } else { (now, 0) };
    }
    let accepted = counter.load(Ordering::SeqCst);
    if feeder.is_finished() {
        let refused = feeder.await.unwrap().is_err();
        assert!(refused, "never held back: {accepted} B accepted");
        return (accepted, true);
    }
    feeder.abort();
    (accepted, false)
}

#[tokio::test]
async fn a_stuck_disk_holds_a_session_to_its_budget() {
    let rec = Recorder::start(Box::new(Disk { syncs: 0, full: false }), info(), None, key()).await.unwrap();
    let (accepted, refused) = accepted_by(&rec).await;
    assert!(!refused, "a slow disk slows the session, it does not fail it");
    assert!(accepted <= super::budget::HELD, "{accepted} B accepted while none reached the file");
    assert!(accepted >= super::budget::WRITE_OUT_AT, "{accepted} B: it waits only once a write-out is due");
}

#[tokio::test]
async fn a_full_disk_refuses_within_the_budget() {
    let rec = Recorder::start(Box::new(Disk { syncs: 0, full: true }), info(), None, key()).await.unwrap();
    let (accepted, refused) = accepted_by(&rec).await;
    assert!(refused, "the failure reaches the splices");
    assert!(accepted <= super::budget::HELD, "{accepted} B accepted while none reached the file");
    assert!(rec.failure_now().is_some());
    assert!(rec.claim_failure().is_some() && rec.claim_failure().is_none(), "reported once");
}

/// An agent certificate and a way to countersign with its key.
pub(super) fn agent_identity() -> (String, aws_lc_rs::signature::EcdsaKeyPair) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    let ca = assist_certs::Ca::generate("t").unwrap();
    let k = assist_certs::AgentKey::generate("erp-db01").unwrap();
    let cert = ca.sign_agent_csr(&k.csr_pem, "erp-db01", "acme").unwrap();
    let der = assist_certs::key_from_pem(&k.key_pem).unwrap();
    (cert.cert_pem, EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der.secret_der()).unwrap())
}

pub(super) fn digest(stream: u64, dir: &str, data: &[u8]) -> assist_proto::msg::StreamDigest {
    assist_proto::msg::StreamDigest {
        stream,
        direction: dir.into(),
        bytes: data.len() as u64,
        sha256: hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref()),
    }
}

async fn countersigned(agent_says_out: &[u8]) -> Verdict {
    let (cert_pem, agent_key) = agent_identity();
    let fp = assist_certs::Fingerprint::of_pem(&cert_pem).unwrap().hex();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDir::new(dir.path());
    let k = key();
    let rec = Recorder::start(store.create(&"s-rec".into()).await.unwrap(), info(), Some(fp), k.clone())
        .await
        .unwrap();
    rec.channel_open(1, serde_json::json!({"kind": "shell", "stream": 4})).await.unwrap();
    rec.data(1, Direction::In, Bytes::from_static(b"typed")).await.unwrap();
    rec.data(1, Direction::Out, Bytes::from_static(b"printed")).await.unwrap();
    // The agent read only the first 3 input bytes before the shell exited: a prefix is fine.
    let digests = vec![digest(4, "in", b"typ"), digest(4, "out", agent_says_out)];
    let msg = assist_proto::msg::countersign_message(&"s-rec".into(), &"erp-db01".into(), &digests);
    let sig = agent_key.sign(&SystemRandom::new(), &msg).unwrap();
    let cert = hex::encode(&assist_certs::certs_from_pem(&cert_pem).unwrap()[0]);
    let cs = super::recorder::AgentCountersignature { cert, digests, signature: hex::encode(sig.as_ref()) };
    rec.seal("done".into(), vec![cs]).await.unwrap();
    let bytes = store.read(&"s-rec".into()).await.unwrap();
    verify(&bytes, k.public_key().as_ref())
}

#[tokio::test]
async fn agent_countersignature_is_checked_against_the_recorded_bytes() {
    let ok = countersigned(b"printed").await;
    assert!(matches!(ok, Verdict::Valid { countersigned: 1, .. }), "{ok}");
    let differs = countersigned(b"PRINTED").await;
    assert!(matches!(&differs, Verdict::Tampered { reason, .. } if reason.contains("differ")), "{differs}");
    let more = countersigned(b"printed and more").await;
    assert!(matches!(more, Verdict::Tampered { .. }), "{more}");
}

/// A recorded desktop channel (stream info, frames, a keyframe every 10) and the seal
/// chunk re-signed with `edit` applied to its body.
async fn desktop_recording(edit: impl Fn(&mut serde_json::Value)) -> (Vec<u8>, Vec<u8>) {
    use assist_proto::desktop::{AgentToViewer, Codec, Frame, StreamInfo};
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDir::new(dir.path());
    let k = key();
    let rec =
        Recorder::start(store.create(&"s-rec".into()).await.unwrap(), info(), None, k.clone()).await.unwrap();
    rec.channel_open(1, serde_json::json!({"kind": "desktop", "stream": 4})).await.unwrap();
    let mut stream =
        AgentToViewer::StreamInfo(StreamInfo { codec: Codec::H264, width: 64, height: 48 }).encode().unwrap();
    for i in 0..30u64 {
        let frame = Frame { timestamp_us: i * 100_000, keyframe: i % 10 == 0, data: vec![0, 0, 1, 9, 16] };
        stream.extend(AgentToViewer::Frame(frame).encode().unwrap());
    }
    for piece in stream.chunks(50) {
        rec.data(1, Direction::Out, Bytes::copy_from_slice(piece)).await.unwrap();
    }
    let sealed = rec.seal("ended".into(), Vec::new()).await.unwrap();
    assert_eq!(sealed.desktop[0].keyframes.len(), 3);
    let bytes = store.read(&"s-rec".into()).await.unwrap();
    // Re-sign the seal, as a relay would have that wrote `edit`'s body.
    let (chunks, _) = super::format::read_chunks(&bytes);
    let seal = chunks.last().unwrap();
    let len = u32::from_be_bytes(seal.payload[..4].try_into().unwrap()) as usize;
    let mut body: serde_json::Value = serde_json::from_slice(&seal.payload[4..4 + len]).unwrap();
    edit(&mut body);
    let json = serde_json::to_vec(&body).unwrap();
    let payload = [&(json.len() as u32).to_be_bytes()[..], &json, k.sign(&json).as_ref()].concat();
    let (chunk, _) = super::format::encode_chunk(super::format::ChunkKind::Seal, &seal.prev_hash, &payload);
    let resealed = [&bytes[..seal.offset], &chunk].concat();
    (resealed, k.public_key().as_ref().to_vec())
}

#[tokio::test]
async fn the_desktop_index_is_checked_against_the_recorded_bytes() {
    let (bytes, pk) = desktop_recording(|_| {}).await;
    let verdict = verify(&bytes, &pk);
    let Verdict::Valid { seal, .. } = &verdict else { panic!("{verdict}") };
    let times: Vec<u64> = seal.desktop[0].keyframes.iter().map(|k| k.timestamp_us).collect();
    assert_eq!(times, [0, 1_000_000, 2_000_000]);

    // A seal whose index says otherwise than the bytes, even signed, is refused.
    let (bytes, pk) = desktop_recording(|seal| seal["desktop"][0]["keyframes"][1][0] = 7.into()).await;
    let verdict = verify(&bytes, &pk);
    assert!(verdict.to_string().contains("desktop seek index does not match"), "{verdict}");

    // A seal from before the index (none in it) still verifies.
    let (bytes, pk) = desktop_recording(|seal| {
        seal.as_object_mut().unwrap().remove("desktop");
    })
    .await;
    let verdict = verify(&bytes, &pk);
    assert!(matches!(verdict, Verdict::Valid { .. }), "{verdict}");
}
