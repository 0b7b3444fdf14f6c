//! [`Desktop`]: a screen turned into a stream of [`AgentToViewer`] messages on a thread of
//! its own, and input back into it.
//!
//! - The first batch is the stream's size, the pointer's image and position, and a
//!   keyframe. After that a batch is made only when something changed (or a keyframe was
//!   asked for), at most `max_fps` times a second.
//! - Latest frame wins: the next picture is grabbed and encoded only once the previous
//!   batch was taken, so a slow consumer gets fewer, newer frames, never a growing queue.
//!   A picture the encoder skips is grabbed again a period later, so the screen's last
//!   state always reaches the viewer.
//! - Input goes through its own X connection, opened on first use, so a view-only session
//!   never opens one. Held keys and buttons are released by [`Desktop::release_all`] and
//!   when the `Desktop` is dropped.
//!
//! It does no networking and decides nothing about consent: the caller checks that the
//! session may see the screen before opening it and may control it before injecting.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use assist_proto::desktop::{AgentToViewer, Codec, InputEvent, StreamInfo};

use crate::error::DesktopError;
use crate::h264::{H264Encoder, H264Settings};
use crate::input::XTestInput;
use crate::source::{Changes, Encoder, InputSink, ScreenSource};
use crate::x11::{GrabMethod, X11Screen};

/// How a desktop is opened.
#[derive(Clone, Debug)]
pub struct DesktopConfig {
    /// The X display (`:0`); `None` means `$DISPLAY`. The process needs that display's
    /// `XAUTHORITY` in its environment when the display asks for one.
    pub display: Option<String>,
    /// Most frames per second. Default 30.
    pub max_fps: u32,
    /// Encoder settings (bit rate, keyframe interval).
    pub h264: H264Settings,
    /// How pictures are grabbed. Default: shared memory.
    pub grab: GrabMethod,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        DesktopConfig {
            display: None,
            max_fps: 30,
            h264: H264Settings::default(),
            grab: GrabMethod::SharedMemory,
        }
    }
}

/// How often the capture thread looks up from an idle screen to notice a keyframe request
/// or a stop.
const IDLE_TICK: Duration = Duration::from_millis(100);

#[derive(Default)]
struct State {
    batch: Option<Vec<AgentToViewer>>,
    keyframe: bool,
    stop: bool,
    failed: Option<String>,
    frames: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A live desktop: messages out with [`Desktop::next`], input in with [`Desktop::inject`].
pub struct Desktop {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    display: Option<String>,
    input: Mutex<Option<XTestInput>>,
}

impl Desktop {
    /// Opens the display and starts capturing. Fails at once if the display cannot be
    /// reached or lacks what capture needs.
    pub fn open(config: DesktopConfig) -> Result<Desktop, DesktopError> {
        let screen = X11Screen::open_with(config.display.as_deref(), config.grab)?;
        let encoder = H264Encoder::new(config.h264)?;
        Ok(Self::start(Box::new(screen), Box::new(encoder), config.max_fps, config.display))
    }

