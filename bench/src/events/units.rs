//! The events section's units: the events function's call on the stream
//! records of one grant or one confirm at 0, 1 and 3 endpoints, a
//! redelivered batch, a failing endpoint's attempts and retries, and the
//! job's run with nothing due; each metered, with a log of its requests
//! that splits the units by what they write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use credits_shared::clock::ManualClock;
use credits_shared::domain::Actor;
use credits_shared::events::bus::Bus;
use credits_shared::events::derive::{events_of, Defaults};
use credits_shared::events::endpoints::NewEndpoint;
use credits_shared::events::outbox::{Applied, Outbox};
use credits_shared::events::schedule::SCHEDULE_SECONDS;
use credits_shared::prices::Catalog;
use credits_shared::store::local_stream::LocalStream;
use credits_shared::store::stream::Change;
use credits_shared::store::{Store, PENDING_INDEX};
use credits_shared::Ledger;

use super::ENDPOINT_COUNTS;
use crate::harness::ledger::{grant, request, user};
use crate::harness::meter::{minus, Done, Meter, Units};
use crate::harness::receiver::Receiver;
use crate::harness::sizes::item_size;

/// 1 WCU per started KB, at least 1: what a write of `bytes` is charged,
/// and what a refused conditional write of that item is charged too.
fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// The categories of [`Done::category`] that read.
const READS: [&str; 4] = ["endpoints read", "endpoint read", "due-work listing", "item read"];

impl Done {
    /// What it is for, by the item it names and what it does there.
    fn category(&self) -> &'static str {
        let s = &self.sent;
        match s.op {
            "PutItem" if s.sk.starts_with("EVENT#") => "event put",
            "PutItem" if s.sk.starts_with("DLV#") => "delivery put",
            "UpdateItem" if s.sk.starts_with("EVENT#") => "publish mark",
            "UpdateItem" if s.sk.starts_with("DLV#") && s.update.starts_with("SET expiresAt = :lease") => "claim",
            "UpdateItem" if s.sk.starts_with("DLV#") => "attempt record",
            "UpdateItem" if s.sk.starts_with("EP#") => "endpoint health",
            "Query" if s.sk == PENDING_INDEX => "due-work listing",
            "Query" => "endpoints read",
            "GetItem" if s.sk.starts_with("EP#") => "endpoint read",
            "GetItem" => "item read",
            _ => "other",
        }
    }
}

/// What a set of requests cost, and what for.
#[derive(Clone, Debug, Default)]
pub(super) struct Cost {
    pub(super) requests: usize,
    pub(super) read: f64,
    /// As DynamoDB Local reported it.
    pub(super) write: f64,
    /// With every refused conditional put priced as DynamoDB charges it.
    pub(super) charged: f64,
    /// Units and requests by category.
    by: BTreeMap<&'static str, (usize, f64)>,
    refused: usize,
}

impl Cost {
    fn of<'a>(done: impl IntoIterator<Item = &'a Done>) -> Cost {
        let mut cost = Cost::default();
        for d in done {
            cost.requests += 1;
            let mut units = d.units;
            if d.is_read() {
                cost.read += units;
            } else {
                cost.write += units;
                if d.refused {
                    cost.refused += 1;
                    // DynamoDB Local reports nothing for a refused write;
                    // DynamoDB charges it by the item's size.
                    units = if d.sent.op == "PutItem" { write_units(d.sent.bytes) } else { 1.0 };
                }
                cost.charged += units;
            }
            let entry = cost.by.entry(d.category()).or_default();
            entry.0 += 1;
            entry.1 += units;
        }
        cost
    }

    fn only(done: &[Done], categories: &[&str]) -> Cost {
        Cost::of(done.iter().filter(|d| categories.contains(&d.category())))
    }

    pub(super) fn units(&self, category: &str) -> f64 {
        self.by.get(category).map_or(0.0, |c| c.1)
    }

    /// "claim 1 × 3.0 + attempt record 1 × 3.0", reads as RCU.
    pub(super) fn breakdown(&self) -> String {
        let parts: Vec<String> = self
            .by
            .iter()
            .map(|(name, (count, units))| {
                let unit = if READS.contains(name) { "RCU" } else { "WCU" };
                format!("{name} {count} → {units:.1} {unit}")
            })
            .collect();
        parts.join(", ")
    }
}

/// A table of its own with the meter (keeping its log of requests) on its
/// client, its stream, and the outbox over it.
struct Bench {
    ledger: Ledger,
    clock: Arc<ManualClock>,
    meter: Meter,
    /// The table's stream, read as the dev server reads it, through a
    /// client the meter does not see.
    stream: LocalStream,
    outbox: Outbox,
    plain: aws_sdk_dynamodb::Client,
    table: String,
}

/// One measured call: what it did, the meter's units, the requests.
pub(super) struct Measured<T> {
    pub(super) value: T,
    used: Units,
    done: Vec<Done>,
}

