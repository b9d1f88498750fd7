//! Several captures per hold and extending a hold: the contract over HTTP
//! against the dev server, then the races at the ledger, each ending with
//! the books check (which also adds every hold's captures up).

use std::collections::HashMap;
use std::time::Duration;

use credits_shared::domain::{Actor, Credits, EventType, HoldStatus, Provider, MAX_HOLD_SECONDS};
use credits_shared::inbound::bfl;
use credits_shared::ledger::sweep::DEFAULT_CONCURRENCY;
use credits_shared::ledger::Outcome;
use credits_shared::validate::{Invalid, Problem};
use credits_shared::Error;
use credits_tests::api::{actors, assert_problem, call, call_with, grant, reserve, Actors, Auth, Reply};
use credits_tests::{reserve_request, user, TestEnv, TestServer, BFL_SECRETS};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const IMAGE: &str = "design_generate_image"; // 5 credits a unit

async fn hold(server: &TestServer, a: &Actors, units: u32, ttl: u32) -> String {
    let reply = reserve(server, &a.server, json!({"operation": IMAGE, "units": units, "ttlSeconds": ttl})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body["reservationId"].as_str().expect("id").to_owned()
}

/// A non-final capture of `units` under `key` (none: no header).
async fn capture(server: &TestServer, auth: &Auth, id: &str, units: u32, key: Option<&str>) -> Reply {
    let body = Some(json!({"units": units, "final": false}).to_string());
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    call_with(server, Method::POST, &format!("/v1/reservations/{id}/confirm"), Some(auth), body, &headers).await
}

async fn post(server: &TestServer, auth: &Auth, id: &str, action: &str, body: Value) -> Reply {
    call(server, Method::POST, &format!("/v1/reservations/{id}/{action}"), Some(auth), Some(body)).await
}

async fn figures(server: &TestServer, a: &Actors) -> (u64, u64, u64) {
    let b = call(server, Method::GET, "/v1/balance", Some(&a.server), None).await.body;
    let get = |name: &str| b[name].as_u64().unwrap_or(u64::MAX);
    (get("available"), get("reserved"), get("spent"))
}

fn split(reply: &Reply) -> (&str, u64, u64, u64) {
    let b = &reply.body;
    let get = |name: &str| b[name].as_u64().unwrap_or(u64::MAX);
    (b["status"].as_str().unwrap_or(""), get("capturedUnits"), get("capturedAmount"), get("releasedAmount"))
}

fn event_types(reply: &Reply) -> Vec<String> {
    reply.body["events"].as_array().into_iter().flatten().map(|e| e["type"].as_str().unwrap_or("").to_owned()).collect()
}

/// The user's history lines of one hold as (type, amount), sorted (lines
/// written at the same millisecond have no order of their own).
async fn lines(server: &TestServer, a: &Actors, id: &str) -> Vec<(String, u64)> {
    let page = call(server, Method::GET, "/v1/transactions?limit=200", Some(&a.server), None).await.body;
    let mut lines: Vec<(String, u64)> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["reservationId"] == id)
        .map(|i| (i["type"].as_str().unwrap_or("").to_owned(), i["amount"].as_u64().unwrap_or(u64::MAX)))
        .collect();
    lines.sort();
    lines
}

fn field_of(reply: &Reply) -> String {
    reply.body["field"].as_str().unwrap_or("").to_owned()
}

