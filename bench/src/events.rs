//! `make bench`'s events section: the request units each outgoing event
//! costs (recorded, published to EventBridge, first webhook attempt), what
//! a redelivered stream batch and a retry cost, and the delay from a change
//! to its webhook in the dev server.
//!
//! The units: the events function's own call (`Outbox::apply`) on the
//! records DynamoDB Local's stream gives for one grant or one confirm,
//! with EventBridge served by moto (`.venv/bin/moto_server`, `make deps`)
//! and webhook endpoints on a receiver in this process that answers 204.
//! The meter prices every request as the cost section does; a log of the
//! requests beside it splits them by what they write. The delay: the real
//! dev server (`credits serve`, built as `make run` builds it) and a
//! receiver registered through its API.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity};
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use credits_shared::clock::ManualClock;
use credits_shared::domain::{Actor, UserId};
use credits_shared::events::bus::Bus;
use credits_shared::events::derive::{events_of, Defaults};
use credits_shared::events::endpoints::NewEndpoint;
use credits_shared::events::outbox::{Applied, Outbox};
use credits_shared::events::schedule::SCHEDULE_SECONDS;
use credits_shared::prices::Catalog;
use credits_shared::store::local_stream::LocalStream;
use credits_shared::store::stream::Change;
use credits_shared::store::{Item, Store, PENDING_INDEX};
use credits_shared::Ledger;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use super::{grant, minus, percentile, request, user, value_size, READ_PRICE, WRITE_PRICE};
use crate::meter::{Meter, Units};

/// Grants timed in the dev server, after the untimed ones that warm it up.
const WARM_UP_GRANTS: usize = 5;
/// Endpoint counts the units are measured at.
const ENDPOINT_COUNTS: [usize; 3] = [0, 1, 3];
const BUS: &str = "credits-bench";

/// An item's size as DynamoDB bills it.
fn item_size(item: &Item) -> usize {
    item.iter().map(|(name, value)| name.len() + value_size(value)).sum()
}

/// 1 WCU per started KB, at least 1: what a write of `bytes` is charged,
/// and what a refused conditional write of that item is charged too.
fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// The categories of [`Done::category`] that read.
const READS: [&str; 4] = ["endpoints read", "endpoint read", "due-work listing", "item read"];

/// One request as sent: its operation, the item's keys (a query: its index
/// or its partition), an update's expression, a put item's size and its
/// payload's.
#[derive(Clone, Debug, Default)]
struct Sent {
    op: &'static str,
    pk: String,
    sk: String,
    update: String,
    bytes: usize,
    payload: usize,
}

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

/// One request done: the units DynamoDB Local reported (as the meter counts
/// them), or a refused condition (it reports none then).
#[derive(Clone, Debug)]
struct Done {
    sent: Sent,
    units: f64,
    refused: bool,
}

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

    fn is_read(&self) -> bool {
        matches!(self.sent.op, "Query" | "GetItem")
    }
}

/// Every request of a client, in order, beside the meter.
#[derive(Clone, Debug, Default)]
struct Requests(Arc<Mutex<Vec<Done>>>);

