//! Aggregates for operators, kept from the table's change stream (DynamoDB
//! Streams → the `stats` function), never on the request path.
//!
//! Each ledger change that moves a figure is counted exactly once: a batch
//! is applied as one transaction that also puts a mark per counted change
//! (`SEEN#<eventId>`, `attribute_not_exists`). A redelivered change finds its
//! mark, is dropped, and the rest is applied again. Counters are per time
//! bucket (hour, day, ISO week, month) and per operation; per-user usage
//! sits in its own items, sorted by spent in the `usage-by-spent` index.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::store::stream::Change;
use crate::store::stream::Image;
use crate::store::{key, mark_key, n, s, stats_pk, usage_pk, Item, Store, TxFailure, BROKEN_PK};
use contribution::{contribution, Contribution};

mod contribution;
mod period;

pub use period::{buckets, Period};
/// Marks outlive the stream's 24-hour retention, so any redelivery finds them.
const MARK_TTL_SECONDS: i64 = 2 * 86_400;
/// TransactWriteItems takes at most 100 items.
const MAX_TX_ITEMS: usize = 100;

/// What applying a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub counted: usize,
    pub duplicates: usize,
}

#[derive(Clone, Debug)]
pub struct Stats {
    store: Store,
}

type Fields = BTreeMap<&'static str, i64>;

