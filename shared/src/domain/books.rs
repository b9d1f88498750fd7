//! A balance as stored, and what falls due in it: lot expiries and plan
//! refills, in the order they happen. Reads apply what is due in memory
//! (so a read at any instant shows it); writes record it, once.

use super::{Balance, Credits, LotView, Lots, NextExpiry, Plan, PlanView, Timestamp, UserId};
use crate::domain::LotKey;

/// A balance as stored: its lots, the figures no lot carries, its plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Books {
    pub lots: Lots,
    pub spent: Credits,
    pub granted: Credits,
    /// Expired credits written down (a read adds what expired since).
    pub expired: Credits,
    pub debited: Credits,
    pub plan: Option<Plan>,
    /// The start of the last period whose allowance was granted.
    pub plan_period: Option<Timestamp>,
    pub updated_at: Option<Timestamp>,
}

/// One thing that fell due, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A lot's unheld credits expired at its expiry.
    Expire { lot: LotKey, amount: Credits },
    /// A period's allowance, granted at its start into the lot expiring at
    /// its end, with up to `rollover` of the previous period's unheld
    /// allowance carried over (`carried`) and the rest of it expired.
    Refill { start: Timestamp, end: Timestamp, allowance: Credits, carried: Credits, expired: Credits },
}

impl Books {
    /// The books once everything due at `now` has happened (at most `limit`
    /// steps), and the steps.
    pub fn due(&self, now: Timestamp, limit: usize) -> (Books, Vec<Step>) {
        let mut books = self.clone();
        let mut steps = Vec::new();
        while steps.len() < limit {
            let refill = books
                .plan
                .as_ref()
                .and_then(|plan| plan.next_refill(books.plan_period, now))
                .filter(|(start, _)| *start <= now);
            // The previous period's lot expires with the refill that follows it.
            let carried_lot = refill.map(|(start, _)| Plan::lot(start));
            let expiry = books
                .lots
                .due_expiries(now)
                .into_iter()
                .find(|lot| Some(lot.key) != carried_lot)
                .filter(|lot| refill.is_none_or(|(start, _)| lot.key.expires_at.is_some_and(|at| at <= start)));
            match (expiry, refill) {
                (Some(lot), _) => {
                    let entry = books.lots.entry(lot.key);
                    let amount = entry.remaining;
                    entry.remaining = Credits::ZERO;
                    entry.expiry_recorded = true;
                    books.expired = Credits(books.expired.get() + amount.get());
                    steps.push(Step::Expire { lot: lot.key, amount });
                }
                (None, Some((start, end))) => {
                    let Some(plan) = books.plan.clone() else { break };
                    let previous = books.lots.entry(Plan::lot(start));
                    let unused = if previous.expiry_recorded { Credits::ZERO } else { previous.remaining };
                    previous.remaining = Credits::ZERO;
                    previous.expiry_recorded = true;
                    let carried = unused.min(plan.rollover);
                    let expired = Credits(unused.get() - carried.get());
                    let next = books.lots.entry(Plan::lot(end));
                    next.remaining = Credits(next.remaining.get() + plan.allowance.get() + carried.get());
                    books.expired = Credits(books.expired.get() + expired.get());
                    books.granted = Credits(books.granted.get() + plan.allowance.get());
                    books.plan_period = Some(start);
                    steps.push(Step::Refill { start, end, allowance: plan.allowance, carried, expired });
                }
                (None, None) => break,
            }
        }
        (books, steps)
    }

    /// When something next falls due: a lot's expiry or the next refill.
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        let refill = self.plan.as_ref().and_then(|plan| plan.next_refill(self.plan_period, now)).map(|(start, _)| start);
        self.lots.next_due().into_iter().chain(refill).min()
    }

    /// The balance a read at `now` shows: what is due has happened.
    pub fn at(&self, user_id: UserId, now: Timestamp) -> Balance {
        let (books, _) = self.due(now, 100_000);
        Balance {
            user_id,
            available: books.lots.available_at(now),
            reserved: books.lots.held(),
            spent: books.spent,
            expired: Credits(books.expired.get() + books.lots.expired_unrecorded_at(now).get()),
            debited: books.debited,
            granted: books.granted,
            lots: books
                .lots
                .live_at(now)
                .into_iter()
                .map(|lot| LotView {
                    priority: lot.key.priority,
                    expires_at: lot.key.expires_at,
                    remaining: lot.remaining,
                    reserved: lot.held,
                })
                .collect(),
            next_expiry: books.lots.next_expiry(now).map(|(at, amount)| NextExpiry { amount, at }),
            plan: books.plan.as_ref().filter(|p| p.ends_at.is_none_or(|end| now < end)).map(|p| {
                let current = p.period_at(now);
                PlanView {
                    plan: p.name.clone(),
                    allowance: p.allowance,
                    period: p.period,
                    rollover: p.rollover,
                    anchor: p.anchor,
                    current_period_start: current.map(|(start, _)| start),
                    current_period_end: current.map(|(_, end)| end),
                    ends_at: p.ends_at,
                }
            }),
            updated_at: self.updated_at,
        }
    }
}
