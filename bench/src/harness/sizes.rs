//! Item sizes by DynamoDB's rules, read back from the table, and the write
//! units DynamoDB adds per KB beyond what the meter counts.

use aws_sdk_dynamodb::types::AttributeValue;
use credits_shared::domain::UserId;
use credits_shared::store::{key, user_pk, Item, Store, BALANCE_SK};

use super::meter::Units;

/// An attribute value's size as DynamoDB bills it: names and strings by
/// their UTF-8 length, a number by about one byte per two digits plus one,
/// a list or map 3 bytes plus 1 an element plus its elements.
pub fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => {
            let digits = number.trim_start_matches('-').replace('.', "");
            digits.trim_matches('0').len().div_ceil(2) + 1
        }
        AttributeValue::B(bytes) => bytes.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(list) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        AttributeValue::M(map) => 3 + map.iter().map(|(k, v)| 1 + k.len() + value_size(v)).sum::<usize>(),
        AttributeValue::Ss(set) => set.iter().map(String::len).sum(),
        AttributeValue::Ns(set) => set.iter().map(|n| value_size(&AttributeValue::N(n.clone()))).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len()).sum(),
        _ => 0,
    }
}

/// An item's size as DynamoDB bills it.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

/// The size in bytes of a hold's item as stored.
pub async fn hold_size(store: &Store, id: uuid::Uuid) -> Result<usize, String> {
    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .set_key(Some(key(credits_shared::store::hold_pk(id), "HOLD")))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?
        .item
        .ok_or("the hold is missing")?;
    Ok(item.iter().map(|(name, value)| name.len() + value_size(value)).sum())
}

/// The size in bytes of `u`'s balance item as stored (DynamoDB's rules).
pub async fn balance_bytes(store: &Store, u: &UserId) -> Result<usize, String> {
    let item = store
        .client()
        .get_item()
        .table_name(store.table())
        .set_key(Some(key(user_pk(u), BALANCE_SK)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?
        .item
        .ok_or("the balance is missing")?;
    Ok(item.iter().map(|(name, value)| name.len() + value_size(value)).sum())
}

/// What DynamoDB adds to a transactional write of an item of `bytes`
/// beyond the 2 WCU the meter counts: 2 WCU a started KB past the first.
fn beyond_first_kb(bytes: usize) -> f64 {
    2.0 * bytes.div_ceil(1024).saturating_sub(1) as f64
}

/// `used` with one transactional write each of items whose larger image
/// was `bytes` priced per KB.
pub fn per_kb(mut used: Units, bytes: &[usize]) -> Units {
    used.write += bytes.iter().map(|b| beyond_first_kb(*b)).sum::<f64>();
    used
}
