//! Randomized operation sequences checked against a model of the ledger.
//!
//! An episode is a sequence of batches generated from a seed; the operations
//! of a batch are sent at once to the dev server (over HTTP, webhooks
//! signed), then the answers are checked against the model: some order of
//! the batch must give exactly those answers (the batch is linearizable),
//! and afterwards the table must equal the model state of one such order —
//! hold states and splits (captured units, capture keys, the closing
//! confirm's units, `expiresAt`, the lots each hold took), each balance as
//! stored (every lot's remaining and held credits, whether its expiry is
//! written down, spent, granted, expired, debited, the last refilled period
//! and the due-work index entry, never later than what falls due next),
//! history lines (type, amount, date), parked deliveries — and every balance as `GET /v1/balance` shows it
//! (the figures, each live lot, `nextExpiry`, the plan), and the books must
//! balance on their own. Holds are captured in parts (non-final confirms
//! with an `Idempotency-Key`), closed by a final confirm, a release, an
//! expiry or a provider's total, refunded, and extended (up to the 7-day
//! cap, as a long job's are). Grants land in credit lots (a priority, an
//! expiry), holds and debits take from them in burn order, returns go back
//! to the lots they came from (or expire at once), lots expire, and plans
//! refill each period with a rollover; the clock jumps across lot expiries
//! and period ends, month ends and a leap day among them. The model keeps
//! its own lot, period and refill arithmetic (none of the service's).
//! Stripe's events (`model/purchases.rs`) pay for sessions (of the model's
//! catalog packs, at their price or not, free or not), and refund and
//! dispute them, and close disputes won or lost, in any order, again and at
//! once: the table's purchases, payment links, parked take-backs, dispute
//! records and event records must equal the model's too.
//! A failing episode is shrunk to the shortest sequence that still fails,
//! and replays from its seed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use credits_shared::domain::{CaptureKey, Provider, Timestamp, UserId};
use credits_shared::ledger::keyed_reservation_id;
use credits_shared::prices::Catalog;
use credits_shared::store::{attr_number, task_pk, user_pk};
use credits_shared::webhook::{bfl, generic};
use futures::future::join_all;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Client;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{check_books, number, scan, text, Setup, TestServer, BFL_SECRETS, GENERIC_SECRETS, USER_HEADER};

mod purchases;
pub use purchases::StripeEvent;

/// The operations a generated hold may be for: priced, cheap, free, dear.
const OPERATIONS: [&str; 5] = [
    "design_generate_image",
    "design_generate_icon",
    "design_analyze_image",
    "design_assistant",
    "design_generate_variations",
];
const TTLS: [u32; 3] = [60, 300, 3600];
const JUMPS: [u32; 5] = [5, 30, 120, 400, 4000];
/// Jumps across lot expiries and period ends: hours, days, a week, a month.
const LONG_JUMPS: [u32; 6] = [21_600, 86_400, 3 * 86_400, 7 * 86_400, 29 * 86_400, 31 * 86_400];
/// Where a jump to a due instant lands: a millisecond before, on it, a
/// millisecond after, a second after.
const DUE_OFFSETS: [i32; 4] = [-1, 0, 1, 1000];
/// What an extend asks for: at most a day a time (the route's bound).
const EXTENSIONS: [u32; 4] = [30, 300, 3600, 86_400];
/// A pending hold may stay open at most this long after it was placed.
const MAX_HOLD_MILLIS: i64 = 7 * 86_400 * 1000;
/// A day in a long job's life: a little less than the day it was extended by.
const DAY_JUMP: u32 = 86_000;
const DAY_MS: i64 = 86_400_000;
/// Grant reasons and the priority each lands at unless one is named.
const REASONS: [(&str, u8); 7] = [
    ("purchase", 50),
    ("promo", 10),
    ("ad_reward", 10),
    ("signup", 10),
    ("plan_refill", 20),
    ("adjustment", 50),
    ("dispute_won", 50),
];
/// What a dispute closed won gives back is granted for this reason (never
/// by the generated admin grants).
const DISPUTE_WON: usize = 6;
const PRIORITIES: [u8; 5] = [0, 10, 20, 50, 100];
/// Expiries on a grid (seconds), so grants at different times share lots.
const GRIDS: [u32; 4] = [60, 600, 3600, 86_400];
const DEBIT_REASONS: [&str; 3] = ["chargeback", "refund", "adjustment"];
const DEBIT_AMOUNTS: [u64; 5] = [3, 10, 25, 60, 150];
/// A user may have at most this many live lots besides the base one.
const MAX_LOTS: usize = 100;
/// The priority of a plan's allowance lots.
const PLAN_PRIORITY: u8 = 20;
/// Instants an episode may start at (plus up to ten minutes): month ends,
/// a leap day and a year end, so periods and expiries cross them.
const STARTS: [&str; 7] = [
    "2028-02-28T23:55:00Z",
    "2028-02-29T23:52:00Z",
    "2027-01-31T23:50:00Z",
    "2027-02-28T23:55:00Z",
    "2027-04-30T23:50:00Z",
    "2027-12-31T23:52:00Z",
    "2028-01-30T23:58:00Z",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
}

impl PeriodKind {
    fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        }
    }
}

/// A plan as an operator sets it (name, allowance, period, rollover).
#[derive(Clone, Copy, Debug)]
struct PlanDef {
    name: &'static str,
    allowance: u64,
    period: PeriodKind,
    rollover: u64,
}

/// The plans an episode sets: a few, so the same plan is often set again,
/// and two share a name with another allowance or rollover (a change).
const PLANS: [PlanDef; 5] = [
    PlanDef { name: "daily", allowance: 12, period: PeriodKind::Day, rollover: 5 },
    PlanDef { name: "daily", allowance: 12, period: PeriodKind::Day, rollover: 0 },
    PlanDef { name: "weekly", allowance: 40, period: PeriodKind::Week, rollover: 20 },
    PlanDef { name: "monthly", allowance: 90, period: PeriodKind::Month, rollover: 30 },
    PlanDef { name: "monthly", allowance: 60, period: PeriodKind::Month, rollover: 0 },
];

/// How many of each thing one episode works with.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub users: usize,
    pub tasks: usize,
    pub batches: usize,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape { users: 3, tasks: 6, batches: 120 }
    }
}

/// A reference to a hold, resolved when its batch starts: the n-th hold the
/// episode placed (modulo how many there are), or an unknown id.
pub type HoldRef = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskRef {
    Index(usize),
    /// The task linked to a hold, if it has one (else task `n % tasks`).
    OfHold(HoldRef),
}

/// When a granted lot expires, resolved against the clock when its batch
/// starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Never,
    /// The `ahead`-th multiple of `seconds` after now.
    Grid {
        seconds: u32,
        ahead: u8,
    },
    /// The end of the user's current plan period (a plan's own lot when
    /// the priority is 20); the next hour without a plan.
    PeriodEnd,
    /// A second ago: refused.
    Past,
    /// Now: refused (not in the future).
    Now,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantSpec {
    pub amount: u64,
    pub reason: usize,
    pub priority: Option<u8>,
    pub expiry: Expiry,
    /// Send the key's first request again (a retry), if it had one.
    pub retry: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebitSpec {
    pub amount: u64,
    pub reason: usize,
    pub partial: bool,
    pub retry: bool,
}

/// A plan's anchor, resolved when its batch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// No anchor: the current one for the same plan, now for another.
    Omitted,
    /// The user's current plan's anchor, sent explicitly.
    Current,
    Now,
    /// The latest midnight on this day of a month (28th–31st), up to now.
    MonthDay(u32),
    Ago(u32),
    Ahead(u32),
}

/// What a jump to a due instant aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueKind {
    /// The soonest of all below (and a pending hold's expiry).
    Any,
    LotExpiry,
    PeriodEnd,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// The episode's clock starts at `STARTS[at]` plus `seconds` (only as
    /// the first batch; never backwards).
    Start {
        at: usize,
        seconds: u32,
    },
    Grant {
        user: usize,
        key: u8,
        spec: GrantSpec,
    },
    Debit {
        user: usize,
        key: u8,
        spec: DebitSpec,
    },
    SetPlan {
        user: usize,
        plan: usize,
        anchor: Anchor,
    },
    EndPlan {
        user: usize,
    },
    Reserve {
        user: usize,
        spec: ReserveSpec,
        key: Option<u8>,
    },
    /// The final confirm: `units` more (`None`: all still held), then
    /// close; `explicit` sends `"final": true`.
    Confirm {
        hold: HoldRef,
        units: Option<u32>,
        as_other: bool,
        explicit: bool,
    },
    /// A non-final capture with `Idempotency-Key: capture-<key>`.
    Capture {
        hold: HoldRef,
        units: u32,
        key: u8,
    },
    /// Moves the hold's `expiresAt` to now + `ttl` seconds.
    Extend {
        hold: HoldRef,
        ttl: u32,
    },
    Release {
        hold: HoldRef,
    },
    Link {
        hold: HoldRef,
        task: usize,
    },
    Refund {
        hold: HoldRef,
    },
    /// A new delivery; `status: None` is a non-final status ("processing").
    Webhook {
        task: TaskRef,
        success: Option<bool>,
        units: Option<u32>,
    },
    /// The n-th delivery sent so far, byte for byte (modulo how many).
    Redeliver {
        nth: usize,
    },
    Sweep,
    Advance {
        seconds: u32,
    },
    /// The clock moves to the next due instant of any user (a lot expiry,
    /// a period end, a hold's expiry) plus `offset_ms`.
    JumpTo {
        due: DueKind,
        offset_ms: i32,
    },
    /// The paying user tries to move credits with their own token: a
    /// reserve, or a confirm or a capture of one unit, a release, an
    /// extend or a task link of a hold of theirs. Always 403, and nothing
    /// changes.
    UserWrite {
        hold: HoldRef,
        write: UserWrite,
    },
    /// A new Stripe event about session `session` (signed as Stripe signs).
    Stripe {
        session: usize,
        event: StripeEvent,
    },
    /// The n-th Stripe event sent so far, byte for byte (modulo how many).
    StripeRedeliver {
        nth: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserWrite {
    Reserve,
    Confirm,
    Capture,
    Release,
    Extend,
    Link,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReserveSpec {
    pub operation: usize,
    pub units: u32,
    pub task: Option<usize>,
    pub ttl: u32,
}

pub type Batch = Vec<Op>;

/// The batches of an episode, from its seed.
pub fn generate(seed: u64, shape: Shape) -> Vec<Batch> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut batches: Vec<Batch> = (0..shape.batches).map(|_| batch(&mut rng, shape)).collect();
    if shape.batches >= 20 && rng.gen_bool(0.3) {
        long_job(&mut rng, &mut batches);
    }
    // Most episodes start just before a month end or a leap day.
    if rng.gen_bool(0.65) {
        batches.insert(0, vec![Op::Start { at: rng.gen_range(0..STARTS.len()), seconds: rng.gen_range(0..600) }]);
    }
    batches
}

/// A job that outlives its time to live: the oldest pending hold (hold
/// reference 0) is extended by a day, then most of a day passes, eight
/// times over, so the last extends reach the 7-day cap (and every hold not
/// extended meanwhile expires). Other batches run in between.
fn long_job(rng: &mut StdRng, batches: &mut Vec<Batch>) {
    let mut at = rng.gen_range(0..batches.len() / 2);
    for _ in 0..8 {
        batches.insert(at, vec![Op::Extend { hold: 0, ttl: 86_400 }]);
        at += 1 + rng.gen_range(0..3);
        batches.insert(at.min(batches.len()), vec![Op::Advance { seconds: DAY_JUMP }]);
        at += 1 + rng.gen_range(0..2);
        at = at.min(batches.len());
    }
}

fn batch(rng: &mut StdRng, shape: Shape) -> Batch {
    let roll = rng.gen_range(0..1000);
    if roll < 40 {
        return vec![Op::Advance { seconds: JUMPS[rng.gen_range(0..JUMPS.len())] }];
    }
    if roll < 65 {
        let due = [DueKind::Any, DueKind::LotExpiry, DueKind::PeriodEnd][rng.gen_range(0..3)];
        return vec![Op::JumpTo { due, offset_ms: DUE_OFFSETS[rng.gen_range(0..DUE_OFFSETS.len())] }];
    }
    if roll < 80 {
        return vec![Op::Advance { seconds: LONG_JUMPS[rng.gen_range(0..LONG_JUMPS.len())] }];
    }
    if roll < 120 {
        // A sweep alone, or racing one other operation.
        let mut ops = vec![Op::Sweep];
        if rng.gen_bool(0.5) {
            ops.push(op(rng, shape, None));
        }
        return ops;
    }
    let size = match rng.gen_range(0..100) {
        0..=44 => 1,
        45..=69 => 2,
        70..=89 => 3,
        _ => 4,
    };
    // Operations at once mostly aim at one hold: that is where races are.
    let focus = rng.gen_bool(0.6).then(|| rng.gen_range(0..64));
    (0..size).map(|_| op(rng, shape, focus)).collect()
}

fn op(rng: &mut StdRng, shape: Shape, focus: Option<HoldRef>) -> Op {
    let hold = focus.unwrap_or_else(|| rng.gen_range(0..64));
    let user = rng.gen_range(0..shape.users);
    match rng.gen_range(0..124) {
        0..=10 => {
            let key = rng.gen_range(0..6u8);
            Op::Grant { user, key, spec: grant_spec(rng, key) }
        }
        11..=32 => {
            let key = rng.gen_bool(0.5).then(|| rng.gen_range(0..5u8));
            let spec = match key {
                // A retry sends the request its key was first used for.
                Some(k) if rng.gen_bool(0.85) => keyed_spec(user, k, shape),
                _ => ReserveSpec {
                    operation: rng.gen_range(0..OPERATIONS.len()),
                    units: rng.gen_range(1..=4),
                    task: rng.gen_bool(0.35).then(|| rng.gen_range(0..shape.tasks)),
                    ttl: TTLS[rng.gen_range(0..TTLS.len())],
                },
            };
            Op::Reserve { user, spec, key }
        }
        33..=45 => {
            // Units more: 0 closes a hold with captures, 5 is more than any holds.
            let units = rng.gen_bool(0.4).then(|| rng.gen_range(0..=5));
            Op::Confirm { hold, units, as_other: rng.gen_bool(0.05), explicit: rng.gen_bool(0.2) }
        }
        46..=59 => {
            // Keys from a small space per hold: retries replay, and a key
            // sent again with other units is a caller's bug (422).
            let key = rng.gen_range(0..4u8);
            let units = if rng.gen_bool(0.85) { capture_units(key) } else { rng.gen_range(1..=3) };
            // Mostly a pending hold (even references), where captures add up.
            let hold = if rng.gen_bool(0.7) { hold & !1 } else { hold };
            Op::Capture { hold, units, key }
        }
        60..=66 => Op::Release { hold },
        67..=70 => Op::Link { hold, task: rng.gen_range(0..shape.tasks) },
        71..=74 => Op::Refund { hold },
        75..=79 => {
            let ttl = EXTENSIONS[rng.gen_range(0..EXTENSIONS.len())];
            Op::Extend { hold: if rng.gen_bool(0.7) { hold & !1 } else { hold }, ttl }
        }
        80..=91 => {
            let task =
                if rng.gen_bool(0.6) { TaskRef::OfHold(hold) } else { TaskRef::Index(rng.gen_range(0..shape.tasks)) };
            let success = match rng.gen_range(0..10) {
                0..=5 => Some(true),
                6..=8 => Some(false),
                _ => None,
            };
            // A success's units are the task's total output.
            Op::Webhook { task, success, units: rng.gen_bool(0.5).then(|| rng.gen_range(1..=5)) }
        }
        92..=95 => {
            let writes = [
                UserWrite::Reserve,
                UserWrite::Confirm,
                UserWrite::Capture,
                UserWrite::Release,
                UserWrite::Extend,
                UserWrite::Link,
            ];
            Op::UserWrite { hold, write: writes[rng.gen_range(0..writes.len())] }
        }
        96..=99 => Op::Redeliver { nth: rng.gen_range(0..64) },
        100..=104 => {
            let key = rng.gen_range(0..4u8);
            let spec = DebitSpec {
                amount: DEBIT_AMOUNTS[rng.gen_range(0..DEBIT_AMOUNTS.len())],
                reason: rng.gen_range(0..DEBIT_REASONS.len()),
                partial: rng.gen_bool(0.4),
                retry: rng.gen_bool(0.7),
            };
            Op::Debit { user, key, spec }
        }
        105..=109 => {
            let anchor = match rng.gen_range(0..100) {
                0..=39 => Anchor::Omitted,
                40..=49 => Anchor::Current,
                50..=57 => Anchor::Now,
                58..=79 => Anchor::MonthDay(rng.gen_range(28..=31)),
                80..=89 => Anchor::Ago([3600, 3 * 86_400, 40 * 86_400][rng.gen_range(0..3)]),
                _ => Anchor::Ahead([90, 3600, 86_400][rng.gen_range(0..3)]),
            };
            Op::SetPlan { user, plan: rng.gen_range(0..PLANS.len()), anchor }
        }
        110..=121 => purchases::op(rng, focus),
        _ => Op::EndPlan { user },
    }
}

fn grant_spec(rng: &mut StdRng, key: u8) -> GrantSpec {
    let reason = match rng.gen_range(0..100) {
        0..=29 => 0,
        30..=49 => 1,
        50..=64 => 2,
        65..=74 => 3,
        75..=89 => 4,
        _ => 5,
    };
    let expiry = match rng.gen_range(0..100) {
        0..=36 => Expiry::Never,
        37..=79 => Expiry::Grid { seconds: GRIDS[rng.gen_range(0..GRIDS.len())], ahead: rng.gen_range(0..3) },
        80..=92 => Expiry::PeriodEnd,
        93..=96 => Expiry::Past,
        _ => Expiry::Now,
    };
    let retry = rng.gen_bool(0.8);
    GrantSpec {
        // Mostly the same amount for a key (a retry), sometimes not (a bug in the caller).
        amount: if retry { 20 * (u64::from(key) + 1) } else { rng.gen_range(1..100) },
        reason,
        priority: rng.gen_bool(0.25).then(|| PRIORITIES[rng.gen_range(0..PRIORITIES.len())]),
        expiry,
        retry,
    }
}

/// The units a capture key is first used for (so a retry repeats them).
fn capture_units(key: u8) -> u32 {
    1 + u32::from(key % 2)
}

/// The request an idempotency key stands for (so retries repeat it).
fn keyed_spec(user: usize, key: u8, shape: Shape) -> ReserveSpec {
    let mut rng = StdRng::seed_from_u64(((user as u64) << 8) | u64::from(key));
    ReserveSpec {
        operation: rng.gen_range(0..OPERATIONS.len()),
        units: rng.gen_range(1..=4),
        task: rng.gen_bool(0.3).then(|| rng.gen_range(0..shape.tasks)),
        ttl: TTLS[rng.gen_range(0..TTLS.len())],
    }
}

// ------------------------------------------------------------- the calendar

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Epoch milliseconds of a UTC calendar instant.
fn utc_millis(year: i64, month: u32, day: u32, ms_of_day: i64) -> i64 {
    let date = NaiveDate::from_ymd_opt(year as i32, month, day).unwrap_or_default();
    let days = date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days();
    days * DAY_MS + ms_of_day
}

/// (year, month 1–12, day, milliseconds into the day) of an epoch instant.
fn civil(at: i64) -> (i64, u32, u32, i64) {
    let dt = DateTime::from_timestamp_millis(at).unwrap_or_default().naive_utc();
    let ms_of_day = i64::from(dt.num_seconds_from_midnight()) * 1000 + i64::from(dt.nanosecond() / 1_000_000);
    (i64::from(dt.year()), dt.month(), dt.day(), ms_of_day)
}

fn rfc3339(at: i64) -> String {
    DateTime::from_timestamp_millis(at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn parse_time(value: &Value) -> Result<Option<i64>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.timestamp_millis()))
            .map_err(|e| format!("not a date-time: {s:?}: {e}")),
        other => Err(format!("not a date-time: {other}")),
    }
}

