//! The desktop through the real path, per content, beside `ffmpeg -f x11grab` + x264 on
//! the same screen in the same run:
//!
//! - the real `assist-relay` and `assist-agent --display` (release binaries next to this
//!   one, [`crate::world`]: the agent's prompt is answered at once) and a real headless
//!   Chromium viewing the desktop through the console ([`crate::viewer`]);
//! - each content drawn at 30 steps a second with the clock over it ([`crate::drawing`]);
//!   once the page shows the clock of this content, a warm-up, then a window of `secs`:
//!   the agent's CPU from `/proc/PID/stat` at both ends; frames and bytes that reached the
//!   page, frames decoded and drawn, and for each picture first showing a new clock value,
//!   glass-to-glass = the time it was drawn on the canvas − the clock it shows;
//! - the clock alone on a still screen, the same way: what the clock adds to every content;
//! - then the desktop is closed and each content runs again under ffmpeg: its CPU from
//!   `/proc`, its bytes and pictures within the same length of window.
//!
//! The latency ends when the page's canvas holds the picture (`drawImage` returned), not
//! when a compositor shows it. Targets are printed as PASS/MISS, never asserted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use crate::content::Content;
use crate::drawing::{Drawing, Drawn};
use crate::procs::cpu_seconds;
use crate::report::{Better, Figure, Series, median, percentile};
use crate::stamp;
use crate::viewer::{Noted, Viewer};
use crate::world::{AGENT, Bins, World};
use crate::x11grab::X11Grab;

/// Issue 16's targets.
const CORES_AT_30: f64 = 0.5;
const G2G_MS: f64 = 50.0;
const TYPING_MBIT_S: f64 = 0.5;
const FPS: u32 = 30;

pub struct Options {
    /// Seconds of each measured window.
    pub secs: f64,
    /// Seconds between the content showing in the page and the window.
    pub warmup: f64,
    /// Where the product's binaries are (default: next to this one).
    pub bin_dir: Option<PathBuf>,
    /// A directory for one CSV per content: each picture measured, in order.
    pub trace: Option<PathBuf>,
}

/// Wall-clock milliseconds since the epoch, the clock `Date.now()` reads in the page.
pub fn epoch_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One content through assist.
struct AssistPhase {
    /// The window, epoch milliseconds.
    window: (f64, f64),
    secs: f64,
    drawn: usize,
    frames_in: usize,
    keyframes: usize,
    bytes: u64,
    agent_cpu: f64,
    relay_cpu: f64,
    latencies: Vec<f64>,
    /// Glass → the frame's message arrived in the page, and arrived → drawn.
    to_page: Vec<f64>,
    in_page: Vec<f64>,
    unreadable: usize,
    steps: Drawn,
    load: String,
    /// Per picture measured: drawn at (epoch ms), glass-to-glass, arrived → drawn (ms, or
    /// -1), whether its frame was a keyframe.
    trace: Vec<(f64, f64, f64, bool)>,
}

/// One content through ffmpeg.
struct GrabPhase {
    window: (f64, f64),
    secs: f64,
    pictures: usize,
    bytes: u64,
    cpu: f64,
    steps: Drawn,
    load: String,
}

/// `content` through assist; `None`: the clock alone (what it adds to the others).
fn assist_phase(
    world: &World,
    viewer: &Viewer,
    display: &str,
    content: Option<Content>,
    o: &Options,
) -> Result<AssistPhase> {
    let drawing = Drawing::start(display, content, FPS)?;
    viewer.wait_for_stamp(drawing.first_stamp)?;
    std::thread::sleep(Duration::from_secs_f64(o.warmup));
    let (agent, relay) = (world.agent.pid(), world.relay.proc.pid());
    viewer.take()?;
    let (t0, a0, r0) = (epoch_ms(), cpu_seconds(agent)?, cpu_seconds(relay)?);
    std::thread::sleep(Duration::from_secs_f64(o.secs));
    let (t1, a1, r1) = (epoch_ms(), cpu_seconds(agent)?, cpu_seconds(relay)?);
    let load = loadavg();
    let steps = drawing.stop()?;
    let noted = viewer.take()?;
    Ok(digest(&noted, t0, t1, a1 - a0, r1 - r0, steps, load))
}

