//! The expiry sweep against DynamoDB Local: it expires what is due, only
//! that, never a hold a confirm won, each hold once, within its budget.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use credits_shared::domain::{Actor, Credits, EventType, HoldStatus};
use credits_shared::ledger::sweep::DEFAULT_CONCURRENCY;
use credits_shared::Error;
use credits_tests::{reserve_request, user, TestEnv};
use futures::future::join_all;
use uuid::Uuid;

const IMAGE: &str = "design_generate_image";

fn far() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

async fn holds(env: &TestEnv, user: &credits_shared::domain::UserId, count: usize, ttl: u32) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let mut request = reserve_request(IMAGE, 1);
        request.ttl_seconds = ttl;
        ids.push(env.ledger.reserve(user, request).await.expect("reserve").into_inner().reservation_id);
    }
    ids
}

async fn status(env: &TestEnv, id: Uuid) -> HoldStatus {
    env.ledger.hold(None, id).await.expect("hold").status
}

#[tokio::test]
async fn due_holds_expire_and_return_credits_while_others_stay() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 100).await;
    let due = holds(&env, &alice, 3, 60).await;
    let later = holds(&env, &alice, 2, 3600).await;
    env.clock.advance_seconds(60);

    let report = env.ledger.sweep(far(), DEFAULT_CONCURRENCY).await.expect("sweep");
    assert_eq!((report.expired, report.already_settled, report.remaining, report.errors), (3, 0, 0, 0));
    for id in &due {
        let hold = env.ledger.hold(None, *id).await.expect("hold");
        assert_eq!((hold.status, hold.settled_by), (HoldStatus::Expired, Some(Actor::Cleanup)));
        assert_eq!(hold.released_amount, Credits(5));
    }
    for id in &later {
        assert_eq!(status(&env, *id).await, HoldStatus::Pending);
    }
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available, balance.reserved), (Credits(90), Credits(10)));
    // Nothing more is due: a second run does nothing.
    let again = env.ledger.sweep(far(), DEFAULT_CONCURRENCY).await.expect("sweep");
    assert_eq!((again.expired, again.scanned), (0, 0));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn the_sweep_reads_only_due_holds() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 10_000).await;
    holds(&env, &alice, 5, 60).await;
    holds(&env, &alice, 60, 3600).await;
    env.clock.advance_seconds(60);
    let small = env.ledger.sweep(far(), DEFAULT_CONCURRENCY).await.expect("sweep");
    assert_eq!((small.expired, small.scanned), (5, 5));

    // Five more due among many more that are not: the reads follow the due ones.
    holds(&env, &alice, 5, 60).await;
    // Over several users: one user may have at most 100 open holds.
    for _ in 0..4 {
        let other = user("bob");
        env.grant(&other, 10_000).await;
        holds(&env, &other, 60, 3600).await;
    }
    env.clock.advance_seconds(60);
    let large = env.ledger.sweep(far(), DEFAULT_CONCURRENCY).await.expect("sweep");
    assert_eq!((large.expired, large.scanned), (5, 5), "300 pending holds, 5 due: 5 read");
    env.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sweep_racing_confirms_at_the_deadline_never_does_both() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 1000).await;
    let ids = holds(&env, &alice, 100, 30).await;

    let confirms = join_all(ids.iter().map(|id| env.ledger.confirm(Some(&alice), *id, None, Actor::Server)));
    let clock = async {
        // The deadline passes while the confirms are in flight.
        tokio::time::sleep(Duration::from_millis(15)).await;
        env.clock.advance_seconds(30);
    };
    let sweeps = async {
        let mut reports = Vec::new();
        for _ in 0..5 {
            reports.push(env.ledger.sweep(far(), DEFAULT_CONCURRENCY).await.expect("sweep"));
        }
        reports
    };
    let (confirms, (), _) = tokio::join!(confirms, clock, sweeps);
    env.ledger.sweep(far(), DEFAULT_CONCURRENCY).await.expect("final sweep");

    let mut finals: HashMap<HoldStatus, usize> = HashMap::new();
    for (id, result) in ids.iter().zip(confirms) {
        let hold = env.ledger.hold(None, *id).await.expect("hold");
        let events = hold.events.clone().unwrap_or_default();
        let settlements = events.iter().filter(|e| matches!(e.kind, EventType::Confirmed | EventType::Expired)).count();
        assert_eq!(settlements, 1, "exactly one settlement: {events:?}");
        match result {
            Ok(confirmed) => {
                assert_eq!(hold.status, HoldStatus::Confirmed);
                assert_eq!(confirmed.status, HoldStatus::Confirmed);
            }
            Err(Error::HoldExpired | Error::HoldNotPending(HoldStatus::Expired)) => {
                assert_eq!(hold.status, HoldStatus::Expired);
            }
            Err(other) => panic!("unexpected answer {other:?}"),
        }
        *finals.entry(hold.status).or_default() += 1;
    }
    let confirmed = finals.get(&HoldStatus::Confirmed).copied().unwrap_or(0) as u64;
    let expired = finals.get(&HoldStatus::Expired).copied().unwrap_or(0) as u64;
    assert_eq!(confirmed + expired, 100, "{finals:?}");
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!(balance.spent, Credits(confirmed * 5));
    assert_eq!(balance.reserved, Credits(0));
    env.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_sweeps_at_once_expire_each_hold_once() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 1000).await;
    let ids = holds(&env, &alice, 30, 60).await;
    env.clock.advance_seconds(60);
    let (a, b) =
        tokio::join!(env.ledger.sweep(far(), DEFAULT_CONCURRENCY), env.ledger.sweep(far(), DEFAULT_CONCURRENCY));
    let (a, b) = (a.expect("sweep a"), b.expect("sweep b"));
    assert_eq!(a.expired + b.expired, 30, "{a:?} {b:?}");
    assert_eq!(a.errors + b.errors, 0);
    for id in ids {
        let hold = env.ledger.hold(None, id).await.expect("hold");
        let expiries = hold.events.unwrap_or_default().iter().filter(|e| e.kind == EventType::Expired).count();
        assert_eq!(expiries, 1);
    }
    assert_eq!(env.ledger.balance(&alice).await.expect("balance").available, Credits(1000));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn a_spent_time_budget_stops_the_sweep_and_the_next_run_finishes() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 1000).await;
    let ids = holds(&env, &alice, 20, 60).await;
    env.clock.advance_seconds(60);

    let stopped = env.ledger.sweep(Instant::now(), DEFAULT_CONCURRENCY).await.expect("sweep");
    assert_eq!((stopped.expired, stopped.remaining), (0, 20), "{stopped:?}");
    env.assert_books_balance().await;

    let finished = env.ledger.sweep(far(), DEFAULT_CONCURRENCY).await.expect("sweep");
    assert_eq!((finished.expired, finished.remaining), (20, 0));
    for id in ids {
        assert_eq!(status(&env, id).await, HoldStatus::Expired);
    }
    env.assert_books_balance().await;
}

#[tokio::test]
async fn settled_holds_carry_a_ttl_and_pending_ones_never_do() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 100).await;
    let ids = holds(&env, &alice, 2, 60).await;
    env.ledger.confirm(Some(&alice), ids[0], None, Actor::Server).await.expect("confirm");
    let ttl = |id: Uuid| {
        let store = env.store.clone();
        async move { store.get_hold(id).await.expect("read").expect("hold").ttl }
    };
    let settled_ttl = ttl(ids[0]).await.expect("a settled hold has a ttl");
    let retention = 90 * 86_400;
    assert!((settled_ttl - env.ledger.now().unix_seconds() - retention).abs() < 5);
    assert_eq!(ttl(ids[1]).await, None, "a pending hold must never carry a ttl");
}
