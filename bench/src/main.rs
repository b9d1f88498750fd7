//! `make bench`: cost, latency, throughput and sweep growth of the ledger
//! against DynamoDB Local, printed and written into BENCHMARKS.md.
//! A benchmark prints figures; it never fails because a machine is slow.

mod audit;
mod coldstart;
mod events;
mod lots;
mod meter;
mod runtime_api;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, StreamSpecification, StreamViewType, WriteRequest};
use credits_shared::clock::ManualClock;
use credits_shared::domain::principal::TrustedClients;
use credits_shared::domain::{Actor, Attribution, Credits, GrantReason, Provider, UserId};
use credits_shared::http::{handle, Function};
use credits_shared::inbound::{Outcome, Verifiers};
use credits_shared::ledger::outcome::Delivery;
use credits_shared::ledger::{GrantRequest, ReserveRequest};
use credits_shared::prices::Catalog;
use credits_shared::store::{key, n, s, sdk_config, Store};
use credits_shared::{App, Error, Ledger};
use futures::future::join_all;
use meter::{Meter, Units};
use serde_json::json;

/// Untimed lifecycles each section's DynamoDB Local runs first.
const WARM_UP_LIFECYCLES: usize = 300;

/// Captures on one hold before the bench measures the next (item growth).
const MANY_CAPTURES: usize = 20;

/// On-demand prices assumed (us-east-1, per million request units).
const WRITE_PRICE: f64 = 0.625;
const READ_PRICE: f64 = 0.125;

struct Env {
    ledger: Ledger,
    store: Store,
    clock: Arc<ManualClock>,
    meter: Meter,
}

async fn env(sdk: &aws_config::SdkConfig) -> Result<Env, String> {
    let meter = Meter::default();
    let config = aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(meter.clone()).build();
    let store = Store::new(aws_sdk_dynamodb::Client::from_conf(config), format!("b-{}", uuid::Uuid::new_v4().simple()));
    store.create_table_if_missing().await.map_err(|e| e.to_string())?;
    let clock = ManualClock::starting_now();
    let ledger = Ledger::new(store.clone(), clock.clone(), Arc::new(Catalog::default_catalog()), 90);
    Ok(Env { ledger, store, clock, meter })
}

fn user(name: &str) -> UserId {
    UserId::parse(&format!("{name}-{}", uuid::Uuid::new_v4().simple())).unwrap_or_else(|| unreachable!())
}

fn request(operation: &str, units: u32) -> ReserveRequest {
    ReserveRequest::new(operation, units)
}

async fn grant(ledger: &Ledger, user: &UserId, amount: u64) -> Result<(), String> {
    let request = GrantRequest::new(amount, GrantReason::Purchase, &uuid::Uuid::new_v4().to_string(), "bench");
    ledger.grant(user, request).await.map(|_| ()).map_err(|e| e.to_string())
}

