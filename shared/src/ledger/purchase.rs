//! Stripe purchases: a paid Checkout Session of a catalog pack, on the
//! pack's terms (`domain::refusal`), becomes a grant, exactly once per
//! session; a refund or a dispute of its payment takes credits back, each
//! credit at most once, in proportion to what was refunded; a dispute closed
//! won gives back what its take-back debited, once. Events may come in any
//! order and more than once: a take-back whose purchase is not known yet is
//! parked under its payment, and applied when the purchase is recorded; a
//! dispute won before its take-back was applied leaves a record that makes
//! the take-back take nothing.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use serde::Serialize;
use uuid::Uuid;

use super::{DebitRequest, GrantRequest, Ledger, Outcome, MAX_ATTEMPTS};
use crate::domain::{refusal, Credits, DebitReason, GrantReason, UserId};
use crate::error::{Error, Result};
use crate::inbound::stripe::{Action, DisputeWon, Paid, TakeBack, TakeBackKind};
use crate::store::{
    attr_number, attr_text, dispute_sk, from_item, key, n, payment_pk, purchase_pk, s, to_item, BalanceWrite,
    DisputeItem, Item, PurchaseItem, SAVED_CARD,
};

/// The actor of everything Stripe's events do.
pub const STRIPE_ACTOR: &str = "stripe";
/// Verified events are remembered this long (Stripe retries for 3 days).
const EVENT_KEEP_SECONDS: i64 = 30 * 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StripeResult {
    Granted,
    TakenBack,
    /// Seen before, or nothing more to do: nothing changed.
    Duplicate,
    /// A refund or dispute of a payment not known yet: applied when it is.
    Parked,
    Ignored,
}

impl StripeResult {
    pub fn as_str(self) -> &'static str {
        match self {
            StripeResult::Granted => "granted",
            StripeResult::TakenBack => "taken_back",
            StripeResult::Duplicate => "duplicate",
            StripeResult::Parked => "parked",
            StripeResult::Ignored => "ignored",
        }
    }
}

/// The answer to Stripe (always 200 once verified: a retry would change nothing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StripeAnswer {
    pub result: StripeResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<Uuid>,
    /// Credits granted, or taken back by this event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<u64>,
    /// Of the credits to take back, those the user no longer had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unrecoverable: Option<u64>,
}

impl StripeAnswer {
    fn of(result: StripeResult) -> StripeAnswer {
        StripeAnswer { result, reason: None, grant_id: None, credits: None, unrecoverable: None }
    }

    fn ignored(reason: &str) -> StripeAnswer {
        StripeAnswer { reason: Some(reason.to_owned()), ..StripeAnswer::of(StripeResult::Ignored) }
    }
}

impl Ledger {
    /// Applies one verified Stripe event, and remembers it: a redelivery
    /// answers `duplicate` at once (and would change nothing anyway).
    pub async fn apply_stripe(&self, event_id: &str, action: Action) -> Result<StripeAnswer> {
        let record = key(format!("STRIPE#{event_id}"), "EVENT");
        // An event ignored before is looked at again: a resend from Stripe's
        // dashboard, after the pack it names is deployed, must grant.
        if let Some(seen) = self.store.get(record.clone()).await? {
            if attr_text(&seen, "result") != StripeResult::Ignored.as_str() {
                return Ok(StripeAnswer::of(StripeResult::Duplicate));
            }
        }
        let answer = match action {
            Action::Grant(paid) => self.purchase_paid(&paid).await?,
            Action::TakeBack(take_back) => self.take_back(&take_back).await?,
            Action::GiveBack(won) => self.give_back(&won).await?,
            Action::Ignored(reason) => StripeAnswer::ignored(reason),
        };
        crate::metrics::count(&format!("Stripe{}", pascal(answer.result.as_str())), 1);
        // Counted by the stats from the stream (ignored events among them).
        let mut item = record;
        item.insert("entity".into(), s("stripeEvent"));
        item.insert("eventId".into(), s(event_id));
        item.insert("result".into(), s(answer.result.as_str()));
        if let Some(reason) = &answer.reason {
            item.insert("reason".into(), s(reason.as_str()));
        }
        item.insert("at".into(), n(self.clock.now().millis()));
        item.insert("ttl".into(), n(self.clock.now().unix_seconds() + EVENT_KEEP_SECONDS));
        self.store.put_if_absent(item).await?;
        Ok(answer)
    }

