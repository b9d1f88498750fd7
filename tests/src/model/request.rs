//! What an operation becomes when its batch starts: its references
//! resolved against the model (holds, tasks, expiries, plan anchors,
//! instants) into the request it sends, and provider deliveries as sent.

use chrono::DateTime;
use credits_shared::domain::Provider;
use serde_json::json;
use uuid::Uuid;

use super::account::LotId;
use super::calendar::{civil, days_in_month, utc_millis};
use super::holds::{Outcome, Status};
use super::ops::{Anchor, Expiry, HoldRef, Op, ReserveSpec, TaskRef, UserWrite, REASONS, STARTS};
use super::purchases;
use super::runner::Runner;

/// A grant request as sent (what its key stands for).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantBody {
    pub(super) amount: u64,
    pub(super) reason: usize,
    pub(super) priority: Option<u8>,
    pub(super) expires_at: Option<i64>,
}

impl GrantBody {
    pub(super) fn lot(&self) -> LotId {
        LotId { priority: self.priority.unwrap_or(REASONS[self.reason].1), expires: self.expires_at }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebitBody {
    pub(super) amount: u64,
    pub(super) reason: usize,
    pub(super) partial: bool,
}

/// A plan request as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRequest {
    pub(super) plan: usize,
    pub(super) anchor: Option<i64>,
}

/// An operation with its references resolved at the start of its batch.
#[derive(Clone, Debug)]
pub(super) enum Resolved {
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
pub(super) struct Sent {
    pub(super) task: usize,
    /// `webhook-id` of Standard Webhooks deliveries (odd tasks).
    pub(super) id: Option<String>,
    pub(super) outcome: Option<Outcome>,
    pub(super) body: String,
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

    pub(super) fn task_name(&self, task: usize) -> String {
        format!("{}-t{task}", self.run)
    }

    /// Even tasks are BFL's, odd ones a Standard Webhooks sender's.
    pub(super) fn provider(task: usize) -> Provider {
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

    pub(super) fn resolve(&mut self, op: &Op) -> Resolved {
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
}
