//! The ledger against DynamoDB Local: the money rules, one behaviour per
//! test, each ending with the books check.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};

use credits_shared::domain::{Actor, Attribution, Credits, EntryType, EventType, GrantReason, HoldStatus, Provider};
use credits_shared::ledger::{GrantRequest, JobOutput, JobRun, OnReplay, Outcome, ReserveRequest, WithCreditsError};
use credits_shared::Error;
use credits_tests::{reserve_request, user, TestEnv};
use futures::future::join_all;

const IMAGE: &str = "design_generate_image"; // 5 credits a unit

fn grant_request(amount: u64, key: &str) -> GrantRequest {
    GrantRequest::new(amount, GrantReason::Purchase, key, "ops")
}

#[tokio::test]
async fn new_user_has_an_all_zero_balance() {
    let env = TestEnv::new().await;
    let balance = env.ledger.balance(&user("new")).await.expect("balance");
    assert_eq!(
        (balance.available, balance.reserved, balance.spent, balance.granted),
        (Credits(0), Credits(0), Credits(0), Credits(0))
    );
}

#[tokio::test]
async fn grant_credits_available_and_granted() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    let outcome = env.ledger.grant(&alice, grant_request(50, "k1")).await.expect("grant");
    assert!(!outcome.is_replay());
    let grant = outcome.into_inner();
    assert_eq!(grant.balance.available, Credits(50));
    assert_eq!(grant.balance.granted, Credits(50));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn grant_replay_credits_once_and_other_body_is_refused() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    let first = env.ledger.grant(&alice, grant_request(10, "same")).await.expect("grant").into_inner();
    let again = env.ledger.grant(&alice, grant_request(10, "same")).await.expect("replay");
    assert!(again.is_replay());
    assert_eq!(again.into_inner().grant_id, first.grant_id);
    assert!(matches!(env.ledger.grant(&alice, grant_request(11, "same")).await, Err(Error::IdempotencyKeyReused)));
    assert_eq!(env.ledger.balance(&alice).await.expect("balance").granted, Credits(10));
    env.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_concurrent_grants_with_one_key_credit_once() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    let results = join_all((0..16).map(|_| env.ledger.grant(&alice, grant_request(7, "one-key")))).await;
    let ids: HashSet<_> = results.into_iter().map(|r| r.expect("grant or replay").into_inner().grant_id).collect();
    assert_eq!(ids.len(), 1);
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available, balance.granted), (Credits(7), Credits(7)));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn reserve_then_confirm_moves_credits_to_spent() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let hold = env.ledger.reserve(&alice, reserve_request(IMAGE, 2)).await.expect("reserve").into_inner();
    assert_eq!((hold.unit_cost, hold.amount, hold.status), (Credits(5), Credits(10), HoldStatus::Pending));
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available, balance.reserved), (Credits(40), Credits(10)));

    let confirmed = env.ledger.confirm(Some(&alice), hold.reservation_id, None, Actor::Server).await.expect("confirm");
    assert_eq!(confirmed.status, HoldStatus::Confirmed);
    assert_eq!((confirmed.captured_units, confirmed.captured_amount), (2, Credits(10)));
    assert_eq!(confirmed.settled_by, Some(Actor::Server));
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available, balance.reserved, balance.spent), (Credits(40), Credits(0), Credits(10)));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn reserve_without_enough_credits_is_402_with_figures() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 3).await;
    match env.ledger.reserve(&alice, reserve_request(IMAGE, 1)).await {
        Err(Error::InsufficientCredits { available, required }) => {
            assert_eq!((available, required), (Credits(3), Credits(5)));
        }
        other => panic!("expected insufficient credits, got {other:?}"),
    }
    let stranger = user("stranger");
    assert!(matches!(
        env.ledger.reserve(&stranger, reserve_request(IMAGE, 1)).await,
        Err(Error::InsufficientCredits { available: Credits(0), .. })
    ));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn free_operation_holds_nothing_and_needs_no_credits() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    let hold = env.ledger.reserve(&alice, reserve_request("design_assistant", 3)).await.expect("reserve").into_inner();
    assert_eq!(hold.amount, Credits(0));
    let confirmed = env.ledger.confirm(Some(&alice), hold.reservation_id, None, Actor::Server).await.expect("confirm");
    assert_eq!(confirmed.status, HoldStatus::Confirmed);
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available.get(), balance.reserved.get(), balance.granted.get()), (0, 0, 0));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn unknown_operation_is_refused() {
    let env = TestEnv::new().await;
    let result = env.ledger.reserve(&user("a"), reserve_request("paint_a_horse", 1)).await;
    assert!(matches!(result, Err(Error::UnknownOperation(op)) if op == "paint_a_horse"));
}

