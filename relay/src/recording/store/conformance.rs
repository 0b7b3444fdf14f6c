//! The conformance suite: one set of checks that every [`RecordingStore`] backend must
//! pass, run against [`LocalDir`], object_store's local file system and object_store's
//! memory store; then what only segment stores do (segments, crash, interleaving).
//!
//! The same suite against a real S3 API (moto's server) is in `conformance_s3`.

use super::{LocalDir, ObjectRecordings, RecordingStore, SEGMENT_MAX};
use crate::recording::format::{self, ChunkKind, Direction};
use crate::recording::tests::{agent_identity, digest, info, key};
use crate::recording::{Recorder, Verdict, verify, verify_stored};
use assist_proto::ids::SessionId;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::KeyPair;
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

fn id(s: &str) -> SessionId {
    SessionId::new(s)
}

fn kind<T>(r: std::io::Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind(),
    }
}

/// Runs every check on `store`. `outside` is a directory that holds the store's own
/// directory and must hold nothing else afterwards (no path escaped).
pub(super) async fn suite(store: Arc<dyn RecordingStore>, outside: Option<&Path>) {
    missing_is_not_found(store.as_ref()).await;
    create_refuses_an_existing_session(store.as_ref()).await;
    synced_bytes_read_back_in_order(store.as_ref()).await;
    unsynced_bytes_are_at_most_a_prefix(store.as_ref()).await;
    bad_session_ids_are_refused(store.as_ref(), outside).await;
    sessions_are_independent(store.clone()).await;
    real_recordings_verify(store.as_ref()).await;
}

async fn missing_is_not_found(store: &dyn RecordingStore) {
    assert_eq!(kind(store.read(&id("s-none")).await), ErrorKind::NotFound);
    assert!(store.locate(&id("s-none")).contains("s-none"));
}

async fn create_refuses_an_existing_session(store: &dyn RecordingStore) {
    let mut sink = store.create(&id("s-once")).await.unwrap();
    // Created but empty: it exists (and reads empty), and cannot be created again.
    assert_eq!(store.read(&id("s-once")).await.unwrap(), b"");
    assert_eq!(kind(store.create(&id("s-once")).await), ErrorKind::AlreadyExists);
    sink.append(vec![Bytes::from_static(b"first")]).await.unwrap();
    sink.sync().await.unwrap();
    assert_eq!(kind(store.create(&id("s-once")).await), ErrorKind::AlreadyExists);
    assert_eq!(store.read(&id("s-once")).await.unwrap(), b"first", "a refused create changes nothing");
}

async fn synced_bytes_read_back_in_order(store: &dyn RecordingStore) {
    let s = id("s-round");
    let mut sink = store.create(&s).await.unwrap();
    let mut expect = Vec::new();
    for i in 0..50u32 {
        let piece: Vec<u8> = (0..(i * 37 % 1000)).map(|j| (i + j) as u8).collect();
        // In two parts: a sink takes their concatenation.
        let (a, b) = piece.split_at(piece.len() / 2);
        sink.append(vec![Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)]).await.unwrap();
        expect.extend_from_slice(&piece);
        if i % 7 == 0 {
            sink.sync().await.unwrap();
            assert_eq!(store.read(&s).await.unwrap(), expect, "after sync {i}");
        }
    }
    sink.sync().await.unwrap();
    sink.sync().await.unwrap(); // nothing new: still fine
    assert_eq!(store.read(&s).await.unwrap(), expect);
    // Piece by piece gives the same bytes, and no empty piece.
    let mut source = store.open(&s).await.unwrap();
    let mut pieces = Vec::new();
    while let Some(piece) = source.next_piece().await.unwrap() {
        assert!(!piece.is_empty());
        pieces.extend_from_slice(&piece);
    }
    assert_eq!(pieces, expect);
}

