//! Outgoing events: what the ledger tells apps about its changes, on
//! EventBridge and as signed webhooks (Standard Webhooks).
//!
//! The `events` function reads the table's change stream, derives events
//! from each change (`derive`, pure), and records each event once (`outbox`:
//! an event item and one delivery item per subscribed endpoint, all put with
//! `attribute_not_exists` under keys derived from the change, so a
//! redelivered batch records nothing twice). It then publishes what it
//! recorded (`bus`) and makes each delivery's first attempt (`deliver`).
//! Anything that failed stays in the due-work index, like a pending hold,
//! and the scheduled job retries it on its schedule: no sleeping function,
//! no second queue.

pub mod address;
pub mod bus;
pub mod connect;
pub mod deliver;
pub mod derive;
pub mod endpoints;
pub mod expiring;
pub mod outbox;
pub mod sign;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{Timestamp, UserId};

/// The types of event, as named on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "hold.confirmed")]
    HoldConfirmed,
    #[serde(rename = "hold.released")]
    HoldReleased,
    #[serde(rename = "hold.expired")]
    HoldExpired,
    #[serde(rename = "hold.late_success")]
    HoldLateSuccess,
    #[serde(rename = "grant.created")]
    GrantCreated,
    #[serde(rename = "grant.expiring")]
    GrantExpiring,
    #[serde(rename = "grant.expired")]
    GrantExpired,
    #[serde(rename = "debit.created")]
    DebitCreated,
    #[serde(rename = "refund.created")]
    RefundCreated,
    #[serde(rename = "balance.low")]
    BalanceLow,
    #[serde(rename = "balance.depleted")]
    BalanceDepleted,
    #[serde(rename = "balance.recovered")]
    BalanceRecovered,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::HoldConfirmed,
        Kind::HoldReleased,
        Kind::HoldExpired,
        Kind::HoldLateSuccess,
        Kind::GrantCreated,
        Kind::GrantExpiring,
        Kind::GrantExpired,
        Kind::DebitCreated,
        Kind::RefundCreated,
        Kind::BalanceLow,
        Kind::BalanceDepleted,
        Kind::BalanceRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::HoldConfirmed => "hold.confirmed",
            Kind::HoldReleased => "hold.released",
            Kind::HoldExpired => "hold.expired",
            Kind::HoldLateSuccess => "hold.late_success",
            Kind::GrantCreated => "grant.created",
            Kind::GrantExpiring => "grant.expiring",
            Kind::GrantExpired => "grant.expired",
            Kind::DebitCreated => "debit.created",
            Kind::RefundCreated => "refund.created",
            Kind::BalanceLow => "balance.low",
            Kind::BalanceDepleted => "balance.depleted",
            Kind::BalanceRecovered => "balance.recovered",
        }
    }

    pub fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// The wire names, for "must be one of" answers.
    pub const NAMES: &'static [&'static str] = &[
        "hold.confirmed",
        "hold.released",
        "hold.expired",
        "hold.late_success",
        "grant.created",
        "grant.expiring",
        "grant.expired",
        "debit.created",
        "refund.created",
        "balance.low",
        "balance.depleted",
        "balance.recovered",
    ];
}

/// One event as apps receive it (the EventBridge `detail`, the webhook body).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub occurred_at: Timestamp,
    pub user_id: UserId,
    pub data: Value,
}

const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x6a0e_8f2c_41d7_4b8e_9c35_0e7d_52a1_c4f9);

/// An event's id, derived from what caused it (`source`: a hold id, a line
/// id, a stream record's id…), so the same change always yields the same id.
pub fn event_id(kind: Kind, source: &str) -> String {
    let id = Uuid::new_v5(&EVENT_NAMESPACE, format!("{}\n{source}", kind.as_str()).as_bytes());
    format!("evt_{}", id.simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_names() {
        for (kind, name) in Kind::ALL.iter().zip(Kind::NAMES) {
            assert_eq!(kind.as_str(), *name);
            assert_eq!(Kind::parse(name), Some(*kind));
            assert_eq!(serde_json::to_value(kind).expect("serializes"), Value::String((*name).into()));
        }
        assert_eq!(Kind::parse("hold.created"), None);
    }

    #[test]
    fn ids_derive_from_the_change() {
        let a = event_id(Kind::HoldExpired, "hold-1");
        assert_eq!(a, event_id(Kind::HoldExpired, "hold-1"));
        assert_ne!(a, event_id(Kind::HoldReleased, "hold-1"));
        assert_ne!(a, event_id(Kind::HoldExpired, "hold-2"));
        assert!(a.starts_with("evt_") && a.len() == 36);
    }
}