#[tokio::test]
async fn reserve_replay_returns_the_same_hold_and_other_body_is_refused() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let mut request = reserve_request(IMAGE, 1);
    request.idempotency_key = Some("job-1".into());
    let first = env.ledger.reserve(&alice, request.clone()).await.expect("reserve");
    let again = env.ledger.reserve(&alice, request.clone()).await.expect("replay");
    assert!(matches!(first, Outcome::Created(_)));
    assert!(again.is_replay());
    assert_eq!(first.into_inner(), again.into_inner());
    request.units = 2;
    assert!(matches!(env.ledger.reserve(&alice, request).await, Err(Error::IdempotencyKeyReused)));
    assert_eq!(env.ledger.balance(&alice).await.expect("balance").reserved, Credits(5));
    env.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_confirms_capture_once_and_answer_alike() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let hold = env.ledger.reserve(&alice, reserve_request(IMAGE, 2)).await.expect("reserve").into_inner();
    let id = hold.reservation_id;
    let results = join_all((0..64).map(|_| env.ledger.confirm(Some(&alice), id, None, Actor::Server))).await;
    let bodies: HashSet<String> = results
        .into_iter()
        .map(|r| serde_json::to_string(&r.expect("every confirm answers 200")).expect("json"))
        .collect();
    assert_eq!(bodies.len(), 1, "all answers carry the same body: {bodies:?}");
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.spent, balance.available), (Credits(10), Credits(40)));
    let events = env.ledger.hold(Some(&alice), id).await.expect("get").events.expect("events");
    assert_eq!(events.iter().filter(|e| e.kind == EventType::Confirmed).count(), 1);
    env.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn confirm_racing_release_has_one_winner() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 100).await;
    for _ in 0..8 {
        let id =
            env.ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("reserve").into_inner().reservation_id;
        let (confirm, release) = tokio::join!(
            env.ledger.confirm(Some(&alice), id, None, Actor::Server),
            env.ledger.release(Some(&alice), id, Actor::Server)
        );
        match (confirm, release) {
            (Ok(c), Err(Error::HoldNotPending(HoldStatus::Confirmed))) => {
                assert_eq!(c.status, HoldStatus::Confirmed)
            }
            (Err(Error::HoldNotPending(HoldStatus::Released)), Ok(r)) => {
                assert_eq!(r.status, HoldStatus::Released)
            }
            other => panic!("exactly one must win: {other:?}"),
        }
    }
    env.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_concurrent_holds_of_five_on_fifty_give_ten() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let results = join_all((0..40).map(|_| env.ledger.reserve(&alice, reserve_request(IMAGE, 1)))).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let insufficient = results.iter().filter(|r| matches!(r, Err(Error::InsufficientCredits { .. }))).count();
    assert_eq!((ok, insufficient), (10, 30), "{results:?}");
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available, balance.reserved), (Credits(0), Credits(50)));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn partial_capture_returns_the_remainder() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let id = env.ledger.reserve(&alice, reserve_request(IMAGE, 4)).await.expect("reserve").into_inner().reservation_id;
    let confirmed = env.ledger.confirm(Some(&alice), id, Some(3), Actor::Server).await.expect("confirm");
    assert_eq!(
        (confirmed.captured_units, confirmed.captured_amount, confirmed.released_amount),
        (3, Credits(15), Credits(5))
    );
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available, balance.spent, balance.reserved), (Credits(35), Credits(15), Credits(0)));
    // The same partial confirm again is a replay; other units are refused.
    assert_eq!(env.ledger.confirm(Some(&alice), id, Some(3), Actor::Webhook).await.expect("replay"), confirmed);
    assert!(matches!(
        env.ledger.confirm(Some(&alice), id, None, Actor::Server).await,
        Err(Error::HoldNotPending(HoldStatus::Confirmed))
    ));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn confirm_of_more_units_than_held_is_a_validation_error() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let id = env.ledger.reserve(&alice, reserve_request(IMAGE, 2)).await.expect("reserve").into_inner().reservation_id;
    assert!(matches!(env.ledger.confirm(Some(&alice), id, Some(3), Actor::Server).await, Err(Error::Validation(_))));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn confirm_after_expires_at_is_refused_and_returns_the_hold() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let mut request = reserve_request(IMAGE, 1);
    request.ttl_seconds = 60;
    let id = env.ledger.reserve(&alice, request).await.expect("reserve").into_inner().reservation_id;
    env.clock.advance_seconds(60);
    assert!(matches!(env.ledger.confirm(Some(&alice), id, None, Actor::Server).await, Err(Error::HoldExpired)));
    let hold = env.ledger.hold(Some(&alice), id).await.expect("get");
    assert_eq!(hold.status, HoldStatus::Expired);
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available, balance.reserved, balance.spent), (Credits(50), Credits(0), Credits(0)));
    // Later confirms see a hold settled differently.
    assert!(matches!(
        env.ledger.confirm(Some(&alice), id, None, Actor::Server).await,
        Err(Error::HoldNotPending(HoldStatus::Expired))
    ));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn another_users_hold_is_not_found() {
    let env = TestEnv::new().await;
    let (alice, mallory) = (user("alice"), user("mallory"));
    env.grant(&alice, 50).await;
    let id = env.ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("reserve").into_inner().reservation_id;
    assert!(matches!(env.ledger.hold(Some(&mallory), id).await, Err(Error::HoldNotFound)));
    assert!(matches!(env.ledger.confirm(Some(&mallory), id, None, Actor::Server).await, Err(Error::HoldNotFound)));
    assert!(matches!(env.ledger.release(Some(&mallory), id, Actor::Server).await, Err(Error::HoldNotFound)));
    assert!(matches!(
        env.ledger.link_task(Some(&mallory), id, Provider::Bfl, "t", Actor::Server).await,
        Err(Error::HoldNotFound)
    ));
    assert_eq!(env.ledger.hold(Some(&alice), id).await.expect("own hold").status, HoldStatus::Pending);
    env.assert_books_balance().await;
}

