//! An SDK interceptor that asks every request for its consumed capacity
//! and adds it up, priced as DynamoDB prices it (DynamoDB Local reports a
//! transactional write at 1 unit per item; DynamoDB charges 2). A meter
//! made with [`Meter::logging`] also keeps every request, in order: what
//! it sent (its operation, the item's keys, an update's expression, sizes)
//! and the units it was counted at, or its refused condition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use credits_shared::store::Item;

use super::sizes::item_size;

/// Totals in thousandths of a unit (queries read half units).
#[derive(Debug, Default)]
pub struct Totals {
    pub read_milli: AtomicU64,
    pub write_milli: AtomicU64,
    pub requests: AtomicU64,
    pub conflicts: AtomicU64,
}

#[derive(Debug, Clone, Default)]
pub struct Meter {
    totals: Arc<Totals>,
    /// Every request done, in order, when the meter keeps them.
    log: Option<Arc<Mutex<Vec<Done>>>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
    pub requests: u64,
}

pub fn minus(a: Units, b: Units) -> Units {
    Units { read: a.read - b.read, write: a.write - b.write, requests: a.requests - b.requests }
}

/// One request as sent: its operation, the item's keys (a query: its index
/// or its partition), an update's expression, a put item's size and its
/// payload's.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    pub op: &'static str,
    pub pk: String,
    pub sk: String,
    pub update: String,
    pub bytes: usize,
    pub payload: usize,
}

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

/// One request done: the units DynamoDB Local reported (as the meter counts
/// them), or a refused condition (it reports none then).
#[derive(Clone, Debug)]
pub struct Done {
    pub sent: Sent,
    pub units: f64,
    pub refused: bool,
}

impl Done {
    pub fn is_read(&self) -> bool {
        matches!(self.sent.op, "Query" | "GetItem")
    }
}

impl Meter {
    /// A meter that also keeps every request (see [`Meter::take_log`]).
    pub fn logging() -> Meter {
        Meter { log: Some(Arc::default()), ..Meter::default() }
    }

    pub fn snapshot(&self) -> Units {
        Units {
            read: self.totals.read_milli.load(Ordering::SeqCst) as f64 / 1000.0,
            write: self.totals.write_milli.load(Ordering::SeqCst) as f64 / 1000.0,
            requests: self.totals.requests.load(Ordering::SeqCst),
        }
    }

    pub fn conflicts(&self) -> u64 {
        self.totals.conflicts.load(Ordering::SeqCst)
    }

    /// The requests done since the last call, in order (none when the
    /// meter keeps no log).
    pub fn take_log(&self) -> Vec<Done> {
        self.log
            .as_ref()
            .map_or_else(Vec::new, |log| std::mem::take(&mut *log.lock().unwrap_or_else(PoisonError::into_inner)))
    }

    /// Adds a request's units; returns them as counted (before rounding).
    fn add(&self, capacity: &[ConsumedCapacity], kind: Kind) -> f64 {
        // `capacity_units` is the request's total, indexes included.
        let units: f64 = capacity.iter().map(|c| c.capacity_units.unwrap_or(0.0)).sum();
        let milli = |u: f64| (u * 1000.0).round() as u64;
        let counted = match kind {
            // A query is charged at least half a unit, even when it reads nothing.
            Kind::Read => units.max(0.5),
            Kind::Write => units,
            Kind::Transaction(items) => transaction_units(capacity, items),
        };
        match kind {
            Kind::Read => self.totals.read_milli.fetch_add(milli(counted), Ordering::SeqCst),
            Kind::Write | Kind::Transaction(_) => self.totals.write_milli.fetch_add(milli(counted), Ordering::SeqCst),
        };
        counted
    }
}

/// What DynamoDB charges for a transaction of `items` items (each under
/// 1 KB here): 2 WCU an item, plus 1 WCU an index write. DynamoDB Local
/// reports an index write as 2 units under `INDEXES`.
fn transaction_units(capacity: &[ConsumedCapacity], items: usize) -> f64 {
    let index: f64 = capacity
        .iter()
        .filter_map(|c| c.global_secondary_indexes.as_ref())
        .flat_map(|m| m.values().filter_map(|v| v.capacity_units))
        .sum();
    2.0 * items as f64 + index / 2.0
}

/// How many items the transaction being sent has.
#[derive(Clone, Copy, Debug)]
struct TransactionItems(usize);

impl Storable for TransactionItems {
    type Storer = StoreReplace<Self>;
}

#[derive(Clone, Copy)]
enum Kind {
    Read,
    Write,
    Transaction(usize),
}