async fn unsynced_bytes_are_at_most_a_prefix(store: &dyn RecordingStore) {
    let s = id("s-unsynced");
    let mut sink = store.create(&s).await.unwrap();
    sink.append(vec![Bytes::from_static(b"durable ")]).await.unwrap();
    sink.sync().await.unwrap();
    sink.append(vec![Bytes::from_static(b"pending")]).await.unwrap();
    let seen = store.read(&s).await.unwrap();
    assert!(seen.starts_with(b"durable "), "synced bytes are always read: {seen:?}");
    assert!(b"durable pending".starts_with(&seen), "never more than was appended: {seen:?}");
    // A crash (the sink dropped without sync) keeps at least everything synced.
    drop(sink);
    let after = store.read(&s).await.unwrap();
    assert!(after.starts_with(b"durable ") && b"durable pending".starts_with(&after), "{after:?}");
}

async fn bad_session_ids_are_refused(store: &dyn RecordingStore, outside: Option<&Path>) {
    let long = "a".repeat(200);
    for bad in ["", "..", "../escape", "a/b", "/abs", ".hidden", "a\\b", "x y", "s-1\n", "é", long.as_str()]
    {
        assert_eq!(kind(store.create(&id(bad)).await), ErrorKind::InvalidInput, "create {bad:?}");
        assert_eq!(kind(store.open(&id(bad)).await), ErrorKind::InvalidInput, "open {bad:?}");
        assert_eq!(kind(store.read(&id(bad)).await), ErrorKind::InvalidInput, "read {bad:?}");
    }
    if let Some(outside) = outside {
        let names: Vec<_> = std::fs::read_dir(outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["rec"], "nothing was written beside the store's directory");
    }
}

async fn sessions_are_independent(store: Arc<dyn RecordingStore>) {
    let writers = (0..4u8).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            let s = id(&format!("s-par-{n}"));
            let mut sink = store.create(&s).await.unwrap();
            let mut expect = Vec::new();
            for i in 0..40u8 {
                let piece = vec![n.wrapping_mul(64).wrapping_add(i); 100 + usize::from(i)];
                sink.append(vec![Bytes::copy_from_slice(&piece)]).await.unwrap();
                expect.extend_from_slice(&piece);
                if i % 5 == 4 {
                    sink.sync().await.unwrap();
                }
                tokio::task::yield_now().await;
            }
            sink.sync().await.unwrap();
            (s, expect)
        })
    });
    let mut done = Vec::new();
    for w in writers.collect::<Vec<_>>() {
        done.push(w.await.unwrap());
    }
    for (s, expect) in done {
        assert_eq!(store.read(&s).await.unwrap(), expect, "{s}");
    }
}

