//! Stripe's events as sent: shaped as Stripe documents them, signed as
//! Stripe signs them, kept to be sent again byte for byte; and Stripe's
//! answers as the model predicts them.

use credits_shared::inbound::stripe;
use serde_json::{json, Value};
use uuid::Uuid;

use super::generate::StripeEvent;
use super::products::{product, Metadata, CHARGE, SESSIONS};
use crate::model::answer::Answer;
use crate::model::runner::Runner;
use crate::STRIPE_SECRETS;

/// A Stripe event as sent (kept to send it again byte for byte).
#[derive(Clone, Debug)]
pub(crate) struct StripeSent {
    pub(super) id: String,
    pub(super) session: usize,
    pub(super) user: usize,
    pub(super) event: StripeEvent,
    /// The session's `created` (epoch seconds): a pack's expiry counts from it.
    pub(super) created: i64,
    body: String,
}

impl StripeSent {
    /// A dispute closed won: a grant (`dispute_won`) when it gives back.
    pub(crate) fn gives_back(&self) -> bool {
        self.event == StripeEvent::DisputeClosed { won: true }
    }
}

pub(super) fn session_id(run: &str, session: usize) -> String {
    format!("cs_{run}_{session}")
}

pub(super) fn payment_id(run: &str, session: usize) -> String {
    format!("pi_{run}_{session}")
}

pub(super) fn charge_id(run: &str, session: usize) -> String {
    format!("ch_{run}_{session}")
}

pub(super) fn dispute_id(run: &str, session: usize) -> String {
    format!("dp_{run}_{session}")
}

impl Runner {
    /// A new event about `session`, shaped as Stripe documents it. The
    /// session's `created` is when its first event was sent.
    pub(crate) fn stripe_event(&mut self, session: usize, event: StripeEvent) -> StripeSent {
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
    pub(crate) fn stripe_again(&mut self, nth: usize) -> StripeSent {
        if self.stripe_sent.is_empty() {
            let sent = self.stripe_event(nth % SESSIONS, StripeEvent::Paid);
            self.stripe_sent.push(sent);
        }
        self.stripe_sent[nth % self.stripe_sent.len()].clone()
    }

    /// Signed as Stripe signs, at the ledger's clock, with the secret being
    /// rolled in (the second of the two).
    pub(crate) fn stripe_request(&self, sent: &StripeSent) -> reqwest::RequestBuilder {
        let now = self.server.env.ledger.now().unix_seconds();
        let secret = STRIPE_SECRETS.split(',').nth(1).unwrap_or_default();
        self.http
            .post(format!("{}/v1/webhooks/stripe", self.server.base))
            .header("content-type", "application/json")
            .header("stripe-signature", stripe::sign(secret, now, sent.body.as_bytes()))
            .body(sent.body.clone())
    }
}

/// A Stripe answer as the model predicts it: credits only where something
/// was granted or taken back (a duplicate may name the grant's, or not).
pub(crate) fn answer_of(status: u16, body: &Value) -> Answer {
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