#[tokio::test]
async fn release_returns_everything_and_repeats_change_nothing() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let id = env.ledger.reserve(&alice, reserve_request(IMAGE, 3)).await.expect("reserve").into_inner().reservation_id;
    let released = env.ledger.release(Some(&alice), id, Actor::Server).await.expect("release");
    assert_eq!((released.status, released.released_amount), (HoldStatus::Released, Credits(15)));
    assert_eq!(env.ledger.release(Some(&alice), id, Actor::Server).await.expect("replay"), released);
    assert!(matches!(
        env.ledger.confirm(Some(&alice), id, None, Actor::Server).await,
        Err(Error::HoldNotPending(HoldStatus::Released))
    ));
    assert_eq!(env.ledger.balance(&alice).await.expect("balance").available, Credits(50));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn refund_of_a_confirmed_hold_happens_once() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let id = env.ledger.reserve(&alice, reserve_request(IMAGE, 2)).await.expect("reserve").into_inner().reservation_id;
    env.ledger.confirm(Some(&alice), id, None, Actor::Server).await.expect("confirm");
    let refunded = env.ledger.refund(id, &Attribution { actor: "ops".into(), reason: None }).await.expect("refund");
    assert_eq!(refunded.status, HoldStatus::Refunded);
    assert_eq!(
        env.ledger.refund(id, &Attribution { actor: "ops".into(), reason: None }).await.expect("replay"),
        refunded
    );
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available, balance.spent), (Credits(50), Credits(0)));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn refund_of_a_pending_or_released_hold_is_refused() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let id = env.ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("reserve").into_inner().reservation_id;
    assert!(matches!(
        env.ledger.refund(id, &Attribution { actor: "ops".into(), reason: None }).await,
        Err(Error::HoldNotPending(HoldStatus::Pending))
    ));
    env.ledger.release(Some(&alice), id, Actor::Server).await.expect("release");
    assert!(matches!(
        env.ledger.refund(id, &Attribution { actor: "ops".into(), reason: None }).await,
        Err(Error::HoldNotPending(HoldStatus::Released))
    ));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn task_links_once_and_never_to_two_holds() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let first =
        env.ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("reserve").into_inner().reservation_id;
    let second =
        env.ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("reserve").into_inner().reservation_id;
    let linked = env.ledger.link_task(Some(&alice), first, Provider::Bfl, "task-1", Actor::Server).await.expect("link");
    assert_eq!(linked.task_id.as_deref(), Some("task-1"));
    let again = env
        .ledger
        .link_task(Some(&alice), first, Provider::Bfl, "task-1", Actor::Server)
        .await
        .expect("same link is a no-op");
    assert_eq!(again.task_id.as_deref(), Some("task-1"));
    assert!(matches!(
        env.ledger.link_task(Some(&alice), second, Provider::Bfl, "task-1", Actor::Server).await,
        Err(Error::TaskAlreadyLinked)
    ));
    let mut with_task = reserve_request(IMAGE, 1);
    with_task.task_id = Some("task-1".into());
    assert!(matches!(env.ledger.reserve(&alice, with_task).await, Err(Error::TaskAlreadyLinked)));
    let events = env.ledger.hold(Some(&alice), first).await.expect("get").events.expect("events");
    assert_eq!(events.iter().filter(|e| e.kind == EventType::TaskLinked).count(), 1);
    env.assert_books_balance().await;
}

