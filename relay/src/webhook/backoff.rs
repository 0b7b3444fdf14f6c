//! When a failed delivery is tried again, and when it is given up.
//!
//! After attempt `n` fails, the next comes after `base · 2^(n-1)`, capped at `cap`, less
//! a random part of up to half (so that many deliveries failing together, when a receiver
//! comes back, do not all retry in the same instant). A delivery is given up after
//! `max_attempts` attempts, or once it is older than `max_age` when an attempt fails.
//!
//! Pure arithmetic: the clock and the random number are arguments.

use std::time::Duration;

/// The retry schedule. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failure, before jitter. Default 2 s: a receiver that
    /// restarts or hiccups is usually back within seconds.
    pub base: Duration,
    /// Longest delay between two attempts. Default 15 minutes.
    pub cap: Duration,
    /// Attempts before giving up, the first included. Default 12 (25 to 47 minutes of
    /// retrying with the default base and cap).
    pub max_attempts: u32,
    /// Age after which a failed delivery is given up whatever its count. Default 24 h:
    /// an alert older than a day is noise, and the session is in the audit log anyway.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(15 * 60),
            max_attempts: 12,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    GiveUp,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl RetryPolicy {
    /// The delay after attempt `failed` (1 for the first) fails, before jitter.
    pub fn delay(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(31);
        self.base.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// Decides after attempt `failed` of a delivery queued at `created_at` failed at `now`.
    /// `unit` is a random number in `[0, 1)`: the jitter.
    pub fn next(&self, failed: u32, created_at: i64, now: i64, unit: f64) -> Next {
        if failed >= self.max_attempts || now.saturating_sub(created_at) >= ms(self.max_age) {
            return Next::GiveUp;
        }
        let full = ms(self.delay(failed));
        let jitter = (full as f64 / 2.0 * unit.clamp(0.0, 1.0)) as i64;
        Next::RetryAt(now.saturating_add(full - jitter))
    }
}

/// A random number in `[0, 1)` from the system's generator, for [`RetryPolicy::next`].
pub fn random_unit() -> f64 {
    f64::from(u32::from_be_bytes(assist_certs::random_bytes())) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
            max_attempts: 5,
            max_age: Duration::from_secs(3600),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = policy();
        let secs: Vec<u64> = (1..=8).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.delay(0), Duration::from_secs(2));
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(60), "no overflow");
    }

    #[test]
    fn jitter_takes_off_at_most_half() {
        let p = policy();
        assert_eq!(p.next(3, 0, 1_000, 0.0), Next::RetryAt(1_000 + 8_000));
        assert_eq!(p.next(3, 0, 1_000, 0.5), Next::RetryAt(1_000 + 6_000));
        assert_eq!(p.next(3, 0, 1_000, 0.999_999), Next::RetryAt(1_000 + 4_000 + 1));
        for _ in 0..1000 {
            let Next::RetryAt(at) = p.next(1, 0, 0, random_unit()) else { panic!("gave up") };
            assert!((1_000..=2_000).contains(&at), "{at}");
        }
    }

    #[test]
    fn gives_up_after_the_last_attempt_or_when_too_old() {
        let p = policy();
        assert!(matches!(p.next(4, 0, 10, 0.0), Next::RetryAt(_)));
        assert_eq!(p.next(5, 0, 10, 0.0), Next::GiveUp);
        assert_eq!(p.next(1, 0, 3_600_000, 0.0), Next::GiveUp);
        assert!(matches!(p.next(1, 0, 3_599_999, 0.0), Next::RetryAt(_)));
    }

    #[test]
    fn random_units_stay_in_range() {
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
