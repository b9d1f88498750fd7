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

pub mod bus;
pub mod connect;
pub mod deliver;
pub mod derive;
pub mod endpoints;
pub mod expiring;
pub mod outbox;
pub mod schedule;
pub mod sign;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

pub use crate::domain::outgoing::Kind;
use crate::domain::{Timestamp, UserId};

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
