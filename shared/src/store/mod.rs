//! DynamoDB items and the conditional writes that move money.
//!
//! One table, keys `pk`/`sk` (see docs/DATA_MODEL.md):
//! - `USER#<user>` / `BALANCE`: the four balance figures and `openHolds`
//! - `USER#<user>` / `GRANT#<grantId>`: a grant, keyed by its idempotency key
//! - `USER#<user>` / `TX#<millis>#<entryId>`: one history line
//! - `HOLD#<id>` / `HOLD`: a hold with its events
//! - `TASK#<provider>#<taskId>` / `TASK`: which hold a provider task settles
//!
//! Pending holds carry `pendingShard`, which puts them in the sparse
//! `pending-by-expiry` index (shard, `expiresAt`); settling removes it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, StreamSpecification,
    StreamViewType, TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    Actor, Allocation, Credits, EntryType, EventType, HoldEvent, HoldStatus, LedgerEntry, LotKey, LotPart, Provider,
    Reservation, Timestamp, UserId,
};
use crate::error::{Error, Result};

mod balance;

pub use balance::*;

pub const PENDING_INDEX: &str = "pending-by-expiry";

/// Per-user usage items by spent (written by the stats function).
pub const USAGE_INDEX: &str = "usage-by-spent";

/// Pending holds spread over this many index partitions, so that no shard
/// key becomes hot however many holds are placed at once.
pub const PENDING_SHARDS: u8 = 16;

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

pub fn shard_key(shard: u8) -> String {
    format!("P#{shard:02}")
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
    /// Counted in its balance's `openHolds` by its reserve (every hold that
    /// moved credits since the cap exists), so its settlement uncounts it.
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

    pub fn into_reservation(self, with_events: bool) -> Reservation {
        let lots = self.allocation().0.into_iter().map(|(lot, amount)| LotPart::new(lot, amount)).collect();
        Reservation {
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

#[derive(Debug)]
pub struct Cancel {
    pub code: String,
    pub item: Option<Item>,
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
            .set_expression_attribute_names(Some(
                update.names.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ))
            .set_expression_attribute_values(Some(update.values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
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
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :tx)")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":tx", s("TX#"))
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
