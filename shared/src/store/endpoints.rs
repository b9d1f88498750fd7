//! Webhook endpoints and their delivery logs: the items, their keys, and the
//! reads and the delete that are not a plain get or put.

use aws_sdk_dynamodb::types::ReturnValue;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{key, s, sdk_error, Item, Store};
use crate::domain::outgoing::Kind;
use crate::error::Result;

/// The one partition holding every endpoint (there are few: see
/// `MAX_ENDPOINTS`), so listing them is one `Query`.
pub const ENDPOINTS_PK: &str = "WEBHOOK_ENDPOINTS";

pub fn endpoint_sk(id: Uuid) -> String {
    format!("EP#{id}")
}

/// The partition of an endpoint's deliveries (its delivery log).
pub fn deliveries_pk(id: Uuid) -> String {
    format!("ENDPOINT#{id}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

/// An endpoint as stored. Its `Debug` leaves the secret out.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointItem {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub endpoint_id: Uuid,
    pub url: String,
    /// The types it wants; empty: every type.
    pub events: Vec<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub secret: String,
    pub status: EndpointStatus,
    pub created_at: i64,
    pub created_by: String,
    /// Since when every attempt failed (cleared by any success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

impl std::fmt::Debug for EndpointItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointItem")
            .field("endpoint_id", &self.endpoint_id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("status", &self.status)
            .field("secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl EndpointItem {
    pub fn wants(&self, kind: Kind) -> bool {
        self.status == EndpointStatus::Enabled && (self.events.is_empty() || self.events.contains(&kind))
    }
}

/// One delivery of one event to one endpoint, with its attempts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryLogItem {
    pub pk: String,
    pub sk: String,
    pub entity: String,
    pub endpoint_id: Uuid,
    pub event_id: String,
    pub event_type: Kind,
    pub user_id: String,
    /// The body every attempt sends, byte for byte.
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[serde(default)]
    pub log: Vec<Attempt>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    pub ttl: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Being attempted, or waiting for its next attempt.
    Pending,
    Delivered,
    /// Every attempt of the schedule failed.
    Failed,
    /// Not attempted again: the endpoint was disabled or deleted.
    Dropped,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub attempt: u32,
    pub at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl Store {
    /// Every endpoint, read consistently (a new one is used at once).
    pub async fn endpoint_items(&self) -> Result<Vec<Item>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(ENDPOINTS_PK))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.items.unwrap_or_default())
    }

    /// Deletes an endpoint; `false` when there was none.
    pub async fn delete_endpoint(&self, id: Uuid) -> Result<bool> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(ENDPOINTS_PK.into(), &endpoint_sk(id))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(deleted.attributes.is_some())
    }

    /// An endpoint's deliveries newest first, before `before_sk` if given.
    /// Asks for one more than `limit` so that a cursor is handed out only
    /// when another page really exists.
    pub async fn deliveries(&self, id: Uuid, limit: u32, before_sk: Option<String>) -> Result<Vec<Item>> {
        let pk = deliveries_pk(id);
        let start = before_sk.map(|sk| key(pk.clone(), &sk));
        let out = self
            .query_prefix(pk, "DLV#")
            .scan_index_forward(false)
            .limit(limit as i32 + 1)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.items.unwrap_or_default())
    }
}
