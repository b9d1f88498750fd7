//! What operators ask, answered from the aggregates in a bounded number of
//! reads: none of these grows with the number of users, holds or changes.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::domain::Timestamp;
use crate::error::Result;
use crate::prices::Catalog;
use crate::stats::{buckets, Period};
use crate::store::{
    attr_number, attr_text, key, shard_key, stats_pk, DueQuery, DueRead, Item, Store, BROKEN_PK, HEALTH_PK,
    PENDING_SHARDS,
};

/// A pending hold this long past `expiresAt` should have been swept.
const SWEEP_GRACE_MS: i64 = 120_000;
/// Per shard, the most overdue holds counted (a bound on the reads).
const OVERDUE_LIMIT: i32 = 100;
const BROKEN_LIMIT: i32 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Warning,
    Critical,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub value: f64,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Health {
    pub status: Status,
    pub checks: Vec<Check>,
}

/// Figures of one bucket, summed over operations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub bucket: String,
    pub holds_placed: i64,
    pub confirmed: i64,
    pub released: i64,
    pub expired: i64,
    pub refunded: i64,
    pub credits_reserved: i64,
    pub credits_captured: i64,
    pub credits_returned: i64,
    pub credits_refunded: i64,
    pub grants: i64,
    pub credits_granted: i64,
    /// Plan allowances granted (not in `creditsGranted`, which counts grants).
    pub credits_plan_refilled: i64,
    /// Credits that expired: lots at their expiry, held credits back to an
    /// expired lot.
    pub credits_expired: i64,
    pub credits_debited: i64,
    pub late_successes: i64,
    /// Outgoing events recorded (each once, however often the stream delivered its change).
    pub events_recorded: i64,
    /// Events EventBridge accepted (0 where no bus is configured).
    pub events_published: i64,
    /// Webhook attempts that got a 2xx.
    pub webhooks_delivered: i64,
    /// Webhook attempts that failed (each is retried on the schedule).
    pub webhook_attempts_failed: i64,
    /// Deliveries that failed every attempt of the schedule.
    pub webhooks_failed: i64,
    /// Stripe Checkout purchases granted, and their credits.
    pub purchases: i64,
    pub credits_purchased: i64,
    /// Credits refunds and disputes took back, and of those the credits
    /// users had already spent (no debit recovers them).
    pub credits_taken_back: i64,
    pub credits_unrecoverable: i64,
    /// Verified Stripe events answered `ignored` (an event type not handled,
    /// a session with no user or no pack, a pack not bought on its terms —
    /// another amount or currency, not free — an event of the other mode, …).
    pub stripe_ignored: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationFigures {
    pub operation: String,
    /// Confirmed holds.
    pub count: i64,
    /// Credits captured.
    pub credits: i64,
    pub average_units: f64,
    pub placed: i64,
    pub released: i64,
    pub expired: i64,
    /// Today's catalog price, for comparison with what was charged.
    pub unit_cost: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserFigures {
    pub user_id: String,
    pub spent: i64,
    pub holds: i64,
}

#[derive(Clone, Debug)]
pub struct Monitor {
    store: Store,
}

fn number(item: &Item, name: &str) -> i64 {
    attr_number(item, name)
}

fn text(item: &Item, name: &str) -> String {
    attr_text(item, name).to_owned()
}

impl Monitor {
    pub fn new(store: Store) -> Monitor {
        Monitor { store }
    }

    /// The counter items of one bucket (one per operation, plus `TOTAL`).
    async fn bucket_items(&self, bucket: &str) -> Result<Vec<Item>> {
        self.store.partition(stats_pk(bucket), None).await
    }

    pub async fn totals(&self, bucket: &str) -> Result<Totals> {
        let mut t = Totals { bucket: bucket.to_owned(), ..Default::default() };
        for item in self.bucket_items(bucket).await? {
            t.holds_placed += number(&item, "placed");
            t.confirmed += number(&item, "confirmed");
            t.released += number(&item, "released");
            t.expired += number(&item, "expired");
            t.refunded += number(&item, "refunded");
            t.credits_reserved += number(&item, "reserved");
            t.credits_captured += number(&item, "captured");
            t.credits_returned += number(&item, "returned");
            t.credits_refunded += number(&item, "refundedCredits");
            t.grants += number(&item, "grants");
            t.credits_granted += number(&item, "granted");
            t.credits_plan_refilled += number(&item, "planRefilled");
            t.credits_expired += number(&item, "lotExpired");
            t.credits_debited += number(&item, "debited");
            t.late_successes += number(&item, "lateSuccess");
            t.events_recorded += number(&item, "eventsRecorded");
            t.events_published += number(&item, "eventsPublished");
            t.webhooks_delivered += number(&item, "webhookDelivered");
            t.webhook_attempts_failed += number(&item, "webhookAttemptsFailed");
            t.webhooks_failed += number(&item, "webhookDeliveriesFailed");
            t.purchases += number(&item, "purchases");
            t.credits_purchased += number(&item, "purchasedCredits");
            t.credits_taken_back += number(&item, "takenBack");
            t.credits_unrecoverable += number(&item, "unrecoverable");
            t.stripe_ignored += number(&item, "stripeIgnored");
        }
        Ok(t)
    }

    pub async fn overview(&self, period: Period, now: Timestamp) -> Result<Value> {
        let totals = self.totals(&buckets(now)[period.index()]).await?;
        let sweep = self.store.get(key(HEALTH_PK.into(), "SWEEP")).await?;
        Ok(json!({"period": period_name(period), "totals": totals, "lastSweep": sweep.map(|i| sweep_json(&i))}))
    }

    /// The last `count` buckets of the period, oldest first.
    pub async fn usage(&self, period: Period, now: Timestamp) -> Result<Value> {
        let count = match period {
            Period::Hour => 24,
            Period::Day => 14,
            Period::Week => 8,
            Period::Month => 6,
        };
        let mut series = Vec::with_capacity(count);
        for step in (0..count as i64).rev() {
            series.push(self.totals(&period.bucket_before(now, step)).await?);
        }
        Ok(json!({"period": period_name(period), "buckets": series}))
    }

    pub async fn top_users(&self, period: Period, now: Timestamp, limit: u32) -> Result<Vec<UserFigures>> {
        let bucket = &buckets(now)[period.index()];
        let top = self.store.top_spenders(bucket, limit).await?;
        Ok(top
            .iter()
            .map(|i| UserFigures { user_id: text(i, "userId"), spent: number(i, "spent"), holds: number(i, "holds") })
            .collect())
    }

    pub async fn models(&self, period: Period, now: Timestamp, catalog: &Catalog) -> Result<Vec<OperationFigures>> {
        let mut by_op: BTreeMap<String, OperationFigures> = BTreeMap::new();
        for item in self.bucket_items(&buckets(now)[period.index()]).await? {
            let Some(op) = text(&item, "sk").strip_prefix("OP#").map(str::to_owned) else { continue };
            let count = number(&item, "confirmed");
            let units = number(&item, "capturedUnits");
            by_op.insert(
                op.clone(),
                OperationFigures {
                    unit_cost: catalog.unit_cost(&op).map(|c| c.get()),
                    operation: op,
                    count,
                    credits: number(&item, "captured"),
                    average_units: if count > 0 { units as f64 / count as f64 } else { 0.0 },
                    placed: number(&item, "placed"),
                    released: number(&item, "released"),
                    expired: number(&item, "expired"),
                },
            );
        }
        Ok(by_op.into_values().collect())
    }

    pub async fn health(&self, now: Timestamp) -> Result<Health> {
        let mut checks = Vec::new();

        let overdue = self.overdue_holds(now).await?;
        checks.push(Check {
            name: "expired_holds_not_swept",
            status: match overdue {
                0 => Status::Healthy,
                n if n < 100 => Status::Warning,
                _ => Status::Critical,
            },
            value: overdue as f64,
            // The due-work index also lists balances with a lot expiry or a
            // refill due: work the sweep left undone, like a hold.
            detail: format!(
                "{overdue} pending holds (or balances with a lot expiry or refill due) more than 2 minutes overdue (counted up to 100 a shard)"
            ),
        });

        let broken = self.broken_balances().await?;
        checks.push(Check {
            name: "inconsistent_balances",
            status: if broken.is_empty() { Status::Healthy } else { Status::Critical },
            value: broken.len() as f64,
            detail: if broken.is_empty() {
                "every balance changed so far adds up".into()
            } else {
                format!("available + reserved + spent + expired + debited != granted for: {}", broken.join(", "))
            },
        });

        let today = self.totals(&buckets(now)[Period::Day.index()]).await?;
        let settled = today.confirmed + today.released + today.expired;
        let failed = today.released + today.expired;
        let rate = if settled > 0 { failed as f64 / settled as f64 } else { 0.0 };
        checks.push(Check {
            name: "settlement_failure_rate",
            status: match (settled, rate) {
                (s, _) if s < 20 => Status::Healthy,
                (_, r) if r > 0.5 => Status::Critical,
                (_, r) if r > 0.25 => Status::Warning,
                _ => Status::Healthy,
            },
            value: rate,
            detail: format!("{failed} of {settled} holds settled today were released or expired"),
        });

        checks.push(Check {
            name: "late_successes",
            status: if today.late_successes > 0 { Status::Warning } else { Status::Healthy },
            value: today.late_successes as f64,
            detail: "provider successes today for holds that had already expired (not charged)".into(),
        });

        let sweep = self.store.get(key(HEALTH_PK.into(), "SWEEP")).await?;
        let (lag, detail) = match &sweep {
            Some(item) => {
                let lag = (now.millis() - number(item, "lastRunAt")).max(0) as f64 / 1000.0;
                (Some(lag), format!("last sweep {lag:.0} s ago"))
            }
            None => (None, "no sweep has run yet".to_owned()),
        };
        checks.push(Check {
            name: "sweep_lag",
            status: match lag {
                None => Status::Warning,
                Some(l) if l > 600.0 => Status::Critical,
                Some(l) if l > 180.0 => Status::Warning,
                Some(_) => Status::Healthy,
            },
            value: lag.unwrap_or(-1.0),
            detail,
        });

        let status = checks.iter().map(|c| c.status).max().unwrap_or(Status::Healthy);
        Ok(Health { status, checks })
    }

    async fn overdue_holds(&self, now: Timestamp) -> Result<u64> {
        let mut total = 0u64;
        for shard in 0..PENDING_SHARDS {
            // One page of counts a shard: a bound on the reads, not a census.
            let query = DueQuery {
                shard: shard_key(shard),
                until: now.millis() - SWEEP_GRACE_MS,
                read: DueRead::Count,
                page: Some(OVERDUE_LIMIT),
                at_most: 0,
            };
            total += self.store.list_due(query, |_| None::<()>).await?.count;
        }
        Ok(total)
    }

    async fn broken_balances(&self) -> Result<Vec<String>> {
        let flags = self.store.partition(BROKEN_PK.to_owned(), Some(BROKEN_LIMIT)).await?;
        Ok(flags.iter().map(|i| text(i, "userId")).collect())
    }

    pub async fn dashboard(&self, period: Period, now: Timestamp, limit: u32, catalog: &Catalog) -> Result<Value> {
        Ok(json!({
            "period": period_name(period),
            "generatedAt": now,
            "overview": self.overview(period, now).await?,
            "health": self.health(now).await?,
            "usage": self.usage(period, now).await?,
            "topUsers": {"period": period_name(period), "users": self.top_users(period, now, limit).await?},
            "models": {"period": period_name(period), "operations": self.models(period, now, catalog).await?},
        }))
    }
}

pub fn period_name(period: Period) -> &'static str {
    match period {
        Period::Hour => "hour",
        Period::Day => "day",
        Period::Week => "week",
        Period::Month => "month",
    }
}

fn sweep_json(item: &Item) -> Value {
    json!({
        "lastRunAt": Timestamp(number(item, "lastRunAt")),
        "expired": number(item, "expired"),
        "remaining": number(item, "remaining"),
        "errors": number(item, "errors"),
        "durationMs": number(item, "durationMs"),
    })
}
