//! Monitoring against DynamoDB Local: the aggregates kept from the change
//! stream equal what the ledger says, redelivered batches count nothing
//! twice, a corrupted balance shows in health, and the reads of every
//! monitoring call do not grow with users or holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::types::AttributeValue;
use credits_shared::domain::{Actor, Attribution, Provider, Timestamp, UserId};
use credits_shared::inbound::Outcome;
use credits_shared::ledger::outcome::{Delivery, OutcomeResult};
use credits_shared::monitoring::{Monitor, Status};
use credits_shared::stats::{buckets, Period, Stats};
use credits_shared::store::{attr_number, attr_text, key, n, Store};
use credits_tests::{reserve_request, scan, user, TestEnv};

/// Puts the clock ten minutes into the current hour so that a test's
/// events share their hour, day, week and month buckets.
fn settle_clock(env: &TestEnv) -> Timestamp {
    let now = env.ledger.now().millis();
    let at = Timestamp(now - now.rem_euclid(3_600_000) + 600_000);
    env.clock.set(at);
    at
}

fn num(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    attr_number(item, name)
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    attr_text(item, name).to_owned()
}

/// A mix of everything the ledger does, for three users.
async fn scripted_mix(env: &TestEnv) -> Vec<UserId> {
    let users = vec![user("ana"), user("bruno"), user("carla")];
    for (i, u) in users.iter().enumerate() {
        env.grant(u, 100 + 50 * i as u64).await;
    }
    // A duplicate grant: credited and counted once.
    let repeat =
        credits_shared::ledger::GrantRequest::new(20, credits_shared::domain::GrantReason::AdReward, "ad-1", "ops");
    env.ledger.grant(&users[0], repeat.clone()).await.expect("grant");
    env.ledger.grant(&users[0], repeat).await.expect("replay");

    let image = |units| reserve_request("design_generate_image", units);
    let logo = |units| reserve_request("design_generate_logo", units);
    // ana: full and partial confirms, a release, a refund.
    let a1 = env.ledger.reserve(&users[0], image(2)).await.expect("reserve").into_inner().reservation_id;
    env.ledger.confirm(Some(&users[0]), a1, None, Actor::Server).await.expect("confirm");
    let a2 = env.ledger.reserve(&users[0], image(4)).await.expect("reserve").into_inner().reservation_id;
    env.ledger.confirm(Some(&users[0]), a2, Some(3), Actor::Server).await.expect("confirm");
    let a3 = env.ledger.reserve(&users[0], logo(1)).await.expect("reserve").into_inner().reservation_id;
    env.ledger.release(Some(&users[0]), a3, Actor::Server).await.expect("release");
    env.ledger.refund(a1, &Attribution { actor: "ops".into(), reason: None }).await.expect("refund");
    // bruno: a webhook success delivered twice, a failure, a late success.
    let mut with_task = logo(2);
    with_task.task_id = Some("task-b1".into());
    env.ledger.reserve(&users[1], with_task).await.expect("reserve");
    let success = |task: &str| Delivery {
        provider: Provider::Bfl,
        task_id: task.into(),
        outcome: Outcome::Success { units: None },
        delivery_id: None,
    };
    assert_eq!(env.ledger.apply_outcome(&success("task-b1")).await.expect("webhook").result, OutcomeResult::Confirmed);
    assert_eq!(env.ledger.apply_outcome(&success("task-b1")).await.expect("webhook").result, OutcomeResult::Duplicate);
    let mut failing = image(1);
    failing.task_id = Some("task-b2".into());
    env.ledger.reserve(&users[1], failing).await.expect("reserve");
    let failure = Delivery { outcome: Outcome::Failure, ..success("task-b2") };
    assert_eq!(env.ledger.apply_outcome(&failure).await.expect("webhook").result, OutcomeResult::Released);
    let mut late = image(1);
    late.task_id = Some("task-b3".into());
    late.ttl_seconds = 60;
    env.ledger.reserve(&users[1], late).await.expect("reserve");
    // carla: a batch job charged per output, closed with one more; another
    // released after one output.
    let batch = env.ledger.reserve(&users[2], image(4)).await.expect("reserve").into_inner().reservation_id;
    for key in ["out-1", "out-2"] {
        env.ledger.capture(Some(&users[2]), batch, 1, key, Actor::Server).await.expect("capture");
    }
    env.ledger.confirm(Some(&users[2]), batch, Some(1), Actor::Server).await.expect("final confirm");
    let dropped = env.ledger.reserve(&users[2], image(2)).await.expect("reserve").into_inner().reservation_id;
    env.ledger.capture(Some(&users[2]), dropped, 1, "out-1", Actor::Server).await.expect("capture");
    env.ledger.release(Some(&users[2]), dropped, Actor::Server).await.expect("release");
    // carla: holds that expire by the sweep, one still pending.
    let mut short = reserve_request("text_to_image_flux_dev", 1);
    short.ttl_seconds = 60;
    env.ledger.reserve(&users[2], short.clone()).await.expect("reserve");
    env.ledger.reserve(&users[2], short).await.expect("reserve");
    env.ledger.reserve(&users[2], image(1)).await.expect("reserve");
    env.clock.advance_seconds(61);
    let late_answer = env.ledger.apply_outcome(&success("task-b3")).await.expect("webhook");
    assert!(late_answer.late_success);
    env.ledger.sweep(std::time::Instant::now() + std::time::Duration::from_secs(30), 4).await.expect("sweep");
    users
}

