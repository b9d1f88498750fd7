//! A provider's outcome applied to the ledger: a delivery verified by
//! `inbound/` settles the hold its task is linked to, exactly once, whatever
//! else runs at the same time.
//!
//! - A redelivery is recognised by a delivery record written in the same
//!   transaction as the settlement (or alone, when nothing is left to
//!   settle), so "already seen" and "already applied" can never disagree.
//! - A delivery for a task nobody has linked yet is parked next to the task's
//!   link key; linking the task (route or reserve) applies it in the same
//!   transaction as the link. Each side checks the other's item in its
//!   transaction, so whichever commits second settles the hold.

use aws_sdk_dynamodb::types::TransactWriteItem;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Along, Ledger, MAX_ATTEMPTS};
use crate::domain::{decide, Actor, Ask, Decision, Hold, HoldStatus, Provider, Settlement, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::inbound::Outcome;
use crate::store::{from_item, key, task_pk, to_item, HoldItem, Item, TxFailure};

/// What a webhook delivery did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeResult {
    Confirmed,
    Released,
    Ignored,
    Duplicate,
    Parked,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeAnswer {
    pub result: OutcomeResult,
    /// A success for a hold that had already expired: recorded, not charged.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late_success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<Uuid>,
}

impl OutcomeAnswer {
    fn of(result: OutcomeResult) -> OutcomeAnswer {
        OutcomeAnswer { result, late_success: false, reservation_id: None }
    }
}

/// A verified delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub provider: Provider,
    pub task_id: String,
    pub outcome: Outcome,
    /// The provider's delivery id (`webhook-id`), when it sends one.
    pub delivery_id: Option<String>,
}

impl Delivery {
    /// Redeliveries share this: the provider's id, else task and outcome.
    fn dedup_pk(&self) -> String {
        match &self.delivery_id {
            Some(id) => format!("DELIVERY#{}#id#{id}", self.provider.as_str()),
            None => format!("DELIVERY#{}#task#{}#{}", self.provider.as_str(), self.task_id, self.outcome.as_str()),
        }
    }
}

/// A delivery waiting for its task to be linked.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParkedItem {
    pk: String,
    sk: String,
    entity: String,
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    units: Option<u32>,
    at: i64,
    ttl: i64,
}

