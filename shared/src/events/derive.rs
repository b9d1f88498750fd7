//! Which events one change of the table makes: pure, from the stream
//! record's old and new images, so the same record always yields the same
//! events with the same ids.

use serde_json::{json, Value};
use uuid::Uuid;

use super::{event_id, Event, Kind};
use crate::domain::{Credits, EntryType, HoldStatus, LotPart, Timestamp, UserId};
use crate::store::stream::Change;
use crate::store::{
    from_item, DebitItem, EntryItem, GrantItem, HoldItem, Item, LotPartItem, StoredBalance, LOW_BALANCE_THRESHOLD,
};

/// What a derived event still needs: its data, or the reservation to read
/// for it (a late success names its hold; the stream record does not carry it).
#[derive(Clone, Debug, PartialEq)]
pub enum Derived {
    Ready(Event),
    NeedsHold {
        event: Event,
        reservation_id: Uuid,
    },
    /// A lot that will expire: its `grant.expiring` falls due `warning`
    /// before its expiry, if credits are left in it then.
    Expiring {
        user: UserId,
        lot: crate::domain::LotKey,
    },
}

impl Derived {
    pub fn event(&self) -> Option<&Event> {
        match self {
            Derived::Ready(event) | Derived::NeedsHold { event, .. } => Some(event),
            Derived::Expiring { .. } => None,
        }
    }
}

/// The deployment's settings for events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defaults {
    /// For users who set none (`CREDITS_LOW_BALANCE_THRESHOLD`; 0 = off).
    pub low_balance_threshold: u64,
    /// How long before a lot expires `grant.expiring` is sent
    /// (`CREDITS_EXPIRY_WARNING_HOURS`, default 72).
    pub expiry_warning_seconds: i64,
}

pub const DEFAULT_EXPIRY_WARNING_HOURS: i64 = 72;

impl Default for Defaults {
    fn default() -> Defaults {
        Defaults { low_balance_threshold: 0, expiry_warning_seconds: DEFAULT_EXPIRY_WARNING_HOURS * 3600 }
    }
}

/// The events of one change, in the order they happened.
pub fn events_of(change: &Change, defaults: Defaults) -> Vec<Derived> {
    let new: Option<Item> = change.new.clone().map(Into::into);
    let old: Option<Item> = change.old.clone().map(Into::into);
    let Some(new) = new else { return Vec::new() };
    match crate::store::attr_text(&new, "entity") {
        "hold" => hold_events(old.as_ref(), &new).into_iter().map(Derived::Ready).collect(),
        "balance" => match old {
            Some(old) => {
                balance_events(&change.event_id, &old, &new, defaults).into_iter().map(Derived::Ready).collect()
            }
            None => Vec::new(),
        },
        // Everything below is only ever put once: an insert is the change.
        _ if old.is_some() => Vec::new(),
        "grant" => grant_events(&new),
        "entry" => entry_events(&new).into_iter().map(Derived::Ready).collect(),
        "debit" => debit_created(&new).into_iter().map(Derived::Ready).collect(),
        "delivery" => late_success(&new).into_iter().collect(),
        _ => Vec::new(),
    }
}

fn event(kind: Kind, source: &str, at: i64, user: UserId, data: Value) -> Event {
    Event { id: event_id(kind, source), kind, occurred_at: Timestamp(at), user_id: user, data }
}

/// A hold's settlement: confirmed, released, expired, or refunded later.
fn hold_events(old: Option<&Item>, new: &Item) -> Option<Event> {
    let hold: HoldItem = from_item(new.clone()).ok()?;
    let before = old.and_then(|o| from_item::<HoldItem>(o.clone()).ok()).map(|o| o.status);
    if before == Some(hold.status) {
        return None;
    }
    let (kind, at) = match hold.status {
        HoldStatus::Pending => return None,
        HoldStatus::Confirmed => (Kind::HoldConfirmed, hold.settled_at),
        HoldStatus::Released => (Kind::HoldReleased, hold.settled_at),
        HoldStatus::Expired => (Kind::HoldExpired, hold.settled_at),
        HoldStatus::Refunded => (Kind::RefundCreated, hold.refunded_at),
    };
    let at = at.unwrap_or(hold.created_at);
    let (id, user) = (hold.reservation_id, hold.user_id.clone());
    let data = serde_json::to_value(hold.into_hold(true)).ok()?;
    Some(event(kind, &id.to_string(), at, user, data))
}