    /// A paid session of a catalog pack, on the pack's terms: its credits
    /// granted once (the grant's key is the session), the purchase recorded
    /// with its payment's link, and any refund or dispute that came first
    /// applied.
    async fn purchase_paid(&self, paid: &Paid) -> Result<StripeAnswer> {
        let now = self.clock.now();
        let Some(pack) = self.catalog().pack(&paid.pack) else { return Ok(StripeAnswer::ignored("unknown_pack")) };
        if let Some(reason) = refusal(pack.terms(), paid.totals()) {
            tracing::warn!(session = %paid.session_id, pack = %paid.pack, reason, "stripe session does not buy its pack");
            return Ok(StripeAnswer::ignored(reason));
        }
        let credits = pack.credits;
        let expires_at = pack.expires_in_days.map(|days| paid.created.plus_seconds(i64::from(days) * 86_400));
        let session = &paid.session_id;
        let grant_key = format!("stripe:{session}");
        let mut request = GrantRequest::new(credits.get(), GrantReason::Purchase, &grant_key, STRIPE_ACTOR);
        request.description = Some(format!("Stripe Checkout {session}"));
        request.expires_at = expires_at;
        // A grant made before is replayed whatever its pack's days say now;
        // only a new one is refused for a lot that would already have expired.
        let (replayed, grant_id) = match self.grant(&paid.user, request).await {
            Ok(outcome) => (outcome.is_replay(), outcome.into_inner().grant_id),
            Err(Error::Validation(invalid)) if invalid.field == "expiresAt" => {
                return Ok(StripeAnswer::ignored("pack_expired_before_payment_cleared"))
            }
            // Granted before under a catalog that has changed since: what was
            // granted stands.
            Err(Error::IdempotencyKeyReused) => (true, super::derived_id("grant", &paid.user, &grant_key)),
            Err(error) => return Err(error),
        };
        let credits = match replayed {
            true => self.granted_amount(&paid.user, grant_id).await?.unwrap_or(credits),
            false => credits,
        };
        let purchase = PurchaseItem {
            pk: purchase_pk(session),
            sk: "PURCHASE".into(),
            entity: "purchase".into(),
            session_id: session.clone(),
            user_id: paid.user.clone(),
            credits: credits.get(),
            grant_id,
            pack: Some(paid.pack.clone()),
            payment_intent: paid.payment_intent.clone(),
            amount_total: paid.amount_total,
            currency: paid.currency.clone(),
            taken_back: 0,
            unrecoverable: 0,
            at: now.millis(),
        };
        self.store.put_if_absent(to_item(&purchase)?).await?;
        if let Some(payment) = &paid.payment_intent {
            let mut link = key(payment_pk(payment), "LINK");
            link.insert("sessionId".into(), s(session.as_str()));
            link.insert("entity".into(), s("paymentLink"));
            let written = self.store.put_if_absent(link).await?;
            // Read after the link is written: a take-back parked before it is
            // found here, one parked after it finds the link itself.
            let parked = self.parked_take_backs(payment).await?;
            if !parked.is_empty() {
                // They go to the purchase the link names (an earlier
                // delivery's, when this one did not write it).
                let linked = match written {
                    true => session.clone(),
                    false => {
                        self.purchase_of(payment).await?.ok_or_else(|| Error::Internal("a link vanished".into()))?
                    }
                };
                for parked in &parked {
                    self.apply_parked(&linked, payment, parked).await?;
                }
            }
        }
        if let Some(payment) = &paid.payment_intent {
            self.save_card(&paid.user, payment).await?;
        }
        let result = if replayed { StripeResult::Duplicate } else { StripeResult::Granted };
        Ok(StripeAnswer { grant_id: Some(grant_id), credits: Some(credits.get()), ..StripeAnswer::of(result) })
    }

