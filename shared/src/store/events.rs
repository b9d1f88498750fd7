//! Outgoing events as stored: the event items under their user, the
//! scheduled expiry warnings, their keys, and the reads beyond a plain get.

use serde::{Deserialize, Serialize};

use super::{outbox_shard_key, sdk_error, user_pk, Item, Store, OUTBOX_SHARDS};
use crate::domain::outgoing::Kind;
use crate::domain::{Timestamp, UserId};
use crate::error::Result;

/// The due-work shard of an event's publish, deliveries or warning.
pub fn outbox_shard(event_id: &str) -> String {
    let byte = event_id.bytes().fold(0u8, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
    outbox_shard_key(byte % OUTBOX_SHARDS)
}

/// An event's key under its user: by when it happened, then its id.
pub fn event_sk(occurred_at: Timestamp, event_id: &str) -> String {
    format!("EVENT#{:013}#{event_id}", occurred_at.millis().max(0))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusState {
    Pending,
    Published,
    /// No bus configured: written to the log instead.
    Logged,
    /// Every retry of the schedule failed.
    Failed,
}

/// An event as stored, under its user (`credits events` lists them).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub event_id: String,
    pub event_type: Kind,
    pub user_id: String,
    pub occurred_at: i64,
    pub payload: String,
    pub bus: BusState,
    pub bus_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub ttl: i64,
}

/// A scheduled warning, under its user. `expiresAt` is when it falls due
/// (the index's key); the lot's own expiry is `lotExpiresAt`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarningItem {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub user_id: UserId,
    pub priority: u8,
    pub lot_expires_at: i64,
    /// When it falls due: the event's date, whatever the index entry says
    /// after a claim moved it.
    pub due_at: i64,
    /// Set once the event is recorded; a warning retired without it (the lot
    /// was empty then) is armed again by the next grant into the lot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub ttl: i64,
}

pub const WARNING_PREFIX: &str = "WARN#";

impl Store {
    /// A user's event items, newest first, at most `limit`.
    pub async fn recent_events(&self, user: &UserId, limit: u32) -> Result<Vec<Item>> {
        let out = self
            .query_prefix(user_pk(user), "EVENT#")
            .scan_index_forward(false)
            .limit(limit as i32)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.items.unwrap_or_default())
    }
}
