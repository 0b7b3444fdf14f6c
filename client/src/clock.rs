//! The wall clock as both sides of the client read it, and a span of it as people read it.
//!
//! Shared by the engineer's CLI and the agent, so neither imports the other. It does not
//! format points in time (the engineer's tables do that, in [`crate::engineer::render`]).

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A duration in whole seconds, as `4m 05s` (a negative one as `0s`).
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s >= 60 { format!("{}m {:02}s", s / 60, s % 60) } else { format!("{s}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_minutes_and_seconds() {
        assert_eq!(duration(65_000), "1m 05s");
        assert_eq!(duration(59_999), "59s");
        assert_eq!(duration(-5), "0s");
        assert!(now_ms() > 1_600_000_000_000);
    }
}