    /// Keeps the card a paid session set up for off-session use as the
    /// user's saved card, for auto-recharge. Read from its PaymentIntent
    /// (the session's event does not carry the payment method); Stripe
    /// unreachable is a 503, so Stripe redelivers the event and this runs
    /// again (the grant replays). A later purchase's card replaces it.
    async fn save_card(&self, user: &UserId, payment_intent: &str) -> Result<()> {
        let Some(api) = &self.stripe_api else { return Ok(()) };
        let intent = match api.payment_intent(payment_intent).await {
            Ok(intent) => intent,
            // Stripe refused (a key without read access, say): a redelivery
            // would be refused the same, so the purchase stands, loudly.
            Err(Error::Internal(why)) => {
                tracing::error!(payment_intent, error = %why, "no card saved: Stripe refused reading the PaymentIntent");
                crate::metrics::count("CardNotSaved", 1);
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        let Some((customer, method)) = intent.saved_card() else { return Ok(()) };
        let card: Item = [
            ("customer".to_owned(), s(customer)),
            ("paymentMethod".to_owned(), s(method)),
            ("paymentIntent".to_owned(), s(payment_intent)),
            ("savedAt".to_owned(), n(self.clock.now().millis())),
        ]
        .into();
        let mut write = BalanceWrite::new();
        write.set(SAVED_CARD, AttributeValue::M(card));
        self.write_settings(user, write).await
    }

    /// A refund or dispute: applied to its purchase, or parked until the
    /// purchase is known.
    async fn take_back(&self, take_back: &TakeBack) -> Result<StripeAnswer> {
        let payment = &take_back.payment_intent;
        if let Some(session) = self.purchase_of(payment).await? {
            return self.take_back_from(&session, take_back).await;
        }
        let (amount, refunded, kind) = match take_back.kind {
            TakeBackKind::Refund { amount, refunded } => (amount, refunded, "refund"),
            TakeBackKind::Dispute => (0, 0, "dispute"),
        };
        let mut parked = key(payment_pk(payment), &format!("PARKED#{}#{kind}#{refunded}", take_back.source));
        parked.insert("entity".into(), s("parkedTakeBack"));
        parked.insert("kind".into(), s(kind));
        parked.insert("source".into(), s(take_back.source.as_str()));
        parked.insert("amount".into(), n(amount));
        parked.insert("refunded".into(), n(refunded));
        // A refund of a payment that never becomes a purchase here (another
        // product of the same Stripe account) is forgotten in time.
        parked.insert("ttl".into(), n(self.clock.now().unix_seconds() + self.retention_seconds));
        self.store.put(parked.clone()).await?;
        // The purchase may have been recorded meanwhile, after it looked for
        // parked take-backs: then this one is applied here.
        match self.purchase_of(payment).await? {
            Some(session) => self.apply_parked(&session, payment, &parked).await,
            None => Ok(StripeAnswer::of(StripeResult::Parked)),
        }
    }

    /// A dispute closed won: what its take-back debited is granted back,
    /// once (the grant's key is the dispute), whatever Stripe redelivers.
    /// Credits the dispute could not take (already spent) were never taken,
    /// so they are not given either. A dispute whose take-back was not
    /// applied here (parked, or not delivered yet) is recorded as closed:
    /// when its take-back comes, it takes nothing.
    async fn give_back(&self, won: &DisputeWon) -> Result<StripeAnswer> {
        let record_key = key(payment_pk(&won.payment_intent), &dispute_sk(&won.dispute));
        let record = match self.store.get(record_key.clone()).await? {
            Some(record) => record,
            None => {
                let closed = DisputeItem {
                    pk: payment_pk(&won.payment_intent),
                    sk: dispute_sk(&won.dispute),
                    entity: "dispute".into(),
                    dispute_id: won.dispute.clone(),
                    session_id: None,
                    user_id: None,
                    taken: 0,
                    closed: Some("won".into()),
                    at: self.clock.now().millis(),
                    // A dispute of another product of the same Stripe account
                    // never meets a take-back here: forgotten in time.
                    ttl: Some(self.clock.now().unix_seconds() + self.retention_seconds),
                };
                if self.store.put_if_absent(to_item(&closed)?).await? {
                    return Ok(StripeAnswer::ignored("nothing_taken"));
                }
                // Its take-back was recorded meanwhile: give that back.
                self.store.get(record_key).await?.ok_or_else(|| Error::Internal("a dispute record vanished".into()))?
            }
        };
        let record: DisputeItem = from_item(record)?;
        // Closed before any take-back, or its take-back found nothing left.
        let (Some(user), Some(session)) = (&record.user_id, &record.session_id) else {
            return Ok(StripeAnswer::ignored("nothing_taken"));
        };
        if record.taken == 0 {
            return Ok(StripeAnswer::ignored("nothing_taken"));
        }
        let grant_key = format!("stripe:dispute:{}", won.dispute);
        let mut request = GrantRequest::new(record.taken, GrantReason::DisputeWon, &grant_key, STRIPE_ACTOR);
        request.description = Some(format!("Stripe dispute {} of Checkout {session} won", won.dispute));
        let outcome = self.grant(user, request).await?;
        let result = if outcome.is_replay() { StripeResult::Duplicate } else { StripeResult::Granted };
        let grant_id = outcome.into_inner().grant_id;
        Ok(StripeAnswer { grant_id: Some(grant_id), credits: Some(record.taken), ..StripeAnswer::of(result) })
    }

    /// The credits a grant made (replayed: what was granted, not what the
    /// catalog says today).
    async fn granted_amount(&self, user: &crate::domain::UserId, grant_id: Uuid) -> Result<Option<Credits>> {
        let item = self.store.get(key(crate::store::user_pk(user), &format!("GRANT#{grant_id}"))).await?;
        Ok(item.map(|i| Credits(attr_number(&i, "amount").max(0) as u64)))
    }

    async fn purchase_of(&self, payment: &str) -> Result<Option<String>> {
        let link = self.store.get(key(payment_pk(payment), "LINK")).await?;
        Ok(link.map(|item| attr_text(&item, "sessionId").to_owned()).filter(|s| !s.is_empty()))
    }

    async fn parked_take_backs(&self, payment: &str) -> Result<Vec<Item>> {
        self.store.parked_take_backs(payment).await
    }

    /// Applies a take-back parked under `payment` to its purchase `session`
    /// (twice is harmless: what it takes back is decided from the
    /// purchase), then forgets it.
    async fn apply_parked(&self, session: &str, payment: &str, parked: &Item) -> Result<StripeAnswer> {
        let kind = match attr_text(parked, "kind") {
            "dispute" => TakeBackKind::Dispute,
            _ => TakeBackKind::Refund {
                amount: attr_number(parked, "amount").max(0) as u64,
                refunded: attr_number(parked, "refunded").max(0) as u64,
            },
        };
        let take_back =
            TakeBack { payment_intent: payment.to_owned(), source: attr_text(parked, "source").to_owned(), kind };
        let answer = self.take_back_from(session, &take_back).await?;
        let parked_key = key(attr_text(parked, "pk").to_owned(), attr_text(parked, "sk"));
        self.store.forget_parked(parked_key).await?;
        Ok(answer)
    }

    /// Takes back what the event says is due and was not taken yet: the
    /// refunded share of the credits (floored), or all of them for a
    /// dispute. The debit and the purchase's new figures are one
    /// transaction, conditional on the figures read.
    async fn take_back_from(&self, session: &str, take_back: &TakeBack) -> Result<StripeAnswer> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(item) = self.store.get(key(purchase_pk(session), "PURCHASE")).await? else {
                return Err(Error::Internal(format!("a payment links to purchase {session}, which is not there")));
            };
            let purchase: PurchaseItem = from_item(item)?;
            let target = due_back(purchase.credits, take_back.kind);
            if target <= purchase.taken_back {
                return Ok(StripeAnswer::of(StripeResult::Duplicate));
            }
            let dispute = matches!(take_back.kind, TakeBackKind::Dispute);
            let record_key = key(payment_pk(&take_back.payment_intent), &dispute_sk(&take_back.source));
            if dispute && self.store.get(record_key.clone()).await?.is_some() {
                // Closed won before its take-back was applied here (parked
                // until its purchase came, or delivered late): nothing is due.
                return Ok(StripeAnswer::ignored("dispute_already_won"));
            }
            let want = target - purchase.taken_back;
            let (reason, what) = match take_back.kind {
                TakeBackKind::Refund { .. } => (DebitReason::Refund, "refund"),
                TakeBackKind::Dispute => (DebitReason::Chargeback, "dispute"),
            };
            let request = DebitRequest {
                amount: Credits(want),
                reason,
                description: Some(format!("Stripe {what} {} of Checkout {session}", take_back.source)),
                partial: true,
                idempotency_key: format!("stripe:{session}:{}-{target}", purchase.taken_back),
                actor: STRIPE_ACTOR.into(),
            };
            let store = &self.store;
            let old = purchase.taken_back;
            let now = self.clock.now().millis();
            let user = purchase.user_id.clone();
            let along = move |taken: Credits| -> Result<Vec<TransactWriteItem>> {
                let update = Update::builder()
                    .set_key(Some(key(purchase_pk(session), "PURCHASE")))
                    .update_expression("SET takenBack = :target, updatedAt = :now ADD unrecoverable :lost")
                    .condition_expression("takenBack = :old")
                    .expression_attribute_values(":target", n(target))
                    .expression_attribute_values(":lost", n(want - taken.get()))
                    .expression_attribute_values(":old", n(old))
                    .expression_attribute_values(":now", n(now));
                let mut items = vec![store.tx_update(update)?];
                if dispute {
                    // What this dispute took, for its `won` to give back; on
                    // the condition that no `won` came first.
                    let record = DisputeItem {
                        pk: payment_pk(&take_back.payment_intent),
                        sk: dispute_sk(&take_back.source),
                        entity: "dispute".into(),
                        dispute_id: take_back.source.clone(),
                        session_id: Some(session.to_owned()),
                        user_id: Some(user.clone()),
                        taken: taken.get(),
                        closed: None,
                        at: now,
                        ttl: None,
                    };
                    items.push(store.tx_put(to_item(&record)?, Some("attribute_not_exists(pk)"))?);
                }
                Ok(items)
            };
            let taken = match self.debit_along(&purchase.user_id, request, &along).await {
                // Another event took the same step with other words (a refund
                // and a dispute at once): read the figures again.
                Err(Error::IdempotencyKeyReused) => None,
                other => other?,
            };
            match taken {
                Some(Outcome::Created(debit)) => {
                    let lost = want - debit.amount.get();
                    if lost > 0 {
                        crate::metrics::count("Unrecoverable", lost);
                    }
                    return Ok(StripeAnswer {
                        credits: Some(debit.amount.get()),
                        unrecoverable: Some(lost),
                        ..StripeAnswer::of(StripeResult::TakenBack)
                    });
                }
                Some(Outcome::Replayed(_)) => return Ok(StripeAnswer::of(StripeResult::Duplicate)),
                // The purchase moved (another refund, the dispute): decide again.
                None => continue,
            }
        }
        Err(Error::Unavailable("taking credits back kept conflicting".into()))
    }
}