fn digest(
    noted: &Noted,
    t0: f64,
    t1: f64,
    agent_cpu: f64,
    relay_cpu: f64,
    steps: Drawn,
    load: String,
) -> AssistPhase {
    let inside = |at: f64| at >= t0 && at < t1;
    let frames: Vec<_> = noted.frames.iter().filter(|f| inside(f.at_ms)).collect();
    let mut phase = AssistPhase {
        window: (t0, t1),
        secs: (t1 - t0) / 1e3,
        drawn: 0,
        frames_in: frames.len(),
        keyframes: frames.iter().filter(|f| f.key).count(),
        bytes: noted.arrivals.iter().filter(|a| inside(a.at_ms)).map(|a| a.bytes).sum(),
        agent_cpu,
        relay_cpu,
        latencies: Vec::new(),
        to_page: Vec::new(),
        in_page: Vec::new(),
        unreadable: 0,
        steps,
        load,
        trace: Vec::new(),
    };
    let mut last = None;
    for d in &noted.drawn {
        let value = stamp::decode(&d.levels);
        if !inside(d.at_ms) {
            last = value.or(last);
            continue;
        }
        phase.drawn += 1;
        let Some(v) = value else {
            phase.unreadable += 1;
            continue;
        };
        // Only the first picture showing a clock value measures it; a repeat is older.
        if last == Some(v) {
            continue;
        }
        last = Some(v);
        let g2g = stamp::elapsed(v, d.at_ms as u64 % stamp::MODULUS) as f64;
        phase.latencies.push(g2g);
        let arrived = d.timestamp.and_then(|ts| noted.frames.iter().find(|f| f.timestamp == ts));
        if let Some(f) = arrived {
            phase.in_page.push(d.at_ms - f.at_ms);
            phase.to_page.push(g2g - (d.at_ms - f.at_ms));
        }
        let in_page = arrived.map_or(-1.0, |f| d.at_ms - f.at_ms);
        phase.trace.push((d.at_ms, g2g, in_page, arrived.is_some_and(|f| f.key)));
    }
    phase
}

fn grab_phase(display: &str, screen: (u16, u16), content: Content, o: &Options) -> Result<GrabPhase> {
    let drawing = Drawing::start(display, Some(content), FPS)?;
    let grab = X11Grab::start(display, screen)?;
    crate::wait("ffmpeg's first output", || Ok(grab.bytes() > 0))?;
    std::thread::sleep(Duration::from_secs_f64(o.warmup));
    let pid = grab.proc.pid();
    let (t0, c0) = (epoch_ms(), cpu_seconds(pid)?);
    std::thread::sleep(Duration::from_secs_f64(o.secs));
    let (t1, c1) = (epoch_ms(), cpu_seconds(pid)?);
    let load = loadavg();
    let steps = drawing.stop()?;
    let (bytes, pictures) = grab.between(t0, t1);
    drop(grab);
    Ok(GrabPhase { window: (t0, t1), secs: (t1 - t0) / 1e3, pictures, bytes, cpu: c1 - c0, steps, load })
}

/// Whether OpenH264's SIMD routines (assembled by nasm) are in the agent binary (the same
/// check as `assist-desktop`'s test `the_simd_build_of_openh264_is_linked`).
fn simd_linked(agent: &Path) -> Result<bool> {
    let exe = std::fs::read(agent)?;
    Ok(["WelsDequant4x4_sse2", "WelsSampleSad16x16_sse2", "WelsDctFourT4_sse2"]
        .iter()
        .all(|name| exe.windows(name.len()).any(|w| w == name.as_bytes())))
}