// ----------------------------------------------------------------- the model

/// A lot's name: its priority and expiry. Ordered in burn order: priority,
/// then soonest expiry, never-expiring last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct LotId {
    priority: u8,
    expires: Option<i64>,
}

impl Ord for LotId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let rank = |l: &LotId| (l.priority, l.expires.is_none(), l.expires.unwrap_or(0));
        rank(self).cmp(&rank(other))
    }
}

impl PartialOrd for LotId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl LotId {
    /// Paid credits that never expire (`available`/`reserved` in the table).
    const BASE: LotId = LotId { priority: 50, expires: None };

    /// Nothing in it (nothing can come back to it but a refund): what is due
    /// skips it, and the next write of what is due removes it.
    fn dead(self, lot: &Lot) -> bool {
        self != LotId::BASE && lot.held == 0 && (lot.recorded || lot.remaining == 0)
    }

    fn expired(self, now: i64) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

/// Credits taken from lots, in burn order.
type Parts = Vec<(LotId, u64)>;

fn total(parts: &Parts) -> u64 {
    parts.iter().map(|(_, c)| c).sum()
}

/// The credits from `from` to `to` of an allocation (captures spend a
/// hold's allocation from its start).
fn slice(parts: &Parts, from: u64, to: u64) -> Parts {
    let mut out = Vec::new();
    let mut start = 0;
    for (lot, amount) in parts {
        let end = start + amount;
        let (lo, hi) = (start.max(from), end.min(to));
        if hi > lo {
            out.push((*lot, hi - lo));
        }
        start = end;
    }
    out
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Lot {
    remaining: u64,
    held: u64,
    /// Its expiry is written down: what remained went to `expired`.
    recorded: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PlanState {
    name: &'static str,
    allowance: u64,
    period: PeriodKind,
    rollover: u64,
    anchor: i64,
    ends_at: Option<i64>,
}

impl PlanState {
    /// The start of period `k`: the anchor plus k days, weeks or months (a
    /// month's day clamped to its last day, the time of day kept).
    fn start(&self, k: i64) -> i64 {
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
    fn index(&self, at: i64) -> Option<i64> {
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
    fn current(&self, now: i64) -> Option<(i64, i64)> {
        let k = self.index(now)?;
        let start = self.start(k);
        self.runs(start).then(|| (start, self.start(k + 1)))
    }

    /// The next period to refill: the one after the last refilled, or (none
    /// yet) the one containing now, or the first.
    fn next_refill(&self, last: Option<i64>, now: i64) -> Option<(i64, i64)> {
        let k = match last {
            Some(last) => self.index(last).map_or(0, |k| k + 1),
            None => self.index(now).unwrap_or(0),
        };
        let start = self.start(k);
        self.runs(start).then(|| (start, self.start(k + 1)))
    }
}

/// A history line: type, amount, date (ms).
type Line = (String, u64, i64);

/// One user's books in the model, as written down (what falls due is
/// written by the user's next reserve, grant, debit or plan change, or the
/// sweep; reads apply it on the fly).
#[derive(Clone, Debug, Default)]
struct Account {
    lots: BTreeMap<LotId, Lot>,
    spent: u64,
    granted: u64,
    expired: u64,
    debited: u64,
    plan: Option<PlanState>,
    /// The start of the last period whose allowance was granted.
    plan_period: Option<i64>,
    /// Lot expiries and plan refills written down so far.
    expiries_written: u64,
    refills_written: u64,
    lines: Vec<Line>,
}

/// The balance as `GET /v1/balance` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct View {
    available: u64,
    reserved: u64,
    spent: u64,
    expired: u64,
    debited: u64,
    granted: u64,
    /// (priority, expiresAt, remaining, reserved) of each live lot.
    lots: Vec<(u8, Option<i64>, u64, u64)>,
    /// (at, amount).
    next_expiry: Option<(i64, u64)>,
    plan: Option<PlanView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PlanView {
    plan: String,
    allowance: u64,
    period: String,
    rollover: u64,
    anchor: i64,
    current_start: Option<i64>,
    current_end: Option<i64>,
    ends_at: Option<i64>,
}

/// A balance item as stored: each lot's remaining credits (`None`: its
/// expiry is written down) and held credits, the other figures, the last
/// refilled period and the due-work index entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Stored {
    lots: BTreeMap<LotId, (Option<u64>, u64)>,
    spent: u64,
    granted: u64,
    expired: u64,
    debited: u64,
    plan_period: Option<i64>,
    due: Option<i64>,
}

impl View {
    fn empty() -> View {
        View {
            available: 0,
            reserved: 0,
            spent: 0,
            expired: 0,
            debited: 0,
            granted: 0,
            lots: Vec::new(),
            next_expiry: None,
            plan: None,
        }
    }
}

impl Stored {
    /// Lots with nothing in them are the same as none: the next write of
    /// what is due removes them, and that write is a transaction of its
    /// own, before the operation it precedes (a debit emptying lots while a
    /// grant's write of what is due ran may leave them there meanwhile).
    fn normalized(mut self) -> Stored {
        self.lots.retain(|_, (rem, held)| rem.is_some_and(|r| r > 0) || *held != 0);
        self
    }
}

impl Account {
    fn line(&mut self, kind: &str, amount: u64, at: i64) {
        self.lines.push((kind.to_owned(), amount, at));
    }

    fn available(&self, now: i64) -> u64 {
        self.lots.iter().filter(|(id, _)| !id.expired(now)).map(|(_, l)| l.remaining).sum()
    }

    /// Up to `amount` from what is available at `now`, in burn order.
    fn take(&self, amount: u64, now: i64) -> Parts {
        let mut left = amount;
        let mut parts = Vec::new();
        for (id, lot) in &self.lots {
            if left == 0 {
                break;
            }
            if id.expired(now) || lot.remaining == 0 {
                continue;
            }
            let take = lot.remaining.min(left);
            parts.push((*id, take));
            left -= take;
        }
        parts
    }

    fn lot(&mut self, id: LotId) -> &mut Lot {
        self.lots.entry(id).or_default()
    }

    fn hold(&mut self, parts: &Parts) {
        for (id, amount) in parts {
            let lot = self.lot(*id);
            lot.remaining = lot.remaining.saturating_sub(*amount);
            lot.held += amount;
        }
    }

    fn spend(&mut self, parts: &Parts) {
        for (id, amount) in parts {
            let lot = self.lot(*id);
            lot.held = lot.held.saturating_sub(*amount);
        }
        self.spent += total(parts);
    }

    /// Held (or, for a refund, spent) credits back to their lots; those of
    /// lots past their expiry expire at once. Returns how many expired.
    fn give_back(&mut self, parts: &Parts, now: i64, from_spent: bool) -> u64 {
        let mut expired = 0;
        for (id, amount) in parts {
            if !from_spent {
                let lot = self.lot(*id);
                lot.held = lot.held.saturating_sub(*amount);
            }
            // A refund may bring a lot back that was removed empty.
            match id.expired(now) {
                true => expired += amount,
                false => self.lot(*id).remaining += amount,
            }
        }
        if from_spent {
            self.spent = self.spent.saturating_sub(total(parts));
        }
        self.expired += expired;
        expired
    }

    fn debit(&mut self, parts: &Parts) {
        for (id, amount) in parts {
            let lot = self.lot(*id);
            lot.remaining = lot.remaining.saturating_sub(*amount);
        }
        self.debited += total(parts);
    }

    /// Writes down everything due at `now`, in time order: each lot's
    /// expiry (its unheld credits expire, a `grant_expired` line dated at
    /// its expiry), and each period's refill (the allowance, dated at the
    /// period's start, in a lot expiring at its end, with up to `rollover`
    /// of the previous period's unheld allowance carried and the rest
    /// expired). Returns (expiries, refills) written.
    fn catch_up(&mut self, now: i64) -> (u64, u64) {
        let (mut expiries, mut refills) = (0, 0);
        loop {
            self.lots.retain(|id, lot| !id.dead(lot));
            let refill =
                self.plan.as_ref().and_then(|p| p.next_refill(self.plan_period, now)).filter(|(s, _)| *s <= now);
            // The lot ending where the refill's period starts is its
            // rollover's source, not an expiry of its own.
            let source = refill.map(|(start, _)| LotId { priority: PLAN_PRIORITY, expires: Some(start) });
            let expiry = self
                .lots
                .iter()
                .filter(|(id, lot)| id.expired(now) && !lot.recorded && Some(**id) != source)
                .filter_map(|(id, _)| id.expires.map(|at| (at, *id)))
                .min()
                .filter(|(at, _)| refill.is_none_or(|(start, _)| *at <= start));
            if let Some((at, id)) = expiry {
                let lot = self.lot(id);
                let amount = lot.remaining;
                lot.remaining = 0;
                lot.recorded = true;
                self.expired += amount;
                if amount > 0 {
                    self.line("grant_expired", amount, at);
                }
                expiries += 1;
                continue;
            }
            let Some((start, end)) = refill else { break };
            let Some(plan) = self.plan.clone() else { break };
            let unused = match source.and_then(|id| self.lots.get_mut(&id)) {
                Some(lot) => {
                    let unused = if lot.recorded { 0 } else { lot.remaining };
                    lot.remaining = 0;
                    lot.recorded = true;
                    unused
                }
                None => 0,
            };
            let carried = unused.min(plan.rollover);
            self.expired += unused - carried;
            if unused > carried {
                self.line("grant_expired", unused - carried, start);
            }
            self.lot(LotId { priority: PLAN_PRIORITY, expires: Some(end) }).remaining += plan.allowance + carried;
            self.granted += plan.allowance;
            self.plan_period = Some(start);
            self.line("grant", plan.allowance, start);
            refills += 1;
        }
        self.expiries_written += expiries;
        self.refills_written += refills;
        (expiries, refills)
    }

    /// When something next falls due: a lot expiry not written down, or
    /// the next refill.
    fn next_due(&self, now: i64) -> Option<i64> {
        let expiry =
            self.lots.iter().filter(|(id, l)| !l.recorded && !id.dead(l)).filter_map(|(id, _)| id.expires).min();
        let refill = self.plan.as_ref().and_then(|p| p.next_refill(self.plan_period, now)).map(|(s, _)| s);
        expiry.into_iter().chain(refill).min()
    }

    fn stored(&self, now: i64) -> Stored {
        Stored {
            lots: self.lots.iter().map(|(id, l)| (*id, ((!l.recorded).then_some(l.remaining), l.held))).collect(),
            spent: self.spent,
            granted: self.granted,
            expired: self.expired,
            debited: self.debited,
            plan_period: self.plan_period,
            due: self.next_due(now),
        }
        .normalized()
    }

    /// What a read at `now` shows (what is due has happened), and the
    /// `nextExpiry` values it may show: the lot expiring next, or when
    /// lots expire at the same instant, any of them or their sum.
    fn view(&self, now: i64) -> (View, Vec<Option<(i64, u64)>>) {
        let mut books = self.clone();
        books.catch_up(now);
        let live = |id: &LotId, l: &Lot| if id.expired(now) { 0 } else { l.remaining };
        let lots: Vec<(u8, Option<i64>, u64, u64)> = books
            .lots
            .iter()
            .map(|(id, l)| (id.priority, id.expires, live(id, l), l.held))
            .filter(|(_, _, remaining, held)| *remaining > 0 || *held > 0)
            .collect();
        let unrecorded: u64 =
            books.lots.iter().filter(|(id, l)| id.expired(now) && !l.recorded).map(|(_, l)| l.remaining).sum();
        let next = lots.iter().filter(|(_, at, rem, _)| at.is_some() && *rem > 0).filter_map(|(_, at, ..)| *at).min();
        let next_expiry = match next {
            None => vec![None],
            Some(at) => {
                let amounts: Vec<u64> =
                    lots.iter().filter(|(_, a, rem, _)| *a == Some(at) && *rem > 0).map(|(.., rem, _)| *rem).collect();
                let mut options: Vec<Option<(i64, u64)>> = amounts.iter().map(|a| Some((at, *a))).collect();
                options.push(Some((at, amounts.iter().sum())));
                options
            }
        };
        let plan = books.plan.as_ref().filter(|p| p.ends_at.is_none_or(|end| now < end)).map(|p| {
            let current = p.current(now);
            PlanView {
                plan: p.name.to_owned(),
                allowance: p.allowance,
                period: p.period.as_str().to_owned(),
                rollover: p.rollover,
                anchor: p.anchor,
                current_start: current.map(|(s, _)| s),
                current_end: current.map(|(_, e)| e),
                ends_at: p.ends_at,
            }
        });
        let view = View {
            available: books.available(now),
            reserved: books.lots.values().map(|l| l.held).sum(),
            spent: books.spent,
            expired: books.expired + unrecorded,
            debited: books.debited,
            granted: books.granted,
            lots,
            next_expiry: None,
            plan,
        };
        (view, next_expiry)
    }

    /// Setting a plan: its anchor defaults to the current plan's (periods
    /// stay put), else to now. The same plan again changes nothing; a new
    /// or changed one grants from its first period not granted yet (the
    /// current one for a new plan; an upgrade counts from the next period
    /// unless it moves the anchor).
    fn set_plan(&mut self, request: &PlanRequest, now: i64) {
        let def = PLANS[request.plan];
        self.catch_up(now);
        let plan = PlanState {
            name: def.name,
            allowance: def.allowance,
            period: def.period,
            rollover: def.rollover,
            anchor: request.anchor.or(self.plan.as_ref().map(|p| p.anchor)).unwrap_or(now),
            ends_at: None,
        };
        if self.plan.as_ref() != Some(&plan) {
            self.change_plan(plan, now);
        }
    }

    /// A changed plan written: the last period granted stays granted if the
    /// new plan's current period starts no later, else the current period
    /// is granted now; then what falls due is written down.
    fn change_plan(&mut self, plan: PlanState, now: i64) {
        let current = plan.current(now).map(|(start, _)| start);
        match (current, self.plan_period) {
            (Some(start), Some(last)) if start <= last => self.plan_period = Some(start),
            (_, Some(_)) => self.plan_period = None,
            (_, None) => {}
        }
        self.plan = Some(plan);
        self.catch_up(now);
    }

    /// Ending a plan: at the end of its current period (now, before its
    /// first); once.
    fn end_plan(&mut self, now: i64) {
        self.catch_up(now);
        if let Some(plan) = self.plan.clone().filter(|p| p.ends_at.is_none()) {
            let end = plan.current(now).map_or(now, |(_, end)| end);
            self.change_plan(PlanState { ends_at: Some(end), ..plan }, now);
        }
    }

    /// Lots with credits remaining or held (what the 100-lot limit counts).
    fn live_lots(&self) -> usize {
        self.lots.values().filter(|l| l.remaining > 0 || l.held > 0).count()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Pending,
    Confirmed,
    Released,
    Expired,
    Refunded,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Confirmed => "confirmed",
            Status::Released => "released",
            Status::Expired => "expired",
            Status::Refunded => "refunded",
        }
    }
}

#[derive(Clone, Debug)]
struct Hold {
    user: usize,
    units: u32,
    unit_cost: u64,
    amount: u64,
    status: Status,
    /// Units captured so far: by non-final captures while pending, then
    /// by the closing confirm.
    captured_units: u32,
    captured: u64,
    released: u64,
    /// Units the closing confirm captured (what its replay must name).
    final_units: Option<u32>,
    /// Each non-final capture's key and units.
    captures: HashMap<u8, u32>,
    task: Option<usize>,
    created_at: i64,
    expires_at: i64,
    /// What it took from which lot, in burn order.
    lots: Parts,
}

impl Hold {
    /// Units neither captured nor returned yet.
    fn held_units(&self) -> u32 {
        match self.status {
            Status::Pending => self.units - self.captured_units,
            _ => 0,
        }
    }

    /// Credits still held: what a closing transition settles.
    fn held(&self) -> u64 {
        match self.status {
            Status::Pending => self.amount - self.captured,
            _ => 0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Success(Option<u32>),
    Failure,
}

/// What a request asks of a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    /// The final confirm: units more (`None`: all still held).
    Confirm(Option<u32>),
    /// A provider's success: the task's total units (`None`: all held).
    Produced(Option<u32>),
    /// A non-final capture of units more.
    Capture(u32),
    Release,
    Expire,
    Refund,
}

/// One change of a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// Capture units more, return the rest, close.
    Confirm(u32),
    /// Capture units more under a key, keep the rest held.
    Capture(u32, u8),
    Release,
    Expire,
    Refund,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Apply(Change),
    /// Asked to capture from a pending hold past its expiry: it expires.
    ExpireInstead,
    Replay,
    /// More units than are still held.
    TooManyUnits,
    NotPending(Status),
}

/// A grant request as sent (what its key stands for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantBody {
    amount: u64,
    reason: usize,
    priority: Option<u8>,
    expires_at: Option<i64>,
}

impl GrantBody {
    fn lot(&self) -> LotId {
        LotId { priority: self.priority.unwrap_or(REASONS[self.reason].1), expires: self.expires_at }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebitBody {
    amount: u64,
    reason: usize,
    partial: bool,
}

/// A plan request as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRequest {
    plan: usize,
    anchor: Option<i64>,
}

#[derive(Clone, Debug)]
struct Model {
    now: i64,
    accounts: Vec<Account>,
    /// Each grant key's request, by user and `Idempotency-Key`.
    grants: HashMap<(usize, String), GrantBody>,
    /// Each debit key's request and its answer (amount, requested, lots).
    debits: HashMap<(usize, u8), (DebitBody, Answer)>,
    holds: HashMap<Uuid, Hold>,
    /// Holds in the order they were placed (what `HoldRef`s index).
    order: Vec<Uuid>,
    reserve_keys: HashMap<(usize, u8), (Uuid, ReserveSpec)>,
    tasks: HashMap<usize, Uuid>,
    parked: HashMap<usize, Outcome>,
    seen: HashSet<String>,
    stripe: purchases::Purchases,
    /// The episode's run id: Stripe's ids name it.
    run: String,
}

/// A hold's or a debit's lots as answered: (priority, expiresAt, amount).
pub type LotParts = Vec<(u8, Option<i64>, u64)>;

fn lot_parts(parts: &Parts) -> LotParts {
    parts.iter().map(|(id, c)| (id.priority, id.expires, *c)).collect()
}

/// An answer, reduced to what the model can predict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Problem {
        status: u16,
        code: String,
    },
    /// A hold as answered; `replayed` is the `Idempotent-Replayed` header.
    Hold {
        status: u16,
        hold: String,
        units: u32,
        captured: u64,
        released: u64,
        lots: LotParts,
        replayed: bool,
    },
    /// An extend's answer: the hold's new `expiresAt` (epoch ms).
    Extended {
        status: u16,
        hold: String,
        expires_at: i64,
    },
    Granted {
        status: u16,
    },
    Debited {
        status: u16,
        amount: u64,
        requested: u64,
        lots: LotParts,
        replayed: bool,
    },
    /// A plan set or ended.
    Planned {
        status: u16,
    },
    Webhook {
        status: u16,
        result: String,
        late: bool,
    },
    /// A sweep: holds it expired, and (when it ran alone in its batch) the
    /// lot expiries and plan refills it wrote down.
    Swept {
        expired: u64,
        due: Option<(u64, u64)>,
    },
    Moved,
    /// A Stripe event's answer: credits granted or taken back, and of those
    /// to take back, what the user no longer had.
    Stripe {
        status: u16,
        result: String,
        reason: Option<String>,
        credits: Option<u64>,
        unrecoverable: Option<u64>,
    },
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lots = |lots: &LotParts| {
            lots.iter()
                .map(|(p, at, c)| format!("{p}/{}:{c}", at.map_or("never".into(), rfc3339)))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Answer::Problem { status, code } => write!(f, "{status} {code}"),
            Answer::Hold { status, hold, units, captured, released, lots: parts, replayed } => {
                write!(
                    f,
                    "{status} {hold} capturedUnits={units} captured={captured} released={released} lots=[{}]{}",
                    lots(parts),
                    if *replayed { " (replayed)" } else { "" }
                )
            }
            Answer::Extended { status, hold, expires_at } => write!(f, "{status} {hold} expiresAt={expires_at}"),
            Answer::Granted { status } => write!(f, "{status} granted"),
            Answer::Debited { status, amount, requested, lots: parts, replayed } => write!(
                f,
                "{status} debited {amount} of {requested} lots=[{}]{}",
                lots(parts),
                if *replayed { " (replayed)" } else { "" }
            ),
            Answer::Planned { status } => write!(f, "{status} plan"),
            Answer::Webhook { status, result, late } => {
                write!(f, "{status} {result}{}", if *late { " late" } else { "" })
            }
            Answer::Swept { expired, due } => match due {
                Some((lots, refills)) => write!(f, "swept expired={expired} lotsExpired={lots} planRefills={refills}"),
                None => write!(f, "swept expired={expired}"),
            },
            Answer::Moved => write!(f, "clock moved"),
            Answer::Stripe { status, result, reason, credits, unrecoverable } => write!(
                f,
                "{status} {result}{}{}{}",
                reason.as_ref().map_or(String::new(), |r| format!(" ({r})")),
                credits.map_or(String::new(), |c| format!(" credits={c}")),
                unrecoverable.map_or(String::new(), |u| format!(" unrecoverable={u}"))
            ),
        }
    }
}

