//! Reads of recorded events beyond a plain get.

use super::{sdk_error, user_pk, Item, Store};
use crate::domain::UserId;
use crate::error::Result;

impl Store {
    /// A user's event items, newest first, at most `limit`.
    pub async fn recent_events(&self, user: &UserId, limit: u32) -> Result<Vec<Item>> {
        let out = self
            .query_prefix(user_pk(user), "EVENT#")
            .scan_index_forward(false)
            .limit(limit as i32)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.items.unwrap_or_default())
    }
}