/// The figures, computed from the ledger's own items.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    placed: i64,
    confirmed: i64,
    released: i64,
    expired: i64,
    refunded: i64,
    reserved: i64,
    captured: i64,
    returned: i64,
    grants: i64,
    granted: i64,
    late: i64,
    by_op: BTreeMap<String, (i64, i64, i64)>,
    spent_by_user: BTreeMap<String, i64>,
}

fn expected(items: &[HashMap<String, AttributeValue>]) -> Expected {
    let mut e = Expected::default();
    for item in items {
        match text(item, "entity").as_str() {
            "hold" => {
                let (amount, status, op) = (num(item, "amount"), text(item, "status"), text(item, "operation"));
                e.placed += 1;
                e.reserved += amount;
                // Captured credits count when captured, whatever closes the hold.
                let captured = num(item, "capturedAmount");
                e.captured += captured;
                e.returned += num(item, "releasedAmount");
                if captured > 0 || matches!(status.as_str(), "confirmed" | "refunded") {
                    let entry = e.by_op.entry(op).or_default();
                    entry.0 += i64::from(matches!(status.as_str(), "confirmed" | "refunded"));
                    entry.1 += captured;
                    entry.2 += num(item, "capturedUnits");
                }
                match status.as_str() {
                    "confirmed" => e.confirmed += 1,
                    "refunded" => {
                        e.confirmed += 1;
                        e.refunded += 1;
                    }
                    "released" => e.released += 1,
                    "expired" => e.expired += 1,
                    _ => {}
                }
            }
            "grant" => {
                e.grants += 1;
                e.granted += num(item, "amount");
            }
            "delivery" if item.get("lateSuccess").and_then(|v| v.as_bool().ok()) == Some(&true) => e.late += 1,
            "balance" => {
                e.spent_by_user.insert(text(item, "userId"), num(item, "spent"));
            }
            _ => {}
        }
    }
    e
}

