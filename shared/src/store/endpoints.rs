//! Webhook endpoints and their delivery logs: the keys, and the reads and
//! the delete that are not a plain get or put.

use aws_sdk_dynamodb::types::ReturnValue;
use uuid::Uuid;

use super::{key, s, sdk_error, Item, Store};
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