fn problem(status: u16, code: &str) -> Answer {
    Answer::Problem { status, code: code.to_owned() }
}

/// An operation with its references resolved at the start of its batch.
#[derive(Clone, Debug)]
enum Resolved {
    Grant {
        user: usize,
        key: u8,
        body: GrantBody,
    },
    Debit {
        user: usize,
        key: u8,
        body: DebitBody,
    },
    SetPlan {
        user: usize,
        request: PlanRequest,
    },
    EndPlan {
        user: usize,
    },
    Reserve {
        user: usize,
        spec: ReserveSpec,
        key: Option<u8>,
    },
    Confirm {
        id: Uuid,
        units: Option<u32>,
        as_other: bool,
        explicit: bool,
    },
    Capture {
        id: Uuid,
        units: u32,
        key: u8,
    },
    Extend {
        id: Uuid,
        ttl: u32,
    },
    Release {
        id: Uuid,
    },
    Link {
        id: Uuid,
        task: usize,
    },
    Refund {
        id: Uuid,
    },
    Webhook(Sent),
    Sweep,
    /// The clock moves to this instant (epoch ms).
    Advance {
        to: i64,
    },
    /// With the token of `user`, the owner of `id` (or user 0 when no hold).
    UserWrite {
        user: usize,
        id: Uuid,
        write: UserWrite,
    },
    Stripe {
        sent: purchases::StripeSent,
        racing: purchases::Racing,
    },
}