#[tokio::test]
async fn a_batch_job_is_charged_per_output_and_the_final_confirm_returns_the_rest() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 100).await;
    let id = hold(&server, &a, 4, 600).await;

    let first = capture(&server, &a.server, &id, 1, Some("out-1")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(split(&first), ("pending", 1, 5, 0));
    assert!(first.headers.get("idempotent-replayed").is_none());
    assert_eq!(figures(&server, &a).await, (80, 15, 5));

    // The same capture again (a retried request): a replay, not a charge.
    let again = capture(&server, &a.server, &id, 1, Some("out-1")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(split(&again), ("pending", 1, 5, 0));
    assert_problem(&capture(&server, &a.server, &id, 2, Some("out-1")).await, 422, "idempotency_key_reused");
    assert_eq!(figures(&server, &a).await, (80, 15, 5));

    assert_eq!(split(&capture(&server, &a.server, &id, 1, Some("out-2")).await), ("pending", 2, 10, 0));
    // The final confirm captures one more and returns the fourth unit.
    let closed = post(&server, &a.server, &id, "confirm", json!({"units": 1})).await;
    assert_eq!(closed.status, StatusCode::OK, "{}", closed.body);
    assert_eq!(split(&closed), ("confirmed", 3, 15, 5));
    assert_eq!(figures(&server, &a).await, (85, 0, 15));
    // Its repeat replays; the first capture's retry still replays too.
    assert_eq!(split(&post(&server, &a.server, &id, "confirm", json!({"units": 1})).await), ("confirmed", 3, 15, 5));
    assert_eq!(split(&capture(&server, &a.server, &id, 1, Some("out-1")).await), ("confirmed", 3, 15, 5));
    assert_problem(
        &post(&server, &a.server, &id, "confirm", json!({"units": 2})).await,
        409,
        "reservation_not_pending",
    );
    assert_problem(&capture(&server, &a.server, &id, 1, Some("out-3")).await, 409, "reservation_not_pending");

    let read = call(&server, Method::GET, &format!("/v1/reservations/{id}"), Some(&a.server), None).await;
    assert_eq!(event_types(&read), ["reserved", "captured", "captured", "confirmed"]);
    let amounts: Vec<u64> =
        read.body["events"].as_array().expect("events").iter().map(|e| e["amount"].as_u64().unwrap_or(0)).collect();
    assert_eq!(amounts, [20, 5, 5, 5]);
    let history = lines(&server, &a, &id).await;
    let want = [("capture", 5), ("capture", 5), ("confirm", 5), ("release", 5), ("reserve", 20)];
    assert_eq!(history, want.map(|(t, n)| (t.to_owned(), n)));
    assert_eq!(figures(&server, &a).await, (85, 0, 15));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_capture_needs_its_key_and_never_exceeds_what_is_held() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 100).await;
    let id = hold(&server, &a, 4, 600).await;

    let keyless = capture(&server, &a.server, &id, 1, None).await;
    assert_problem(&keyless, 400, "validation_error");
    assert_eq!(field_of(&keyless), "Idempotency-Key", "{}", keyless.body);
    let unitless = call_with(
        &server,
        Method::POST,
        &format!("/v1/reservations/{id}/confirm"),
        Some(&a.server),
        Some(json!({"final": false}).to_string()),
        &[("idempotency-key", "k")],
    )
    .await;
    assert_problem(&unitless, 400, "validation_error");
    assert_eq!(field_of(&unitless), "units");
    let too_many = capture(&server, &a.server, &id, 5, Some("k5")).await;
    assert_problem(&too_many, 400, "validation_error");
    assert_eq!(field_of(&too_many), "units");
    // A user's own token never captures.
    assert_problem(&capture(&server, &a.user, &id, 1, Some("mine")).await, 403, "forbidden");

    assert_eq!(split(&capture(&server, &a.server, &id, 3, Some("three")).await), ("pending", 3, 15, 0));
    assert_problem(&capture(&server, &a.server, &id, 2, Some("two")).await, 400, "validation_error");
    assert_eq!(split(&capture(&server, &a.server, &id, 1, Some("last")).await), ("pending", 4, 20, 0));
    let nothing_left = capture(&server, &a.server, &id, 1, Some("more")).await;
    assert_problem(&nothing_left, 400, "validation_error");
    assert!(
        nothing_left.body["detail"].as_str().unwrap_or("").contains("no valid value left"),
        "{}",
        nothing_left.body
    );
    // Fewer outputs than held: 0 more closes it as confirmed, the rest goes
    // back; with nothing captured, 0 is no confirm at all.
    let fewer = hold(&server, &a, 4, 600).await;
    let zero = post(&server, &a.server, &fewer, "confirm", json!({"units": 0})).await;
    assert_problem(&zero, 400, "validation_error");
    assert_eq!(field_of(&zero), "units");
    capture(&server, &a.server, &fewer, 1, Some("only")).await;
    assert_eq!(split(&post(&server, &a.server, &fewer, "confirm", json!({"units": 0})).await), ("confirmed", 1, 5, 15));
    assert_eq!(split(&post(&server, &a.server, &fewer, "confirm", json!({"units": 0})).await), ("confirmed", 1, 5, 15));
    // Everything captured: the final confirm closes it, capturing nothing more.
    let closed = post(&server, &a.server, &id, "confirm", json!({})).await;
    assert_eq!(split(&closed), ("confirmed", 4, 20, 0));
    assert_eq!(figures(&server, &a).await, (75, 0, 25));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn release_and_expiry_after_captures_return_only_what_is_still_held() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 100).await;

    let released = hold(&server, &a, 4, 600).await;
    capture(&server, &a.server, &released, 1, Some("a")).await;
    let reply = post(&server, &a.server, &released, "release", json!({})).await;
    assert_eq!(split(&reply), ("released", 1, 5, 15));
    assert_eq!(
        lines(&server, &a, &released).await,
        [("capture", 5), ("release", 15), ("reserve", 20)].map(|(t, n)| (t.to_owned(), n))
    );

    let swept = hold(&server, &a, 4, 60).await;
    capture(&server, &a.server, &swept, 2, Some("a")).await;
    let late = hold(&server, &a, 4, 60).await;
    capture(&server, &a.server, &late, 3, Some("a")).await;
    server.env.clock.advance_seconds(60);
    let sweep = call(&server, Method::POST, "/v1/admin/cleanup", Some(&a.admin), None).await;
    assert_eq!(sweep.body["expired"], 2, "{}", sweep.body);
    let read = call(&server, Method::GET, &format!("/v1/reservations/{swept}"), Some(&a.server), None).await;
    assert_eq!(split(&read), ("expired", 2, 10, 10));
    // A capture after expiry is refused; the captured credits stay spent.
    assert_problem(&capture(&server, &a.server, &late, 1, Some("b")).await, 409, "reservation_not_pending");
    // 5 + 10 + 15 captured, the rest back.
    assert_eq!(figures(&server, &a).await, (70, 0, 30));

    // An operator may give back what a released hold captured, once.
    let refund =
        call(&server, Method::POST, &format!("/v1/admin/reservations/{released}/refund"), Some(&a.admin), None).await;
    assert_eq!(refund.status, StatusCode::OK, "{}", refund.body);
    assert_eq!(refund.body["status"], "refunded");
    assert_eq!(figures(&server, &a).await, (75, 0, 25));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_capture_past_the_expiry_expires_the_hold_and_returns_only_the_rest() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 100).await;
    let id = hold(&server, &a, 4, 60).await;
    capture(&server, &a.server, &id, 1, Some("a")).await;
    server.env.clock.advance_seconds(60);
    assert_problem(&capture(&server, &a.server, &id, 1, Some("b")).await, 409, "reservation_expired");
    let read = call(&server, Method::GET, &format!("/v1/reservations/{id}"), Some(&a.server), None).await;
    assert_eq!(split(&read), ("expired", 1, 5, 15));
    assert_eq!(figures(&server, &a).await, (95, 0, 5));
    server.env.assert_books_balance().await;
}

