use super::*;
use crate::recording::desktop_index::Indexer;
use assist_proto::desktop::{AgentToViewer, Codec, CursorPosition, Frame, StreamInfo};

fn frame(ts: u64, key: bool) -> Vec<u8> {
    AgentToViewer::Frame(Frame { timestamp_us: ts, keyframe: key, data: vec![ts as u8; 5] }).encode().unwrap()
}

fn info(width: u16) -> Vec<u8> {
    AgentToViewer::StreamInfo(StreamInfo { codec: Codec::H264, width, height: 100 }).encode().unwrap()
}

fn pointer(x: i32) -> Vec<u8> {
    AgentToViewer::CursorPosition(CursorPosition { x, y: 0 }).encode().unwrap()
}

/// A channel of 20 frames 250 ms apart, a keyframe every 5 (1.25 s apart: each is
/// indexed), each frame recorded at its own time plus 1 s, a pointer move after each: its
/// bytes, and every message with the time it was recorded.
fn channel() -> (Vec<u8>, Vec<(Vec<u8>, u64)>) {
    let mut messages = vec![(info(640), 1_000_000)];
    for i in 0..20u64 {
        let rec = 1_000_000 + i * 250_000;
        messages.push((frame(i * 250_000, i % 5 == 0), rec));
        messages.push((pointer(i as i32), rec));
    }
    let bytes = messages.iter().flat_map(|(m, _)| m.clone()).collect();
    (bytes, messages)
}

/// Cuts `bytes`, recorded in pieces of `piece` bytes at the times `times` gives each
/// piece's first byte, into messages.
fn cut(bytes: &[u8], piece: usize, time_of: impl Fn(usize) -> u64) -> Vec<Message> {
    let mut cutter = Cutter::new();
    let mut out = Vec::new();
    for (n, part) in bytes.chunks(piece).enumerate() {
        cutter.push(part, time_of(n * piece));
        while let Some(m) = cutter.next_message().unwrap() {
            out.push(m);
        }
    }
    assert_eq!(cutter.buffered(), 0);
    out
}

#[test]
fn messages_come_back_whole_and_unchanged_with_the_time_of_their_first_byte() {
    let (bytes, messages) = channel();
    // Where each message starts, and when the piece holding that byte was recorded.
    let starts: Vec<u64> = messages
        .iter()
        .scan(0u64, |at, (m, _)| {
            let here = *at;
            *at += m.len() as u64;
            Some(here)
        })
        .collect();
    for piece in [1, 3, 8, 9, 50, bytes.len()] {
        // A piece's time is the time of the message its first byte belongs to.
        let time_of = |pos: usize| {
            let n = starts.partition_point(|&s| s <= pos as u64) - 1;
            messages[n].1
        };
        let got = cut(&bytes, piece, time_of);
        assert_eq!(got.len(), messages.len(), "pieces of {piece}");
        for ((m, (want, _)), start) in got.iter().zip(&messages).zip(&starts) {
            assert_eq!(&m.bytes, want, "pieces of {piece}");
            assert_eq!(m.offset, *start);
            // The event holding the first byte: the piece that starts at or before it.
            let piece_start = (*start as usize / piece) * piece;
            assert_eq!(m.rec_us, time_of(piece_start), "message at {start}, pieces of {piece}");
        }
    }
}

#[test]
fn a_bad_header_stops_the_cutter_with_the_error() {
    let mut cutter = Cutter::new();
    cutter.push(&frame(0, true), 0);
    cutter.push(&[99, 0, 0, 0, 0, 0, 0, 0], 1);
    assert!(cutter.next_message().unwrap().is_some());
    assert!(cutter.next_message().is_err());
    cutter.push(&frame(1, true), 2);
    assert_eq!(cutter.next_message().unwrap(), None);
}

