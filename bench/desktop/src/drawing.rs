//! The screen's activity during a live measurement: one content ([`crate::content`]), or
//! none, and the clock ([`crate::stamp`]) drawn on a thread at a steady rate (30 steps a
//! second), each step the content's change and then the clock, until stopped.
//!
//! The rate is kept against a schedule, without bursts: after a step that ran late the
//! next one follows at once and the schedule starts again from there, so a slow
//! full-screen repaint shows as fewer steps, which [`Drawn`] reports. It measures nothing
//! else.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use crate::content::{Content, Painter};
use crate::stamp::{self, Stamp};

/// What the thread drew.
pub struct Drawn {
    /// When each step was on the screen (epoch milliseconds, as `live::epoch_ms`).
    pub at_ms: Vec<f64>,
    /// Wall milliseconds of each step (content and clock, each waited for).
    pub step_ms: Vec<f64>,
}

impl Drawn {
    /// Steps per second on the screen between `from` and `to` (epoch milliseconds).
    pub fn rate(&self, from: f64, to: f64) -> f64 {
        self.at_ms.iter().filter(|t| **t >= from && **t < to).count() as f64 * 1e3 / (to - from).max(1.0)
    }
}

/// A drawing thread; stop it with [`Drawing::stop`].
pub struct Drawing {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Drawn>>>,
    /// The clock's value when the first step was drawn.
    pub first_stamp: u64,
}

impl Drawing {
    /// Opens the content's window (if any) and the clock's (above it) on `display`, and
    /// draws a step every `1/fps` s from now on. Returns once the first step is on the
    /// screen.
    pub fn start(display: &str, content: Option<Content>, fps: u32) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (display, flag) = (display.to_owned(), stop.clone());
        let name = content.map_or("clock", Content::name);
        let thread = std::thread::Builder::new().name(format!("draw-{name}")).spawn(move || {
            let painter = content.map(|c| Painter::new(&display, c)).transpose();
            let opened = painter.and_then(|p| Ok((p, Stamp::new(&display)?)));
            let (mut painter, clock) = match opened {
                Ok(both) => both,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!("{e:#}")));
                    return Err(e);
                }
            };
            let period = Duration::from_secs(1) / fps.max(1);
            let mut drawn = Drawn { at_ms: Vec::new(), step_ms: Vec::new() };
            let mut next = Instant::now();
            let mut ready = Some(ready_tx);
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                if let Some(p) = painter.as_mut() {
                    p.step()?;
                }
                let value = stamp::now_ms();
                clock.show(value)?;
                drawn.step_ms.push(t.elapsed().as_secs_f64() * 1e3);
                drawn.at_ms.push(crate::live::epoch_ms());
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Ok(value));
                }
                next = (next + period).max(Instant::now());
                // Pacing, not waiting for an event: the schedule is the point.
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(drawn)
        })?;
        let first_stamp =
            ready_rx.recv_timeout(Duration::from_secs(60)).context("the drawing thread did not start")??;
        Ok(Drawing { stop, thread: Some(thread), first_stamp })
    }

    /// Stops drawing (the windows go) and says what was drawn.
    pub fn stop(mut self) -> Result<Drawn> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().context("stopped twice")?;
        thread.join().map_err(|_| anyhow!("the drawing thread panicked"))?
    }
}

impl Drop for Drawing {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