/// A BFL delivery for `task`, signed as BFL signs.
async fn bfl_webhook(server: &TestServer, task: &str, status: &str, units: Option<u32>) -> Reply {
    let mut body = json!({"task_id": task, "status": status});
    if let Some(units) = units {
        body["units"] = json!(units);
    }
    let body = body.to_string();
    let secret = BFL_SECRETS.split(',').next().expect("a secret");
    let signature = bfl::sign(secret, body.as_bytes());
    call_with(server, Method::POST, "/v1/webhooks/bfl", None, Some(body), &[("x-bfl-signature", &signature)]).await
}

#[tokio::test]
async fn a_webhook_brings_captured_units_up_to_the_task_total_never_down() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 100).await;
    let mut ids = Vec::new();
    for (n, captured) in [2, 3, 1].into_iter().enumerate() {
        let body = json!({"operation": IMAGE, "units": 4, "taskId": format!("task-{n}"), "provider": "bfl"});
        let id = reserve(&server, &a.server, body).await.body["reservationId"].as_str().expect("id").to_owned();
        assert_eq!(split(&capture(&server, &a.server, &id, captured, Some("k")).await).1, u64::from(captured));
        ids.push(id);
    }
    // Two captured, the task made three: one more, the fourth goes back.
    assert_eq!(bfl_webhook(&server, "task-0", "Ready", Some(3)).await.body["result"], "confirmed");
    // Three captured, the provider counts one: never down.
    assert_eq!(bfl_webhook(&server, "task-1", "Ready", Some(1)).await.body["result"], "confirmed");
    // One captured, then the job failed: the rest goes back.
    assert_eq!(bfl_webhook(&server, "task-2", "Error", None).await.body["result"], "released");
    let mut got = Vec::new();
    for id in &ids {
        let read = call(&server, Method::GET, &format!("/v1/reservations/{id}"), Some(&a.server), None).await;
        let (status, units, captured, released) = split(&read);
        got.push((status.to_owned(), units, captured, released));
    }
    let want = [("confirmed", 3, 15, 5), ("confirmed", 3, 15, 5), ("released", 1, 5, 15)];
    assert_eq!(got, want.map(|(s, u, c, r)| (s.to_owned(), u, c, r)));
    assert_eq!(figures(&server, &a).await, (65, 0, 35));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn extend_moves_the_expiry_and_the_sweep_leaves_the_hold_alone() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 100).await;
    let id = hold(&server, &a, 2, 60).await;
    server.env.clock.advance_seconds(30);
    let now = server.env.ledger.now();

    let extended = post(&server, &a.server, &id, "extend", json!({"ttlSeconds": 3600})).await;
    assert_eq!(extended.status, StatusCode::OK, "{}", extended.body);
    assert_eq!(extended.body["status"], "pending");
    assert_eq!(extended.body["expiresAt"], now.plus_seconds(3600).to_rfc3339());
    assert_problem(&post(&server, &a.user, &id, "extend", json!({"ttlSeconds": 60})).await, 403, "forbidden");

    // Past the first expiry: the sweep finds nothing due, a capture still works.
    server.env.clock.advance_seconds(600);
    let sweep = call(&server, Method::POST, "/v1/admin/cleanup", Some(&a.admin), None).await;
    assert_eq!((sweep.body["expired"].as_u64(), sweep.body["scanned"].as_u64()), (Some(0), Some(0)), "{}", sweep.body);
    assert_eq!(split(&capture(&server, &a.server, &id, 1, Some("a")).await), ("pending", 1, 5, 0));
    let read = call(&server, Method::GET, &format!("/v1/reservations/{id}"), Some(&a.server), None).await;
    assert_eq!(event_types(&read), ["reserved", "extended", "captured"]);

    // Past the new expiry, extend is too late and the hold goes back.
    server.env.clock.advance_seconds(3600);
    assert_problem(
        &post(&server, &a.server, &id, "extend", json!({"ttlSeconds": 60})).await,
        409,
        "reservation_expired",
    );
    let read = call(&server, Method::GET, &format!("/v1/reservations/{id}"), Some(&a.server), None).await;
    assert_eq!(split(&read), ("expired", 1, 5, 5));
    assert_problem(
        &post(&server, &a.server, &id, "extend", json!({"ttlSeconds": 60})).await,
        409,
        "reservation_expired",
    );

    let confirmed = hold(&server, &a, 1, 600).await;
    post(&server, &a.server, &confirmed, "confirm", json!({})).await;
    let settled = post(&server, &a.server, &confirmed, "extend", json!({"ttlSeconds": 60})).await;
    assert_problem(&settled, 409, "reservation_not_pending");
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn extend_stops_seven_days_after_the_hold_was_placed() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 100).await;
    let id = hold(&server, &a, 1, 86_400).await;
    // A job that keeps asking for another day, every 80,000 s.
    for _ in 0..7 {
        server.env.clock.advance_seconds(80_000);
        let reply = post(&server, &a.server, &id, "extend", json!({"ttlSeconds": 86_400})).await;
        if reply.status != StatusCode::OK {
            break;
        }
    }
    let elapsed = 7 * 80_000;
    let left = MAX_HOLD_SECONDS - elapsed;
    let beyond = post(&server, &a.server, &id, "extend", json!({"ttlSeconds": left + 1})).await;
    assert_problem(&beyond, 400, "validation_error");
    assert_eq!(field_of(&beyond), "ttlSeconds");
    assert!(beyond.body["detail"].as_str().unwrap_or("").contains(&left.to_string()), "{}", beyond.body);
    let read = call(&server, Method::GET, &format!("/v1/reservations/{id}"), Some(&a.server), None).await;
    let created = read.body["createdAt"].as_str().expect("createdAt").to_owned();
    let at_most = post(&server, &a.server, &id, "extend", json!({"ttlSeconds": left})).await;
    assert_eq!(at_most.status, StatusCode::OK, "{}", at_most.body);
    let expires =
        chrono::DateTime::parse_from_rfc3339(at_most.body["expiresAt"].as_str().expect("expiresAt")).expect("time");
    let placed = chrono::DateTime::parse_from_rfc3339(&created).expect("time");
    assert_eq!((expires - placed).num_seconds(), MAX_HOLD_SECONDS);
    server.env.assert_books_balance().await;
}

