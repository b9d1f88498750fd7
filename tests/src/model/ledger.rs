//! The model of the whole ledger: every user's books, the holds, keys,
//! tasks and parked deliveries, and Stripe's side. A step applies one
//! operation and returns the answers it may get; grants, debits, plans and
//! the sweep are here, holds in `holds.rs`, Stripe's events in
//! `purchases/`.

use std::collections::{HashMap, HashSet};

use credits_shared::prices::Catalog;
use uuid::Uuid;

use super::account::{total, Account};
use super::answer::{lot_parts, problem, Answer};
use super::holds::{Ask, Change, Decision, Hold, Outcome, Status};
use super::ops::{DueKind, ReserveSpec};
use super::purchases;
use super::request::{DebitBody, GrantBody, PlanRequest, Resolved};

/// A user may have at most this many live lots besides the base one.
const MAX_LOTS: usize = 100;

#[derive(Clone, Debug)]
pub(super) struct Model {
    pub(super) now: i64,
    pub(super) accounts: Vec<Account>,
    /// Each grant key's request, by user and `Idempotency-Key`.
    pub(super) grants: HashMap<(usize, String), GrantBody>,
    /// Each debit key's request and its answer (amount, requested, lots).
    pub(super) debits: HashMap<(usize, u8), (DebitBody, Answer)>,
    pub(super) holds: HashMap<Uuid, Hold>,
    /// Holds in the order they were placed (what `HoldRef`s index).
    pub(super) order: Vec<Uuid>,
    pub(super) reserve_keys: HashMap<(usize, u8), (Uuid, ReserveSpec)>,
    pub(super) tasks: HashMap<usize, Uuid>,
    pub(super) parked: HashMap<usize, Outcome>,
    pub(super) seen: HashSet<String>,
    pub(super) stripe: purchases::Purchases,
    /// The episode's run id: Stripe's ids name it.
    pub(super) run: String,
}

impl Model {
    pub(super) fn new(users: usize, now: i64, run: &str) -> Model {
        Model {
            now,
            accounts: vec![Account::default(); users],
            grants: HashMap::new(),
            debits: HashMap::new(),
            holds: HashMap::new(),
            order: Vec::new(),
            reserve_keys: HashMap::new(),
            tasks: HashMap::new(),
            parked: HashMap::new(),
            seen: HashSet::new(),
            stripe: purchases::Purchases::default(),
            run: run.to_owned(),
        }
    }