fn p(v: &[f64], q: f64) -> Option<f64> {
    percentile(v, q)
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

/// Runs every content through assist and then through ffmpeg on `display`.
pub fn run(display: &str, screen: (u16, u16), o: &Options, dir: &Path) -> Result<(Vec<Figure>, String)> {
    let bins = Bins::locate(o.bin_dir.clone())?;
    let simd = simd_linked(&bins.path("assist-agent"))?;
    let world = World::start_agent_with(&bins, &dir.join("live"), &[], &["--display", display])
        .context("starting the relay and the agent")?;
    let console =
        world.relay.console.clone().ok_or_else(|| anyhow!("the relay printed no console address"))?;
    let viewer = Viewer::open(&world.relay.data.join("ca.pem"), &console, AGENT, screen)?;
    let mut assist = Vec::new();
    for content in Content::ALL {
        eprintln!("assist-bench-desktop: live {} through assist", content.name());
        assist
            .push(assist_phase(&world, &viewer, display, Some(content), o).with_context(|| content.name())?);
    }
    if let Some(trace) = &o.trace {
        std::fs::create_dir_all(trace)?;
        for (content, phase) in Content::ALL.iter().zip(&assist) {
            let mut csv = String::from("drawn_ms,g2g_ms,arrived_to_drawn_ms,keyframe\n");
            for (at, g2g, in_page, key) in &phase.trace {
                csv.push_str(&format!("{at:.0},{g2g:.0},{in_page:.0},{}\n", u8::from(*key)));
            }
            std::fs::write(trace.join(format!("live-{}.csv", content.name())), csv)?;
        }
    }
    eprintln!("assist-bench-desktop: live, the clock alone through assist");
    let clock = assist_phase(&world, &viewer, display, None, o).context("the clock alone")?;
    viewer.leave()?;
    // The agent stops capturing once the session is over; ffmpeg must not share the cores
    // with it.
    let log = dir.join("live").join("agent.log");
    crate::wait("the agent to close the desktop", || {
        Ok(std::fs::read_to_string(&log).unwrap_or_default().contains("desktop channel closed"))
    })?;
    let mut grabs = Vec::new();
    for content in Content::ALL {
        eprintln!("assist-bench-desktop: live {} through ffmpeg x11grab", content.name());
        grabs.push(grab_phase(display, screen, content, o).with_context(|| content.name())?);
    }
    drop(world);
    Ok(figures(screen, &assist, &grabs, &clock, simd))
}

fn figures(
    screen: (u16, u16),
    assist: &[AssistPhase],
    grabs: &[GrabPhase],
    clock: &AssistPhase,
    simd: bool,
) -> (Vec<Figure>, String) {
    let (w, h) = screen;
    let base = "x11grab + x264";
    let mut figures = Vec::new();
    let mut summary = String::from(
        "content    fps   agent ms/frame  cores@30  Mbit/s  g2g p50  g2g p95 | x264 fps  ms/frame  Mbit/s | verdicts\n",
    );
    for (i, content) in Content::ALL.iter().enumerate() {
        let (a, g) = (&assist[i], &grabs[i]);
        let name = content.name();
        let fps = a.drawn as f64 / a.secs;
        let g_fps = g.pictures as f64 / g.secs;
        let ms_frame = a.agent_cpu * 1e3 / a.frames_in.max(1) as f64;
        let g_ms_frame = g.cpu * 1e3 / g.pictures.max(1) as f64;
        let cores = ms_frame * 30.0 / 1e3;
        let mbit = a.bytes as f64 * 8.0 / a.secs / 1e6;
        let g_mbit = g.bytes as f64 * 8.0 / g.secs / 1e6;
        let (p50, p95) = (p(&a.latencies, 50.0), p(&a.latencies, 95.0));
        let steps = |d: &Drawn, (from, to): (f64, f64)| {
            format!(
                "{:.1} steps/s (median step {:.1} ms)",
                d.rate(from, to),
                median(&d.step_ms).unwrap_or(0.0)
            )
        };

        let mut f = Figure::new(
            &format!("desktop_live_fps_{name}"),
            &format!("frames per second delivered, {w}x{h} {name}"),
            "fps",
            Better::Higher,
            "assist",
        );
        f.push(Series::new("assist", vec![fps]));
        f.push(Series::new(base, vec![g_fps]));
        f.note(format!(
            "assist: frames decoded and drawn on the page's canvas; {base}: pictures x264 wrote; the screen \
             changed at {} (assist) and {} (x264): the agent's 30 fps cap merges two steps into one frame \
             when the two drift into phase; load {} / {}",
            steps(&a.steps, a.window),
            steps(&g.steps, g.window),
            a.load,
            g.load
        ));
        figures.push(f.finish());

        let mut f = Figure::new(
            &format!("desktop_live_cpu_ms_per_frame_{name}"),
            &format!("CPU per frame sent, {w}x{h} {name}"),
            "ms",
            Better::Lower,
            "assist-agent",
        );
        f.push(Series::new("assist-agent", vec![ms_frame]));
        f.push(Series::new(base, vec![g_ms_frame]));
        if *content != Content::Full {
            f.note(format!(
                "assist-agent at 30 fps: {cores:.2} of one core (target <= {CORES_AT_30}) {}",
                verdict(cores <= CORES_AT_30)
            ));
        }
        f.note(format!(
            "/proc/PID/stat user+system over the window ÷ frames: assist-agent {:.2} cores for {} frames \
             that reached the page (capture, BGRA->I420, encode, QUIC); ffmpeg {:.2} cores; the relay \
             spent {:.2} cores meanwhile",
            a.agent_cpu / a.secs,
            a.frames_in,
            g.cpu / g.secs,
            a.relay_cpu / a.secs
        ));
        figures.push(f.finish());

        let mut f = Figure::new(
            &format!("desktop_live_mbit_s_{name}"),
            &format!("bit rate on the channel, {w}x{h} {name}"),
            "Mbit/s",
            Better::Lower,
            "assist",
        );
        f.push(Series::new("assist", vec![mbit]));
        f.push(Series::new(base, vec![g_mbit]));
        f.note(format!(
            "assist: every desktop message that reached the page ({} keyframes), the clock's blocks included; \
             {base}: its H.264 at CRF 23",
            a.keyframes
        ));
        if *content == Content::Typing {
            f.note(format!("typing target <= {TYPING_MBIT_S} Mbit/s: {}", verdict(mbit <= TYPING_MBIT_S)));
            f.note(format!(
                "the clock alone on a still screen: {:.3} Mbit/s, {:.1} frames/s, agent {:.2} ms per frame",
                clock.bytes as f64 * 8.0 / clock.secs / 1e6,
                clock.drawn as f64 / clock.secs,
                clock.agent_cpu * 1e3 / clock.frames_in.max(1) as f64
            ));
        }
        figures.push(f.finish());

        for (q, tag) in [(50.0, "p50"), (95.0, "p95")] {
            let mut f = Figure::new(
                &format!("desktop_live_g2g_{tag}_ms_{name}"),
                &format!("glass-to-glass, {tag}, {w}x{h} {name}"),
                "ms",
                Better::Lower,
                "assist",
            );
            f.push(Series::new("assist", p(&a.latencies, q).into_iter().collect()));
            let v = p(&a.latencies, q);
            f.note(format!(
                "target <= {G2G_MS} ms on loopback: {}; {} pictures showing a new clock value, {} of {} drawn \
                 frames with an unreadable clock; split at the frame's arrival in the page: {tag} {} ms before, \
                 {} ms decoding and drawing",
                v.map_or("-", |v| verdict(v <= G2G_MS)),
                a.latencies.len(),
                a.unreadable,
                a.drawn,
                p(&a.to_page, q).map_or("-".into(), |v| format!("{v:.1}")),
                p(&a.in_page, q).map_or("-".into(), |v| format!("{v:.1}")),
            ));
            figures.push(f.finish());
        }

        let mut verdicts = Vec::new();
        if *content != Content::Full {
            verdicts.push(format!("<=0.5core@30fps {}", verdict(cores <= CORES_AT_30)));
        }
        verdicts.push(format!(
            "g2g<=50ms p50 {} p95 {}",
            p50.map_or("-", |v| verdict(v <= G2G_MS)),
            p95.map_or("-", |v| verdict(v <= G2G_MS))
        ));
        if *content == Content::Typing {
            verdicts.push(format!("<=0.5Mbit/s {}", verdict(mbit <= TYPING_MBIT_S)));
        }
        let opt = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        summary.push_str(&format!(
            "{name:<9} {fps:>5.1} {ms_frame:>15.2} {cores:>9.2} {mbit:>7.3} {:>8} {:>8} | {g_fps:>8.1} {g_ms_frame:>9.2} {g_mbit:>7.3} | {}\n",
            opt(p50),
            opt(p95),
            verdicts.join(", ")
        ));
    }
    summary.push_str(&format!(
        "the clock alone (in every row above): {:.1} fps, agent {:.2} ms/frame, {:.3} Mbit/s, g2g p50 {} ms\n",
        clock.drawn as f64 / clock.secs,
        clock.agent_cpu * 1e3 / clock.frames_in.max(1) as f64,
        clock.bytes as f64 * 8.0 / clock.secs / 1e6,
        p(&clock.latencies, 50.0).map_or("-".into(), |v| format!("{v:.1}"))
    ));
    summary.push_str(&format!(
        "OpenH264's SIMD (nasm) routines in the release assist-agent: {}\n",
        if simd { "yes" } else { "NO (built without nasm)" }
    ));
    (figures, summary)
}
