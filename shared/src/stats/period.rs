//! Time buckets of the aggregates (hour, day, ISO week, month) and the
//! periods monitoring reads them by.

use chrono::{DateTime, Datelike, Utc};

use crate::domain::Timestamp;

/// The buckets a moment falls in, coarsest last.
pub fn buckets(at: Timestamp) -> [String; 4] {
    let t = DateTime::<Utc>::from_timestamp_millis(at.millis()).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let week = t.iso_week();
    [
        format!("H#{}", t.format("%Y-%m-%dT%H")),
        format!("D#{}", t.format("%Y-%m-%d")),
        format!("W#{}-W{:02}", week.year(), week.week()),
        format!("M#{}", t.format("%Y-%m")),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(raw: &str) -> Option<Period> {
        match raw {
            "hour" => Some(Period::Hour),
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The bucket `steps` periods before `at`.
    pub fn bucket_before(self, at: Timestamp, steps: i64) -> String {
        let millis = match self {
            Period::Hour => 3_600_000 * steps,
            Period::Day => 86_400_000 * steps,
            Period::Week => 7 * 86_400_000 * steps,
            Period::Month => 0,
        };
        if self == Period::Month {
            let t = DateTime::<Utc>::from_timestamp_millis(at.millis()).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            let months = t.year() as i64 * 12 + t.month0() as i64 - steps;
            return format!("M#{:04}-{:02}", months.div_euclid(12), months.rem_euclid(12) + 1);
        }
        buckets(Timestamp(at.millis() - millis))[self.index()].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_of_a_moment() {
        // 2026-11-22T18:04:05Z is a Sunday of ISO week 47.
        let b = buckets(Timestamp(1_795_370_645_000));
        assert_eq!(b, ["H#2026-11-22T18", "D#2026-11-22", "W#2026-W47", "M#2026-11"].map(String::from));
        assert_eq!(Period::Month.bucket_before(Timestamp(1_795_370_645_000), 11), "M#2025-12");
        assert_eq!(Period::Hour.bucket_before(Timestamp(1_795_370_645_000), 19), "H#2026-11-21T23");
    }
}