#[derive(Default)]
struct Group {
    marks: Vec<String>,
    counters: BTreeMap<(String, String), Fields>,
    users: BTreeMap<(String, String), (String, Fields)>,
    /// Last balance state in this group per user: broken (with the image) or fine.
    broken: BTreeMap<String, Option<[(&'static str, i64); 6]>>,
}

impl Group {
    fn items(&self) -> usize {
        self.marks.len() + self.counters.len() + self.users.len() + self.broken.len()
    }

    fn add(&mut self, event_id: &str, c: &Contribution) {
        self.marks.push(event_id.to_owned());
        for bucket in buckets(Timestamp(c.at)) {
            if !c.op_fields.is_empty() {
                let op = c.operation.clone().unwrap_or_else(|| "unknown".into());
                let fields = self.counters.entry((stats_pk(&bucket), format!("OP#{op}"))).or_default();
                for (name, v) in &c.op_fields {
                    *fields.entry(name).or_default() += v;
                }
            }
            if !c.total_fields.is_empty() {
                let fields = self.counters.entry((stats_pk(&bucket), "TOTAL".into())).or_default();
                for (name, v) in &c.total_fields {
                    *fields.entry(name).or_default() += v;
                }
            }
            if let (Some(user), false) = (&c.user, c.user_fields.is_empty()) {
                let entry = self
                    .users
                    .entry((usage_pk(&bucket), format!("USER#{user}")))
                    .or_insert_with(|| (bucket.clone(), Fields::new()));
                for (name, v) in &c.user_fields {
                    *entry.1.entry(name).or_default() += v;
                }
            }
        }
    }
}

impl Stats {
    pub fn new(store: Store) -> Stats {
        Stats { store }
    }

    /// Applies a batch of stream records; safe to call again with any of
    /// them (a redelivered batch counts nothing twice).
    pub async fn apply(&self, changes: &[Change], now: Timestamp) -> Result<Applied> {
        let mut applied = Applied::default();
        let mut group = Group::default();
        let mut pending: Vec<(&Change, Contribution)> = Vec::new();
        for change in changes {
            if group.items() + 1 > MAX_TX_ITEMS {
                let (counted, dupes) = self.flush(std::mem::take(&mut group), &pending, now).await?;
                applied.counted += counted;
                applied.duplicates += dupes;
                pending.clear();
            }
            self.note_balance(change, &mut group);
            if group.marks.contains(&change.event_id) {
                applied.duplicates += 1;
                continue;
            }
            if let Some(c) = contribution(change) {
                // Each contribution touches at most 8 counters and a mark.
                if group.items() + 9 > MAX_TX_ITEMS {
                    let (counted, dupes) = self.flush(std::mem::take(&mut group), &pending, now).await?;
                    applied.counted += counted;
                    applied.duplicates += dupes;
                    pending.clear();
                }
                group.add(&change.event_id, &c);
                pending.push((change, c));
            }
        }
        let (counted, dupes) = self.flush(group, &pending, now).await?;
        applied.counted += counted;
        applied.duplicates += dupes;
        Ok(applied)
    }

    /// A balance image that does not add up flags its user for the health
    /// check; one that adds up again clears the flag.
    fn note_balance(&self, change: &Change, group: &mut Group) {
        let Some(new) = Image::read(&change.new).filter(|i| i.is("balance")) else { return };
        let (Some(user), Some(raw)) = (new.user_id.clone(), change.new.as_ref()) else { return };
        let was_broken = change.old.as_ref().is_some_and(|o| !Image::adds_up(o));
        if !Image::adds_up(raw) {
            group.broken.insert(user, Some(crate::store::signed_figures(&raw.clone().into())));
        } else if was_broken || group.broken.contains_key(&user) {
            group.broken.insert(user, None);
        }
    }

    /// Writes a group in one transaction. Marks that exist already are
    /// redeliveries: their changes are dropped and the rest is written again.
    async fn flush(
        &self,
        mut group: Group,
        contributions: &[(&Change, Contribution)],
        now: Timestamp,
    ) -> Result<(usize, usize)> {
        let mut duplicates = 0;
        // Counters are shared by every stream shard's batches: be patient
        // with conflicts (a failed batch is retried whole anyway).
        for attempt in 0..30u32 {
            if group.items() == 0 {
                return Ok((0, duplicates));
            }
            let items = self.items(&group, now)?;
            match self.store.transact(items, None).await {
                Ok(()) => return Ok((group.marks.len(), duplicates)),
                Err(TxFailure::Cancelled(reasons)) => {
                    let seen: HashSet<String> = group
                        .marks
                        .iter()
                        .zip(&reasons)
                        .filter(|(_, r)| r.condition_failed())
                        .map(|(mark, _)| mark.clone())
                        .collect();
                    if seen.is_empty() {
                        let jitter = rand::random::<u64>() % (20 + 20 * u64::from(attempt.min(10)));
                        tokio::time::sleep(Duration::from_millis(5 + jitter)).await;
                        continue;
                    }
                    duplicates += seen.len();
                    let mut rebuilt = Group { broken: std::mem::take(&mut group.broken), ..Default::default() };
                    for (change, c) in contributions {
                        if group.marks.contains(&change.event_id) && !seen.contains(&change.event_id) {
                            rebuilt.add(&change.event_id, c);
                        }
                    }
                    group = rebuilt;
                }
                Err(TxFailure::Store(e)) => return Err(e),
            }
        }
        Err(Error::Unavailable("stats batch kept conflicting".into()))
    }

    fn items(&self, group: &Group, now: Timestamp) -> Result<Vec<TransactWriteItem>> {
        let store = &self.store;
        let mut items = Vec::with_capacity(group.items());
        for mark in &group.marks {
            let mut item = mark_key(mark);
            item.insert("ttl".into(), n(now.unix_seconds() + MARK_TTL_SECONDS));
            items.push(store.tx_put(item, Some("attribute_not_exists(pk)"))?);
        }
        for ((pk, sk), fields) in &group.counters {
            items.push(store.tx_update(add_update(pk, sk, fields, None))?);
        }
        for ((pk, sk), (bucket, fields)) in &group.users {
            let user = sk.trim_start_matches("USER#");
            items.push(store.tx_update(add_update(pk, sk, fields, Some((bucket, user))))?);
        }
        for (user, state) in &group.broken {
            let item_key = key(BROKEN_PK.into(), &format!("USER#{user}"));
            let item = match state {
                Some(figures) => {
                    let mut item: Item = item_key;
                    item.insert("userId".into(), s(user.as_str()));
                    for (name, value) in figures {
                        item.insert((*name).into(), n(value));
                    }
                    item.insert("at".into(), n(now.millis()));
                    store.tx_put(item, None)?
                }
                None => store.tx_delete(item_key, None)?,
            };
            items.push(item);
        }
        Ok(items)
    }
}

/// Adds `fields` to the counters of one item (creating it); a usage item
/// also carries its bucket and user, for the usage index.
fn add_update(
    pk: &str,
    sk: &str,
    fields: &Fields,
    usage: Option<(&String, &str)>,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    let mut update = Update::builder().set_key(Some(key(pk.to_owned(), sk)));
    let mut adds = Vec::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        adds.push(format!("#f{i} :v{i}"));
        update = update
            .expression_attribute_names(format!("#f{i}"), *name)
            .expression_attribute_values(format!(":v{i}"), AttributeValue::N(value.to_string()));
    }
    let mut expression = format!("ADD {}", adds.join(", "));
    if let Some((bucket, user)) = usage {
        // The usage index sorts a bucket's users by `spent`.
        expression.push_str(" SET usageBucket = :bucket, userId = :user");
        update = update
            .expression_attribute_values(":bucket", s(bucket.as_str()))
            .expression_attribute_values(":user", s(user));
        if !fields.contains_key("spent") {
            expression = expression.replacen("ADD ", "ADD spent :zero, ", 1);
            update = update.expression_attribute_values(":zero", n(0));
        }
    }
    update.update_expression(expression)
}
