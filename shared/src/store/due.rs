//! Due work: the sparse index `pending-by-expiry` (shard, `expiresAt`), one
//! mechanism for the sweep (holds and balances, shards `P#…`), the events
//! job (events and deliveries, shards `D#…`) and monitoring (how much is
//! overdue). Listed here, and claimed here by the events job.

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{ReturnValue, Select};

use super::{n, s, sdk_error, Item, Store, PENDING_INDEX};
use crate::error::Result;

/// Pending holds spread over this many index partitions, so that no shard
/// key becomes hot however many holds are placed at once.
pub const PENDING_SHARDS: u8 = 16;

/// The due-work index's partitions for events and deliveries (`D#00`…),
/// apart from holds' and balances' (`P#…`), so each job reads only its own.
pub const OUTBOX_SHARDS: u8 = 16;

/// A shard of holds and balances.
pub fn shard_key(shard: u8) -> String {
    format!("P#{shard:02}")
}

/// A shard of events and deliveries.
pub fn outbox_shard_key(shard: u8) -> String {
    format!("D#{shard:02}")
}

/// What a listing reads of each due entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueRead {
    /// Only `pk` (the sweep loads what it settles itself).
    Keys,
    /// The entry as the index projects it (the events job claims from it).
    Entries,
    /// Nothing but how many (monitoring).
    Count,
}

/// One shard's listing: the entries due at `until` (millis), read `page`
/// at a time, page after page until `at_most` are kept or none are left
/// (0: one page only).
pub struct DueQuery {
    pub shard: String,
    pub until: i64,
    pub read: DueRead,
    pub page: Option<i32>,
    pub at_most: usize,
}

/// What a listing found: the entries kept, how many the index counted, and
/// how many index entries were read.
pub struct DueList<T> {
    pub kept: Vec<T>,
    pub count: u64,
    pub scanned: u32,
}

impl Store {
    /// Lists one shard's due entries, each passed through `keep` (which
    /// drops what it answers `None` to).
    pub async fn list_due<T>(&self, query: DueQuery, mut keep: impl FnMut(Item) -> Option<T>) -> Result<DueList<T>> {
        let mut list = DueList { kept: Vec::new(), count: 0, scanned: 0 };
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(PENDING_INDEX)
                .key_condition_expression("pendingShard = :shard AND expiresAt <= :now")
                .expression_attribute_values(":shard", s(query.shard.as_str()))
                .expression_attribute_values(":now", n(query.until))
                .set_projection_expression((query.read == DueRead::Keys).then(|| "pk".to_owned()))
                .set_select((query.read == DueRead::Count).then_some(Select::Count))
                .set_limit(query.page)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            list.scanned += page.scanned_count().max(0) as u32;
            list.count += page.count().max(0) as u64;
            list.kept.extend(page.items.unwrap_or_default().into_iter().filter_map(&mut keep));
            start = page.last_evaluated_key;
            if start.is_none() || list.kept.len() >= query.at_most {
                return Ok(list);
            }
        }
    }

    /// Takes the lease of a due entry as listed: it must still be due at
    /// the instant listed (and, with `state`, that attribute still
    /// `pending`). The item as claimed, or `None` when someone else took it.
    pub async fn claim_due(
        &self,
        listed: &Item,
        lease_until: i64,
        state: Option<(&'static str, &'static str)>,
    ) -> Result<Option<Item>> {
        let due = super::attr_number(listed, "expiresAt");
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(super::attr_text(listed, "pk")))
            .key("sk", s(super::attr_text(listed, "sk")))
            .update_expression("SET expiresAt = :lease")
            .expression_attribute_values(":lease", n(lease_until))
            .expression_attribute_values(":due", n(due))
            .return_values(ReturnValue::AllNew);
        update = match state {
            Some((placeholder, name)) => update
                .condition_expression(format!("expiresAt = :due AND {placeholder} = :pending"))
                .expression_attribute_names(placeholder, name)
                .expression_attribute_values(":pending", s("pending")),
            None => update.condition_expression("expiresAt = :due"),
        };
        match update.send().await {
            Ok(out) => Ok(out.attributes),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(None),
            Err(e) => Err(sdk_error(e)),
        }
    }
}
