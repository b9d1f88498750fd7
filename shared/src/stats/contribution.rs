//! What one change of the table moves in the aggregates: the counters per
//! operation (or the totals) and per user, and when.

use crate::domain::HoldStatus;
use crate::store::stream::{Change, Image};

/// The counters one change moves: per operation (or `TOTAL`) and per user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Contribution {
    pub(super) at: i64,
    pub(super) operation: Option<String>,
    pub(super) op_fields: Vec<(&'static str, i64)>,
    pub(super) total_fields: Vec<(&'static str, i64)>,
    pub(super) user: Option<String>,
    pub(super) user_fields: Vec<(&'static str, i64)>,
}

pub(super) fn contribution(change: &Change) -> Option<Contribution> {
    let new = Image::read(&change.new);
    let old = Image::read(&change.old);
    let image = new.as_ref()?;
    let mut c = Contribution { operation: image.operation.clone(), user: image.user_id.clone(), ..Default::default() };
    if image.is("hold") {
        let amount = image.amount as i64;
        match (old.as_ref().and_then(|o| o.status()), image.status()) {
            (None, Some(HoldStatus::Pending)) => {
                c.at = image.created_at;
                c.op_fields = vec![("placed", 1), ("reserved", amount)];
                c.user_fields = vec![("holds", 1)];
            }
            (Some(HoldStatus::Pending), Some(HoldStatus::Pending)) => {
                // A non-final capture (or an extend or a link: nothing to count).
                let (units, credits) = captured_since(old.as_ref(), image);
                if units == 0 && credits == 0 {
                    return None;
                }
                c.at = change_at(image);
                c.op_fields = vec![("captures", 1), ("captured", credits), ("capturedUnits", units)];
                c.user_fields = vec![("spent", credits)];
            }
            (Some(HoldStatus::Pending) | None, Some(HoldStatus::Confirmed)) => {
                c.at = image.settled_at.unwrap_or(image.created_at);
                let (units, credits) = captured_since(old.as_ref(), image);
                c.op_fields = vec![
                    ("confirmed", 1),
                    ("captured", credits),
                    ("capturedUnits", units),
                    ("returned", image.released_amount as i64),
                ];
                c.user_fields = vec![("spent", credits)];
                if old.is_none() {
                    // Placed and settled in one write (a reserve that met a parked delivery).
                    c.op_fields.extend([("placed", 1), ("reserved", amount)]);
                    c.user_fields.push(("holds", 1));
                }
            }
            (Some(HoldStatus::Pending) | None, Some(status @ (HoldStatus::Released | HoldStatus::Expired))) => {
                c.at = image.settled_at.unwrap_or(image.created_at);
                let name = if status == HoldStatus::Released { "released" } else { "expired" };
                // Captured before the release stays spent: only the rest returns.
                c.op_fields = vec![(name, 1), ("returned", image.released_amount as i64)];
                if old.is_none() {
                    c.op_fields.extend([("placed", 1), ("reserved", amount)]);
                    c.user_fields.push(("holds", 1));
                }
            }
            (Some(HoldStatus::Confirmed | HoldStatus::Released | HoldStatus::Expired), Some(HoldStatus::Refunded)) => {
                c.at = image.refunded_at.or(image.settled_at).unwrap_or(image.created_at);
                let refunded = image.captured_amount as i64;
                c.op_fields = vec![("refunded", 1), ("refundedCredits", refunded)];
                c.user_fields = vec![("spent", -refunded)];
            }
            _ => return None,
        }
        return Some(c);
    }
    if image.is("balance") {
        return balance_contribution(old.as_ref()?, image);
    }
    if image.is("event") || image.is("webhookDelivery") {
        return outgoing_contribution(old.as_ref(), image);
    }
    if image.is("purchase") {
        let fields: Vec<(&'static str, i64)> = match old.as_ref() {
            None => vec![("purchases", 1), ("purchasedCredits", image.credits)],
            Some(o) => vec![
                ("takenBack", image.taken_back - o.taken_back),
                ("unrecoverable", image.unrecoverable - o.unrecoverable),
            ],
        };
        let fields: Vec<_> = fields.into_iter().filter(|(_, v)| *v != 0).collect();
        return (!fields.is_empty()).then(|| Contribution {
            at: now_of(image),
            total_fields: fields,
            ..Default::default()
        });
    }
    if old.is_some() {
        return None;
    }
    if image.is("grant") {
        return Some(Contribution {
            at: image.at,
            total_fields: vec![("grants", 1), ("granted", image.amount as i64)],
            ..Default::default()
        });
    }
    if image.is("stripeEvent") {
        let result = match image.result.as_deref() {
            Some("granted") => "stripeGranted",
            Some("taken_back") => "stripeTakenBack",
            Some("parked") => "stripeParked",
            Some("ignored") => "stripeIgnored",
            _ => "stripeDuplicates",
        };
        return Some(Contribution {
            at: image.at,
            total_fields: vec![("stripeEvents", 1), (result, 1)],
            ..Default::default()
        });
    }
    if image.is("delivery") && image.late_success {
        return Some(Contribution { at: image.at, total_fields: vec![("lateSuccess", 1)], ..Default::default() });
    }
    None
}

/// Credits a balance write expired (lots, or held credits back to an expired
/// lot), debited, or granted as a plan's allowance (the writes that move
/// `planPeriod`): the per-period figures no other item carries.
fn balance_contribution(old: &Image, new: &Image) -> Option<Contribution> {
    let refilled = if new.plan_period != old.plan_period { new.granted - old.granted } else { 0 };
    let fields: Vec<(&'static str, i64)> =
        [("lotExpired", new.expired - old.expired), ("debited", new.debited - old.debited), ("planRefilled", refilled)]
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .collect();
    (!fields.is_empty()).then(|| Contribution { at: new.updated_at, total_fields: fields, ..Default::default() })
}

/// When a purchase's change happened: its last take-back, else its grant.
fn now_of(image: &Image) -> i64 {
    if image.updated_at > 0 {
        image.updated_at
    } else {
        image.at
    }
}

/// Events recorded and published, and webhook attempts (delivered or
/// failed), and deliveries that failed their whole schedule.
fn outgoing_contribution(old: Option<&Image>, new: &Image) -> Option<Contribution> {
    let mut fields: Vec<(&'static str, i64)> = Vec::new();
    let mut at = new.occurred_at;
    if new.is("event") {
        if old.is_none() {
            fields.push(("eventsRecorded", 1));
        }
        let published = |i: Option<&Image>| i.and_then(|i| i.bus.as_deref()) == Some("published");
        if published(Some(new)) && !published(old) {
            fields.push(("eventsPublished", 1));
        }
    } else {
        let tried = new.attempts - old.map_or(0, |o| o.attempts);
        if tried <= 0 {
            return None;
        }
        at = new.log.last().map_or(new.created_at, |a| a.at);
        let delivered = new.status_text.as_deref() == Some("delivered");
        let failed = new.status_text.as_deref() == Some("failed");
        fields.push(("webhookAttempts", tried));
        fields.push(("webhookDelivered", i64::from(delivered)));
        fields.push(("webhookAttemptsFailed", tried - i64::from(delivered)));
        fields.push(("webhookDeliveriesFailed", i64::from(failed)));
        fields.retain(|(_, v)| *v != 0);
    }
    (!fields.is_empty()).then(|| Contribution { at, total_fields: fields, ..Default::default() })
}

/// Units and credits captured between two images of a hold.
fn captured_since(old: Option<&Image>, new: &Image) -> (i64, i64) {
    let (units, credits) = old.map_or((0, 0), |o| (o.captured_units, o.captured_amount));
    (new.captured_units as i64 - units as i64, new.captured_amount as i64 - credits as i64)
}

/// When a change to a pending hold happened: its newest event.
fn change_at(image: &Image) -> i64 {
    image.events.iter().map(|e| e.at).max().unwrap_or(image.created_at)
}