#[tokio::test]
async fn monitoring_figures_equal_the_ledger_and_redelivery_counts_nothing_twice() {
    let env = TestEnv::new().await;
    let at = settle_clock(&env);
    let users = scripted_mix(&env).await;
    let changes = env.aggregate().await;
    assert!(!changes.is_empty());

    let want = expected(&scan(&env.store).await);
    let monitor = Monitor::new(env.store.clone());
    for period in [Period::Hour, Period::Day, Period::Week, Period::Month] {
        let t = monitor.totals(&buckets(at)[period.index()]).await.expect("totals");
        let got = (t.holds_placed, t.confirmed, t.released, t.expired, t.refunded);
        assert_eq!(got, (want.placed, want.confirmed, want.released, want.expired, want.refunded), "{period:?}");
        let credits = (t.credits_reserved, t.credits_captured, t.credits_returned);
        assert_eq!(credits, (want.reserved, want.captured, want.returned), "{period:?}");
        assert_eq!((t.grants, t.credits_granted, t.late_successes), (want.grants, want.granted, want.late));
    }
    assert_eq!(want.late, 1);
    assert_eq!(want.grants, 4, "the repeated grant is one grant");

    let models = monitor.models(Period::Day, at, env.ledger.catalog()).await.expect("models");
    for (op, (count, credits, units)) in &want.by_op {
        let figures = models.iter().find(|m| &m.operation == op).expect("operation listed");
        assert_eq!((figures.count, figures.credits), (*count, *credits), "{op}");
        assert!((figures.average_units - *units as f64 / *count as f64).abs() < 1e-9);
    }

    let top = monitor.top_users(Period::Day, at, 10).await.expect("top users");
    let mut want_top: Vec<(String, i64)> =
        want.spent_by_user.iter().filter(|(_, s)| **s > 0).map(|(u, s)| (u.clone(), *s)).collect();
    want_top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    let got_top: Vec<(String, i64)> = top.iter().map(|u| (u.user_id.clone(), u.spent)).collect();
    assert_eq!(got_top, want_top);
    assert!(users.iter().any(|u| got_top.iter().any(|(id, _)| id == u.as_str())));

    // The same batch again, as Lambda redelivers after a failure.
    let before = monitor.totals(&buckets(at)[1]).await.expect("totals");
    let again = Stats::new(env.store.clone()).apply(&changes, env.ledger.now()).await.expect("apply");
    assert_eq!(again.counted, 0, "{again:?}");
    assert!(again.duplicates > 0);
    assert_eq!(monitor.totals(&buckets(at)[1]).await.expect("totals"), before);
    assert_eq!(monitor.top_users(Period::Day, at, 10).await.expect("top"), top);

    let health = monitor.health(env.ledger.now()).await.expect("health");
    let check = |name: &str| health.checks.iter().find(|c| c.name == name).expect("check").clone();
    assert_eq!(check("inconsistent_balances").status, Status::Healthy);
    assert_eq!(check("late_successes").value, 1.0);
    assert_eq!(check("expired_holds_not_swept").status, Status::Healthy);
    assert_eq!(check("sweep_lag").status, Status::Healthy);
    env.assert_books_balance().await;
}

#[tokio::test]
async fn health_names_a_corrupted_balance_and_unswept_holds() {
    let env = TestEnv::new().await;
    settle_clock(&env);
    let (ok, broken) = (user("ok"), user("broken"));
    env.grant(&ok, 10).await;
    env.grant(&broken, 10).await;
    let mut short = reserve_request("design_generate_image", 1);
    short.ttl_seconds = 1;
    env.ledger.reserve(&ok, short).await.expect("reserve");
    // Corrupt one balance on purpose, behind the ledger's back.
    env.store
        .client()
        .update_item()
        .table_name(env.store.table())
        .set_key(Some(key(format!("USER#{broken}"), "BALANCE")))
        .update_expression("SET available = available + :five")
        .expression_attribute_values(":five", n(5))
        .send()
        .await
        .expect("corrupt");
    env.clock.advance_seconds(300);
    env.aggregate().await;

    let health = Monitor::new(env.store.clone()).health(env.ledger.now()).await.expect("health");
    assert_eq!(health.status, Status::Critical);
    let inconsistent = health.checks.iter().find(|c| c.name == "inconsistent_balances").expect("check");
    assert_eq!((inconsistent.status, inconsistent.value), (Status::Critical, 1.0));
    assert!(inconsistent.detail.contains(broken.as_str()), "{}", inconsistent.detail);
    let overdue = health.checks.iter().find(|c| c.name == "expired_holds_not_swept").expect("check");
    assert_eq!((overdue.status, overdue.value), (Status::Warning, 1.0));
    let lag = health.checks.iter().find(|c| c.name == "sweep_lag").expect("check");
    assert_eq!(lag.status, Status::Warning, "no sweep has run");
}

#[derive(Debug, Clone, Default)]
struct CountRequests(Arc<AtomicUsize>);

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "count-requests"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Requests each monitoring call makes.
async fn reads_per_call(env: &TestEnv, at: Timestamp) -> Vec<(&'static str, usize)> {
    let counter = CountRequests::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&env.config).interceptor(counter.clone()).build();
    let monitor = Monitor::new(Store::new(aws_sdk_dynamodb::Client::from_conf(config), env.store.table()));
    let catalog = env.ledger.catalog();
    let mut counts = Vec::new();
    let mut measure =
        |name: &'static str, before: usize| counts.push((name, counter.0.load(Ordering::SeqCst) - before));
    let c = || counter.0.load(Ordering::SeqCst);
    let before = c();
    monitor.overview(Period::Day, at).await.expect("overview");
    measure("overview", before);
    let before = c();
    monitor.health(at).await.expect("health");
    measure("health", before);
    let before = c();
    monitor.usage(Period::Hour, at).await.expect("usage");
    measure("usage", before);
    let before = c();
    monitor.top_users(Period::Day, at, 10).await.expect("top users");
    measure("top-users", before);
    let before = c();
    monitor.models(Period::Day, at, catalog).await.expect("models");
    measure("models", before);
    let before = c();
    monitor.dashboard(Period::Day, at, 10, catalog).await.expect("dashboard");
    measure("dashboard", before);
    counts
}