/// A delivery as sent (kept to redeliver it byte for byte).
#[derive(Clone, Debug)]
struct Sent {
    task: usize,
    /// `webhook-id` of Standard Webhooks deliveries (odd tasks).
    id: Option<String>,
    outcome: Option<Outcome>,
    body: String,
}

impl Model {
    fn new(users: usize, now: i64, run: &str) -> Model {
        Model {
            now,
            accounts: vec![Account::default(); users],
            grants: HashMap::new(),
            debits: HashMap::new(),
            holds: HashMap::new(),
            order: Vec::new(),
            reserve_keys: HashMap::new(),
            tasks: HashMap::new(),
            parked: HashMap::new(),
            seen: HashSet::new(),
            stripe: purchases::Purchases::default(),
            run: run.to_owned(),
        }
    }

    fn hold_answer(&self, status: u16, id: Uuid, replayed: bool) -> Answer {
        match self.holds.get(&id) {
            Some(h) => Answer::Hold {
                status,
                hold: h.status.as_str().into(),
                units: h.captured_units,
                captured: h.captured,
                released: h.released,
                lots: lot_parts(&h.lots),
                replayed,
            },
            None => problem(500, "model: no such hold"),
        }
    }

    /// Applies one operation, given what the server answered: the
    /// reservation id (the model cannot know a new hold's random id), and
    /// the answer itself, which says which way a Stripe event's copy raced
    /// (the table then checks that way's state). Returns the answers the
    /// operation may get.
    fn step(&mut self, op: &Resolved, (observed, id): &(Answer, Option<Uuid>), catalog: &Catalog) -> Vec<Answer> {
        let id = *id;
        match op {
            Resolved::Grant { user, key, body } => vec![self.grant(*user, format!("grant-{key}"), body)],
            Resolved::Stripe { sent, racing } => self.stripe(sent, *racing, observed, catalog),
            Resolved::Debit { user, key, body } => vec![self.debit(*user, *key, body)],
            Resolved::SetPlan { user, request } => vec![self.set_plan(*user, request)],
            Resolved::EndPlan { user } => vec![self.end_plan(*user)],
            Resolved::Reserve { user, spec, key } => self.reserve(*user, spec, *key, id, catalog),
            Resolved::Confirm { id, units, as_other, .. } => vec![self.confirm(*id, *units, *as_other)],
            Resolved::Capture { id, units, key } => vec![self.capture(*id, *units, *key)],
            Resolved::Extend { id, ttl } => vec![self.extend(*id, *ttl)],
            Resolved::Release { id } => vec![self.release(*id)],
            Resolved::Link { id, task } => vec![self.link(*id, *task)],
            Resolved::Refund { id } => vec![self.refund(*id)],
            Resolved::Webhook(sent) => vec![self.webhook(sent)],
            Resolved::Sweep => {
                let due: Vec<Uuid> = self
                    .holds
                    .iter()
                    .filter(|(id, _)| self.decide(**id, Ask::Expire) == Decision::Apply(Change::Expire))
                    .map(|(id, _)| *id)
                    .collect();
                for id in &due {
                    self.apply(*id, Change::Expire);
                }
                // Then every balance the due-work index lists (every one with
                // something due: the entry is checked never to be later than
                // that): what fell due.
                let now = self.now;
                let (mut expiries, mut refills) = (0, 0);
                for account in self.accounts.iter_mut().filter(|a| a.next_due(now).is_some_and(|at| at <= now)) {
                    let (e, r) = account.catch_up(now);
                    expiries += e;
                    refills += r;
                }
                vec![Answer::Swept { expired: due.len() as u64, due: Some((expiries, refills)) }]
            }
            Resolved::Advance { to } => {
                self.now = (*to).max(self.now);
                vec![Answer::Moved]
            }
            // The person who pays never decides what they pay.
            Resolved::UserWrite { .. } => vec![problem(403, "forbidden")],
        }
    }

    /// A grant: into a lot already expired, only a replay of its key is
    /// answered (200 or 422), else 400; otherwise what is due is written
    /// down, then a grant making one lot more live than 100 is refused
    /// (unless a replay), then the key decides.
    fn grant(&mut self, user: usize, key: String, body: &GrantBody) -> Answer {
        let now = self.now;
        let replay = match self.grants.get(&(user, key.clone())) {
            Some(first) if first == body => Some(Answer::Granted { status: 200 }),
            Some(_) => Some(problem(422, "idempotency_key_reused")),
            None => None,
        };
        let lot = body.lot();
        if lot.expired(now) {
            return replay.unwrap_or_else(|| problem(400, "validation_error"));
        }
        let account = &mut self.accounts[user];
        account.catch_up(now);
        let new_lot = account.lots.get(&lot).is_none_or(|l| l.remaining == 0 && l.held == 0);
        if new_lot && account.live_lots() >= MAX_LOTS {
            return replay.unwrap_or_else(|| problem(409, "too_many_lots"));
        }
        if let Some(answer) = replay {
            return answer;
        }
        self.grants.insert((user, key), body.clone());
        let account = &mut self.accounts[user];
        account.lot(lot).remaining += body.amount;
        account.granted += body.amount;
        account.line("grant", body.amount, now);
        Answer::Granted { status: 201 }
    }

    /// A debit: its key first (a replay writes nothing down), then what is
    /// due, then all or nothing (402), or what there is with `partial`.
    fn debit(&mut self, user: usize, key: u8, body: &DebitBody) -> Answer {
        match self.debits.get(&(user, key)) {
            Some((first, Answer::Debited { amount, requested, lots, .. })) if first == body => {
                return Answer::Debited {
                    status: 200,
                    amount: *amount,
                    requested: *requested,
                    lots: lots.clone(),
                    replayed: true,
                };
            }
            Some(_) => return problem(422, "idempotency_key_reused"),
            None => {}
        }
        let now = self.now;
        let account = &mut self.accounts[user];
        account.catch_up(now);
        if !body.partial && account.available(now) < body.amount {
            return problem(402, "insufficient_credits");
        }
        let parts = account.take(body.amount, now);
        account.debit(&parts);
        account.line("debit", total(&parts), now);
        let answer = Answer::Debited {
            status: 201,
            amount: total(&parts),
            requested: body.amount,
            lots: lot_parts(&parts),
            replayed: false,
        };
        self.debits.insert((user, key), (body.clone(), answer.clone()));
        answer
    }

    fn set_plan(&mut self, user: usize, request: &PlanRequest) -> Answer {
        self.accounts[user].set_plan(request, self.now);
        Answer::Planned { status: 200 }
    }

    fn end_plan(&mut self, user: usize) -> Answer {
        self.accounts[user].end_plan(self.now);
        Answer::Planned { status: 200 }
    }

    fn reserve(
        &mut self,
        user: usize,
        spec: &ReserveSpec,
        key: Option<u8>,
        id: Option<Uuid>,
        catalog: &Catalog,
    ) -> Vec<Answer> {
        if let Some(k) = key {
            if let Some((existing, first)) = self.reserve_keys.get(&(user, k)).cloned() {
                if first != *spec {
                    return vec![problem(422, "idempotency_key_reused")];
                }
                // Only a pending hold still takes its link (as the service replays).
                let unlinked =
                    self.holds.get(&existing).is_some_and(|h| h.task.is_none() && h.status == Status::Pending);
                return match spec.task {
                    Some(task) if unlinked => match self.link_task(existing, task) {
                        Ok(()) => vec![self.hold_answer(200, existing, true)],
                        Err(answer) => vec![answer],
                    },
                    _ => vec![self.hold_answer(200, existing, true)],
                };
            }
        }
        let unit_cost = catalog.unit_cost(OPERATIONS[spec.operation]).map(|c| c.get()).unwrap_or(0);
        let amount = unit_cost * u64::from(spec.units);
        let now = self.now;
        // A hold that moves credits reads the balance: what is due is
        // written down first, whatever the answer.
        if amount > 0 {
            self.accounts[user].catch_up(now);
        }
        let taken = spec.task.is_some_and(|t| self.tasks.contains_key(&t));
        let short = self.accounts[user].available(now) < amount;
        if taken && short {
            // Both conditions fail in one transaction: either answer is right.
            return vec![problem(409, "task_already_linked"), problem(402, "insufficient_credits")];
        }
        if taken {
            return vec![problem(409, "task_already_linked")];
        }
        if short {
            return vec![problem(402, "insufficient_credits")];
        }
        let Some(id) = id else { return vec![problem(201, "a new hold (the answer had no id)")] };
        let account = &mut self.accounts[user];
        let parts = account.take(amount, now);
        account.hold(&parts);
        account.line("reserve", amount, now);
        self.holds.insert(
            id,
            Hold {
                user,
                units: spec.units,
                unit_cost,
                amount,
                status: Status::Pending,
                captured_units: 0,
                captured: 0,
                released: 0,
                final_units: None,
                captures: HashMap::new(),
                task: None,
                created_at: now,
                expires_at: now + i64::from(spec.ttl) * 1000,
                lots: parts,
            },
        );
        self.order.push(id);
        if let Some(k) = key {
            self.reserve_keys.insert((user, k), (id, spec.clone()));
        }
        if let Some(task) = spec.task {
            if let Err(answer) = self.link_task(id, task) {
                return vec![answer];
            }
        }
        vec![self.hold_answer(201, id, false)]
    }

    /// Links a task to a hold (the route, or a reserve with a task id); a
    /// delivery parked for the task is applied by the same write.
    fn link_task(&mut self, id: Uuid, task: usize) -> Result<(), Answer> {
        let Some(hold) = self.holds.get(&id) else { return Err(problem(404, "reservation_not_found")) };
        match hold.task {
            Some(linked) if linked == task => return Ok(()),
            Some(_) => return Err(problem(409, "task_already_linked")),
            // A settled hold takes no link: it holds nothing to settle.
            None if hold.status != Status::Pending => return Err(problem(409, "reservation_not_pending")),
            None => {}
        }
        if self.tasks.get(&task).is_some_and(|owner| *owner != id) {
            return Err(problem(409, "task_already_linked"));
        }
        self.tasks.insert(task, id);
        if let Some(h) = self.holds.get_mut(&id) {
            h.task = Some(task);
        }
        if let Some(outcome) = self.parked.remove(&task) {
            match self.decide(id, ask_of(outcome)) {
                Decision::Apply(change) => self.apply(id, change),
                Decision::ExpireInstead => self.apply(id, Change::Expire),
                _ => {}
            }
        }
        Ok(())
    }

    /// The money rules (`DESIGN.md`, issue 15's contract): which change a
    /// request makes of a hold in its current state, at the model's clock.
    fn decide(&self, id: Uuid, ask: Ask) -> Decision {
        let Some(h) = self.holds.get(&id) else { return Decision::NotPending(Status::Released) };
        let due = h.expires_at <= self.now;
        let held = h.held_units();
        let fits = |units: u32| units >= 1 && units <= held;
        // A provider's total is never more than was held.
        let total = |units: Option<u32>| units.unwrap_or(h.units).min(h.units);
        match (ask, h.status) {
            (Ask::Confirm(_) | Ask::Produced(_) | Ask::Capture(_), Status::Pending) if due => Decision::ExpireInstead,
            (Ask::Confirm(None), Status::Pending) => Decision::Apply(Change::Confirm(held)),
            (Ask::Confirm(Some(units)), Status::Pending) if fits(units) => Decision::Apply(Change::Confirm(units)),
            // Outputs captured along the way, none to come: close with 0 more.
            (Ask::Confirm(Some(0)), Status::Pending) if h.captured_units > 0 => Decision::Apply(Change::Confirm(0)),
            (Ask::Capture(units), Status::Pending) if fits(units) => Decision::Apply(Change::Capture(units, 0)),
            (Ask::Confirm(_) | Ask::Capture(_), Status::Pending) => Decision::TooManyUnits,
            // Captured units rise to the total, never fall: a total below
            // them closes the hold capturing nothing more.
            (Ask::Produced(units), Status::Pending) => {
                Decision::Apply(Change::Confirm(total(units).saturating_sub(h.captured_units)))
            }
            (Ask::Confirm(None), Status::Confirmed) if h.captured_units == h.units => Decision::Replay,
            (Ask::Confirm(Some(units)), Status::Confirmed) if h.final_units == Some(units) => Decision::Replay,
            (Ask::Produced(units), Status::Confirmed) if h.captured_units >= total(units) => Decision::Replay,
            (Ask::Release, Status::Pending) => Decision::Apply(Change::Release),
            (Ask::Expire, Status::Pending) if due => Decision::Apply(Change::Expire),
            (Ask::Refund, Status::Confirmed) => Decision::Apply(Change::Refund),
            // Captures before a release or an expiry stayed spent: refundable.
            (Ask::Refund, Status::Released | Status::Expired) if h.captured > 0 => Decision::Apply(Change::Refund),
            (Ask::Release, Status::Released) | (Ask::Expire, Status::Expired) | (Ask::Refund, Status::Refunded) => {
                Decision::Replay
            }
            (_, status) => Decision::NotPending(status),
        }
    }

