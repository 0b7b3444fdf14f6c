//! The measurements: per content, the same captured 1080p frames go to OpenH264 (timed by
//! this thread's CPU clock around colour conversion and encoding) and, through a pipe, to
//! `ffmpeg -c:v libx264 -preset ultrafast -tune zerolatency` (its whole CPU time, less
//! what a one-frame run costs, so start-up is not counted); and grabs timed by MIT-SHM
//! against plain GetImage.
//!
//! Frames carry timestamps of a steady 30 fps, so bit rates are "at 30 fps" and OpenH264's
//! periodic keyframe (10 s) falls where it would live.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use assist_desktop::{
    Desktop, DesktopConfig, Encoder, GrabMethod, H264Encoder, H264Settings, ScreenSource, X11Screen,
};
use rustix::time::{ClockId, clock_gettime};

use crate::content::{Content, Painter};

const FPS: f64 = 30.0;

fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU seconds of this process's children that have been waited for.
fn children_cpu() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("bad stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // cutime and cstime: fields 16 and 17 of stat(5); `rest` starts at field 3.
    let ticks: f64 = f[13].parse::<f64>()? + f[14].parse::<f64>()?;
    let hz: f64 = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    Ok(ticks / hz)
}

/// One content's results.
pub struct EncodeRun {
    /// OpenH264 CPU per frame, milliseconds, one sample per frame.
    pub openh264_ms: Vec<f64>,
    pub openh264_bytes: u64,
    pub keyframes: usize,
    /// Pictures OpenH264 skipped to keep to its bit rate.
    pub skipped: usize,
    /// The same frames through OpenH264's screen-content mode (not what the agent runs).
    pub screen_ms: Vec<f64>,
    pub screen_bytes: u64,
    /// x264's CPU per frame, milliseconds (start-up subtracted), over the whole run.
    pub x264_ms: f64,
    pub x264_bytes: u64,
    pub frames: usize,
}

impl EncodeRun {
    pub fn mbit_s(bytes: u64, frames: usize) -> f64 {
        bytes as f64 * 8.0 / (frames as f64 / FPS) / 1e6
    }
}

