//! The agent's reconnect delays: exponential with jitter, one [`Backoff`] per relay
//! connection, so that the agents of a relay that went away do not all come back at the
//! same instant (no thundering herd), and one relay's outage does not slow the others.
//!
//! Each delay is the current step times a random factor in [0.5, 1.5); the step doubles
//! after every attempt up to the maximum, and goes back to the minimum after a connection
//! that lasted ([`Backoff::reset`]).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        Self { min, max: max.max(min), step: min }
    }

    /// The next delay (jittered), and the step doubled for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let delay = jitter(self.step, random_unit());
        self.step = (self.step * 2).min(self.max);
        delay
    }

    /// Back to the minimum (after a connection that lasted).
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

/// `d` scaled by a factor in [0.5, 1.5) chosen by `unit` in [0, 1).
fn jitter(d: Duration, unit: f64) -> Duration {
    d.mul_f64(0.5 + unit)
}

/// A random number in [0, 1).
fn random_unit() -> f64 {
    u32::from_le_bytes(assist_certs::random_bytes()) as f64 / (u32::MAX as f64 + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(4));
        let steps: Vec<Duration> = (0..6)
            .map(|_| {
                let step = b.step;
                let d = b.next_delay();
                assert!(d >= step / 2 && d < step * 3 / 2, "{d:?} outside the jitter of {step:?}");
                step
            })
            .collect();
        let ms: Vec<u128> = steps.iter().map(|s| s.as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 4000, 4000]);
        b.reset();
        assert_eq!(b.step, Duration::from_millis(500));
    }

    /// A thousand agents whose relay went away at the same moment: their first retries
    /// spread over the whole jitter window instead of arriving together.
    #[test]
    fn a_thousand_agents_retry_spread_out() {
        let base = Duration::from_secs(1);
        let mut firsts: Vec<u128> =
            (0..1000).map(|_| Backoff::new(base, base * 60).next_delay().as_millis()).collect();
        firsts.sort_unstable();
        let (lo, hi) = (firsts[0], firsts[999]);
        assert!(lo >= 500 && hi < 1500, "{lo}..{hi}");
        // Ten 100 ms buckets across the window: none holds more than a fifth of them
        // (uniform would be a tenth each).
        let mut buckets = [0u32; 10];
        for f in &firsts {
            buckets[((f - 500) / 100) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| (40..200).contains(&n)), "{buckets:?}");
        let distinct = {
            let mut d = firsts.clone();
            d.dedup();
            d.len()
        };
        assert!(distinct > 500, "only {distinct} distinct delays");
    }

    #[test]
    fn the_jitter_factor_spans_half_to_one_and_a_half() {
        let d = Duration::from_secs(2);
        assert_eq!(jitter(d, 0.0), Duration::from_secs(1));
        assert!(jitter(d, 0.999_999) < Duration::from_secs(3));
    }
}