fn lots_view(parts: &[LotPartItem]) -> Vec<LotPart> {
    parts
        .iter()
        .map(|p| LotPart { priority: p.priority, expires_at: p.expires_at.map(Timestamp), amount: Credits(p.amount) })
        .collect()
}

/// A grant, and the warning its lot will need if it expires.
fn grant_events(new: &Item) -> Vec<Derived> {
    let Ok(grant) = from_item::<GrantItem>(new.clone()) else { return Vec::new() };
    let expiring = grant.expires_at.map(|at| {
        let priority = grant.priority.unwrap_or(crate::domain::LotKey::BASE.priority);
        let lot = crate::domain::LotKey { priority, expires_at: Some(Timestamp(at)) };
        Derived::Expiring { user: grant.user_id.clone(), lot }
    });
    grant_created(grant).map(Derived::Ready).into_iter().chain(expiring).collect()
}

fn grant_created(grant: GrantItem) -> Option<Event> {
    let data = json!({
        "grantId": grant.grant_id,
        "amount": grant.amount,
        "reason": grant.reason.as_str(),
        "description": grant.description,
        "actor": grant.actor,
        "priority": grant.priority.unwrap_or(crate::domain::LotKey::BASE.priority),
        "expiresAt": grant.expires_at.map(Timestamp),
        "grantedAt": Timestamp(grant.at),
    });
    Some(event(Kind::GrantCreated, &grant.grant_id.to_string(), grant.at, grant.user_id, data))
}

/// Lines that are events of their own: a plan's refill (a grant with no
/// grant item) and credits expiring with their lot.
fn entry_events(new: &Item) -> Option<Event> {
    let line: EntryItem = from_item(new.clone()).ok()?;
    let user = UserId::parse(line.pk.strip_prefix("USER#")?)?;
    let lots = lots_view(line.lots.as_deref().unwrap_or_default());
    match line.kind {
        EntryType::Grant if line.actor.as_deref() == Some(crate::ledger::PLAN_ACTOR) => {
            let lot = lots.first();
            let data = json!({
                "grantId": line.id,
                "amount": line.amount,
                "reason": line.reason,
                "description": line.description,
                "actor": line.actor,
                "priority": lot.map(|l| l.priority),
                "expiresAt": lot.and_then(|l| l.expires_at),
                "grantedAt": Timestamp(line.at),
            });
            Some(event(Kind::GrantCreated, &line.id.to_string(), line.at, user, data))
        }
        EntryType::GrantExpired => {
            let data = json!({
                "entryId": line.id,
                "amount": line.amount,
                "lots": lots,
                "reservationId": line.reservation_id,
                "expiredAt": Timestamp(line.at),
            });
            Some(event(Kind::GrantExpired, &line.id.to_string(), line.at, user, data))
        }
        _ => None,
    }
}

fn debit_created(new: &Item) -> Option<Event> {
    let debit: DebitItem = from_item(new.clone()).ok()?;
    let data = json!({
        "debitId": debit.debit_id,
        "amount": debit.amount,
        "requested": debit.requested,
        "reason": debit.reason,
        "description": debit.description,
        "actor": debit.actor,
        "lots": lots_view(&debit.lots),
        "debitedAt": Timestamp(debit.at),
    });
    Some(event(Kind::DebitCreated, &debit.debit_id.to_string(), debit.at, debit.user_id, data))
}

/// A provider reported success for a hold that had already expired or been
/// released: the app may want to deliver the result anyway, or refund.
fn late_success(new: &Item) -> Option<Derived> {
    if !new.get("lateSuccess").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false) {
        return None;
    }
    let user = UserId::parse(crate::store::attr_text(new, "userId"))?;
    let reservation_id = Uuid::try_parse(crate::store::attr_text(new, "reservationId")).ok()?;
    let at = crate::store::attr_number(new, "at");
    let source = crate::store::attr_text(new, "pk");
    let event = event(Kind::HoldLateSuccess, source, at, user, Value::Null);
    Some(Derived::NeedsHold { event, reservation_id })
}

/// Where a balance stands against its threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Depleted,
    Low,
    Fine,
}

