//! A hold's life in the model: placed by a reserve (taking lots in burn
//! order), linked to a task, captured in parts, closed by a confirm, a
//! release, an expiry or a provider's delivery, refunded, extended; and
//! the money rules that decide which change a request makes of it.

use std::collections::HashMap;

use credits_shared::prices::Catalog;
use uuid::Uuid;

use super::account::{slice, Parts};
use super::answer::{lot_parts, problem, Answer};
use super::ledger::Model;
use super::ops::{ReserveSpec, OPERATIONS};
use super::request::Sent;

/// A pending hold may stay open at most this long after it was placed.
const MAX_HOLD_MILLIS: i64 = 7 * 86_400 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Pending,
    Confirmed,
    Released,
    Expired,
    Refunded,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
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
pub(super) struct Hold {
    pub(super) user: usize,
    pub(super) units: u32,
    pub(super) unit_cost: u64,
    pub(super) amount: u64,
    pub(super) status: Status,
    /// Units captured so far: by non-final captures while pending, then
    /// by the closing confirm.
    pub(super) captured_units: u32,
    pub(super) captured: u64,
    pub(super) released: u64,
    /// Units the closing confirm captured (what its replay must name).
    pub(super) final_units: Option<u32>,
    /// Each non-final capture's key and units.
    pub(super) captures: HashMap<u8, u32>,
    pub(super) task: Option<usize>,
    pub(super) created_at: i64,
    pub(super) expires_at: i64,
    /// What it took from which lot, in burn order.
    pub(super) lots: Parts,
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
pub(super) enum Outcome {
    Success(Option<u32>),
    Failure,
}

/// What a request asks of a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ask {
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
pub(super) enum Change {
    /// Capture units more, return the rest, close.
    Confirm(u32),
    /// Capture units more under a key, keep the rest held.
    Capture(u32, u8),
    Release,
    Expire,
    Refund,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    Apply(Change),
    /// Asked to capture from a pending hold past its expiry: it expires.
    ExpireInstead,
    Replay,
    /// More units than are still held.
    TooManyUnits,
    NotPending(Status),
}

impl Model {
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

    pub(super) fn reserve(
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
    pub(super) fn decide(&self, id: Uuid, ask: Ask) -> Decision {
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
    pub(super) fn apply(&mut self, id: Uuid, change: Change) {
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

    pub(super) fn confirm(&mut self, id: Uuid, units: Option<u32>, as_other: bool) -> Answer {
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
    pub(super) fn capture(&mut self, id: Uuid, units: u32, key: u8) -> Answer {
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
    pub(super) fn extend(&mut self, id: Uuid, ttl: u32) -> Answer {
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

    pub(super) fn release(&mut self, id: Uuid) -> Answer {
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

    pub(super) fn refund(&mut self, id: Uuid) -> Answer {
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

    pub(super) fn link(&mut self, id: Uuid, task: usize) -> Answer {
        match self.link_task(id, task) {
            Ok(()) => self.hold_answer(200, id, false),
            Err(answer) => answer,
        }
    }

    pub(super) fn webhook(&mut self, sent: &Sent) -> Answer {
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
