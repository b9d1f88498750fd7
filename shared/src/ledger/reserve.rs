//! Placing a hold: `units × unitCost` moved from `available` to `reserved`,
//! once per idempotency key, with its provider task linked in the same write.

use uuid::Uuid;

use super::{keyed_hold_id, request_hash, Ledger, Outcome, ReserveRequest, MAX_ATTEMPTS};
use crate::domain::{Credits, EntryType, EventType, Hold, HoldStatus, UserId};
use crate::error::{Error, Result};
use crate::store::{hold_pk, pending_shard, to_item, BalanceWrite, EventItem, HoldItem, LotPartItem, TxFailure};

impl Ledger {
    /// Places a hold: moves `units × unitCost` from `available` to `reserved`.
    pub async fn reserve(&self, user: &UserId, request: ReserveRequest) -> Result<Outcome<Hold>> {
        let unit_cost = self
            .prices()
            .await?
            .unit_cost(&request.operation)
            .ok_or_else(|| Error::UnknownOperation(request.operation.clone()))?;
        let amount = Credits(unit_cost.get() * u64::from(request.units));
        let (id, hash) = match &request.idempotency_key {
            Some(k) => (keyed_hold_id(user, k), Some(request_hash(&request)?)),
            None => (Uuid::new_v4(), None),
        };
        if hash.is_some() {
            if let Some(existing) = self.store.get_hold(id).await? {
                return self.replay_of(user, existing, hash.as_deref(), &request).await;
            }
        }
        // Set when a delivery for the task is already parked: the hold is
        // placed first, then linked (which applies the delivery atomically).
        let mut link_after = false;
        for attempt in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let expires_at = now.plus_seconds(i64::from(request.ttl_seconds));
            let mut hold = HoldItem {
                pk: hold_pk(id),
                sk: "HOLD".into(),
                entity: "hold".into(),
                reservation_id: id,
                user_id: user.clone(),
                operation: request.operation.clone(),
                units: request.units,
                unit_cost: unit_cost.get(),
                amount: amount.get(),
                status: HoldStatus::Pending,
                task_id: request.task_id.clone().filter(|_| !link_after),
                provider: request.provider,
                description: request.description.clone(),
                created_at: now.millis(),
                expires_at: expires_at.millis(),
                captured_units: 0,
                captured_amount: 0,
                released_amount: 0,
                settled_at: None,
                settled_by: None,
                refunded_at: None,
                request_hash: hash.clone(),
                events: vec![EventItem {
                    kind: EventType::Reserved,
                    at: now.millis(),
                    by: request.by,
                    amount: amount.get(),
                }],
                pending_shard: Some(pending_shard(id)),
                ttl: None,
                open_counted: true,
                final_units: None,
                captures: None,
                lots: None,
            };
            let mut items = Vec::with_capacity(4);
            let (stored, allocation) = if amount > Credits::ZERO {
                let stored = self.caught_up(user, now).await?;
                match stored.books.lots.take(amount, now) {
                    Ok(allocation) => (stored, Some(allocation)),
                    Err(available) => {
                        crate::metrics::count("Insufficient", 1);
                        return Err(Error::InsufficientCredits { available, required: amount });
                    }
                }
            } else {
                // A free operation takes from no lot: it needs the open-hold
                // count, not the balance with what fell due written down.
                (self.read_balance(user).await?, None)
            };
            // Every pending hold counts, a free one too: each still writes a
            // hold, a history line and an index entry.
            if stored.open_holds >= u64::from(self.max_open_holds) {
                crate::metrics::count("TooManyOpenHolds", 1);
                return Err(Error::TooManyOpenHolds { open: stored.open_holds, limit: u64::from(self.max_open_holds) });
            }
            let balance_index = items.len();
            let mut write = BalanceWrite::new();
            if let Some(allocation) = &allocation {
                write.hold(allocation);
                hold.lots = Some(LotPartItem::from_allocation(allocation));
            }
            // The open-hold count rides on the write a paid reserve makes
            // anyway: no extra item, no extra unit (a free one pays for it).
            write.below("openHolds", u64::from(self.max_open_holds)).add("openHolds", 1);
            items.push(self.store.tx_update(write.build(user, now))?);
            let hold_index = items.len();
            items.push(self.store.tx_put(to_item(&hold)?, Some("attribute_not_exists(pk)"))?);
            let task_index = match request.task_id.as_ref().filter(|_| !link_after) {
                Some(task_id) => {
                    items.push(self.store.tx_put(
                        to_item(&self.task_item(request.provider, task_id, id, user, now))?,
                        Some("attribute_not_exists(pk)"),
                    )?);
                    items.push(self.parked_absent(request.provider, task_id)?);
                    Some(items.len() - 2)
                }
                None => None,
            };
            let mut entry = self.entry(
                user,
                id,
                EntryType::Reserve,
                amount,
                Some((id, &request.operation)),
                request.description.clone(),
                now,
            );
            entry.lots = hold.lots.clone();
            items.push(self.store.tx_put(to_item(&entry)?, None)?);

            match self.tx(items).await {
                Ok(()) if link_after => {
                    let task_id = request.task_id.as_deref().unwrap_or_default();
                    return match self.link_task(Some(user), id, request.provider, task_id, request.by).await {
                        Ok(linked) => Ok(Outcome::Created(linked)),
                        // The task is another hold's: this one must not stay,
                        // since the caller is told the reserve failed.
                        Err(Error::TaskAlreadyLinked) => {
                            if let Err(release_error) = self.release(Some(user), id, request.by).await {
                                // The sweep returns it at its expiry.
                                tracing::warn!(reservation = %id, error = %release_error, "release after failed link failed");
                            }
                            Err(Error::TaskAlreadyLinked)
                        }
                        // Unknown outcome (the link may yet be made): the hold
                        // stays pending, so a retry with the same key links it
                        // and applies the parked outcome; without a key the
                        // sweep returns it at its expiry.
                        Err(error) => Err(error),
                    };
                }
                Ok(()) => {
                    crate::metrics::count("Reserved", 1);
                    return Ok(Outcome::Created(hold.into_hold(false)));
                }
                Err(TxFailure::Cancelled(reasons)) => {
                    let failed =
                        |i: Option<usize>| i.and_then(|i| reasons.get(i)).is_some_and(|r| r.condition_failed());
                    if failed(Some(hold_index)) {
                        // A concurrent request with the same idempotency key won.
                        return match self.store.get_hold(id).await? {
                            Some(existing) => self.replay_of(user, existing, hash.as_deref(), &request).await,
                            None => Err(Error::Internal("hold vanished after its put failed".into())),
                        };
                    }
                    if failed(task_index) {
                        return Err(Error::TaskAlreadyLinked);
                    }
                    if failed(task_index.map(|i| i + 1)) {
                        link_after = true;
                        continue;
                    }
                    if failed(Some(balance_index)) {
                        // The balance moved since it was read: decide again
                        // from what it is now.
                        continue;
                    }
                    self.retry_or_fail(TxFailure::Cancelled(reasons), attempt).await?;
                }
                Err(failure) => self.retry_or_fail(failure, attempt).await?,
            }
        }
        Err(Error::Unavailable("reserve kept conflicting".into()))
    }

    /// The answer to a reserve whose idempotency key was seen before. A hold
    /// placed with a task id but not linked yet (a parked delivery was
    /// waiting) is linked now.
    pub(super) async fn replay_of(
        &self,
        user: &UserId,
        existing: HoldItem,
        hash: Option<&str>,
        request: &ReserveRequest,
    ) -> Result<Outcome<Hold>> {
        if existing.request_hash.as_deref() != hash {
            return Err(Error::IdempotencyKeyReused);
        }
        match (&request.task_id, &existing.task_id) {
            // Linked only while pending: a hold settled since (released after
            // its link failed, say) answers as it is.
            (Some(task_id), None) if existing.status == HoldStatus::Pending => {
                let linked =
                    self.link_task(Some(user), existing.reservation_id, request.provider, task_id, request.by).await?;
                Ok(Outcome::Replayed(linked))
            }
            _ => Ok(Outcome::Replayed(existing.into_hold(false))),
        }
    }
}
