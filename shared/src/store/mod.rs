//! The DynamoDB table: keys, the client, reads, the transaction that moves
//! money and what its cancellation says.
//!
//! One table, keys `pk`/`sk` (see docs/DATA_MODEL.md):
//! - `USER#<user>` / `BALANCE`: the balance's lots and figures (`balance.rs`)
//! - `USER#<user>` / `GRANT#<grantId>`, `DEBIT#<debitId>`: keyed by their
//!   idempotency keys
//! - `USER#<user>` / `TX#<millis>#<entryId>`: one history line
//! - `HOLD#<id>` / `HOLD`: a hold with its events
//! - `TASK#<provider>#<taskId>` / `TASK`: which hold a provider task settles
//!
//! Pending holds, and balances with a lot expiry or a refill to come, carry
//! `pendingShard`, which puts them in the sparse due-work index
//! `pending-by-expiry` (shard, `expiresAt`).
//! That index is listed and claimed in `due.rs` only. Every DynamoDB
//! request of the crate is made in this module: the reads and deletes that
//! are not a plain get or put live one kind to a file (`endpoints.rs`,
//! `events.rs`, `purchases.rs`, `aggregates.rs`).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification,
    StreamViewType, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{LedgerEntry, Provider, Timestamp, UserId};
use crate::error::{Error, Result};

mod aggregates;
mod balance;
mod due;
mod endpoints;
mod events;
mod items;
#[cfg(feature = "local-stream")]
pub mod local_stream;
mod purchases;
pub mod stream;
mod write;

pub use aggregates::{mark_key, stats_pk, usage_pk, BROKEN_PK, HEALTH_PK};
pub use balance::*;
pub use due::*;
pub use endpoints::*;
pub use events::*;
pub use items::*;

pub const PENDING_INDEX: &str = "pending-by-expiry";

/// Per-user usage items by spent (written by the stats function).
pub const USAGE_INDEX: &str = "usage-by-spent";

pub type Item = HashMap<String, AttributeValue>;

#[derive(Clone, Debug)]
pub struct Store {
    client: Client,
    table: String,
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn user_pk(user: &UserId) -> String {
    format!("USER#{user}")
}

pub fn hold_pk(id: Uuid) -> String {
    format!("HOLD#{id}")
}

pub fn task_pk(provider: Provider, task_id: &str) -> String {
    format!("TASK#{}#{task_id}", provider.as_str())
}

pub fn entry_sk(at: Timestamp, id: Uuid) -> String {
    // Zero-padded so that string order is time order.
    format!("TX#{:013}#{id}", at.millis().max(0))
}

pub fn pending_shard(id: Uuid) -> String {
    shard_key(id.as_bytes()[0] % PENDING_SHARDS)
}

/// A number attribute of a raw item (0 when absent or unreadable).
pub fn attr_number(item: &Item, name: &str) -> i64 {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// A string attribute of a raw item ("" when absent).
pub fn attr_text<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str).unwrap_or("")
}

pub fn key(pk: String, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// The parts of [`Store::update_if`].
pub struct ConditionalUpdate<'a> {
    pub set: &'a str,
    pub condition: &'a str,
    pub names: &'a [(&'a str, &'a str)],
    pub values: Vec<(&'a str, AttributeValue)>,
}

pub fn to_item<T: Serialize>(value: &T) -> Result<Item> {
    serde_dynamo::aws_sdk_dynamodb_1::to_item(value).map_err(|e| Error::Internal(format!("encoding item: {e}")))
}

pub fn from_item<T: for<'de> Deserialize<'de>>(item: Item) -> Result<T> {
    serde_dynamo::aws_sdk_dynamodb_1::from_item(item).map_err(|e| Error::Internal(format!("decoding item: {e}")))
}

/// Why a transaction did not apply.
#[derive(Debug)]
pub enum TxFailure {
    /// Cancelled: one reason per item, in order, with the item as it is now
    /// when its condition failed.
    Cancelled(Vec<Cancel>),
    Store(Error),
}

pub struct Cancel {
    pub code: String,
    pub item: Option<Item>,
}

/// The code, and whether the item came back: never the item itself, which
/// may be a purchase, a hold or a delivery, so that no log line or error
/// message carries it.
impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel").field("code", &self.code).field("item", &self.item.as_ref().map(|_| "..")).finish()
    }
}

