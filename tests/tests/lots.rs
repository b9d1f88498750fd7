//! Credit lots over HTTP against the dev server: grants landing in lots,
//! the burn order, credits going back to the lots they came from, lot
//! expiry (read before and after the job writes it down), debits and the
//! lot limit; then the races at expiry. Each test ends with the books
//! check, which reconciles every lot with the pending holds and the
//! history lines.

use credits_shared::domain::MAX_LOTS;
use credits_shared::ledger::sweep::DEFAULT_CONCURRENCY;
use credits_shared::store::{key, n, s};
use credits_tests::api::{actors, assert_problem, balance, call, call_with, reserve, Actors, Reply};
use credits_tests::{reserve_request, TestServer};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const IMAGE: &str = "design_generate_image"; // 5 credits a unit
const DAY: i64 = 86_400;

/// An RFC 3339 instant `seconds` from the server's clock.
fn in_seconds(server: &TestServer, seconds: i64) -> String {
    server.env.ledger.now().plus_seconds(seconds).to_rfc3339()
}

async fn grant(server: &TestServer, a: &Actors, body: Value) -> Reply {
    let key = uuid::Uuid::new_v4().to_string();
    let path = format!("/v1/admin/users/{}/grants", a.user_id);
    call_with(server, Method::POST, &path, Some(&a.admin), Some(body.to_string()), &[("idempotency-key", &key)]).await
}

