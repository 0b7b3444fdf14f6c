//! The H.264 stream: it decodes with the real ffmpeg to pictures of the drawn colours, an
//! idle desktop sends no frames, keyframes come on request, and the SIMD build of
//! OpenH264 is the one linked.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use assist_desktop::{Desktop, DesktopConfig};
use assist_proto::desktop::{AgentToViewer, Codec, Frame, StreamInfo};

use crate::harness::{Client, SCREEN, WAIT, xvfb};

fn open(display: &str) -> Result<Desktop> {
    Ok(Desktop::open(DesktopConfig { display: Some(display.into()), ..Default::default() })?)
}

/// Waits for the next batch that carries a frame.
fn next_frame(desktop: &Desktop) -> Result<(Vec<AgentToViewer>, Frame)> {
    let batch = desktop.next(WAIT)?.context("no batch within the wait")?;
    let frame = batch.iter().find_map(|m| match m {
        AgentToViewer::Frame(f) => Some(f.clone()),
        _ => None,
    });
    match frame {
        Some(f) => Ok((batch, f)),
        None => next_frame(desktop),
    }
}

/// Decodes an Annex B stream with ffmpeg into RGB pictures of the test screen's size.
fn decode(frames: &[Frame]) -> Result<Vec<Vec<u8>>> {
    decode_sized(frames, SCREEN)
}

/// Decodes an Annex B stream with ffmpeg into RGB pictures of `size`.
fn decode_sized(frames: &[Frame], size: (u16, u16)) -> Result<Vec<Vec<u8>>> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.h264");
    let output = dir.path().join("out.rgb");
    std::fs::write(&input, frames.iter().flat_map(|f| f.data.iter().copied()).collect::<Vec<u8>>())?;
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "h264", "-i"])
        .arg(&input)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24"])
        .arg(&output)
        .status()
        .context("run ffmpeg (install the Debian package ffmpeg)")?;
    ensure!(status.success(), "ffmpeg failed: {status}");
    let raw = std::fs::read(&output)?;
    let size = size.0 as usize * size.1 as usize * 3;
    ensure!(!raw.is_empty() && raw.len() % size == 0, "ffmpeg wrote {} bytes", raw.len());
    Ok(raw.chunks(size).map(<[u8]>::to_vec).collect())
}

fn pixel(picture: &[u8], x: usize, y: usize) -> (u8, u8, u8) {
    let i = (y * SCREEN.0 as usize + x) * 3;
    (picture[i], picture[i + 1], picture[i + 2])
}

fn near(got: (u8, u8, u8), want: (u8, u8, u8)) -> bool {
    let d = |a: u8, b: u8| (a as i16 - b as i16).abs();
    d(got.0, want.0) <= 12 && d(got.1, want.1) <= 12 && d(got.2, want.2) <= 12
}

#[test]
fn the_stream_decodes_with_ffmpeg_to_the_drawn_colours_and_follows_a_change() -> Result<()> {
    let x = xvfb();
    let mut client = Client::connect(&x.display)?;
    client.rectangle(40, 40, 160, 100, 0xe0_40_20)?;
    let desktop = open(&x.display)?;

    let (first, key) = next_frame(&desktop)?;
    assert_eq!(
        first[0],
        AgentToViewer::StreamInfo(StreamInfo { codec: Codec::H264, width: SCREEN.0, height: SCREEN.1 })
    );
    assert!(first.iter().any(|m| matches!(m, AgentToViewer::CursorShape(_))));
    assert!(first.iter().any(|m| matches!(m, AgentToViewer::CursorPosition(_))));
    assert!(key.keyframe, "the first frame is a keyframe");

    client.rectangle(300, 200, 120, 80, 0x20_40_e0)?;
    let (_, delta) = next_frame(&desktop)?;
    assert!(!delta.keyframe, "a small change is not a keyframe");
    assert!(delta.timestamp_us > key.timestamp_us);
    assert!(delta.data.len() < key.data.len(), "delta {} vs key {}", delta.data.len(), key.data.len());

    let pictures = decode(&[key, delta])?;
    assert_eq!(pictures.len(), 2);
    let (orange, blue, black) = ((0xe0, 0x40, 0x20), (0x20, 0x40, 0xe0), (0, 0, 0));
    assert!(near(pixel(&pictures[0], 120, 90), orange), "{:?}", pixel(&pictures[0], 120, 90));
    assert!(near(pixel(&pictures[0], 360, 240), black), "{:?}", pixel(&pictures[0], 360, 240));
    assert!(near(pixel(&pictures[1], 120, 90), orange), "{:?}", pixel(&pictures[1], 120, 90));
    assert!(near(pixel(&pictures[1], 360, 240), blue), "{:?}", pixel(&pictures[1], 360, 240));
    Ok(())
}

