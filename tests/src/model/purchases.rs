//! Stripe purchases in the model: Checkout Sessions of the model's catalog
//! packs paid at once (one pack expiring, one the catalog lacks, one paid
//! at another total, one free pack given at 100 % off and one pack not free
//! given so, one session naming only `metadata.credits`), unpaid then paid
//! later, refunds (cumulative, several per charge, out of order, floored)
//! and disputes taking credits back in burn order, disputes closed won
//! (what the dispute took given back, once) or lost, events redelivered
//! byte for byte or raced, take-backs before their session (parked under
//! the payment, applied when the purchase is recorded), and events ignored
//! with their reason. The model keeps its own rules for what a session
//! buys, and its own take-back arithmetic.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use credits_shared::prices::Catalog;
use credits_shared::store::{dispute_sk, payment_pk, purchase_pk};
use credits_shared::webhook::stripe;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use super::account::total;
use super::answer::{problem, Answer};
use super::calendar::DAY_MS;
use super::ledger::Model;
use super::ops::{Op, DISPUTE_WON};
use super::request::{GrantBody, Resolved};
use super::runner::{Item, Runner};
use crate::{catalog_with_packs, number, text, STRIPE_SECRETS};

/// Sessions an episode sells, so that events of one session meet.
pub const SESSIONS: usize = 10;
/// Every pack's price, so every charge, in cents: odd, so refunded shares floor.
const CHARGE: u64 = 999;

/// The model's own catalog (the shipped operations): small packs, so that
/// spending and taking back meet; every price [`CHARGE`] in usd but the
/// free pack's.
pub(super) fn catalog() -> Catalog {
    let priced =
        |pack: &str, credits: u64| json!({"pack": pack, "credits": credits, "amountTotal": CHARGE, "currency": "usd"});
    let mut trial = priced("trial", 20);
    trial["expiresInDays"] = json!(30);
    catalog_with_packs(json!([priced("starter", 40), priced("small", 7), priced("medium", 25), trial,
        {"pack": "gift", "credits": 13, "free": true}]))
}
/// The cumulative `amount_refunded` a `charge.refunded` may carry.
const REFUNDED: [u64; 5] = [1, 333, 500, 998, 999];

/// An event of Stripe's about a session (`Unhandled`: a type not acted on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StripeEvent {
    /// `checkout.session.completed`, paid.
    Paid,
    /// `checkout.session.completed`, unpaid (a bank debit still clearing).
    Unpaid,
    /// `checkout.session.async_payment_succeeded`.
    AsyncPaid,
    /// `charge.refunded` with this cumulative `amount_refunded`.
    Refund { refunded: u64 },
    /// `charge.dispute.created`.
    Dispute,
    /// `charge.dispute.closed`, `won` or `lost`.
    DisputeClosed { won: bool },
    /// `payment_intent.created`.
    Unhandled,
}

impl StripeEvent {
    fn grants(self) -> bool {
        matches!(self, StripeEvent::Paid | StripeEvent::AsyncPaid)
    }

    fn take_back(self) -> Option<TakeBack> {
        match self {
            StripeEvent::Refund { refunded } => Some(TakeBack::Refund { refunded }),
            StripeEvent::Dispute => Some(TakeBack::Dispute),
            _ => None,
        }
    }
}

/// What a session's metadata names.
#[derive(Clone, Copy)]
enum Metadata {
    Pack(&'static str),
    /// `metadata.credits` alone, as sessions made for the old rule did.
    Credits(u64),
}

/// What a session says it buys, and how it was paid.
#[derive(Clone, Copy)]
struct Product {
    metadata: Metadata,
    /// `amount_total`, in usd cents.
    total: u64,
    /// `no_payment_required` (a 100 % discount): nothing charged, so no
    /// payment intent, no payment link, and no refund or dispute ever applies.
    free: bool,
}

impl Product {
    fn paid(pack: &'static str) -> Product {
        Product { metadata: Metadata::Pack(pack), total: CHARGE, free: false }
    }