#[tokio::test]
async fn history_pages_newest_first_with_a_cursor() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    for _ in 0..3 {
        env.clock.advance_seconds(1);
        let id =
            env.ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("reserve").into_inner().reservation_id;
        env.clock.advance_seconds(1);
        env.ledger.confirm(Some(&alice), id, None, Actor::Server).await.expect("confirm");
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = env.ledger.history(&alice, 2, cursor.as_deref()).await.expect("history");
        assert!(page.items.len() <= 2);
        seen.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let kinds: Vec<EntryType> = seen.iter().map(|e| e.kind).collect();
    use EntryType::*;
    assert_eq!(kinds, vec![Confirm, Reserve, Confirm, Reserve, Confirm, Reserve, Grant]);
    assert!(seen.windows(2).all(|w| w[0].at >= w[1].at));
    assert!(matches!(env.ledger.history(&alice, 2, Some("bogus!")).await, Err(Error::Validation(_))));
}

#[tokio::test]
async fn with_credits_confirms_what_the_job_produced() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let value = env
        .ledger
        .with_credits(&alice, reserve_request(IMAGE, 4), OnReplay::Skip, |_hold| async {
            Ok::<_, String>(JobOutput { value: "3 images", units: Some(3) })
        })
        .await
        .expect("job ran");
    assert_eq!(value, JobRun::Ran("3 images"));
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.spent, balance.available, balance.reserved), (Credits(15), Credits(35), Credits(0)));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn with_credits_releases_when_the_job_fails() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let result = env
        .ledger
        .with_credits(&alice, reserve_request(IMAGE, 2), OnReplay::Skip, |_hold| async {
            Err::<JobOutput<()>, _>("provider down")
        })
        .await;
    assert!(matches!(result, Err(WithCreditsError::Job("provider down"))));
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.available, balance.spent, balance.reserved), (Credits(50), Credits(0), Credits(0)));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn with_credits_does_not_run_the_job_without_credits() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    let mut ran = false;
    let result = env
        .ledger
        .with_credits(&alice, reserve_request(IMAGE, 1), OnReplay::Skip, |_hold| {
            ran = true;
            async { Ok::<_, ()>(JobOutput { value: (), units: None }) }
        })
        .await;
    assert!(matches!(result, Err(WithCreditsError::Credits(Error::InsufficientCredits { .. }))));
    assert!(!ran);
}