/// What a replay aimed at `target_us` sends at once (at or before the target) and what it
/// paces, from the index the recorder would have built.
fn replay_from(target_us: u64) -> (Vec<Message>, Vec<Message>) {
    let (bytes, messages) = channel();
    let mut ix = Indexer::new(1);
    let mut at = 0;
    for (m, rec) in &messages {
        ix.push(m, *rec, 0);
        at += m.len();
    }
    assert_eq!(at, bytes.len());
    let index = ix.finish();
    let mut from = FromKeyframe::new(start_offset(&index, target_us));
    let start = Instant::now();
    let mut pacer = Pacer::new(10_000_000);
    pacer.seek(target_us, start);
    let mut cutter = Cutter::new();
    let (mut now, mut later) = (Vec::new(), Vec::new());
    for (m, rec) in &messages {
        cutter.push(m, *rec);
        while let Some(m) = cutter.next_message().unwrap() {
            for m in from.take(m) {
                match pacer.due(m.rec_us, start) {
                    Due::Now => now.push(m),
                    Due::Paused => later.push(m),
                    Due::At(_) => unreachable!("paused"),
                }
            }
        }
    }
    (now, later)
}

fn frame_times(ms: &[Message]) -> Vec<u64> {
    ms.iter()
        .filter(|m| m.kind == Kind::Frame)
        .map(|m| u64::from_be_bytes(m.bytes[8..16].try_into().unwrap()))
        .collect()
}

#[test]
fn a_seek_starts_at_the_keyframe_before_the_target_with_the_state_to_draw_from_there() {
    // 2.8 s into the recording is just after frame 7 (recorded at 2.75 s): start from
    // keyframe 5 (recorded at 2.25 s).
    let (now, later) = replay_from(2_800_000);
    assert_eq!(frame_times(&now), [1_250_000, 1_500_000, 1_750_000]);
    assert_eq!(now[0].kind, Kind::StreamInfo, "the size first");
    assert_eq!(now[0].bytes, info(640));
    assert_eq!(now[1].bytes, pointer(4), "the pointer where it last was");
    assert_eq!(now[2].kind, Kind::Frame);
    assert_eq!(frame_times(&later), (8..20).map(|i| i * 250_000).collect::<Vec<_>>());
    // Exactly on a keyframe: nothing before it.
    let (now, _) = replay_from(2_250_000);
    assert_eq!(frame_times(&now), [1_250_000]);
    // Before any frame: the first keyframe is paced, with the size before it.
    let (now, later) = replay_from(0);
    assert!(now.is_empty(), "{now:?}");
    assert_eq!(later[0].kind, Kind::StreamInfo);
    assert_eq!(frame_times(&later).len(), 20);
}

#[test]
fn the_pacer_sends_at_recorded_times_over_the_speed_and_holds_while_paused() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let mut p = Pacer::new(10_000_000);
    assert_eq!(p.due(0, t0), Due::Now);
    assert_eq!(p.due(1, t0), Due::Paused);
    p.play(t0);
    assert_eq!(p.due(2_000_000, t0), Due::At(t0 + ms(2000)));
    p.set_speed(2.0, t0 + ms(1000));
    assert_eq!(p.position(t0 + ms(1000)), 1_000_000);
    assert_eq!(p.due(2_000_000, t0 + ms(1000)), Due::At(t0 + ms(1500)));
    assert_eq!(p.position(t0 + ms(1500)), 2_000_000);
    // Paused, the position holds however long it waits.
    p.pause(t0 + ms(1500));
    assert_eq!(p.position(t0 + ms(60_000)), 2_000_000);
    assert_eq!(p.due(2_000_001, t0 + ms(60_000)), Due::Paused);
    // A seek while paused stays paused; what lies before the target is due at once.
    p.seek(7_000_000, t0 + ms(61_000));
    assert!(!p.playing());
    assert_eq!(p.due(6_900_000, t0 + ms(61_000)), Due::Now);
    // Playing again goes on from there at the speed set.
    p.play(t0 + ms(62_000));
    assert_eq!(p.due(8_000_000, t0 + ms(62_000)), Due::At(t0 + ms(62_500)));
    // The position stops at the end, and playing from the end starts over.
    assert_eq!(p.position(t0 + ms(100_000)), 10_000_000);
    assert!(p.at_end(t0 + ms(100_000)));
    p.play(t0 + ms(100_000));
    assert_eq!(p.position(t0 + ms(100_000)), 0);
    // Speeds are kept within bounds.
    p.set_speed(1000.0, t0);
    assert_eq!(p.speed(), MAX_SPEED);
    p.set_speed(f64::NAN, t0);
    assert_eq!(p.speed(), 1.0);
}