    /// Makes one change: the hold, its lots, the balance, history lines.
    /// Captures spend the hold's lots from the start of its allocation;
    /// what comes back goes to the lots it came from, or expires at once
    /// (a `grant_expired` line now) where that lot has expired. None of
    /// these writes down what is due.
    fn apply(&mut self, id: Uuid, change: Change) {
        let now = self.now;
        let Some(h) = self.holds.get_mut(&id) else { return };
        let held = h.held();
        let account = &mut self.accounts[h.user];
        match change {
            Change::Capture(units, key) => {
                let captured = h.unit_cost * u64::from(units);
                account.spend(&slice(&h.lots, h.captured, h.captured + captured));
                h.captured_units += units;
                h.captured += captured;
                h.captures.insert(key, units);
                // One `capture` line per capture.
                account.line("capture", captured, now);
            }
            Change::Confirm(units) => {
                let captured = (h.unit_cost * u64::from(units)).min(held);
                let returned = held - captured;
                account.spend(&slice(&h.lots, h.captured, h.captured + captured));
                let expired = account.give_back(&slice(&h.lots, h.captured + captured, h.amount), now, false);
                h.status = Status::Confirmed;
                h.captured_units += units;
                h.captured += captured;
                h.released = returned;
                h.final_units = Some(units);
                // A `confirm` line with this step's credits (maybe 0), and a
                // `release` line for the rest when there is one.
                account.line("confirm", captured, now);
                if returned > 0 {
                    account.line("release", returned, now);
                }
                if expired > 0 {
                    account.line("grant_expired", expired, now);
                }
            }
            Change::Release | Change::Expire => {
                let expired = account.give_back(&slice(&h.lots, h.captured, h.amount), now, false);
                h.status = if change == Change::Release { Status::Released } else { Status::Expired };
                h.released = held;
                account.line(if change == Change::Release { "release" } else { "expire" }, held, now);
                if expired > 0 {
                    account.line("grant_expired", expired, now);
                }
            }
            Change::Refund => {
                let expired = account.give_back(&slice(&h.lots, 0, h.captured), now, true);
                h.status = Status::Refunded;
                account.line("refund", h.captured, now);
                if expired > 0 {
                    account.line("grant_expired", expired, now);
                }
            }
        }
    }

    fn confirm(&mut self, id: Uuid, units: Option<u32>, as_other: bool) -> Answer {
        if !self.holds.contains_key(&id) || as_other {
            // Naming another user than the hold's: as for a missing hold.
            return problem(404, "reservation_not_found");
        }
        match self.decide(id, Ask::Confirm(units)) {
            Decision::Apply(change) => {
                self.apply(id, change);
                self.hold_answer(200, id, false)
            }
            Decision::ExpireInstead => {
                self.apply(id, Change::Expire);
                problem(409, "reservation_expired")
            }
            Decision::Replay => self.hold_answer(200, id, false),
            Decision::TooManyUnits => problem(400, "validation_error"),
            Decision::NotPending(_) => problem(409, "reservation_not_pending"),
        }
    }

    /// A non-final capture: its key first (a replay answers the hold as it
    /// is now, whatever happened since), then the money rules.
    fn capture(&mut self, id: Uuid, units: u32, key: u8) -> Answer {
        let Some(h) = self.holds.get(&id) else { return problem(404, "reservation_not_found") };
        match h.captures.get(&key) {
            Some(first) if *first == units => return self.hold_answer(200, id, true),
            Some(_) => return problem(422, "idempotency_key_reused"),
            None => {}
        }
        match self.decide(id, Ask::Capture(units)) {
            Decision::Apply(_) => {
                self.apply(id, Change::Capture(units, key));
                self.hold_answer(200, id, false)
            }
            Decision::ExpireInstead => {
                self.apply(id, Change::Expire);
                problem(409, "reservation_expired")
            }
            Decision::TooManyUnits => problem(400, "validation_error"),
            Decision::NotPending(_) => problem(409, "reservation_not_pending"),
            Decision::Replay => problem(500, "model: a capture replayed without its key"),
        }
    }

    /// `expiresAt` to now + `ttl`, at most 7 days after the hold was placed;
    /// too late past `expiresAt` (the hold expires by this call).
    fn extend(&mut self, id: Uuid, ttl: u32) -> Answer {
        let Some(h) = self.holds.get_mut(&id) else { return problem(404, "reservation_not_found") };
        match h.status {
            Status::Pending if h.expires_at <= self.now => {
                self.apply(id, Change::Expire);
                problem(409, "reservation_expired")
            }
            Status::Pending => {
                let until = self.now + i64::from(ttl) * 1000;
                if until > h.created_at + MAX_HOLD_MILLIS {
                    return problem(400, "validation_error");
                }
                h.expires_at = until;
                Answer::Extended { status: 200, hold: h.status.as_str().into(), expires_at: until }
            }
            Status::Expired => problem(409, "reservation_expired"),
            _ => problem(409, "reservation_not_pending"),
        }
    }

    fn release(&mut self, id: Uuid) -> Answer {
        if !self.holds.contains_key(&id) {
            return problem(404, "reservation_not_found");
        }
        match self.decide(id, Ask::Release) {
            Decision::Apply(change) => {
                self.apply(id, change);
                self.hold_answer(200, id, false)
            }
            Decision::Replay => self.hold_answer(200, id, false),
            _ => problem(409, "reservation_not_pending"),
        }
    }

    fn refund(&mut self, id: Uuid) -> Answer {
        if !self.holds.contains_key(&id) {
            return problem(404, "reservation_not_found");
        }
        match self.decide(id, Ask::Refund) {
            Decision::Apply(change) => {
                self.apply(id, change);
                // Credits back in a lot that expires later (a lot spent to
                // nothing may have left the balance item, and its expiry the
                // due-work index): what is due is written down after it.
                let now = self.now;
                if let Some(h) =
                    self.holds.get(&id).filter(|h| h.lots.iter().any(|(l, _)| !l.expired(now) && l.expires.is_some()))
                {
                    self.accounts[h.user].catch_up(now);
                }
                self.hold_answer(200, id, false)
            }
            Decision::Replay => self.hold_answer(200, id, false),
            _ => problem(409, "reservation_not_pending"),
        }
    }

    fn link(&mut self, id: Uuid, task: usize) -> Answer {
        match self.link_task(id, task) {
            Ok(()) => self.hold_answer(200, id, false),
            Err(answer) => answer,
        }
    }

    fn webhook(&mut self, sent: &Sent) -> Answer {
        let ok = |result: &str, late: bool| Answer::Webhook { status: 200, result: result.into(), late };
        let Some(outcome) = sent.outcome else { return ok("ignored", false) };
        let dedup = match &sent.id {
            Some(id) => format!("id#{id}"),
            None => format!("task#{}#{}", sent.task, matches!(outcome, Outcome::Success(_))),
        };
        if self.seen.contains(&dedup) {
            return ok("duplicate", false);
        }
        self.seen.insert(dedup);
        let Some(id) = self.tasks.get(&sent.task).copied() else {
            if self.parked.contains_key(&sent.task) {
                // The first outcome parked for a task stands.
                return ok("ignored", false);
            }
            self.parked.insert(sent.task, outcome);
            return Answer::Webhook { status: 202, result: "parked".into(), late: false };
        };
        let ask = ask_of(outcome);
        let success = matches!(outcome, Outcome::Success(_));
        let result = if success { "confirmed" } else { "released" };
        match self.decide(id, ask) {
            Decision::Apply(change) => {
                self.apply(id, change);
                ok(result, false)
            }
            Decision::ExpireInstead => {
                self.apply(id, Change::Expire);
                ok("ignored", true)
            }
            Decision::Replay => ok(result, false),
            Decision::NotPending(Status::Expired) if success => ok("ignored", true),
            Decision::NotPending(_) | Decision::TooManyUnits => ok("ignored", false),
        }
    }

    /// The next instant after now something falls due, of the kind asked.
    fn next_due(&self, kind: DueKind) -> Option<i64> {
        let now = self.now;
        let lots = self.accounts.iter().flat_map(|a| a.lots.keys().filter_map(|id| id.expires));
        let periods = self.accounts.iter().filter_map(|a| {
            let plan = a.plan.as_ref()?;
            let next = match plan.index(now) {
                Some(k) => plan.start(k + 1),
                None => plan.anchor,
            };
            Some(plan.ends_at.map_or(next, |end| if end > now { next.min(end) } else { next }))
        });
        let holds = self.holds.values().filter(|h| h.status == Status::Pending).map(|h| h.expires_at);
        let after: Vec<i64> = match kind {
            DueKind::Any => lots.chain(periods).chain(holds).collect(),
            DueKind::LotExpiry => lots.collect(),
            DueKind::PeriodEnd => periods.collect(),
        };
        after.into_iter().filter(|at| *at > now).min()
    }
}

/// What a provider's outcome asks of its hold.
fn ask_of(outcome: Outcome) -> Ask {
    match outcome {
        Outcome::Success(units) => Ask::Produced(units),
        Outcome::Failure => Ask::Release,
    }
}

// ---------------------------------------------------------------- the runner

/// What went wrong in an episode, and where.
#[derive(Clone, Debug)]
pub struct Violation {
    pub batch: usize,
    pub message: String,
}

/// Counts of what an episode did.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub ops: HashMap<&'static str, u64>,
    pub answers: HashMap<String, u64>,
    pub batches: u64,
    pub concurrent_batches: u64,
    /// `GET /v1/balance` reads compared with the model (a user's balance is
    /// read again whenever its item or the clock moved).
    pub reads: u64,
    /// Lot expiries and plan refills written down (by a user's write or a
    /// sweep), and `grant_expired` history lines (those, and credits back
    /// to an expired lot).
    pub lots_expired: u64,
    pub plan_refills: u64,
    pub expired_lines: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        for (k, v) in &other.ops {
            *self.ops.entry(k).or_default() += v;
        }
        for (k, v) in &other.answers {
            *self.answers.entry(k.clone()).or_default() += v;
        }
        self.batches += other.batches;
        self.concurrent_batches += other.concurrent_batches;
        self.reads += other.reads;
        self.lots_expired += other.lots_expired;
        self.plan_refills += other.plan_refills;
        self.expired_lines += other.expired_lines;
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.values().sum()
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Start { .. } => "clock set (episode start)",
        Op::Grant { .. } => "grant",
        Op::Debit { .. } => "debit",
        Op::SetPlan { .. } => "set plan",
        Op::EndPlan { .. } => "end plan",
        Op::Reserve { .. } => "reserve",
        Op::Confirm { .. } => "confirm",
        Op::Capture { .. } => "capture",
        Op::Extend { .. } => "extend",
        Op::Release { .. } => "release",
        Op::Link { .. } => "link task",
        Op::Refund { .. } => "refund",
        Op::Webhook { .. } => "webhook",
        Op::Redeliver { .. } => "webhook redelivery",
        Op::Sweep => "sweep",
        Op::Advance { seconds } if *seconds >= LONG_JUMPS[0] => "clock jump (6 hours to 31 days)",
        Op::Advance { .. } => "clock jump",
        Op::JumpTo { .. } => "clock jump to a due instant",
        Op::UserWrite { .. } => "user-token write (refused)",
        Op::Stripe { event, .. } => purchases::op_name(*event),
        Op::StripeRedeliver { .. } => "stripe: event sent again",
    }
}

/// An item of the table.
type Item = HashMap<String, AttributeValue>;

/// A balance read: the clock and the user's balance item then, and what it showed.
type Read = (i64, Option<Item>, View);

struct Runner {
    server: TestServer,
    http: Client,
    catalog: Catalog,
    users: Vec<UserId>,
    /// The app's back end: every write goes through it.
    server_token: String,
    /// Each user's own token, for the writes that must be refused and for
    /// reading their balance.
    user_tokens: Vec<String>,
    admin: String,
    run: String,
    model: Model,
    sent: Vec<Sent>,
    tasks: usize,
    /// Keyed reserves of the last batch answered `task_already_linked`: the
    /// one that placed its hold before losing the link race keeps its key
    /// bound to that (released) hold.
    lost_links: Vec<(usize, u8, ReserveSpec)>,
    /// Each user's last balance read: the clock and the balance item then,
    /// and what it showed.
    reads: Vec<Option<Read>>,
    /// Stripe events sent (to send again), and each session's `created`.
    stripe_sent: Vec<purchases::StripeSent>,
    stripe_created: HashMap<usize, i64>,
}

/// Runs the batches on a fresh table; `Err` at the first violation.
pub async fn run_episode(batches: &[Batch], shape: Shape) -> Result<Tally, Violation> {
    let server = TestServer::start_with(Setup { catalog: Some(purchases::catalog()), ..Setup::default() }).await;
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let users: Vec<UserId> = (0..shape.users)
        .map(|i| UserId::parse(&format!("m{i}-{run}")).ok_or_else(|| format!("user id m{i}-{run}")))
        .collect::<Result<_, _>>()
        .map_err(|message| Violation { batch: 0, message })?;
    // Long-lived tokens: clock jumps move the ledger's clock, not the JWT's.
    let server_token = server.server_token();
    let user_tokens = users.iter().map(|u| server.user_token(u)).collect();
    let admin = server.admin_token();
    let model = Model::new(shape.users, server.env.ledger.now().millis(), &run);
    let mut runner = Runner {
        catalog: purchases::catalog(),
        http: Client::new(),
        users,
        server_token,
        user_tokens,
        admin,
        run,
        model,
        sent: Vec::new(),
        tasks: shape.tasks,
        lost_links: Vec::new(),
        reads: vec![None; shape.users],
        stripe_sent: Vec::new(),
        stripe_created: HashMap::new(),
        server,
    };
    let mut tally = Tally::default();
    for (n, batch) in batches.iter().enumerate() {
        let failed = |message: String| Violation { batch: n, message: format!("batch {n} {batch:?}: {message}") };
        let explanations = runner.batch(batch, &mut tally).await.map_err(failed)?;
        runner.compare(explanations, &mut tally).await.map_err(failed)?;
    }
    let last = batches.len().saturating_sub(1);
    runner
        .compare_history_pages()
        .await
        .map_err(|message| Violation { batch: last, message: format!("after the last batch: {message}") })?;
    for account in &runner.model.accounts {
        tally.lots_expired += account.expiries_written;
        tally.plan_refills += account.refills_written;
        tally.expired_lines += account.lines.iter().filter(|l| l.0 == "grant_expired").count() as u64;
    }
    Ok(tally)
}

