//! Transfer progress for people: a bar with rate and ETA on a terminal, nothing when
//! standard error is piped. Also the optional rate limit (`--limit-rate`), which paces a
//! transfer by sleeping when it is ahead of the allowed rate.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

/// Progress of one file.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    moved: u64,
    limit: Option<u64>,
}

impl Progress {
    /// `name` shown before the bar; `total` bytes expected, `done` already there (resume).
    /// `quiet`: no bar even on a terminal.
    pub fn new(name: &str, total: u64, done: u64, limit: Option<u64>, quiet: bool) -> Self {
        let bar = if !quiet && crate::term::stderr_is_tty() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg:30!} [{bar:25}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            // A remote file name is foreign text; the bar redraws it on every tick.
            bar.set_message(assist_proto::text::inert(name, 200));
            bar.set_position(done);
            bar
        } else {
            ProgressBar::hidden()
        };
        Self { bar, started: Instant::now(), moved: 0, limit }
    }

    /// Counts `n` more bytes; with a rate limit, waits until they are due.
    pub async fn advance(&mut self, n: u64) {
        self.bar.inc(n);
        self.moved += n;
        if let Some(rate) = self.limit.filter(|r| *r > 0) {
            let due = Duration::from_secs_f64(self.moved as f64 / rate as f64);
            let elapsed = self.started.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
