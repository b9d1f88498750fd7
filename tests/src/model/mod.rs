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
//! Stripe's events (`purchases/`) pay for sessions (of the model's
//! catalog packs, at their price or not, free or not), and refund and
//! dispute them, and close disputes won or lost, in any order, again and at
//! once: the table's purchases, payment links, parked take-backs, dispute
//! records and event records must equal the model's too.
//! A failing episode is shrunk to the shortest sequence that still fails,
//! and replays from its seed.
//!
//! The parts: `ops` names what an episode is made of (its operations and
//! the catalogs they index) and `generate` draws an episode's batches from
//! its seed. `request` resolves each operation, when its batch starts, into
//! the request it sends; `send` sends it to the dev server and reads the
//! answer (`answer`: what the model can predict of it). The model itself is
//! `ledger` (the whole ledger: one step per operation), `account` (one
//! user's lots and figures), `holds` (a hold's life and the money rules)
//! and `calendar` (its own dates and plan periods). `runner` runs an
//! episode batch by batch and finds the orders of a batch that explain its
//! answers; `compare` holds the table and the balance reads to one of them;
//! `tally` counts what ran; `shrink` cuts a failing episode down.
//! `purchases` is Stripe's side of each of these.

mod account;
mod answer;
mod calendar;
mod compare;
mod generate;
mod holds;
mod ledger;
mod ops;
mod purchases;
mod request;
mod runner;
mod send;
mod shrink;
mod tally;

pub use answer::{Answer, LotParts};
pub use generate::{episode_seed, generate};
pub use ops::{
    Anchor, Batch, DebitSpec, DueKind, Expiry, GrantSpec, HoldRef, Op, PeriodKind, ReserveSpec, Shape, TaskRef,
    UserWrite,
};
pub use purchases::StripeEvent;
pub use request::{DebitBody, GrantBody, PlanRequest};
pub use runner::{run_episode, Violation};
pub use shrink::{report, shrink};
pub use tally::Tally;
