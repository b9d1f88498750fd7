//! Auto-recharge's rules that need no I/O: how often a user's saved card may
//! be charged. Recharges are counted per calendar month (UTC).

use chrono::{DateTime, Utc};

use super::Timestamp;

/// The most recharges a user may allow in one month.
pub const MAX_MONTHLY_RECHARGES: u32 = 100;

/// The month a moment falls in, as recharges are counted: `2026-12`.
pub fn recharge_month(at: Timestamp) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(at.millis()).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    t.format("%Y-%m").to_string()
}

/// Recharges made in the month of `now`, from a count kept with the month
/// it counts: a count of an earlier month is none of this one.
pub fn recharges_this_month(counted_month: Option<&str>, count: u32, now: Timestamp) -> u32 {
    match counted_month {
        Some(month) if month == recharge_month(now) => count,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-12-31T23:59:59.999Z and the millisecond after it.
    const LAST_MS_OF_2026: Timestamp = Timestamp(1_798_761_599_999);

    #[test]
    fn months_turn_at_midnight_utc() {
        assert_eq!(recharge_month(LAST_MS_OF_2026), "2026-12");
        assert_eq!(recharge_month(Timestamp(LAST_MS_OF_2026.millis() + 1)), "2027-01");
    }

    #[test]
    fn a_count_of_another_month_is_none_of_this_one() {
        assert_eq!(recharges_this_month(Some("2026-12"), 2, LAST_MS_OF_2026), 2);
        assert_eq!(recharges_this_month(Some("2026-12"), 2, Timestamp(LAST_MS_OF_2026.millis() + 1)), 0);
        assert_eq!(recharges_this_month(Some("2026-11"), 3, LAST_MS_OF_2026), 0);
        assert_eq!(recharges_this_month(None, 3, LAST_MS_OF_2026), 0);
    }
}
