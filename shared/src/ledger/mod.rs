//! The ledger operations. Each balance change is one TransactWriteItems whose
//! conditions encode the money rules; a failed condition is read back and
//! turned into an answer (a replay, or a refusal), never re-applied blindly.

pub mod sweep;
pub mod webhook;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{
    decide, split, Actor, Balance, Credits, Decision, EntryType, EventType, Grant, GrantReason, HistoryPage,
    HoldStatus, Provider, Reservation, Settlement, Timestamp, UserId,
};
use crate::error::{Error, Result};
use crate::prices::{Catalog, PriceCache, PRICE_REFRESH};
use crate::store::{
    attr_number, entry_sk, hold_pk, key, n, pending_shard, s, task_pk, to_item, user_pk, EntryItem, EventItem,
    GrantItem, HoldItem, Item, Store, TaskItem, TxFailure,
};
use crate::validate::{Invalid, Problem};

/// Namespace of the ids derived from idempotency keys (UUID v5).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_2c1e_8b7a_4e0f_9a51_3c2d_4b5e_6f70);

/// Transactions touching the same item at once may be cancelled with
/// `TransactionConflict`. Retrying is safe (every write is conditional);
/// this bounds how long a caller waits before getting 503.
const MAX_ATTEMPTS: u32 = 12;

/// A first-time result or a replay of an earlier one (same idempotency key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    Created(T),
    Replayed(T),
}

impl<T> Outcome<T> {
    pub fn into_inner(self) -> T {
        match self {
            Outcome::Created(v) | Outcome::Replayed(v) => v,
        }
    }