impl Requests {
    fn take(&self) -> Vec<Done> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn capacity(c: &[ConsumedCapacity]) -> f64 {
    c.iter().map(|c| c.capacity_units.unwrap_or(0.0)).sum()
}

impl Intercept for Requests {
    fn name(&self) -> &'static str {
        "request-log"
    }

    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input();
        let text = |item: Option<&Item>, name: &str| {
            item.and_then(|i| i.get(name)).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
        };
        let sent = if let Some(i) = input.downcast_ref::<PutItemInput>() {
            let item = i.item.as_ref();
            Sent {
                op: "PutItem",
                pk: text(item, "pk"),
                sk: text(item, "sk"),
                bytes: item.map_or(0, item_size),
                payload: text(item, "payload").len(),
                ..Sent::default()
            }
        } else if let Some(i) = input.downcast_ref::<UpdateItemInput>() {
            Sent {
                op: "UpdateItem",
                pk: text(i.key.as_ref(), "pk"),
                sk: text(i.key.as_ref(), "sk"),
                update: i.update_expression.clone().unwrap_or_default(),
                ..Sent::default()
            }
        } else if let Some(i) = input.downcast_ref::<GetItemInput>() {
            Sent { op: "GetItem", pk: text(i.key.as_ref(), "pk"), sk: text(i.key.as_ref(), "sk"), ..Sent::default() }
        } else if let Some(i) = input.downcast_ref::<QueryInput>() {
            let partition = text(i.expression_attribute_values.as_ref(), ":pk");
            Sent { op: "Query", pk: partition, sk: i.index_name.clone().unwrap_or_default(), ..Sent::default() }
        } else {
            Sent { op: "other", ..Sent::default() }
        };
        cfg.interceptor_state().store_put(sent);
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(sent) = cfg.load::<Sent>().cloned() else { return Ok(()) };
        let done = match context.output_or_error() {
            Some(Ok(output)) => {
                let units = if let Some(o) = output.downcast_ref::<PutItemOutput>() {
                    capacity(o.consumed_capacity.as_slice())
                } else if let Some(o) = output.downcast_ref::<UpdateItemOutput>() {
                    capacity(o.consumed_capacity.as_slice())
                } else if let Some(o) = output.downcast_ref::<GetItemOutput>() {
                    capacity(o.consumed_capacity.as_slice()).max(0.5)
                } else if let Some(o) = output.downcast_ref::<QueryOutput>() {
                    // As the meter counts it: at least half a unit.
                    capacity(o.consumed_capacity.as_slice()).max(0.5)
                } else {
                    0.0
                };
                Done { sent, units, refused: false }
            }
            Some(Err(error)) => {
                let operation = error.as_operation_error();
                let refused = operation
                    .and_then(|e| e.downcast_ref::<PutItemError>())
                    .is_some_and(PutItemError::is_conditional_check_failed_exception)
                    || operation
                        .and_then(|e| e.downcast_ref::<UpdateItemError>())
                        .is_some_and(UpdateItemError::is_conditional_check_failed_exception);
                Done { sent, units: 0.0, refused }
            }
            None => return Ok(()),
        };
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(done);
        Ok(())
    }
}

/// What a set of requests cost, and what for.
#[derive(Clone, Debug, Default)]
struct Cost {
    requests: usize,
    read: f64,
    /// As DynamoDB Local reported it.
    write: f64,
    /// With every refused conditional put priced as DynamoDB charges it.
    charged: f64,
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

    fn units(&self, category: &str) -> f64 {
        self.by.get(category).map_or(0.0, |c| c.1)
    }