/// A hold of `units` images under the idempotency key `key`.
fn keyed_request(units: u32, key: &str) -> ReserveRequest {
    ReserveRequest { idempotency_key: Some(key.to_owned()), ..reserve_request(IMAGE, units) }
}

/// A job that counts its runs and reports every unit held.
async fn counted(runs: &AtomicU32) -> Result<JobOutput<&'static str>, ()> {
    runs.fetch_add(1, Ordering::SeqCst);
    Ok(JobOutput { value: "done", units: None })
}

#[tokio::test]
async fn with_credits_runs_a_job_once_per_key() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let runs = AtomicU32::new(0);
    let first = env.ledger.with_credits(&alice, keyed_request(1, "job-1"), OnReplay::Skip, |_| counted(&runs)).await;
    assert_eq!(first.expect("first"), JobRun::Ran("done"));
    let again = env.ledger.with_credits(&alice, keyed_request(1, "job-1"), OnReplay::Skip, |_| counted(&runs)).await;
    match again.expect("replay") {
        JobRun::Replayed(hold) => assert_eq!(hold.status, HoldStatus::Confirmed),
        ran => panic!("the job ran again: {ran:?}"),
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.spent, balance.available, balance.reserved), (Credits(5), Credits(45), Credits(0)));
    env.assert_books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credits_twice_at_once_runs_the_job_once() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let runs = AtomicU32::new(0);
    let (a, b) = tokio::join!(
        env.ledger.with_credits(&alice, keyed_request(2, "job-2"), OnReplay::Skip, |_| counted(&runs)),
        env.ledger.with_credits(&alice, keyed_request(2, "job-2"), OnReplay::Skip, |_| counted(&runs)),
    );
    let mut answers = [a.expect("a"), b.expect("b")];
    answers.sort_by_key(|run| matches!(run, JobRun::Replayed(_)));
    assert!(matches!(&answers, [JobRun::Ran("done"), JobRun::Replayed(_)]), "{answers:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let page = env.ledger.history(&alice, 10, None).await.expect("history");
    assert_eq!(page.items.iter().filter(|e| e.kind == EntryType::Reserve).count(), 1, "one hold");
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.spent, balance.available, balance.reserved), (Credits(10), Credits(40), Credits(0)));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn with_credits_resumes_only_a_pending_hold() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    // A worker placed the hold and crashed before its job ran.
    let placed = env.ledger.reserve(&alice, keyed_request(1, "job-3")).await.expect("reserve").into_inner();
    let runs = AtomicU32::new(0);
    let skipped = env.ledger.with_credits(&alice, keyed_request(1, "job-3"), OnReplay::Skip, |_| counted(&runs)).await;
    assert!(matches!(skipped.expect("skip"), JobRun::Replayed(hold) if hold.status == HoldStatus::Pending));
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    let resumed = env
        .ledger
        .with_credits(&alice, keyed_request(1, "job-3"), OnReplay::Resume, |hold| {
            assert_eq!(hold.reservation_id, placed.reservation_id);
            counted(&runs)
        })
        .await;
    assert_eq!(resumed.expect("resume"), JobRun::Ran("done"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // Settled now: resuming runs nothing.
    let settled =
        env.ledger.with_credits(&alice, keyed_request(1, "job-3"), OnReplay::Resume, |_| counted(&runs)).await;
    assert!(matches!(settled.expect("settled"), JobRun::Replayed(hold) if hold.status == HoldStatus::Confirmed));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let balance = env.ledger.balance(&alice).await.expect("balance");
    assert_eq!((balance.spent, balance.available, balance.reserved), (Credits(5), Credits(45), Credits(0)));
    env.assert_books_balance().await;
}

#[tokio::test]
async fn task_links_only_to_pending_holds() {
    let env = TestEnv::new().await;
    let alice = user("alice");
    env.grant(&alice, 50).await;
    let id = env.ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("reserve").into_inner().reservation_id;
    env.ledger.confirm(None, id, None, Actor::Server).await.expect("confirm");
    assert!(matches!(
        env.ledger.link_task(None, id, Provider::Bfl, "after", Actor::Server).await,
        Err(Error::HoldNotPending(HoldStatus::Confirmed))
    ));
    // A free hold (nothing held) takes a link only while pending, too.
    let free = env
        .ledger
        .reserve(&alice, reserve_request("design_assistant", 1))
        .await
        .expect("reserve")
        .into_inner()
        .reservation_id;
    env.ledger.release(None, free, Actor::Server).await.expect("release");
    assert!(matches!(
        env.ledger.link_task(None, free, Provider::Generic, "free", Actor::Server).await,
        Err(Error::HoldNotPending(HoldStatus::Released))
    ));
    assert!(env.store.get_task(Provider::Generic, "free").await.expect("read").is_none());
    env.assert_books_balance().await;
}

#[tokio::test]
async fn open_holds_are_capped_per_user_and_settling_frees_a_place() {
    let env = TestEnv::new().await;
    let ledger = env.ledger.clone().with_max_open_holds(3);
    let (alice, bob) = (user("alice"), user("bob"));
    env.grant(&alice, 100).await;
    env.grant(&bob, 100).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("reserve").into_inner().reservation_id);
    }
    match ledger.reserve(&alice, reserve_request(IMAGE, 1)).await {
        Err(Error::TooManyOpenHolds { open, limit }) => assert_eq!((open, limit), (3, 3)),
        other => panic!("expected the cap, got {other:?}"),
    }
    // Another user is not affected; nothing was taken for the refused hold.
    ledger.reserve(&bob, reserve_request(IMAGE, 1)).await.expect("bob's hold");
    assert_eq!(env.ledger.balance(&alice).await.expect("balance").reserved.get(), 15);
    // Each way out of pending frees a place: confirm, release, expiry.
    ledger.confirm(None, ids[0], None, Actor::Server).await.expect("confirm");
    ids[0] =
        ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("after confirm").into_inner().reservation_id;
    ledger.release(None, ids[1], Actor::Server).await.expect("release");
    let mut short = reserve_request(IMAGE, 1);
    short.ttl_seconds = 1;
    ledger.reserve(&alice, short).await.expect("after release");
    env.clock.advance_seconds(2);
    let report =
        ledger.sweep(credits_shared::ledger::sweep::deadline_within(std::time::Duration::from_secs(20)), 4).await;
    assert_eq!(report.expect("sweep").expired, 1);
    ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("after expiry");
    assert!(matches!(ledger.reserve(&alice, reserve_request(IMAGE, 1)).await, Err(Error::TooManyOpenHolds { .. })));
    env.assert_books_balance().await;
}

