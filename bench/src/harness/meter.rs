//! An SDK interceptor that asks every request for its consumed capacity
//! and adds it up, priced as DynamoDB prices it (DynamoDB Local reports a
//! transactional write at 1 unit per item; DynamoDB charges 2).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextMut, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsError, TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_types::config_bag::{Storable, StoreReplace};

/// Totals in thousandths of a unit (queries read half units).
#[derive(Debug, Default)]
pub struct Totals {
    pub read_milli: AtomicU64,
    pub write_milli: AtomicU64,
    pub requests: AtomicU64,
    pub conflicts: AtomicU64,
}

#[derive(Debug, Clone, Default)]
pub struct Meter(pub Arc<Totals>);

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Units {
    pub read: f64,
    pub write: f64,
    pub requests: u64,
}

impl Meter {
    pub fn snapshot(&self) -> Units {
        Units {
            read: self.0.read_milli.load(Ordering::SeqCst) as f64 / 1000.0,
            write: self.0.write_milli.load(Ordering::SeqCst) as f64 / 1000.0,
            requests: self.0.requests.load(Ordering::SeqCst),
        }
    }

    pub fn conflicts(&self) -> u64 {
        self.0.conflicts.load(Ordering::SeqCst)
    }

    fn add(&self, capacity: &[ConsumedCapacity], kind: Kind) {
        // `capacity_units` is the request's total, indexes included.
        let units: f64 = capacity.iter().map(|c| c.capacity_units.unwrap_or(0.0)).sum();
        let milli = |u: f64| (u * 1000.0).round() as u64;
        match kind {
            // A query is charged at least half a unit, even when it reads nothing.
            Kind::Read => self.0.read_milli.fetch_add(milli(units.max(0.5)), Ordering::SeqCst),
            Kind::Write => self.0.write_milli.fetch_add(milli(units), Ordering::SeqCst),
            Kind::Transaction(items) => {
                self.0.write_milli.fetch_add(milli(transaction_units(capacity, items)), Ordering::SeqCst)
            }
        };
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
        self.0.requests.fetch_add(1, Ordering::SeqCst);
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

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        match context.output_or_error() {
            Some(Ok(output)) => {
                if let Some(o) = output.downcast_ref::<TransactWriteItemsOutput>() {
                    let items = cfg.load::<TransactionItems>().map(|t| t.0).unwrap_or(0);
                    self.add(o.consumed_capacity(), Kind::Transaction(items));
                } else if let Some(o) = output.downcast_ref::<GetItemOutput>() {
                    self.add(o.consumed_capacity.as_slice(), Kind::Read);
                } else if let Some(o) = output.downcast_ref::<QueryOutput>() {
                    self.add(o.consumed_capacity.as_slice(), Kind::Read);
                } else if let Some(o) = output.downcast_ref::<PutItemOutput>() {
                    self.add(o.consumed_capacity.as_slice(), Kind::Write);
                } else if let Some(o) = output.downcast_ref::<UpdateItemOutput>() {
                    self.add(o.consumed_capacity.as_slice(), Kind::Write);
                }
            }
            Some(Err(error)) => {
                let conflict = error
                    .as_operation_error()
                    .and_then(|e| e.downcast_ref::<TransactWriteItemsError>())
                    .and_then(|e| match e {
                        TransactWriteItemsError::TransactionCanceledException(t) => Some(t),
                        _ => None,
                    })
                    .is_some_and(|t| t.cancellation_reasons().iter().any(|r| r.code() == Some("TransactionConflict")));
                if conflict {
                    self.0.conflicts.fetch_add(1, Ordering::SeqCst);
                }
            }
            None => {}
        }
        Ok(())
    }
}

pub fn minus(a: Units, b: Units) -> Units {
    Units { read: a.read - b.read, write: a.write - b.write, requests: a.requests - b.requests }
}