    /// Applies one operation, given what the server answered: the
    /// reservation id (the model cannot know a new hold's random id), and
    /// the answer itself, which says which way a Stripe event's copy raced
    /// (the table then checks that way's state). Returns the answers the
    /// operation may get.
    pub(super) fn step(
        &mut self,
        op: &Resolved,
        (observed, id): &(Answer, Option<Uuid>),
        catalog: &Catalog,
    ) -> Vec<Answer> {
        let id = *id;
        match op {
            Resolved::Grant { user, key, body } => vec![self.grant(*user, format!("grant-{key}"), body)],
            Resolved::Stripe { sent, racing } => self.stripe(sent, *racing, observed, catalog),
            Resolved::Debit { user, key, body } => vec![self.debit(*user, *key, body)],
            Resolved::SetPlan { user, request } => vec![self.set_plan(*user, request)],
            Resolved::EndPlan { user } => vec![self.end_plan(*user)],
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
                // Then every balance the due-work index lists (every one with
                // something due: the entry is checked never to be later than
                // that): what fell due.
                let now = self.now;
                let (mut expiries, mut refills) = (0, 0);
                for account in self.accounts.iter_mut().filter(|a| a.next_due(now).is_some_and(|at| at <= now)) {
                    let (e, r) = account.catch_up(now);
                    expiries += e;
                    refills += r;
                }
                vec![Answer::Swept { expired: due.len() as u64, due: Some((expiries, refills)) }]
            }
            Resolved::Advance { to } => {
                self.now = (*to).max(self.now);
                vec![Answer::Moved]
            }
            // The person who pays never decides what they pay.
            Resolved::UserWrite { .. } => vec![problem(403, "forbidden")],
        }
    }

    /// A grant: into a lot already expired, only a replay of its key is
    /// answered (200 or 422), else 400; otherwise what is due is written
    /// down, then a grant making one lot more live than 100 is refused
    /// (unless a replay), then the key decides.
    pub(super) fn grant(&mut self, user: usize, key: String, body: &GrantBody) -> Answer {
        let now = self.now;
        let replay = match self.grants.get(&(user, key.clone())) {
            Some(first) if first == body => Some(Answer::Granted { status: 200 }),
            Some(_) => Some(problem(422, "idempotency_key_reused")),
            None => None,
        };
        let lot = body.lot();
        if lot.expired(now) {
            return replay.unwrap_or_else(|| problem(400, "validation_error"));
        }
        let account = &mut self.accounts[user];
        account.catch_up(now);
        let new_lot = account.lots.get(&lot).is_none_or(|l| l.remaining == 0 && l.held == 0);
        if new_lot && account.live_lots() >= MAX_LOTS {
            return replay.unwrap_or_else(|| problem(409, "too_many_lots"));
        }
        if let Some(answer) = replay {
            return answer;
        }
        self.grants.insert((user, key), body.clone());
        let account = &mut self.accounts[user];
        account.lot(lot).remaining += body.amount;
        account.granted += body.amount;
        account.line("grant", body.amount, now);
        Answer::Granted { status: 201 }
    }

    /// A debit: its key first (a replay writes nothing down), then what is
    /// due, then all or nothing (402), or what there is with `partial`.
    fn debit(&mut self, user: usize, key: u8, body: &DebitBody) -> Answer {
        match self.debits.get(&(user, key)) {
            Some((first, Answer::Debited { amount, requested, lots, .. })) if first == body => {
                return Answer::Debited {
                    status: 200,
                    amount: *amount,
                    requested: *requested,
                    lots: lots.clone(),
                    replayed: true,
                };
            }
            Some(_) => return problem(422, "idempotency_key_reused"),
            None => {}
        }
        let now = self.now;
        let account = &mut self.accounts[user];
        account.catch_up(now);
        if !body.partial && account.available(now) < body.amount {
            return problem(402, "insufficient_credits");
        }
        let parts = account.take(body.amount, now);
        account.debit(&parts);
        account.line("debit", total(&parts), now);
        let answer = Answer::Debited {
            status: 201,
            amount: total(&parts),
            requested: body.amount,
            lots: lot_parts(&parts),
            replayed: false,
        };
        self.debits.insert((user, key), (body.clone(), answer.clone()));
        answer
    }

    fn set_plan(&mut self, user: usize, request: &PlanRequest) -> Answer {
        self.accounts[user].set_plan(request, self.now);
        Answer::Planned { status: 200 }
    }

    fn end_plan(&mut self, user: usize) -> Answer {
        self.accounts[user].end_plan(self.now);
        Answer::Planned { status: 200 }
    }

    /// The next instant after now something falls due, of the kind asked.
    pub(super) fn next_due(&self, kind: DueKind) -> Option<i64> {
        let now = self.now;
        let lots = self.accounts.iter().flat_map(|a| a.lots.keys().filter_map(|id| id.expires));
        let periods = self.accounts.iter().filter_map(|a| {
            let plan = a.plan.as_ref()?;
            let next = match plan.index(now) {
                Some(k) => plan.start(k + 1),
                None => plan.anchor,
            };
            Some(plan.ends_at.map_or(next, |end| if end > now { next.min(end) } else { next }))
        });
        let holds = self.holds.values().filter(|h| h.status == Status::Pending).map(|h| h.expires_at);
        let after: Vec<i64> = match kind {
            DueKind::Any => lots.chain(periods).chain(holds).collect(),
            DueKind::LotExpiry => lots.collect(),
            DueKind::PeriodEnd => periods.collect(),
        };
        after.into_iter().filter(|at| *at > now).min()
    }
}
