//! What an episode is made of: its shape, the operations of its batches
//! (references to holds, tasks, plans and instants, resolved when a batch
//! starts), and the catalogs they index (the operations a hold is for,
//! grant and debit reasons, plans, the instants an episode starts at),
//! which the generator draws from and the model and the runner read.

use super::purchases::StripeEvent;

/// The operations a generated hold may be for: priced, cheap, free, dear.
pub(super) const OPERATIONS: [&str; 5] = [
    "design_generate_image",
    "design_generate_icon",
    "design_analyze_image",
    "design_assistant",
    "design_generate_variations",
];
/// Grant reasons and the priority each lands at unless one is named.
pub(super) const REASONS: [(&str, u8); 7] = [
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
pub(super) const DISPUTE_WON: usize = 6;
pub(super) const DEBIT_REASONS: [&str; 3] = ["chargeback", "refund", "adjustment"];
/// Instants an episode may start at (plus up to ten minutes): month ends,
/// a leap day and a year end, so periods and expiries cross them.
pub(super) const STARTS: [&str; 7] = [
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
    pub(super) fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
        }
    }
}

/// A plan as an operator sets it (name, allowance, period, rollover).
#[derive(Clone, Copy, Debug)]
pub(super) struct PlanDef {
    pub(super) name: &'static str,
    pub(super) allowance: u64,
    pub(super) period: PeriodKind,
    pub(super) rollover: u64,
}

/// The plans an episode sets: a few, so the same plan is often set again,
/// and two share a name with another allowance or rollover (a change).
pub(super) const PLANS: [PlanDef; 5] = [
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
