//! The aggregates the stats function writes (counter buckets, health flags,
//! per-user usage): their keys, and the reads monitoring makes of them, each
//! one `Query`, bounded.

use super::{n, s, sdk_error, Item, Store, USAGE_INDEX};
use crate::error::Result;

/// Keys of the aggregate items: counters per bucket, usage per user and
/// bucket, the health flags.
pub fn stats_pk(bucket: &str) -> String {
    format!("STATS#{bucket}")
}

pub fn usage_pk(bucket: &str) -> String {
    format!("USAGE#{bucket}")
}

pub const BROKEN_PK: &str = "HEALTH#broken";
pub const HEALTH_PK: &str = "HEALTH";

/// The mark of a stream record counted once (`SEEN#<eventId>`).
pub fn mark_key(event_id: &str) -> Item {
    super::key(format!("SEEN#{event_id}"), "SEEN")
}

impl Store {
    /// The items of one partition, at most `limit` (one eventually
    /// consistent `Query`, at half the read units of a consistent one).
    pub async fn partition(&self, pk: String, limit: Option<i32>) -> Result<Vec<Item>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .set_limit(limit)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.items.unwrap_or_default())
    }

    /// The usage items of one bucket with something spent, most spent
    /// first, at most `limit`.
    pub async fn top_spenders(&self, bucket: &str, limit: u32) -> Result<Vec<Item>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(USAGE_INDEX)
            .key_condition_expression("usageBucket = :bucket AND spent > :zero")
            .expression_attribute_values(":bucket", s(bucket))
            .expression_attribute_values(":zero", n(0))
            .scan_index_forward(false)
            .limit(limit as i32)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.items.unwrap_or_default())
    }
}