/// A free hold takes no credits but still writes a hold, a history line and
/// an index entry: it counts like any other, and leaves the count when it
/// settles.
#[tokio::test]
async fn free_holds_count_toward_the_open_hold_cap() {
    const FREE: &str = "design_assistant";
    let env = TestEnv::new().await;
    let ledger = env.ledger.clone().with_max_open_holds(2);
    let alice = user("alice");
    env.grant(&alice, 100).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(ledger.reserve(&alice, reserve_request(FREE, 1)).await.expect("reserve").into_inner().reservation_id);
    }
    for operation in [FREE, IMAGE] {
        match ledger.reserve(&alice, reserve_request(operation, 1)).await {
            Err(Error::TooManyOpenHolds { open, limit }) => assert_eq!((open, limit), (2, 2), "{operation}"),
            other => panic!("{operation}: expected the cap, got {other:?}"),
        }
    }
    // Each way out of pending frees a place: release, confirm, expiry.
    ledger.release(None, ids[0], Actor::Server).await.expect("release");
    ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("after a release");
    ledger.confirm(None, ids[1], None, Actor::Server).await.expect("confirm");
    let mut short = reserve_request(FREE, 1);
    short.ttl_seconds = 1;
    ledger.reserve(&alice, short).await.expect("after a confirm");
    assert!(matches!(ledger.reserve(&alice, reserve_request(FREE, 1)).await, Err(Error::TooManyOpenHolds { .. })));
    env.clock.advance_seconds(2);
    let report =
        ledger.sweep(credits_shared::ledger::sweep::deadline_within(std::time::Duration::from_secs(20)), 4).await;
    assert_eq!(report.expect("sweep").expired, 1);
    ledger.reserve(&alice, reserve_request(FREE, 1)).await.expect("after an expiry");
    // Nothing was taken for the free holds.
    assert_eq!(env.ledger.balance(&alice).await.expect("balance").reserved.get(), 5);
    env.assert_books_balance().await;
}