    fn given(pack: &'static str) -> Product {
        Product { metadata: Metadata::Pack(pack), total: 0, free: true }
    }
}

/// Two trial packs (expiring 30 days after the session was created), a
/// pack the catalog does not have, a pack paid at another total, a free
/// pack given away and a pack that is not given so, and metadata credits.
fn product(session: usize) -> Product {
    match session % SESSIONS {
        0 => Product::paid("starter"),
        1 => Product { total: CHARGE - 1, ..Product::paid("starter") },
        2 | 6 => Product::paid("trial"),
        3 => Product::paid("small"),
        4 => Product::paid("medium"),
        5 => Product::paid("legacy"),
        7 => Product::given("gift"),
        8 => Product { metadata: Metadata::Credits(40), ..Product::paid("starter") },
        _ => Product::given("medium"),
    }
}

/// The sessions that buy their pack, charged for it.
const BUYING: [usize; 5] = [0, 2, 3, 4, 6];
/// Two of them, the subject of most disputes.
const DISPUTED: [usize; 2] = [0, 4];

/// Whether a session's payment links refunds and disputes to its purchase.
fn charged(session: usize) -> bool {
    !product(session).free
}

/// A Stripe operation: a new event about a session (the focus of a batch
/// when there is one, so events of one session race), or an event sent
/// again byte for byte.
pub(super) fn op(rng: &mut StdRng, focus: Option<usize>) -> Op {
    // Mostly sessions that buy, so that their refunds and disputes meet a purchase.
    let session = match focus {
        Some(f) if f % 4 != 0 => BUYING[f % BUYING.len()],
        Some(f) => f % SESSIONS,
        None if rng.gen_bool(0.7) => BUYING[rng.gen_range(0..BUYING.len())],
        None => rng.gen_range(0..SESSIONS),
    };
    let event = match rng.gen_range(0..100) {
        0..=29 => StripeEvent::Paid,
        30..=36 => StripeEvent::Unpaid,
        37..=46 => StripeEvent::AsyncPaid,
        47..=68 => StripeEvent::Refund { refunded: REFUNDED[rng.gen_range(0..REFUNDED.len())] },
        69..=80 => StripeEvent::Dispute,
        81..=88 => StripeEvent::DisputeClosed { won: true },
        89..=94 => StripeEvent::DisputeClosed { won: false },
        _ => StripeEvent::Unhandled,
    };
    // Disputes are mostly of two sessions, so that a `won` often meets the
    // take-back of its dispute (one dispute per session).
    let disputed = matches!(event, StripeEvent::Dispute | StripeEvent::DisputeClosed { .. });
    let session = match focus {
        None if disputed && rng.gen_bool(0.8) => DISPUTED[rng.gen_range(0..DISPUTED.len())],
        _ => session,
    };
    match rng.gen_range(0..10) {
        0..=2 => Op::StripeRedeliver { nth: focus.unwrap_or_else(|| rng.gen_range(0..64)) },
        _ => Op::Stripe { session, event },
    }
}

pub(super) fn op_name(event: StripeEvent) -> &'static str {
    match event {
        StripeEvent::Paid => "stripe: session paid",
        StripeEvent::Unpaid => "stripe: session completed unpaid",
        StripeEvent::AsyncPaid => "stripe: async payment succeeded",
        StripeEvent::Refund { .. } => "stripe: charge refunded",
        StripeEvent::Dispute => "stripe: dispute created",
        StripeEvent::DisputeClosed { won: true } => "stripe: dispute closed won",
        StripeEvent::DisputeClosed { won: false } => "stripe: dispute closed lost",
        StripeEvent::Unhandled => "stripe: event of another type",
    }
}

/// A Stripe event as sent (kept to send it again byte for byte).
#[derive(Clone, Debug)]
pub(super) struct StripeSent {
    id: String,
    session: usize,
    user: usize,
    event: StripeEvent,
    /// The session's `created` (epoch seconds): a pack's expiry counts from it.
    created: i64,
    body: String,
}

impl StripeSent {
    /// A dispute closed won: a grant (`dispute_won`) when it gives back.
    pub(super) fn gives_back(&self) -> bool {
        self.event == StripeEvent::DisputeClosed { won: true }
    }
}

/// What else of its batch an event races, as the batch starts.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Racing {
    /// A copy of this event, which no delivery had recorded yet: each copy
    /// may look before the other records it.
    fresh_copy: bool,
    /// A paid event of this session, not bought yet: a take-back may be
    /// parked, then found and applied by the paid event's look.
    unbought_paid: bool,
}

