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

use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;

use crate::domain::{HoldStatus, Timestamp};
use crate::error::{Error, Result};
use crate::store::{key, n, s, Item, Store, TxFailure};

pub use crate::store::USAGE_INDEX;
/// Marks outlive the stream's 24-hour retention, so any redelivery finds them.
const MARK_TTL_SECONDS: i64 = 2 * 86_400;
/// TransactWriteItems takes at most 100 items.
const MAX_TX_ITEMS: usize = 100;

/// One record of the change stream, whatever delivered it (Lambda's event,
/// or the dev server reading DynamoDB Local's stream).
#[derive(Clone, Debug)]
pub struct Change {
    pub event_id: String,
    pub old: Option<serde_dynamo::Item>,
    pub new: Option<serde_dynamo::Item>,
}

impl Change {
    /// A record as Lambda's DynamoDB Streams event carries it: an image the
    /// record has not (an insert's old, a removal's new) comes empty.
    pub fn of_images(event_id: String, old: serde_dynamo::Item, new: serde_dynamo::Item) -> Change {
        Change {
            event_id,
            old: Some(old).filter(|image| !image.is_empty()),
            new: Some(new).filter(|image| !image.is_empty()),
        }
    }
}

/// The attributes of any item the aggregates care about.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Image {
    pk: String,
    entity: Option<String>,
    /// A hold's status, or a delivery's (read as text: each entity has its own words).
    #[serde(rename = "status")]
    status_text: Option<String>,
    user_id: Option<String>,
    operation: Option<String>,
    amount: u64,
    captured_amount: u64,
    captured_units: u64,
    released_amount: u64,
    created_at: i64,
    settled_at: Option<i64>,
    at: i64,
    late_success: bool,
    refunded_at: Option<i64>,
    events: Vec<EventAt>,
    // A balance's figures that only some writes move.
    expired: i64,
    debited: i64,
    granted: i64,
    plan_period: Option<i64>,
    updated_at: i64,
    // Stripe: verified events and purchases.
    result: Option<String>,
    credits: i64,
    taken_back: i64,
    unrecoverable: i64,
    // Outgoing events and webhook deliveries.
    bus: Option<String>,
    occurred_at: i64,
    attempts: i64,
    log: Vec<EventAt>,
}

impl Image {
    fn read(item: &Option<serde_dynamo::Item>) -> Option<Image> {
        item.as_ref().and_then(|i| serde_dynamo::from_item(i.clone()).ok())
    }

    fn status(&self) -> Option<HoldStatus> {
        let text = self.status_text.as_deref()?;
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }

    fn is(&self, entity: &str) -> bool {
        self.entity.as_deref() == Some(entity)
    }