#[tokio::test]
async fn concurrent_reserves_never_pass_the_open_hold_cap() {
    let env = TestEnv::new().await;
    let ledger = env.ledger.clone().with_max_open_holds(5);
    let alice = user("alice");
    env.grant(&alice, 1000).await;
    let results = join_all((0..16).map(|_| ledger.reserve(&alice, reserve_request(IMAGE, 1)))).await;
    let placed = results.iter().filter(|r| r.is_ok()).count();
    let capped = results.iter().filter(|r| matches!(r, Err(Error::TooManyOpenHolds { .. }))).count();
    assert_eq!((placed, capped), (5, 11), "{results:?}");
    env.assert_books_balance().await;
}

#[tokio::test]
async fn holds_placed_before_the_cap_existed_never_drive_the_count_below_zero() {
    let env = TestEnv::new().await;
    let ledger = env.ledger.clone().with_max_open_holds(2);
    let alice = user("alice");
    env.grant(&alice, 100).await;
    let mut old = Vec::new();
    for _ in 0..2 {
        old.push(ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("reserve").into_inner().reservation_id);
    }
    // As data written before the cap: holds not counted, a balance without the count.
    for id in &old {
        env.store
            .client()
            .update_item()
            .table_name(env.store.table())
            .set_key(Some(credits_shared::store::key(format!("HOLD#{id}"), "HOLD")))
            .update_expression("REMOVE openCounted")
            .send()
            .await
            .expect("strip the mark");
    }
    env.store
        .client()
        .update_item()
        .table_name(env.store.table())
        .set_key(Some(credits_shared::store::key(format!("USER#{alice}"), "BALANCE")))
        .update_expression("REMOVE openHolds")
        .send()
        .await
        .expect("strip the count");
    ledger.confirm(None, old[0], None, Actor::Server).await.expect("confirm an old hold");
    ledger.release(None, old[1], Actor::Server).await.expect("release an old hold");
    env.grant(&alice, 10).await;
    // The count did not go below zero: the cap still holds at exactly 2.
    for _ in 0..2 {
        ledger.reserve(&alice, reserve_request(IMAGE, 1)).await.expect("a new hold");
    }
    assert!(matches!(
        ledger.reserve(&alice, reserve_request(IMAGE, 1)).await,
        Err(Error::TooManyOpenHolds { open: 2, limit: 2 })
    ));
    env.assert_books_balance().await;
}