/// A step of a batch in the model: an operation, or one take-back parked
/// for a session applied by a paid event's look (the service applies them
/// one at a time, after the payment link: other operations may come
/// between them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Step {
    Op(usize),
    Look(usize),
}

/// Orders of more steps than this are not tried (8! of them already).
const MAX_STEPS: usize = 8;

impl Runner {
    /// Marks each Stripe event racing another of its batch.
    pub(super) fn mark_races(&self, resolved: &mut [Resolved]) {
        let sent: Vec<Option<StripeSent>> = resolved
            .iter()
            .map(|op| match op {
                Resolved::Stripe { sent, .. } => Some(sent.clone()),
                _ => None,
            })
            .collect();
        let model = &self.model.stripe;
        for (i, op) in resolved.iter_mut().enumerate() {
            let Resolved::Stripe { sent: mine, racing } = op else { continue };
            let others = sent.iter().enumerate().filter(|(j, _)| *j != i).filter_map(|(_, s)| s.as_ref());
            for other in others.filter(|o| o.session == mine.session) {
                racing.fresh_copy |= other.id == mine.id && !model.events.contains_key(&mine.id);
                racing.unbought_paid |=
                    other.event.grants() && charged(mine.session) && !model.purchases.contains_key(&mine.session);
            }
        }
    }

    /// The steps of a batch: its operations, and a look for each take-back
    /// that a paid event of a session bought in this batch may apply (those
    /// parked before, and those of the batch, which may park first). What
    /// no look applied is applied when the batch ends.
    pub(super) fn steps(&self, resolved: &[Resolved]) -> Vec<Step> {
        let mut steps: Vec<Step> = (0..resolved.len()).map(Step::Op).collect();
        if resolved.len() < 2 {
            return steps;
        }
        let events: Vec<&StripeSent> = resolved
            .iter()
            .filter_map(|op| match op {
                Resolved::Stripe { sent, .. } => Some(sent),
                _ => None,
            })
            .collect();
        let model = &self.model.stripe;
        // A session that charged nothing links no payment: nothing to look at.
        let bought_here: BTreeSet<usize> = events
            .iter()
            .filter(|e| e.event.grants() && charged(e.session) && !model.purchases.contains_key(&e.session))
            .map(|e| e.session)
            .collect();
        for session in bought_here {
            let parked = model.parked.get(&session).map_or(0, BTreeMap::len);
            let racing = events.iter().filter(|e| e.session == session && e.event.take_back().is_some()).count();
            for _ in 0..(parked + racing) {
                if steps.len() < MAX_STEPS {
                    steps.push(Step::Look(session));
                }
            }
        }
        steps
    }
}

/// A take-back as the model keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TakeBack {
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
struct Purchase {
    user: usize,
    credits: u64,
    taken_back: u64,
    unrecoverable: u64,
}

/// What the table records of a session's dispute (`DISPUTE#<dispute id>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DisputeRecord {
    /// Its take-back debited `taken` of `user`'s credits: what a `won` gives back.
    Took { user: usize, taken: u64 },
    /// Closed won before any take-back: the take-back takes nothing.
    WonFirst,
}

/// An event id seen: whether it was ignored (then a resend is looked at
/// again), and every result answered for it (the record keeps the first
/// written, which racing copies decide among themselves).
#[derive(Clone, Debug, Default)]
struct Seen {
    ignored: bool,
    results: BTreeSet<String>,
}