/// Credits due back in all once this event is applied: the refunded share
/// (cumulative, floored, so a full refund is all of them) or, for a
/// dispute, all of them.
pub fn due_back(credits: u64, kind: TakeBackKind) -> u64 {
    match kind {
        TakeBackKind::Dispute => credits,
        TakeBackKind::Refund { amount: 0, .. } => 0,
        TakeBackKind::Refund { amount, refunded } => {
            (u128::from(credits) * u128::from(refunded.min(amount)) / u128::from(amount)) as u64
        }
    }
}

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refunds_take_back_their_share_floored_and_never_more() {
        let refund = |refunded| TakeBackKind::Refund { amount: 999, refunded };
        assert_eq!(due_back(100, refund(0)), 0);
        assert_eq!(due_back(100, refund(500)), 50);
        assert_eq!(due_back(100, refund(998)), 99);
        assert_eq!(due_back(100, refund(999)), 100);
        assert_eq!(due_back(100, refund(5_000)), 100, "never more than the purchase");
        assert_eq!(due_back(100, TakeBackKind::Dispute), 100);
        assert_eq!(due_back(100, TakeBackKind::Refund { amount: 0, refunded: 0 }), 0);
        assert_eq!(due_back(u64::MAX / 2, refund(999)), u64::MAX / 2);
        // Monotone: a later (larger) cumulative refund never asks for less.
        let mut last = 0;
        for refunded in 0..=999 {
            let now = due_back(137, refund(refunded));
            assert!(now >= last);
            last = now;
        }
        assert_eq!(pascal("taken_back"), "TakenBack");
    }
}
