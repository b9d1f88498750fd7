//! One user's books in the model: credit lots in burn order, what holds,
//! captures, returns and debits do to them, what falls due (lot expiries,
//! plan refills with their rollover) and when it is written down, and the
//! balance as stored and as `GET /v1/balance` shows it.

use std::collections::BTreeMap;

use super::calendar::PlanState;
use super::ops::PLANS;
use super::request::PlanRequest;

/// The priority of a plan's allowance lots.
const PLAN_PRIORITY: u8 = 20;

/// A lot's name: its priority and expiry. Ordered in burn order: priority,
/// then soonest expiry, never-expiring last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct LotId {
    pub(super) priority: u8,
    pub(super) expires: Option<i64>,
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
    pub(super) const BASE: LotId = LotId { priority: 50, expires: None };

    /// Nothing in it (nothing can come back to it but a refund): what is due
    /// skips it, and the next write of what is due removes it.
    fn dead(self, lot: &Lot) -> bool {
        self != LotId::BASE && lot.held == 0 && (lot.recorded || lot.remaining == 0)
    }

    pub(super) fn expired(self, now: i64) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }
}

/// Credits taken from lots, in burn order.
pub(super) type Parts = Vec<(LotId, u64)>;

pub(super) fn total(parts: &Parts) -> u64 {
    parts.iter().map(|(_, c)| c).sum()
}

/// The credits from `from` to `to` of an allocation (captures spend a
/// hold's allocation from its start).
pub(super) fn slice(parts: &Parts, from: u64, to: u64) -> Parts {
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
pub(super) struct Lot {
    pub(super) remaining: u64,
    pub(super) held: u64,
    /// Its expiry is written down: what remained went to `expired`.
    recorded: bool,
}

/// A history line: type, amount, date (ms).
pub(super) type Line = (String, u64, i64);

/// One user's books in the model, as written down (what falls due is
/// written by the user's next reserve, grant, debit or plan change, or the
/// sweep; reads apply it on the fly).
#[derive(Clone, Debug, Default)]
pub(super) struct Account {
    pub(super) lots: BTreeMap<LotId, Lot>,
    spent: u64,
    pub(super) granted: u64,
    expired: u64,
    debited: u64,
    pub(super) plan: Option<PlanState>,
    /// The start of the last period whose allowance was granted.
    plan_period: Option<i64>,
    /// Lot expiries and plan refills written down so far.
    pub(super) expiries_written: u64,
    pub(super) refills_written: u64,
    pub(super) lines: Vec<Line>,
}

/// The balance as `GET /v1/balance` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct View {
    pub(super) available: u64,
    pub(super) reserved: u64,
    pub(super) spent: u64,
    pub(super) expired: u64,
    pub(super) debited: u64,
    pub(super) granted: u64,
    /// (priority, expiresAt, remaining, reserved) of each live lot.
    pub(super) lots: Vec<(u8, Option<i64>, u64, u64)>,
    /// (at, amount).
    pub(super) next_expiry: Option<(i64, u64)>,
    pub(super) plan: Option<PlanView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PlanView {
    pub(super) plan: String,
    pub(super) allowance: u64,
    pub(super) period: String,
    pub(super) rollover: u64,
    pub(super) anchor: i64,
    pub(super) current_start: Option<i64>,
    pub(super) current_end: Option<i64>,
    pub(super) ends_at: Option<i64>,
}

/// A balance item as stored: each lot's remaining credits (`None`: its
/// expiry is written down) and held credits, the other figures, the last
/// refilled period and the due-work index entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Stored {
    pub(super) lots: BTreeMap<LotId, (Option<u64>, u64)>,
    pub(super) spent: u64,
    pub(super) granted: u64,
    pub(super) expired: u64,
    pub(super) debited: u64,
    pub(super) plan_period: Option<i64>,
    pub(super) due: Option<i64>,
}

impl View {
    pub(super) fn empty() -> View {
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
    pub(super) fn normalized(mut self) -> Stored {
        self.lots.retain(|_, (rem, held)| rem.is_some_and(|r| r > 0) || *held != 0);
        self
    }
}

impl Account {
    pub(super) fn line(&mut self, kind: &str, amount: u64, at: i64) {
        self.lines.push((kind.to_owned(), amount, at));
    }

    pub(super) fn available(&self, now: i64) -> u64 {
        self.lots.iter().filter(|(id, _)| !id.expired(now)).map(|(_, l)| l.remaining).sum()
    }

    /// Up to `amount` from what is available at `now`, in burn order.
    pub(super) fn take(&self, amount: u64, now: i64) -> Parts {
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

    pub(super) fn lot(&mut self, id: LotId) -> &mut Lot {
        self.lots.entry(id).or_default()
    }

    pub(super) fn hold(&mut self, parts: &Parts) {
        for (id, amount) in parts {
            let lot = self.lot(*id);
            lot.remaining = lot.remaining.saturating_sub(*amount);
            lot.held += amount;
        }
    }

    pub(super) fn spend(&mut self, parts: &Parts) {
        for (id, amount) in parts {
            let lot = self.lot(*id);
            lot.held = lot.held.saturating_sub(*amount);
        }
        self.spent += total(parts);
    }

    /// Held (or, for a refund, spent) credits back to their lots; those of
    /// lots past their expiry expire at once. Returns how many expired.
    pub(super) fn give_back(&mut self, parts: &Parts, now: i64, from_spent: bool) -> u64 {
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

    pub(super) fn debit(&mut self, parts: &Parts) {
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
    pub(super) fn catch_up(&mut self, now: i64) -> (u64, u64) {
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
    pub(super) fn next_due(&self, now: i64) -> Option<i64> {
        let expiry =
            self.lots.iter().filter(|(id, l)| !l.recorded && !id.dead(l)).filter_map(|(id, _)| id.expires).min();
        let refill = self.plan.as_ref().and_then(|p| p.next_refill(self.plan_period, now)).map(|(s, _)| s);
        expiry.into_iter().chain(refill).min()
    }

    pub(super) fn stored(&self, now: i64) -> Stored {
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
    pub(super) fn view(&self, now: i64) -> (View, Vec<Option<(i64, u64)>>) {
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
    pub(super) fn set_plan(&mut self, request: &PlanRequest, now: i64) {
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
    pub(super) fn end_plan(&mut self, now: i64) {
        self.catch_up(now);
        if let Some(plan) = self.plan.clone().filter(|p| p.ends_at.is_none()) {
            let end = plan.current(now).map_or(now, |(_, end)| end);
            self.change_plan(PlanState { ends_at: Some(end), ..plan }, now);
        }
    }

    /// Lots with credits remaining or held (what the 100-lot limit counts).
    pub(super) fn live_lots(&self) -> usize {
        self.lots.values().filter(|l| l.remaining > 0 || l.held > 0).count()
    }
}