/// A sealed, countersigned recording larger than one segment, and an unsealed one, both
/// written by the real recorder: valid and truncated, read in pieces or whole.
async fn real_recordings_verify(store: &dyn RecordingStore) {
    let (cert_pem, agent_key) = agent_identity();
    let fp = assist_certs::Fingerprint::of_pem(&cert_pem).unwrap().hex();
    let k = key();
    let pk = k.public_key().as_ref().to_vec();
    let s = id("s-rec");
    let rec = Recorder::start(store.create(&s).await.unwrap(), info(), Some(fp), k.clone()).await.unwrap();
    rec.channel_open(1, serde_json::json!({"kind": "shell", "stream": 4})).await.unwrap();
    rec.data(1, Direction::In, Bytes::from_static(b"cat big\r")).await.unwrap();
    let piece: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let mut out = Vec::new();
    while out.len() < SEGMENT_MAX + SEGMENT_MAX / 4 {
        rec.data(1, Direction::Out, Bytes::from(piece.clone())).await.unwrap();
        out.extend_from_slice(&piece);
    }
    let digests = vec![digest(4, "in", b"cat big\r"), digest(4, "out", &out)];
    let msg = assist_proto::msg::countersign_message(&s, &"erp-db01".into(), &digests);
    let sig = agent_key.sign(&SystemRandom::new(), &msg).unwrap();
    let cert = hex::encode(&assist_certs::certs_from_pem(&cert_pem).unwrap()[0]);
    let cs = crate::recording::recorder::AgentCountersignature {
        cert,
        digests,
        signature: hex::encode(sig.as_ref()),
    };
    rec.seal("done".into(), vec![cs]).await.unwrap();
    let streamed = verify_stored(store, &s, &pk).await.unwrap();
    assert!(matches!(streamed, Verdict::Valid { countersigned: 1, .. }), "{streamed}");
    assert_eq!(verify(&store.read(&s).await.unwrap(), &pk), streamed, "whole and streamed agree");

    let s = id("s-cut");
    let mut i = info();
    i.id = s.clone();
    let rec = Recorder::start(store.create(&s).await.unwrap(), i, None, k).await.unwrap();
    rec.data(1, Direction::Out, Bytes::from_static(b"output")).await.unwrap();
    drop(rec);
    // The recorder flushes and syncs on its own when the last handle goes: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while format::read_chunks(&store.read(&s).await.unwrap()).0.len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the unsealed recording was never flushed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let verdict = verify_stored(store, &s, &pk).await.unwrap();
    assert!(matches!(verdict, Verdict::Truncated { chunks: 2, .. }), "{verdict}");
}

#[tokio::test]
async fn local_dir_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(LocalDir::new(dir.path().join("rec"))), Some(dir.path())).await;
}

#[tokio::test]
async fn object_store_local_file_system_conforms() {
    let dir = tempfile::tempdir().unwrap();
    suite(Arc::new(ObjectRecordings::local(&dir.path().join("rec")).unwrap()), Some(dir.path())).await;
}

#[tokio::test]
async fn object_store_in_memory_conforms() {
    suite(Arc::new(ObjectRecordings::memory()), None).await;
}

/// A memory store and direct access to its objects.
fn memory() -> (ObjectRecordings, Arc<dyn ObjectStore>) {
    let objects: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    (ObjectRecordings::new(objects.clone(), ObjectPath::from("recordings"), "memory:"), objects)
}

fn segment(session: &str, n: u64) -> ObjectPath {
    ObjectPath::from(format!("recordings/{session}/{n:06}.seg"))
}

#[tokio::test]
async fn segments_hold_exactly_what_was_synced() {
    let (store, objects) = memory();
    let s = id("s-seg");
    let mut sink = store.create(&s).await.unwrap();
    sink.append(vec![Bytes::from_static(b"one")]).await.unwrap();
    sink.sync().await.unwrap();
    sink.append(vec![Bytes::from_static(b"two")]).await.unwrap();
    assert_eq!(store.read(&s).await.unwrap(), b"one", "unsynced bytes are not in the store");
    sink.sync().await.unwrap();
    assert_eq!(objects.get(&segment("s-seg", 0)).await.unwrap().bytes().await.unwrap(), "");
    assert_eq!(objects.get(&segment("s-seg", 1)).await.unwrap().bytes().await.unwrap(), "one");
    assert_eq!(objects.get(&segment("s-seg", 2)).await.unwrap().bytes().await.unwrap(), "two");
    // A big append writes a segment without waiting for sync: memory stays bounded.
    sink.append(vec![vec![7; SEGMENT_MAX].into()]).await.unwrap();
    assert_eq!(store.read(&s).await.unwrap().len(), 6 + SEGMENT_MAX);
}

#[tokio::test]
async fn a_second_writer_stops_the_sink_for_good() {
    let (store, objects) = memory();
    let s = id("s-two");
    let mut sink = store.create(&s).await.unwrap();
    sink.append(vec![Bytes::from_static(b"mine")]).await.unwrap();
    // Someone else writes the next segment first: ours must not replace it.
    objects.put(&segment("s-two", 1), PutPayload::from_static(b"theirs")).await.unwrap();
    assert_eq!(kind(sink.sync().await), ErrorKind::AlreadyExists);
    assert!(
        sink.append(vec![Bytes::from_static(b"more")]).await.is_err(),
        "a failed sink refuses further bytes"
    );
    assert!(sink.sync().await.is_err());
    assert_eq!(store.read(&s).await.unwrap(), b"theirs");
}

