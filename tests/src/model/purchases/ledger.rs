//! Stripe's side of the model: purchases granted once, take-backs
//! (refunds and disputes) applied to their purchase or parked until it is
//! recorded, disputes closed won giving back what they took, and every
//! event id seen with the results answered for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use credits_shared::prices::Catalog;

use super::generate::StripeEvent;
use super::products::{charged, product, Metadata, CHARGE};
use super::races::Racing;
use super::send::{charge_id, dispute_id, session_id, StripeSent};
use crate::model::account::total;
use crate::model::answer::{problem, Answer};
use crate::model::calendar::DAY_MS;
use crate::model::ledger::Model;
use crate::model::ops::DISPUTE_WON;
use crate::model::request::GrantBody;

/// A take-back as the model keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TakeBack {
    Refund { refunded: u64 },
    Dispute,
}

impl TakeBack {
    /// Credits due back in all: the refunded share of the charge, floored
    /// (so only a full refund is all), or all for a dispute.
    fn due(self, credits: u64) -> u64 {
        match self {
            TakeBack::Dispute => credits,
            TakeBack::Refund { refunded } => credits * refunded.min(CHARGE) / CHARGE,
        }
    }

    /// How the service keys it while parked (`PARKED#<source>#<kind>#<refunded>`):
    /// parked take-backs are applied in this order.
    fn parked_key(self, run: &str, session: usize) -> String {
        match self {
            TakeBack::Refund { refunded } => format!("PARKED#{}#refund#{refunded}", charge_id(run, session)),
            TakeBack::Dispute => format!("PARKED#{}#dispute#0", dispute_id(run, session)),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Purchase {
    pub(super) user: usize,
    pub(super) credits: u64,
    pub(super) taken_back: u64,
    pub(super) unrecoverable: u64,
}

/// What the table records of a session's dispute (`DISPUTE#<dispute id>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DisputeRecord {
    /// Its take-back debited `taken` of `user`'s credits: what a `won` gives back.
    Took { user: usize, taken: u64 },
    /// Closed won before any take-back: the take-back takes nothing.
    WonFirst,
}

/// An event id seen: whether it was ignored (then a resend is looked at
/// again), and every result answered for it (the record keeps the first
/// written, which racing copies decide among themselves).
#[derive(Clone, Debug, Default)]
pub(super) struct Seen {
    pub(super) ignored: bool,
    pub(super) results: BTreeSet<String>,
}

/// Stripe's side of the model.
#[derive(Clone, Debug, Default)]
pub(crate) struct Purchases {
    pub(super) purchases: BTreeMap<usize, Purchase>,
    /// Take-backs of sessions not bought yet, by their parked key.
    pub(super) parked: BTreeMap<usize, BTreeMap<String, TakeBack>>,
    /// Each session's dispute (one per session), once recorded.
    pub(super) disputes: BTreeMap<usize, DisputeRecord>,
    pub(super) events: HashMap<String, Seen>,
}

impl Purchases {
    /// A take-back of `session` finds its purchase (through the payment link).
    fn linked(&self, session: usize) -> bool {
        charged(session) && self.purchases.contains_key(&session)
    }
}

fn answer(result: &str) -> Answer {
    counted(result, None, None)
}

fn counted(result: &str, credits: Option<u64>, unrecoverable: Option<u64>) -> Answer {
    Answer::Stripe { status: 200, result: result.into(), reason: None, credits, unrecoverable }
}

fn ignored(reason: &str) -> Answer {
    Answer::Stripe {
        status: 200,
        result: "ignored".into(),
        reason: Some(reason.into()),
        credits: None,
        unrecoverable: None,
    }
}

impl Model {
    /// A verified Stripe event: an id recorded before answers `duplicate`
    /// (unless it was ignored: then it is looked at again); the event is
    /// recorded with its result. Copies at once may each look before
    /// either is recorded: the answer seen tells which did (a `duplicate`
    /// changed nothing either way), and either may have recorded it.
    pub(crate) fn stripe(
        &mut self,
        sent: &StripeSent,
        racing: Racing,
        observed: &Answer,
        catalog: &Catalog,
    ) -> Vec<Answer> {
        let recorded = self.stripe.events.get(&sent.id).is_some_and(|seen| !seen.ignored);
        let looked = racing.fresh_copy && *observed != answer("duplicate");
        if recorded && !looked {
            if racing.fresh_copy {
                self.stripe.events.entry(sent.id.clone()).or_default().results.insert("duplicate".into());
            }
            return vec![answer("duplicate")];
        }
        let answers = match sent.event {
            StripeEvent::Unpaid => vec![ignored("payment_not_settled")],
            StripeEvent::Unhandled => vec![ignored("event_type_not_handled")],
            StripeEvent::Paid | StripeEvent::AsyncPaid => vec![self.paid(sent, catalog)],
            StripeEvent::DisputeClosed { won: false } => vec![ignored("dispute_not_won")],
            StripeEvent::DisputeClosed { won: true } => vec![self.dispute_won(sent.session)],
            StripeEvent::Refund { .. } | StripeEvent::Dispute => {
                let Some(kind) = sent.event.take_back() else { return vec![problem(500, "model: no take-back")] };
                self.take_back(sent.session, kind, racing)
            }
        };
        // The record keeps the result of the delivery that wrote it first.
        let given = if answers.contains(observed) { observed } else { &answers[0] };
        if let Answer::Stripe { result, .. } = given {
            let seen = self.stripe.events.entry(sent.id.clone()).or_default();
            seen.ignored |= result == "ignored";
            seen.results.insert(result.clone());
        }
        answers
    }

    /// A look at the take-backs parked for `session`, once it is bought:
    /// the first, in the order of their keys, applied.
    pub(crate) fn look_at_parked(&mut self, session: usize) {
        if !self.stripe.linked(session) {
            return;
        }
        let first = self.stripe.parked.get_mut(&session).and_then(BTreeMap::pop_first);
        if let Some((_, kind)) = first {
            self.take_back_from(session, kind);
        }
        self.stripe.parked.retain(|_, keys| !keys.is_empty());
    }

    /// The end of a batch: a session bought has nothing parked (its paid
    /// event's look found what was parked before its payment link, and a
    /// take-back parked after it found the link itself).
    pub(crate) fn looked_at_parked(&mut self) {
        let bought: Vec<usize> = self.stripe.parked.keys().filter(|s| self.stripe.linked(**s)).copied().collect();
        for session in bought {
            for (_, kind) in self.stripe.parked.remove(&session).unwrap_or_default() {
                self.take_back_from(session, kind);
            }
        }
    }

    /// A paid session: a pack of the catalog, at the pack's price, or
    /// given away only if the pack is free; then the ledger's own grant
    /// keyed by the session (a replay answers `duplicate`), the purchase
    /// recorded with its payment link. What was parked for it is applied by
    /// looks (steps of their own), or when the batch ends.
    fn paid(&mut self, sent: &StripeSent, catalog: &Catalog) -> Answer {
        let product = product(sent.session);
        let name = match product.metadata {
            Metadata::Credits(_) => return ignored("metadata_credits_not_accepted"),
            Metadata::Pack(name) => name,
        };
        let Some(pack) = catalog.pack(name) else { return ignored("unknown_pack") };
        if product.free && !pack.free {
            return ignored("pack_not_free");
        }
        if !product.free && pack.amount_total.is_some_and(|price| price != product.total) {
            return ignored("amount_mismatch");
        }
        let credits = pack.credits.get();
        let expires_at = pack.expires_in_days.map(|days| sent.created * 1000 + i64::from(days) * DAY_MS);
        // Reason 0: a purchase.
        let body = GrantBody { amount: credits, reason: 0, priority: None, expires_at };
        let key = format!("stripe:{}", session_id(&self.run, sent.session));
        let replayed = match self.grant(sent.user, key, &body) {
            Answer::Granted { status: 201 } => false,
            Answer::Granted { .. } => true,
            Answer::Problem { status: 400, .. } => return ignored("pack_expired_before_payment_cleared"),
            other => return other,
        };
        self.stripe.purchases.entry(sent.session).or_insert(Purchase {
            user: sent.user,
            credits,
            taken_back: 0,
            unrecoverable: 0,
        });
        match replayed {
            true => answer("duplicate"),
            false => counted("granted", Some(credits), None),
        }
    }

    /// A refund or dispute: applied to its purchase, or parked until it is
    /// recorded. Racing the first paid event of its session, it may park,
    /// be found and applied by the paid event, then find the purchase
    /// itself: it answers `duplicate`.
    fn take_back(&mut self, session: usize, kind: TakeBack, racing: Racing) -> Vec<Answer> {
        if !self.stripe.linked(session) {
            let key = kind.parked_key(&self.run, session);
            self.stripe.parked.entry(session).or_default().insert(key, kind);
            return vec![answer("parked")];
        }
        let taken = self.take_back_from(session, kind);
        match &taken {
            Answer::Stripe { result, .. } if racing.unbought_paid && result == "taken_back" => {
                vec![taken, answer("duplicate")]
            }
            _ => vec![taken],
        }
    }

    /// What is due back and not taken yet, as a partial debit in burn order
    /// (what is due is written down first); what the user no longer had is
    /// unrecoverable.
    fn take_back_from(&mut self, session: usize, kind: TakeBack) -> Answer {
        let now = self.now;
        let Some(purchase) = self.stripe.purchases.get_mut(&session) else {
            return problem(500, "model: no purchase");
        };
        let target = kind.due(purchase.credits);
        if target <= purchase.taken_back {
            return answer("duplicate");
        }
        if kind == TakeBack::Dispute && self.stripe.disputes.contains_key(&session) {
            return ignored("dispute_already_won");
        }
        let want = target - purchase.taken_back;
        let account = &mut self.accounts[purchase.user];
        account.catch_up(now);
        let parts = account.take(want, now);
        account.debit(&parts);
        let taken = total(&parts);
        account.line("debit", taken, now);
        purchase.taken_back = target;
        purchase.unrecoverable += want - taken;
        if kind == TakeBack::Dispute {
            self.stripe.disputes.insert(session, DisputeRecord::Took { user: purchase.user, taken });
        }
        counted("taken_back", Some(taken), Some(want - taken))
    }

    /// A dispute closed won: what its take-back debited comes back as the
    /// ledger's own grant keyed by the dispute (a replay answers
    /// `duplicate`). Before any take-back, it is recorded as closed, and
    /// gives nothing.
    fn dispute_won(&mut self, session: usize) -> Answer {
        let (user, taken) = match self.stripe.disputes.get(&session) {
            Some(DisputeRecord::Took { user, taken }) if *taken > 0 => (*user, *taken),
            Some(_) => return ignored("nothing_taken"),
            None => {
                self.stripe.disputes.insert(session, DisputeRecord::WonFirst);
                return ignored("nothing_taken");
            }
        };
        let body = GrantBody { amount: taken, reason: DISPUTE_WON, priority: None, expires_at: None };
        match self.grant(user, format!("stripe:dispute:{}", dispute_id(&self.run, session)), &body) {
            Answer::Granted { status: 201 } => counted("granted", Some(taken), None),
            Answer::Granted { .. } => answer("duplicate"),
            other => other,
        }
    }
}
