//! Linking a provider task to a pending hold, once; a delivery already
//! parked for the task is applied in the same write.

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use uuid::Uuid;

use super::{Ledger, MAX_ATTEMPTS};
use crate::domain::{Actor, EventType, Hold, HoldStatus, Provider, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::store::{hold_pk, key, s, to_item, EventItem, HoldItem, TxFailure};

impl Ledger {
    /// Links a provider task to a pending hold, once (`user`: the hold's
    /// owner as the caller knows it, `None` for any). The same link again
    /// is a no-op; a settled hold is refused, so nobody can steer a parked
    /// outcome through a hold that no longer holds anything. A delivery
    /// parked for the task is applied in the same write.
    pub async fn link_task(
        &self,
        user: Option<&UserId>,
        id: Uuid,
        provider: Provider,
        task_id: &str,
        by: Actor,
    ) -> Result<Hold> {
        for attempt in 0..MAX_ATTEMPTS {
            let hold = self.owned_hold(user, id).await?;
            match &hold.task_id {
                Some(linked) if linked == task_id && hold.provider == provider => {
                    return Ok(hold.into_hold(false));
                }
                Some(_) => return Err(Error::TaskAlreadyLinked),
                None if hold.status != HoldStatus::Pending => return Err(Error::HoldNotPending(hold.status)),
                None => {}
            }
            let owner = hold.user_id.clone();
            let task_link = to_item(&self.task_item(provider, task_id, id, &owner, Timestamp(hold.created_at)))?;
            let linked = match self.parked(provider, task_id).await? {
                Some(outcome) => self.link_and_apply(hold, provider, task_id, outcome, task_link, attempt).await?,
                None => {
                    let items = vec![
                        self.store.tx_put(task_link, Some("attribute_not_exists(pk)"))?,
                        self.parked_absent(provider, task_id)?,
                    ];
                    self.link_only(hold, provider, task_id, items, attempt, by).await?
                }
            };
            if let Some(linked) = linked {
                return Ok(linked);
            }
        }
        Err(Error::Unavailable("task link kept conflicting".into()))
    }

    /// Links a task without settling the hold. `items`: the task link put,
    /// then a check (or delete) of the parked delivery. `None`: read again.
    pub(super) async fn link_only(
        &self,
        mut hold: HoldItem,
        provider: Provider,
        task_id: &str,
        items: Vec<TransactWriteItem>,
        attempt: u32,
        by: Actor,
    ) -> Result<Option<Hold>> {
        let now = self.clock.now();
        let event = EventItem { kind: EventType::TaskLinked, at: now.millis(), by, amount: 0 };
        let update = Update::builder()
            .set_key(Some(key(hold_pk(hold.reservation_id), "HOLD")))
            .update_expression("SET taskId = :task, provider = :provider, events = list_append(events, :events)")
            .condition_expression("attribute_not_exists(taskId) AND #status = :pending")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pending", s(HoldStatus::Pending.as_str()))
            .expression_attribute_values(":task", s(task_id))
            .expression_attribute_values(":provider", s(provider.as_str()))
            .expression_attribute_values(":events", AttributeValue::L(vec![event.to_value()]));
        let mut all = vec![self.store.tx_update(update)?];
        all.extend(items);
        match self.tx(all).await {
            Ok(()) => {
                hold.task_id = Some(task_id.to_owned());
                hold.provider = provider;
                hold.events.push(event);
                Ok(Some(hold.into_hold(false)))
            }
            Err(TxFailure::Cancelled(reasons)) if reasons.get(1).is_some_and(|r| r.condition_failed()) => {
                self.task_owned_elsewhere(provider, task_id, hold.reservation_id).await.map(|_| None)
            }
            // The hold was linked or settled meanwhile, or a delivery was parked: read again.
            Err(TxFailure::Cancelled(reasons)) if reasons.iter().any(|r| r.condition_failed()) => Ok(None),
            Err(failure) => self.retry_or_fail(failure, attempt).await.map(|_| None),
        }
    }

    /// `TaskAlreadyLinked` when the task's link points to another hold.
    pub(super) async fn task_owned_elsewhere(&self, provider: Provider, task_id: &str, id: Uuid) -> Result<()> {
        match self.store.get_task(provider, task_id).await? {
            Some(link) if link.reservation_id != id => Err(Error::TaskAlreadyLinked),
            _ => Ok(()),
        }
    }
}
