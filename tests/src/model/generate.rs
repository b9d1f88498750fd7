//! The operation generator: an episode's batches from its seed. What is
//! drawn, and in what order, is what a seed replays.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ops::{
    Anchor, Batch, DebitSpec, DueKind, Expiry, GrantSpec, HoldRef, Op, ReserveSpec, Shape, TaskRef, UserWrite,
    DEBIT_REASONS, OPERATIONS, PLANS, STARTS,
};
use super::purchases;

const TTLS: [u32; 3] = [60, 300, 3600];
const JUMPS: [u32; 5] = [5, 30, 120, 400, 4000];
/// Jumps across lot expiries and period ends: hours, days, a week, a month.
pub(super) const LONG_JUMPS: [u32; 6] = [21_600, 86_400, 3 * 86_400, 7 * 86_400, 29 * 86_400, 31 * 86_400];
/// Where a jump to a due instant lands: a millisecond before, on it, a
/// millisecond after, a second after.
const DUE_OFFSETS: [i32; 4] = [-1, 0, 1, 1000];
/// What an extend asks for: at most a day a time (the route's bound).
const EXTENSIONS: [u32; 4] = [30, 300, 3600, 86_400];
/// A day in a long job's life: a little less than the day it was extended by.
const DAY_JUMP: u32 = 86_000;
const PRIORITIES: [u8; 5] = [0, 10, 20, 50, 100];
/// Expiries on a grid (seconds), so grants at different times share lots.
const GRIDS: [u32; 4] = [60, 600, 3600, 86_400];
const DEBIT_AMOUNTS: [u64; 5] = [3, 10, 25, 60, 150];

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

/// The seed of episode `n` of a run with seed `seed`.
pub fn episode_seed(seed: u64, n: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(n.wrapping_mul(0xBF58_476D_1CE4_E5B9)) ^ n
}
