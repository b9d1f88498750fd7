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
        books.lots.drop_dead();
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
            books.lots.drop_dead();
        }
        (books, steps)
    }

    /// When something next falls due: a lot's expiry or the next refill.
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        let refill =
            self.plan.as_ref().and_then(|plan| plan.next_refill(self.plan_period, now)).map(|(start, _)| start);
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

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::domain::{Lot, Period};

    const DAY: i64 = 86_400_000;
    const T0: Timestamp = Timestamp(1_830_297_600_000); // 2028-01-01T00:00:00Z

    fn lot(priority: u8, expires_at: Option<i64>, remaining: u64, held: u64) -> Lot {
        Lot {
            key: LotKey { priority, expires_at: expires_at.map(Timestamp) },
            remaining: Credits(remaining),
            held: Credits(held),
            expiry_recorded: false,
        }
    }

    fn daily(allowance: u64, rollover: u64) -> Plan {
        Plan {
            name: "daily".into(),
            allowance: Credits(allowance),
            period: Period::Day,
            rollover: Credits(rollover),
            anchor: T0,
            ends_at: None,
        }
    }

    fn adds_up(books: &Books) -> bool {
        let lots: u64 = books.lots.iter().map(|l| l.remaining.get() + l.held.get()).sum();
        lots + books.spent.get() + books.expired.get() + books.debited.get() == books.granted.get()
    }

    #[test]
    fn an_expired_lot_leaves_its_held_credits_held() {
        let books = Books {
            lots: Lots::from_lots([lot(10, Some(T0.millis()), 7, 3), lot(50, None, 5, 0)]),
            granted: Credits(15),
            ..Books::default()
        };
        let (after, steps) = books.due(T0, 10);
        assert_eq!(
            steps,
            vec![Step::Expire { lot: LotKey { priority: 10, expires_at: Some(T0) }, amount: Credits(7) }]
        );
        let expired = after.lots.get(LotKey { priority: 10, expires_at: Some(T0) }).copied();
        assert_eq!(expired.map(|l| (l.remaining, l.held, l.expiry_recorded)), Some((Credits(0), Credits(3), true)));
        assert_eq!(after.expired, Credits(7));
        assert_eq!(after.due(T0, 10).1, vec![], "written down once");
    }

    #[test]
    fn a_refill_carries_up_to_the_rollover_and_expires_the_rest() {
        let plan = daily(10, 4);
        let today = Plan::lot(Timestamp(T0.millis() + DAY));
        let mut books = Books { plan: Some(plan.clone()), ..Books::default() };
        let (after, steps) = books.due(T0, 10);
        assert_eq!(
            steps,
            vec![Step::Refill {
                start: T0,
                end: Timestamp(T0.millis() + DAY),
                allowance: Credits(10),
                carried: Credits(0),
                expired: Credits(0)
            }]
        );
        assert_eq!(after.lots.get(today).map(|l| l.remaining), Some(Credits(10)));
        // 3 of today's 10 spent and 1 held: tomorrow carries 4 of the 6 unheld.
        books = after;
        let entry = books.lots.entry(today);
        entry.remaining = Credits(6);
        entry.held = Credits(1);
        books.spent = Credits(3);
        let tomorrow = Timestamp(T0.millis() + DAY);
        let (after, steps) = books.due(tomorrow, 10);
        assert_eq!(
            steps,
            vec![Step::Refill {
                start: tomorrow,
                end: Timestamp(T0.millis() + 2 * DAY),
                allowance: Credits(10),
                carried: Credits(4),
                expired: Credits(2)
            }]
        );
        assert_eq!(after.lots.get(Plan::lot(Timestamp(T0.millis() + 2 * DAY))).map(|l| l.remaining), Some(Credits(14)));
        assert_eq!(after.lots.get(today).map(|l| (l.held, l.expiry_recorded)), Some((Credits(1), true)));
        assert_eq!((after.granted, after.expired), (Credits(20), Credits(2)));
        assert!(adds_up(&after));
    }

    #[test]
    fn expiries_and_refills_happen_in_time_order() {
        let books = Books {
            lots: Lots::from_lots([lot(10, Some(T0.millis() + DAY + 5), 2, 0)]),
            granted: Credits(2),
            plan: Some(daily(1, 0)),
            plan_period: Some(T0),
            ..Books::default()
        };
        let (_, steps) = books.due(Timestamp(T0.millis() + 2 * DAY), 10);
        let kinds: Vec<&str> =
            steps.iter().map(|s| if matches!(s, Step::Refill { .. }) { "refill" } else { "expire" }).collect();
        assert_eq!(kinds, ["refill", "expire", "refill"]);
    }

    #[test]
    fn a_fresh_plan_grants_the_current_period_only() {
        let books = Books { plan: Some(daily(3, 0)), ..Books::default() };
        let (after, steps) = books.due(Timestamp(T0.millis() + 5 * DAY + 1), 10);
        assert_eq!(steps.len(), 1);
        assert_eq!(after.plan_period, Some(Timestamp(T0.millis() + 5 * DAY)));
    }

    #[test]
    fn an_ended_plan_refills_no_more() {
        let plan = Plan { ends_at: Some(Timestamp(T0.millis() + DAY)), ..daily(5, 5) };
        let last = Plan::lot(Timestamp(T0.millis() + DAY));
        let books = Books {
            lots: Lots::from_lots([lot(20, last.expires_at.map(Timestamp::millis), 5, 0)]),
            granted: Credits(5),
            plan: Some(plan),
            plan_period: Some(T0),
            ..Books::default()
        };
        let (after, steps) = books.due(Timestamp(T0.millis() + 3 * DAY), 10);
        assert_eq!(
            steps,
            vec![Step::Expire { lot: last, amount: Credits(5) }],
            "its last lot expires, nothing follows"
        );
        assert_eq!((after.granted, after.expired), (Credits(5), Credits(5)));
        assert_eq!(after.next_due(Timestamp(T0.millis() + 3 * DAY)), None);
    }

    /// Whatever the lots and the plan, what falls due keeps the books adding
    /// up, happens once, and comes out the same written in chunks as at once.
    #[test]
    fn property_due_steps_add_up_happen_once_and_chunk_alike() {
        let mut rng = StdRng::seed_from_u64(16_2028);
        for _ in 0..2_000 {
            let lots: Vec<Lot> = (0..rng.gen_range(0..6))
                .map(|_| {
                    let expiry = rng.gen_bool(0.7).then(|| T0.millis() + rng.gen_range(-DAY..10 * DAY));
                    lot(rng.gen_range(0..=100), expiry, rng.gen_range(0..30), rng.gen_range(0..5))
                })
                .collect();
            let lots = Lots::from_lots(lots);
            let granted = Credits(lots.iter().map(|l| l.remaining.get() + l.held.get()).sum::<u64>() + 7);
            let plan = rng.gen_bool(0.6).then(|| Plan {
                period: [Period::Day, Period::Week, Period::Month][rng.gen_range(0..3)],
                anchor: Timestamp(T0.millis() + rng.gen_range(-40 * DAY..DAY)),
                ..daily(rng.gen_range(1..50), rng.gen_range(0..60))
            });
            let books = Books { lots, granted, spent: Credits(7), plan, ..Books::default() };
            let now = Timestamp(T0.millis() + rng.gen_range(0..90 * DAY));
            let (all, steps) = books.due(now, usize::MAX);
            assert!(adds_up(&all), "{all:?}");
            assert!(all.due(now, usize::MAX).1.is_empty(), "a second pass finds nothing");
            assert!(
                all.lots.available_at(now)
                    == all.lots.iter().map(|l| l.remaining).fold(Credits(0), |a, b| Credits(a.get() + b.get())),
                "nothing expired is left available"
            );
            let mut chunked = books.clone();
            let mut chunked_steps = Vec::new();
            loop {
                let (next, more) = chunked.due(now, 3);
                chunked = next;
                if more.is_empty() {
                    break;
                }
                chunked_steps.extend(more);
            }
            assert_eq!((chunked, chunked_steps), (all, steps));
        }
    }
}
