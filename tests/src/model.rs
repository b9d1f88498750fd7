//! Randomized operation sequences checked against a model of the ledger.
//!
//! An episode is a sequence of batches generated from a seed; the operations
//! of a batch are sent at once to the dev server (over HTTP, webhooks
//! signed), then the answers are checked against the model: some order of
//! the batch must give exactly those answers (the batch is linearizable),
//! and afterwards the table must equal the model state of one such order —
//! balances, hold states and splits (captured units, capture keys, the
//! closing confirm's units, `expiresAt`), history lines, parked deliveries —
//! and the books must balance on their own. Holds are captured in parts
//! (non-final confirms with an `Idempotency-Key`), closed by a final
//! confirm, a release, an expiry or a provider's total, refunded, and
//! extended (up to the 7-day cap, as a long job's are). A failing episode is
//! shrunk to the shortest sequence that still fails, and replays from its
//! seed.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use credits_shared::domain::{CaptureKey, Provider, UserId};
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

use crate::{check_books, number, scan, text, TestServer, BFL_SECRETS, GENERIC_SECRETS, USER_HEADER};

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
/// What an extend asks for: at most a day a time (the route's bound).
const EXTENSIONS: [u32; 4] = [30, 300, 3600, 86_400];
/// A pending hold may stay open at most this long after it was placed.
const MAX_HOLD_MILLIS: i64 = 7 * 86_400 * 1000;
/// A day in a long job's life: a little less than the day it was extended by.
const DAY_JUMP: u32 = 86_000;

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Grant {
        user: usize,
        key: u8,
        amount: u64,
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
    /// The paying user tries to move credits with their own token: a
    /// reserve, or a confirm or a capture of one unit, a release, an
    /// extend or a task link of a hold of theirs. Always 403, and nothing
    /// changes.
    UserWrite {
        hold: HoldRef,
        write: UserWrite,
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
    let roll = rng.gen_range(0..100);
    if roll < 7 {
        return vec![Op::Advance { seconds: JUMPS[rng.gen_range(0..JUMPS.len())] }];
    }
    if roll < 11 {
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
    match rng.gen_range(0..100) {
        0..=9 => {
            let key = rng.gen_range(0..6u8);
            // Mostly the same amount for a key (a retry), sometimes not (a bug in the caller).
            let amount = if rng.gen_bool(0.85) { 20 * (u64::from(key) + 1) } else { rng.gen_range(1..100) };
            Op::Grant { user, key, amount }
        }
        10..=32 => {
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
        _ => Op::Redeliver { nth: rng.gen_range(0..64) },
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

// ---------------------------------------------------------------- the model

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Figures {
    available: u64,
    reserved: u64,
    spent: u64,
    granted: u64,
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

#[derive(Clone, Debug)]
struct Model {
    now: i64,
    users: Vec<Figures>,
    entries: Vec<u64>,
    grants: HashMap<(usize, u8), u64>,
    holds: HashMap<Uuid, Hold>,
    /// Holds in the order they were placed (what `HoldRef`s index).
    order: Vec<Uuid>,
    reserve_keys: HashMap<(usize, u8), (Uuid, ReserveSpec)>,
    tasks: HashMap<usize, Uuid>,
    parked: HashMap<usize, Outcome>,
    seen: HashSet<String>,
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
    Webhook {
        status: u16,
        result: String,
        late: bool,
    },
    Swept {
        expired: u64,
    },
    Moved,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Problem { status, code } => write!(f, "{status} {code}"),
            Answer::Hold { status, hold, units, captured, released, replayed } => {
                write!(
                    f,
                    "{status} {hold} capturedUnits={units} captured={captured} released={released}{}",
                    if *replayed { " (replayed)" } else { "" }
                )
            }
            Answer::Extended { status, hold, expires_at } => write!(f, "{status} {hold} expiresAt={expires_at}"),
            Answer::Granted { status } => write!(f, "{status} granted"),
            Answer::Webhook { status, result, late } => {
                write!(f, "{status} {result}{}", if *late { " late" } else { "" })
            }
            Answer::Swept { expired } => write!(f, "swept expired={expired}"),
            Answer::Moved => write!(f, "clock moved"),
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
        amount: u64,
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
    Advance {
        seconds: u32,
    },
    /// With the token of `user`, the owner of `id` (or user 0 when no hold).
    UserWrite {
        user: usize,
        id: Uuid,
        write: UserWrite,
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
    fn new(users: usize, now: i64) -> Model {
        Model {
            now,
            users: vec![Figures::default(); users],
            entries: vec![0; users],
            grants: HashMap::new(),
            holds: HashMap::new(),
            order: Vec::new(),
            reserve_keys: HashMap::new(),
            tasks: HashMap::new(),
            parked: HashMap::new(),
            seen: HashSet::new(),
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
                replayed,
            },
            None => problem(500, "model: no such hold"),
        }
    }

    /// Applies one operation; `id` is the reservation id the server answered
    /// (the model cannot know a new hold's random id). Returns the answers
    /// the operation may get.
    fn step(&mut self, op: &Resolved, id: Option<Uuid>, catalog: &Catalog) -> Vec<Answer> {
        match op {
            Resolved::Grant { user, key, amount } => vec![self.grant(*user, *key, *amount)],
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
                vec![Answer::Swept { expired: due.len() as u64 }]
            }
            Resolved::Advance { seconds } => {
                self.now += i64::from(*seconds) * 1000;
                vec![Answer::Moved]
            }
            // The person who pays never decides what they pay.
            Resolved::UserWrite { .. } => vec![problem(403, "forbidden")],
        }
    }

    fn grant(&mut self, user: usize, key: u8, amount: u64) -> Answer {
        match self.grants.get(&(user, key)) {
            Some(first) if *first == amount => Answer::Granted { status: 200 },
            Some(_) => problem(422, "idempotency_key_reused"),
            None => {
                self.grants.insert((user, key), amount);
                self.users[user].available += amount;
                self.users[user].granted += amount;
                self.entries[user] += 1;
                Answer::Granted { status: 201 }
            }
        }
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
        let taken = spec.task.is_some_and(|t| self.tasks.contains_key(&t));
        let short = self.users[user].available < amount;
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
        self.users[user].available -= amount;
        self.users[user].reserved += amount;
        self.entries[user] += 1;
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
                created_at: self.now,
                expires_at: self.now + i64::from(spec.ttl) * 1000,
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

    /// Makes one change: balances, the hold, history lines.
    fn apply(&mut self, id: Uuid, change: Change) {
        let Some(h) = self.holds.get_mut(&id) else { return };
        let user = h.user;
        let held = h.held();
        let figures = &mut self.users[user];
        match change {
            Change::Capture(units, key) => {
                let captured = h.unit_cost * u64::from(units);
                h.captured_units += units;
                h.captured += captured;
                h.captures.insert(key, units);
                figures.reserved -= captured;
                figures.spent += captured;
                // One `capture` line per capture.
                self.entries[user] += 1;
            }
            Change::Confirm(units) => {
                let captured = (h.unit_cost * u64::from(units)).min(held);
                let returned = held - captured;
                h.status = Status::Confirmed;
                h.captured_units += units;
                h.captured += captured;
                h.released = returned;
                h.final_units = Some(units);
                figures.reserved -= held;
                figures.spent += captured;
                figures.available += returned;
                // A `confirm` line with this step's credits (maybe 0), and a
                // `release` line for the rest when there is one.
                self.entries[user] += if returned > 0 { 2 } else { 1 };
            }
            Change::Release | Change::Expire => {
                h.status = if change == Change::Release { Status::Released } else { Status::Expired };
                h.released = held;
                figures.reserved -= held;
                figures.available += held;
                self.entries[user] += 1;
            }
            Change::Refund => {
                h.status = Status::Refunded;
                figures.spent -= h.captured;
                figures.available += h.captured;
                self.entries[user] += 1;
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
    }

    pub fn total_ops(&self) -> u64 {
        self.ops.values().sum()
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Grant { .. } => "grant",
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
        Op::Advance { .. } => "clock jump",
        Op::UserWrite { .. } => "user-token write (refused)",
    }
}

struct Runner {
    server: TestServer,
    http: Client,
    catalog: Catalog,
    users: Vec<UserId>,
    /// The app's back end: every write goes through it.
    server_token: String,
    /// Each user's own token, for the writes that must be refused.
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
}

/// Runs the batches on a fresh table; `Err` at the first violation.
pub async fn run_episode(batches: &[Batch], shape: Shape) -> Result<Tally, Violation> {
    let server = TestServer::start().await;
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let users: Vec<UserId> = (0..shape.users)
        .map(|i| UserId::parse(&format!("m{i}-{run}")).ok_or_else(|| format!("user id m{i}-{run}")))
        .collect::<Result<_, _>>()
        .map_err(|message| Violation { batch: 0, message })?;
    // Long-lived tokens: clock jumps move the ledger's clock, not the JWT's.
    let server_token = server.server_token();
    let user_tokens = users.iter().map(|u| server.user_token(u)).collect();
    let admin = server.admin_token();
    let model = Model::new(shape.users, server.env.ledger.now().millis());
    let mut runner = Runner {
        catalog: Catalog::default_catalog(),
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
        server,
    };
    let mut tally = Tally::default();
    for (n, batch) in batches.iter().enumerate() {
        let failed = |message: String| Violation { batch: n, message: format!("batch {n} {batch:?}: {message}") };
        let explanations = runner.batch(batch, &mut tally).await.map_err(failed)?;
        runner.compare(explanations).await.map_err(failed)?;
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

    fn resolve(&mut self, op: &Op) -> Resolved {
        let shape_tasks = self.tasks;
        match op {
            Op::Grant { user, key, amount } => Resolved::Grant { user: *user, key: *key, amount: *amount },
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
            Op::Advance { seconds } => Resolved::Advance { seconds: *seconds },
            Op::UserWrite { hold, write } => {
                let id = self.hold_id(*hold);
                let user = self.model.holds.get(&id).map_or(0, |h| h.user);
                Resolved::UserWrite { user, id, write: *write }
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
        let resolved: Vec<Resolved> = batch.iter().map(|op| self.resolve(op)).collect();
        tally.batches += 1;
        if batch.len() > 1 {
            tally.concurrent_batches += 1;
        }
        for op in batch {
            *tally.ops.entry(op_name(op)).or_default() += 1;
        }
        let observed = join_all(resolved.iter().map(|op| self.send(op))).await;
        let observed: Vec<(Answer, Option<Uuid>)> = observed.into_iter().collect::<Result<_, _>>()?;
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
        let mut explanations = Vec::new();
        let mut first_mismatch = None;
        for order in permutations(resolved.len()) {
            let mut model = self.model.clone();
            let mut mismatch = None;
            for &i in &order {
                let allowed = model.step(&resolved[i], observed[i].1, &self.catalog);
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
                None => explanations.push(model),
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
            Resolved::Grant { user, key, amount } => {
                post(format!("/v1/admin/users/{}/grants", self.users[*user]), &self.admin)
                    .header("idempotency-key", format!("grant-{key}"))
                    .json(&json!({"amount": amount, "reason": "purchase"}))
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
            Resolved::Advance { seconds } => {
                self.server.env.clock.advance_seconds(i64::from(*seconds));
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
            Resolved::Webhook(_) => Answer::Webhook {
                status,
                result: body["result"].as_str().unwrap_or("?").to_owned(),
                late: body["lateSuccess"].as_bool().unwrap_or(false),
            },
            Resolved::Sweep => Answer::Swept { expired: number("expired") },
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

    /// The books on their own, and the table against the models that
    /// explain the batch's answers: one must match, and becomes the model.
    async fn compare(&mut self, explanations: Vec<Model>) -> Result<(), String> {
        let items = scan(&self.server.env.store).await;
        check_books(&items)?;
        let mut first_difference = None;
        for model in explanations {
            self.model = model;
            match self.compare_with(&items) {
                Ok(()) => return Ok(()),
                Err(difference) => {
                    first_difference.get_or_insert(difference);
                }
            }
        }
        Err(first_difference.unwrap_or_default())
    }

    /// The table against `self.model`.
    fn compare_with(&mut self, items: &[HashMap<String, AttributeValue>]) -> Result<(), String> {
        let user_of: HashMap<String, usize> = self.users.iter().enumerate().map(|(i, u)| (user_pk(u), i)).collect();
        let by_name: HashMap<String, usize> =
            self.users.iter().enumerate().map(|(i, u)| (u.as_str().to_owned(), i)).collect();

        let mut balances = vec![Figures::default(); self.users.len()];
        let mut entries = vec![0u64; self.users.len()];
        let mut parked = HashSet::new();
        let mut seen_holds = HashSet::new();
        for item in items {
            let pk = text(item, "pk");
            match text(item, "entity").as_str() {
                "balance" => {
                    let Some(&u) = user_of.get(&pk) else { return Err(format!("balance of an unknown user: {pk}")) };
                    balances[u] = Figures {
                        available: number(item, "available"),
                        reserved: number(item, "reserved"),
                        spent: number(item, "spent"),
                        granted: number(item, "granted"),
                    };
                }
                "entry" => {
                    let Some(&u) = user_of.get(&pk) else {
                        return Err(format!("history line of an unknown user: {pk}"));
                    };
                    entries[u] += 1;
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
                            };
                            if table != model {
                                return Err(format!("hold {id}: table says {table:?}, model says {model:?}"));
                            }
                        }
                        // A hold placed by a reserve whose link then lost a race is released
                        // by that same request, which answers the link's error.
                        None if status == "released" && captured == 0 => {
                            let Some(u) = user else { return Err(format!("hold {id} of an unknown user")) };
                            self.model.entries[u] += 2;
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
                                },
                            );
                        }
                        None => return Err(format!("hold {id} ({status}) is not in the model")),
                    }
                }
                _ => {}
            }
        }
        for (u, figures) in balances.iter().enumerate() {
            if *figures != self.model.users[u] {
                return Err(format!("user {u}: table {figures:?}, model {:?}", self.model.users[u]));
            }
            if entries[u] != self.model.entries[u] {
                return Err(format!("user {u}: {} history lines, model {}", entries[u], self.model.entries[u]));
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
        Ok(())
    }
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
}

/// How the table keys a capture sent with `Idempotency-Key: capture-<key>`.
fn capture_key(key: u8) -> String {
    CaptureKey::of(&format!("capture-{key}")).as_hex()
}

/// How an answer is counted: captures and extends apart from the rest.
fn answer_kind(op: &Resolved, answer: &Answer) -> String {
    match (op, answer) {
        (Resolved::Capture { .. }, Answer::Hold { status, replayed: true, .. }) => format!("{status} capture replayed"),
        (Resolved::Capture { .. }, Answer::Hold { status, .. }) => format!("{status} captured"),
        (Resolved::Capture { .. }, Answer::Problem { status, code }) => format!("{status} {code} (capture)"),
        (Resolved::Extend { .. }, Answer::Problem { status, code }) => format!("{status} {code} (extend)"),
        (_, answer) => answer_kind_of(answer),
    }
}

fn answer_kind_of(answer: &Answer) -> String {
    match answer {
        Answer::Problem { status, code } => format!("{status} {code}"),
        Answer::Hold { status, hold, .. } => format!("{status} {hold}"),
        Answer::Extended { status, .. } => format!("{status} extended"),
        Answer::Granted { status } => format!("{status} granted"),
        Answer::Webhook { status, result, late } => {
            format!("{status} webhook {result}{}", if *late { " (late)" } else { "" })
        }
        Answer::Swept { .. } => "200 swept".into(),
        Answer::Moved => "clock moved".into(),
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