impl Runner {
    /// Even references pick among the pending holds (where races matter),
    /// odd ones among all.
    fn hold_id(&self, hold: HoldRef) -> Uuid {
        let pending: Vec<Uuid> = self
            .model
            .order
            .iter()
            .filter(|id| self.model.holds.get(id).is_some_and(|h| h.status == Status::Pending))
            .copied()
            .collect();
        let among = if hold.is_multiple_of(2) && !pending.is_empty() { &pending } else { &self.model.order };
        match among.len() {
            // No hold yet: an id nobody has.
            0 => Uuid::from_u128(hold as u128 + 1),
            n => among[(hold / 2) % n],
        }
    }

    fn task_name(&self, task: usize) -> String {
        format!("{}-t{task}", self.run)
    }

    /// Even tasks are BFL's, odd ones a Standard Webhooks sender's.
    fn provider(task: usize) -> Provider {
        if task.is_multiple_of(2) {
            Provider::Bfl
        } else {
            Provider::Generic
        }
    }

    /// The end of `user`'s current plan period, if a plan runs now.
    fn period_end(&self, user: usize) -> Option<i64> {
        let now = self.model.now;
        self.model.accounts[user].plan.as_ref().filter(|p| p.ends_at.is_none_or(|e| now < e))?.current(now).map(|c| c.1)
    }

    fn expiry(&self, user: usize, expiry: Expiry) -> Option<i64> {
        let now = self.model.now;
        let grid = |seconds: u32, ahead: u8| {
            let step = i64::from(seconds) * 1000;
            (now.div_euclid(step) + 1 + i64::from(ahead)) * step
        };
        match expiry {
            Expiry::Never => None,
            Expiry::Grid { seconds, ahead } => Some(grid(seconds, ahead)),
            Expiry::PeriodEnd => Some(self.period_end(user).unwrap_or_else(|| grid(3600, 0))),
            Expiry::Past => Some(now - 1000),
            Expiry::Now => Some(now),
        }
    }

    fn anchor(&self, user: usize, anchor: Anchor) -> Option<i64> {
        let now = self.model.now;
        match anchor {
            Anchor::Omitted => None,
            Anchor::Current => self.model.accounts[user].plan.as_ref().map(|p| p.anchor),
            Anchor::Now => Some(now),
            Anchor::Ago(seconds) => Some(now - i64::from(seconds) * 1000),
            Anchor::Ahead(seconds) => Some(now + i64::from(seconds) * 1000),
            Anchor::MonthDay(day) => {
                let (year, month, ..) = civil(now);
                let mut months = year * 12 + i64::from(month) - 1;
                // The latest midnight on that day of a month that has it.
                for _ in 0..13 {
                    let (y, m) = (months.div_euclid(12), (months.rem_euclid(12) + 1) as u32);
                    if day <= days_in_month(y, m) {
                        let at = utc_millis(y, m, day, 0);
                        if at <= now {
                            return Some(at);
                        }
                    }
                    months -= 1;
                }
                None
            }
        }
    }

    fn resolve(&mut self, op: &Op) -> Resolved {
        let shape_tasks = self.tasks;
        match op {
            Op::Start { at, seconds } => {
                let start = DateTime::parse_from_rfc3339(STARTS[*at]).map_or(0, |t| t.timestamp_millis());
                Resolved::Advance { to: (start + i64::from(*seconds) * 1000).max(self.model.now) }
            }
            Op::Grant { user, key, spec } => {
                let body = match (spec.retry, self.model.grants.get(&(*user, format!("grant-{key}")))) {
                    (true, Some(first)) => first.clone(),
                    _ => GrantBody {
                        amount: spec.amount,
                        reason: spec.reason,
                        priority: spec.priority,
                        expires_at: self.expiry(*user, spec.expiry),
                    },
                };
                Resolved::Grant { user: *user, key: *key, body }
            }
            Op::Debit { user, key, spec } => {
                let body = match (spec.retry, self.model.debits.get(&(*user, *key))) {
                    (true, Some((first, _))) => first.clone(),
                    _ => DebitBody { amount: spec.amount, reason: spec.reason, partial: spec.partial },
                };
                Resolved::Debit { user: *user, key: *key, body }
            }
            Op::SetPlan { user, plan, anchor } => Resolved::SetPlan {
                user: *user,
                request: PlanRequest { plan: *plan, anchor: self.anchor(*user, *anchor) },
            },
            Op::EndPlan { user } => Resolved::EndPlan { user: *user },
            Op::Reserve { user, spec, key } => Resolved::Reserve { user: *user, spec: spec.clone(), key: *key },
            Op::Confirm { hold, units, as_other, explicit } => {
                Resolved::Confirm { id: self.hold_id(*hold), units: *units, as_other: *as_other, explicit: *explicit }
            }
            Op::Capture { hold, units, key } => Resolved::Capture { id: self.hold_id(*hold), units: *units, key: *key },
            Op::Extend { hold, ttl } => Resolved::Extend { id: self.hold_id(*hold), ttl: *ttl },
            Op::Release { hold } => Resolved::Release { id: self.hold_id(*hold) },
            Op::Link { hold, task } => Resolved::Link { id: self.hold_id(*hold), task: *task },
            Op::Refund { hold } => Resolved::Refund { id: self.hold_id(*hold) },
            Op::Webhook { task, success, units } => {
                let task = match task {
                    TaskRef::Index(t) => *t,
                    TaskRef::OfHold(h) => {
                        let id = self.hold_id(*h);
                        self.model.holds.get(&id).and_then(|hold| hold.task).unwrap_or(*h % shape_tasks)
                    }
                };
                let sent = self.delivery(task, *success, *units);
                self.sent.push(sent.clone());
                Resolved::Webhook(sent)
            }
            Op::Redeliver { nth } => match self.sent.len() {
                0 => {
                    let sent = self.delivery(*nth % shape_tasks, Some(true), None);
                    self.sent.push(sent.clone());
                    Resolved::Webhook(sent)
                }
                n => Resolved::Webhook(self.sent[nth % n].clone()),
            },
            Op::Sweep => Resolved::Sweep,
            Op::Advance { seconds } => Resolved::Advance { to: self.model.now + i64::from(*seconds) * 1000 },
            Op::JumpTo { due, offset_ms } => {
                let now = self.model.now;
                let to = match self.model.next_due(*due) {
                    Some(at) => (at + i64::from(*offset_ms)).max(now),
                    None => now + 3_600_000,
                };
                Resolved::Advance { to }
            }
            Op::UserWrite { hold, write } => {
                let id = self.hold_id(*hold);
                let user = self.model.holds.get(&id).map_or(0, |h| h.user);
                Resolved::UserWrite { user, id, write: *write }
            }
            Op::Stripe { session, event } => {
                let sent = self.stripe_event(*session, *event);
                self.stripe_sent.push(sent.clone());
                Resolved::Stripe { sent, racing: purchases::Racing::default() }
            }
            Op::StripeRedeliver { nth } => {
                let sent = self.stripe_again(*nth);
                Resolved::Stripe { sent, racing: purchases::Racing::default() }
            }
        }
    }

    /// The payload each provider sends: BFL says `id` and `Ready`/`Error`,
    /// Standard Webhooks senders `task_id` and `succeeded`/`failed`.
    fn delivery(&self, task: usize, success: Option<bool>, units: Option<u32>) -> Sent {
        let name = self.task_name(task);
        let bfl = Self::provider(task) == Provider::Bfl;
        let status = match (bfl, success) {
            (true, Some(true)) => "Ready",
            (true, Some(false)) => "Error",
            (false, Some(true)) => "succeeded",
            (false, Some(false)) => "failed",
            (_, None) => "processing",
        };
        let mut body =
            if bfl { json!({"id": name, "status": status}) } else { json!({"task_id": name, "status": status}) };
        if let (Some(units), Some(true)) = (units, success) {
            body["units"] = json!(units);
        }
        let outcome = match success {
            Some(true) => Some(Outcome::Success(units)),
            Some(false) => Some(Outcome::Failure),
            None => None,
        };
        let id = (!bfl).then(|| format!("msg_{}", Uuid::new_v4().simple()));
        Sent { task, id, outcome, body: body.to_string() }
    }

    /// Sends a batch at once; returns the model after each order of it that
    /// gives exactly the answers seen (at least one, else the error).
    async fn batch(&mut self, batch: &Batch, tally: &mut Tally) -> Result<Vec<Model>, String> {
        let mut resolved: Vec<Resolved> = batch.iter().map(|op| self.resolve(op)).collect();
        self.mark_races(&mut resolved);
        tally.batches += 1;
        if batch.len() > 1 {
            tally.concurrent_batches += 1;
        }
        for op in batch {
            *tally.ops.entry(op_name(op)).or_default() += 1;
        }
        let observed = join_all(resolved.iter().map(|op| self.send(op))).await;
        let mut observed: Vec<(Answer, Option<Uuid>)> = observed.into_iter().collect::<Result<_, _>>()?;
        // A sweep racing other writes may find what is due written down
        // by them (or not): only a sweep alone says what it wrote down.
        let alone = resolved.len() == 1;
        for (answer, _) in &mut observed {
            if let Answer::Swept { due, .. } = answer {
                if !alone {
                    *due = None;
                }
            }
        }
        for (op, (answer, _)) in resolved.iter().zip(&observed) {
            *tally.answers.entry(answer_kind(op, answer)).or_default() += 1;
        }
        self.lost_links = resolved
            .iter()
            .zip(&observed)
            .filter_map(|(op, (answer, _))| match (op, answer) {
                (Resolved::Reserve { user, spec, key: Some(k) }, Answer::Problem { code, .. })
                    if code == "task_already_linked" =>
                {
                    Some((*user, *k, spec.clone()))
                }
                _ => None,
            })
            .collect();
        // Some order of the batch must give exactly these answers. Orders
        // may agree on the answers but not on the state (two extends of
        // one hold answer the same whichever wins): keep them all, for the
        // table to pick from.
        // A Stripe payment's look at the take-backs parked for its session
        // applies them one at a time, each a step of its own (looks are
        // alike: each distinct order is tried once).
        let steps = self.steps(&resolved);
        let mut tried = HashSet::new();
        let mut explanations = Vec::new();
        let mut first_mismatch = None;
        for order in permutations(steps.len()) {
            let order: Vec<purchases::Step> = order.iter().map(|s| steps[*s]).collect();
            if !tried.insert(order.clone()) {
                continue;
            }
            let mut model = self.model.clone();
            let mut mismatch = None;
            for step in &order {
                let i = match step {
                    purchases::Step::Op(i) => *i,
                    purchases::Step::Look(session) => {
                        model.look_at_parked(*session);
                        continue;
                    }
                };
                let mut allowed = model.step(&resolved[i], &observed[i], &self.catalog);
                if !alone {
                    for answer in &mut allowed {
                        if let Answer::Swept { due, .. } = answer {
                            *due = None;
                        }
                    }
                }
                if !allowed.contains(&observed[i].0) {
                    mismatch = Some(format!(
                        "{:?} answered {} but the model expected {}",
                        resolved[i],
                        observed[i].0,
                        allowed.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
                    ));
                    break;
                }
            }
            match mismatch {
                None => {
                    model.looked_at_parked();
                    explanations.push(model);
                }
                Some(m) => {
                    first_mismatch.get_or_insert(m);
                }
            }
        }
        if !explanations.is_empty() {
            return Ok(explanations);
        }
        Err(format!(
            "no order of the batch explains its answers; in the order sent: {}",
            first_mismatch.unwrap_or_default()
        ))
    }