impl Cancel {
    pub fn condition_failed(&self) -> bool {
        self.code == "ConditionalCheckFailed"
    }

    pub fn conflict(&self) -> bool {
        self.code == "TransactionConflict"
    }

    /// Throttled items: nothing was applied; worth a pause and a retry,
    /// and 503 when retries run out.
    pub fn throttled(&self) -> bool {
        matches!(self.code.as_str(), "ThrottlingError" | "ProvisionedThroughputExceeded" | "RequestLimitExceeded")
    }
}

fn cancel_from(reason: &CancellationReason) -> Cancel {
    Cancel { code: reason.code().unwrap_or("None").to_owned(), item: reason.item().cloned() }
}

/// Throttling and transport failures are worth a retry by the caller (503);
/// anything else is a fault (500). Neither ever applied a change: every
/// write here is one conditional request or one transaction.
pub fn sdk_error<E, R>(err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::Unavailable(format!("{err:?}"))
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            let message = service.err().message().unwrap_or("").to_owned();
            match code {
                "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "ThrottlingException"
                | "InternalServerError"
                | "ServiceUnavailable" => Error::Unavailable(format!("{code}: {message}")),
                _ => Error::Internal(format!("{code}: {message}")),
            }
        }
        _ => Error::Internal(format!("{err:?}")),
    }
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Store {
        Store { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the table with its index if it does not exist yet (local runs
    /// and tests; in AWS the SAM template owns the table).
    pub async fn create_table_if_missing(&self) -> Result<()> {
        let attr = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .map_err(|e| Error::Internal(e.to_string()))
        };
        let key_elem = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| Error::Internal(e.to_string()))
        };
        let index = GlobalSecondaryIndex::builder()
            .index_name(PENDING_INDEX)
            .key_schema(key_elem("pendingShard", KeyType::Hash)?)
            .key_schema(key_elem("expiresAt", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes("userId")
                    .non_key_attributes("amount")
                    .build(),
            )
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let usage = GlobalSecondaryIndex::builder()
            .index_name(USAGE_INDEX)
            .key_schema(key_elem("usageBucket", KeyType::Hash)?)
            .key_schema(key_elem("spent", KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes("userId")
                    .non_key_attributes("holds")
                    .build(),
            )
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let stream = StreamSpecification::builder()
            .stream_enabled(true)
            .stream_view_type(StreamViewType::NewAndOldImages)
            .build()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attr("sk", ScalarAttributeType::S)?)
            .attribute_definitions(attr("pendingShard", ScalarAttributeType::S)?)
            .attribute_definitions(attr("expiresAt", ScalarAttributeType::N)?)
            .key_schema(key_elem("pk", KeyType::Hash)?)
            .key_schema(key_elem("sk", KeyType::Range)?)
            .attribute_definitions(attr("usageBucket", ScalarAttributeType::S)?)
            .attribute_definitions(attr("spent", ScalarAttributeType::N)?)
            .global_secondary_indexes(index)
            .global_secondary_indexes(usage)
            .stream_specification(stream)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => Ok(()),
            Err(e) => Err(sdk_error(e)),
        }
    }

    pub async fn get(&self, key: Item) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item)
    }

    /// Puts `item` unconditionally (status records, never money).
    pub async fn put(&self, item: Item) -> Result<()> {
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(sdk_error)?;
        Ok(())
    }

    /// Puts `item` unless one with its key exists; `false` when it did.
    pub async fn put_if_absent(&self, item: Item) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// One conditional update outside a transaction (a single item needs
    /// none, at half the write units); `false` when its condition failed.
    pub async fn update_if(&self, key: Item, update: ConditionalUpdate<'_>) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update.set)
            .condition_expression(update.condition)
            // DynamoDB refuses an empty map of names.
            .set_expression_attribute_names(
                (!update.names.is_empty())
                    .then(|| update.names.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            )
            .set_expression_attribute_values(
                (!update.values.is_empty())
                    .then(|| update.values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    pub async fn get_hold(&self, id: Uuid) -> Result<Option<HoldItem>> {
        match self.get(key(hold_pk(id), "HOLD")).await? {
            Some(item) => Ok(Some(from_item(item)?)),
            None => Ok(None),
        }
    }

    pub async fn get_task(&self, provider: Provider, task_id: &str) -> Result<Option<TaskItem>> {
        match self.get(key(task_pk(provider, task_id), "TASK")).await? {
            Some(item) => Ok(Some(from_item(item)?)),
            None => Ok(None),
        }
    }

    /// A `Query` of the items of partition `pk` whose sort key starts with
    /// `prefix`; the caller adds order, limit, paging and consistency.
    pub(crate) fn query_prefix(&self, pk: String, prefix: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":prefix", s(prefix))
    }

    /// History lines newest first. Asks for one more than `limit` so that a
    /// cursor is handed out only when another page really exists.
    pub async fn query_entries(
        &self,
        user: &UserId,
        limit: u32,
        before_sk: Option<String>,
    ) -> Result<(Vec<LedgerEntry>, Option<String>)> {
        let pk = user_pk(user);
        let start = before_sk.map(|sk| key(pk.clone(), &sk));
        let out = self
            .query_prefix(pk, "TX#")
            .scan_index_forward(false)
            .limit(limit as i32 + 1)
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        let mut items = out.items.unwrap_or_default();
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let mut entries = Vec::with_capacity(items.len());
        let mut last_sk = None;
        for item in items {
            let entry: EntryItem = from_item(item)?;
            last_sk = Some(entry.sk.clone());
            entries.push(entry.into_entry());
        }
        Ok((entries, if more { last_sk } else { None }))
    }

    /// Runs one TransactWriteItems. Each item should ask for
    /// `ReturnValuesOnConditionCheckFailure::AllOld` where the caller wants
    /// to answer from the item that beat it.
    pub async fn transact(&self, items: Vec<TransactWriteItem>, token: Option<String>) -> Result<(), TxFailure> {
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .set_client_request_token(token)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(service)) => match service.err() {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(tce) => {
                    Err(TxFailure::Cancelled(tce.cancellation_reasons().iter().map(cancel_from).collect()))
                }
                _ => Err(TxFailure::Store(sdk_error(SdkError::ServiceError(service)))),
            },
            Err(other) => Err(TxFailure::Store(sdk_error(other))),
        }
    }

    pub fn all_old() -> ReturnValuesOnConditionCheckFailure {
        ReturnValuesOnConditionCheckFailure::AllOld
    }
}