#[test]
fn an_idle_desktop_sends_nothing_and_a_keyframe_request_is_answered() -> Result<()> {
    let x = xvfb();
    let desktop = open(&x.display)?;
    next_frame(&desktop)?;
    // Whatever opening stirred up settles; then nothing changes, so nothing is sent.
    while desktop.next(Duration::from_millis(300))?.is_some() {}
    let frames = desktop.frames_encoded();
    assert!(desktop.next(Duration::from_millis(500))?.is_none(), "an idle desktop sent a batch");
    assert_eq!(desktop.frames_encoded(), frames);

    desktop.request_keyframe();
    let (_, frame) = next_frame(&desktop)?;
    assert!(frame.keyframe);
    Ok(())
}

#[test]
fn a_consumer_that_does_not_take_frames_gets_the_latest_not_a_queue() -> Result<()> {
    let x = xvfb();
    let mut client = Client::connect(&x.display)?;
    let desktop = open(&x.display)?;
    let (_, key) = next_frame(&desktop)?;
    let before = desktop.frames_encoded();
    // Five drawings while nobody takes anything: at most one batch waits.
    let colours = [0xff_00_00, 0x00_ff_00, 0x00_00_ff, 0xff_ff_00, 0x00_ff_ff];
    for (i, rgb) in colours.iter().enumerate() {
        client.rectangle(20 + 100 * i as i16, 300, 80, 80, *rgb)?;
    }
    assert!(desktop.frames_encoded() <= before + 1, "{} frames queued", desktop.frames_encoded() - before);
    // The next frame, or the one after it, already shows the last drawing.
    let mut frames = vec![key];
    let last = (0x00, 0xff, 0xff);
    for _ in 0..2 {
        frames.push(next_frame(&desktop)?.1);
        let pictures = decode(&frames)?;
        if near(pixel(pictures.last().expect("decoded"), 460, 340), last) {
            return Ok(());
        }
    }
    anyhow::bail!("two frames after the drawings, the last one was still not shown")
}

#[test]
fn a_size_change_sends_the_new_size_and_a_keyframe_at_it() -> Result<()> {
    let x = xvfb();
    let client = Client::connect(&x.display)?;
    let desktop = open(&x.display)?;
    next_frame(&desktop)?;
    client.resize_screen((320, 240))?;
    let outcome = (|| -> Result<()> {
        // Frames of what the resize drew at the old size may come first; the batch that
        // announces the new size carries a keyframe at it.
        let info = AgentToViewer::StreamInfo(StreamInfo { codec: Codec::H264, width: 320, height: 240 });
        loop {
            let (batch, frame) = next_frame(&desktop)?;
            if batch.contains(&info) {
                assert!(frame.keyframe, "the first frame at a new size is a keyframe");
                let pictures = decode_sized(&[frame], (320, 240))?;
                assert_eq!(pictures.len(), 1);
                return Ok(());
            }
        }
    })();
    client.resize_screen(SCREEN)?;
    outcome
}

#[test]
fn the_simd_build_of_openh264_is_linked() -> Result<()> {
    // OpenH264's assembly routines (built by nasm) are referenced from its C code only when
    // the build found nasm; without it the same names are absent and plain C runs ~3×
    // slower. The symbol names are in this test binary's symbol table.
    let exe = std::fs::read(std::env::current_exe()?)?;
    for name in ["WelsDequant4x4_sse2", "WelsSampleSad16x16_sse2", "WelsDctFourT4_sse2"] {
        ensure!(
            exe.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name} is not linked: OpenH264 was built without nasm (install the Debian package nasm and rebuild)"
        );
    }
    Ok(())
}
