//! The items of a transaction on this table: a put, an update, a condition
//! check or a delete. Each asks for the item as it stood when its condition
//! failed, so a cancelled transaction says what was in its way (at no cost
//! in units).

use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{ConditionCheck, Delete, Put, TransactWriteItem};

use super::{Item, Store};
use crate::error::{Error, Result};

impl Store {
    /// Puts `item`, on `condition` if any.
    pub fn tx_put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem> {
        let put = Put::builder()
            .table_name(self.table())
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .return_values_on_condition_check_failure(Store::all_old())
            .build()
            .map_err(built)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Applies `update` (its key, expressions and condition) on this table.
    pub fn tx_update(&self, update: UpdateBuilder) -> Result<TransactWriteItem> {
        let update = update
            .table_name(self.table())
            .return_values_on_condition_check_failure(Store::all_old())
            .build()
            .map_err(built)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Writes nothing: the transaction goes through only if the item at
    /// `key` meets `condition`.
    pub fn tx_check(&self, key: Item, condition: &str) -> Result<TransactWriteItem> {
        let check = ConditionCheck::builder()
            .table_name(self.table())
            .set_key(Some(key))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(Store::all_old())
            .build()
            .map_err(built)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Deletes the item at `key`, on `condition` if any.
    pub fn tx_delete(&self, key: Item, condition: Option<&str>) -> Result<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(self.table())
            .set_key(Some(key))
            .set_condition_expression(condition.map(str::to_owned))
            .return_values_on_condition_check_failure(Store::all_old())
            .build()
            .map_err(built)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

fn built(e: aws_sdk_dynamodb::error::BuildError) -> Error {
    Error::Internal(e.to_string())
}