    fn adds_up(item: &serde_dynamo::Item) -> bool {
        crate::store::balance_adds_up(&item.clone().into())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct EventAt {
    at: i64,
}

/// The counters one change moves: per operation (or `TOTAL`) and per user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Contribution {
    at: i64,
    operation: Option<String>,
    op_fields: Vec<(&'static str, i64)>,
    total_fields: Vec<(&'static str, i64)>,
    user: Option<String>,
    user_fields: Vec<(&'static str, i64)>,
}

fn contribution(change: &Change) -> Option<Contribution> {
    let new = Image::read(&change.new);
    let old = Image::read(&change.old);
    let image = new.as_ref()?;
    let mut c = Contribution { operation: image.operation.clone(), user: image.user_id.clone(), ..Default::default() };
    if image.is("hold") {
        let amount = image.amount as i64;
        match (old.as_ref().and_then(|o| o.status()), image.status()) {
            (None, Some(HoldStatus::Pending)) => {
                c.at = image.created_at;
                c.op_fields = vec![("placed", 1), ("reserved", amount)];
                c.user_fields = vec![("holds", 1)];
            }
            (Some(HoldStatus::Pending), Some(HoldStatus::Pending)) => {
                // A non-final capture (or an extend or a link: nothing to count).
                let (units, credits) = captured_since(old.as_ref(), image);
                if units == 0 && credits == 0 {
                    return None;
                }
                c.at = change_at(image);
                c.op_fields = vec![("captures", 1), ("captured", credits), ("capturedUnits", units)];
                c.user_fields = vec![("spent", credits)];
            }
            (Some(HoldStatus::Pending) | None, Some(HoldStatus::Confirmed)) => {
                c.at = image.settled_at.unwrap_or(image.created_at);
                let (units, credits) = captured_since(old.as_ref(), image);
                c.op_fields = vec![
                    ("confirmed", 1),
                    ("captured", credits),
                    ("capturedUnits", units),
                    ("returned", image.released_amount as i64),
                ];
                c.user_fields = vec![("spent", credits)];
                if old.is_none() {
                    // Placed and settled in one write (a reserve that met a parked delivery).
                    c.op_fields.extend([("placed", 1), ("reserved", amount)]);
                    c.user_fields.push(("holds", 1));
                }
            }
            (Some(HoldStatus::Pending) | None, Some(status @ (HoldStatus::Released | HoldStatus::Expired))) => {
                c.at = image.settled_at.unwrap_or(image.created_at);
                let name = if status == HoldStatus::Released { "released" } else { "expired" };
                // Captured before the release stays spent: only the rest returns.
                c.op_fields = vec![(name, 1), ("returned", image.released_amount as i64)];
                if old.is_none() {
                    c.op_fields.extend([("placed", 1), ("reserved", amount)]);
                    c.user_fields.push(("holds", 1));
                }
            }
            (Some(HoldStatus::Confirmed | HoldStatus::Released | HoldStatus::Expired), Some(HoldStatus::Refunded)) => {
                c.at = image.refunded_at.or(image.settled_at).unwrap_or(image.created_at);
                let refunded = image.captured_amount as i64;
                c.op_fields = vec![("refunded", 1), ("refundedCredits", refunded)];
                c.user_fields = vec![("spent", -refunded)];
            }
            _ => return None,
        }
        return Some(c);
    }
    if image.is("balance") {
        return balance_contribution(old.as_ref()?, image);
    }
    if image.is("event") || image.is("webhookDelivery") {
        return outgoing_contribution(old.as_ref(), image);
    }
    if image.is("purchase") {
        let fields: Vec<(&'static str, i64)> = match old.as_ref() {
            None => vec![("purchases", 1), ("purchasedCredits", image.credits)],
            Some(o) => vec![
                ("takenBack", image.taken_back - o.taken_back),
                ("unrecoverable", image.unrecoverable - o.unrecoverable),
            ],
        };
        let fields: Vec<_> = fields.into_iter().filter(|(_, v)| *v != 0).collect();
        return (!fields.is_empty()).then(|| Contribution {
            at: now_of(image),
            total_fields: fields,
            ..Default::default()
        });
    }
    if old.is_some() {
        return None;
    }
    if image.is("grant") {
        return Some(Contribution {
            at: image.at,
            total_fields: vec![("grants", 1), ("granted", image.amount as i64)],
            ..Default::default()
        });
    }
    if image.is("stripeEvent") {
        let result = match image.result.as_deref() {
            Some("granted") => "stripeGranted",
            Some("taken_back") => "stripeTakenBack",
            Some("parked") => "stripeParked",
            Some("ignored") => "stripeIgnored",
            _ => "stripeDuplicates",
        };
        return Some(Contribution {
            at: image.at,
            total_fields: vec![("stripeEvents", 1), (result, 1)],
            ..Default::default()
        });
    }
    if image.is("delivery") && image.late_success {
        return Some(Contribution { at: image.at, total_fields: vec![("lateSuccess", 1)], ..Default::default() });
    }
    None
}

/// Credits a balance write expired (lots, or held credits back to an expired
/// lot), debited, or granted as a plan's allowance (the writes that move
/// `planPeriod`): the per-period figures no other item carries.
fn balance_contribution(old: &Image, new: &Image) -> Option<Contribution> {
    let refilled = if new.plan_period != old.plan_period { new.granted - old.granted } else { 0 };
    let fields: Vec<(&'static str, i64)> =
        [("lotExpired", new.expired - old.expired), ("debited", new.debited - old.debited), ("planRefilled", refilled)]
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .collect();
    (!fields.is_empty()).then(|| Contribution { at: new.updated_at, total_fields: fields, ..Default::default() })
}

/// When a purchase's change happened: its last take-back, else its grant.
fn now_of(image: &Image) -> i64 {
    if image.updated_at > 0 {
        image.updated_at
    } else {
        image.at
    }
}

/// Events recorded and published, and webhook attempts (delivered or
/// failed), and deliveries that failed their whole schedule.
fn outgoing_contribution(old: Option<&Image>, new: &Image) -> Option<Contribution> {
    let mut fields: Vec<(&'static str, i64)> = Vec::new();
    let mut at = new.occurred_at;
    if new.is("event") {
        if old.is_none() {
            fields.push(("eventsRecorded", 1));
        }
        let published = |i: Option<&Image>| i.and_then(|i| i.bus.as_deref()) == Some("published");
        if published(Some(new)) && !published(old) {
            fields.push(("eventsPublished", 1));
        }
    } else {
        let tried = new.attempts - old.map_or(0, |o| o.attempts);
        if tried <= 0 {
            return None;
        }
        at = new.log.last().map_or(new.created_at, |a| a.at);
        let delivered = new.status_text.as_deref() == Some("delivered");
        let failed = new.status_text.as_deref() == Some("failed");
        fields.push(("webhookAttempts", tried));
        fields.push(("webhookDelivered", i64::from(delivered)));
        fields.push(("webhookAttemptsFailed", tried - i64::from(delivered)));
        fields.push(("webhookDeliveriesFailed", i64::from(failed)));
        fields.retain(|(_, v)| *v != 0);
    }
    (!fields.is_empty()).then(|| Contribution { at, total_fields: fields, ..Default::default() })
}

/// Units and credits captured between two images of a hold.
fn captured_since(old: Option<&Image>, new: &Image) -> (i64, i64) {
    let (units, credits) = old.map_or((0, 0), |o| (o.captured_units, o.captured_amount));
    (new.captured_units as i64 - units as i64, new.captured_amount as i64 - credits as i64)
}

/// When a change to a pending hold happened: its newest event.
fn change_at(image: &Image) -> i64 {
    image.events.iter().map(|e| e.at).max().unwrap_or(image.created_at)
}

/// The buckets a moment falls in, coarsest last.
pub fn buckets(at: Timestamp) -> [String; 4] {
    let t = DateTime::<Utc>::from_timestamp_millis(at.millis()).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let week = t.iso_week();
    [
        format!("H#{}", t.format("%Y-%m-%dT%H")),
        format!("D#{}", t.format("%Y-%m-%d")),
        format!("W#{}-W{:02}", week.year(), week.week()),
        format!("M#{}", t.format("%Y-%m")),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
}

impl Period {
    pub fn parse(raw: &str) -> Option<Period> {
        match raw {
            "hour" => Some(Period::Hour),
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The bucket `steps` periods before `at`.
    pub fn bucket_before(self, at: Timestamp, steps: i64) -> String {
        let millis = match self {
            Period::Hour => 3_600_000 * steps,
            Period::Day => 86_400_000 * steps,
            Period::Week => 7 * 86_400_000 * steps,
            Period::Month => 0,
        };
        if self == Period::Month {
            let t = DateTime::<Utc>::from_timestamp_millis(at.millis()).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
            let months = t.year() as i64 * 12 + t.month0() as i64 - steps;
            return format!("M#{:04}-{:02}", months.div_euclid(12), months.rem_euclid(12) + 1);
        }
        buckets(Timestamp(at.millis() - millis))[self.index()].clone()
    }
}

/// Keys of the aggregate items.
pub fn stats_pk(bucket: &str) -> String {
    format!("STATS#{bucket}")
}

pub fn usage_pk(bucket: &str) -> String {
    format!("USAGE#{bucket}")
}

pub const BROKEN_PK: &str = "HEALTH#broken";
pub const HEALTH_PK: &str = "HEALTH";

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
        let table = self.store.table();
        let built = |e: aws_sdk_dynamodb::error::BuildError| Error::Internal(e.to_string());
        let mut items = Vec::with_capacity(group.items());
        for mark in &group.marks {
            let mut item: Item = key(format!("SEEN#{mark}"), "SEEN");
            item.insert("ttl".into(), n(now.unix_seconds() + MARK_TTL_SECONDS));
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(built)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for ((pk, sk), fields) in &group.counters {
            items.push(add_update(table, pk, sk, fields, None)?);
        }
        for ((pk, sk), (bucket, fields)) in &group.users {
            let user = sk.trim_start_matches("USER#");
            items.push(add_update(table, pk, sk, fields, Some((bucket, user)))?);
        }
        for (user, state) in &group.broken {
            let item_key = key(BROKEN_PK.into(), &format!("USER#{user}"));
            let item = match state {
                Some(figures) => {
                    let mut item = item_key;
                    item.insert("userId".into(), s(user.as_str()));
                    for (name, value) in figures {
                        item.insert((*name).into(), n(value));
                    }
                    item.insert("at".into(), n(now.millis()));
                    TransactWriteItem::builder()
                        .put(Put::builder().table_name(table).set_item(Some(item)).build().map_err(built)?)
                        .build()
                }
                None => TransactWriteItem::builder()
                    .delete(Delete::builder().table_name(table).set_key(Some(item_key)).build().map_err(built)?)
                    .build(),
            };
            items.push(item);
        }
        Ok(items)
    }
}

fn add_update(
    table: &str,
    pk: &str,
    sk: &str,
    fields: &Fields,
    usage: Option<(&String, &str)>,
) -> Result<TransactWriteItem> {
    let mut update = Update::builder().table_name(table).set_key(Some(key(pk.to_owned(), sk)));
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
    let update = update.update_expression(expression).build().map_err(|e| Error::Internal(e.to_string()))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_of_a_moment() {
        // 2026-11-22T18:04:05Z is a Sunday of ISO week 47.
        let b = buckets(Timestamp(1_795_370_645_000));
        assert_eq!(b, ["H#2026-11-22T18", "D#2026-11-22", "W#2026-W47", "M#2026-11"].map(String::from));
        assert_eq!(Period::Month.bucket_before(Timestamp(1_795_370_645_000), 11), "M#2025-12");
        assert_eq!(Period::Hour.bucket_before(Timestamp(1_795_370_645_000), 19), "H#2026-11-21T23");
    }
}