impl Intercept for Meter {
    fn name(&self) -> &'static str {
        "capacity-meter"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.totals.requests.fetch_add(1, Ordering::SeqCst);
        let input = context.input_mut();
        let indexes = Some(ReturnConsumedCapacity::Indexes);
        if let Some(i) = input.downcast_mut::<TransactWriteItemsInput>() {
            i.return_consumed_capacity = indexes.clone();
            // DynamoDB Local's per-item figures for transactions are not
            // DynamoDB's: price the items from the request itself.
            let items = i.transact_items.as_ref().map(Vec::len).unwrap_or(0);
            cfg.interceptor_state().store_put(TransactionItems(items));
        } else if let Some(i) = input.downcast_mut::<GetItemInput>() {
            i.return_consumed_capacity = indexes;
        } else if let Some(i) = input.downcast_mut::<QueryInput>() {
            i.return_consumed_capacity = indexes;
        } else if let Some(i) = input.downcast_mut::<PutItemInput>() {
            i.return_consumed_capacity = indexes;
        } else if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
            i.return_consumed_capacity = indexes;
        }
        Ok(())
    }

    /// What the request sends, for the log.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.log.is_none() {
            return Ok(());
        }
        let input = context.input();
        let text = |item: Option<&Item>, name: &str| {
            item.and_then(|i| i.get(name)).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
        };
        let sent = if let Some(i) = input.downcast_ref::<PutItemInput>() {
            let item = i.item.as_ref();
            Sent {
                op: "PutItem",
                pk: text(item, "pk"),
                sk: text(item, "sk"),
                bytes: item.map_or(0, item_size),
                payload: text(item, "payload").len(),
                ..Sent::default()
            }
        } else if let Some(i) = input.downcast_ref::<UpdateItemInput>() {
            Sent {
                op: "UpdateItem",
                pk: text(i.key.as_ref(), "pk"),
                sk: text(i.key.as_ref(), "sk"),
                update: i.update_expression.clone().unwrap_or_default(),
                ..Sent::default()
            }
        } else if let Some(i) = input.downcast_ref::<GetItemInput>() {
            Sent { op: "GetItem", pk: text(i.key.as_ref(), "pk"), sk: text(i.key.as_ref(), "sk"), ..Sent::default() }
        } else if let Some(i) = input.downcast_ref::<QueryInput>() {
            let partition = text(i.expression_attribute_values.as_ref(), ":pk");
            Sent { op: "Query", pk: partition, sk: i.index_name.clone().unwrap_or_default(), ..Sent::default() }
        } else {
            Sent { op: "other", ..Sent::default() }
        };
        cfg.interceptor_state().store_put(sent);
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (units, refused) = match context.output_or_error() {
            Some(Ok(output)) => {
                let units = if let Some(o) = output.downcast_ref::<TransactWriteItemsOutput>() {
                    let items = cfg.load::<TransactionItems>().map(|t| t.0).unwrap_or(0);
                    self.add(o.consumed_capacity(), Kind::Transaction(items))
                } else if let Some(o) = output.downcast_ref::<GetItemOutput>() {
                    self.add(o.consumed_capacity.as_slice(), Kind::Read)
                } else if let Some(o) = output.downcast_ref::<QueryOutput>() {
                    self.add(o.consumed_capacity.as_slice(), Kind::Read)
                } else if let Some(o) = output.downcast_ref::<PutItemOutput>() {
                    self.add(o.consumed_capacity.as_slice(), Kind::Write)
                } else if let Some(o) = output.downcast_ref::<UpdateItemOutput>() {
                    self.add(o.consumed_capacity.as_slice(), Kind::Write)
                } else {
                    0.0
                };
                (units, false)
            }
            Some(Err(error)) => {
                let operation = error.as_operation_error();
                let conflict = operation
                    .and_then(|e| e.downcast_ref::<TransactWriteItemsError>())
                    .and_then(|e| match e {
                        TransactWriteItemsError::TransactionCanceledException(t) => Some(t),
                        _ => None,
                    })
                    .is_some_and(|t| t.cancellation_reasons().iter().any(|r| r.code() == Some("TransactionConflict")));
                if conflict {
                    self.totals.conflicts.fetch_add(1, Ordering::SeqCst);
                }
                let refused = operation
                    .and_then(|e| e.downcast_ref::<PutItemError>())
                    .is_some_and(PutItemError::is_conditional_check_failed_exception)
                    || operation
                        .and_then(|e| e.downcast_ref::<UpdateItemError>())
                        .is_some_and(UpdateItemError::is_conditional_check_failed_exception);
                (0.0, refused)
            }
            None => return Ok(()),
        };
        if let (Some(log), Some(sent)) = (&self.log, cfg.load::<Sent>()) {
            let done = Done { sent: sent.clone(), units, refused };
            log.lock().unwrap_or_else(PoisonError::into_inner).push(done);
        }
        Ok(())
    }
}
