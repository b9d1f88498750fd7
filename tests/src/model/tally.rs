//! What an episode did, counted: operations and answers by kind (the
//! figures the model test prints and `make soak` writes).

use std::collections::HashMap;

use super::answer::Answer;
use super::generate::LONG_JUMPS;
use super::ops::Op;
use super::purchases;
use super::request::Resolved;

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

pub(super) fn op_name(op: &Op) -> &'static str {
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

/// How an answer is counted: captures, extends, grants, debits, plans and
/// clock moves apart from the rest.
pub(super) fn answer_kind(op: &Resolved, answer: &Answer) -> String {
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
