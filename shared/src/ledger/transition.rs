//! The one conditional write of a hold: its transition with the balance
//! change and history lines, as a single transaction that exactly one
//! caller wins.

use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Update};
use uuid::Uuid;

use super::{Along, Ledger};
use crate::domain::{
    split, Actor, Allocation, CaptureKey, Credits, EntryType, EventType, Hold, HoldStatus, Return, Settlement, Split,
    Timestamp,
};
use crate::store::{hold_pk, key, n, s, to_item, BalanceWrite, EventItem, HoldItem, LotPartItem, TxFailure};

impl Ledger {
    /// The one conditional transition of a hold, with its balance change and
    /// history lines, as a single transaction (hold first: its failure
    /// reason tells a lost race apart). A transition from pending is
    /// conditional on the captured units it read, since what it settles is
    /// what was still held. `with.link` also links a provider task in the
    /// same write; `with.items` go last, for the caller to read their
    /// cancellation reasons.
    pub(super) async fn transition(
        &self,
        mut hold: HoldItem,
        wanted: Settlement,
        by: Actor,
        now: Timestamp,
        with: Along,
    ) -> Result<Hold, TxFailure> {
        let reservation = hold.clone().into_hold(false);
        let parts = split(&reservation, wanted);
        let (status, event, entry_kind) = match wanted {
            Settlement::Confirm { .. } => (HoldStatus::Confirmed, EventType::Confirmed, EntryType::Confirm),
            Settlement::Capture { .. } => (HoldStatus::Pending, EventType::Captured, EntryType::Capture),
            Settlement::Release => (HoldStatus::Released, EventType::Released, EntryType::Release),
            Settlement::Expire => (HoldStatus::Expired, EventType::Expired, EntryType::Expire),
            Settlement::Refund => (HoldStatus::Refunded, EventType::Refunded, EntryType::Refund),
        };
        let event_amount = match wanted {
            Settlement::Confirm { .. } | Settlement::Capture { .. } | Settlement::Refund => parts.captured,
            Settlement::Release | Settlement::Expire => parts.returned,
        };
        let closes = matches!(wanted, Settlement::Confirm { .. } | Settlement::Release | Settlement::Expire);
        let captured_units = hold.captured_units + if wanted == Settlement::Refund { 0 } else { parts.captured_units };
        let captured_amount =
            hold.captured_amount + if wanted == Settlement::Refund { 0 } else { parts.captured.get() };
        let mut events = Vec::with_capacity(2);
        if with.link.is_some() {
            // Links are made by the app's server (the route, or a reserve with a task id).
            events.push(EventItem { kind: EventType::TaskLinked, at: now.millis(), by: Actor::Server, amount: 0 });
        }
        events.push(EventItem { kind: event, at: now.millis(), by, amount: event_amount.get() });

        let mut set = vec!["#status = :new", "events = list_append(events, :events)"];
        let mut condition = vec!["#status = :from"];
        let mut update = Update::builder()
            .set_key(Some(key(hold_pk(hold.reservation_id), "HOLD")))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":new", s(status.as_str()))
            .expression_attribute_values(":from", s(hold.status.as_str()))
            .expression_attribute_values(
                ":events",
                AttributeValue::L(events.iter().map(EventItem::to_value).collect()),
            );
        if wanted == Settlement::Refund || closes {
            // Settled: kept for the retention period from now.
            set.push("#ttl = :ttl");
            update = update
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":ttl", n(now.unix_seconds() + self.retention_seconds))
                .expression_attribute_values(":now", n(now.millis()));
        }
        let mut remove = "";
        if wanted == Settlement::Refund {
            set.push("refundedAt = :now");
        } else {
            set.extend(["capturedUnits = :cu", "capturedAmount = :ca"]);
            condition.push("capturedUnits = :seen");
            update = update
                .expression_attribute_values(":seen", n(hold.captured_units))
                .expression_attribute_values(":cu", n(captured_units))
                .expression_attribute_values(":ca", n(captured_amount));
            match wanted {
                Settlement::Confirm { .. } | Settlement::Capture { .. } => {
                    condition.push("expiresAt > :at");
                    update = update.expression_attribute_values(":at", n(now.millis()));
                }
                Settlement::Expire => {
                    condition.push("expiresAt <= :at");
                    update = update.expression_attribute_values(":at", n(now.millis()));
                }
                Settlement::Release | Settlement::Refund => {}
            }
        }
        if closes {
            set.extend(["releasedAmount = :ra", "settledAt = :now", "settledBy = :by"]);
            remove = " REMOVE pendingShard";
            update = update
                .expression_attribute_values(":ra", n(parts.returned))
                .expression_attribute_values(":by", s(by.as_str()));
        }
        if let Settlement::Confirm { units } = wanted {
            set.push("finalUnits = :fu");
            update = update.expression_attribute_values(":fu", n(units));
        }
        if let Settlement::Capture { units, key: capture_key } = wanted {
            // The first capture creates the map; later ones add their key.
            match hold.captures {
                Some(_) => {
                    set.push("captures.#key = :units");
                    update = update
                        .expression_attribute_names("#key", capture_key.as_hex())
                        .expression_attribute_values(":units", n(units));
                }
                None => {
                    set.push("captures = :captures");
                    let first = std::collections::HashMap::from([(capture_key.as_hex(), n(units))]);
                    update = update.expression_attribute_values(":captures", AttributeValue::M(first));
                }
            }
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
        let mut items = vec![self.store.tx_update(update).map_err(TxFailure::Store)?];

        let moves = LotMoves::of(&hold, wanted, parts, now);
        if let Some(balance) = self.balance_change(&hold, wanted, &moves, now) {
            items.push(self.store.tx_update(balance).map_err(TxFailure::Store)?);
        }

        let origin = Some((hold.reservation_id, hold.operation.as_str()));
        // One line per capture: each has its own source, from its key.
        let source = match wanted {
            Settlement::Capture { key: capture_key, .. } => capture_source(hold.reservation_id, capture_key),
            _ => hold.reservation_id,
        };
        let mut entry =
            self.entry(&hold.user_id, source, entry_kind, event_amount, origin, hold.description.clone(), now);
        if let Some(note) = &with.note {
            entry.actor = Some(note.actor.clone());
            entry.reason = note.reason.clone();
        }
        entry.lots = Some(LotPartItem::from_allocation(match wanted {
            Settlement::Confirm { .. } | Settlement::Capture { .. } => &moves.spent,
            Settlement::Release | Settlement::Expire | Settlement::Refund => &moves.returned,
        }));
        items.push(to_item(&entry).and_then(|item| self.store.tx_put(item, None)).map_err(TxFailure::Store)?);
        if matches!(wanted, Settlement::Confirm { .. }) && parts.returned > Credits::ZERO {
            // A final confirm returns the rest: its own history line.
            let mut rest = self.entry(
                &hold.user_id,
                hold.reservation_id,
                EntryType::Release,
                parts.returned,
                origin,
                hold.description.clone(),
                now,
            );
            rest.lots = Some(LotPartItem::from_allocation(&moves.returned));
            items.push(to_item(&rest).and_then(|item| self.store.tx_put(item, None)).map_err(TxFailure::Store)?);
        }
        if moves.expired.total() > Credits::ZERO {
            // Credits that came back to a lot past its expiry expired now.
            let source = Uuid::new_v5(&hold.reservation_id, format!("expired-on-{entry_kind:?}").as_bytes());
            let mut line =
                self.entry(&hold.user_id, source, EntryType::GrantExpired, moves.expired.total(), origin, None, now);
            line.lots = Some(LotPartItem::from_allocation(&moves.expired));
            items.push(to_item(&line).and_then(|item| self.store.tx_put(item, None)).map_err(TxFailure::Store)?);
        }
        items.extend(with.items);

        self.tx(items).await?;
        crate::metrics::count(
            match wanted {
                Settlement::Confirm { .. } => "Confirmed",
                Settlement::Capture { .. } => "Captured",
                Settlement::Release => "Released",
                Settlement::Expire => "Expired",
                Settlement::Refund => "Refunded",
            },
            1,
        );

        hold.status = status;
        hold.events.extend(events);
        if let Some((provider, task_id)) = with.link {
            hold.provider = provider;
            hold.task_id = Some(task_id);
        }
        hold.captured_units = captured_units;
        hold.captured_amount = captured_amount;
        match wanted {
            Settlement::Refund => hold.refunded_at = Some(now.millis()),
            Settlement::Capture { units, key: capture_key } => {
                hold.captures.get_or_insert_with(Default::default).insert(capture_key.as_hex(), units);
            }
            Settlement::Confirm { .. } | Settlement::Release | Settlement::Expire => {
                hold.released_amount = parts.returned.get();
                hold.settled_at = Some(now.millis());
                hold.settled_by = Some(by);
                if let Settlement::Confirm { units } = wanted {
                    hold.final_units = Some(units);
                }
            }
        }
        Ok(hold.into_hold(false))
    }

    /// The balance side of a transition, lot by lot.
    fn balance_change(
        &self,
        hold: &HoldItem,
        wanted: Settlement,
        moves: &LotMoves,
        now: Timestamp,
    ) -> Option<UpdateBuilder> {
        let mut write = BalanceWrite::new();
        match wanted {
            Settlement::Refund => {
                write.return_spent(&moves.returned, now);
            }
            Settlement::Capture { .. } if moves.spent.total() == Credits::ZERO => return None,
            Settlement::Capture { .. } => {
                write.spend_held(&moves.spent);
            }
            Settlement::Confirm { .. } | Settlement::Release | Settlement::Expire => {
                write.spend_held(&moves.spent).return_held(&moves.returned, now);
                // Only a hold its reserve counted leaves the count: holds
                // placed before the cap existed (and free ones placed
                // before they counted) were never in it.
                if hold.open_counted {
                    write.take("openHolds", Credits(1));
                }
            }
        }
        if hold.amount == 0 && write.is_empty() {
            return None; // a free hold moves no credits; its balance is written only to leave the count
        }
        Some(write.build(&hold.user_id, now))
    }
}

