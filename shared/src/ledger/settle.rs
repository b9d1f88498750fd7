//! Settling a hold: confirm, release, expiry and refund, each one
//! conditional transition that exactly one caller wins.

use aws_sdk_dynamodb::types::{AttributeValue, Update};
use uuid::Uuid;

use super::{Along, Attribution, Ledger, SettleWhat, MAX_ATTEMPTS};
use crate::domain::{
    decide, split, Actor, Credits, Decision, EntryType, EventType, HoldStatus, Reservation, Settlement, Timestamp,
    UserId,
};
use crate::error::{Error, Result};
use crate::store::{hold_pk, key, n, s, to_item, user_pk, EventItem, HoldItem, TxFailure};
use crate::validate::{Invalid, Problem};

impl Ledger {
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

    pub(super) async fn owned_hold(&self, user: Option<&UserId>, id: Uuid) -> Result<HoldItem> {
        match self.store.get_hold(id).await? {
            Some(hold) if user.is_none_or(|u| *u == hold.user_id) => Ok(hold),
            // Another user's hold answers exactly like a missing one.
            _ => Err(Error::ReservationNotFound),
        }
    }

    pub(super) async fn settle(
        &self,
        user: Option<&UserId>,
        id: Uuid,
        what: SettleWhat,
        by: Actor,
    ) -> Result<Reservation> {
        self.settle_once(user, id, what, by).await.map(|(hold, _)| hold)
    }

    /// The settlement and whether this call applied it (`false`: a replay).
    pub(super) async fn settle_once(
        &self,
        user: Option<&UserId>,
        id: Uuid,
        what: SettleWhat,
        by: Actor,
    ) -> Result<(Reservation, bool)> {
        self.settle_noted(user, id, what, by, None).await
    }

    pub(super) async fn settle_noted(
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
    pub(super) async fn transition(
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
                _ => {
                    // Only a hold its reserve counted leaves the count: holds
                    // placed before the cap existed were never in it.
                    let (uncount, counted) = match hold.open_counted {
                        true => (", openHolds = openHolds - :one", " AND openHolds >= :one"),
                        false => ("", ""),
                    };
                    let balance = balance
                        .update_expression(format!(
                            "SET reserved = reserved - :amount, spent = spent + :captured, \
                             available = available + :returned{uncount}, updatedAt = :now"
                        ))
                        .condition_expression(format!("reserved >= :amount{counted}"))
                        .expression_attribute_values(":amount", n(hold.amount))
                        .expression_attribute_values(":captured", n(parts.captured))
                        .expression_attribute_values(":returned", n(parts.returned));
                    // DynamoDB refuses a value no expression uses.
                    match hold.open_counted {
                        true => balance.expression_attribute_values(":one", n(1)),
                        false => balance,
                    }
                }
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
}