/// Spawns ffmpeg reading raw BGRX frames on stdin and writing H.264 to `out`.
fn x264(width: u16, height: u16, out: &std::path::Path) -> Result<std::process::Child> {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr0"])
        .args(["-video_size", &format!("{width}x{height}"), "-framerate", "30", "-i", "pipe:0"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"])
        .args(["-f", "h264"])
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("run ffmpeg (install the Debian package ffmpeg)")
}

/// Hands one frame's bytes to ffmpeg.
type Send<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

/// ffmpeg's CPU seconds and output size for the frames `frames` sends.
fn run_x264(
    width: u16,
    height: u16,
    dir: &std::path::Path,
    frames: &mut dyn FnMut(&mut Send<'_>) -> Result<()>,
) -> Result<(f64, u64)> {
    let out = dir.join("x264.h264");
    let before = children_cpu()?;
    let mut child = x264(width, height, &out)?;
    let mut stdin = child.stdin.take().context("stdin")?;
    frames(&mut |bytes| Ok(stdin.write_all(bytes)?))?;
    drop(stdin);
    let status = child.wait()?;
    ensure!(status.success(), "ffmpeg failed: {status}");
    Ok((children_cpu()? - before, std::fs::metadata(&out)?.len()))
}

/// `keep`: a directory to leave both streams in (`openh264-CONTENT.h264`,
/// `x264-CONTENT.h264`), to look at them.
pub fn encode(
    display: &str,
    content: Content,
    frames: usize,
    dir: &std::path::Path,
    keep: Option<&std::path::Path>,
) -> Result<EncodeRun> {
    let mut screen = X11Screen::open(Some(display))?;
    let (width, height) = screen.size();
    let mut painter = Painter::new(display, content)?;
    let mut encoder = H264Encoder::new(H264Settings::default())?;
    let mut screen_mode = H264Encoder::new(H264Settings { screen_content: true, ..H264Settings::default() })?;
    let (mut screen_ms, mut screen_bytes) = (Vec::with_capacity(frames), 0u64);
    let frame_bytes = width as usize * height as usize * 4;

    // Start-up cost of ffmpeg: a run of one frame.
    let first = screen.grab()?.bgra[..frame_bytes].to_vec();
    let (startup_cpu, _) = run_x264(width, height, dir, &mut |send| send(&first))?;

    let mut openh264_ms = Vec::with_capacity(frames);
    let mut stream = Vec::new();
    let (mut openh264_bytes, mut keyframes, mut skipped) = (0u64, 0usize, 0usize);
    let mut failure = None;
    let (x264_cpu, x264_bytes) = run_x264(width, height, dir, &mut |send| {
        for i in 0..frames {
            painter.step()?;
            let picture = screen.grab()?;
            let ts = (i as f64 * 1e6 / FPS) as u64;
            let t0 = thread_cpu();
            match encoder.encode(&picture, ts, false) {
                Ok(Some(f)) => {
                    openh264_bytes += f.data.len() as u64;
                    if keep.is_some() {
                        stream.extend_from_slice(&f.data);
                    }
                    keyframes += usize::from(f.keyframe);
                }
                Ok(None) => skipped += 1,
                Err(e) => failure = Some(e),
            }
            openh264_ms.push((thread_cpu() - t0).as_secs_f64() * 1e3);
            let t0 = thread_cpu();
            match screen_mode.encode(&picture, ts, false) {
                Ok(Some(f)) => screen_bytes += f.data.len() as u64,
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
            screen_ms.push((thread_cpu() - t0).as_secs_f64() * 1e3);
            send(&picture.bgra[..frame_bytes])?;
        }
        Ok(())
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    if let Some(keep) = keep {
        std::fs::create_dir_all(keep)?;
        std::fs::write(keep.join(format!("openh264-{}.h264", content.name())), &stream)?;
        std::fs::copy(dir.join("x264.h264"), keep.join(format!("x264-{}.h264", content.name())))?;
    }
    let x264_ms = ((x264_cpu - startup_cpu).max(0.0) / frames as f64) * 1e3;
    Ok(EncodeRun {
        openh264_ms,
        openh264_bytes,
        keyframes,
        skipped,
        screen_ms,
        screen_bytes,
        x264_ms,
        x264_bytes,
        frames,
    })
}

/// Wall milliseconds per whole-screen grab, SHM and GetImage taken in turn.
pub fn capture(display: &str, grabs: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut shm = X11Screen::open_with(Some(display), GrabMethod::SharedMemory)?;
    let mut plain = X11Screen::open_with(Some(display), GrabMethod::GetImage)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..grabs {
        for (screen, out) in [(&mut shm, &mut a), (&mut plain, &mut b)] {
            let t0 = Instant::now();
            let picture = screen.grab()?;
            std::hint::black_box(picture.bgra[picture.bgra.len() / 2]);
            out.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok((a, b))
}

/// CPU milliseconds per second of a `Desktop` watching a screen where nothing happens
/// (after its first frame was taken), over `secs` seconds.
pub fn idle(display: &str, secs: u64) -> Result<f64> {
    let desktop = Desktop::open(DesktopConfig { display: Some(display.into()), ..Default::default() })?;
    while desktop.next(Duration::from_millis(500))?.is_some() {}
    let process_cpu = || {
        let t = clock_gettime(ClockId::ProcessCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    };
    let t0 = process_cpu();
    let frames = desktop.frames_encoded();
    // Nothing to wait for: idle is the point.
    std::thread::sleep(Duration::from_secs(secs));
    ensure!(desktop.frames_encoded() == frames, "the idle desktop encoded frames");
    Ok((process_cpu() - t0).as_secs_f64() * 1e3 / secs as f64)
}