/// Builds the DynamoDB client once per cold start.
pub async fn client_from_env(endpoint: Option<&str>) -> Client {
    Client::new(&sdk_config(endpoint).await)
}

/// The SDK's HTTP client: hyper 1 with rustls on ring. The workspace turns
/// off the SDK's default client (rustls on aws-lc), so every `SdkConfig`
/// must be given this one.
pub fn https_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// The longest one SDK call may take, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The AWS configuration every client here shares: bounded retries with
/// jittered backoff, timeouts, and fixed credentials for a local endpoint.
pub async fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_config::BehaviorVersion;

    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(RetryConfig::standard().with_max_attempts(3).with_initial_backoff(Duration::from_millis(20)))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(3))
                // Below every function's timeout (15 s, template.yaml), with
                // room to answer: a slow database ends in our own 503.
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(endpoint) = endpoint {
        // DynamoDB Local accepts any credentials; give it fixed ones so a
        // missing AWS profile on a laptop is not an error.
        loader = loader
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".to_owned())))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local",
                "local",
                None,
                None,
                "credits-local",
            ));
    }
    loader.load().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancellation_prints_its_code_never_the_item() {
        let item = key("PURCHASE#cs_test_secret".into(), "PURCHASE");
        let cancel = Cancel { code: "ConditionalCheckFailed".into(), item: Some(item) };
        let printed = format!("{:?}", TxFailure::Cancelled(vec![cancel]));
        assert!(printed.contains("ConditionalCheckFailed"), "{printed}");
        assert!(!printed.contains("cs_test_secret"), "{printed}");
    }
}