/// Stripe's side of the model.
#[derive(Clone, Debug, Default)]
pub(super) struct Purchases {
    purchases: BTreeMap<usize, Purchase>,
    /// Take-backs of sessions not bought yet, by their parked key.
    parked: BTreeMap<usize, BTreeMap<String, TakeBack>>,
    /// Each session's dispute (one per session), once recorded.
    disputes: BTreeMap<usize, DisputeRecord>,
    events: HashMap<String, Seen>,
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
    pub(super) fn stripe(
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
    pub(super) fn look_at_parked(&mut self, session: usize) {
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
    pub(super) fn looked_at_parked(&mut self) {
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

fn session_id(run: &str, session: usize) -> String {
    format!("cs_{run}_{session}")
}

fn payment_id(run: &str, session: usize) -> String {
    format!("pi_{run}_{session}")
}

fn charge_id(run: &str, session: usize) -> String {
    format!("ch_{run}_{session}")
}

fn dispute_id(run: &str, session: usize) -> String {
    format!("dp_{run}_{session}")
}

impl Runner {
    /// A new event about `session`, shaped as Stripe documents it. The
    /// session's `created` is when its first event was sent.
    pub(super) fn stripe_event(&mut self, session: usize, event: StripeEvent) -> StripeSent {
        let now = self.model.now / 1000;
        let created = *self.stripe_created.entry(session).or_insert(now);
        let user = session % self.users.len();
        let (run, id) = (&self.run, session_id(&self.run, session));
        let object = match event {
            StripeEvent::Paid | StripeEvent::Unpaid | StripeEvent::AsyncPaid => {
                let product = product(session);
                let metadata = match product.metadata {
                    Metadata::Credits(credits) => json!({"credits": credits.to_string()}),
                    Metadata::Pack(pack) => json!({"pack": pack}),
                };
                let (paid, payment) = match (event, product.free) {
                    (StripeEvent::Unpaid, _) => ("unpaid", json!(null)),
                    (_, true) => ("no_payment_required", json!(null)),
                    _ => ("paid", json!(payment_id(run, session))),
                };
                json!({"id": id, "object": "checkout.session", "mode": "payment",
                       "client_reference_id": self.users[user].as_str(), "payment_status": paid,
                       "status": "complete", "payment_intent": payment, "amount_total": product.total,
                       "currency": "usd", "created": created, "metadata": metadata})
            }
            StripeEvent::Refund { refunded } => {
                json!({"id": charge_id(run, session), "object": "charge", "amount": CHARGE,
                       "amount_refunded": refunded, "payment_intent": payment_id(run, session),
                       "refunded": refunded == CHARGE})
            }
            StripeEvent::Dispute | StripeEvent::DisputeClosed { .. } => {
                let status = match event {
                    StripeEvent::DisputeClosed { won: true } => "won",
                    StripeEvent::DisputeClosed { won: false } => "lost",
                    _ => "needs_response",
                };
                json!({"id": dispute_id(run, session), "object": "dispute", "amount": CHARGE,
                       "charge": charge_id(run, session), "payment_intent": payment_id(run, session),
                       "reason": "fraudulent", "status": status})
            }
            StripeEvent::Unhandled => {
                json!({"id": payment_id(run, session), "object": "payment_intent", "amount": CHARGE})
            }
        };
        let kind = match event {
            StripeEvent::Paid | StripeEvent::Unpaid => "checkout.session.completed",
            StripeEvent::AsyncPaid => "checkout.session.async_payment_succeeded",
            StripeEvent::Refund { .. } => "charge.refunded",
            StripeEvent::Dispute => "charge.dispute.created",
            StripeEvent::DisputeClosed { .. } => "charge.dispute.closed",
            StripeEvent::Unhandled => "payment_intent.created",
        };
        let id = format!("evt_{}", Uuid::new_v4().simple());
        let body = json!({"id": id, "object": "event", "api_version": "2025-01-27.acacia", "created": now,
                          "livemode": false, "type": kind, "data": {"object": object}});
        StripeSent { id, session, user, event, created, body: body.to_string() }
    }

    /// The `nth` event sent so far, again (a new paid event when none was).
    pub(super) fn stripe_again(&mut self, nth: usize) -> StripeSent {
        if self.stripe_sent.is_empty() {
            let sent = self.stripe_event(nth % SESSIONS, StripeEvent::Paid);
            self.stripe_sent.push(sent);
        }
        self.stripe_sent[nth % self.stripe_sent.len()].clone()
    }

    /// Signed as Stripe signs, at the ledger's clock, with the secret being
    /// rolled in (the second of the two).
    pub(super) fn stripe_request(&self, sent: &StripeSent) -> reqwest::RequestBuilder {
        let now = self.server.env.ledger.now().unix_seconds();
        let secret = STRIPE_SECRETS.split(',').nth(1).unwrap_or_default();
        self.http
            .post(format!("{}/v1/webhooks/stripe", self.server.base))
            .header("content-type", "application/json")
            .header("stripe-signature", stripe::sign(secret, now, sent.body.as_bytes()))
            .body(sent.body.clone())
    }

    /// The table's purchases, payment links, parked take-backs, dispute
    /// records and event records against the model's.
    pub(super) fn compare_stripe(&self, items: &[Item]) -> Result<(), String> {
        let run = &self.run;
        let model = &self.model.stripe;
        let (mut purchases, mut links, mut parked, mut disputes, mut events) =
            (BTreeMap::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), HashMap::new());
        for item in items {
            match text(item, "entity").as_str() {
                "purchase" => {
                    let user = self.users.iter().position(|u| u.as_str() == text(item, "userId"));
                    let figures =
                        (user, number(item, "credits"), number(item, "takenBack"), number(item, "unrecoverable"));
                    purchases.insert(text(item, "sessionId"), figures);
                }
                "paymentLink" => {
                    links.insert((text(item, "pk"), text(item, "sessionId")));
                }
                "parkedTakeBack" => {
                    parked.insert((text(item, "pk"), text(item, "sk")));
                }
                "dispute" => {
                    let user = self.users.iter().position(|u| u.as_str() == text(item, "userId"));
                    let figures = (user, number(item, "taken"), text(item, "closed"));
                    disputes.insert((text(item, "pk"), text(item, "sk"), figures));
                }
                "stripeEvent" => {
                    events.insert(text(item, "eventId"), text(item, "result"));
                }
                _ => {}
            }
        }
        let expected: BTreeMap<String, _> = model
            .purchases
            .iter()
            .map(|(s, p)| (session_id(run, *s), (Some(p.user), p.credits, p.taken_back, p.unrecoverable)))
            .collect();
        if purchases != expected {
            return Err(format!(
                "purchases (user, credits, takenBack, unrecoverable): table {purchases:?}, model {expected:?}"
            ));
        }
        let expected: BTreeSet<(String, String)> = model
            .purchases
            .keys()
            .filter(|s| charged(**s))
            .map(|s| (payment_pk(&payment_id(run, *s)), session_id(run, *s)))
            .collect();
        if links != expected {
            return Err(format!("payment links: table {links:?}, model {expected:?}"));
        }
        let expected: BTreeSet<(String, String)> = model
            .parked
            .iter()
            .flat_map(|(s, keys)| keys.keys().map(|k| (payment_pk(&payment_id(run, *s)), k.clone())))
            .collect();
        if parked != expected {
            return Err(format!("parked take-backs: table {parked:?}, model {expected:?}"));
        }
        let expected: BTreeSet<_> = model
            .disputes
            .iter()
            .map(|(s, record)| {
                let figures = match record {
                    DisputeRecord::Took { user, taken } => (Some(*user), *taken, String::new()),
                    DisputeRecord::WonFirst => (None, 0, "won".to_owned()),
                };
                (payment_pk(&payment_id(run, *s)), dispute_sk(&dispute_id(run, *s)), figures)
            })
            .collect();
        if disputes != expected {
            return Err(format!("disputes (user, taken, closed): table {disputes:?}, model {expected:?}"));
        }
        let recorded: HashSet<&String> = events.keys().collect();
        let seen: HashSet<&String> = model.events.keys().collect();
        if recorded != seen {
            return Err(format!("Stripe events recorded: table {recorded:?}, model {seen:?}"));
        }
        for (id, result) in &events {
            let allowed = model.events.get(id).map(|s| &s.results);
            if !allowed.is_some_and(|r| r.contains(result)) {
                return Err(format!("Stripe event {id} recorded as {result}, answered {allowed:?}"));
            }
        }
        // Purchase items are keyed by their session.
        if let Some(item) = items
            .iter()
            .find(|i| text(i, "entity") == "purchase" && text(i, "pk") != purchase_pk(&text(i, "sessionId")))
        {
            return Err(format!("a purchase under another key: {}", text(item, "pk")));
        }
        Ok(())
    }
}

/// A Stripe answer as the model predicts it: credits only where something
/// was granted or taken back (a duplicate may name the grant's, or not).
pub(super) fn answer_of(status: u16, body: &Value) -> Answer {
    let result = body["result"].as_str().unwrap_or("?").to_owned();
    let counted = result == "granted" || result == "taken_back";
    Answer::Stripe {
        status,
        reason: body["reason"].as_str().map(str::to_owned),
        credits: body["credits"].as_u64().filter(|_| counted),
        unrecoverable: body["unrecoverable"].as_u64().filter(|_| result == "taken_back"),
        result,
    }
}