#[tokio::test]
async fn monitoring_reads_do_not_grow_with_users_or_holds() {
    let env = TestEnv::new().await;
    let at = settle_clock(&env);
    let first = user("first");
    env.grant(&first, 100).await;
    let id = env.ledger.reserve(&first, reserve_request("design_generate_image", 1)).await.expect("r").into_inner();
    env.ledger.confirm(Some(&first), id.reservation_id, None, Actor::Server).await.expect("confirm");
    env.aggregate().await;
    let small = reads_per_call(&env, at).await;

    for i in 0..25 {
        let u = user(&format!("many-{i}"));
        env.grant(&u, 100).await;
        for _ in 0..3 {
            let hold = env.ledger.reserve(&u, reserve_request("design_generate_logo", 1)).await.expect("r");
            env.ledger.confirm(Some(&u), hold.into_inner().reservation_id, None, Actor::Server).await.expect("c");
        }
    }
    env.aggregate().await;
    let large = reads_per_call(&env, at).await;
    assert_eq!(small, large, "1 user and 1 hold vs 26 users and 76 holds");
    for (name, reads) in &large {
        assert!(*reads > 0 && *reads <= 64, "{name}: {reads} reads");
    }
}

/// Credits expired (a lot at its expiry, held credits back to an expired
/// lot), debited, and granted by a plan show per period, each counted once
/// however often the stream delivers it.
#[tokio::test]
async fn expired_debited_and_plan_credits_show_per_period() {
    use credits_shared::domain::{Credits, DebitReason, GrantReason, Period as PlanPeriod};
    use credits_shared::ledger::{DebitRequest, GrantRequest, PlanRequest};
    let env = TestEnv::new().await;
    let start = settle_clock(&env);
    let u = user("lots");
    let promo = GrantRequest {
        expires_at: Some(start.plus_seconds(60)),
        ..GrantRequest::new(10, GrantReason::Promo, "promo", "ops")
    };
    env.grant(&u, 50).await;
    let debit = DebitRequest {
        amount: Credits(7),
        reason: DebitReason::Chargeback,
        description: None,
        partial: false,
        idempotency_key: "cb".into(),
        actor: "ops".into(),
    };
    env.ledger.debit(&u, debit).await.expect("debit");
    env.ledger.grant(&u, promo).await.expect("grant");
    let hold = env.ledger.reserve(&u, reserve_request("design_generate_image", 1)).await.expect("hold").into_inner();
    let plan = PlanRequest {
        name: "pro".into(),
        allowance: Credits(30),
        period: PlanPeriod::Month,
        rollover: Credits(0),
        anchor: Some(start),
    };
    env.ledger.set_plan(&u, plan).await.expect("plan");
    env.clock.set(start.plus_seconds(120));
    // The promo lot's 5 unheld credits expire; the hold's 5 come back expired.
    env.ledger
        .sweep(credits_shared::ledger::sweep::deadline_within(std::time::Duration::from_secs(20)), 4)
        .await
        .expect("sweep");
    env.ledger.release(Some(&u), hold.reservation_id, Actor::Server).await.expect("release");
    let balance = env.ledger.balance(&u).await.expect("balance");
    assert_eq!((balance.expired, balance.debited), (Credits(10), Credits(7)), "{balance:?}");
    let changes = env.aggregate().await;
    // Redelivered: nothing counted twice.
    Stats::new(env.store.clone()).apply(&changes, env.ledger.now()).await.expect("again");
    let monitor = Monitor::new(env.store.clone());
    for bucket in buckets(start) {
        let totals = monitor.totals(&bucket).await.expect("totals");
        assert_eq!(
            (totals.credits_expired, totals.credits_debited, totals.credits_plan_refilled, totals.credits_granted),
            (10, 7, 30, 60),
            "{bucket}"
        );
    }
    env.assert_books_balance().await;
}
