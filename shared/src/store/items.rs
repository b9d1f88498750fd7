//! The items of the table other than the balance, as stored: holds, grants,
//! debits, history lines, task links.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{n, s};
use crate::domain::{
    Actor, Allocation, Credits, EntryType, EventType, Hold, HoldEvent, HoldStatus, LedgerEntry, LotKey, LotPart,
    Provider, Timestamp, UserId,
};

/// A hold as stored. Times are epoch milliseconds so that conditions compare
/// numbers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldItem {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub reservation_id: Uuid,
    pub user_id: UserId,
    pub operation: String,
    pub units: u32,
    pub unit_cost: u64,
    pub amount: u64,
    pub status: HoldStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub provider: Provider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub captured_units: u32,
    pub captured_amount: u64,
    pub released_amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_by: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    #[serde(default)]
    pub events: Vec<EventItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Counted in its balance's `openHolds` by its reserve (every hold since
    /// free ones count; before that, every hold that moved credits since the
    /// cap exists), so its settlement uncounts it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_counted: bool,
    /// Units its closing confirm captured (absent: closed before captures
    /// existed, when that was all its captured units).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_units: Option<u32>,
    /// Non-final captures by key digest: the units each captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captures: Option<BTreeMap<String, u32>>,
    /// What it took from which lot, in burn order (absent: placed before
    /// lots existed, when everything came from the base lot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lots: Option<Vec<LotPartItem>>,
}

/// A hold's (or a debit's) take from one lot.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LotPartItem {
    pub priority: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub amount: u64,
}

impl LotPartItem {
    pub fn from_allocation(allocation: &Allocation) -> Vec<LotPartItem> {
        allocation
            .0
            .iter()
            .map(|(lot, amount)| LotPartItem {
                priority: lot.priority,
                expires_at: lot.expires_at.map(Timestamp::millis),
                amount: amount.get(),
            })
            .collect()
    }

    pub fn to_allocation(parts: &[LotPartItem]) -> Allocation {
        Allocation(
            parts
                .iter()
                .map(|p| (LotKey { priority: p.priority, expires_at: p.expires_at.map(Timestamp) }, Credits(p.amount)))
                .collect(),
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventItem {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub at: i64,
    pub by: Actor,
    pub amount: u64,
}

impl EventItem {
    pub fn to_value(&self) -> AttributeValue {
        AttributeValue::M(HashMap::from([
            ("type".to_owned(), s(event_type_str(self.kind))),
            ("at".to_owned(), n(self.at)),
            ("by".to_owned(), s(self.by.as_str())),
            ("amount".to_owned(), n(self.amount)),
        ]))
    }
}

fn event_type_str(kind: EventType) -> &'static str {
    match kind {
        EventType::Reserved => "reserved",
        EventType::Confirmed => "confirmed",
        EventType::Released => "released",
        EventType::Expired => "expired",
        EventType::Refunded => "refunded",
        EventType::TaskLinked => "task_linked",
        EventType::Captured => "captured",
        EventType::Extended => "extended",
    }
}

impl HoldItem {
    /// What the hold took from which lot.
    pub fn allocation(&self) -> Allocation {
        match &self.lots {
            Some(parts) => LotPartItem::to_allocation(parts),
            None => Allocation::base(Credits(self.amount)),
        }
    }

    pub fn into_hold(self, with_events: bool) -> Hold {
        let lots = self.allocation().0.into_iter().map(|(lot, amount)| LotPart::new(lot, amount)).collect();
        Hold {
            lots,
            reservation_id: self.reservation_id,
            user_id: self.user_id,
            operation: self.operation,
            units: self.units,
            unit_cost: Credits(self.unit_cost),
            amount: Credits(self.amount),
            status: self.status,
            task_id: self.task_id,
            provider: self.provider,
            description: self.description,
            created_at: Timestamp(self.created_at),
            expires_at: Timestamp(self.expires_at),
            captured_units: self.captured_units,
            captured_amount: Credits(self.captured_amount),
            released_amount: Credits(self.released_amount),
            settled_at: self.settled_at.map(Timestamp),
            settled_by: self.settled_by,
            final_units: self.final_units.unwrap_or(self.captured_units),
            events: with_events.then(|| {
                self.events
                    .into_iter()
                    .map(|e| HoldEvent { kind: e.kind, at: Timestamp(e.at), by: e.by, amount: Credits(e.amount) })
                    .collect()
            }),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantItem {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub grant_id: Uuid,
    pub user_id: UserId,
    pub amount: u64,
    pub reason: crate::domain::GrantReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub request_hash: String,
    /// Who granted: the caller's `sub` (absent on grants made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The lot it landed in (absent on grants made before lots: the base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub at: i64,
}

/// A debit, keyed by its idempotency key like a grant.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DebitItem {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub debit_id: Uuid,
    pub user_id: UserId,
    /// Credits taken.
    pub amount: u64,
    pub requested: u64,
    pub reason: crate::domain::DebitReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub actor: String,
    pub request_hash: String,
    pub lots: Vec<LotPartItem>,
    pub at: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryItem {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: EntryType,
    pub amount: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The credits of each lot the line moved (absent on lines written
    /// before lots: the base lot), so lots reconcile from history alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lots: Option<Vec<LotPartItem>>,
    /// A plan refill's carry-over: the previous period's lot and how much
    /// of it moved into the new one (which `lots` names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollover: Option<Vec<LotPartItem>>,
    pub at: i64,
}

impl EntryItem {
    pub fn into_entry(self) -> LedgerEntry {
        LedgerEntry {
            id: self.id,
            kind: self.kind,
            amount: Credits(self.amount),
            reservation_id: self.reservation_id,
            operation: self.operation,
            description: self.description,
            reason: self.reason,
            actor: self.actor,
            at: Timestamp(self.at),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskItem {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub reservation_id: Uuid,
    pub user_id: UserId,
    pub ttl: i64,
}

/// A Stripe Checkout purchase: the grant it made, and what has been taken
/// back since (refunds, a dispute). Keyed by the session; its payment
/// intent links to it (`PAYMENT#<id>` / `LINK`), since refunds and disputes
/// name the payment, not the session.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseItem {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub session_id: String,
    pub user_id: UserId,
    pub credits: u64,
    pub grant_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Credits taken back so far, recovered or not: never more than `credits`.
    pub taken_back: u64,
    /// Of those, the credits the user no longer had (already spent).
    pub unrecoverable: u64,
    pub at: i64,
}

pub fn purchase_pk(session_id: &str) -> String {
    format!("PURCHASE#{session_id}")
}

pub fn payment_pk(payment_intent: &str) -> String {
    format!("PAYMENT#{payment_intent}")
}

/// What a Stripe dispute did, under its payment (`DISPUTE#<dispute id>`):
/// written with its take-back (the credits the debit actually took, from
/// whom), or by a `won` that came before any take-back (`closed`), so that
/// the take-back, when it comes, takes nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DisputeItem {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub dispute_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// Credits the take-back debited (not those already spent): what a won
    /// dispute gives back.
    pub taken: u64,
    /// `won` when the dispute was closed before any take-back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<String>,
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
}

pub fn dispute_sk(dispute_id: &str) -> String {
    format!("DISPUTE#{dispute_id}")
}
