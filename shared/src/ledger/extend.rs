//! Extending a pending hold for a job that outlives its first time to
//! live. The sweep's index is sorted by `expiresAt`, so moving it moves the
//! hold's index entry in the same write.

use uuid::Uuid;

use super::{Along, Ledger, MAX_ATTEMPTS};
use crate::domain::{extension, Actor, EventType, Extension, Hold, HoldStatus, Settlement, UserId};
use crate::error::{Error, Result};
use crate::store::{hold_pk, key, n, s, ConditionalUpdate, EventItem};
use crate::validate::{Invalid, Problem};

/// `extended` events a hold records; later extends only move `expiresAt`.
/// A job that extends its hold every minute as a heartbeat would otherwise
/// grow the hold by an event a minute, every write of it billed per KB,
/// until DynamoDB's 400 KB item limit refused its settlement.
pub const MAX_EXTEND_EVENTS: usize = 10;

impl Ledger {
    /// Moves a pending hold's `expiresAt` to now + `ttl_seconds`. Past
    /// `expiresAt` it is too late: the hold is expired by this call (if the
    /// sweep has not yet) and the answer is `HoldExpired`.
    pub async fn extend(&self, user: Option<&UserId>, id: Uuid, ttl_seconds: u32, by: Actor) -> Result<Hold> {
        for attempt in 0..MAX_ATTEMPTS {
            let mut item = self.owned_hold(user, id).await?;
            let now = self.clock.now();
            let hold = item.clone().into_hold(false);
            match extension(&hold, ttl_seconds, now) {
                Extension::NotPending(status) => return Err(Error::HoldNotPending(status)),
                Extension::TooLong { max } => {
                    return Err(Invalid::new("ttlSeconds", Problem::OutOfRange { min: 1, max }).into());
                }
                Extension::Expired => return Err(Error::HoldExpired),
                Extension::ExpireInstead => {
                    match self.transition(item, Settlement::Expire, by, now, Along::default()).await {
                        Ok(_) => return Err(Error::HoldExpired),
                        Err(failure) => self.lost_race(failure, attempt, id).await?,
                    }
                }
                Extension::To(until) => {
                    let event = EventItem { kind: EventType::Extended, at: now.millis(), by, amount: 0 };
                    let recorded = item.events.iter().filter(|e| e.kind == EventType::Extended).count();
                    let record = recorded < MAX_EXTEND_EVENTS;
                    let mut values = vec![
                        (":until", n(until.millis())),
                        (":pending", s(HoldStatus::Pending.as_str())),
                        (":now", n(now.millis())),
                    ];
                    if record {
                        values.push((":events", aws_sdk_dynamodb::types::AttributeValue::L(vec![event.to_value()])));
                    }
                    let update = ConditionalUpdate {
                        set: match record {
                            true => "SET expiresAt = :until, events = list_append(events, :events)",
                            false => "SET expiresAt = :until",
                        },
                        condition: "#status = :pending AND expiresAt > :now",
                        names: &[("#status", "status")],
                        values,
                    };
                    // A failed condition: settled or expired meanwhile; decide again.
                    if self.store.update_if(key(hold_pk(id), "HOLD"), update).await? {
                        crate::metrics::count("Extended", 1);
                        item.expires_at = until.millis();
                        if record {
                            item.events.push(event);
                        }
                        return Ok(item.into_hold(false));
                    }
                }
            }
        }
        Err(Error::Unavailable("extend kept conflicting".into()))
    }
}