/// An attribute value's size as DynamoDB bills it: names and strings by
/// their UTF-8 length, a number by about one byte per two digits plus one,
/// a list or map 3 bytes plus 1 an element plus its elements.
fn value_size(value: &AttributeValue) -> usize {
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

/// The size in bytes of a hold's item as stored.
async fn hold_size(store: &Store, id: uuid::Uuid) -> Result<usize, String> {
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

/// `used` with the write of a hold of `bytes` priced per KB: DynamoDB
/// charges a transactional write 2 WCU per started KB of the item (the
/// larger of its images), where the meter counts 2 an item.
fn per_kb(used: Units, bytes: usize) -> Units {
    let extra_kb = bytes.div_ceil(1024).saturating_sub(1);
    Units { write: used.write + 2.0 * extra_kb as f64, ..used }
}

fn minus(a: Units, b: Units) -> Units {
    Units { read: a.read - b.read, write: a.write - b.write, requests: a.requests - b.requests }
}

macro_rules! metered {
    ($env:expr, $body:expr) => {{
        let before = $env.meter.snapshot();
        let value = $body;
        (value, minus($env.meter.snapshot(), before))
    }};
}

/// Read and write units per operation and per lifecycle; the success
/// lifecycle's reserve and confirm, for the lots section.
async fn cost(sdk: &aws_config::SdkConfig, out: &mut String) -> Result<(Units, Units), String> {
    let e = env(sdk).await?;
    let l = &e.ledger;
    let u = user("cost");
    let e_ = |err: Error| err.to_string();
    let mut rows: Vec<(&str, Units)> = Vec::new();

    let (_, c) = metered!(e, grant(l, &u, 1_000_000).await?);
    rows.push(("grant", c));
    let (hold, c) = metered!(e, l.reserve(&u, request("design_generate_image", 2)).await.map_err(e_)?.into_inner());
    rows.push(("reserve", c));
    let (_, c) = metered!(e, l.confirm(Some(&u), hold.reservation_id, None, Actor::Server).await.map_err(e_)?);
    rows.push(("confirm (all units)", c));
    let success = rows[1].1.write + rows[2].1.write;
    let success_reads = rows[1].1.read + rows[2].1.read;
    let (_, c) = metered!(e, l.confirm(Some(&u), hold.reservation_id, None, Actor::Server).await.map_err(e_)?);
    rows.push(("confirm replay", c));

    let (hold, reserve) =
        metered!(e, l.reserve(&u, request("design_generate_image", 4)).await.map_err(e_)?.into_inner());
    let (_, c) = metered!(e, l.confirm(Some(&u), hold.reservation_id, Some(3), Actor::Server).await.map_err(e_)?);
    rows.push(("confirm (partial)", c));
    let partial = (reserve.write + c.write, reserve.read + c.read);

    // Captures and extends, for a user of their own (the history page
    // below reads the first user's lines). A 4-image job captured per image
    // (`final: false`, a key each), then closed by a final confirm that
    // captures nothing more.
    let w = user("capture");
    grant(l, &w, 1_000_000).await?;
    let hold = l.reserve(&w, request("design_generate_image", 4)).await.map_err(e_)?.into_inner();
    let id = hold.reservation_id;
    let (_, c) = metered!(e, l.capture(Some(&w), id, 1, "image-1", Actor::Server).await.map_err(e_)?);
    rows.push(("capture (non-final, 1 of 4 units)", c));
    let (_, c) = metered!(e, l.capture(Some(&w), id, 1, "image-1", Actor::Server).await.map_err(e_)?);
    rows.push(("capture replay (same key)", c));
    for image in 2..=4 {
        l.capture(Some(&w), id, 1, &format!("image-{image}"), Actor::Server).await.map_err(e_)?;
    }
    let (_, c) = metered!(e, l.confirm(Some(&w), id, None, Actor::Server).await.map_err(e_)?);
    rows.push(("confirm after captures (0 more)", c));
    let job_size = hold_size(&e.store, id).await?;

    let hold = l.reserve(&w, request("design_generate_image", 1)).await.map_err(e_)?.into_inner();
    let (_, c) = metered!(e, l.extend(Some(&w), hold.reservation_id, 3600, Actor::Server).await.map_err(e_)?);
    rows.push(("extend", c));
    l.release(Some(&w), hold.reservation_id, Actor::Server).await.map_err(e_)?;

    // A hold item keeps an event and a key for every capture: it outgrows
    // 1 KB, and every write of it is billed per KB.
    let hold = l.reserve(&w, request("design_generate_image", 30)).await.map_err(e_)?.into_inner();
    let id = hold.reservation_id;
    let mut sizes = vec![hold_size(&e.store, id).await?];
    for capture in 1..=MANY_CAPTURES {
        l.capture(Some(&w), id, 1, &format!("capture-{capture}"), Actor::Server).await.map_err(e_)?;
        if capture == 1 {
            sizes.push(hold_size(&e.store, id).await?);
        }
    }
    sizes.push(hold_size(&e.store, id).await?);
    let (_, c) = metered!(e, l.capture(Some(&w), id, 1, "one-more", Actor::Server).await.map_err(e_)?);
    let after = hold_size(&e.store, id).await?;
    rows.push(("capture, the 21st on one hold ¹", per_kb(c, sizes[2].max(after))));
    let (_, c) = metered!(e, l.extend(Some(&w), id, 3600, Actor::Server).await.map_err(e_)?);
    rows.push(("extend, after 21 captures", c));
    let before = hold_size(&e.store, id).await?;
    let (_, c) = metered!(e, l.confirm(Some(&w), id, None, Actor::Server).await.map_err(e_)?);
    let after = hold_size(&e.store, id).await?;
    rows.push(("confirm, after 21 captures (the rest) ¹", per_kb(c, before.max(after))));
    sizes.push(after);

    let (hold, reserve) =
        metered!(e, l.reserve(&u, request("design_generate_logo", 1)).await.map_err(e_)?.into_inner());
    let (_, c) = metered!(e, l.release(Some(&u), hold.reservation_id, Actor::Server).await.map_err(e_)?);
    rows.push(("release", c));
    let failure = (reserve.write + c.write, reserve.read + c.read);

    let mut short = request("design_generate_icon", 1);
    short.ttl_seconds = 1;
    let (hold, reserve) = metered!(e, l.reserve(&u, short).await.map_err(e_)?.into_inner());
    e.clock.advance_seconds(2);
    let (_, c) = metered!(e, l.expire(hold.reservation_id, Actor::Cleanup).await.map_err(e_)?);
    rows.push(("expire (one hold, by the sweep)", c));
    let expiry = (reserve.write + c.write, reserve.read + c.read);
    let (_, c) = metered!(e, l.sweep(Instant::now() + Duration::from_secs(30), 8).await.map_err(e_)?);
    rows.push(("sweep listing, nothing due (16 shard queries)", c));

    let mut with_task = request("design_generate_image", 1);
    with_task.task_id = Some("bench-task".into());
    let (hold, reserve) = metered!(e, l.reserve(&u, with_task).await.map_err(e_)?.into_inner());
    rows.push(("reserve with taskId", reserve));
    let delivery = Delivery {
        provider: Provider::Bfl,
        task_id: "bench-task".into(),
        outcome: Outcome::Success { units: None },
        delivery_id: None,
    };
    let (_, c) = metered!(e, l.apply_outcome(&delivery).await.map_err(e_)?);
    rows.push(("webhook confirms a linked hold", c));
    let webhook = (reserve.write + c.write, reserve.read + c.read);
    let (_, c) = metered!(e, l.apply_outcome(&delivery).await.map_err(e_)?);
    rows.push(("webhook redelivery", c));
    let (_, c) = metered!(
        e,
        l.refund(hold.reservation_id, &Attribution { actor: "ops".into(), reason: None }).await.map_err(e_)?
    );
    rows.push(("refund (admin)", c));

    let other = l.reserve(&u, request("design_generate_image", 1)).await.map_err(e_)?.into_inner();
    let (_, c) = metered!(
        e,
        l.link_task(Some(&u), other.reservation_id, Provider::Bfl, "bench-task-2", Actor::Server).await.map_err(e_)?
    );
    rows.push(("link task", c));
    let (_, c) = metered!(e, l.balance(&u).await.map_err(e_)?);
    rows.push(("balance", c));
    let (_, c) = metered!(e, l.history(&u, 50, None).await.map_err(e_)?);
    rows.push(("history page (up to 50 lines)", c));

    let _ = writeln!(out, "## Cost: request units per operation\n");
    let _ = writeln!(out, "From `ReturnConsumedCapacity` (`INDEXES`) on every request, corrected for DynamoDB Local's");
    let _ = writeln!(out, "pricing of transactions (a transactional item is 2 WCU, an index write 1).\n");
    let _ = writeln!(out, "| operation | requests | RCU | WCU |\n|---|---:|---:|---:|");
    for (name, c) in &rows {
        let _ = writeln!(out, "| {name} | {} | {:.1} | {:.1} |", c.requests, c.read, c.write);
    }
    let _ =
        writeln!(out, "\n| lifecycle | RCU | WCU | floor WCU | $ per million lifecycles |\n|---|---:|---:|---:|---:|");
    for (name, (write, read), floor) in [
        ("success (reserve → confirm)", (success, success_reads), 8.0),
        ("failure (reserve → release)", failure, 8.0),
        ("expiry (reserve → sweep)", expiry, 8.0),
        ("webhook-settled (reserve with taskId → webhook)", webhook, 8.0),
        ("partial capture (reserve 4 → confirm 3)", partial, 8.0),
    ] {
        let dollars = write * WRITE_PRICE + read * READ_PRICE;
        let _ = writeln!(out, "| {name} | {read:.1} | {write:.1} | {floor:.0} | {dollars:.2} |");
    }
    let _ = writeln!(
        out,
        "\nFloor: the hold and the balance written together twice (place, settle) as transactions: 2 items × 2 WCU × 2.\n\
         Above it: the history lines (2 WCU each) and the pending index entry in and out (1 WCU each); see docs/DATA_MODEL.md.\n\
         Prices assumed: on-demand ${WRITE_PRICE} per million write and ${READ_PRICE} per million read request units.\n"
    );
    let _ = writeln!(
        out,
        "A non-final capture (`final: false`) is one transaction like a confirm's (the hold, the balance, a `capture`\n\
         history line) that leaves the hold in the pending index; its replay (same key, same units) is the hold's read\n\
         alone. The final confirm after captures closes the hold capturing 0 more: its `confirm` line says 0 credits, and\n\
         there is no `release` line when nothing is left. Extend is one conditional UpdateItem of the hold that moves its\n\
         entry in the pending index (sorted by `expiresAt`): 1 WCU for the hold, a delete and a put there, 1 WCU each.\n\n\
         A hold item grows with its captures: each adds an event and its key (a 12-byte digest, 24 hex characters) to the\n\
         item. It was {} bytes when placed, {} after its first capture, {} after {MANY_CAPTURES} and {} once closed after 21 (sizes\n\
         by DynamoDB's rules, read back from the table); a 4-image job's hold captured per image is {job_size} bytes once closed.\n\
         DynamoDB bills every write of the hold per started KB of the larger of its old and new image (2 WCU a KB in a\n\
         transaction), so a hold with very many captures costs more on every later capture, extend and close.\n\
         ¹ DynamoDB Local's figures for transactions do not follow item size, so the meter prices each transactional item at\n\
         2 WCU (1 KB); on these rows the hold's size, read back before and after the write, adds 2 WCU per KB beyond its first.\n\
         Extend's UpdateItem is priced by DynamoDB Local itself, per KB.\n",
        sizes[0], sizes[1], sizes[2], sizes[3]
    );
    Ok((rows[1].1, rows[2].1))
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(rank).copied().unwrap_or(0.0)
}

/// An API Gateway HTTP API (payload 2.0) event, as Lambda delivers it.
fn api_event(
    method: &str,
    path: &str,
    claims: Option<serde_json::Value>,
    headers: serde_json::Value,
    body: &str,
) -> serde_json::Value {
    let mut context = json!({"accountId": "bench", "apiId": "bench", "domainName": "bench", "domainPrefix": "bench",
        "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
        "time": "23/Nov/2026:00:00:00 +0000", "timeEpoch": 0,
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"}});
    if let Some(claims) = claims {
        context["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
    }
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers, "requestContext": context, "body": body, "isBase64Encoded": false,
    })
}

/// The client id of the bench's app back end (`CREDITS_SERVER_CLIENT_IDS`).
pub const BENCH_SERVER: &str = "bench-server";

/// The claims of the app's back end: a client-credentials token.
fn server_claims() -> serde_json::Value {
    json!({"sub": BENCH_SERVER, "client_id": BENCH_SERVER, "scope": "credits/server", "token_use": "access"})
}

/// The app's back end acting for `user`.
fn event(method: &str, path: &str, user: &UserId, body: &str) -> Result<lambda_http::Request, String> {
    keyed_event(method, path, user, body, None)
}

/// The same, with an `Idempotency-Key` when `key` is given.
fn keyed_event(
    method: &str,
    path: &str,
    user: &UserId,
    body: &str,
    key: Option<&str>,
) -> Result<lambda_http::Request, String> {
    let mut headers = json!({"content-type": "application/json", "credits-user": user.as_str()});
    if let Some(key) = key {
        headers["idempotency-key"] = json!(key);
    }
    let event = api_event(method, path, Some(server_claims()), headers, body);
    lambda_http::request::from_str(&event.to_string()).map_err(|e| e.to_string())
}

/// The answer's JSON, or what went wrong when its status is not `expected`.
fn answer(response: &lambda_http::Response<lambda_http::Body>, expected: u16) -> Result<serde_json::Value, String> {
    let body = String::from_utf8_lossy(response.body().as_ref()).into_owned();
    if response.status().as_u16() != expected {
        return Err(format!("expected {expected}, got {}: {body}", response.status()));
    }
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

/// A new hold of `units` units through the handler; its id.
async fn reserve_units(app: &App, u: &UserId, units: u32) -> Result<String, String> {
    let body = json!({"operation": "design_generate_image", "units": units}).to_string();
    let hold = answer(&handle(app, Function::Reserve, event("POST", "/v1/reservations", u, &body)?).await, 201)?;
    hold["reservationId"].as_str().map(str::to_owned).ok_or_else(|| "reserve answered no id".into())
}

/// A non-final capture of `units` through the handler.
async fn capture_units(app: &App, u: &UserId, id: &str, units: u32, key: &str) -> Result<(), String> {
    let body = json!({"units": units, "final": false}).to_string();
    let path = format!("/v1/reservations/{id}/confirm");
    answer(&handle(app, Function::Confirm, keyed_event("POST", &path, u, &body, Some(key))?).await, 200).map(|_| ())
}

/// p50/p99 of each operation through the real handler, next to the bare
/// DynamoDB requests it makes; the reserve's and the confirm's p50, for
/// the lots section.
async fn latency(sdk: &aws_config::SdkConfig, out: &mut String, rounds: usize) -> Result<(f64, f64), String> {
    let e = env(sdk).await?;
    let trusted = TrustedClients::new(BENCH_SERVER, "");
    let app = App { ledger: e.ledger.clone(), verifiers: Arc::new(Verifiers::new("", "")), trusted };
    let u = user("latency");
    grant(&e.ledger, &u, 1_000_000_000).await?;
    let (mut reserve, mut confirm, mut balance) = (Vec::new(), Vec::new(), Vec::new());
    let (mut capture, mut extend) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let body = r#"{"operation":"design_generate_image"}"#;
        let t = Instant::now();
        let response = handle(&app, Function::Reserve, event("POST", "/v1/reservations", &u, body)?).await;
        reserve.push(t.elapsed().as_secs_f64() * 1000.0);
        let hold: serde_json::Value = serde_json::from_slice(response.body().as_ref()).map_err(|e| e.to_string())?;
        let id = hold["reservationId"].as_str().ok_or("reserve failed")?.to_owned();
        let t = Instant::now();
        handle(&app, Function::Confirm, event("POST", &format!("/v1/reservations/{id}/confirm"), &u, "")?).await;
        confirm.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        handle(&app, Function::Account, event("GET", "/v1/balance", &u, "")?).await;
        balance.push(t.elapsed().as_secs_f64() * 1000.0);
        // A non-final capture and an extend, on a hold of 4 units placed
        // and released around them.
        let id = reserve_units(&app, &u, 4).await?;
        let t = Instant::now();
        capture_units(&app, &u, &id, 1, "image-1").await?;
        capture.push(t.elapsed().as_secs_f64() * 1000.0);
        let path = format!("/v1/reservations/{id}/extend");
        let t = Instant::now();
        let response = handle(&app, Function::Account, event("POST", &path, &u, r#"{"ttlSeconds":900}"#)?).await;
        extend.push(t.elapsed().as_secs_f64() * 1000.0);
        answer(&response, 200)?;
        let path = format!("/v1/reservations/{id}/release");
        answer(&handle(&app, Function::Release, event("POST", &path, &u, "")?).await, 200)?;
    }
    // The bare requests: a 3-item transaction shaped like reserve's, and a GetItem.
    let client = e.store.client();
    let bare_user = format!("USER#{}", user("bare"));
    let mut seed = key(bare_user.clone(), "BALANCE");
    seed.insert("available".into(), n(1_000_000_000u64));
    e.store.put(seed).await.map_err(|e| e.to_string())?;
    // An item in the pending index, for an UpdateItem that moves its entry
    // as extend's does.
    let mut indexed = key(bare_user.clone(), "INDEXED");
    indexed.insert("pendingShard".into(), s("P#00"));
    indexed.insert("expiresAt".into(), n(1u64));
    indexed.insert("v".into(), s("x".repeat(300)));
    e.store.put(indexed).await.map_err(|e| e.to_string())?;
    let (mut transact, mut get, mut moved) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let put = |sk: String| -> Result<aws_sdk_dynamodb::types::TransactWriteItem, String> {
            let mut item = key(bare_user.clone(), &sk);
            item.insert("v".into(), s("x".repeat(300)));
            let put = aws_sdk_dynamodb::types::Put::builder()
                .table_name(e.store.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| e.to_string())?;
            Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder().put(put).build())
        };
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(e.store.table())
            .set_key(Some(key(bare_user.clone(), "BALANCE")))
            .update_expression("SET available = available - :a")
            .condition_expression("available >= :a")
            .expression_attribute_values(":a", n(5))
            .build()
            .map_err(|e| e.to_string())?;
        let items = vec![
            aws_sdk_dynamodb::types::TransactWriteItem::builder().update(update).build(),
            put(format!("A#{}", uuid::Uuid::new_v4()))?,
            put(format!("B#{}", uuid::Uuid::new_v4()))?,
        ];
        let t = Instant::now();
        client.transact_write_items().set_transact_items(Some(items)).send().await.map_err(|e| format!("{e:?}"))?;
        transact.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        client
            .get_item()
            .table_name(e.store.table())
            .set_key(Some(key(bare_user.clone(), "BALANCE")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        get.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        client
            .update_item()
            .table_name(e.store.table())
            .set_key(Some(key(bare_user.clone(), "INDEXED")))
            .update_expression("SET expiresAt = expiresAt + :one")
            .condition_expression("expiresAt > :zero")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        moved.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (t50, t99, g50, g99) = (
        percentile(&mut transact, 0.5),
        percentile(&mut transact, 0.99),
        percentile(&mut get, 0.5),
        percentile(&mut get, 0.99),
    );
    let (m50, m99) = (percentile(&mut moved, 0.5), percentile(&mut moved, 0.99));
    let _ = writeln!(out, "## Latency through the handler vs the bare DynamoDB requests ({rounds} rounds, ms)\n");
    let _ = writeln!(out, "| operation | p50 | p99 | bare requests it makes | bare p50 | bare p99 | p50 ratio |\n|---|---:|---:|---|---:|---:|---:|");
    for (name, samples, bare, b50, b99) in [
        ("POST /v1/reservations", &mut reserve, "1 transaction (3 items)", t50, t99),
        ("POST …/confirm", &mut confirm, "GetItem + transaction (3 items)", g50 + t50, g99 + t99),
        ("POST …/confirm `final: false`", &mut capture, "GetItem + transaction (3 items)", g50 + t50, g99 + t99),
        ("POST …/extend", &mut extend, "GetItem + UpdateItem (moving an index entry)", g50 + m50, g99 + m99),
        ("GET /v1/balance", &mut balance, "GetItem", g50, g99),
    ] {
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        let _ = writeln!(
            out,
            "| {name} | {p50:.2} | {p99:.2} | {bare} | {b50:.2} | {b99:.2} | {:.2} |",
            p50 / b50.max(0.001)
        );
    }
    let _ = writeln!(
        out,
        "\nEach round: a reserve, its confirm and a balance read; then a hold of 4 units placed, captured once (1 unit,\n\
         `final: false`, an `Idempotency-Key`), extended (`ttlSeconds` 900) and released, the capture and the extend timed.\n\
         All through the handler as the app's back end calls it (a server token naming the user in `Credits-User`).\n"
    );
    Ok((percentile(&mut reserve, 0.5), percentile(&mut confirm, 0.5)))
}

/// A 4-image job charged per image (4 non-final captures, then a final
/// confirm of 0 more) against one final confirm: units and end-to-end time.
async fn jobs(sdk: &aws_config::SdkConfig, out: &mut String, rounds: usize) -> Result<(), String> {
    let e = env(sdk).await?;
    let trusted = TrustedClients::new(BENCH_SERVER, "");
    let app = App { ledger: e.ledger.clone(), verifiers: Arc::new(Verifiers::new("", "")), trusted };
    let u = user("jobs");
    grant(&e.ledger, &u, 1_000_000_000).await?;
    let (mut per_image, mut at_once) = (Vec::new(), Vec::new());
    let (mut per_image_units, mut at_once_units) = (Units::default(), Units::default());
    let add = |total: &mut Units, used: Units| {
        total.read += used.read;
        total.write += used.write;
        total.requests += used.requests;
    };
    for _ in 0..rounds {
        let before = e.meter.snapshot();
        let t = Instant::now();
        let id = reserve_units(&app, &u, 4).await?;
        for image in 1..=4 {
            capture_units(&app, &u, &id, 1, &format!("{id}-image-{image}")).await?;
        }
        let path = format!("/v1/reservations/{id}/confirm");
        let hold = answer(&handle(&app, Function::Confirm, event("POST", &path, &u, "{}")?).await, 200)?;
        per_image.push(t.elapsed().as_secs_f64() * 1000.0);
        add(&mut per_image_units, minus(e.meter.snapshot(), before));
        if hold["capturedUnits"] != json!(4) || hold["status"] != json!("confirmed") {
            return Err(format!("the job captured per image did not close with 4 units captured: {hold}"));
        }

        let before = e.meter.snapshot();
        let t = Instant::now();
        let id = reserve_units(&app, &u, 4).await?;
        let path = format!("/v1/reservations/{id}/confirm");
        answer(&handle(&app, Function::Confirm, event("POST", &path, &u, r#"{"units":4}"#)?).await, 200)?;
        at_once.push(t.elapsed().as_secs_f64() * 1000.0);
        add(&mut at_once_units, minus(e.meter.snapshot(), before));
    }
    let balance = e.ledger.balance(&u).await.map_err(|e| e.to_string())?;
    let books = if balance.adds_up() && balance.reserved == Credits(0) { "add up" } else { "DO NOT ADD UP" };
    let _ = writeln!(out, "## A 4-image job: captured per image vs one final confirm ({rounds} jobs each)\n");
    let _ = writeln!(
        out,
        "| job | HTTP calls | DynamoDB requests | RCU | WCU | $ per million jobs | p50 (ms) | p99 (ms) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (name, calls, samples, used) in [
        ("captured per image (reserve 4 → 4 × capture 1 → confirm 0 more)", 6, &mut per_image, per_image_units),
        ("one final confirm (reserve 4 → confirm 4)", 2, &mut at_once, at_once_units),
    ] {
        let count = rounds.max(1) as f64;
        let (read, write) = (used.read / count, used.write / count);
        let dollars = write * WRITE_PRICE + read * READ_PRICE;
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        let _ = writeln!(
            out,
            "| {name} | {calls} | {:.1} | {read:.1} | {write:.1} | {dollars:.2} | {p50:.2} | {p99:.2} |",
            used.requests as f64 / count
        );
    }
    let _ = writeln!(
        out,
        "\nEach job through the handler as the app's back end calls it (a server token, `Credits-User`), one request after\n\
         the other; the units are the meter's over the whole job (the mean of the {rounds}), the time from sending the\n\
         reserve to the last answer. The captures carry one `Idempotency-Key` per image and `units: 1`; the closing\n\
         `POST …/confirm` with `{{}}` captures nothing more (there is nothing left) and writes a `confirm` history line\n\
         of 0 credits. Per image, the balance shows each image's spend as it lands and a job that dies midway keeps only\n\
         its unfinished images held; that costs four more reads and transactions (hold, balance and a `capture` line\n\
         each): {:.1} times the write units and {:.1} times the time of one final confirm. Books after all {} jobs: {books}.\n",
        per_image_units.write / at_once_units.write.max(0.001),
        percentile(&mut per_image, 0.5) / percentile(&mut at_once, 0.5).max(0.001),
        2 * rounds
    );
    Ok(())
}

/// Reserve → confirm lifecycles a second, over distinct users and one hot user.
async fn throughput(sdk: &aws_config::SdkConfig, out: &mut String, seconds: u64) -> Result<(), String> {
    let _ = writeln!(out, "## Throughput: reserve → confirm lifecycles ({seconds} s a run)\n");
    let _ = writeln!(out, "| clients | users | lifecycles/s | errors | transaction conflicts (retried) | books |\n|---:|---|---:|---:|---:|---|");
    for clients in [1usize, 8, 32] {
        for hot in [false, true] {
            let e = env(sdk).await?;
            let users: Vec<UserId> = (0..if hot { 1 } else { clients }).map(|i| user(&format!("tp{i}"))).collect();
            for u in &users {
                grant(&e.ledger, u, 1_000_000_000).await?;
            }
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let started = Instant::now();
            let results = join_all((0..clients).map(|i| {
                let (ledger, u) = (&e.ledger, &users[i % users.len()]);
                async move {
                    let (mut ok, mut errors) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        let done = match ledger.reserve(u, request("design_generate_image", 1)).await {
                            Ok(hold) => ledger
                                .confirm(Some(u), hold.into_inner().reservation_id, None, Actor::Server)
                                .await
                                .is_ok(),
                            Err(_) => false,
                        };
                        if done {
                            ok += 1;
                        } else {
                            errors += 1;
                        }
                    }
                    (ok, errors)
                }
            }))
            .await;
            let elapsed = started.elapsed().as_secs_f64();
            let (ok, errors) = results.iter().fold((0, 0), |(a, b), (o, e)| (a + o, b + e));
            let mut books = "add up";
            for u in &users {
                let b = e.ledger.balance(u).await.map_err(|e| e.to_string())?;
                if !b.adds_up() || b.reserved != Credits(0) && errors == 0 {
                    books = "DO NOT ADD UP";
                }
            }
            let _ = writeln!(
                out,
                "| {clients} | {} | {:.0} | {errors} | {} | {books} |",
                if hot { "1 hot user".to_owned() } else { format!("{clients} distinct") },
                ok as f64 / elapsed,
                e.meter.conflicts()
            );
        }
    }
    let _ = writeln!(out);
    Ok(())
}

/// Turns the table's stream off, or back on with the view the table is
/// created with (`Store::create_table_if_missing`).
async fn set_stream(store: &Store, enabled: bool) -> Result<(), String> {
    let mut spec = StreamSpecification::builder().stream_enabled(enabled);
    if enabled {
        spec = spec.stream_view_type(StreamViewType::NewAndOldImages);
    }
    let spec = spec.build().map_err(|e| e.to_string())?;
    let update = store.client().update_table().table_name(store.table()).stream_specification(spec);
    update
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("turning the stream {}: {e:?}", if enabled { "on" } else { "off" }))
}

/// The sweep's time and reads with a growing table where 1% is due.
async fn growth(sdk: &aws_config::SdkConfig, out: &mut String, sizes: &[usize]) -> Result<(), String> {
    let _ = writeln!(out, "## Sweep growth: 1% of the pending holds due\n");
    let _ = writeln!(out, "| pending holds | due | expired | index entries read | read requests | RCU | sweep time (ms) |\n|---:|---:|---:|---:|---:|---:|---:|");
    for &size in sizes {
        let e = env(sdk).await?;
        let now = e.ledger.now().millis();
        let due = size / 100;
        let users: Vec<UserId> = (0..100).map(|i| user(&format!("g{i}"))).collect();
        let mut per_user: HashMap<String, u64> = HashMap::new();
        let mut requests = Vec::with_capacity(size);
        for i in 0..size {
            let id = uuid::Uuid::new_v4();
            let owner = &users[i % users.len()];
            let expires = if i < due { now - 1000 } else { now + 3_600_000 };
            *per_user.entry(owner.to_string()).or_default() += 5;
            let mut item: HashMap<String, AttributeValue> = key(format!("HOLD#{id}"), "HOLD");
            for (k, v) in [
                ("entity", s("hold")),
                ("reservationId", s(id.to_string())),
                ("userId", s(owner.as_str())),
                ("operation", s("design_generate_image")),
                ("units", n(1)),
                ("unitCost", n(5)),
                ("amount", n(5)),
                ("status", s("pending")),
                ("provider", s("bfl")),
                ("createdAt", n(now - 3_600_000)),
                ("expiresAt", n(expires)),
                ("capturedUnits", n(0)),
                ("capturedAmount", n(0)),
                ("releasedAmount", n(0)),
                ("events", AttributeValue::L(Vec::new())),
                ("pendingShard", s(credits_shared::store::pending_shard(id))),
            ] {
                item.insert(k.into(), v);
            }
            requests.push(
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().map_err(|e| e.to_string())?)
                    .build(),
            );
        }
        for (owner, reserved) in &per_user {
            let mut balance = key(format!("USER#{owner}"), "BALANCE");
            for (k, v) in [("available", 0), ("reserved", *reserved), ("spent", 0), ("granted", *reserved)] {
                balance.insert(k.into(), n(v));
            }
            balance.insert("userId".into(), s(owner.as_str()));
            balance.insert("entity".into(), s("balance"));
            e.store.put(balance).await.map_err(|e| e.to_string())?;
        }
        eprintln!("bench: loading {size} pending holds");
        let loading = Instant::now();
        // DynamoDB Local appends every write to the table's stream, and each
        // append gets slower as the stream grows: 100k holds took over ten
        // minutes to load with it, 45 s without. The stream is off for the
        // load and back on for the sweep, whose writes feed it as on AWS.
        set_stream(&e.store, false).await?;
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(25).map(<[WriteRequest]>::to_vec).collect();
        let table = e.store.table().to_owned();
        for (done, group) in chunks.chunks(8).enumerate() {
            let loaded = done * 8 * 25;
            if loaded > 0 && loaded % 10_000 == 0 {
                eprintln!("bench: {loaded} of {size} loaded ({:.0} s)", loading.elapsed().as_secs_f64());
            }
            let writes = group.iter().map(|chunk| {
                let (client, table) = (e.store.client().clone(), table.clone());
                let mut pending = chunk.clone();
                async move {
                    while !pending.is_empty() {
                        let out = client
                            .batch_write_item()
                            .request_items(table.clone(), pending)
                            .send()
                            .await
                            .map_err(|e| format!("{e:?}"))?;
                        pending = out.unprocessed_items.and_then(|mut m| m.remove(&table)).unwrap_or_default();
                    }
                    Ok::<(), String>(())
                }
            });
            for result in join_all(writes).await {
                result?;
            }
        }
        set_stream(&e.store, true).await?;
        eprintln!("bench: loaded {size} in {:.0} s; sweeping", loading.elapsed().as_secs_f64());
        let before = e.meter.snapshot();
        let started = Instant::now();
        let report = e.ledger.sweep(Instant::now() + Duration::from_secs(600), 8).await.map_err(|e| e.to_string())?;
        let elapsed = started.elapsed().as_millis();
        let used = minus(e.meter.snapshot(), before);
        let reads = report.scanned;
        let _ = writeln!(
            out,
            "| {size} | {due} | {} | {reads} | {} | {:.1} | {elapsed} |",
            report.expired, used.requests, used.read
        );
    }
    let _ = writeln!(
        out,
        "\nThe sweep reads index entries only for due holds (16 shard queries + one GetItem and one transaction per due hold).\n\
         The holds are written straight into the table (a hold item with its index attributes, and the balances) with its\n\
         stream off, because DynamoDB Local's stream slows each write as it grows (100k holds took over ten minutes with\n\
         it, under a minute without); the stream is back on before the sweep, so the sweep's writes feed it as on AWS.\n\n\
         Throughput and sweep times are bounded by DynamoDB Local, which runs transactions on about one core; they say\n\
         nothing about DynamoDB's throughput, only that nothing breaks and the books add up under concurrency.\n"
    );
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {cpu}, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

/// DynamoDB Local on a loaded 2-core machine can take seconds under a
/// bulk load: give the bench's requests more time than the service's.
async fn bench_sdk(endpoint: &str) -> aws_config::SdkConfig {
    sdk_config(Some(endpoint))
        .await
        .to_builder()
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        )
        .build()
}

/// A DynamoDB Local of its own for one section, and the SDK config for it.
async fn fresh_local() -> Result<(dynamodb_local::DynamoDbLocal, aws_config::SdkConfig), String> {
    let local = dynamodb_local::start(None)?;
    let sdk = bench_sdk(&local.endpoint).await;
    Ok((local, sdk))
}

/// The same, warmed up: a new JVM runs its first thousand requests several
/// times slower. The warm-up's table has its stream off, so it leaves no
/// stream records behind to slow the section.
async fn warm_local() -> Result<(dynamodb_local::DynamoDbLocal, aws_config::SdkConfig), String> {
    let (local, sdk) = fresh_local().await?;
    let e = env(&sdk).await?;
    set_stream(&e.store, false).await?;
    let u = user("warm-up");
    grant(&e.ledger, &u, 1_000_000_000).await?;
    for _ in 0..WARM_UP_LIFECYCLES {
        let hold = e.ledger.reserve(&u, request("design_generate_image", 2)).await.map_err(|e| e.to_string())?;
        let id = hold.into_inner().reservation_id;
        e.ledger.capture(Some(&u), id, 1, "warm-up", Actor::Server).await.map_err(|e| e.to_string())?;
        e.ledger.confirm(Some(&u), id, None, Actor::Server).await.map_err(|e| e.to_string())?;
        e.ledger.balance(&u).await.map_err(|e| e.to_string())?;
    }
    Ok((local, sdk))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("bench: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only <section>[,<section>…]` (cost, latency, jobs, lots,
    // throughput, growth, events, cold) runs those sections, for working on
    // them; like `--quick`, it writes nothing.
    let only: Option<Vec<String>> = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| args.get(i + 1).map(|s| s.split(',').map(str::to_owned).collect()).unwrap_or_default());
    const SECTIONS: [&str; 8] = ["cost", "latency", "jobs", "lots", "throughput", "growth", "events", "cold"];
    if let Some(sections) = &only {
        if sections.is_empty() || sections.iter().any(|s| !SECTIONS.contains(&s.as_str())) {
            return Err(format!("--only takes one or more of {}, separated by commas", SECTIONS.join(", ")));
        }
    }
    let runs = |section: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == section));
    // The ledger runs in this process: its CloudWatch metric lines would
    // bury the figures on stdout.
    credits_shared::metrics::discard();
    let started = Instant::now();
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Made by `make bench` (`cargo run --profile perf -p credits-bench`) on {}, {}; DynamoDB Local 3.3.0 (in memory) on the same machine,\n\
         so latencies include no network and are a floor; costs are what DynamoDB would charge for the same requests.\n\
         Each section below runs against a DynamoDB Local of its own, warmed up first ({WARM_UP_LIFECYCLES} reserve → capture → confirm\n\
         lifecycles, untimed, on a table without a stream). The tables the sections measure have their stream on (the stats\n\
         function reads it on AWS), and DynamoDB Local slows every write as its stream records pile up, whatever the table:\n\
         with one instance for all sections, the 4-image jobs after the latency section took 484 ms at p50 (110 on an\n\
         instance of their own) and the throughput runs after them made 3 lifecycles a second (55 to 65 with every\n\
         table's stream off).\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine()
    );
    let mut shown = 0;
    let mut show = |out: &String| {
        print!("{}", &out[shown..]);
        shown = out.len();
    };
    show(&out);
    // This run's plain success lifecycle, for the lots section.
    let mut today = lots::Today::default();
    if runs("cost") {
        let (local, sdk) = warm_local().await?;
        today.units = Some(cost(&sdk, &mut out).await?);
        show(&out);
        local.stop();
    }
    if runs("latency") {
        let (local, sdk) = warm_local().await?;
        today.p50 = Some(latency(&sdk, &mut out, if quick { 20 } else { 300 }).await?);
        show(&out);
        local.stop();
    }
    if runs("jobs") {
        let (local, sdk) = warm_local().await?;
        jobs(&sdk, &mut out, if quick { 20 } else { 300 }).await?;
        show(&out);
        local.stop();
    }
    if runs("lots") {
        lots::lots(&mut out, if quick { 5 } else { 50 }, &today).await?;
        show(&out);
    }
    if runs("throughput") {
        let (local, sdk) = warm_local().await?;
        throughput(&sdk, &mut out, if quick { 1 } else { 4 }).await?;
        show(&out);
        local.stop();
    }
    let sizes: &[usize] = if quick { &[1_000] } else { &[1_000, 10_000, 100_000] };
    if runs("growth") {
        let (local, sdk) = warm_local().await?;
        growth(&sdk, &mut out, sizes).await?;
        show(&out);
        local.stop();
    }
    // Its own DynamoDB Local and moto for the units, then the dev server
    // (which starts a DynamoDB Local of its own) for the delay.
    if runs("events") {
        events::events(&mut out, if quick { 10 } else { 30 }).await?;
        show(&out);
    }
    // A fresh DynamoDB Local for the functions too: after the sweep's bulk
    // loads an old one answers several times slower, and that would be
    // read as the functions' time.
    if runs("cold") {
        let (local, sdk) = fresh_local().await?;
        let fixture = coldstart::Fixture::new(env(&sdk).await?.ledger, local.endpoint.clone()).await?;
        coldstart::coldstart(&fixture, &mut out).await?;
        show(&out);
        local.stop();
    }
    let _ = writeln!(out, "## Audit: locks and blocking I/O on the async path\n");
    let _ = writeln!(
        out,
        "Lines of `shared/src` and `functions/` that name a lock, file, socket, sleep, thread, process, blocking\n\
         client or executor, or print (`bench/src/audit.rs`, run now):\n"
    );
    audit::scan(&mut out);
    let _ = writeln!(out, "{}", include_str!("audit.md"));
    let _ = writeln!(out, "Bench time: {:.0} s (after cargo built the bench itself).", started.elapsed().as_secs_f64());
    // `make bench` passes when it began, so the figure includes every build.
    let began = std::env::var("BENCH_STARTED").ok().and_then(|s| s.parse::<i64>().ok());
    if let Some(began) = began {
        let builds = match std::env::var("BENCH_BUILDS").as_deref() {
            Ok("fresh") => {
                ", from a fresh clone (no `target/perf` or `target/release`: every dependency compiled for both)"
            }
            Ok("cached") => " (cargo's caches were there: compare only fresh-clone runs with the 15-minute budget)",
            _ => "",
        };
        let took = chrono::Utc::now().timestamp() - began;
        let _ = writeln!(out, "Total `make bench` time, builds included: {took} s{builds}.");
    }
    show(&out);
    if !quick && only.is_none() {
        std::fs::write("BENCHMARKS.md", &out).map_err(|e| e.to_string())?;
    }
    Ok(())
}