    /// Starts capturing from any screen source into any encoder.
    pub fn start(
        screen: Box<dyn ScreenSource>,
        encoder: Box<dyn Encoder>,
        max_fps: u32,
        display: Option<String>,
    ) -> Desktop {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), changed: Condvar::new() });
        let period = Duration::from_secs(1) / max_fps.max(1);
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("desktop-capture".into())
            .spawn(move || {
                let result = capture_loop(&thread_shared, screen, encoder, period);
                let mut state = thread_shared.lock();
                if let Err(e) = result {
                    tracing::warn!(error = %e, "desktop capture stopped");
                    state.failed = Some(e.to_string());
                }
                state.stop = true;
                thread_shared.changed.notify_all();
            })
            .expect("spawn the capture thread");
        Desktop { shared, thread: Some(thread), display, input: Mutex::new(None) }
    }

    /// Waits up to `timeout` for the next batch of messages (in order: stream info, cursor,
    /// frame). `Ok(None)` when nothing changed in that time.
    pub fn next(&self, timeout: Duration) -> Result<Option<Vec<AgentToViewer>>, DesktopError> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(batch) = state.batch.take() {
                self.shared.changed.notify_all();
                return Ok(Some(batch));
            }
            if state.stop {
                return Err(DesktopError::Stopped(state.failed.clone().unwrap_or_else(|| "closed".into())));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            state = self.shared.changed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Asks for a keyframe in the next batch (a viewer joined or lost data).
    pub fn request_keyframe(&self) {
        self.shared.lock().keyframe = true;
        self.shared.changed.notify_all();
    }

    /// Frames encoded so far.
    pub fn frames_encoded(&self) -> u64 {
        self.shared.lock().frames
    }

    /// Injects one input event (the caller has checked that control is granted).
    pub fn inject(&self, event: &InputEvent) -> Result<(), DesktopError> {
        let mut input = self.input.lock().unwrap_or_else(|p| p.into_inner());
        if input.is_none() {
            *input = Some(XTestInput::open(self.display.as_deref())?);
        }
        input.as_mut().expect("opened above").inject(event)
    }

    /// Releases every key and button held through [`Desktop::inject`]: call it when control
    /// is revoked. Returns once the server has released them.
    pub fn release_all(&self) -> Result<(), DesktopError> {
        match self.input.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(input) => input.release_all(),
            None => Ok(()),
        }
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        if let Err(e) = self.release_all() {
            tracing::warn!(error = %e, "releasing held input failed");
        }
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn capture_loop(
    shared: &Shared,
    mut screen: Box<dyn ScreenSource>,
    mut encoder: Box<dyn Encoder>,
    period: Duration,
) -> Result<(), DesktopError> {
    let start = Instant::now();
    let mut last_frame: Option<Instant> = None;
    let mut first = true;
    let mut pending = Changes::default();
    let mut last_position = None;
    let mut announced = None;
    loop {
        // Latest frame wins: wait until the previous batch was taken.
        {
            let mut state = shared.lock();
            while state.batch.is_some() && !state.stop {
                state = shared.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stop {
                return Ok(());
            }
        }
        let seen = screen.wait_changes(if pending.any() { Duration::ZERO } else { IDLE_TICK })?;
        merge(&mut pending, seen);
        let keyframe = std::mem::take(&mut shared.lock().keyframe) || first;
        if !pending.any() && !keyframe {
            continue;
        }
        // At most one batch per period: changes arriving meanwhile join this one.
        if let Some(last) = last_frame {
            let next_at = last + period;
            let now = Instant::now();
            if now < next_at {
                std::thread::sleep(next_at - now);
                let seen = screen.wait_changes(Duration::ZERO)?;
                merge(&mut pending, seen);
            }
        }
        // The period runs from one batch's start to the next's: counted from the end of
        // the encode, a 7 ms encode made 30 fps into 24 (measured by `bench/run desktop`).
        let started = Instant::now();
        let changes = std::mem::take(&mut pending);
        let mut batch = Vec::new();
        let mut keyframe = keyframe;
        if announce(&mut announced, screen.size(), &mut batch) {
            keyframe = true;
        }
        if (changes.cursor_shape || first)
            && let Some(shape) = screen.cursor_shape()?
        {
            batch.push(AgentToViewer::CursorShape(shape));
        }
        // Raw motion tells of device moves; a pointer warped by a program is caught with the
        // next picture. Only a position that changed is sent.
        if changes.cursor_moved || changes.damaged || first {
            let position = screen.cursor_position()?;
            if last_position != Some(position) {
                last_position = Some(position);
                batch.push(AgentToViewer::CursorPosition(position));
            }
        }
        let mut encoded = false;
        if changes.damaged || changes.resized || keyframe {
            let timestamp_us = start.elapsed().as_micros() as u64;
            let picture = screen.grab()?;
            // The screen can change size between the check above and the grab: the viewer
            // hears of it before the first frame at the new size.
            if announce(&mut announced, (picture.width, picture.height), &mut batch) {
                keyframe = true;
            }
            match encoder.encode(&picture, timestamp_us, keyframe)? {
                Some(frame) => {
                    batch.push(AgentToViewer::Frame(frame));
                    encoded = true;
                }
                // The encoder skipped this picture: try again next period, so the screen's
                // last state is always sent in the end.
                None => {
                    pending.damaged = true;
                    if keyframe {
                        shared.lock().keyframe = true;
                    }
                }
            }
            last_frame = Some(started);
        }
        first = false;
        if batch.is_empty() {
            continue;
        }
        last_frame = Some(started);
        let mut state = shared.lock();
        if encoded {
            state.frames += 1;
        }
        state.batch = Some(batch);
        shared.changed.notify_all();
    }
}

/// Adds a `StreamInfo` to the batch if the picture size differs from the one last
/// announced (always the first time); returns whether it did (the next frame must then be
/// a keyframe). Sizes are cut to even, as the encoder cuts them.
fn announce(
    announced: &mut Option<(u16, u16)>,
    (width, height): (u16, u16),
    batch: &mut Vec<AgentToViewer>,
) -> bool {
    let size = (width & !1, height & !1);
    if *announced == Some(size) {
        return false;
    }
    *announced = Some(size);
    batch.push(AgentToViewer::StreamInfo(StreamInfo { codec: Codec::H264, width: size.0, height: size.1 }));
    true
}

fn merge(into: &mut Changes, more: Changes) {
    into.damaged |= more.damaged;
    into.cursor_shape |= more.cursor_shape;
    into.cursor_moved |= more.cursor_moved;
    into.resized |= more.resized;
}
