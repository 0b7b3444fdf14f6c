//! A recorded desktop channel: real H.264 (Debian's ffmpeg with libx264, a test pattern)
//! wrapped in desktop messages, written by the relay's own recorder into a real relay's
//! data directory and sealed with its key; then the real `assist-relay` verifies it, the
//! seal's index lists the keyframes, and `recording export --format mp4` writes a file
//! that the real `ffprobe` reads with the expected frames, size and duration, audited with
//! its SHA-256.
//!
//! The session is produced without the live desktop path (agent capture, relay splice),
//! which is built elsewhere: the recorder is the one the splice feeds, and the recorded
//! bytes are what the agent writes (messages cut at arbitrary places).

use assist_proto::caps::{Capability, Priority};
use assist_proto::desktop::{
    AgentToViewer, Codec, CursorPosition, Frame, InputEvent, StreamInfo, ViewerToAgent,
};
use assist_proto::msg::SessionInfo;
use assist_proto::session::SessionState;
use assist_relay::recording::format::Direction;
use assist_relay::recording::{LocalDir, Recorder, RecordingStore, Verdict};
use assist_tests::TestRelay;
use bytes::Bytes;
use std::process::Command;
use std::sync::Arc;

const WIDTH: u16 = 320;
const HEIGHT: u16 = 240;
const FRAMES: usize = 40;
const GOP: usize = 10;
/// 10 frames a second.
const FRAME_US: u64 = 100_000;

/// Access units of a real H.264 stream (Annex B, constrained baseline, an access unit
/// delimiter before each picture, a keyframe every `GOP` frames), each with whether it is
/// a keyframe (holds an IDR slice).
fn h264_pictures(width: u16, height: u16, frames: usize) -> anyhow::Result<Vec<(Vec<u8>, bool)>> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={width}x{height}:rate=10"))
        .args(["-frames:v", &frames.to_string(), "-c:v", "libx264", "-profile:v", "baseline"])
        .args(["-pix_fmt", "yuv420p", "-g", &GOP.to_string(), "-x264-params", "aud=1:scenecut=0"])
        .args(["-f", "h264", "-"])
        .output()?;
    anyhow::ensure!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    let stream = out.stdout;
    // Every access unit starts with a delimiter (NAL type 9) after a 4-byte start code.
    let starts: Vec<usize> = (0..stream.len().saturating_sub(4))
        .filter(|&i| stream[i..i + 4] == [0, 0, 0, 1] && stream[i + 4] & 0x1f == 9)
        .collect();
    let mut pictures = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(stream.len());
        let unit = stream[start..end].to_vec();
        let idr = unit.windows(4).any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 5);
        pictures.push((unit, idr));
    }
    anyhow::ensure!(pictures.len() == frames, "{} pictures from ffmpeg", pictures.len());
    Ok(pictures)
}

fn msg(m: AgentToViewer) -> Vec<u8> {
    m.encode().expect("encodes")
}