    pub fn is_replay(&self) -> bool {
        matches!(self, Outcome::Replayed(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReserveRequest {
    pub operation: String,
    pub units: u32,
    pub task_id: Option<String>,
    pub provider: Provider,
    pub description: Option<String>,
    pub ttl_seconds: u32,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
    /// Who places it (the hold's `reserved` event).
    #[serde(skip)]
    pub by: Actor,
}

impl ReserveRequest {
    /// A hold of `units` of `operation` with the contract's defaults: BFL,
    /// the default time to live, no task, no description, no key.
    pub fn new(operation: &str, units: u32) -> ReserveRequest {
        ReserveRequest {
            operation: operation.to_owned(),
            units,
            task_id: None,
            provider: Provider::Bfl,
            description: None,
            ttl_seconds: crate::domain::DEFAULT_TTL_SECONDS,
            idempotency_key: None,
            by: Actor::Server,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantRequest {
    pub amount: Credits,
    pub reason: GrantReason,
    pub description: Option<String>,
    #[serde(skip)]
    pub idempotency_key: String,
    /// Who grants (the caller's `sub`): recorded, not part of the request's
    /// identity, so another operator's retry of the same key replays.
    #[serde(skip)]
    pub actor: String,
}

pub use crate::domain::Attribution;

/// What a job run under [`Ledger::with_credits`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobOutput<T> {
    pub value: T,
    /// Units that came out; `None` means all the units held.
    pub units: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum WithCreditsError<E> {
    #[error("credits: {0}")]
    Credits(Error),
    #[error("job failed")]
    Job(E),
}

#[derive(Clone, Debug)]
pub struct Ledger {
    store: Store,
    clock: Arc<dyn Clock>,
    prices: Arc<PriceCache>,
    retention_seconds: i64,
    max_open_holds: u32,
}

fn request_hash<T: Serialize>(request: &T) -> Result<String> {
    let canonical = serde_json::to_vec(request).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(canonical)))
}

fn derived_id(kind: &str, user: &UserId, key: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("{kind}\n{user}\n{key}").as_bytes())
}

async fn backoff(attempt: u32) {
    let cap = 5u64 << attempt.min(5);
    let jitter = rand::random::<u64>() % cap.max(1);
    tokio::time::sleep(Duration::from_millis(2 + jitter)).await;
}

impl Ledger {
    pub fn new(store: Store, clock: Arc<dyn Clock>, catalog: Arc<Catalog>, retention_days: u32) -> Ledger {
        Ledger {
            store,
            clock,
            prices: Arc::new(PriceCache::new(catalog, PRICE_REFRESH)),
            retention_seconds: i64::from(retention_days) * 86_400,
            max_open_holds: crate::config::DEFAULT_MAX_OPEN_HOLDS,
        }
    }

    /// Pending holds one user may have at once (`CREDITS_MAX_OPEN_HOLDS`).
    pub fn with_max_open_holds(mut self, limit: u32) -> Ledger {
        self.max_open_holds = limit.max(1);
        self
    }

    /// Reads operator price changes at most every `refresh` (tests: always).
    pub fn with_price_refresh(mut self, refresh: std::time::Duration) -> Ledger {
        self.prices = Arc::new(PriceCache::new(self.prices.shipped().clone(), refresh));
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The catalog shipped with the project (`shared/prices.json`).
    pub fn catalog(&self) -> &Catalog {
        self.prices.shipped()
    }

    /// The prices in force for new holds (shipped catalog plus operator changes).
    pub async fn prices(&self) -> Result<Arc<Catalog>> {
        self.prices.get(&self.store).await
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub async fn balance(&self, user: &UserId) -> Result<Balance> {
        self.store.get_balance(user).await
    }

    /// Credits a user once per idempotency key.
    pub async fn grant(&self, user: &UserId, request: GrantRequest) -> Result<Outcome<Grant>> {
        let grant_id = derived_id("grant", user, &request.idempotency_key);
        let hash = request_hash(&request)?;
        for attempt in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let grant = GrantItem {
                pk: user_pk(user),
                sk: format!("GRANT#{grant_id}"),
                entity: "grant".into(),
                grant_id,
                user_id: user.clone(),
                amount: request.amount.get(),
                reason: request.reason,
                description: request.description.clone(),
                request_hash: hash.clone(),
                actor: Some(request.actor.clone()),
                at: now.millis(),
            };
            let balance = Update::builder()
                .set_key(Some(key(user_pk(user), "BALANCE")))
                .update_expression(
                    "SET available = if_not_exists(available, :zero) + :amount, \
                     granted = if_not_exists(granted, :zero) + :amount, \
                     reserved = if_not_exists(reserved, :zero), spent = if_not_exists(spent, :zero), \
                     openHolds = if_not_exists(openHolds, :zero), \
                     userId = :user, entity = :entity, updatedAt = :now",
                )
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":amount", n(request.amount))
                .expression_attribute_values(":user", s(user.as_str()))
                .expression_attribute_values(":entity", s("balance"))
                .expression_attribute_values(":now", n(now.millis()));
            let mut entry =
                self.entry(user, grant_id, EntryType::Grant, request.amount, None, request.description.clone(), now);
            entry.reason = Some(request.reason.as_str().to_owned());
            entry.actor = Some(request.actor.clone());
            let items = vec![
                self.put(to_item(&grant)?, Some("attribute_not_exists(pk)"))?,
                self.update(balance)?,
                self.put(to_item(&entry)?, None)?,
            ];
            match self.tx(items).await {
                Ok(()) => {
                    // Credited: a failed read must not say "may not have been applied".
                    let balance = self.store.get_balance(user).await.map_err(applied_unread)?;
                    return Ok(Outcome::Created(Grant { grant_id, balance }));
                }
                Err(TxFailure::Cancelled(reasons)) if reasons.first().is_some_and(|r| r.condition_failed()) => {
                    let stored_hash = reasons[0]
                        .item
                        .as_ref()
                        .and_then(|item| item.get("requestHash"))
                        .and_then(|v| v.as_s().ok())
                        .cloned();
                    if stored_hash.as_deref() != Some(hash.as_str()) {
                        return Err(Error::IdempotencyKeyReused);
                    }
                    let balance = self.store.get_balance(user).await.map_err(applied_unread)?;
                    return Ok(Outcome::Replayed(Grant { grant_id, balance }));
                }
                Err(failure) => self.retry_or_fail(failure, attempt).await?,
            }
        }
        Err(Error::Unavailable("grant kept conflicting".into()))
    }

    /// Places a hold: moves `units × unitCost` from `available` to `reserved`.
    pub async fn reserve(&self, user: &UserId, request: ReserveRequest) -> Result<Outcome<Reservation>> {
        let unit_cost = self
            .prices()
            .await?
            .unit_cost(&request.operation)
            .ok_or_else(|| Error::UnknownOperation(request.operation.clone()))?;
        let amount = Credits(unit_cost.get() * u64::from(request.units));
        let (id, hash) = match &request.idempotency_key {
            Some(k) => (derived_id("reserve", user, k), Some(request_hash(&request)?)),
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
            let hold = HoldItem {
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
                open_counted: amount > Credits::ZERO,
            };
            let mut items = Vec::with_capacity(4);
            // A free operation moves no credits, so it needs no balance item.
            let balance_index = (amount > Credits::ZERO).then_some(items.len());
            if balance_index.is_some() {
                items.push(
                    self.update(
                        Update::builder()
                            .set_key(Some(key(user_pk(user), "BALANCE")))
                            // The open-hold count rides on the write reserve
                            // makes anyway: no extra item, no extra unit.
                            .update_expression(
                                "SET available = available - :amount, reserved = reserved + :amount, \
                                 openHolds = if_not_exists(openHolds, :zero) + :one, updatedAt = :now",
                            )
                            .condition_expression(
                                "available >= :amount AND (attribute_not_exists(openHolds) OR openHolds < :limit)",
                            )
                            .expression_attribute_values(":amount", n(amount))
                            .expression_attribute_values(":zero", n(0))
                            .expression_attribute_values(":one", n(1))
                            .expression_attribute_values(":limit", n(self.max_open_holds))
                            .expression_attribute_values(":now", n(now.millis())),
                    )?,
                );
            }
            let hold_index = items.len();
            items.push(self.put(to_item(&hold)?, Some("attribute_not_exists(pk)"))?);
            let task_index = match request.task_id.as_ref().filter(|_| !link_after) {
                Some(task_id) => {
                    items.push(self.put(
                        to_item(&self.task_item(request.provider, task_id, id, user, expires_at))?,
                        Some("attribute_not_exists(pk)"),
                    )?);
                    items.push(self.parked_absent(request.provider, task_id)?);
                    Some(items.len() - 2)
                }
                None => None,
            };
            let entry = self.entry(
                user,
                id,
                EntryType::Reserve,
                amount,
                Some((id, &request.operation)),
                request.description.clone(),
                now,
            );
            items.push(self.put(to_item(&entry)?, None)?);

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
                    return Ok(Outcome::Created(hold.into_reservation(false)));
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
                    if let Some(reason) = balance_index.and_then(|i| reasons.get(i)).filter(|r| r.condition_failed()) {
                        let figure =
                            |name: &str| reason.item.as_ref().map_or(0, |item| attr_number(item, name).max(0) as u64);
                        let (available, open) = (figure("available"), figure("openHolds"));
                        if available >= amount.get() && open >= u64::from(self.max_open_holds) {
                            crate::metrics::count("TooManyOpenHolds", 1);
                            return Err(Error::TooManyOpenHolds { open, limit: u64::from(self.max_open_holds) });
                        }
                        crate::metrics::count("Insufficient", 1);
                        return Err(Error::InsufficientCredits { available: Credits(available), required: amount });
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
    async fn replay_of(
        &self,
        user: &UserId,
        existing: HoldItem,
        hash: Option<&str>,
        request: &ReserveRequest,
    ) -> Result<Outcome<Reservation>> {
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
            _ => Ok(Outcome::Replayed(existing.into_reservation(false))),
        }
    }

    /// A hold with its events. `user` is `None` for admins.
    pub async fn reservation(&self, user: Option<&UserId>, id: Uuid) -> Result<Reservation> {
        Ok(self.owned_hold(user, id).await?.into_reservation(true))
    }

    pub async fn confirm(&self, user: Option<&UserId>, id: Uuid, units: Option<u32>, by: Actor) -> Result<Reservation> {
        self.settle(user, id, SettleWhat::Confirm(units), by).await
    }

    pub async fn release(&self, user: Option<&UserId>, id: Uuid, by: Actor) -> Result<Reservation> {
        self.settle(user, id, SettleWhat::Exactly(Settlement::Release), by).await
    }

    /// Admin: gives a confirmed hold's captured credits back, once,
    /// recording who and why on the history line.
    pub async fn refund(&self, id: Uuid, note: &Attribution) -> Result<Reservation> {
        self.settle_noted(None, id, SettleWhat::Exactly(Settlement::Refund), Actor::Admin, Some(note))
            .await
            .map(|(hold, _)| hold)
    }

    /// Expires one hold if it is pending and due (the sweep's transition).
    /// `true` when this call expired it, `false` when it already was.
    pub async fn expire(&self, id: Uuid, by: Actor) -> Result<bool> {
        self.settle_once(None, id, SettleWhat::Exactly(Settlement::Expire), by).await.map(|(_, applied)| applied)
    }

    async fn owned_hold(&self, user: Option<&UserId>, id: Uuid) -> Result<HoldItem> {
        match self.store.get_hold(id).await? {
            Some(hold) if user.is_none_or(|u| *u == hold.user_id) => Ok(hold),
            // Another user's hold answers exactly like a missing one.
            _ => Err(Error::ReservationNotFound),
        }
    }

    async fn settle(&self, user: Option<&UserId>, id: Uuid, what: SettleWhat, by: Actor) -> Result<Reservation> {
        self.settle_once(user, id, what, by).await.map(|(hold, _)| hold)
    }

    /// The settlement and whether this call applied it (`false`: a replay).
    async fn settle_once(
        &self,
        user: Option<&UserId>,
        id: Uuid,
        what: SettleWhat,
        by: Actor,
    ) -> Result<(Reservation, bool)> {
        self.settle_noted(user, id, what, by, None).await
    }

    async fn settle_noted(
        &self,
        user: Option<&UserId>,
        id: Uuid,
        what: SettleWhat,
        by: Actor,
        note: Option<&Attribution>,
    ) -> Result<(Reservation, bool)> {
        for attempt in 0..MAX_ATTEMPTS {
            let item = self.owned_hold(user, id).await?;
            let wanted = match what {
                SettleWhat::Exactly(s) => s,
                SettleWhat::Confirm(None) => Settlement::Confirm { units: item.units },
                SettleWhat::Confirm(Some(units)) if units >= 1 && units <= item.units => Settlement::Confirm { units },
                SettleWhat::Confirm(Some(_)) => {
                    return Err(Invalid::new("units", Problem::OutOfRange { min: 1, max: u64::from(item.units) }).into())
                }
            };
            let now = self.clock.now();
            let hold = item.clone().into_reservation(false);
            match decide(&hold, wanted, now) {
                Decision::Replay => return Ok((hold, false)),
                Decision::NotPending(status) => return Err(Error::ReservationNotPending(status)),
                Decision::ExpireInstead => {
                    match self.transition(item, Settlement::Expire, by, now, Along::default()).await {
                        // The hold goes back by this very call, and the confirm
                        // is refused.
                        Ok(_) => return Err(Error::ReservationExpired),
                        Err(failure) => self.lost_race(failure, attempt, id).await?,
                    }
                }
                Decision::Apply => match self
                    .transition(item, wanted, by, now, Along { note: note.cloned(), ..Along::default() })
                    .await
                {
                    Ok(settled) => return Ok((settled, true)),
                    Err(failure) => self.lost_race(failure, attempt, id).await?,
                },
            }
        }
        Err(Error::Unavailable("settlement kept conflicting".into()))
    }

    /// The one conditional transition of a hold, with its balance change and
    /// history lines, as a single transaction (hold first: its failure
    /// reason tells a lost race apart). `with.link` also links a provider
    /// task in the same write; `with.items` go last, for the caller to read
    /// their cancellation reasons.
    async fn transition(
        &self,
        mut hold: HoldItem,
        wanted: Settlement,
        by: Actor,
        now: Timestamp,
        with: Along,
    ) -> Result<Reservation, TxFailure> {
        let reservation = hold.clone().into_reservation(false);
        let parts = split(&reservation, wanted);
        let (status, event, entry_kind) = match wanted {
            Settlement::Confirm { .. } => (HoldStatus::Confirmed, EventType::Confirmed, EntryType::Confirm),
            Settlement::Release => (HoldStatus::Released, EventType::Released, EntryType::Release),
            Settlement::Expire => (HoldStatus::Expired, EventType::Expired, EntryType::Expire),
            Settlement::Refund => (HoldStatus::Refunded, EventType::Refunded, EntryType::Refund),
        };
        let event_amount = match wanted {
            Settlement::Confirm { .. } | Settlement::Refund => parts.captured,
            Settlement::Release | Settlement::Expire => parts.returned,
        };
        let ttl = now.unix_seconds() + self.retention_seconds;
        let mut events = Vec::with_capacity(2);
        if with.link.is_some() {
            // Links are made by the app's server (the route, or a reserve with a task id).
            events.push(EventItem { kind: EventType::TaskLinked, at: now.millis(), by: Actor::Server, amount: 0 });
        }
        events.push(EventItem { kind: event, at: now.millis(), by, amount: event_amount.get() });

        let mut set = vec!["#status = :new", "events = list_append(events, :events)", "#ttl = :ttl"];
        let mut condition = vec!["#status = :from"];
        let mut update = Update::builder()
            .set_key(Some(key(hold_pk(hold.reservation_id), "HOLD")))
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#ttl", "ttl")
            .expression_attribute_values(":new", s(status.as_str()))
            .expression_attribute_values(":events", AttributeValue::L(events.iter().map(EventItem::to_value).collect()))
            .expression_attribute_values(":ttl", n(ttl));
        let mut remove = "";
        if wanted == Settlement::Refund {
            set.push("refundedAt = :now");
            update = update
                .expression_attribute_values(":from", s(HoldStatus::Confirmed.as_str()))
                .expression_attribute_values(":now", n(now.millis()));
        } else {
            set.extend(["capturedUnits = :cu", "capturedAmount = :ca", "releasedAmount = :ra"]);
            set.extend(["settledAt = :now", "settledBy = :by"]);
            remove = " REMOVE pendingShard";
            match wanted {
                Settlement::Confirm { .. } => condition.push("expiresAt > :now"),
                Settlement::Expire => condition.push("expiresAt <= :now"),
                _ => {}
            }
            update = update
                .expression_attribute_values(":from", s(HoldStatus::Pending.as_str()))
                .expression_attribute_values(":cu", n(parts.captured_units))
                .expression_attribute_values(":ca", n(parts.captured))
                .expression_attribute_values(":ra", n(parts.returned))
                .expression_attribute_values(":now", n(now.millis()))
                .expression_attribute_values(":by", s(by.as_str()));
        }
        if let Some((provider, task_id)) = &with.link {
            set.extend(["taskId = :task", "provider = :provider"]);
            condition.push("attribute_not_exists(taskId)");
            update = update
                .expression_attribute_values(":task", s(task_id.as_str()))
                .expression_attribute_values(":provider", s(provider.as_str()));
        }
        let update = update
            .update_expression(format!("SET {}{remove}", set.join(", ")))
            .condition_expression(condition.join(" AND "));
        let mut items = vec![self.update(update).map_err(TxFailure::Store)?];

        if hold.amount > 0 {
            let balance = Update::builder()
                .set_key(Some(key(user_pk(&hold.user_id), "BALANCE")))
                .expression_attribute_values(":now", n(now.millis()));
            let balance = match wanted {
                Settlement::Refund => balance
                    .update_expression(
                        "SET spent = spent - :captured, available = available + :captured, updatedAt = :now",
                    )
                    .condition_expression("spent >= :captured")
                    .expression_attribute_values(":captured", n(parts.captured)),
                // Only a hold its reserve counted leaves the count: holds
                // placed before the cap existed were never in it.
                _ if hold.open_counted => balance
                    .update_expression(
                        "SET reserved = reserved - :amount, spent = spent + :captured, \
                         available = available + :returned, openHolds = openHolds - :one, updatedAt = :now",
                    )
                    .expression_attribute_values(":one", n(1))
                    .condition_expression("reserved >= :amount AND openHolds >= :one")
                    .expression_attribute_values(":amount", n(hold.amount))
                    .expression_attribute_values(":captured", n(parts.captured))
                    .expression_attribute_values(":returned", n(parts.returned)),
                _ => balance
                    .update_expression(
                        "SET reserved = reserved - :amount, spent = spent + :captured, \
                         available = available + :returned, updatedAt = :now",
                    )
                    .condition_expression("reserved >= :amount")
                    .expression_attribute_values(":amount", n(hold.amount))
                    .expression_attribute_values(":captured", n(parts.captured))
                    .expression_attribute_values(":returned", n(parts.returned)),
            };
            items.push(self.update(balance).map_err(TxFailure::Store)?);
        }

        let origin = Some((hold.reservation_id, hold.operation.as_str()));
        let mut entry = self.entry(
            &hold.user_id,
            hold.reservation_id,
            entry_kind,
            event_amount,
            origin,
            hold.description.clone(),
            now,
        );
        if let Some(note) = &with.note {
            entry.actor = Some(note.actor.clone());
            entry.reason = note.reason.clone();
        }
        items.push(to_item(&entry).and_then(|item| self.put(item, None)).map_err(TxFailure::Store)?);
        if matches!(wanted, Settlement::Confirm { .. })
            && parts.returned > Credits::ZERO
            && parts.captured > Credits::ZERO
        {
            // A partial capture returns the rest: its own history line.
            let rest = self.entry(
                &hold.user_id,
                hold.reservation_id,
                EntryType::Release,
                parts.returned,
                origin,
                hold.description.clone(),
                now,
            );
            items.push(to_item(&rest).and_then(|item| self.put(item, None)).map_err(TxFailure::Store)?);
        }
        items.extend(with.items);

        self.tx(items).await?;
        crate::metrics::count(
            match status {
                HoldStatus::Confirmed => "Confirmed",
                HoldStatus::Released => "Released",
                HoldStatus::Expired => "Expired",
                HoldStatus::Refunded => "Refunded",
                HoldStatus::Pending => "Pending",
            },
            1,
        );

        hold.status = status;
        hold.events.extend(events);
        if let Some((provider, task_id)) = with.link {
            hold.provider = provider;
            hold.task_id = Some(task_id);
        }
        if wanted != Settlement::Refund {
            hold.captured_units = parts.captured_units;
            hold.captured_amount = parts.captured.get();
            hold.released_amount = parts.returned.get();
            hold.settled_at = Some(now.millis());
            hold.settled_by = Some(by);
        }
        Ok(hold.into_reservation(false))
    }

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
    ) -> Result<Reservation> {
        for attempt in 0..MAX_ATTEMPTS {
            let hold = self.owned_hold(user, id).await?;
            match &hold.task_id {
                Some(linked) if linked == task_id && hold.provider == provider => {
                    return Ok(hold.into_reservation(false));
                }
                Some(_) => return Err(Error::TaskAlreadyLinked),
                None if hold.status != HoldStatus::Pending => return Err(Error::ReservationNotPending(hold.status)),
                None => {}
            }
            let owner = hold.user_id.clone();
            let task_link = to_item(&self.task_item(provider, task_id, id, &owner, Timestamp(hold.expires_at)))?;
            let linked = match self.parked(provider, task_id).await? {
                Some(outcome) => self.link_and_apply(hold, provider, task_id, outcome, task_link, attempt).await?,
                None => {
                    let items = vec![
                        self.put(task_link, Some("attribute_not_exists(pk)"))?,
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
    async fn link_only(
        &self,
        mut hold: HoldItem,
        provider: Provider,
        task_id: &str,
        items: Vec<TransactWriteItem>,
        attempt: u32,
        by: Actor,
    ) -> Result<Option<Reservation>> {
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
        let mut all = vec![self.update(update)?];
        all.extend(items);
        match self.tx(all).await {
            Ok(()) => {
                hold.task_id = Some(task_id.to_owned());
                hold.provider = provider;
                hold.events.push(event);
                Ok(Some(hold.into_reservation(false)))
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
    async fn task_owned_elsewhere(&self, provider: Provider, task_id: &str, id: Uuid) -> Result<()> {
        match self.store.get_task(provider, task_id).await? {
            Some(link) if link.reservation_id != id => Err(Error::TaskAlreadyLinked),
            _ => Ok(()),
        }
    }

    /// History, newest first. The cursor is opaque to callers.
    pub async fn history(&self, user: &UserId, limit: u32, cursor: Option<&str>) -> Result<HistoryPage> {
        let before = cursor.map(decode_cursor).transpose()?;
        let (items, last) = self.store.query_entries(user, limit, before).await?;
        let next_cursor = last.map(|sk| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk));
        Ok(HistoryPage { items, next_cursor })
    }

    /// Reserve, run the job, then confirm what came out — or release when
    /// the job fails or produced nothing. For Rust callers in the same
    /// account; HTTP callers do the same with the three routes.
    pub async fn with_credits<T, E, F, Fut>(
        &self,
        user: &UserId,
        request: ReserveRequest,
        job: F,
    ) -> Result<T, WithCreditsError<E>>
    where
        F: FnOnce(Reservation) -> Fut,
        Fut: Future<Output = Result<JobOutput<T>, E>>,
    {
        let hold = self.reserve(user, request).await.map_err(WithCreditsError::Credits)?.into_inner();
        let id = hold.reservation_id;
        let held = hold.units;
        match job(hold).await {
            Ok(JobOutput { value, units }) => {
                // Never more than was held: the rest of a job's report is not ours to charge.
                let units = units.unwrap_or(held).min(held);
                let settled = if units == 0 {
                    self.release(Some(user), id, Actor::Server).await
                } else {
                    self.confirm(Some(user), id, Some(units), Actor::Server).await
                };
                settled.map_err(WithCreditsError::Credits)?;
                Ok(value)
            }
            Err(job_error) => {
                if let Err(release_error) = self.release(Some(user), id, Actor::Server).await {
                    // The sweep returns the hold at its expiry if this fails.
                    tracing::warn!(reservation = %id, error = %release_error, "release after failed job failed");
                }
                Err(WithCreditsError::Job(job_error))
            }
        }
    }

    fn task_item(&self, provider: Provider, task_id: &str, id: Uuid, user: &UserId, expires_at: Timestamp) -> TaskItem {
        TaskItem {
            pk: task_pk(provider, task_id),
            sk: "TASK".into(),
            entity: "task".into(),
            reservation_id: id,
            user_id: user.clone(),
            // Kept while the hold it points to could still be settled, plus
            // the retention period.
            ttl: expires_at.unix_seconds() + self.retention_seconds,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        user: &UserId,
        source: Uuid,
        kind: EntryType,
        amount: Credits,
        origin: Option<(Uuid, &str)>,
        description: Option<String>,
        at: Timestamp,
    ) -> EntryItem {
        // Derived from its source so that one change is one line, whatever runs.
        let id = Uuid::new_v5(&ID_NAMESPACE, format!("entry\n{source}\n{kind:?}").as_bytes());
        EntryItem {
            pk: user_pk(user),
            sk: entry_sk(at, id),
            entity: "entry".into(),
            id,
            kind,
            amount: amount.get(),
            reservation_id: origin.map(|(id, _)| id),
            operation: origin.map(|(_, op)| op.to_owned()),
            description,
            reason: None,
            actor: None,
            at: at.millis(),
        }
    }

    fn update(&self, update: aws_sdk_dynamodb::types::builders::UpdateBuilder) -> Result<TransactWriteItem> {
        let update = update
            .table_name(self.store.table())
            .return_values_on_condition_check_failure(Store::all_old())
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(self.store.table())
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .return_values_on_condition_check_failure(Store::all_old())
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn tx(&self, items: Vec<TransactWriteItem>) -> Result<(), TxFailure> {
        self.store.transact(items, None).await
    }

    /// After a transition did not apply: if the hold's own condition failed,
    /// someone else moved it first, and the caller decides again from what
    /// they left. A failed balance condition means the books are broken.
    async fn lost_race(&self, failure: TxFailure, attempt: u32, id: Uuid) -> Result<()> {
        match failure {
            TxFailure::Cancelled(reasons) if reasons.first().is_some_and(|r| r.condition_failed()) => Ok(()),
            TxFailure::Cancelled(reasons) if reasons.iter().any(|r| r.condition_failed()) => {
                Err(Error::Internal(format!("balance invariant broken for hold {id}")))
            }
            other => self.retry_or_fail(other, attempt).await,
        }
    }

    /// Conflicts are retried after a jittered pause; anything else ends the
    /// operation with its error.
    async fn retry_or_fail(&self, failure: TxFailure, attempt: u32) -> Result<()> {
        match failure {
            TxFailure::Cancelled(reasons) if reasons.iter().any(|r| r.conflict() || r.throttled()) => {
                backoff(attempt).await;
                Ok(())
            }
            TxFailure::Cancelled(reasons) => Err(Error::Internal(format!(
                "transaction cancelled: {:?}",
                reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>()
            ))),
            TxFailure::Store(error) => Err(error),
        }
    }
}

/// What travels with a hold's transition in the same transaction.
#[derive(Debug, Default)]
struct Along {
    /// Link this provider task to the hold as it settles.
    link: Option<(Provider, String)>,
    /// Further items, placed after the transition's own.
    items: Vec<TransactWriteItem>,
    /// Who and why, on the history line (refunds).
    note: Option<Attribution>,
}

#[derive(Clone, Copy, Debug)]
enum SettleWhat {
    Exactly(Settlement),
    /// `None`: all the units held.
    Confirm(Option<u32>),
}

/// A read after a write that committed: its failure must not be reported
/// as "may not have been applied".
fn applied_unread(error: Error) -> Error {
    Error::AppliedUnread(error.to_string())
}

fn decode_cursor(cursor: &str) -> Result<String> {
    let invalid = || Error::from(Invalid::new("cursor", Problem::WrongType));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let sk = String::from_utf8(bytes).map_err(|_| invalid())?;
    if sk.starts_with("TX#") && sk.len() < 128 {
        Ok(sk)
    } else {
        Err(invalid())
    }
}
