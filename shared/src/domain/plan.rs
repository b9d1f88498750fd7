//! Plans: an allowance each day, week or month from an anchor, in UTC
//! calendar units. A month anchored on the 31st starts on the last day of
//! shorter months (each period start is the anchor plus k months, clamped),
//! so periods never drift.

use chrono::{DateTime, Datelike, Months, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{Credits, LotKey, Timestamp};

/// The priority of plan allowance lots.
pub const PLAN_PRIORITY: u8 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    pub const ALL: &'static [&'static str] = &["day", "week", "month"];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub allowance: Credits,
    pub period: Period,
    /// Unused credits carried into the next period, at most.
    pub rollover: Credits,
    /// The start of period 0.
    pub anchor: Timestamp,
    /// No period starts at or after this (a deleted plan runs to the end of
    /// its current period).
    pub ends_at: Option<Timestamp>,
}

fn datetime(at: Timestamp) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(at.millis()).unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

impl Plan {
    /// The start of period `k` (k ≥ 0), if representable.
    pub fn start(&self, k: i64) -> Option<Timestamp> {
        let anchor = datetime(self.anchor);
        let at = match self.period {
            Period::Day => anchor.checked_add_signed(TimeDelta::try_days(k)?)?,
            Period::Week => anchor.checked_add_signed(TimeDelta::try_weeks(k)?)?,
            Period::Month => anchor.checked_add_months(Months::new(u32::try_from(k).ok()?))?,
        };
        Some(Timestamp(at.timestamp_millis()))
    }

    /// The index of the period that contains `at` (none before the anchor).
    pub fn index_at(&self, at: Timestamp) -> Option<i64> {
        if at < self.anchor {
            return None;
        }
        let elapsed = at.millis() - self.anchor.millis();
        let mut k = match self.period {
            Period::Day => elapsed / 86_400_000,
            Period::Week => elapsed / (7 * 86_400_000),
            Period::Month => {
                let (from, to) = (datetime(self.anchor), datetime(at));
                i64::from(to.year() - from.year()) * 12 + i64::from(to.month()) - i64::from(from.month())
            }
        };
        // Month lengths (and the clamping) make the estimate off by one at most.
        while k > 0 && self.start(k).is_none_or(|s| s > at) {
            k -= 1;
        }
        while self.start(k + 1).is_some_and(|s| s <= at) {
            k += 1;
        }
        Some(k)
    }

    /// The period containing `at`, as (start, end), while the plan runs.
    pub fn period_at(&self, at: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let k = self.index_at(at)?;
        let (start, end) = (self.start(k)?, self.start(k + 1)?);
        self.runs_at(start).then_some((start, end))
    }

    /// Whether a period starting at `start` belongs to the plan.
    pub fn runs_at(&self, start: Timestamp) -> bool {
        start >= self.anchor && self.ends_at.is_none_or(|end| start < end)
    }

    /// The first period start after `after` (or, with none, the start of the
    /// period containing `now`): the next refill, if the plan still runs then.
    pub fn next_refill(&self, after: Option<Timestamp>, now: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let k = match after {
            Some(last) => self.index_at(last).map_or(0, |k| k + 1),
            None => self.index_at(now).unwrap_or(0),
        };
        let (start, end) = (self.start(k)?, self.start(k + 1)?);
        self.runs_at(start).then_some((start, end))
    }

    /// The lot a period's allowance lands in: it expires at the period's end.
    pub fn lot(end: Timestamp) -> LotKey {
        LotKey { priority: PLAN_PRIORITY, expires_at: Some(end) }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        Timestamp(DateTime::parse_from_rfc3339(rfc3339).expect("date").timestamp_millis())
    }

    fn plan(period: Period, anchor: &str) -> Plan {
        Plan {
            name: "pro".into(),
            allowance: Credits(100),
            period,
            rollover: Credits(20),
            anchor: at(anchor),
            ends_at: None,
        }
    }