    async fn send(&self, op: &Resolved) -> Result<(Answer, Option<Uuid>), String> {
        let base = &self.server.base;
        let post = |path: String, token: &str| self.http.post(format!("{base}{path}")).bearer_auth(token);
        // The app's server acting for a user, as apps call it.
        let for_user =
            |path: String, user: usize| post(path, &self.server_token).header(USER_HEADER, self.users[user].as_str());
        let request = match op {
            Resolved::Grant { user, key, body } => {
                let mut json = json!({"amount": body.amount, "reason": REASONS[body.reason].0});
                if let Some(priority) = body.priority {
                    json["priority"] = json!(priority);
                }
                if let Some(at) = body.expires_at {
                    json["expiresAt"] = json!(rfc3339(at));
                }
                post(format!("/v1/admin/users/{}/grants", self.users[*user]), &self.admin)
                    .header("idempotency-key", format!("grant-{key}"))
                    .json(&json)
            }
            Resolved::Debit { user, key, body } => {
                let mut json = json!({"amount": body.amount, "reason": DEBIT_REASONS[body.reason]});
                if body.partial {
                    json["partial"] = json!(true);
                }
                post(format!("/v1/admin/users/{}/debits", self.users[*user]), &self.admin)
                    .header("idempotency-key", format!("debit-{key}"))
                    .json(&json)
            }
            Resolved::SetPlan { user, request } => {
                let def = PLANS[request.plan];
                let mut json = json!({
                    "plan": def.name, "allowance": def.allowance, "period": def.period.as_str(), "rollover": def.rollover
                });
                if let Some(anchor) = request.anchor {
                    json["anchor"] = json!(rfc3339(anchor));
                }
                self.http
                    .put(format!("{base}/v1/admin/users/{}/plan", self.users[*user]))
                    .bearer_auth(&self.admin)
                    .json(&json)
            }
            Resolved::EndPlan { user } => {
                self.http.delete(format!("{base}/v1/admin/users/{}/plan", self.users[*user])).bearer_auth(&self.admin)
            }
            Resolved::Reserve { user, spec, key } => {
                let mut body =
                    json!({"operation": OPERATIONS[spec.operation], "units": spec.units, "ttlSeconds": spec.ttl});
                if let Some(task) = spec.task {
                    body["taskId"] = json!(self.task_name(task));
                    body["provider"] = json!(Self::provider(task).as_str());
                }
                let mut request = for_user("/v1/reservations".into(), *user).json(&body);
                if let Some(key) = key {
                    request = request.header("idempotency-key", format!("reserve-{key}"));
                }
                request
            }
            Resolved::Confirm { id, units, as_other, explicit } => {
                let owner = self.model.holds.get(id).map_or(0, |h| h.user);
                let caller = if *as_other { (owner + 1) % self.users.len() } else { owner };
                let mut body = match units {
                    Some(units) => json!({"units": units}),
                    None => json!({}),
                };
                if *explicit {
                    body["final"] = json!(true);
                }
                // Naming another user than the hold's: 404, as for a missing hold.
                for_user(format!("/v1/reservations/{id}/confirm"), caller).json(&body)
            }
            Resolved::Capture { id, units, key } => {
                let owner = self.model.holds.get(id).map_or(0, |h| h.user);
                for_user(format!("/v1/reservations/{id}/confirm"), owner)
                    .header("idempotency-key", format!("capture-{key}"))
                    .json(&json!({"units": units, "final": false}))
            }
            Resolved::Extend { id, ttl } => {
                let owner = self.model.holds.get(id).map_or(0, |h| h.user);
                for_user(format!("/v1/reservations/{id}/extend"), owner).json(&json!({"ttlSeconds": ttl}))
            }
            Resolved::Release { id } => {
                let owner = self.model.holds.get(id).map_or(0, |h| h.user);
                for_user(format!("/v1/reservations/{id}/release"), owner).json(&json!({}))
            }
            Resolved::Link { id, task } => {
                let owner = self.model.holds.get(id).map_or(0, |h| h.user);
                for_user(format!("/v1/reservations/{id}/task"), owner)
                    .json(&json!({"taskId": self.task_name(*task), "provider": Self::provider(*task).as_str()}))
            }
            Resolved::Refund { id } => {
                post(format!("/v1/admin/reservations/{id}/refund"), &self.admin).json(&json!({"reason": "model"}))
            }
            Resolved::Webhook(sent) => self.signed(sent),
            Resolved::Stripe { sent, .. } => self.stripe_request(sent),
            Resolved::Sweep => post("/v1/admin/cleanup".into(), &self.admin),
            Resolved::UserWrite { user, id, write } => {
                let token = &self.user_tokens[*user];
                match write {
                    UserWrite::Reserve => {
                        post("/v1/reservations".into(), token).json(&json!({"operation": OPERATIONS[0], "units": 1}))
                    }
                    UserWrite::Confirm => {
                        post(format!("/v1/reservations/{id}/confirm"), token).json(&json!({"units": 1}))
                    }
                    UserWrite::Capture => post(format!("/v1/reservations/{id}/confirm"), token)
                        .header("idempotency-key", "capture-user")
                        .json(&json!({"units": 1, "final": false})),
                    UserWrite::Release => post(format!("/v1/reservations/{id}/release"), token).json(&json!({})),
                    UserWrite::Extend => {
                        post(format!("/v1/reservations/{id}/extend"), token).json(&json!({"ttlSeconds": 3600}))
                    }
                    UserWrite::Link => post(format!("/v1/reservations/{id}/task"), token)
                        .json(&json!({"taskId": self.task_name(0), "provider": Self::provider(0).as_str()})),
                }
            }
            Resolved::Advance { to } => {
                let to = (*to).max(self.server.env.ledger.now().millis());
                self.server.env.clock.set(Timestamp(to));
                return Ok((Answer::Moved, None));
            }
        };
        let response = request.send().await.map_err(|e| format!("{op:?}: {e}"))?;
        let status = response.status().as_u16();
        let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v.as_bytes() == b"true");
        let problem_json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/problem+json"));
        let body: Value = response.json().await.map_err(|e| format!("{op:?}: body: {e}"))?;
        if problem_json || status >= 400 {
            let code = body["code"].as_str().unwrap_or("?").to_owned();
            return Ok((Answer::Problem { status, code }, None));
        }
        let number = |k: &str| body[k].as_u64().unwrap_or(u64::MAX);
        let answer = match op {
            Resolved::Grant { .. } => Answer::Granted { status },
            Resolved::Debit { .. } => Answer::Debited {
                status,
                amount: number("amount"),
                requested: number("requested"),
                lots: answered_lots(&body["lots"]),
                replayed,
            },
            Resolved::SetPlan { .. } | Resolved::EndPlan { .. } => Answer::Planned { status },
            Resolved::Webhook(_) => Answer::Webhook {
                status,
                result: body["result"].as_str().unwrap_or("?").to_owned(),
                late: body["lateSuccess"].as_bool().unwrap_or(false),
            },
            Resolved::Stripe { .. } => purchases::answer_of(status, &body),
            Resolved::Sweep => {
                Answer::Swept { expired: number("expired"), due: Some((number("lotsExpired"), number("planRefills"))) }
            }
            Resolved::Extend { .. } => Answer::Extended {
                status,
                hold: body["status"].as_str().unwrap_or("?").to_owned(),
                expires_at: body["expiresAt"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map_or(i64::MIN, |t| t.timestamp_millis()),
            },
            _ => Answer::Hold {
                status,
                hold: body["status"].as_str().unwrap_or("?").to_owned(),
                units: body["capturedUnits"].as_u64().and_then(|u| u32::try_from(u).ok()).unwrap_or(u32::MAX),
                captured: number("capturedAmount"),
                released: number("releasedAmount"),
                lots: answered_lots(&body["lots"]),
                replayed,
            },
        };
        let id = body["reservationId"].as_str().and_then(|s| Uuid::parse_str(s).ok());
        Ok((answer, id))
    }

    fn signed(&self, sent: &Sent) -> reqwest::RequestBuilder {
        let provider = Self::provider(sent.task);
        let request = self
            .http
            .post(format!("{}/v1/webhooks/{}", self.server.base, provider.as_str()))
            .header("content-type", "application/json")
            .body(sent.body.clone());
        match &sent.id {
            Some(id) => {
                let now = self.server.env.ledger.now().unix_seconds();
                let secret = GENERIC_SECRETS.split(',').next().unwrap_or_default();
                let signature = generic::sign(secret, id, now, sent.body.as_bytes()).unwrap_or_default();
                request
                    .header("webhook-id", id)
                    .header("webhook-timestamp", now.to_string())
                    .header("webhook-signature", signature)
            }
            None => {
                let secret = BFL_SECRETS.split(',').next().unwrap_or_default();
                request.header("x-bfl-signature", bfl::sign(secret, sent.body.as_bytes()))
            }
        }
    }

    /// Every user's balance as `GET /v1/balance` shows it (their own
    /// token). A read shows the balance item as of the clock, so it is
    /// read again only when the item or the clock moved since the last.
    async fn read_views(&mut self, items: &[Item], tally: &mut Tally) -> Result<Vec<View>, String> {
        let now = self.server.env.ledger.now().millis();
        let balance_pks: Vec<String> = self.users.iter().map(user_pk).collect();
        let item_of = |u: usize| {
            items.iter().find(|i| text(i, "entity") == "balance" && text(i, "pk") == balance_pks[u]).cloned()
        };
        let stale: Vec<(usize, Option<Item>)> = (0..self.users.len())
            .map(|u| (u, item_of(u)))
            .filter(|(u, item)| self.reads[*u].as_ref().is_none_or(|(at, seen, _)| *at != now || seen != item))
            .collect();
        let fresh = join_all(stale.iter().map(|(u, _)| self.read_view(*u))).await;
        tally.reads += fresh.len() as u64;
        for ((u, item), view) in stale.into_iter().zip(fresh) {
            self.reads[u] = Some((now, item, view?));
        }
        Ok(self.reads.iter().map(|r| r.as_ref().map(|(.., view)| view.clone()).unwrap_or_else(View::empty)).collect())
    }

    async fn read_view(&self, user: usize) -> Result<View, String> {
        let response = self
            .http
            .get(format!("{}/v1/balance", self.server.base))
            .bearer_auth(&self.user_tokens[user])
            .send()
            .await
            .map_err(|e| format!("GET /v1/balance: {e}"))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(|e| format!("GET /v1/balance: body: {e}"))?;
        if status != 200 {
            return Err(format!("GET /v1/balance answered {status}: {body}"));
        }
        view_of(&body).map_err(|e| format!("GET /v1/balance: {e}: {body}"))
    }

    /// The books on their own, and the table and the balance reads against
    /// the models that explain the batch's answers: one must match, and
    /// becomes the model.
    async fn compare(&mut self, explanations: Vec<Model>, tally: &mut Tally) -> Result<(), String> {
        let items = scan(&self.server.env.store).await;
        let views = self.read_views(&items, tally).await?;
        check_books(&items)?;
        for (u, view) in views.iter().enumerate() {
            if view.available + view.reserved + view.spent + view.expired + view.debited != view.granted {
                return Err(format!("user {u}: the balance read does not add up: {view:?}"));
            }
        }
        let mut first_difference = None;
        for model in explanations {
            self.model = model;
            match self.compare_with(&items, &views) {
                Ok(()) => return Ok(()),
                Err(difference) => {
                    first_difference.get_or_insert(difference);
                }
            }
        }
        Err(first_difference.unwrap_or_default())
    }

    /// The table and the reads against `self.model`.
    fn compare_with(&mut self, items: &[Item], views: &[View]) -> Result<(), String> {
        let user_of: HashMap<String, usize> = self.users.iter().enumerate().map(|(i, u)| (user_pk(u), i)).collect();
        let by_name: HashMap<String, usize> =
            self.users.iter().enumerate().map(|(i, u)| (u.as_str().to_owned(), i)).collect();
        let now = self.model.now;

        let mut stored = vec![Stored::default(); self.users.len()];
        let mut lines: Vec<Vec<Line>> = vec![Vec::new(); self.users.len()];
        let mut parked = HashSet::new();
        let mut seen_holds = HashSet::new();
        for item in items {
            let pk = text(item, "pk");
            match text(item, "entity").as_str() {
                "balance" => {
                    let Some(&u) = user_of.get(&pk) else { return Err(format!("balance of an unknown user: {pk}")) };
                    stored[u] = stored_of(item)?;
                }
                "entry" => {
                    let Some(&u) = user_of.get(&pk) else {
                        return Err(format!("history line of an unknown user: {pk}"));
                    };
                    lines[u].push((text(item, "type"), number(item, "amount"), attr_number(item, "at")));
                }
                "parked" => {
                    parked.insert(pk);
                }
                "hold" => {
                    let id = Uuid::parse_str(&text(item, "reservationId")).map_err(|e| format!("hold id: {e}"))?;
                    seen_holds.insert(id);
                    let status = text(item, "status");
                    let (amount, captured, released) =
                        (number(item, "amount"), number(item, "capturedAmount"), number(item, "releasedAmount"));
                    let user = by_name.get(&text(item, "userId")).copied();
                    let lots = item_lots(item)?;
                    match self.model.holds.get(&id) {
                        Some(h) => {
                            let table = HoldState {
                                status,
                                captured_units: number(item, "capturedUnits"),
                                captured,
                                released,
                                final_units: item.contains_key("finalUnits").then(|| number(item, "finalUnits")),
                                captures: match item.get("captures") {
                                    Some(AttributeValue::M(map)) => map
                                        .iter()
                                        .map(|(k, v)| (k.clone(), v.as_n().ok().and_then(|n| n.parse().ok())))
                                        .collect(),
                                    _ => HashMap::new(),
                                },
                                expires_at: attr_number(item, "expiresAt"),
                                lots,
                            };
                            let model = HoldState {
                                status: h.status.as_str().into(),
                                captured_units: u64::from(h.captured_units),
                                captured: h.captured,
                                released: h.released,
                                final_units: h.final_units.map(u64::from),
                                captures: h
                                    .captures
                                    .iter()
                                    .map(|(k, units)| (capture_key(*k), Some(u64::from(*units))))
                                    .collect(),
                                expires_at: h.expires_at,
                                lots: lot_parts(&h.lots),
                            };
                            if table != model {
                                return Err(format!("hold {id}: table says {table:?}, model says {model:?}"));
                            }
                        }
                        // A hold placed by a reserve whose link then lost a race is released
                        // by that same request, which answers the link's error: it took its
                        // lots and gave them back (nothing had expired in between), and its
                        // reserve wrote down what was due.
                        None if status == "released" && captured == 0 => {
                            let Some(u) = user else { return Err(format!("hold {id} of an unknown user")) };
                            let account = &mut self.model.accounts[u];
                            if amount > 0 {
                                account.catch_up(now);
                            }
                            account.line("reserve", amount, attr_number(item, "createdAt"));
                            account.line("release", amount, attr_number(item, "settledAt"));
                            // Its key stays bound to it: a retry replays it, another body is 422.
                            for (_, k, spec) in self.lost_links.iter().filter(|(lu, _, _)| *lu == u) {
                                if keyed_reservation_id(&self.users[u], &format!("reserve-{k}")) == id {
                                    self.model.reserve_keys.insert((u, *k), (id, spec.clone()));
                                }
                            }
                            self.model.holds.insert(
                                id,
                                Hold {
                                    user: u,
                                    units: u32::try_from(number(item, "units")).unwrap_or(0),
                                    unit_cost: number(item, "unitCost"),
                                    amount,
                                    status: Status::Released,
                                    captured_units: 0,
                                    captured: 0,
                                    released: amount,
                                    final_units: None,
                                    captures: HashMap::new(),
                                    task: None,
                                    created_at: attr_number(item, "createdAt"),
                                    expires_at: attr_number(item, "expiresAt"),
                                    lots: lots
                                        .iter()
                                        .map(|(p, at, c)| (LotId { priority: *p, expires: *at }, *c))
                                        .collect(),
                                },
                            );
                        }
                        None => return Err(format!("hold {id} ({status}) is not in the model")),
                    }
                }
                _ => {}
            }
        }
        for (u, account) in self.model.accounts.iter().enumerate() {
            // The due-work index entry is never later than what falls due
            // next (nor missing): the sweep must find it. It may be earlier
            // (a lot emptied since it was written), which costs a look.
            let model = account.stored(now);
            let table = Stored { due: model.due, ..stored[u].clone() };
            let late = match (stored[u].due, model.due) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(entry), Some(next)) => entry > next,
            };
            if table != model || late {
                return Err(format!("user {u}: the balance item says {:?}, the model {model:?}", stored[u]));
            }
            let (mut table, mut expected) = (lines[u].clone(), account.lines.clone());
            table.sort();
            expected.sort();
            if table != expected {
                return Err(format!(
                    "user {u}: history lines differ; only in the table: {:?}; only in the model: {:?}",
                    difference(&table, &expected),
                    difference(&expected, &table)
                ));
            }
            let (mut view, next_expiry) = account.view(now);
            let read = &views[u];
            view.next_expiry = read.next_expiry;
            if *read != view || !next_expiry.contains(&read.next_expiry) {
                view.next_expiry = next_expiry.first().copied().flatten();
                return Err(format!(
                    "user {u}: GET /v1/balance shows {read:?}, the model {view:?} (nextExpiry one of {next_expiry:?})"
                ));
            }
        }
        if let Some(missing) = self.model.holds.keys().find(|id| !seen_holds.contains(id)) {
            return Err(format!("hold {missing} is in the model but not in the table"));
        }
        let expected: HashSet<String> =
            self.model.parked.keys().map(|t| task_pk(Self::provider(*t), &self.task_name(*t))).collect();
        if parked != expected {
            return Err(format!("parked deliveries: table {parked:?}, model {expected:?}"));
        }
        self.compare_stripe(items)
    }

    /// Every user's history as `GET /v1/transactions` pages it: newest
    /// first, and exactly the model's lines.
    async fn compare_history_pages(&self) -> Result<(), String> {
        for (u, token) in self.user_tokens.iter().enumerate() {
            let mut read: Vec<Line> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut url = format!("{}/v1/transactions?limit=200", self.server.base);
                if let Some(c) = &cursor {
                    url.push_str(&format!("&cursor={c}"));
                }
                let response = self
                    .http
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| format!("GET /v1/transactions: {e}"))?;
                let body: Value = response.json().await.map_err(|e| format!("GET /v1/transactions: body: {e}"))?;
                for item in body["items"].as_array().into_iter().flatten() {
                    let at = parse_time(&item["at"])?.unwrap_or(i64::MIN);
                    read.push((
                        item["type"].as_str().unwrap_or("?").to_owned(),
                        item["amount"].as_u64().unwrap_or(u64::MAX),
                        at,
                    ));
                }
                match body["nextCursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            if let Some(w) = read.windows(2).find(|w| w[0].2 < w[1].2) {
                return Err(format!("user {u}: history not newest first: {:?} before {:?}", w[0], w[1]));
            }
            let mut expected = self.model.accounts[u].lines.clone();
            read.sort();
            expected.sort();
            if read != expected {
                return Err(format!(
                    "user {u}: GET /v1/transactions differs; only there: {:?}; only in the model: {:?}",
                    difference(&read, &expected),
                    difference(&expected, &read)
                ));
            }
        }
        Ok(())
    }
}