impl Bench {
    async fn new(sdk: &aws_config::SdkConfig, bus: Bus) -> Result<Bench, String> {
        let meter = Meter::logging();
        let config = aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(meter.clone()).build();
        let table = format!("b-{}", uuid::Uuid::new_v4().simple());
        let store = Store::new(aws_sdk_dynamodb::Client::from_conf(config), table.clone());
        store.create_table_if_missing().await.map_err(|e| e.to_string())?;
        let clock = ManualClock::starting_now();
        // As the dev server: the receiver is on this machine (loopback).
        let ledger =
            Ledger::new(store, clock.clone(), Arc::new(Catalog::default_catalog()), 90).allowing_local_http_endpoints();
        let stream = LocalStream::open(sdk, &table).await?;
        let outbox = Outbox::new(ledger.clone(), bus, Defaults::default());
        Ok(Bench { ledger, clock, meter, stream, outbox, plain: aws_sdk_dynamodb::Client::new(sdk), table })
    }

    async fn endpoint(&self, url: &str) -> Result<(), String> {
        let new = NewEndpoint { url: url.to_owned(), events: Vec::new(), description: None, actor: "bench".into() };
        self.ledger.create_endpoint(new).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Forgets what the stream holds so far.
    async fn drain(&mut self) -> Result<(), String> {
        self.stream.poll().await.map(|_| ())
    }

    /// The stream's records since the last read, once they hold an event.
    async fn changes(&mut self) -> Result<Vec<Change>, String> {
        let mut changes = Vec::new();
        for _ in 0..100 {
            changes.extend(self.stream.poll().await?);
            if changes.iter().any(|c| !events_of(c, Defaults::default()).is_empty()) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                changes.extend(self.stream.poll().await?);
                return Ok(changes);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the stream showed no change that makes an event".into())
    }

    async fn measure<T>(&self, f: impl std::future::Future<Output = T>) -> Measured<T> {
        self.meter.take_log();
        let before = self.meter.snapshot();
        let value = f.await;
        let used = minus(self.meter.snapshot(), before);
        let done = self.meter.take_log();
        let logged = Cost::of(&done);
        if (logged.read - used.read).abs() > 0.01 || (logged.write - used.write).abs() > 0.01 {
            eprintln!(
                "bench: events: the request log ({:.1} RCU, {:.1} WCU) differs from the meter ({:.1}, {:.1})",
                logged.read, logged.write, used.read, used.write
            );
        }
        Measured { value, used, done }
    }

    /// The events function's call on `changes`, measured.
    async fn apply(&self, changes: &[Change]) -> Result<Measured<Applied>, String> {
        let m = self.measure(self.outbox.apply(changes)).await;
        let value = m.value.map_err(|e| e.to_string())?;
        Ok(Measured { value, used: m.used, done: m.done })
    }

    /// The scheduled job's outbox run, measured.
    async fn job(&self) -> Result<Measured<credits_shared::events::deliver::OutboxReport>, String> {
        let m = self.measure(self.outbox.sweep(Instant::now() + Duration::from_secs(60))).await;
        let value = m.value.map_err(|e| e.to_string())?;
        Ok(Measured { value, used: m.used, done: m.done })
    }

    /// The size of an item as stored now (read off the meter).
    async fn size(&self, pk: &str, sk: &str) -> Result<usize, String> {
        let item = self
            .plain
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?
            .item
            .ok_or("an item the events wrote is missing")?;
        Ok(item_size(&item))
    }
}

/// One row of the first table.
pub(super) struct Row {
    pub(super) event: &'static str,
    pub(super) endpoints: usize,
    pub(super) used: Units,
    pub(super) cost: Cost,
}

/// Sizes of one event's items.
pub(super) struct Sizes {
    pub(super) event: &'static str,
    pub(super) payload: usize,
    pub(super) event_item: usize,
    pub(super) delivery: usize,
    pub(super) delivery_after: usize,
}

fn check(what: &str, applied: &Applied, recorded: u32, delivered: u32) -> Result<(), String> {
    if applied.recorded != recorded || applied.delivered != delivered {
        return Err(format!(
            "{what}: expected {recorded} event(s) recorded and {delivered} delivered, got {applied:?}"
        ));
    }
    Ok(())
}

/// Table 1 and the redelivery: a grant and a confirm at 0, 1 and 3 endpoints.
pub(super) async fn per_event(
    sdk: &aws_config::SdkConfig,
    bus: &Bus,
) -> Result<(Vec<Row>, Vec<Sizes>, (Measured<Applied>, Cost)), String> {
    let receiver = Receiver::start(&[]).await?;
    let mut b = Bench::new(sdk, bus.clone()).await?;
    let u = user("events");
    grant(&b.ledger, &u, 1_000_000).await?;
    let (mut rows, mut sizes) = (Vec::new(), Vec::new());
    let mut redelivered = None;
    let mut registered = 0;
    for endpoints in ENDPOINT_COUNTS {
        while registered < endpoints {
            b.endpoint(&receiver.url).await?;
            registered += 1;
        }
        let delivered = endpoints as u32;

        b.drain().await?;
        grant(&b.ledger, &u, 100).await?;
        let changes = b.changes().await?;
        let m = b.apply(&changes).await?;
        check("a grant", &m.value, 1, delivered)?;
        let cost = Cost::of(&m.done);
        if endpoints == 1 {
            sizes.push(sizes_of(&b, "grant.created", &m.done).await?);
        }
        rows.push(Row { event: "grant.created", endpoints, used: m.used, cost });
        if endpoints == *ENDPOINT_COUNTS.last().unwrap_or(&0) {
            // The same batch again, as the stream redelivers it after a
            // failed call: every put is refused, nothing is sent.
            let again = b.apply(&changes).await?;
            if again.value.recorded != 0 || again.value.duplicates != 1 || again.value.delivered != 0 {
                return Err(format!("a redelivered batch did something again: {:?}", again.value));
            }
            let cost = Cost::of(&again.done);
            redelivered = Some((again, cost));
        }

        let hold = b.ledger.reserve(&u, request("design_generate_image", 2)).await.map_err(|e| e.to_string())?;
        let id = hold.into_inner().reservation_id;
        b.drain().await?;
        b.ledger.confirm(Some(&u), id, None, Actor::Server).await.map_err(|e| e.to_string())?;
        let changes = b.changes().await?;
        let m = b.apply(&changes).await?;
        check("a confirm", &m.value, 1, delivered)?;
        if endpoints == 1 {
            sizes.push(sizes_of(&b, "hold.confirmed", &m.done).await?);
        }
        rows.push(Row { event: "hold.confirmed", endpoints, used: m.used, cost: Cost::of(&m.done) });
    }
    if receiver.count() != 2 * (1 + 3) {
        return Err(format!("the receiver got {} deliveries, not {}", receiver.count(), 2 * (1 + 3)));
    }
    let redelivered = redelivered.ok_or("no redelivery measured")?;
    Ok((rows, sizes, redelivered))
}

async fn sizes_of(b: &Bench, event: &'static str, done: &[Done]) -> Result<Sizes, String> {
    let put = |category: &str| done.iter().find(|d| d.category() == category).map(|d| d.sent.clone());
    let (Some(item), Some(delivery)) = (put("event put"), put("delivery put")) else {
        return Err(format!("{event}: no event or delivery put seen"));
    };
    Ok(Sizes {
        event,
        payload: item.payload,
        event_item: item.bytes,
        delivery: delivery.bytes,
        delivery_after: b.size(&delivery.pk, &delivery.sk).await?,
    })
}

/// One row of the second table.
pub(super) struct Other {
    pub(super) case: String,
    pub(super) cost: Cost,
}

/// A receiver that fails twice, then answers: the failing first attempt,
/// a failing retry, a succeeding one; and a job run with nothing due.
/// Also the delivery's size when put and after its three attempts.
pub(super) async fn retries(sdk: &aws_config::SdkConfig, bus: &Bus) -> Result<(Vec<Other>, (usize, usize)), String> {
    let receiver = Receiver::start(&[500, 500]).await?;
    let mut b = Bench::new(sdk, bus.clone()).await?;
    let u = user("events-retry");
    b.endpoint(&receiver.url).await?;
    b.drain().await?;
    grant(&b.ledger, &u, 100).await?;
    let changes = b.changes().await?;
    let first = b.apply(&changes).await?;
    if first.value.failed_attempts != 1 {
        return Err(format!("the first attempt should have failed: {:?}", first.value));
    }
    let mut rows = vec![Other {
        case: "first attempt answered 500: its record, and the endpoint's failing streak starts".into(),
        cost: Cost::only(&first.done, &["attempt record", "endpoint read", "endpoint health"]),
    }];
    let retry = ["claim", "attempt record", "endpoint read", "endpoint health"];
    let listing = ["due-work listing", "endpoints read"];
    for (wait, outcome) in [(SCHEDULE_SECONDS[0], "500 again (the streak goes on)"), (SCHEDULE_SECONDS[1], "204")] {
        b.clock.advance_seconds(wait);
        let run = b.job().await?;
        let expected = if outcome == "204" { (1, 0) } else { (0, 1) };
        if (run.value.delivered, run.value.failed_attempts) != expected {
            return Err(format!("the retry after {wait} s did not go as scripted: {:?}", run.value));
        }
        let what = if outcome == "204" { " (the streak ends)" } else { "" };
        rows.push(Other {
            case: format!("retry by the job {wait} s later, answered {outcome}: claim + record{what}"),
            cost: Cost::only(&run.done, &retry),
        });
    }
    let idle = b.job().await?;
    if idle.value.scanned != 0 {
        return Err(format!("something was still due: {:?}", idle.value));
    }
    rows.push(Other {
        case: "the job's run with nothing due (once a run, not per event)".into(),
        cost: Cost::only(&idle.done, &listing),
    });
    if receiver.count() != 3 {
        return Err(format!("the failing receiver got {} attempts, not 3", receiver.count()));
    }
    let put = first.done.iter().find(|d| d.category() == "delivery put").map(|d| d.sent.clone());
    let put = put.ok_or("no delivery put seen")?;
    Ok((rows, (put.bytes, b.size(&put.pk, &put.sk).await?)))
}