/// A sealed recording of `channel()` on desktop channel 1 (cut in pieces of 7 bytes, as a
/// splice might have read it) beside a shell on channel 2: its bytes and the seal's index.
async fn recorded() -> (Vec<u8>, DesktopIndex) {
    use crate::recording::format::Direction;
    use crate::recording::store::{LocalDir, RecordingStore};
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDir::new(dir.path());
    let id = "s-replay".into();
    let k = crate::recording::tests::key();
    let rec = crate::recording::Recorder::start(
        store.create(&id).await.unwrap(),
        crate::recording::tests::info(),
        None,
        k,
    )
    .await
    .unwrap();
    rec.marker("approved by bob").await.unwrap();
    let desktop = serde_json::json!({"kind": "desktop", "request": {"desktop": {"control": false}}});
    rec.channel_open(1, desktop).await.unwrap();
    rec.channel_open(2, serde_json::json!({"kind": "shell"})).await.unwrap();
    let (bytes, _) = channel();
    for piece in bytes.chunks(7) {
        rec.data(1, Direction::Out, bytes::Bytes::copy_from_slice(piece)).await.unwrap();
    }
    rec.data(2, Direction::Out, bytes::Bytes::from_static(b"$ ")).await.unwrap();
    rec.marker("ended: engineer left").await.unwrap();
    let seal = rec.seal("engineer left".into(), Vec::new()).await.unwrap();
    (store.read(&id).await.unwrap(), seal.desktop[0].clone())
}

fn source(bytes: &[u8]) -> Box<dyn crate::recording::store::RecordingSource> {
    Box::new(crate::recording::store::MemorySource::new(bytes.to_vec()))
}

async fn read_all(bytes: &[u8], start: u64) -> Vec<Message> {
    let mut reader = crate::recording::replay_source::ChannelReader::new(source(bytes), 1, start);
    let mut out = Vec::new();
    while let Some(m) = reader.next().await.unwrap() {
        out.push(m);
    }
    out
}

#[tokio::test]
async fn a_stored_recording_scans_to_the_seals_index_and_reads_back_from_a_keyframe() {
    use crate::recording::replay_source::{NotReplayable, scan};
    let (file, sealed) = recorded().await;
    let scanned = scan(source(&file), 1).await.unwrap().unwrap();
    assert_eq!(scanned.index, sealed, "the scan builds the index the recorder sealed");
    let labels: Vec<&str> = scanned.markers.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(labels, ["approved by bob", "desktop opened (view only)", "ended: engineer left"]);
    assert!(scanned.end_us >= scanned.markers[2].at_us);
    assert!(matches!(scan(source(&file), 2).await.unwrap(), Err(NotReplayable::NotDesktop(2))));
    assert!(matches!(scan(source(&file), 9).await.unwrap(), Err(NotReplayable::NoChannel(9))));

    // From the start: every message, unchanged. From the third keyframe: the size and the
    // pointer first, then the keyframe and what follows.
    let (bytes, messages) = channel();
    let all = read_all(&file, 0).await;
    assert_eq!(all.iter().flat_map(|m| m.bytes.clone()).collect::<Vec<_>>(), bytes);
    let third = sealed.keyframes[2].at.offset;
    let from = read_all(&file, third).await;
    assert_eq!(from[0].bytes, info(640));
    assert_eq!(from[1].bytes, pointer(9));
    assert_eq!(frame_times(&from)[0], 2_500_000);
    assert_eq!(from.len(), 2 + messages.len() - 1 - 2 * 10);

    // Never sealed (what a crash leaves): the scan builds the same index, and it all reads.
    let (chunks, _) = crate::recording::format::read_chunks(&file);
    let seal = chunks.iter().find(|c| c.kind == crate::recording::format::ChunkKind::Seal).unwrap();
    let unsealed = &file[..seal.offset];
    assert_eq!(scan(source(unsealed), 1).await.unwrap().unwrap().index, sealed);
    assert_eq!(read_all(unsealed, 0).await, all);
    // Cut inside a chunk: what verifies is read, and the rest is not there.
    let (kept, _) = crate::recording::format::read_chunks(&file[..file.len() / 2]);
    let partial = read_all(&file[..file.len() / 2], 0).await;
    assert!(partial.len() < all.len() || kept.len() == chunks.len());
    assert_eq!(partial[..], all[..partial.len()]);
}