/// `Depleted` at 0, `Low` below a threshold (0 turns it off), else `Fine`.
pub fn level(available: u64, threshold: u64) -> Level {
    if available == 0 {
        Level::Depleted
    } else if available < threshold {
        Level::Low
    } else {
        Level::Fine
    }
}

/// The crossings between two levels, in order: one event per crossing, none
/// for a write that stays on the same side.
pub fn crossings(before: Level, after: Level, threshold: u64) -> Vec<Kind> {
    match (before, after) {
        (Level::Fine, Level::Low) => vec![Kind::BalanceLow],
        (Level::Fine, Level::Depleted) if threshold > 0 => vec![Kind::BalanceLow, Kind::BalanceDepleted],
        (Level::Fine | Level::Low, Level::Depleted) => vec![Kind::BalanceDepleted],
        (Level::Low | Level::Depleted, Level::Fine) => vec![Kind::BalanceRecovered],
        _ => Vec::new(),
    }
}

fn balance_events(record: &str, old: &Item, new: &Item, defaults: Defaults) -> Vec<Event> {
    let Some(user) = UserId::parse(crate::store::attr_text(new, "userId")) else { return Vec::new() };
    // A user who never had credits is not "depleted" (a settings write can
    // make the balance item before the first grant).
    let had_credits = old
        .keys()
        .any(|k| ["available", "reserved", "spent", "granted"].contains(&k.as_str()) || k.starts_with("lot#"));
    if !had_credits {
        return Vec::new();
    }
    let threshold = |item: &Item| match item.get(LOW_BALANCE_THRESHOLD).and_then(|v| v.as_n().ok()) {
        Some(raw) => raw.parse().unwrap_or(0),
        None => defaults.low_balance_threshold,
    };
    let available = |item: &Item| {
        let stored = StoredBalance::from_item(item);
        let at = stored.books.updated_at.unwrap_or(Timestamp(0));
        stored.books.lots.available_at(at).get()
    };
    let (before, after) = (available(old), available(new));
    let (was, now) = (threshold(old), threshold(new));
    let at = crate::store::attr_number(new, "updatedAt");
    crossings(level(before, was), level(after, now), now)
        .into_iter()
        .map(|kind| {
            let data = json!({"available": after, "threshold": now});
            event(kind, &format!("{user}\n{record}"), at, user.clone(), data)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_crossing() {
        use Level::*;
        assert_eq!(crossings(Fine, Low, 10), vec![Kind::BalanceLow]);
        assert_eq!(crossings(Low, Low, 10), vec![]);
        assert_eq!(crossings(Low, Depleted, 10), vec![Kind::BalanceDepleted]);
        assert_eq!(crossings(Depleted, Depleted, 10), vec![]);
        assert_eq!(crossings(Depleted, Low, 10), vec![]);
        assert_eq!(crossings(Depleted, Fine, 10), vec![Kind::BalanceRecovered]);
        assert_eq!(crossings(Low, Fine, 10), vec![Kind::BalanceRecovered]);
        assert_eq!(crossings(Fine, Fine, 10), vec![]);
        assert_eq!(crossings(Fine, Depleted, 10), vec![Kind::BalanceLow, Kind::BalanceDepleted]);
        // Threshold 0: low is off, depleted and recovered still cross at 0.
        assert_eq!(crossings(level(5, 0), level(0, 0), 0), vec![Kind::BalanceDepleted]);
        assert_eq!(crossings(level(0, 0), level(1, 0), 0), vec![Kind::BalanceRecovered]);
    }

    #[test]
    fn levels() {
        assert_eq!(level(0, 10), Level::Depleted);
        assert_eq!(level(9, 10), Level::Low);
        assert_eq!(level(10, 10), Level::Fine);
        assert_eq!(level(1, 0), Level::Fine);
    }

    /// A walk of a balance down and back up crosses each line once, however
    /// many writes it takes.
    #[test]
    fn a_walk_fires_each_crossing_once() {
        let walk = [100u64, 80, 60, 40, 20, 9, 8, 3, 0, 0, 2, 5, 30, 45, 50, 70];
        let fired: Vec<Kind> = walk.windows(2).flat_map(|w| crossings(level(w[0], 50), level(w[1], 50), 50)).collect();
        assert_eq!(fired, vec![Kind::BalanceLow, Kind::BalanceDepleted, Kind::BalanceRecovered]);
    }
}
