//! The model's own calendar: UTC dates from epoch milliseconds, month
//! lengths and leap years, a plan's periods (days, weeks, months, a
//! month's day clamped to its last day), and the date-times the API
//! writes and reads.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use serde_json::Value;

use super::ops::PeriodKind;

pub(super) const DAY_MS: i64 = 86_400_000;

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

pub(super) fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Epoch milliseconds of a UTC calendar instant.
pub(super) fn utc_millis(year: i64, month: u32, day: u32, ms_of_day: i64) -> i64 {
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).unwrap_or_default();
    let days = date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days();
    days * DAY_MS + ms_of_day
}

/// (year, month 1–12, day, milliseconds into the day) of an epoch instant.
pub(super) fn civil(at: i64) -> (i64, u32, u32, i64) {
    let dt = DateTime::from_timestamp_millis(at).unwrap_or_default().naive_utc();
    let ms_of_day = i64::from(dt.num_seconds_from_midnight()) * 1000 + i64::from(dt.nanosecond() / 1_000_000);
    (i64::from(dt.year()), dt.month(), dt.day(), ms_of_day)
}

pub(super) fn rfc3339(at: i64) -> String {
    DateTime::from_timestamp_millis(at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

pub(super) fn parse_time(value: &Value) -> Result<Option<i64>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|e| format!("not a date-time: {s:?}: {e}")),
        other => Err(format!("not a date-time: {other}")),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PlanState {
    pub(super) name: &'static str,
    pub(super) allowance: u64,
    pub(super) period: PeriodKind,
    pub(super) rollover: u64,
    pub(super) anchor: i64,
    pub(super) ends_at: Option<i64>,
}

impl PlanState {
    /// The start of period `k`: the anchor plus k days, weeks or months (a
    /// month's day clamped to its last day, the time of day kept).
    pub(super) fn start(&self, k: i64) -> i64 {
        match self.period {
            PeriodKind::Day => self.anchor + k * DAY_MS,
            PeriodKind::Week => self.anchor + k * 7 * DAY_MS,
            PeriodKind::Month => {
                let (year, month, day, ms) = civil(self.anchor);
                let months = year * 12 + i64::from(month) - 1 + k;
                let (y, m) = (months.div_euclid(12), (months.rem_euclid(12) + 1) as u32);
                utc_millis(y, m, day.min(days_in_month(y, m)), ms)
            }
        }
    }

    /// The period containing `at` (none before the anchor).
    pub(super) fn index(&self, at: i64) -> Option<i64> {
        if at < self.anchor {
            return None;
        }
        let mut k = match self.period {
            PeriodKind::Day => (at - self.anchor) / DAY_MS,
            PeriodKind::Week => (at - self.anchor) / (7 * DAY_MS),
            PeriodKind::Month => {
                let ((y0, m0, ..), (y1, m1, ..)) = (civil(self.anchor), civil(at));
                (y1 - y0) * 12 + i64::from(m1) - i64::from(m0)
            }
        };
        while k > 0 && self.start(k) > at {
            k -= 1;
        }
        while self.start(k + 1) <= at {
            k += 1;
        }
        Some(k)
    }

    fn runs(&self, start: i64) -> bool {
        start >= self.anchor && self.ends_at.is_none_or(|end| start < end)
    }

    /// The period containing `now`, while the plan runs.
    pub(super) fn current(&self, now: i64) -> Option<(i64, i64)> {
        let k = self.index(now)?;
        let start = self.start(k);
        self.runs(start).then(|| (start, self.start(k + 1)))
    }

    /// The next period to refill: the one after the last refilled, or (none
    /// yet) the one containing now, or the first.
    pub(super) fn next_refill(&self, last: Option<i64>, now: i64) -> Option<(i64, i64)> {
        let k = match last {
            Some(last) => self.index(last).map_or(0, |k| k + 1),
            None => self.index(now).unwrap_or(0),
        };
        let start = self.start(k);
        self.runs(start).then(|| (start, self.start(k + 1)))
    }
}