/// What `a` has that `b` has not (both sorted), as a multiset.
fn difference(a: &[Line], b: &[Line]) -> Vec<(String, u64, String)> {
    let mut rest: Vec<&Line> = b.iter().collect();
    let mut out = Vec::new();
    for line in a {
        match rest.iter().position(|l| *l == line) {
            Some(i) => {
                rest.remove(i);
            }
            None => out.push((line.0.clone(), line.1, rfc3339(line.2))),
        }
    }
    out
}

/// A reservation's or a debit's `lots` as answered.
fn answered_lots(lots: &Value) -> LotParts {
    lots.as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["priority"].as_u64().and_then(|p| u8::try_from(p).ok()).unwrap_or(u8::MAX),
                parse_time(&l["expiresAt"]).unwrap_or(Some(i64::MIN)),
                l["amount"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// A hold item's `lots` (a free hold has none).
fn item_lots(item: &Item) -> Result<LotParts, String> {
    let Some(list) = item.get("lots") else { return Ok(Vec::new()) };
    let list = list.as_l().map_err(|_| format!("hold lots not a list: {list:?}"))?;
    list.iter()
        .map(|part| {
            let map = part.as_m().map_err(|_| format!("hold lot not a map: {part:?}"))?;
            let num = |k: &str| map.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
            let priority = num("priority").and_then(|p| u8::try_from(p).ok()).ok_or("hold lot priority")?;
            let amount = num("amount").and_then(|a| u64::try_from(a).ok()).ok_or("hold lot amount")?;
            Ok((priority, num("expiresAt"), amount))
        })
        .collect()
}

/// A balance item as the model keeps it: lot attributes
/// `lot#<priority>#<ms|never>#rem|held` (the base lot's are `available`
/// and `reserved`), the figures, `planPeriod`, the due-work index entry.
fn stored_of(item: &Item) -> Result<Stored, String> {
    let signed = |v: &AttributeValue| -> Result<u64, String> {
        v.as_n().ok().and_then(|n| n.parse::<u64>().ok()).ok_or_else(|| format!("not a count: {v:?}"))
    };
    let figure = |name: &str| item.get(name).map_or(Ok(0), signed);
    let mut lots: BTreeMap<LotId, (Option<u64>, u64)> = BTreeMap::new();
    lots.insert(LotId::BASE, (Some(figure("available")?), figure("reserved")?));
    for (name, value) in item {
        let Some(rest) = name.strip_prefix("lot#") else { continue };
        let parts: Vec<&str> = rest.split('#').collect();
        let [priority, expiry, part] = parts.as_slice() else { return Err(format!("lot attribute {name}")) };
        let priority: u8 = priority.parse().map_err(|_| format!("lot attribute {name}"))?;
        let expires = match *expiry {
            "never" => None,
            ms => Some(ms.parse::<i64>().map_err(|_| format!("lot attribute {name}"))?),
        };
        let lot = lots.entry(LotId { priority, expires }).or_default();
        match *part {
            "rem" => lot.0 = Some(signed(value)?),
            "held" => lot.1 = signed(value)?,
            _ => return Err(format!("lot attribute {name}")),
        }
    }
    let time = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
    Ok(Stored {
        lots,
        spent: figure("spent")?,
        granted: figure("granted")?,
        expired: figure("expired")?,
        debited: figure("debited")?,
        plan_period: time("planPeriod"),
        due: item.contains_key("pendingShard").then(|| time("expiresAt")).flatten(),
    }
    .normalized())
}

/// A `GET /v1/balance` answer.
fn view_of(body: &Value) -> Result<View, String> {
    let count = |v: &Value, k: &str| v[k].as_u64().ok_or_else(|| format!("{k} is not a count"));
    let lots = body["lots"]
        .as_array()
        .ok_or("lots is not a list")?
        .iter()
        .map(|l| {
            let priority = l["priority"].as_u64().and_then(|p| u8::try_from(p).ok()).ok_or("lot priority")?;
            Ok((priority, parse_time(&l["expiresAt"])?, count(l, "remaining")?, count(l, "reserved")?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let next_expiry = match &body["nextExpiry"] {
        Value::Null => None,
        next => Some((parse_time(&next["at"])?.ok_or("nextExpiry.at")?, count(next, "amount")?)),
    };
    let plan = match &body["plan"] {
        Value::Null => None,
        p => Some(PlanView {
            plan: p["plan"].as_str().ok_or("plan.plan")?.to_owned(),
            allowance: count(p, "allowance")?,
            period: p["period"].as_str().ok_or("plan.period")?.to_owned(),
            rollover: count(p, "rollover")?,
            anchor: parse_time(&p["anchor"])?.ok_or("plan.anchor")?,
            current_start: parse_time(&p["currentPeriodStart"])?,
            current_end: parse_time(&p["currentPeriodEnd"])?,
            ends_at: parse_time(&p["endsAt"])?,
        }),
    };
    Ok(View {
        available: count(body, "available")?,
        reserved: count(body, "reserved")?,
        spent: count(body, "spent")?,
        expired: count(body, "expired")?,
        debited: count(body, "debited")?,
        granted: count(body, "granted")?,
        lots,
        next_expiry,
        plan,
    })
}

/// What the table says of a hold, or the model (`captures` by the
/// digest the table keeps of each key).
#[derive(Debug, PartialEq, Eq)]
struct HoldState {
    status: String,
    captured_units: u64,
    captured: u64,
    released: u64,
    final_units: Option<u64>,
    captures: HashMap<String, Option<u64>>,
    expires_at: i64,
    lots: LotParts,
}

/// How the table keys a capture sent with `Idempotency-Key: capture-<key>`.
fn capture_key(key: u8) -> String {
    CaptureKey::of(&format!("capture-{key}")).as_hex()
}

/// How an answer is counted: captures, extends, grants, debits, plans and
/// clock moves apart from the rest.
fn answer_kind(op: &Resolved, answer: &Answer) -> String {
    match (op, answer) {
        (Resolved::Capture { .. }, Answer::Hold { status, replayed: true, .. }) => format!("{status} capture replayed"),
        (Resolved::Capture { .. }, Answer::Hold { status, .. }) => format!("{status} captured"),
        (Resolved::Capture { .. }, Answer::Problem { status, code }) => format!("{status} {code} (capture)"),
        (Resolved::Extend { .. }, Answer::Problem { status, code }) => format!("{status} {code} (extend)"),
        (Resolved::Grant { body, .. }, Answer::Granted { status: 201 }) => match body.expires_at {
            Some(_) => "201 granted (expiring lot)".into(),
            None => "201 granted".into(),
        },
        (Resolved::Grant { .. }, Answer::Problem { status, code }) => format!("{status} {code} (grant)"),
        (Resolved::Debit { .. }, Answer::Debited { status, replayed: true, .. }) => format!("{status} debit replayed"),
        (Resolved::Debit { .. }, Answer::Debited { status, amount, requested, .. }) if amount < requested => {
            format!("{status} debited (partial)")
        }
        (Resolved::Debit { .. }, Answer::Debited { status, .. }) => format!("{status} debited"),
        (Resolved::Debit { .. }, Answer::Problem { status, code }) => format!("{status} {code} (debit)"),
        (Resolved::SetPlan { .. }, Answer::Planned { status }) => format!("{status} plan set"),
        (Resolved::EndPlan { .. }, Answer::Planned { status }) => format!("{status} plan ended"),
        (Resolved::Stripe { sent, .. }, Answer::Stripe { status, result, .. })
            if sent.gives_back() && result == "granted" =>
        {
            format!("{status} stripe granted (dispute won)")
        }
        (_, answer) => answer_kind_of(answer),
    }
}

fn answer_kind_of(answer: &Answer) -> String {
    match answer {
        Answer::Problem { status, code } => format!("{status} {code}"),
        Answer::Hold { status, hold, .. } => format!("{status} {hold}"),
        Answer::Extended { status, .. } => format!("{status} extended"),
        Answer::Granted { status } => format!("{status} granted"),
        Answer::Debited { status, .. } => format!("{status} debited"),
        Answer::Planned { status } => format!("{status} plan"),
        Answer::Webhook { status, result, late } => {
            format!("{status} webhook {result}{}", if *late { " (late)" } else { "" })
        }
        Answer::Swept { due: Some((lots, refills)), .. } if lots + refills > 0 => {
            "200 swept (lot expiries or refills written down)".into()
        }
        Answer::Swept { .. } => "200 swept".into(),
        Answer::Moved => "clock moved".into(),
        Answer::Stripe { status, unrecoverable: Some(lost), .. } if *lost > 0 => {
            format!("{status} stripe taken_back (some already spent)")
        }
        Answer::Stripe { status, result, reason, .. } => {
            format!("{status} stripe {result}{}", reason.as_ref().map_or(String::new(), |r| format!(" ({r})")))
        }
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n <= 1 {
        return vec![(0..n).collect()];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut order = rest.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}

/// Shrinks a failing sequence: drops batches (halves, then smaller chunks),
/// then runs concurrent batches one operation at a time, keeping each change
/// that still fails. Bounded by `budget`.
pub async fn shrink(mut batches: Vec<Batch>, shape: Shape, budget: Duration) -> (Vec<Batch>, Violation) {
    let started = Instant::now();
    let mut last = match run_episode(&batches, shape).await {
        Err(v) => v,
        Ok(_) => {
            return (batches, Violation { batch: 0, message: "did not fail again when rerun (a race)".into() });
        }
    };
    batches.truncate(last.batch + 1);
    let mut chunk = batches.len().div_ceil(2);
    while chunk >= 1 && started.elapsed() < budget {
        let mut start = 0;
        let mut removed_any = false;
        while start < batches.len() && started.elapsed() < budget {
            let mut candidate = batches.clone();
            let end = (start + chunk).min(candidate.len());
            candidate.drain(start..end);
            if candidate.is_empty() {
                start += chunk;
                continue;
            }
            match run_episode(&candidate, shape).await {
                Err(v) => {
                    candidate.truncate(v.batch + 1);
                    batches = candidate;
                    last = v;
                    removed_any = true;
                }
                Ok(_) => start += chunk,
            }
        }
        if !removed_any {
            chunk /= 2;
        }
    }
    // One operation at a time where that still fails.
    let mut i = 0;
    while i < batches.len() && started.elapsed() < budget {
        if batches[i].len() > 1 {
            let mut candidate = batches.clone();
            let ops = candidate.remove(i);
            for (k, op) in ops.into_iter().enumerate() {
                candidate.insert(i + k, vec![op]);
            }
            if let Err(v) = run_episode(&candidate, shape).await {
                candidate.truncate(v.batch + 1);
                batches = candidate;
                last = v;
            }
        }
        i += 1;
    }
    (batches, last)
}

/// The seed of episode `n` of a run with seed `seed`.
pub fn episode_seed(seed: u64, n: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(n.wrapping_mul(0xBF58_476D_1CE4_E5B9)) ^ n
}

/// A failure report: the seed, the violation and the shrunk sequence.
pub fn report(seed: u64, episode: u64, shrunk: &[Batch], violation: &Violation) -> String {
    let mut out = format!(
        "model violation (seed {seed}, episode {episode}; replay: MODEL_SEED={seed} make test, or cargo test -p credits-tests --test model)\n{}\nshortest failing sequence ({} batches; ops in one batch ran at once):\n",
        violation.message,
        shrunk.len()
    );
    for (n, batch) in shrunk.iter().enumerate() {
        out.push_str(&format!("  {n:>3}: {batch:?}\n"));
    }
    out
}