#[tokio::test]
async fn a_crash_leaves_truncated_and_a_lost_segment_reads_as_tampered() {
    let (store, objects) = memory();
    let k = key();
    let pk = k.public_key().as_ref().to_vec();
    let s = id("s-rec");
    let rec = Recorder::start(store.create(&s).await.unwrap(), info(), None, k).await.unwrap();
    for n in 0..3 {
        rec.marker(&format!("marker {n}")).await.unwrap();
        // Each marker reaches its own segment once the recorder has synced.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while format::read_chunks(&store.read(&s).await.unwrap()).0.len() < 2 + n {
            assert!(std::time::Instant::now() < deadline, "marker {n} was never synced");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // A crash: the relay is gone and nothing more is written.
    std::mem::forget(rec);
    let verdict = verify_stored(&store, &s, &pk).await.unwrap();
    assert!(matches!(verdict, Verdict::Truncated { chunks: 4, .. }), "{verdict}");

    // Removing a segment in the middle breaks the chain.
    let mut listing = Vec::new();
    let mut stream = objects.list(Some(&ObjectPath::from("recordings/s-rec")));
    while let Some(meta) = futures_util::StreamExt::next(&mut stream).await {
        listing.push(meta.unwrap().location);
    }
    listing.sort();
    assert!(listing.len() >= 4, "{listing:?}");
    objects.delete(&listing[2]).await.unwrap();
    let verdict = verify_stored(&store, &s, &pk).await.unwrap();
    assert!(matches!(verdict, Verdict::Tampered { .. }), "{verdict}");

    // Anything else under the session is refused, not skipped.
    objects
        .put(&ObjectPath::from("recordings/s-rec/notes.txt"), PutPayload::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(kind(store.read(&s).await), ErrorKind::InvalidData);
}

#[tokio::test]
async fn a_crashed_sink_leaves_the_synced_chunks() {
    let (store, _) = memory();
    let s = id("s-crash");
    let mut sink = store.create(&s).await.unwrap();
    let (head, h) = format::encode_chunk(ChunkKind::Header, &format::ZERO_HASH, b"{}");
    sink.append(vec![Bytes::copy_from_slice(&head)]).await.unwrap();
    sink.sync().await.unwrap();
    let (events, _) = format::encode_chunk(ChunkKind::Events, &h, b"");
    sink.append(vec![Bytes::copy_from_slice(&events)]).await.unwrap();
    drop(sink);
    assert_eq!(store.read(&s).await.unwrap(), head);
}

#[test]
fn recordings_locations_are_parsed() {
    let data = Path::new("/data");
    let default = super::open(None, data).unwrap();
    assert_eq!(default.locate(&id("s-1")), "/data/recordings/s-1.arec");
    assert_eq!(super::open(Some("/srv/rec"), data).unwrap().locate(&id("s-1")), "/srv/rec/s-1.arec");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/objects", dir.path().display());
    let files = super::open(Some(&url), data).unwrap();
    assert_eq!(files.locate(&id("s-1")), format!("{url}/s-1/"));
    assert!(dir.path().join("objects").is_dir(), "created");
    let s3 = super::open(Some("s3://bucket/some/prefix/"), data).unwrap();
    assert_eq!(s3.locate(&id("s-1")), "s3://bucket/some/prefix/s-1/");
    for bad in ["file://relative", "s3://", "s3:///x", "ftp://host/x", ""] {
        assert!(super::open(Some(bad), data).is_err(), "{bad:?}");
    }
}
