//! Take-backs parked under a payment until its purchase is there: listed
//! and forgotten here (parking one is a plain put).

use super::{payment_pk, sdk_error, Item, Store};
use crate::error::Result;

impl Store {
    /// The take-backs parked under `payment`, read consistently (one may
    /// have been parked a moment ago).
    pub async fn parked_take_backs(&self, payment: &str) -> Result<Vec<Item>> {
        let out =
            self.query_prefix(payment_pk(payment), "PARKED#").consistent_read(true).send().await.map_err(sdk_error)?;
        Ok(out.items.unwrap_or_default())
    }

    /// Deletes a parked take-back once applied (unconditionally: applying
    /// it twice is harmless).
    pub async fn forget_parked(&self, parked_key: Item) -> Result<()> {
        self.client.delete_item().table_name(&self.table).set_key(Some(parked_key)).send().await.map_err(sdk_error)?;
        Ok(())
    }
}