async fn granted(server: &TestServer, a: &Actors, body: Value) {
    let reply = grant(server, a, body).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

async fn debit(server: &TestServer, a: &Actors, key: &str, body: Value) -> Reply {
    let path = format!("/v1/admin/users/{}/debits", a.user_id);
    call_with(server, Method::POST, &path, Some(&a.admin), Some(body.to_string()), &[("idempotency-key", key)]).await
}

/// The balance's lots as (priority, expiresAt or "never", remaining, reserved).
fn lots(balance: &Value) -> Vec<(u64, String, u64, u64)> {
    balance["lots"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["priority"].as_u64().unwrap_or(999),
                l["expiresAt"].as_str().unwrap_or("never").to_owned(),
                l["remaining"].as_u64().unwrap_or(u64::MAX),
                l["reserved"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// A hold's lots as (priority, expiresAt or "never", amount).
fn taken(reservation: &Value) -> Vec<(u64, String, u64)> {
    reservation["lots"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["priority"].as_u64().unwrap_or(999),
                l["expiresAt"].as_str().unwrap_or("never").to_owned(),
                l["amount"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

async fn hold(server: &TestServer, a: &Actors, units: u32, ttl: u32) -> Value {
    let reply = reserve(server, &a.server, json!({"operation": IMAGE, "units": units, "ttlSeconds": ttl})).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.body
}

async fn settle(server: &TestServer, a: &Actors, id: &Value, action: &str, body: Value) -> Value {
    let path = format!("/v1/reservations/{}/{action}", id.as_str().unwrap_or(""));
    let reply = call(server, Method::POST, &path, Some(&a.server), Some(body)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// The user's history lines of `kind`, as (amount, at).
async fn lines_of(server: &TestServer, a: &Actors, kind: &str) -> Vec<(u64, String)> {
    let page = call(server, Method::GET, "/v1/transactions?limit=200", Some(&a.user), None).await.body;
    page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["type"] == kind)
        .map(|i| (i["amount"].as_u64().unwrap_or(u64::MAX), i["at"].as_str().unwrap_or("").to_owned()))
        .collect()
}

async fn sweep(server: &TestServer, a: &Actors) -> Value {
    let reply = call(server, Method::POST, "/v1/admin/cleanup", Some(&a.admin), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn grants_land_in_lots_by_priority_and_expiry_and_the_same_pair_merges() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let week = in_seconds(&server, 7 * DAY);
    granted(&server, &a, json!({"amount": 10, "reason": "signup", "expiresAt": week})).await;
    granted(&server, &a, json!({"amount": 5, "reason": "ad_reward", "expiresAt": week})).await;
    granted(&server, &a, json!({"amount": 100, "reason": "purchase"})).await;
    granted(&server, &a, json!({"amount": 30, "reason": "plan_refill", "expiresAt": in_seconds(&server, 30 * DAY)}))
        .await;
    granted(&server, &a, json!({"amount": 7, "reason": "promo", "priority": 60})).await;

    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["granted"].as_u64()), (Some(152), Some(152)));
    // Signup and the ad reward share a pair: one lot.
    assert_eq!(
        lots(&b),
        vec![
            (10, week.clone(), 15, 0),
            (20, in_seconds(&server, 30 * DAY), 30, 0),
            (50, "never".into(), 100, 0),
            (60, "never".into(), 7, 0),
        ]
    );
    assert_eq!(b["nextExpiry"], json!({"amount": 15, "at": week}));
    assert_eq!((b["expired"].as_u64(), b["debited"].as_u64()), (Some(0), Some(0)));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn holds_take_in_burn_order_and_give_back_to_the_lots_they_came_from() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let (soon, later) = (in_seconds(&server, DAY), in_seconds(&server, 3 * DAY));
    granted(&server, &a, json!({"amount": 100, "reason": "purchase"})).await;
    granted(&server, &a, json!({"amount": 10, "reason": "promo", "expiresAt": later})).await;
    granted(&server, &a, json!({"amount": 4, "reason": "promo", "expiresAt": soon})).await;
    granted(&server, &a, json!({"amount": 3, "reason": "promo"})).await;

    // 25 credits: the soonest promo lot, the later one, the never-expiring
    // promo lot, then purchased credits.
    let h = hold(&server, &a, 5, 600).await;
    assert_eq!(
        taken(&h),
        vec![(10, soon.clone(), 4), (10, later.clone(), 10), (10, "never".into(), 3), (50, "never".into(), 8)]
    );
    let b = balance(&server, &a).await;
    assert_eq!(
        lots(&b),
        vec![
            (10, soon.clone(), 0, 4),
            (10, later.clone(), 0, 10),
            (10, "never".into(), 0, 3),
            (50, "never".into(), 92, 8)
        ]
    );

    // Two units captured spend the first 10 credits of the allocation.
    let captured = call_with(
        &server,
        Method::POST,
        &format!("/v1/reservations/{}/confirm", h["reservationId"].as_str().unwrap_or("")),
        Some(&a.server),
        Some(json!({"units": 2, "final": false}).to_string()),
        &[("idempotency-key", "image-1")],
    )
    .await;
    assert_eq!(captured.status, StatusCode::OK, "{}", captured.body);
    let b = balance(&server, &a).await;
    assert_eq!(lots(&b), vec![(10, later.clone(), 0, 4), (10, "never".into(), 0, 3), (50, "never".into(), 92, 8)]);
    assert_eq!(b["spent"].as_u64(), Some(10));

    // The release gives the rest back where it came from: 4 to the later
    // promo lot (not to the soonest, not to purchased credits), 3 and 8.
    let released = settle(&server, &a, &h["reservationId"], "release", json!({})).await;
    assert_eq!(released["status"], "released");
    let b = balance(&server, &a).await;
    assert_eq!(lots(&b), vec![(10, later.clone(), 4, 0), (10, "never".into(), 3, 0), (50, "never".into(), 100, 0)]);
    assert_eq!((b["available"].as_u64(), b["spent"].as_u64()), (Some(107), Some(10)));

    // A partial confirm's rest goes back the same way.
    let h = hold(&server, &a, 3, 600).await; // 15: 4 + 3 + 8
    let confirmed = settle(&server, &a, &h["reservationId"], "confirm", json!({"units": 1})).await;
    assert_eq!(confirmed["capturedAmount"].as_u64(), Some(5));
    let b = balance(&server, &a).await;
    assert_eq!(lots(&b), vec![(10, "never".into(), 2, 0), (50, "never".into(), 100, 0)]);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_lot_expires_for_reads_at_once_and_is_written_down_once_dated_at_its_expiry() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let at = in_seconds(&server, 3600);
    granted(&server, &a, json!({"amount": 10, "reason": "signup", "expiresAt": at})).await;
    granted(&server, &a, json!({"amount": 20, "reason": "purchase"})).await;
    let h = hold(&server, &a, 1, 7200).await; // 5 of the signup lot, held over its expiry
    assert_eq!(taken(&h), vec![(10, at.clone(), 5)]);

    // One millisecond before: still available.
    server.env.clock.advance_seconds(3599);
    assert_eq!(balance(&server, &a).await["available"].as_u64(), Some(25));
    // From the instant of expiry, before anything is written: not available.
    server.env.clock.advance_seconds(1);
    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["expired"].as_u64(), b["reserved"].as_u64()), (Some(20), Some(5), Some(5)));
    assert_eq!(lots(&b), vec![(10, at.clone(), 0, 5), (50, "never".into(), 20, 0)]);
    assert_eq!(b["nextExpiry"], Value::Null);
    assert!(lines_of(&server, &a, "grant_expired").await.is_empty(), "nothing written yet");

    // The job writes it down, dated at the lot's expiry; again, nothing more.
    server.env.clock.advance_seconds(60);
    assert_eq!(sweep(&server, &a).await["lotsExpired"].as_u64(), Some(1));
    assert_eq!(sweep(&server, &a).await["lotsExpired"].as_u64(), Some(0));
    assert_eq!(lines_of(&server, &a, "grant_expired").await, vec![(5, at.clone())]);
    // A hold cannot take the expired credits.
    let refused = reserve(&server, &a.server, json!({"operation": IMAGE, "units": 5})).await;
    assert_problem(&refused, 402, "insufficient_credits");

    // Held credits of the expired lot stay held: a capture still spends
    // them, and what comes back expires at once.
    let id = h["reservationId"].clone();
    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["expired"].as_u64(), b["reserved"].as_u64()), (Some(20), Some(5), Some(5)));
    settle(&server, &a, &id, "release", json!({})).await;
    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["expired"].as_u64(), b["reserved"].as_u64()), (Some(20), Some(10), Some(0)));
    let mut expired = lines_of(&server, &a, "grant_expired").await;
    expired.sort();
    assert_eq!(expired.iter().map(|(amount, _)| *amount).collect::<Vec<_>>(), vec![5, 5]);
    assert_eq!(lots(&b), vec![(50, "never".into(), 20, 0)], "the dead lot is gone from the answer");
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn the_users_next_write_can_write_an_expiry_down_before_the_job() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let at = in_seconds(&server, 60);
    granted(&server, &a, json!({"amount": 8, "reason": "promo", "expiresAt": at})).await;
    granted(&server, &a, json!({"amount": 50, "reason": "purchase"})).await;
    server.env.clock.advance_seconds(120);
    hold(&server, &a, 1, 600).await; // takes purchased credits, writes the expiry down
    assert_eq!(lines_of(&server, &a, "grant_expired").await, vec![(8, at)]);
    assert_eq!(sweep(&server, &a).await["lotsExpired"].as_u64(), Some(0));
    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["expired"].as_u64()), (Some(45), Some(8)));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn an_admin_refund_gives_credits_back_to_their_lots_or_expires_them() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let at = in_seconds(&server, 600);
    granted(&server, &a, json!({"amount": 5, "reason": "promo", "expiresAt": at})).await;
    granted(&server, &a, json!({"amount": 10, "reason": "purchase"})).await;
    let h = hold(&server, &a, 2, 300).await; // 5 promo + 5 purchased
    settle(&server, &a, &h["reservationId"], "confirm", json!({})).await;
    server.env.clock.advance_seconds(900); // the promo lot has expired
    let path = format!("/v1/admin/reservations/{}/refund", h["reservationId"].as_str().unwrap_or(""));
    let refund = call(&server, Method::POST, &path, Some(&a.admin), Some(json!({"reason": "bad output"}))).await;
    assert_eq!(refund.status, StatusCode::OK, "{}", refund.body);
    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["spent"].as_u64(), b["expired"].as_u64()), (Some(10), Some(0), Some(5)));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn debits_take_back_in_burn_order_all_or_nothing_or_partially_once_per_key() {
    let server = TestServer::start().await;
    let a = actors(&server);
    granted(&server, &a, json!({"amount": 30, "reason": "purchase"})).await;
    granted(&server, &a, json!({"amount": 5, "reason": "ad_reward"})).await;
    hold(&server, &a, 2, 600).await; // 5 ad reward + 5 purchased held

    let short = debit(&server, &a, "cb-1", json!({"amount": 26, "reason": "chargeback"})).await;
    assert_problem(&short, 402, "insufficient_credits");
    assert_eq!(short.body["available"].as_u64(), Some(25));

    let first =
        debit(&server, &a, "cb-1", json!({"amount": 20, "reason": "chargeback", "description": "dispute 42"})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!((first.body["amount"].as_u64(), first.body["requested"].as_u64()), (Some(20), Some(20)));
    assert_eq!(first.body["balance"]["debited"].as_u64(), Some(20));
    let again =
        debit(&server, &a, "cb-1", json!({"amount": 20, "reason": "chargeback", "description": "dispute 42"})).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.as_bytes()), Some(&b"true"[..]));
    assert_eq!(again.body["debitId"], first.body["debitId"]);
    let other = debit(&server, &a, "cb-1", json!({"amount": 21, "reason": "chargeback"})).await;
    assert_problem(&other, 422, "idempotency_key_reused");

    let partial = debit(&server, &a, "refund-7", json!({"amount": 50, "reason": "refund", "partial": true})).await;
    assert_eq!(partial.status, StatusCode::CREATED, "{}", partial.body);
    assert_eq!((partial.body["amount"].as_u64(), partial.body["requested"].as_u64()), (Some(5), Some(50)));
    let nothing = debit(&server, &a, "refund-8", json!({"amount": 1, "reason": "refund", "partial": true})).await;
    assert_eq!((nothing.status, nothing.body["amount"].as_u64()), (StatusCode::CREATED, Some(0)));

    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["reserved"].as_u64(), b["debited"].as_u64()), (Some(0), Some(10), Some(25)));
    let page = call(&server, Method::GET, "/v1/transactions", Some(&a.user), None).await.body;
    let debit_line = page["items"].as_array().into_iter().flatten().find(|i| i["type"] == "debit" && i["amount"] == 20);
    let debit_line = debit_line.expect("the debit's history line");
    assert_eq!((debit_line["reason"].as_str(), debit_line["actor"].as_str()), (Some("chargeback"), Some("ops")));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_grant_that_would_make_a_101st_lot_is_refused() {
    let server = TestServer::start().await;
    let a = actors(&server);
    // Purchased credits are a lot too: with them, 99 more.
    granted(&server, &a, json!({"amount": 1, "reason": "purchase"})).await;
    for day in 1..i64::from(MAX_LOTS) {
        granted(&server, &a, json!({"amount": 1, "reason": "promo", "expiresAt": in_seconds(&server, day * DAY)}))
            .await;
    }
    let one_more = json!({"amount": 1, "reason": "promo", "expiresAt": in_seconds(&server, 500 * DAY)});
    let refused = grant(&server, &a, one_more.clone()).await;
    assert_problem(&refused, 409, "too_many_lots");
    assert_eq!(refused.body["limit"].as_u64(), Some(u64::from(MAX_LOTS)));
    assert_eq!(balance(&server, &a).await["lots"].as_array().map(Vec::len), Some(MAX_LOTS as usize));
    // Into a live lot is still fine.
    granted(&server, &a, json!({"amount": 1, "reason": "promo", "expiresAt": in_seconds(&server, DAY)})).await;
    granted(&server, &a, json!({"amount": 1, "reason": "purchase"})).await;
    // A lot spent to nothing is not live: it leaves room. A hold of 5
    // credits spends the four soonest promo lots (2 + 1 + 1 + 1).
    let h = hold(&server, &a, 1, 600).await;
    settle(&server, &a, &h["reservationId"], "confirm", json!({})).await;
    assert_eq!(balance(&server, &a).await["lots"].as_array().map(Vec::len), Some(MAX_LOTS as usize - 4));
    for k in 0..4 {
        granted(
            &server,
            &a,
            json!({"amount": 1, "reason": "promo", "expiresAt": in_seconds(&server, (500 + k) * DAY)}),
        )
        .await;
    }
    assert_problem(
        &grant(&server, &a, json!({"amount": 1, "reason": "promo", "expiresAt": in_seconds(&server, 600 * DAY)})).await,
        409,
        "too_many_lots",
    );
    // So does a lot whose expiry is written down (days 5 and 6).
    server.env.clock.advance_seconds(6 * DAY + 1);
    assert_eq!(sweep(&server, &a).await["lotsExpired"].as_u64(), Some(2));
    granted(&server, &a, json!({"amount": 1, "reason": "promo", "expiresAt": in_seconds(&server, 600 * DAY)})).await;
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_balance_written_before_lots_reads_and_moves_as_one_base_lot() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let mut item = key(format!("USER#{}", a.user_id), "BALANCE");
    for (name, value) in [("available", 40), ("reserved", 0), ("spent", 10), ("granted", 50), ("updatedAt", 1)] {
        item.insert(name.into(), n(value));
    }
    item.insert("userId".into(), s(a.user_id.as_str()));
    item.insert("entity".into(), s("balance"));
    server.env.store.put(item).await.expect("put an old balance");
    let b = balance(&server, &a).await;
    assert_eq!(lots(&b), vec![(50, "never".into(), 40, 0)]);
    let h = hold(&server, &a, 2, 600).await;
    assert_eq!(taken(&h), vec![(50, "never".into(), 10)]);
    settle(&server, &a, &h["reservationId"], "release", json!({})).await;
    assert_eq!(balance(&server, &a).await["available"].as_u64(), Some(40));
}