    /// "claim 1 × 3.0 + attempt record 1 × 3.0", reads as RCU.
    fn breakdown(&self) -> String {
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

/// A webhook receiver: records when each delivery arrived, answers as
/// scripted, then 204.
#[derive(Default)]
struct Inbox {
    got: Vec<(Instant, Value)>,
    answers: VecDeque<u16>,
}

struct Receiver {
    url: String,
    inbox: Arc<Mutex<Inbox>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn receive(State(inbox): State<Arc<Mutex<Inbox>>>, body: Bytes) -> StatusCode {
    let arrived = Instant::now();
    let mut inbox = inbox.lock().unwrap_or_else(PoisonError::into_inner);
    inbox.got.push((arrived, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    let status = inbox.answers.pop_front().unwrap_or(204);
    StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT)
}

impl Receiver {
    async fn start(answers: &[u16]) -> Result<Receiver, String> {
        let inbox = Arc::new(Mutex::new(Inbox { got: Vec::new(), answers: answers.iter().copied().collect() }));
        let app = axum::Router::new().fallback(receive).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let url = format!("http://{}/hooks/credits", listener.local_addr().map_err(|e| e.to_string())?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Receiver { url, inbox, shutdown: Some(tx) })
    }

    fn count(&self) -> usize {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner).got.len()
    }

    /// When `user`'s `grant.created` arrived, waiting up to `within`.
    async fn arrival(&self, user: &UserId, within: Duration) -> Result<Instant, String> {
        let until = Instant::now() + within;
        loop {
            let found = {
                let inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
                inbox
                    .got
                    .iter()
                    .find(|(_, e)| e["userId"] == user.as_str() && e["type"] == "grant.created")
                    .map(|(at, _)| *at)
            };
            if let Some(at) = found {
                return Ok(at);
            }
            if Instant::now() > until {
                return Err(format!("no grant.created for {user} within {} s", within.as_secs()));
            }
            // The arrival is stamped by the handler: this wait adds nothing to it.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// moto's server (EventBridge), as the events tests start it.
struct Moto {
    endpoint: String,
    child: std::process::Child,
}

impl Moto {
    /// `None` when the repository's virtualenv has no moto (`make deps` makes it).
    async fn start() -> Result<Option<Moto>, String> {
        let bin = workspace().join(".venv/bin/moto_server");
        if !bin.exists() {
            return Ok(None);
        }
        let port = dynamodb_local::free_port()?;
        let child = std::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), child };
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http.get(format!("{}/moto-api/", moto.endpoint)).send().await.is_ok() {
                return Ok(Some(moto));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("moto_server did not start on {}", moto.endpoint))
    }

    /// A bus of `name` on it, and the outbox's bus for it.
    async fn bus(&self, name: &str) -> Result<Bus, String> {
        let sdk = credits_shared::store::sdk_config(Some(&self.endpoint)).await;
        aws_sdk_eventbridge::Client::new(&sdk)
            .create_event_bus()
            .name(name)
            .send()
            .await
            .map_err(|e| format!("creating the bus on moto: {e:?}"))?;
        Ok(Bus::event_bridge(name.to_owned(), Some(&self.endpoint)).await)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A table of its own with the meter and the request log on its client,
/// its stream, and the outbox over it.
struct Bench {
    ledger: Ledger,
    clock: Arc<ManualClock>,
    meter: Meter,
    log: Requests,
    /// The table's stream, read as the dev server reads it, through a
    /// client the meter does not see.
    stream: LocalStream,
    outbox: Outbox,
    plain: aws_sdk_dynamodb::Client,
    table: String,
}

/// One measured call: what it did, the meter's units, the requests.
struct Measured<T> {
    value: T,
    used: Units,
    done: Vec<Done>,
}

impl Bench {
    async fn new(sdk: &aws_config::SdkConfig, bus: Bus) -> Result<Bench, String> {
        let meter = Meter::default();
        let log = Requests::default();
        let config =
            aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(meter.clone()).interceptor(log.clone()).build();
        let table = format!("b-{}", uuid::Uuid::new_v4().simple());
        let store = Store::new(aws_sdk_dynamodb::Client::from_conf(config), table.clone());
        store.create_table_if_missing().await.map_err(|e| e.to_string())?;
        let clock = ManualClock::starting_now();
        // As the dev server: the receiver is on this machine (loopback).
        let ledger =
            Ledger::new(store, clock.clone(), Arc::new(Catalog::default_catalog()), 90).allowing_local_http_endpoints();
        let stream = LocalStream::open(sdk, &table).await?;
        let outbox = Outbox::new(ledger.clone(), bus, Defaults::default());
        Ok(Bench { ledger, clock, meter, log, stream, outbox, plain: aws_sdk_dynamodb::Client::new(sdk), table })
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
        self.log.take();
        let before = self.meter.snapshot();
        let value = f.await;
        let used = minus(self.meter.snapshot(), before);
        let done = self.log.take();
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
struct Row {
    event: &'static str,
    endpoints: usize,
    used: Units,
    cost: Cost,
}

/// Sizes of one event's items.
struct Sizes {
    event: &'static str,
    payload: usize,
    event_item: usize,
    delivery: usize,
    delivery_after: usize,
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
async fn per_event(
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
struct Other {
    case: String,
    cost: Cost,
}

/// A receiver that fails twice, then answers: the failing first attempt,
/// a failing retry, a succeeding one; and a job run with nothing due.
/// Also the delivery's size when put and after its three attempts.
async fn retries(sdk: &aws_config::SdkConfig, bus: &Bus) -> Result<(Vec<Other>, (usize, usize)), String> {
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

/// Runs cargo as `make run` does (`cargo build --workspace --bin credits`)
/// from the workspace root; the binary's path and how long cargo took.
async fn build_dev_server() -> Result<(PathBuf, Duration), String> {
    let (mut binaries, took) = crate::coldstart::cargo_build(&["--workspace", "--bin", "credits"]).await?;
    let credits = binaries.remove("credits").ok_or("cargo built no credits binary")?;
    Ok((credits, took))
}

/// `credits serve` as `make run` starts it, on a free port with its data in
/// a folder of its own; its admin token, read from what it prints.
struct DevServer {
    child: tokio::process::Child,
    base: String,
    admin: String,
    dir: PathBuf,
}

impl DevServer {
    async fn start(bin: &std::path::Path) -> Result<DevServer, String> {
        let dir = std::env::temp_dir().join(format!("credits-bench-events-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("serve.log")).map_err(|e| e.to_string())?;
        let listen = format!("127.0.0.1:{}", dynamodb_local::free_port()?);
        let mut command = tokio::process::Command::new(bin);
        // Its defaults, whatever the bench's shell sets (a bus, another
        // DynamoDB, a sweep interval); where the jar is may stay.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy().into_owned();
            let setting = name.starts_with("CREDITS_") && name != "CREDITS_DYNAMODB_LOCAL_DIR";
            if setting || ["DYNAMODB_ENDPOINT", "EVENTBRIDGE_ENDPOINT", "RUST_LOG"].contains(&name.as_str()) {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("serve")
            .current_dir(workspace())
            .env("CREDITS_LISTEN", &listen)
            .env("CREDITS_DATA_DIR", dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        // Its log lines go to stdout too: read it to the end, keeping the
        // `export …` lines it prints once it listens.
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.starts_with("export ") {
                    let _ = tx.send(line);
                }
            }
        });
        let admin = tokio::time::timeout(Duration::from_secs(180), async {
            while let Some(line) = rx.recv().await {
                if let Some(token) = line.strip_prefix("export ADMIN_TOKEN=") {
                    return Some(token.to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let server = DevServer { child, base: format!("http://{listen}"), admin: String::new(), dir };
        match admin {
            Some(admin) => Ok(DevServer { admin, ..server }),
            None => {
                let log = std::fs::read_to_string(server.dir.join("serve.log")).unwrap_or_default();
                server.stop().await;
                Err(format!(
                    "the dev server did not start: {}",
                    log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                ))
            }
        }
    }

    /// SIGTERM, so it stops DynamoDB Local with it; its folder removed.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The delays, ms: from each grant's HTTP answer to its webhook's arrival,
/// and the grants' own answer times.
struct Delays {
    delivery: Vec<f64>,
    answer: Vec<f64>,
    built: Duration,
}

async fn delays(grants: usize) -> Result<Delays, String> {
    eprintln!("bench: events: building the dev server as `make run` does");
    let (bin, built) = build_dev_server().await?;
    let server = DevServer::start(&bin).await?;
    let measured = time_deliveries(&server, grants).await;
    server.stop().await;
    measured.map(|(delivery, answer)| Delays { delivery, answer, built })
}

async fn time_deliveries(server: &DevServer, grants: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let receiver = Receiver::start(&[]).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let registered = http
        .post(format!("{}/v1/admin/webhook-endpoints", server.base))
        .bearer_auth(&server.admin)
        .json(&json!({"url": receiver.url, "events": ["grant.created"]}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if registered.status().as_u16() != 201 {
        return Err(format!("registering the receiver: {}", registered.text().await.unwrap_or_default()));
    }
    let (mut delivery, mut answer) = (Vec::new(), Vec::new());
    for round in 0..WARM_UP_GRANTS + grants {
        // A random pause, so that the grants fall anywhere in the reader's
        // one-second cycle rather than just after its last poll.
        let pause = (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let u = user("delay");
        let sent = Instant::now();
        let granted = http
            .post(format!("{}/v1/admin/users/{u}/grants", server.base))
            .bearer_auth(&server.admin)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"amount": 10, "reason": "purchase"}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let answered = Instant::now();
        if granted.status().as_u16() != 201 {
            return Err(format!("a grant: {}", granted.text().await.unwrap_or_default()));
        }
        let arrived = receiver.arrival(&u, Duration::from_secs(60)).await?;
        if round >= WARM_UP_GRANTS {
            delivery.push(arrived.saturating_duration_since(answered).as_secs_f64() * 1000.0);
            answer.push((answered - sent).as_secs_f64() * 1000.0);
        }
    }
    Ok((delivery, answer))
}

fn dollars(read: f64, write: f64) -> f64 {
    write * WRITE_PRICE + read * READ_PRICE
}

/// The section.
pub async fn events(out: &mut String, grants: usize) -> Result<(), String> {
    let started = Instant::now();
    let (local, sdk) = super::fresh_local().await?;
    let moto = Moto::start().await?;
    let bus = match &moto {
        Some(moto) => moto.bus(BUS).await?,
        None => {
            eprintln!("bench: events: no .venv/bin/moto_server (`make deps`): measuring without a bus");
            Bus::Log
        }
    };
    let measured = async {
        let (rows, sizes, redelivered) = per_event(&sdk, &bus).await?;
        let others = retries(&sdk, &bus).await?;
        Ok::<_, String>((rows, sizes, redelivered, others))
    }
    .await;
    drop(moto);
    local.stop();
    let (rows, sizes, (redelivered, redelivery), (mut others, (put, retried))) = measured?;
    eprintln!("bench: events: units done at {:.0} s", started.elapsed().as_secs_f64());
    let mut d = delays(grants).await?;
    eprintln!("bench: events: delays done at {:.0} s", started.elapsed().as_secs_f64());

    others.insert(
        0,
        Other {
            case: format!(
                "the stream batch of a grant redelivered (1 event, {} endpoints): every put refused",
                ENDPOINT_COUNTS[2]
            ),
            cost: redelivery,
        },
    );
    let published = bus.is_configured();
    let _ = writeln!(out, "## Outgoing events: units per event, and the delay to a webhook in the dev server\n");
    let _ = writeln!(
        out,
        "What the events function (`Outbox::apply`) writes for the stream records of one change: one grant (`grant.created`)\n\
         or one confirm (`hold.confirmed`), with 0, 1 and 3 webhook endpoints subscribed, each answering 204 on a receiver\n\
         in the bench, and EventBridge {}. Units are the meter's, as in the cost section; a log of the requests\n\
         splits them by what they write. Stream reads are not in them (DynamoDB Streams reads by a Lambda trigger are free).\n",
        if published { "served by moto" } else { "not configured (no `.venv/bin/moto_server`: events logged instead)" }
    );
    let _ = writeln!(
        out,
        "| event | endpoints | requests | RCU | event item put | delivery puts | publish mark | attempt records | WCU per event | $ per million events |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &rows {
        let c = &r.cost;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            r.event,
            r.endpoints,
            r.used.requests,
            r.used.read,
            c.units("event put"),
            c.units("delivery put"),
            c.units("publish mark"),
            c.units("attempt record"),
            r.used.write,
            dollars(r.used.read, r.used.write)
        );
    }
    let _ = writeln!(out);
    let find = |event: &str, endpoints: usize| rows.iter().find(|r| r.event == event && r.endpoints == endpoints);
    let (Some(g0), Some(g1), Some(h1)) =
        (find("grant.created", 0), find("grant.created", 1), find("hold.confirmed", 1))
    else {
        return Err("a row is missing".into());
    };
    let per_endpoint = |event: &str| {
        let (a, b) = (find(event, 1).map_or(0.0, |r| r.used.write), find(event, 3).map_or(0.0, |r| r.used.write));
        (b - a) / 2.0
    };
    let reads = |r: &Row, category: &str| r.cost.units(category);
    let _ = writeln!(
        out,
        "Each event is one conditional PutItem of the event item (put only if absent, under a key derived from the\n\
         change) and one of a delivery item per subscribed endpoint; with a bus, each item also enters the due-work\n\
         index (`pending-by-expiry`, 1 WCU), so that the scheduled job finds whatever a crash leaves unsent. After\n\
         PutEvents accepts the event, an UpdateItem marks its item `published` and takes it out of that index: the\n\
         publish mark, {:.1} WCU for a grant, {:.1} for a confirm. Each delivery's first attempt is recorded by an\n\
         UpdateItem that appends the attempt to the delivery's log and, on a 2xx, takes it out of the index. The reads:\n\
         the endpoints' list, once per stream batch whatever the batch holds (a strongly consistent Query: {:.1} RCU\n\
         with none registered, {:.1} with 3), and after each attempt the endpoint, read afresh for its health (a\n\
         strongly consistent GetItem, {:.1} RCU). A grant's event costs {:.1} WCU with no endpoint and {:.1} more per\n\
         endpoint; a confirm's {:.1} and {:.1}. EventBridge bills PutEvents apart, per event (per 64 KB chunk of one),\n\
         not in these units.{}\n",
        g0.cost.units("publish mark"),
        h1.cost.units("publish mark"),
        reads(g0, "endpoints read"),
        find("grant.created", 3).map_or(0.0, |r| reads(r, "endpoints read")),
        reads(g1, "endpoint read"),
        g0.used.write,
        per_endpoint("grant.created"),
        find("hold.confirmed", 0).map_or(0.0, |r| r.used.write),
        per_endpoint("hold.confirmed"),
        if published {
            ""
        } else {
            " Without a bus there is no index entry and no publish mark: with one, the publish mark is 1 WCU an event\n\
             (an UpdateItem of an item under 1 KB) and the index entry 1 WCU more, in and out."
        }
    );
    let _ = writeln!(out, "| event | payload (bytes) | event item (bytes) | delivery item when put | after its first attempt |\n|---|---:|---:|---:|---:|");
    for s in &sizes {
        let _ =
            writeln!(out, "| {} | {} | {} | {} | {} |", s.event, s.payload, s.event_item, s.delivery, s.delivery_after);
    }
    let over: Vec<&str> = sizes.iter().filter(|s| s.event_item > 1024 || s.delivery > 1024).map(|s| s.event).collect();
    let _ = writeln!(
        out,
        "\nThe event item and every delivery item carry the payload (the event as JSON, a webhook's body), so an event's\n\
         bytes are written 1 + endpoints times. A delivery keeps a log entry per attempt and drops its index attributes\n\
         once delivered: a grant's delivery delivered at its third attempt was {retried} bytes ({put} when put). DynamoDB\n\
         bills a write per started KB of the item (an update: of its larger image). A `hold.*` or `refund.created`\n\
         payload is the reservation ({} bytes for this confirm), which takes {} past 1 KB: each\n\
         of their writes costs 1 WCU more than a grant's ({:.1} WCU against {:.1} at one endpoint). Sizes by DynamoDB's\n\
         rules, from the requests and read back; DynamoDB Local prices these non-transactional writes per KB itself.\n",
        sizes.iter().find(|s| s.event == "hold.confirmed").map_or(0, |s| s.payload),
        if over.is_empty() { "none of the items".to_owned() } else { format!("{}'s items", over.join(" and ")) },
        h1.used.write,
        g1.used.write,
    );

    let _ = writeln!(
        out,
        "| case | requests | RCU | WCU DynamoDB Local reports | WCU as DynamoDB charges | what |\n|---|---:|---:|---:|---:|---|"
    );
    for o in &others {
        let c = &o.cost;
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            o.case,
            c.requests,
            c.read,
            c.write,
            c.charged,
            c.breakdown()
        );
    }
    let _ = writeln!(
        out,
        "\nA redelivered batch (Lambda retries a batch whose call failed, or the stream hands a record twice) records\n\
         nothing twice: each put is refused by its condition, nothing is published or attempted ({} events recorded,\n\
         {} duplicate). DynamoDB charges a refused conditional write by the item's size: 1 WCU per started KB, at least\n\
         1 (no index entry is written). DynamoDB Local reports no units with a refused condition, so the last column\n\
         prices each refused put by the size of the item it carried; its endpoints' read is charged as before.\n\
         A failed attempt is recorded as a success is, and also moves the delivery's entry in the due-work index to\n\
         its next attempt; the first failure of an endpoint that was not failing writes `failingSince` on it (the\n\
         endpoint's health: 5 days of failures disable it), later failures write nothing there, and the next success\n\
         clears it. A retry is the job's: a claim (an UpdateItem that takes the delivery's lease, moving its index\n\
         entry, and returns the item) and the attempt's record. While an endpoint is failing, the events function\n\
         makes no first attempt to it: its new deliveries are put as above and left to the job, each then a claim and\n\
         a record like a retry. The job lists due work every run (every minute by default), events or not: 16 shard\n\
         queries of the index, then the endpoints.\n",
        redelivered.value.recorded, redelivered.value.duplicates
    );

    let n = d.delivery.len();
    let (p50, p95) = (percentile(&mut d.delivery, 0.5), percentile(&mut d.delivery, 0.95));
    let max = d.delivery.iter().copied().fold(0.0, f64::max);
    let min = d.delivery.iter().copied().fold(f64::INFINITY, f64::min);
    let answer50 = percentile(&mut d.answer, 0.5);
    let _ = writeln!(out, "### From a change to its webhook in the dev server ({n} grants, ms)\n");
    let _ = writeln!(
        out,
        "| from the grant's HTTP answer to the receiver getting `grant.created` | p50 | p95 | max | min |\n|---|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| `credits serve` (`make run`), no bus configured | {p50:.0} | {p95:.0} | {max:.0} | {min:.0} |"
    );
    let _ = writeln!(
        out,
        "\n`credits serve` as `make run` builds and starts it (its own DynamoDB Local, data in a folder of its own), a\n\
         receiver in the bench registered through `POST /v1/admin/webhook-endpoints` for `grant.created`, then {WARM_UP_GRANTS} untimed\n\
         grants and {n} timed ones through `POST /v1/admin/users/{{userId}}/grants` (p50 {answer50:.0} ms to answer), one at a time,\n\
         each after a random pause of up to 1 s so that it lands anywhere in the reader's cycle. The delay is dominated\n\
         by that cycle: the dev server reads DynamoDB Local's stream once a second, so a change waits 0 to 1 s for the\n\
         next read (about 0.5 s on average), then the read itself, `Outbox::apply` (the endpoints' list, the puts) and\n\
         the POST. With `CREDITS_EVENT_BUS` set, PutEvents and the publish mark come before the first attempt too. On\n\
         AWS, the events function is invoked by the table's stream through its event source mapping; this figure is the\n\
         dev server's, not that.\n\n\
         A retry's delay is not measured: a failed attempt is due {} s later (then 5 min, 30 min, 2 h, 5 h, 10 h, 10 h),\n\
         and only the scheduled job retries, when it next runs after that: every `CREDITS_CLEANUP_INTERVAL_SECONDS`\n\
         (default 60) in the dev server, every `CleanupSchedule` (default 1 minute) on AWS. The first retry so comes 5 s\n\
         to about one interval + 5 s after the failure, each later one up to one interval after its time. The dev server\n\
         was built in {:.0} s for this run (cargo's `make run` build: `cargo build --workspace --bin credits`).\n",
        SCHEDULE_SECONDS[0],
        d.built.as_secs_f64()
    );
    Ok(())
}
