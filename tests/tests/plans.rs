//! Plans over HTTP against the dev server: the allowance of each period,
//! shown by a read from the period's first instant, granted exactly once by
//! whichever write or job comes first, with the rollover, month ends (the
//! 31st, a leap day), ending a plan, and periods nobody wrote in.

use credits_shared::domain::{Timestamp, UserId};
use credits_shared::ledger::sweep::{deadline_within, DEFAULT_CONCURRENCY};
use credits_tests::api::{actors, assert_problem, balance, call, reserve, Actors, Reply};
use credits_tests::{at, reserve_request, TestServer};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const IMAGE: &str = "design_generate_image"; // 5 credits a unit

fn iso(rfc3339: &str) -> String {
    at(rfc3339).to_rfc3339()
}

async fn put_plan(server: &TestServer, a: &Actors, body: Value) -> Reply {
    let path = format!("/v1/admin/users/{}/plan", a.user_id);
    call(server, Method::PUT, &path, Some(&a.admin), Some(body)).await
}

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

/// The user's lines as (type, amount, at, actor), oldest first.
async fn history(server: &TestServer, a: &Actors) -> Vec<(String, u64, String, String)> {
    let page = call(server, Method::GET, "/v1/transactions?limit=200", Some(&a.user), None).await.body;
    let mut lines: Vec<_> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            (
                i["type"].as_str().unwrap_or("").to_owned(),
                i["amount"].as_u64().unwrap_or(u64::MAX),
                i["at"].as_str().unwrap_or("").to_owned(),
                i["actor"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    lines.sort_by(|x, y| (&x.2, &x.0).cmp(&(&y.2, &y.0)));
    lines
}

async fn sweep(server: &TestServer, a: &Actors) -> Value {
    let reply = call(server, Method::POST, "/v1/admin/cleanup", Some(&a.admin), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn a_monthly_plan_refills_each_period_once_with_its_rollover() {
    let server = TestServer::start().await;
    let a = actors(&server);
    server.env.clock.set(at("2027-01-10T12:00:00Z"));
    let set = put_plan(
        &server,
        &a,
        json!({"plan": "pro", "allowance": 100, "period": "month", "rollover": 20, "anchor": "2027-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["plan"]["plan"], "pro");
    assert_eq!(set.body["plan"]["currentPeriodEnd"], iso("2027-02-01T00:00:00Z"));
    // The current period's allowance at once, dated at the period's start.
    let b = balance(&server, &a).await;
    assert_eq!(lots(&b), vec![(20, iso("2027-02-01T00:00:00Z"), 100, 0)]);
    assert_eq!(b["nextExpiry"], json!({"amount": 100, "at": iso("2027-02-01T00:00:00Z")}));
    assert_eq!(history(&server, &a).await, vec![("grant".into(), 100, iso("2027-01-01T00:00:00Z"), "plan".into())]);
    // Setting the same plan again grants nothing more.
    let again =
        put_plan(&server, &a, json!({"plan": "pro", "allowance": 100, "period": "month", "rollover": 20})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(balance(&server, &a).await["granted"].as_u64(), Some(100));

    // 50 spent, 50 unused at the period's end: 20 carried, 30 expire.
    let hold = reserve(&server, &a.server, json!({"operation": IMAGE, "units": 10})).await;
    let id = hold.body["reservationId"].as_str().expect("id").to_owned();
    let confirmed =
        call(&server, Method::POST, &format!("/v1/reservations/{id}/confirm"), Some(&a.server), Some(json!({}))).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);

    // From the new period's first instant a read shows its allowance,
    // before anything is written.
    server.env.clock.set(at("2027-02-01T00:00:00Z"));
    let b = balance(&server, &a).await;
    assert_eq!(lots(&b), vec![(20, iso("2027-03-01T00:00:00Z"), 120, 0)]);
    assert_eq!(
        (b["available"].as_u64(), b["expired"].as_u64(), b["granted"].as_u64()),
        (Some(120), Some(30), Some(200))
    );
    assert_eq!(b["plan"]["currentPeriodEnd"], iso("2027-03-01T00:00:00Z"));
    assert_eq!(history(&server, &a).await.len(), 3, "grant, reserve, confirm: nothing written yet");

    // The job writes it down once; a second run and the user's next write
    // find nothing more to do.
    server.env.clock.set(at("2027-02-01T00:01:00Z"));
    assert_eq!(sweep(&server, &a).await["planRefills"].as_u64(), Some(1));
    assert_eq!(sweep(&server, &a).await["planRefills"].as_u64(), Some(0));
    reserve(&server, &a.server, json!({"operation": IMAGE, "units": 1})).await;
    let lines = history(&server, &a).await;
    let due: Vec<_> = lines.iter().filter(|l| l.2 == iso("2027-02-01T00:00:00Z")).cloned().collect();
    assert_eq!(
        due,
        vec![
            ("grant".into(), 100, iso("2027-02-01T00:00:00Z"), "plan".into()),
            ("grant_expired".into(), 30, iso("2027-02-01T00:00:00Z"), "".into()),
        ]
    );
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn months_anchored_on_the_31st_end_on_the_last_day_of_shorter_months_and_leap_days() {
    let server = TestServer::start().await;
    let a = actors(&server);
    server.env.clock.set(at("2027-12-31T08:00:00Z"));
    let set = put_plan(
        &server,
        &a,
        json!({"plan": "basic", "allowance": 10, "period": "month", "anchor": "2027-12-31T00:00:00Z"}),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let ends = [
        ("2028-01-15T00:00:00Z", "2028-01-31T00:00:00Z"),
        ("2028-02-10T00:00:00Z", "2028-02-29T00:00:00Z"),
        ("2028-02-29T00:00:00Z", "2028-03-31T00:00:00Z"),
        ("2028-04-30T00:00:00Z", "2028-05-31T00:00:00Z"),
    ];
    for (now, end) in ends {
        server.env.clock.set(at(now));
        let b = balance(&server, &a).await;
        assert_eq!(b["plan"]["currentPeriodEnd"], iso(end), "at {now}");
        // No rollover: only the current period's 10 are available.
        assert_eq!(b["available"].as_u64(), Some(10), "at {now}");
        sweep(&server, &a).await;
    }
    // Every period's allowance granted once, dated at its start.
    let refills: Vec<String> = history(&server, &a).await.into_iter().filter(|l| l.0 == "grant").map(|l| l.2).collect();
    let starts = [
        "2027-12-31T00:00:00Z",
        "2028-01-31T00:00:00Z",
        "2028-02-29T00:00:00Z",
        "2028-03-31T00:00:00Z",
        "2028-04-30T00:00:00Z",
    ];
    assert_eq!(refills, starts.map(iso).to_vec());
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn periods_nobody_wrote_in_are_written_down_in_order_by_the_next_write() {
    let server = TestServer::start().await;
    let a = actors(&server);
    server.env.clock.set(at("2027-03-01T09:00:00Z"));
    let set = put_plan(
        &server,
        &a,
        json!({"plan": "daily", "allowance": 5, "period": "day", "rollover": 3, "anchor": "2027-03-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    server.env.clock.set(at("2027-03-06T09:00:00Z"));
    // A read: today's 5 and yesterday's 3 carried (the rollover cap), the rest expired.
    let b = balance(&server, &a).await;
    assert_eq!(lots(&b), vec![(20, iso("2027-03-07T00:00:00Z"), 8, 0)]);
    assert_eq!((b["granted"].as_u64(), b["expired"].as_u64()), (Some(30), Some(22)));
    // A hold writes the five missed refills down first, then takes from today's lot.
    let hold = reserve(&server, &a.server, json!({"operation": IMAGE, "units": 1})).await;
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
    assert_eq!(hold.body["lots"], json!([{"priority": 20, "expiresAt": iso("2027-03-07T00:00:00Z"), "amount": 5}]));
    let refills = history(&server, &a).await.into_iter().filter(|l| l.0 == "grant").count();
    assert_eq!(refills, 6);
    assert_eq!(sweep(&server, &a).await["planRefills"].as_u64(), Some(0));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_deleted_plan_runs_to_the_end_of_its_period_and_refills_no_more() {
    let server = TestServer::start().await;
    let a = actors(&server);
    server.env.clock.set(at("2027-05-03T00:00:00Z"));
    put_plan(&server, &a, json!({"plan": "pro", "allowance": 50, "period": "week", "anchor": "2027-05-01T00:00:00Z"}))
        .await;
    let path = format!("/v1/admin/users/{}/plan", a.user_id);
    let ended = call(&server, Method::DELETE, &path, Some(&a.admin), None).await;
    assert_eq!(ended.status, StatusCode::OK, "{}", ended.body);
    assert_eq!(ended.body["plan"]["endsAt"], iso("2027-05-08T00:00:00Z"));
    assert_eq!(ended.body["available"].as_u64(), Some(50), "the period's allowance stays");
    server.env.clock.set(at("2027-05-09T00:00:00Z"));
    sweep(&server, &a).await;
    let b = balance(&server, &a).await;
    assert_eq!((b["plan"].clone(), b["available"].as_u64(), b["granted"].as_u64()), (Value::Null, Some(0), Some(50)));
    // Setting it again starts a new period at once.
    let again = put_plan(&server, &a, json!({"plan": "pro", "allowance": 50, "period": "week"})).await;
    assert_eq!(again.body["available"].as_u64(), Some(50), "{}", again.body);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_changed_plan_never_grants_a_period_twice() {
    let server = TestServer::start().await;
    let a = actors(&server);
    server.env.clock.set(at("2027-01-10T00:00:00Z"));
    let anchor = "2027-01-01T00:00:00Z";
    put_plan(&server, &a, json!({"plan": "pro", "allowance": 100, "period": "month", "anchor": anchor})).await;
    // An upgrade mid-period, with the same anchor or none: from the next period.
    server.env.clock.set(at("2027-01-20T00:00:00Z"));
    let up = put_plan(&server, &a, json!({"plan": "max", "allowance": 200, "period": "month", "anchor": anchor})).await;
    assert_eq!(
        (up.body["granted"].as_u64(), up.body["plan"]["plan"].as_str()),
        (Some(100), Some("max")),
        "{}",
        up.body
    );
    put_plan(&server, &a, json!({"plan": "pro", "allowance": 100, "period": "month"})).await;
    let back = put_plan(&server, &a, json!({"plan": "max", "allowance": 200, "period": "month"})).await;
    assert_eq!(back.body["granted"].as_u64(), Some(100));
    server.env.clock.set(at("2027-02-01T00:00:00Z"));
    assert_eq!(balance(&server, &a).await["granted"].as_u64(), Some(300));
    // A new anchor starts a period now: its allowance at once.
    server.env.clock.set(at("2027-02-10T00:00:00Z"));
    let moved = put_plan(
        &server,
        &a,
        json!({"plan": "max", "allowance": 200, "period": "month", "anchor": "2027-02-10T00:00:00Z"}),
    )
    .await;
    assert_eq!(moved.body["granted"].as_u64(), Some(500), "{}", moved.body);
    assert_eq!(moved.body["plan"]["currentPeriodEnd"], iso("2027-03-10T00:00:00Z"));
    let refills = history(&server, &a).await.into_iter().filter(|l| l.0 == "grant").count();
    assert_eq!(refills, 3);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn plan_requests_are_validated() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let bad = put_plan(&server, &a, json!({"plan": "pro", "allowance": 10, "period": "fortnight"})).await;
    assert_problem(&bad, 400, "validation_error");
    assert_eq!(bad.body["field"], "period");
    let bad = put_plan(&server, &a, json!({"plan": "pro", "allowance": 0, "period": "day"})).await;
    assert_eq!(bad.body["field"], "allowance");
    let bad = put_plan(&server, &a, json!({"plan": "pro", "allowance": 1, "period": "day", "anchor": "soon"})).await;
    assert_eq!(bad.body["field"], "anchor");
    let path = format!("/v1/admin/users/{}/plan", a.user_id);
    let forbidden = call(
        &server,
        Method::PUT,
        &path,
        Some(&a.server),
        Some(json!({"plan": "pro", "allowance": 1, "period": "day"})),
    )
    .await;
    assert_problem(&forbidden, 403, "forbidden");
}

/// At a period's start, holds and jobs race: the refill is granted once.
#[tokio::test]
async fn holds_and_jobs_racing_at_a_period_start_grant_it_once() {
    let server = TestServer::start().await;
    let env = &server.env;
    let a = actors(&server);
    let alice = UserId::parse(&a.user_id).expect("user id");
    env.clock.set(at("2027-06-01T00:00:00Z"));
    put_plan(
        &server,
        &a,
        json!({"plan": "daily", "allowance": 20, "period": "day", "rollover": 5, "anchor": "2027-06-01T00:00:00Z"}),
    )
    .await;
    for day in 1..=10 {
        env.clock.set(Timestamp(at("2027-06-01T00:00:00Z").millis() + day * 86_400_000));
        let holds = (0..3).map(|_| env.ledger.reserve(&alice, reserve_request(IMAGE, 1)));
        let jobs =
            (0..2).map(|_| env.ledger.sweep(deadline_within(std::time::Duration::from_secs(20)), DEFAULT_CONCURRENCY));
        let (holds, jobs) = futures::join!(join_all(holds), join_all(jobs));
        for placed in holds {
            placed.expect("reserve");
        }
        for job in jobs {
            job.expect("sweep");
        }
        let refills = history(&server, &a).await.into_iter().filter(|l| l.0 == "grant").count() as i64;
        assert_eq!(refills, day + 1, "day {day}");
        env.assert_books_balance().await;
    }
}