    #[test]
    fn a_month_anchored_on_the_31st_ends_on_the_last_day_of_shorter_months() {
        let p = plan(Period::Month, "2027-01-31T09:00:00Z");
        let starts: Vec<String> = (0..5).map(|k| p.start(k).expect("start").to_rfc3339()).collect();
        assert_eq!(
            starts,
            [
                "2027-01-31T09:00:00.000Z",
                "2027-02-28T09:00:00.000Z",
                "2027-03-31T09:00:00.000Z",
                "2027-04-30T09:00:00.000Z",
                "2027-05-31T09:00:00.000Z"
            ]
        );
        // A leap year's February.
        let leap = plan(Period::Month, "2028-01-31T00:00:00Z");
        assert_eq!(leap.start(1).map(Timestamp::to_rfc3339).as_deref(), Some("2028-02-29T00:00:00.000Z"));
        assert_eq!(
            leap.period_at(at("2028-02-29T12:00:00Z")),
            Some((at("2028-02-29T00:00:00Z"), at("2028-03-31T00:00:00Z")))
        );
        assert_eq!(
            leap.period_at(at("2028-02-28T23:59:59.999Z")),
            Some((at("2028-01-31T00:00:00Z"), at("2028-02-29T00:00:00Z")))
        );
    }

    #[test]
    fn days_and_weeks_are_fixed_lengths_in_utc() {
        let day = plan(Period::Day, "2026-12-01T06:00:00Z");
        assert_eq!(
            day.period_at(at("2026-12-03T05:59:59.999Z")),
            Some((at("2026-12-02T06:00:00Z"), at("2026-12-03T06:00:00Z")))
        );
        let week = plan(Period::Week, "2026-12-01T00:00:00Z");
        assert_eq!(week.index_at(at("2026-12-15T00:00:00Z")), Some(2));
        assert_eq!(week.index_at(at("2026-11-30T00:00:00Z")), None, "before the anchor");
    }

    #[test]
    fn refills_follow_one_another_and_stop_when_the_plan_ends() {
        let mut p = plan(Period::Month, "2026-12-01T00:00:00Z");
        let now = at("2026-12-15T00:00:00Z");
        let first = p.next_refill(None, now).expect("the current period");
        assert_eq!(first, (at("2026-12-01T00:00:00Z"), at("2027-01-01T00:00:00Z")));
        let second = p.next_refill(Some(first.0), now).expect("the next period");
        assert_eq!(second.0, at("2027-01-01T00:00:00Z"));
        p.ends_at = Some(first.1);
        assert_eq!(p.next_refill(Some(first.0), now), None);
        assert_eq!(Plan::lot(first.1), LotKey { priority: 20, expires_at: Some(first.1) });
    }

    /// Whatever the anchor and the instant, the period found contains the
    /// instant and periods tile time: each ends where the next starts.
    #[test]
    fn property_periods_contain_their_instant_and_tile_time() {
        let mut rng = StdRng::seed_from_u64(2028);
        for _ in 0..3_000 {
            let period = [Period::Day, Period::Week, Period::Month][rng.gen_range(0..3)];
            // Anchors from 2026 to 2030, on any day (the 29th–31st included).
            let anchor = Timestamp(rng.gen_range(1_767_225_600_000i64..1_893_456_000_000));
            let p = Plan { anchor, ..plan(period, "2026-01-01T00:00:00Z") };
            let instant = Timestamp(anchor.millis() + rng.gen_range(0..4 * 365 * 86_400_000i64));
            let (start, end) = p.period_at(instant).expect("a period");
            assert!(start <= instant && instant < end, "{period:?} {anchor:?} {instant:?}");
            let k = p.index_at(instant).expect("index");
            assert_eq!(p.start(k + 1), Some(end));
            assert_eq!(p.period_at(end).map(|(s, _)| s), Some(end));
        }
    }
}
