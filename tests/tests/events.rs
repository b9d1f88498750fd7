//! Outgoing events over HTTP against the dev server: every type arrives
//! once per change on both channels (EventBridge, served by moto, and a
//! Standard Webhooks receiver verified by the reference library); retries
//! follow the schedule with the same `webhook-id`; an endpoint failing for
//! 5 days is disabled; a redelivered stream batch or a crash between
//! recording and sending publishes nothing twice and loses nothing; an
//! endpoint's host is checked where it connects, at every attempt.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use credits_shared::events::bus::Bus;
use credits_shared::events::connect::NOT_PUBLIC;
use credits_shared::events::derive::Defaults;
use credits_shared::events::endpoints::NewEndpoint;
use credits_shared::events::outbox::Outbox;
use credits_shared::events::Kind;
use credits_tests::api::{actors, call, call_with, grant, reserve, Actors, Auth};
use credits_tests::events::{verify_with_reference_library, Hosts, Moto, Receiver};
use credits_tests::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Registers `url` for `events` (all when empty); the endpoint and its secret.
async fn register(server: &TestServer, a: &Actors, url: &str, events: &[&str]) -> (String, String) {
    let reply = call(
        server,
        Method::POST,
        "/v1/admin/webhook-endpoints",
        Some(&a.admin),
        Some(json!({"url": url, "events": events})),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let secret = reply.body["secret"].as_str().expect("secret shown once").to_owned();
    (reply.body["id"].as_str().expect("id").to_owned(), secret)
}

/// The ledger as the dev server runs it: its receivers are on this
/// machine, so webhooks may reach loopback (deployed, they may not).
fn dev_ledger(server: &TestServer) -> credits_shared::Ledger {
    server.env.ledger.clone().allowing_local_http_endpoints()
}

/// What the `events` function does with the stream since the last call.
async fn pump(server: &TestServer, outbox: &Outbox) -> Vec<credits_shared::store::stream::Change> {
    let changes = server.env.aggregate().await;
    outbox.apply(&changes).await.expect("apply events");
    changes
}

async fn job(outbox: &Outbox) -> credits_shared::events::deliver::OutboxReport {
    outbox.sweep(Instant::now() + Duration::from_secs(30)).await.expect("outbox sweep")
}

async fn sweep(server: &TestServer, a: &Actors) {
    let reply = call(server, Method::POST, "/v1/admin/cleanup", Some(&a.admin), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

async fn hold(server: &TestServer, a: &Actors, units: u32, ttl: u32) -> String {
    let reply =
        reserve(server, &a.server, json!({"operation": "design_generate_image", "units": units, "ttlSeconds": ttl}))
            .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["reservationId"].as_str().expect("id").to_owned()
}

async fn settle(server: &TestServer, auth: &Auth, id: &str, action: &str) {
    let reply =
        call(server, Method::POST, &format!("/v1/reservations/{id}/{action}"), Some(auth), Some(json!({}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{action}: {}", reply.body);
}

async fn set_threshold(server: &TestServer, a: &Actors, threshold: u64) {
    let path = format!("/v1/admin/users/{}/settings", a.user_id);
    let reply = call(server, Method::PUT, &path, Some(&a.admin), Some(json!({"lowBalanceThreshold": threshold}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

/// Monitoring's figures for this month, once the stats have read the stream.
async fn month_totals(server: &TestServer) -> credits_shared::monitoring::Totals {
    server.env.aggregate().await;
    let bucket = credits_shared::stats::buckets(server.env.ledger.now())[3].clone();
    credits_shared::monitoring::Monitor::new(server.env.store.clone()).totals(&bucket).await.expect("totals")
}

fn types_of(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap_or("").to_owned()).collect()
}

#[tokio::test]
async fn every_event_type_arrives_once_per_change_on_both_channels() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let moto = Moto::start().await;
    let queue = moto.bus_into_queue("credits-test").await;
    let bus = Bus::event_bridge("credits-test".into(), Some(&moto.endpoint)).await;
    let outbox = Outbox::new(dev_ledger(&server), bus, Defaults::default());
    let receiver = Receiver::start(&[]).await;
    let (_, secret) = register(&server, &a, &receiver.url, &[]).await;
    let mut changes = Vec::new();

    set_threshold(&server, &a, 50).await;
    grant(&server, &a.admin, &a.user_id, 100).await; // grant.created
    let confirmed = hold(&server, &a, 12, 600).await; // 100 → 40: balance.low
    settle(&server, &a.server, &confirmed, "confirm").await; // hold.confirmed
    changes.extend(pump(&server, &outbox).await);
    let refund = call(
        &server,
        Method::POST,
        &format!("/v1/admin/reservations/{confirmed}/refund"),
        Some(&a.admin),
        Some(json!({"reason": "bad output"})),
    )
    .await;
    assert_eq!(refund.status, StatusCode::OK, "{}", refund.body); // refund.created, balance.recovered
    let released = hold(&server, &a, 20, 600).await; // 100 → 0: balance.low, balance.depleted
    settle(&server, &a.server, &released, "release").await; // hold.released, balance.recovered
    changes.extend(pump(&server, &outbox).await);
    let debit = call_with(
        &server,
        Method::POST,
        &format!("/v1/admin/users/{}/debits", a.user_id),
        Some(&a.admin),
        Some(json!({"amount": 5, "reason": "chargeback"}).to_string()),
        &[("idempotency-key", "debit-1")],
    )
    .await;
    assert_eq!(debit.status, StatusCode::CREATED, "{}", debit.body); // debit.created
    let expiring = call_with(&server, Method::POST, &format!("/v1/admin/users/{}/grants", a.user_id), Some(&a.admin),
        Some(json!({"amount": 7, "reason": "promo", "priority": 60, "expiresAt": (server.env.ledger.now().plus_seconds(60)).to_rfc3339()}).to_string()),
        &[("idempotency-key", "promo-1")]).await;
    assert_eq!(expiring.status, StatusCode::CREATED, "{}", expiring.body); // grant.created
    changes.extend(pump(&server, &outbox).await);
    // The promo lot expires within the warning window: the job warns at once.
    assert_eq!(job(&outbox).await.warnings, 1);
    let expired = hold(&server, &a, 1, 60).await;
    let task = format!("task-{}", uuid::Uuid::new_v4());
    let linked = call(
        &server,
        Method::POST,
        &format!("/v1/reservations/{expired}/task"),
        Some(&a.server),
        Some(json!({"taskId": task, "provider": "generic"})),
    )
    .await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
    server.env.clock.advance_seconds(61);
    sweep(&server, &a).await; // hold.expired (with its lot), grant.expired
    changes.extend(pump(&server, &outbox).await);
    // The provider reports success after the hold expired: hold.late_success.
    let body = json!({"task_id": task, "status": "succeeded"}).to_string();
    let now = server.env.ledger.now().unix_seconds();
    let signature = credits_shared::inbound::generic::sign(
        credits_tests::GENERIC_SECRETS.split(',').next().unwrap_or(""),
        "late-1",
        now,
        body.as_bytes(),
    )
    .expect("sign");
    let late = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/generic", server.base))
        .header("content-type", "application/json")
        .header("webhook-id", "late-1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .expect("late delivery");
    assert_eq!(late.status(), StatusCode::OK);
    changes.extend(pump(&server, &outbox).await);

    let got = receiver.got();
    let ids = verify_with_reference_library(&secret, &got);
    let events: Vec<Value> = got.iter().map(|r| r.event()).collect();
    assert_eq!(ids.len(), events.len());
    for (id, event) in ids.iter().zip(&events) {
        assert_eq!(event["id"].as_str(), Some(id.as_str()), "webhook-id is the event id");
    }
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "each event delivered once: {:?}", types_of(&events));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for t in types_of(&events) {
        *counts.entry(t).or_default() += 1;
    }
    let expected = [
        ("balance.depleted", 1),
        ("balance.low", 2),
        ("balance.recovered", 2),
        ("debit.created", 1),
        ("grant.created", 2),
        ("grant.expired", 1),
        ("grant.expiring", 1),
        ("hold.confirmed", 1),
        ("hold.expired", 1),
        ("hold.late_success", 1),
        ("hold.released", 1),
        ("refund.created", 1),
    ];
    let expected: BTreeMap<String, usize> = expected.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    assert_eq!(counts, expected, "{:?}", types_of(&events));
    let late_event = events.iter().find(|e| e["type"] == "hold.late_success").expect("late success");
    assert_eq!(late_event["data"]["reservationId"], expired.as_str(), "data is the reservation");
    assert_eq!(late_event["data"]["status"], "expired");
    let low = events.iter().find(|e| e["type"] == "balance.low").expect("low");
    assert_eq!(low["data"], json!({"available": 40, "threshold": 50}));

    // EventBridge got the same events, once each, as `credits` events.
    let published = moto.drain(&queue).await;
    let mut on_bus: Vec<String> =
        published.iter().map(|e| e["detail"]["id"].as_str().unwrap_or("").to_owned()).collect();
    for envelope in &published {
        assert_eq!(envelope["source"], "credits");
        assert_eq!(envelope["detail-type"], envelope["detail"]["type"]);
    }
    on_bus.sort();
    let mut delivered = ids.clone();
    delivered.sort();
    assert_eq!(on_bus, delivered, "both channels carry the same events");

    // The stream redelivers everything: nothing is published or delivered again.
    let again = Outbox::new(
        dev_ledger(&server),
        Bus::event_bridge("credits-test".into(), Some(&moto.endpoint)).await,
        Defaults::default(),
    );
    let applied = again.apply(&changes).await.expect("redelivered batch");
    assert_eq!((applied.recorded, applied.published, applied.delivered), (0, 0, 0), "{applied:?}");
    // Every event but grant.expiring, which the job made, not a stream record.
    assert_eq!(applied.duplicates as usize, ids.len() - 1);
    assert_eq!(receiver.got().len(), got.len());
    assert!(moto.drain(&queue).await.is_empty());
    assert_eq!(job(&outbox).await.scanned, 0, "nothing left due");
    let totals = month_totals(&server).await;
    let n = ids.len() as i64;
    assert_eq!(
        (totals.events_recorded, totals.events_published, totals.webhooks_delivered, totals.webhook_attempts_failed),
        (n, n, n, 0)
    );
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_on_the_schedule_with_the_same_id_then_is_disabled_after_5_days() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let outbox = Outbox::new(dev_ledger(&server), Bus::Log, Defaults::default());
    let receiver = Receiver::start(&[500, 503, 404]).await;
    let (endpoint, secret) = register(&server, &a, &receiver.url, &["grant.created"]).await;

    grant(&server, &a.admin, &a.user_id, 10).await;
    pump(&server, &outbox).await;
    assert_eq!(receiver.got().len(), 1, "the first attempt is made at once");
    for (wait, attempts) in [(4, 1), (1, 2), (299, 2), (1, 3), (1800, 4)] {
        server.env.clock.advance_seconds(wait);
        job(&outbox).await;
        assert_eq!(receiver.got().len(), attempts, "after {wait} s more");
    }
    let got = receiver.got();
    let id = got[0].id().to_owned();
    assert!(got.iter().all(|r| r.id() == id), "every retry carries the same webhook-id");
    let stamps: Vec<i64> = got.iter().map(|r| r.headers["webhook-timestamp"].parse().unwrap_or(0)).collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "attempts in order: {stamps:?}");
    assert_eq!(got.iter().map(|r| r.body.clone()).collect::<BTreeSet<_>>().len(), 1, "the same body every time");
    // Signed afresh each time with the endpoint's secret (the library checks
    // the timestamp too, so only the attempts near the real time).
    verify_with_reference_library(&secret, &got[..1]);

    let log =
        call(&server, Method::GET, &format!("/v1/admin/webhook-endpoints/{endpoint}/deliveries"), Some(&a.admin), None)
            .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let delivery = &log.body["items"][0];
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["eventId"], id.as_str());
    let codes: Vec<u64> = delivery["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|x| x["responseCode"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(codes, vec![500, 503, 404, 200]);
    let ep = call(&server, Method::GET, &format!("/v1/admin/webhook-endpoints/{endpoint}"), Some(&a.admin), None).await;
    assert_eq!(ep.body["status"], "enabled");
    assert!(ep.body["failingSince"].is_null(), "a success ends the failing streak");
    assert!(ep.body.get("secret").is_none(), "the secret is shown once");

    // Now it fails every attempt: a delivery runs its whole schedule…
    receiver.answer_next(&[500; 40]);
    grant(&server, &a.admin, &a.user_id, 10).await;
    pump(&server, &outbox).await;
    for wait in credits_shared::events::schedule::SCHEDULE_SECONDS {
        server.env.clock.advance_seconds(wait);
        job(&outbox).await;
    }
    let log =
        call(&server, Method::GET, &format!("/v1/admin/webhook-endpoints/{endpoint}/deliveries"), Some(&a.admin), None)
            .await;
    assert_eq!(log.body["items"][0]["status"], "failed");
    assert_eq!(log.body["items"][0]["attempts"].as_array().map(Vec::len), Some(8));
    // …and 5 days of failures disable the endpoint, which says so.
    for _ in 0..4 {
        server.env.clock.advance_seconds(86_400);
        grant(&server, &a.admin, &a.user_id, 1).await;
        let applied = outbox.apply(&server.env.aggregate().await).await.expect("apply");
        assert_eq!(applied.deferred, 1, "an endpoint on a failing streak gets no first attempt inline");
        server.env.clock.advance_seconds(61);
        job(&outbox).await;
    }
    let ep = call(&server, Method::GET, &format!("/v1/admin/webhook-endpoints/{endpoint}"), Some(&a.admin), None).await;
    assert_eq!(ep.body["status"], "disabled", "{}", ep.body);
    assert!(ep.body["disabledReason"].as_str().unwrap_or("").contains("5 days"), "{}", ep.body);
    let before = receiver.got().len();
    grant(&server, &a.admin, &a.user_id, 1).await;
    pump(&server, &outbox).await;
    server.env.clock.advance_seconds(86_400);
    job(&outbox).await;
    assert_eq!(receiver.got().len(), before, "a disabled endpoint gets nothing");
}

#[tokio::test]
async fn a_crash_between_recording_and_sending_is_taken_over_by_the_job_once() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let moto = Moto::start().await;
    let queue = moto.bus_into_queue("crash-test").await;
    let receiver = Receiver::start(&[]).await;
    let (endpoint, _) = register(&server, &a, &receiver.url, &[]).await;
    grant(&server, &a.admin, &a.user_id, 10).await;
    let changes = server.env.aggregate().await;
    // The function recorded the events, then died before publishing or sending.
    let bus = Bus::event_bridge("crash-test".into(), Some(&moto.endpoint)).await;
    let outbox = Outbox::new(dev_ledger(&server), bus, Defaults::default());
    let recorded = outbox.record(&changes).await.expect("record");
    assert_eq!(recorded, 1);
    assert_eq!(job(&outbox).await.scanned, 0, "leased to the crashed call for a while");
    assert!(receiver.got().is_empty());
    server.env.clock.advance_seconds(61);
    // Lambda retries the batch, and the job runs, at once: one of them sends.
    let (retried, report) = tokio::join!(outbox.apply(&changes), job(&outbox));
    let retried = retried.expect("retried batch");
    assert_eq!(retried.duplicates, 1);
    assert_eq!(report.delivered + report.published, 2, "{report:?}");
    assert_eq!(receiver.got().len(), 1, "delivered once");
    assert_eq!(moto.drain(&queue).await.len(), 1, "published once");
    server.env.clock.advance_seconds(86_400);
    assert_eq!(job(&outbox).await.scanned, 0, "nothing left due");
    let log =
        call(&server, Method::GET, &format!("/v1/admin/webhook-endpoints/{endpoint}/deliveries"), Some(&a.admin), None)
            .await;
    assert_eq!(log.body["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn low_depleted_and_recovered_fire_once_each_across_many_writes() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let outbox =
        Outbox::new(dev_ledger(&server), Bus::Log, Defaults { low_balance_threshold: 30, ..Defaults::default() });
    let receiver = Receiver::start(&[]).await;
    register(&server, &a, &receiver.url, &["balance.low", "balance.depleted", "balance.recovered"]).await;
    grant(&server, &a.admin, &a.user_id, 50).await;
    for _ in 0..10 {
        let id = hold(&server, &a, 1, 600).await; // 5 credits each
        settle(&server, &a.server, &id, "confirm").await;
        pump(&server, &outbox).await;
    }
    grant(&server, &a.admin, &a.user_id, 10).await; // still below 30: no event
    grant(&server, &a.admin, &a.user_id, 10).await;
    grant(&server, &a.admin, &a.user_id, 40).await; // 60: recovered
    grant(&server, &a.admin, &a.user_id, 40).await;
    pump(&server, &outbox).await;
    let events: Vec<Value> = receiver.got().iter().map(|r| r.event()).collect();
    assert_eq!(types_of(&events), vec!["balance.low", "balance.depleted", "balance.recovered"]);
    assert_eq!(events[0]["data"], json!({"available": 25, "threshold": 30}));
    assert_eq!(events[2]["data"], json!({"available": 60, "threshold": 30}));
}

#[tokio::test]
async fn events_that_eventbridge_refused_are_published_by_the_job_when_it_accepts_them() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let moto = Moto::start().await;
    // The bus does not exist yet: every entry is refused.
    let outbox = Outbox::new(
        dev_ledger(&server),
        Bus::event_bridge("late-bus".into(), Some(&moto.endpoint)).await,
        Defaults::default(),
    );
    grant(&server, &a.admin, &a.user_id, 10).await;
    let applied = outbox.apply(&server.env.aggregate().await).await.expect("apply");
    assert_eq!((applied.recorded, applied.published), (1, 0), "{applied:?}");
    let queue = moto.bus_into_queue("late-bus").await;
    server.env.clock.advance_seconds(4);
    assert_eq!(job(&outbox).await.published, 0, "not due before its retry");
    server.env.clock.advance_seconds(1);
    assert_eq!(job(&outbox).await.published, 1);
    let published = moto.drain(&queue).await;
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["detail-type"], "grant.created");
    server.env.clock.advance_seconds(86_400);
    assert_eq!(job(&outbox).await.scanned, 0);
}

#[tokio::test]
async fn grant_expiring_is_sent_once_per_lot_by_the_job_when_it_falls_due_if_credits_are_left() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let outbox = Outbox::new(dev_ledger(&server), Bus::Log, Defaults::default());
    let receiver = Receiver::start(&[]).await;
    register(&server, &a, &receiver.url, &["grant.expiring"]).await;
    let in_days = |days: i64| server.env.ledger.now().plus_seconds(days * 86_400).to_rfc3339();
    let grant_expiring = |amount: u64, key: &'static str, expires_at: String| {
        let path = format!("/v1/admin/users/{}/grants", a.user_id);
        let body = json!({"amount": amount, "reason": "promo", "expiresAt": expires_at}).to_string();
        let (server, admin) = (&server, &a.admin);
        async move {
            let reply =
                call_with(server, Method::POST, &path, Some(admin), Some(body), &[("idempotency-key", key)]).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        }
    };
    let four_days = in_days(4);
    grant_expiring(10, "a", four_days.clone()).await;
    grant_expiring(5, "b", four_days.clone()).await; // the same lot: one warning
    let five_days = in_days(5);
    grant_expiring(3, "c", five_days.clone()).await; // emptied before its warning
    pump(&server, &outbox).await;
    assert_eq!(job(&outbox).await.warnings, 0, "not due yet");
    let debit = call_with(
        &server,
        Method::POST,
        &format!("/v1/admin/users/{}/debits", a.user_id),
        Some(&a.admin),
        Some(json!({"amount": 18, "reason": "adjustment"}).to_string()),
        &[("idempotency-key", "all")],
    )
    .await;
    assert_eq!(debit.status, StatusCode::CREATED, "{}", debit.body);
    // Burn order takes the soonest expiry first: 15 from the four-day lot, 3 from the five-day one.
    grant_expiring(4, "d", four_days.clone()).await; // refills the four-day lot
    pump(&server, &outbox).await;
    server.env.clock.advance_seconds(86_400 + 1); // 72 h before the first expiry
    assert_eq!(job(&outbox).await.warnings, 1);
    server.env.clock.advance_seconds(86_400);
    assert_eq!(job(&outbox).await.warnings, 0, "the five-day lot is empty: no warning");
    assert_eq!(job(&outbox).await.scanned, 0, "each warning is done with");
    // Credits land in the empty lot again: its warning is armed again, and fires.
    grant_expiring(2, "e", five_days.clone()).await;
    pump(&server, &outbox).await;
    assert_eq!(job(&outbox).await.warnings, 1);
    server.env.clock.advance_seconds(3_600);
    assert_eq!(job(&outbox).await.scanned, 0, "each warning is done with");
    let events: Vec<Value> = receiver.got().iter().map(|r| r.event()).collect();
    assert_eq!(types_of(&events), vec!["grant.expiring", "grant.expiring"]);
    assert_eq!(events[1]["data"]["amount"], 2);
    assert_eq!(events[0]["data"]["amount"], 4, "what is left in the lot when it falls due");
    assert_eq!(events[0]["data"]["expiresAt"], four_days.replace("+00:00", "Z"));
}

/// `credits events --user` as an operator runs it.
#[tokio::test]
async fn the_events_command_lists_a_users_recent_events() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let outbox = Outbox::new(dev_ledger(&server), Bus::Log, Defaults::default());
    grant(&server, &a.admin, &a.user_id, 10).await;
    server.env.clock.advance_seconds(1);
    let id = hold(&server, &a, 1, 600).await;
    settle(&server, &a.server, &id, "release").await;
    pump(&server, &outbox).await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(credits_tests::credits_bin())
            .args(args)
            .env("DYNAMODB_ENDPOINT", credits_tests::endpoint())
            .env("CREDITS_TABLE", server.env.store.table())
            .output()
            .expect("run credits");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = run(&["events", "--user", &a.user_id]);
    let kinds: Vec<&str> = listed.lines().filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert_eq!(kinds, vec!["hold.released", "grant.created"], "{listed}");
    assert!(listed.contains("eventbridge: Logged"), "{listed}");
    let payloads: Vec<Value> = run(&["events", "--user", &a.user_id, "--json", "--limit", "1"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(payloads.len(), 1);
    assert_eq!(payloads[0]["type"], "hold.released");
    assert_eq!(payloads[0]["data"]["reservationId"], id.as_str());
}

/// An endpoint hears of changes made from its creation on, even when the
/// stream hands an earlier change over after it was added.
#[tokio::test]
async fn an_endpoint_gets_the_events_of_changes_made_after_it_was_registered() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let outbox = Outbox::new(dev_ledger(&server), Bus::Log, Defaults::default());
    let receiver = Receiver::start(&[]).await;
    grant(&server, &a.admin, &a.user_id, 10).await;
    server.env.clock.advance_seconds(1);
    register(&server, &a, &receiver.url, &[]).await;
    pump(&server, &outbox).await;
    assert!(receiver.got().is_empty(), "the grant came before the endpoint");
    grant(&server, &a.admin, &a.user_id, 5).await;
    pump(&server, &outbox).await;
    let events: Vec<Value> = receiver.got().iter().map(|r| r.event()).collect();
    assert_eq!(types_of(&events), vec!["grant.created"]);
    assert_eq!(events[0]["data"]["amount"], 5);
}

/// The status of an endpoint's latest delivery and its attempts.
async fn latest_delivery(server: &TestServer, a: &Actors, endpoint: &str) -> (String, Vec<Value>) {
    let path = format!("/v1/admin/webhook-endpoints/{endpoint}/deliveries");
    let log = call(server, Method::GET, &path, Some(&a.admin), None).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    let delivery = &log.body["items"][0];
    let attempts = delivery["attempts"].as_array().cloned().unwrap_or_default();
    (delivery["status"].as_str().unwrap_or("").to_owned(), attempts)
}

/// Every attempt of the endpoint's latest delivery was refused before
/// connecting, with the reason that names no address.
async fn assert_refused(server: &TestServer, a: &Actors, endpoint: &str, attempts: usize, what: &str) {
    let (status, log) = latest_delivery(server, a, endpoint).await;
    assert_eq!(status, "pending", "{what}: failed, retried on the schedule");
    assert_eq!(log.len(), attempts, "{what}: {log:?}");
    for attempt in &log {
        assert_eq!(attempt["error"], NOT_PUBLIC, "{what}: {attempt}");
        assert!(attempt["responseCode"].is_null(), "{what}: {attempt}");
    }
}

/// As deployed, a name that resolves inside is refused at every attempt,
/// for every range and the IPv6 forms that embed IPv4: each attempt is
/// recorded failed with a reason that names no address, the name is looked
/// up again at each attempt (DNS can change), and the receiver listening
/// on loopback gets nothing.
#[tokio::test]
async fn a_name_that_resolves_inside_is_refused_at_every_attempt_and_nothing_is_sent() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let hosts = Hosts::default();
    let outbox =
        Outbox::new(server.env.ledger.clone(), Bus::Log, Defaults::default()).with_lookup(Arc::new(hosts.clone()));
    let receiver = Receiver::start(&[]).await;
    let inside: [(&str, &[&str]); 14] = [
        ("loopback.test", &["127.0.0.1"]),
        ("private.test", &["10.0.0.1", "172.16.0.1", "192.168.1.1"]),
        ("cgnat.test", &["100.64.0.1"]),
        ("metadata.test", &["169.254.169.254"]),
        ("metadata6.test", &["fd00:ec2::254"]),
        ("link-local6.test", &["fe80::1"]),
        ("unspecified.test", &["0.0.0.0", "::"]),
        ("multicast.test", &["224.0.0.1", "ff02::1", "255.255.255.255"]),
        ("documentation.test", &["192.0.2.1", "2001:db8::1"]),
        ("mapped.test", &["::ffff:a9fe:a9fe"]),
        ("compatible.test", &["::7f00:1"]),
        ("nat64.test", &["64:ff9b::a9fe:a9fe", "64:ff9b:1::808:808"]),
        ("6to4.test", &["2002:a9fe:a9fe::1"]),
        // The receiver itself, by name.
        ("localhost", &["127.0.0.1", "::1"]),
    ];
    let mut endpoints = Vec::new();
    for (name, addresses) in inside {
        hosts.set(name, addresses);
        let url = match name {
            "localhost" => receiver.url.replace("127.0.0.1", "localhost"),
            _ => format!("https://{name}/hooks"),
        };
        let (endpoint, _) = register(&server, &a, &url, &["grant.created"]).await;
        endpoints.push((name, endpoint));
    }

    grant(&server, &a.admin, &a.user_id, 10).await;
    let applied = outbox.apply(&server.env.aggregate().await).await.expect("apply");
    assert_eq!((applied.delivered, applied.failed_attempts), (0, inside.len() as u32), "{applied:?}");
    server.env.clock.advance_seconds(5);
    let report = job(&outbox).await;
    assert_eq!((report.delivered, report.failed_attempts), (0, inside.len() as u32), "{report:?}");

    assert!(receiver.got().is_empty(), "nothing reached the receiver");
    for (name, endpoint) in &endpoints {
        assert_eq!(hosts.lookups(name), 2, "{name} is looked up at each attempt");
        assert_refused(&server, &a, endpoint, 2, name).await;
    }
}

/// A host written as an IP address skips the resolver: it is checked before
/// anything is sent, endpoints registered before registration refused these
/// forms included.
#[tokio::test]
async fn an_address_written_in_the_url_is_refused_before_anything_is_sent() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let outbox = Outbox::new(server.env.ledger.clone(), Bus::Log, Defaults::default());
    let receiver = Receiver::start(&[]).await;
    let (on_loopback, _) = register(&server, &a, &receiver.url, &["grant.created"]).await;
    let mut endpoints = vec![(receiver.url.clone(), on_loopback)];
    for url in [
        "https://169.254.169.254/latest/meta-data",
        "https://0xa9.0xfe.0xa9.0xfe/hooks",
        "https://[::7f00:1]/hooks",
        "https://[64:ff9b::a9fe:a9fe]/hooks",
        "https://[::ffff:a9fe:a9fe]/hooks",
        "https://[fd00:ec2::254]/hooks",
        "https://[2002:a9fe:a9fe::1]/hooks",
    ] {
        let new = NewEndpoint {
            url: url.to_owned(),
            events: vec![Kind::GrantCreated],
            description: None,
            actor: "registered-before".into(),
        };
        let endpoint = server.env.ledger.create_endpoint(new).await.expect("endpoint");
        endpoints.push((url.to_owned(), endpoint.id.to_string()));
    }

    grant(&server, &a.admin, &a.user_id, 10).await;
    let applied = outbox.apply(&server.env.aggregate().await).await.expect("apply");
    assert_eq!((applied.delivered, applied.failed_attempts), (0, endpoints.len() as u32), "{applied:?}");

    assert!(receiver.got().is_empty(), "nothing reached the receiver");
    for (url, endpoint) in &endpoints {
        assert_refused(&server, &a, endpoint, 1, url).await;
    }
}

/// The dev server delivers to its receivers on loopback, by name too; the
/// name is looked up at every attempt and only the addresses allowed are
/// tried: refused while it pointed at the metadata service, delivered once
/// it also names loopback.
#[tokio::test]
async fn the_dev_server_delivers_to_loopback_by_name_looked_up_at_every_attempt() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let hosts = Hosts::default();
    let outbox = Outbox::new(dev_ledger(&server), Bus::Log, Defaults::default()).with_lookup(Arc::new(hosts.clone()));
    let receiver = Receiver::start(&[]).await;
    hosts.set("localhost", &["169.254.169.254"]);
    let url = receiver.url.replace("127.0.0.1", "localhost");
    let (endpoint, secret) = register(&server, &a, &url, &["grant.created"]).await;

    grant(&server, &a.admin, &a.user_id, 10).await;
    let applied = outbox.apply(&server.env.aggregate().await).await.expect("apply");
    assert_eq!((applied.delivered, applied.failed_attempts), (0, 1), "{applied:?}");
    assert!(receiver.got().is_empty());

    // DNS changes before the retry: the refused address comes first.
    hosts.set("localhost", &["169.254.169.254", "127.0.0.1"]);
    server.env.clock.advance_seconds(5);
    assert_eq!(job(&outbox).await.delivered, 1);
    assert_eq!(hosts.lookups("localhost"), 2);
    let got = receiver.got();
    assert_eq!(got.len(), 1);
    verify_with_reference_library(&secret, &got);
    let (status, log) = latest_delivery(&server, &a, &endpoint).await;
    assert_eq!(status, "delivered");
    assert_eq!(log[0]["error"], NOT_PUBLIC, "{log:?}");
    assert_eq!(log[1]["responseCode"], 200, "{log:?}");
}