impl ParkedItem {
    fn outcome(&self) -> Outcome {
        match self.outcome.as_str() {
            "success" => Outcome::Success { units: self.units },
            "failure" => Outcome::Failure,
            _ => Outcome::Other,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryItem {
    pk: String,
    sk: String,
    entity: String,
    provider: Provider,
    task_id: String,
    outcome: String,
    result: OutcomeResult,
    late_success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<UserId>,
    at: i64,
    ttl: i64,
}

fn parked_key(provider: Provider, task_id: &str) -> Item {
    key(task_pk(provider, task_id), "PARKED")
}

/// What a provider outcome asks of a hold: a success's units are the
/// task's total output, whatever the app captured on the way.
fn ask_for(outcome: Outcome) -> Option<Ask> {
    match outcome {
        Outcome::Success { units } => Some(Ask::Produced { units }),
        Outcome::Failure => Some(Ask::Release),
        Outcome::Other => None,
    }
}

fn result_of(ask: Ask) -> OutcomeResult {
    match ask {
        Ask::Produced { .. } => OutcomeResult::Confirmed,
        _ => OutcomeResult::Released,
    }
}

fn last_failed(reasons: &[crate::store::Cancel]) -> bool {
    reasons.last().is_some_and(|r| r.condition_failed())
}

impl Ledger {
    /// Applies a verified delivery.
    pub async fn apply_outcome(&self, delivery: &Delivery) -> Result<OutcomeAnswer> {
        if delivery.outcome == Outcome::Other {
            return Ok(OutcomeAnswer::of(OutcomeResult::Ignored));
        }
        if self.store.get(key(delivery.dedup_pk(), "DELIVERY")).await?.is_some() {
            return Ok(OutcomeAnswer::of(OutcomeResult::Duplicate));
        }
        for attempt in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let Some(link) = self.store.get_task(delivery.provider, &delivery.task_id).await? else {
                match self.park(delivery, now).await {
                    Ok(answer) => return Ok(answer),
                    Err(TxFailure::Cancelled(reasons)) if reasons.first().is_some_and(|r| r.condition_failed()) => {
                        continue; // linked meanwhile: settle it now
                    }
                    Err(TxFailure::Cancelled(reasons)) if last_failed(&reasons) => {
                        return Ok(OutcomeAnswer::of(OutcomeResult::Duplicate));
                    }
                    Err(TxFailure::Cancelled(reasons)) if reasons.get(1).is_some_and(|r| r.condition_failed()) => {
                        // Another outcome for this task is already parked; the first one stands.
                        tracing::warn!(task = %delivery.task_id, "a different outcome is already parked");
                        return self.record(delivery, OutcomeResult::Ignored, None, false, now).await;
                    }
                    Err(failure) => {
                        self.retry_or_fail(failure, attempt).await?;
                        continue;
                    }
                }
            };
            let Some(item) = self.store.get_hold(link.reservation_id).await? else {
                // The hold is gone (past retention): nothing left to settle.
                return self.record(delivery, OutcomeResult::Ignored, None, false, now).await;
            };
            let Some(ask) = ask_for(delivery.outcome) else {
                return Ok(OutcomeAnswer::of(OutcomeResult::Ignored));
            };
            let hold = item.clone().into_hold(false);
            let late = matches!(ask, Ask::Produced { .. });
            let (attempted, answer) = match decide(&hold, ask, now) {
                Decision::Apply(wanted) => (wanted, result_of(ask)),
                Decision::ExpireInstead => (Settlement::Expire, OutcomeResult::Ignored),
                Decision::Replay => return self.record(delivery, result_of(ask), Some(&hold), false, now).await,
                Decision::NotPending(HoldStatus::Expired) if late => {
                    return self.record(delivery, OutcomeResult::Ignored, Some(&hold), true, now).await;
                }
                // (A provider's total is bounded by the hold's units, so it
                // never asks for too many.)
                Decision::NotPending(_) | Decision::TooManyUnits { .. } => {
                    tracing::info!(reservation = %hold.reservation_id, status = hold.status.as_str(), "webhook after another settlement");
                    return self.record(delivery, OutcomeResult::Ignored, Some(&hold), false, now).await;
                }
            };
            let is_late = attempted == Settlement::Expire;
            let record = self.delivery_item(delivery, answer, Some(&hold), is_late, now)?;
            let along = Along { link: None, items: vec![record], note: None };
            match self.transition(item, attempted, Actor::Webhook, now, along).await {
                Ok(settled) => {
                    if is_late {
                        late_success(&settled);
                    }
                    return Ok(OutcomeAnswer {
                        result: answer,
                        late_success: is_late,
                        reservation_id: Some(settled.reservation_id),
                    });
                }
                Err(TxFailure::Cancelled(reasons)) if last_failed(&reasons) => {
                    return Ok(OutcomeAnswer::of(OutcomeResult::Duplicate));
                }
                Err(failure) => self.lost_race(failure, attempt, hold.reservation_id).await?,
            }
        }
        Err(Error::Unavailable("webhook kept conflicting".into()))
    }

    /// Parks a delivery for a task not linked yet: only if the link still
    /// does not exist, nothing is parked for it, and it was not seen before.
    async fn park(&self, delivery: &Delivery, now: Timestamp) -> Result<OutcomeAnswer, TxFailure> {
        let (units, outcome) = match delivery.outcome {
            Outcome::Success { units } => (units, "success"),
            _ => (None, "failure"),
        };
        let parked = ParkedItem {
            pk: task_pk(delivery.provider, &delivery.task_id),
            sk: "PARKED".into(),
            entity: "parked".into(),
            outcome: outcome.into(),
            units,
            at: now.millis(),
            ttl: now.unix_seconds() + self.retention_seconds,
        };
        let items = vec![
            self.store
                .tx_check(key(task_pk(delivery.provider, &delivery.task_id), "TASK"), "attribute_not_exists(pk)")
                .map_err(TxFailure::Store)?,
            to_item(&parked)
                .and_then(|item| self.store.tx_put(item, Some("attribute_not_exists(pk)")))
                .map_err(TxFailure::Store)?,
            self.delivery_item(delivery, OutcomeResult::Parked, None, false, now).map_err(TxFailure::Store)?,
        ];
        self.tx(items).await?;
        tracing::info!(task = %delivery.task_id, provider = delivery.provider.as_str(), "webhook parked until the task is linked");
        Ok(OutcomeAnswer::of(OutcomeResult::Parked))
    }

    /// Records a delivery that changed nothing, so its redelivery answers
    /// `duplicate`.
    async fn record(
        &self,
        delivery: &Delivery,
        result: OutcomeResult,
        hold: Option<&Hold>,
        late: bool,
        now: Timestamp,
    ) -> Result<OutcomeAnswer> {
        let item = self.delivery_record(delivery, result, hold, late, now)?;
        if !self.store.put_if_absent(item).await? {
            return Ok(OutcomeAnswer::of(OutcomeResult::Duplicate));
        }
        if late {
            if let Some(hold) = hold {
                late_success(hold);
            }
        }
        Ok(OutcomeAnswer { result, late_success: late, reservation_id: hold.map(|h| h.reservation_id) })
    }

    fn delivery_record(
        &self,
        delivery: &Delivery,
        result: OutcomeResult,
        hold: Option<&Hold>,
        late: bool,
        now: Timestamp,
    ) -> Result<Item> {
        to_item(&DeliveryItem {
            pk: delivery.dedup_pk(),
            sk: "DELIVERY".into(),
            entity: "delivery".into(),
            provider: delivery.provider,
            task_id: delivery.task_id.clone(),
            outcome: delivery.outcome.as_str().into(),
            result,
            late_success: late,
            reservation_id: hold.map(|h| h.reservation_id),
            user_id: hold.map(|h| h.user_id.clone()),
            at: now.millis(),
            ttl: now.unix_seconds() + self.retention_seconds,
        })
    }

    fn delivery_item(
        &self,
        delivery: &Delivery,
        result: OutcomeResult,
        hold: Option<&Hold>,
        late: bool,
        now: Timestamp,
    ) -> Result<TransactWriteItem> {
        let item = self.delivery_record(delivery, result, hold, late, now)?;
        self.store.tx_put(item, Some("attribute_not_exists(pk)"))
    }

    /// The parked delivery for a task, if any.
    pub(super) async fn parked(&self, provider: Provider, task_id: &str) -> Result<Option<Outcome>> {
        match self.store.get(parked_key(provider, task_id)).await? {
            Some(item) => Ok(Some(from_item::<ParkedItem>(item)?.outcome())),
            None => Ok(None),
        }
    }

    /// Links a task and applies its parked delivery in one transaction
    /// (whoever comes second settles). Returns `None` when the race must be
    /// read again.
    pub(super) async fn link_and_apply(
        &self,
        item: HoldItem,
        provider: Provider,
        task_id: &str,
        outcome: Outcome,
        task_link: Item,
        attempt: u32,
    ) -> Result<Option<Hold>> {
        let now = self.clock.now();
        let id = item.reservation_id;
        let hold = item.clone().into_hold(false);
        let attempted = match ask_for(outcome).map(|ask| decide(&hold, ask, now)) {
            Some(Decision::Apply(wanted)) => Some(wanted),
            Some(Decision::ExpireInstead) => Some(Settlement::Expire),
            _ => None,
        };
        let mut items = Vec::with_capacity(3);
        if attempted == Some(Settlement::Expire) {
            // A parked success for a hold that expired meanwhile: record the
            // late success (the stats count it), in the same write.
            let late = DeliveryItem {
                pk: format!("DELIVERY#{}#late#{task_id}", provider.as_str()),
                sk: "DELIVERY".into(),
                entity: "delivery".into(),
                provider,
                task_id: task_id.to_owned(),
                outcome: outcome.as_str().into(),
                result: OutcomeResult::Ignored,
                late_success: true,
                reservation_id: Some(id),
                user_id: Some(item.user_id.clone()),
                at: now.millis(),
                ttl: now.unix_seconds() + self.retention_seconds,
            };
            items.push(self.store.tx_put(to_item(&late)?, None)?);
        }
        // These two stay last: their cancellation reasons are read by position.
        items.push(self.store.tx_put(task_link, Some("attribute_not_exists(pk)"))?);
        items.push(self.store.tx_delete(parked_key(provider, task_id), Some("attribute_exists(pk)"))?);
        let Some(attempted) = attempted else {
            // Settled already (or nothing to do): link only, and drop the parked delivery.
            return self.link_only(item, provider, task_id, items, attempt, Actor::Server).await;
        };
        match self
            .transition(
                item,
                attempted,
                Actor::Webhook,
                now,
                Along { link: Some((provider, task_id.to_owned())), items, note: None },
            )
            .await
        {
            Ok(settled) => {
                if attempted == Settlement::Expire {
                    late_success(&settled);
                }
                Ok(Some(settled))
            }
            Err(TxFailure::Cancelled(reasons)) => {
                let n = reasons.len();
                if reasons.get(n.saturating_sub(2)).is_some_and(|r| r.condition_failed()) {
                    return self.task_owned_elsewhere(provider, task_id, id).await.map(|_| None);
                }
                // The hold moved, or the parked delivery was taken: read again.
                if reasons.first().is_some_and(|r| r.condition_failed())
                    || reasons.last().is_some_and(|r| r.condition_failed())
                {
                    return Ok(None);
                }
                if reasons.iter().any(|r| r.condition_failed()) {
                    return Err(Error::Internal(format!("balance invariant broken for hold {id}")));
                }
                self.retry_or_fail(TxFailure::Cancelled(reasons), attempt).await.map(|_| None)
            }
            Err(TxFailure::Store(e)) => Err(e),
        }
    }

    pub(super) fn parked_absent(&self, provider: Provider, task_id: &str) -> Result<TransactWriteItem> {
        self.store.tx_check(parked_key(provider, task_id), "attribute_not_exists(pk)")
    }
}

/// A provider success for a hold that had already expired: the user is not
/// charged; operators see it in the logs and the `LateSuccess` metric.
fn late_success(hold: &Hold) {
    tracing::warn!(
        reservation = %hold.reservation_id,
        user = %hold.user_id,
        outcome = "late_success",
        "provider reported success after the hold expired; not charged"
    );
    crate::metrics::count("LateSuccess", 1);
}