fn session(id: &str) -> SessionInfo {
    SessionInfo {
        id: id.into(),
        engineer: "alice".into(),
        engineer_org: "vendor".into(),
        agent: "erp-db01".into(),
        agent_org: "acme".into(),
        ticket: "INC-16".into(),
        priority: Priority::P2,
        reason: "desktop recording".into(),
        capabilities: vec![Capability::DesktopControl],
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

/// What was recorded on the good desktop channel: its bytes, and where each keyframe's
/// message starts in them.
struct Recorded {
    stream: Vec<u8>,
    keyframes: Vec<(u64, u64)>,
}

/// Records a session in the relay's data directory with its grant key: channel 1 a desktop
/// (stream info, 40 frames, cursor positions; input the other way), channel 2 a shell,
/// channel 3 a desktop that changes size, channel 4 a desktop with no keyframe.
fn record(relay: &TestRelay, id: &str) -> anyhow::Result<Recorded> {
    let pictures = h264_pictures(WIDTH, HEIGHT, FRAMES)?;
    let mut stream =
        msg(AgentToViewer::StreamInfo(StreamInfo { codec: Codec::H264, width: WIDTH, height: HEIGHT }));
    let mut keyframes = Vec::new();
    for (i, (data, key)) in pictures.iter().enumerate() {
        let timestamp_us = i as u64 * FRAME_US;
        if *key {
            keyframes.push((stream.len() as u64, timestamp_us));
        }
        stream.extend(msg(AgentToViewer::Frame(Frame { timestamp_us, keyframe: *key, data: data.clone() })));
        stream.extend(msg(AgentToViewer::CursorPosition(CursorPosition { x: i as i32, y: 7 })));
    }
    let info = |w, h| msg(AgentToViewer::StreamInfo(StreamInfo { codec: Codec::H264, width: w, height: h }));
    let frame = |i: usize| {
        let (data, key) = &pictures[i];
        msg(AgentToViewer::Frame(Frame {
            timestamp_us: i as u64 * FRAME_US,
            keyframe: *key,
            data: data.clone(),
        }))
    };
    // The screen grows after two frames: the agent announces it, then sends a keyframe.
    let mut resized = [info(WIDTH, HEIGHT), frame(0), frame(1), info(640, 480)].concat();
    for (i, (data, key)) in h264_pictures(640, 480, 3)?.into_iter().enumerate() {
        let timestamp_us = (2 + i as u64) * FRAME_US;
        resized.extend(msg(AgentToViewer::Frame(Frame { timestamp_us, keyframe: key, data })));
    }
    let no_keyframe = [info(WIDTH, HEIGHT), frame(1), frame(2)].concat();
    let input = ViewerToAgent::Input(InputEvent::MouseMove { x: 10, y: 20 }).encode()?;

    let dir = assist_relay::datadir::DataDir::open(&relay.data_dir())?;
    let key = Arc::new(dir.grant_key()?);
    let store = LocalDir::new(relay.data_dir().join("recordings"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let rec = Recorder::start(store.create(&id.into()).await?, session(id), None, key).await?;
        rec.marker("approved by bob").await?;
        let desktop =
            serde_json::json!({"kind": "desktop", "stream": 4, "request": {"desktop": {"control": true}}});
        rec.channel_open(1, desktop.clone()).await?;
        rec.channel_open(2, serde_json::json!({"kind": "shell", "stream": 8})).await?;
        rec.channel_open(3, desktop.clone()).await?;
        rec.channel_open(4, desktop).await?;
        // The splice records what it read, wherever the agent's messages were cut.
        for piece in stream.chunks(997) {
            rec.data(1, Direction::Out, Bytes::copy_from_slice(piece)).await?;
        }
        rec.data(1, Direction::In, Bytes::from(input)).await?;
        rec.data(2, Direction::Out, Bytes::from_static(b"$ ")).await?;
        rec.data(3, Direction::Out, Bytes::from(resized)).await?;
        rec.data(4, Direction::Out, Bytes::from(no_keyframe)).await?;
        rec.marker("ended: engineer left").await?;
        rec.seal("engineer left".into(), Vec::new()).await?;
        anyhow::Ok(())
    })?;
    Ok(Recorded { stream, keyframes })
}

fn relay_cmd(relay: &TestRelay, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(Command::new(assist_tests::bin("assist-relay"))
        .arg("--data-dir")
        .arg(relay.data_dir())
        .args(args)
        .output()?)
}

fn ffprobe(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_frames"])
        .args(["-show_entries", "stream=codec_name,width,height,nb_read_frames,duration", "-of", "json"])
        .arg(path)
        .output()?;
    anyhow::ensure!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice::<serde_json::Value>(&out.stdout)?["streams"][0].clone())
}

#[test]
fn a_recorded_desktop_verifies_is_indexed_and_exports_as_mp4() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    let id = "s-desktop01";
    let recorded = record(&relay, id)?;
    assert_eq!(recorded.keyframes.len(), FRAMES / GOP);

    // The real binary says it verifies.
    let out = relay_cmd(&relay, &["recording", "verify", id])?;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("valid"), "{out:?}");

    // The seal lists each keyframe where its message starts, with its time, and the size.
    let file = relay.data_dir().join("recordings").join(format!("{id}.arec"));
    let key = assist_proto::grant::public_key(
        &assist_relay::datadir::DataDir::open(&relay.data_dir())?.grant_key()?,
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let Verdict::Valid { seal, .. } = runtime.block_on(assist_relay::recording::verify_file(&file, &key))?
    else {
        anyhow::bail!("not valid");
    };
    let channels: Vec<u32> = seal.desktop.iter().map(|d| d.channel).collect();
    assert_eq!(channels, [1, 3, 4], "only desktop channels are indexed");
    let index = &seal.desktop[0];
    assert_eq!(index.error, None);
    assert_eq!(index.bytes, recorded.stream.len() as u64);
    let listed: Vec<(u64, u64)> = index.keyframes.iter().map(|k| (k.at.offset, k.timestamp_us)).collect();
    assert_eq!(listed, recorded.keyframes);
    assert_eq!(index.stream_info.len(), 1);
    assert_eq!((index.stream_info[0].width, index.stream_info[0].height), (WIDTH, HEIGHT));
    let sizes: Vec<(u16, u16)> = seal.desktop[1].stream_info.iter().map(|s| (s.width, s.height)).collect();
    assert_eq!(sizes, [(WIDTH, HEIGHT), (640, 480)]);
    // Each entry names a chunk of the file a reader can start at.
    let bytes = std::fs::read(&file)?;
    for k in &index.keyframes {
        let at = k.at.chunk_at as usize;
        assert_eq!(&bytes[at..at + 5], b"ARC1\x02", "keyframe at {} names an events chunk", k.at.offset);
        let o = k.at.offset as usize;
        assert_eq!(recorded.stream[o..o + 2], [2, 1], "a keyframe header starts at {o}");
    }

    // The MP4 export, through the real binary, as ffprobe reads it.
    let dir = tempfile::tempdir()?;
    let mp4 = dir.path().join("desktop.mp4");
    let mp4_arg = mp4.to_str().unwrap();
    let out =
        relay_cmd(&relay, &["recording", "export", id, "--format", "mp4", "--channel", "1", "-o", mp4_arg])?;
    assert!(out.status.success(), "{out:?}");
    let probe = ffprobe(&mp4)?;
    assert_eq!(probe["codec_name"], "h264", "{probe}");
    assert_eq!(probe["width"], u64::from(WIDTH), "{probe}");
    assert_eq!(probe["height"], u64::from(HEIGHT), "{probe}");
    assert_eq!(probe["nb_read_frames"], FRAMES.to_string(), "{probe}");
    let duration: f64 = probe["duration"].as_str().unwrap_or("0").parse()?;
    let expected = FRAMES as f64 * FRAME_US as f64 / 1e6;
    assert!((duration - expected).abs() < 0.001, "duration {duration} s, expected {expected} s");
    // The index (moov) comes before the media (mdat).
    let written = std::fs::read(&mp4)?;
    let find = |tag: &[u8]| written.windows(4).position(|w| w == tag).unwrap();
    assert!(find(b"moov") < find(b"mdat"));
    // It decodes without a single error.
    let decoded =
        Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(&mp4).args(["-f", "null", "-"]).output()?;
    assert!(decoded.status.success() && decoded.stderr.is_empty(), "{decoded:?}");

    // The export is audited with the SHA-256 of what was written.
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&written));
    let audit = relay.admin(&["audit", "export", "--format", "jsonl", "--session", id])?;
    let exported: Vec<serde_json::Value> = audit
        .lines()
        .map(serde_json::from_str::<serde_json::Value>)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|e| e["action"] == "recording.exported")
        .collect();
    assert_eq!(exported.len(), 1, "{audit}");
    let detail = &exported[0]["detail"];
    assert_eq!(detail["format"], "mp4");
    assert_eq!(detail["channel"], 1);
    assert_eq!(detail["sha256"], sha);
    assert_eq!(detail["bytes"], written.len());
    assert_eq!(exported[0]["org"], "acme");

    // A desktop whose size changed exports part by part, each of one size.
    for (part, frames, (width, height)) in [("1", 2, (WIDTH, HEIGHT)), ("2", 3, (640, 480))] {
        let path = dir.path().join(format!("part{part}.mp4"));
        let args = ["--channel", "3", "--part", part, "-o", path.to_str().unwrap()];
        let out = relay_cmd(&relay, &[&["recording", "export", id, "--format", "mp4"][..], &args].concat())?;
        assert!(out.status.success(), "{out:?}");
        let probe = ffprobe(&path)?;
        assert_eq!(probe["nb_read_frames"], frames.to_string(), "part {part}: {probe}");
        assert_eq!(
            (probe["width"].as_u64(), probe["height"].as_u64()),
            (Some(width.into()), Some(height.into()))
        );
    }

    // Clear refusals, and nothing written or audited for them.
    for (channel, says) in [
        ("2", "is a shell channel, not a desktop"),
        (
            "3",
            "changes picture size at 0.1 s of the video (320x240 to 640x480); an MP4 holds one size: export each of its 2 parts with --part 1 to --part 2",
        ),
        ("4", "has no keyframe"),
        ("9", "channel 9 is not in this recording"),
        ("3 --part 3", "channel 3 has 2 part(s) of one picture size each; there is no part 3"),
    ] {
        let mut args = vec!["recording", "export", id, "--format", "mp4", "--channel"];
        args.extend(channel.split(' '));
        let out = relay_cmd(&relay, &args)?;
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "channel {channel}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    let audit = relay.admin(&["audit", "export", "--format", "jsonl", "--session", id])?;
    assert_eq!(audit.matches("recording.exported").count(), 3, "the export and the two parts: {audit}");
    Ok(())
}