/// What a transition moves in the hold's lots: captures spend its
/// allocation from the start, in burn order; what comes back goes to the
/// lots it came from, and `expired` is the part of it whose lot has expired.
struct LotMoves {
    spent: Allocation,
    returned: Allocation,
    expired: Allocation,
}

impl LotMoves {
    fn of(hold: &HoldItem, wanted: Settlement, parts: Split, now: Timestamp) -> LotMoves {
        let allocation = hold.allocation();
        let captured_before = Credits(hold.captured_amount);
        let captured_after = Credits(captured_before.get() + parts.captured.get());
        let (spent, returned) = match wanted {
            Settlement::Refund => (Allocation::default(), allocation.slice(Credits::ZERO, parts.captured)),
            _ => (
                allocation.slice(captured_before, captured_after),
                allocation.slice(
                    captured_after,
                    Credits(captured_before.get() + parts.captured.get() + parts.returned.get()),
                ),
            ),
        };
        let expired = Return::of(&returned, now).expired;
        LotMoves { spent, returned, expired }
    }
}

/// The source a capture's history line is derived from: the hold and the
/// capture's key, so each capture is one line whoever retries it.
fn capture_source(id: Uuid, key: CaptureKey) -> Uuid {
    Uuid::new_v5(&id, key.as_hex().as_bytes())
}
