//! When outgoing events are tried, how long a claim on them lasts and how
//! long they are kept.

use std::time::Duration;

/// One attempt's time limit.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Waits after each failed attempt: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
/// (eight attempts over about 27.6 hours).
pub const SCHEDULE_SECONDS: [i64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];
/// How long a claimed publish or attempt is left to its claimer before the
/// job takes it over: well above an attempt's timeout.
pub const LEASE_MS: i64 = 60_000;
/// Events and deliveries are kept this long (then TTL removes them).
pub const KEEP_SECONDS: i64 = 30 * 86_400;

/// The wait after the `tried`-th failed attempt; `None` when it was the last.
pub fn retry_after(tried: u32) -> Option<i64> {
    SCHEDULE_SECONDS.get(tried.checked_sub(1)? as usize).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spans_more_than_a_day() {
        assert_eq!(retry_after(0), None);
        assert_eq!(retry_after(1), Some(5));
        assert_eq!(retry_after(7), Some(36_000));
        assert_eq!(retry_after(8), None);
        assert!(SCHEDULE_SECONDS.iter().sum::<i64>() >= 86_400);
    }
}
