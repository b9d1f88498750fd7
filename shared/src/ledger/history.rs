//! A user's history, newest first, a page at a time.

use base64::Engine as _;

use super::Ledger;
use crate::domain::{HistoryPage, UserId};
use crate::error::{Error, Result};
use crate::validate::{Invalid, Problem};

impl Ledger {
    /// History, newest first. The cursor is opaque to callers.
    pub async fn history(&self, user: &UserId, limit: u32, cursor: Option<&str>) -> Result<HistoryPage> {
        let before = cursor.map(|c| decode_cursor(c, "TX#")).transpose()?;
        let (items, last) = self.store.query_entries(user, limit, before).await?;
        let next_cursor = last.map(|sk| encode_cursor(&sk));
        Ok(HistoryPage { items, next_cursor })
    }
}

/// A page's cursor: the sort key of its last item, opaque to callers.
pub(crate) fn encode_cursor(sk: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk)
}

/// The sort key a cursor names; refused unless it is one of `prefix`'s.
pub(crate) fn decode_cursor(cursor: &str, prefix: &str) -> Result<String> {
    let invalid = || Error::from(Invalid::new("cursor", Problem::WrongType));
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let sk = String::from_utf8(bytes).map_err(|_| invalid())?;
    if sk.starts_with(prefix) && sk.len() < 128 {
        Ok(sk)
    } else {
        Err(invalid())
    }
}