/// At a lot's expiry, the job, holds and grants race: the expiry is written
/// down exactly once, no hold takes expired credits, and the books add up.
#[tokio::test]
async fn the_job_holds_and_grants_racing_at_an_expiry_write_it_down_once() {
    let server = TestServer::start().await;
    let env = &server.env;
    let a = actors(&server);
    let alice = credits_shared::domain::UserId::parse(&a.user_id).expect("user id");
    for round in 0..12 {
        let at = in_seconds(&server, 10);
        granted(&server, &a, json!({"amount": 20, "reason": "promo", "expiresAt": at})).await;
        granted(&server, &a, json!({"amount": 20, "reason": "purchase"})).await;
        server.env.clock.advance_seconds(10);
        let holds = (0..3).map(|_| env.ledger.reserve(&alice, reserve_request(IMAGE, 1)));
        let sweeps = (0..2).map(|_| {
            env.ledger.sweep(
                credits_shared::ledger::sweep::deadline_within(std::time::Duration::from_secs(20)),
                DEFAULT_CONCURRENCY,
            )
        });
        let (holds, sweeps) = futures::join!(join_all(holds), join_all(sweeps));
        for placed in holds {
            let r = placed.expect("reserve").into_inner();
            assert!(r.lots.iter().all(|l| l.priority == 50), "round {round}: took expired credits: {:?}", r.lots);
        }
        for s in sweeps {
            s.expect("sweep");
        }
        let lines = lines_of(&server, &a, "grant_expired").await;
        assert_eq!(lines.iter().filter(|(_, when)| *when == at).count(), 1, "round {round}: {lines:?}");
        let b = balance(&server, &a).await;
        assert_eq!(b["expired"].as_u64(), Some(20 * (round + 1)));
        env.assert_books_balance().await;
    }
}

#[tokio::test]
async fn a_grant_replays_after_its_lot_has_expired() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let body = json!({"amount": 5, "reason": "promo", "expiresAt": in_seconds(&server, 60)});
    let path = format!("/v1/admin/users/{}/grants", a.user_id);
    let send = || {
        call_with(
            &server,
            Method::POST,
            &path,
            Some(&a.admin),
            Some(body.to_string()),
            &[("idempotency-key", "promo-9")],
        )
    };
    assert_eq!(send().await.status, StatusCode::CREATED);
    server.env.clock.advance_seconds(120);
    let again = send().await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.headers.get("idempotent-replayed").map(|v| v.as_bytes()), Some(&b"true"[..]));
    assert_eq!(
        (again.body["balance"]["granted"].as_u64(), again.body["balance"]["expired"].as_u64()),
        (Some(5), Some(5))
    );
    // A new key with a past expiry is refused.
    let late = call_with(
        &server,
        Method::POST,
        &path,
        Some(&a.admin),
        Some(body.to_string()),
        &[("idempotency-key", "promo-10")],
    )
    .await;
    assert_problem(&late, 400, "validation_error");
    assert_eq!(late.body["field"], "expiresAt");
}