// The races, at the ledger.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn captures_with_distinct_keys_at_once_never_capture_more_than_held() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 100).await;
    let id = env.ledger.reserve(&alice, reserve_request(IMAGE, 4)).await.expect("reserve").into_inner().reservation_id;
    let keys: Vec<String> = (0..10).map(|n| format!("out-{n}")).collect();
    let results = join_all(keys.iter().map(|k| env.ledger.capture(Some(&alice), id, 1, k, Actor::Server))).await;
    let mut captured = 0;
    for result in results {
        match result {
            Ok(Outcome::Created(_)) => captured += 1,
            Err(Error::Validation(Invalid { field, problem: Problem::OutOfRange { .. } })) if field == "units" => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(captured, 4);
    let hold = env.ledger.hold(None, id).await.expect("hold");
    assert_eq!((hold.status, hold.captured_units, hold.captured_amount), (HoldStatus::Pending, 4, Credits(20)));
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available, balance.reserved, balance.spent), (Credits(80), Credits(0), Credits(20)));
    env.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_capture_key_at_once_captures_once() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 100).await;
    let id = env.ledger.reserve(&alice, reserve_request(IMAGE, 4)).await.expect("reserve").into_inner().reservation_id;
    let results = join_all((0..8).map(|_| env.ledger.capture(Some(&alice), id, 2, "same", Actor::Server))).await;
    let created = results.iter().filter(|r| matches!(r, Ok(Outcome::Created(_)))).count();
    let replayed = results.iter().filter(|r| matches!(r, Ok(Outcome::Replayed(_)))).count();
    assert_eq!((created, replayed), (1, 7), "{results:?}");
    let hold = env.ledger.hold(None, id).await.expect("hold");
    assert_eq!(hold.captured_units, 2);
    let captured = hold.events.unwrap_or_default().iter().filter(|e| e.kind == EventType::Captured).count();
    assert_eq!(captured, 1);
    assert_eq!(env.ledger.balance(&alice).await.expect("balance").spent, Credits(10));
    env.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_final_confirm_racing_captures_a_release_and_the_sweep_ends_in_one_state() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 10_000).await;
    let mut finals: HashMap<HoldStatus, usize> = HashMap::new();
    for round in 0..24 {
        let mut request = reserve_request(IMAGE, 6);
        request.ttl_seconds = 30;
        let id = env.ledger.reserve(&alice, request).await.expect("reserve").into_inner().reservation_id;
        let keys: Vec<String> = (0..4).map(|n| format!("out-{n}")).collect();
        let captures = join_all(keys.iter().map(|k| env.ledger.capture(Some(&alice), id, 1, k, Actor::Server)));
        let confirm = env.ledger.confirm(Some(&alice), id, Some(1), Actor::Server);
        let release = env.ledger.release(Some(&alice), id, Actor::Server);
        let clock = async {
            // Every other round the deadline passes while they run.
            if round % 2 == 1 {
                tokio::time::sleep(Duration::from_millis(round as u64 % 7)).await;
                env.clock.advance_seconds(30);
            }
        };
        let sweep = env.ledger.sweep(std::time::Instant::now() + Duration::from_secs(30), DEFAULT_CONCURRENCY);
        let (captures, confirm, release, (), sweep) = tokio::join!(captures, confirm, release, clock, sweep);
        sweep.expect("sweep");
        env.ledger
            .sweep(std::time::Instant::now() + Duration::from_secs(30), DEFAULT_CONCURRENCY)
            .await
            .expect("sweep");
        env.clock.advance_seconds(31); // the next round starts after this one's deadline

        let hold = env.ledger.hold(None, id).await.expect("hold");
        let events = hold.events.clone().unwrap_or_default();
        let closings = events
            .iter()
            .filter(|e| matches!(e.kind, EventType::Confirmed | EventType::Released | EventType::Expired))
            .count();
        assert_eq!(closings, 1, "exactly one closing: {events:?}");
        let applied = captures.iter().filter(|c| matches!(c, Ok(Outcome::Created(_)))).count() as u32;
        let closing_units = match hold.status {
            HoldStatus::Confirmed => {
                assert!(confirm.is_ok(), "{confirm:?}");
                1
            }
            HoldStatus::Released => {
                assert!(release.is_ok(), "{release:?}");
                0
            }
            HoldStatus::Expired => 0,
            other => panic!("hold left {other:?}"),
        };
        assert_eq!(hold.captured_units, applied + closing_units, "{captures:?}");
        assert_eq!(hold.captured_amount.get() + hold.released_amount.get(), 30);
        *finals.entry(hold.status).or_default() += 1;
    }
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!(balance.reserved, Credits(0));
    assert!(finals.len() >= 2, "the races went more than one way: {finals:?}");
    env.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_extend_racing_the_sweep_wins_or_is_expired_never_both() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 10_000).await;
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    for round in 0..40 {
        let mut request = reserve_request(IMAGE, 1);
        request.ttl_seconds = 10;
        let id = env.ledger.reserve(&alice, request).await.expect("reserve").into_inner().reservation_id;
        let extend = env.ledger.extend(Some(&alice), id, 3600, Actor::Server);
        let clock = async {
            tokio::time::sleep(Duration::from_millis(round as u64 % 5)).await;
            env.clock.advance_seconds(10);
        };
        let sweep = async {
            for _ in 0..3 {
                env.ledger.sweep(std::time::Instant::now() + Duration::from_secs(30), 4).await.expect("sweep");
            }
        };
        let (extended, (), ()) = tokio::join!(extend, clock, sweep);
        env.ledger.sweep(std::time::Instant::now() + Duration::from_secs(30), 4).await.expect("sweep");
        let hold = env.ledger.hold(None, id).await.expect("hold");
        match extended {
            Ok(answer) => {
                assert_eq!(hold.status, HoldStatus::Pending, "extended, then expired anyway");
                assert_eq!(hold.expires_at, answer.expires_at);
                outcomes.entry("extended").and_modify(|n| *n += 1).or_insert(1);
                env.ledger.release(Some(&alice), id, Actor::Server).await.expect("release");
            }
            Err(Error::HoldExpired) => {
                assert_eq!(hold.status, HoldStatus::Expired);
                let extends = hold.events.unwrap_or_default().iter().filter(|e| e.kind == EventType::Extended).count();
                assert_eq!(extends, 0, "expired, yet extended");
                outcomes.entry("expired").and_modify(|n| *n += 1).or_insert(1);
            }
            Err(other) => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(outcomes.values().sum::<usize>(), 40, "{outcomes:?}");
    env.assert_books_balance().await;
}

#[tokio::test]
async fn a_parked_success_applied_at_link_time_counts_what_was_captured() {
    use credits_shared::inbound::Outcome as Reported;
    use credits_shared::ledger::outcome::Delivery;
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 100).await;
    let id = env.ledger.reserve(&alice, reserve_request(IMAGE, 4)).await.expect("reserve").into_inner().reservation_id;
    env.ledger.capture(Some(&alice), id, 3, "early", Actor::Server).await.expect("capture");
    let delivery = Delivery {
        provider: Provider::Bfl,
        task_id: "t-parked".into(),
        outcome: Reported::Success { units: Some(2) },
        delivery_id: None,
    };
    env.ledger.apply_outcome(&delivery).await.expect("parked");
    let linked = env.ledger.link_task(Some(&alice), id, Provider::Bfl, "t-parked", Actor::Server).await.expect("link");
    // The provider made 2, the app had captured 3: the hold closes at 3.
    assert_eq!((linked.status, linked.captured_units, linked.released_amount), (HoldStatus::Confirmed, 3, Credits(5)));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn a_heartbeat_of_extends_records_ten_events_and_keeps_moving_the_expiry() {
    use credits_shared::ledger::MAX_EXTEND_EVENTS;
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 100).await;
    let mut request = reserve_request(IMAGE, 1);
    request.ttl_seconds = 120;
    let id = env.ledger.reserve(&alice, request).await.expect("reserve").into_inner().reservation_id;
    for _ in 0..(MAX_EXTEND_EVENTS + 5) {
        env.clock.advance_seconds(60);
        let extended = env.ledger.extend(Some(&alice), id, 120, Actor::Server).await.expect("extend");
        assert_eq!(extended.expires_at, env.ledger.now().plus_seconds(120));
    }
    let hold = env.ledger.hold(None, id).await.expect("hold");
    assert_eq!(hold.expires_at, env.ledger.now().plus_seconds(120));
    let extends = hold.events.unwrap_or_default().iter().filter(|e| e.kind == EventType::Extended).count();
    assert_eq!(extends, MAX_EXTEND_EVENTS);
    env.ledger.confirm(Some(&alice), id, None, Actor::Server).await.expect("confirm");
    env.assert_books_balance().await;
}
