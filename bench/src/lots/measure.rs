//! The lots section's measurements: success lifecycles with the credits in
//! lots, a debit, a plan's refills and a lot's expiry, and a reserve and a
//! confirm as a user's lots grow, each through the handler, metered, timed
//! and priced per KB of the items they write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use credits_shared::domain::principal::TrustedClients;
use credits_shared::domain::{Timestamp, UserId};
use credits_shared::http::{handle, Function};
use credits_shared::inbound::Verifiers;
use credits_shared::ledger::sweep::SweepReport;
use credits_shared::store::Store;
use credits_shared::App;
use serde_json::{json, Value};

use crate::harness::http::{admin, answer, event, BENCH_SERVER};
use crate::harness::ledger::{env, user, Env};
use crate::harness::meter::{minus, Units};
use crate::harness::sizes::{balance_bytes, hold_size, per_kb};
use crate::harness::stats::Samples;

/// Rounds of the rows that run the sweep (four runs a round, each 16 shard
/// queries): at most this many.
pub(super) const SWEEP_ROUNDS: usize = 20;

/// Live lots the growth table measures a reserve and a confirm at.
const LOT_COUNTS: [usize; 3] = [1, 10, 100];

/// The operation every hold here is for: 5 credits a unit.
const OPERATION: &str = "design_generate_image";

/// The app as the handler sees it, over a ledger that refreshes prices
/// once a day, read once here: the price item's read (at most every 30 s
/// per instance in the functions) stays out of the per-operation units.
async fn app_of(e: &Env) -> Result<App, String> {
    let ledger = e.ledger.clone().with_price_refresh(Duration::from_secs(86_400));
    ledger.prices().await.map_err(|e| e.to_string())?;
    Ok(App { ledger, verifiers: Arc::new(Verifiers::new("", "")), trusted: TrustedClients::new(BENCH_SERVER, "") })
}

/// Runs `f`, metered and timed.
async fn measure<T>(e: &Env, f: impl std::future::Future<Output = T>) -> (T, Units, f64) {
    let before = e.meter.snapshot();
    let started = Instant::now();
    let value = f.await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    (value, minus(e.meter.snapshot(), before), ms)
}

/// `POST /v1/admin/users/{u}/grants`: `amount` for `reason`, into the
/// reason's lot expiring at `expires_at` (never when `None`).
async fn grant(app: &App, u: &UserId, amount: u64, reason: &str, expires_at: Option<Timestamp>) -> Result<(), String> {
    let mut body = json!({"amount": amount, "reason": reason});
    if let Some(at) = expires_at {
        body["expiresAt"] = json!(at.to_rfc3339());
    }
    let path = format!("/v1/admin/users/{u}/grants");
    let request = admin("POST", &path, &body.to_string(), Some(&uuid::Uuid::new_v4().to_string()))?;
    answer(&handle(app, Function::Admin, request).await, 201).map(|_| ())
}

/// `POST /v1/reservations` of `units` units (5 credits each): the hold.
async fn reserve(app: &App, u: &UserId, units: u32) -> Result<Value, String> {
    let body = json!({"operation": OPERATION, "units": units}).to_string();
    answer(&handle(app, Function::Reserve, event("POST", "/v1/reservations", u, &body)?).await, 201)
}

async fn confirm(app: &App, u: &UserId, id: &str) -> Result<Value, String> {
    let path = format!("/v1/reservations/{id}/confirm");
    answer(&handle(app, Function::Confirm, event("POST", &path, u, "")?).await, 200)
}

fn hold_id(hold: &Value) -> Result<String, String> {
    hold["reservationId"].as_str().map(str::to_owned).ok_or_else(|| format!("a hold without an id: {hold}"))
}

async fn hold_bytes(store: &Store, id: &str) -> Result<usize, String> {
    hold_size(store, uuid::Uuid::parse_str(id).map_err(|e| e.to_string())?).await
}

/// One success-lifecycle case: reserve and confirm samples, and the
/// largest balance and hold items seen.
#[derive(Default)]
pub(super) struct Lifecycle {
    pub(super) reserve: Samples,
    pub(super) confirm: Samples,
    pub(super) largest_balance: usize,
    pub(super) largest_hold: usize,
}

impl Lifecycle {
    /// A reserve of `units` and its confirm, both measured, each priced per
    /// KB of the balance and hold items they write (the sizes are read
    /// outside the measured calls). `parts`: how many lots the hold must
    /// have taken from.
    async fn round(&mut self, e: &Env, app: &App, u: &UserId, units: u32, parts: usize) -> Result<(), String> {
        let before = balance_bytes(&e.store, u).await?;
        let (hold, used, ms) = measure(e, reserve(app, u, units)).await;
        let hold = hold?;
        let id = hold_id(&hold)?;
        let lots = hold["lots"].as_array().map_or(0, Vec::len);
        if lots != parts {
            return Err(format!("the hold took from {lots} lots, not {parts}: {hold}"));
        }
        let (placed, held) = (balance_bytes(&e.store, u).await?, hold_bytes(&e.store, &id).await?);
        self.reserve.add(per_kb(used, &[before.max(placed), held]), ms);
        let (answer, used, ms) = measure(e, confirm(app, u, &id)).await;
        if answer?["status"] != json!("confirmed") {
            return Err("the confirm did not confirm".into());
        }
        let (after, closed) = (balance_bytes(&e.store, u).await?, hold_bytes(&e.store, &id).await?);
        self.confirm.add(per_kb(used, &[placed.max(after), held.max(closed)]), ms);
        self.largest_balance = self.largest_balance.max(before).max(placed).max(after);
        self.largest_hold = self.largest_hold.max(held).max(closed);
        Ok(())
    }

    pub(super) fn lifecycle(&self) -> (f64, f64) {
        (self.reserve.read() + self.confirm.read(), self.reserve.write() + self.confirm.write())
    }
}

/// Table 1: reserve → confirm for a user whose credits are all in the base
/// lot, and for one with a promo lot expiring in 7 days and purchased
/// credits, each hold taking from both; and the reserve after each of
/// those (the promo lot emptied by the confirm before it).
pub(super) async fn lifecycles(
    sdk: &aws_config::SdkConfig,
    rounds: usize,
) -> Result<(Lifecycle, Lifecycle, Samples), String> {
    let e = env(sdk).await?;
    let app = app_of(&e).await?;

    let (mut base, mut both, mut after_emptied) = (Lifecycle::default(), Lifecycle::default(), Samples::default());
    let a = user("lots-base");
    grant(&app, &a, 1_000_000, "purchase", None).await?;
    let b = user("lots-promo");
    grant(&app, &b, 1_000_000, "purchase", None).await?;
    let week = e.ledger.now().plus_seconds(7 * 86_400);
    for _ in 0..rounds {
        base.round(&e, &app, &a, 2, 1).await?;
        // 5 credits more in the same promo lot (same priority and expiry:
        // the lot grows), then a hold of 10: 5 from it, 5 purchased.
        grant(&app, &b, 5, "promo", Some(week)).await?;
        both.round(&e, &app, &b, 2, 2).await?;
        // The promo lot is empty now: the next hold takes purchased credits.
        let (hold, used, ms) = measure(&e, reserve(&app, &b, 2)).await;
        after_emptied.add(used, ms);
        confirm(&app, &b, &hold_id(&hold?)?).await?;
    }
    Ok((base, both, after_emptied))
}

/// One row of table 2.
pub(super) struct Row {
    pub(super) name: String,
    pub(super) samples: Samples,
}

pub(super) fn row(name: &str, samples: Samples) -> Row {
    Row { name: name.to_owned(), samples }
}

async fn sweep(e: &Env) -> Result<SweepReport, String> {
    e.ledger.sweep(Instant::now() + Duration::from_secs(60), 8).await.map_err(|e| e.to_string())
}

/// The balance's share of a sweep: the sweep with it due less a sweep with
/// nothing due right after (its 16 shard queries and its status put).
fn share(due: Units, idle: Units) -> Units {
    minus(due, idle)
}

/// Table 2: a debit, a plan set, its refills written by the sweep or by the
/// next reserve, a lot expiry written by the sweep or by the next reserve.
pub(super) async fn others(sdk: &aws_config::SdkConfig, rounds: usize) -> Result<(Vec<Row>, usize), String> {
    let mut rows = Vec::new();
    let mut largest = 0;

    // Debits (an Idempotency-Key each) of 10 credits from a promo lot
    // expiring in 7 days and purchased credits, 5 from each; then the
    // same request again.
    let e = env(sdk).await?;
    let app = app_of(&e).await?;
    let u = user("lots-debit");
    grant(&app, &u, 1_000_000, "purchase", None).await?;
    let week = e.ledger.now().plus_seconds(7 * 86_400);
    let (mut debit, mut replay) = (Samples::default(), Samples::default());
    for round in 0..rounds {
        grant(&app, &u, 5, "promo", Some(week)).await?;
        let path = format!("/v1/admin/users/{u}/debits");
        let body = json!({"amount": 10, "reason": "chargeback"}).to_string();
        let k = format!("debit-{round}");
        let before = balance_bytes(&e.store, &u).await?;
        let request = admin("POST", &path, &body, Some(&k))?;
        let (answered, used, ms) = measure(&e, handle(&app, Function::Admin, request)).await;
        let taken = answer(&answered, 201)?;
        if taken["lots"].as_array().map_or(0, Vec::len) != 2 {
            return Err(format!("the debit did not take from two lots: {taken}"));
        }
        let after = balance_bytes(&e.store, &u).await?;
        largest = largest.max(before).max(after);
        debit.add(per_kb(used, &[before.max(after)]), ms);
        let request = admin("POST", &path, &body, Some(&k))?;
        let (answered, used, ms) = measure(&e, handle(&app, Function::Admin, request)).await;
        answer(&answered, 200)?;
        replay.add(used, ms);
    }
    rows.push(row("debit of 10 (`Idempotency-Key`), 5 from a promo lot and 5 purchased", debit));
    rows.push(row("debit replay (same key, same body)", replay));

    // A daily plan set for a new user: the plan written, then the first
    // day's allowance granted.
    let e = env(sdk).await?;
    let app = app_of(&e).await?;
    let plan = json!({"plan": "daily", "allowance": 100, "period": "day"}).to_string();
    let mut set = Samples::default();
    for _ in 0..rounds {
        let u = user("lots-plan");
        let path = format!("/v1/admin/users/{u}/plan");
        let request = admin("PUT", &path, &plan, None)?;
        let (answered, used, ms) = measure(&e, handle(&app, Function::Admin, request)).await;
        answer(&answered, 200)?;
        set.add(used, ms);
    }
    rows.push(row("PUT plan (daily, 100): the plan, then the first day's allowance", set));

    let sweep_rounds = rounds.min(SWEEP_ROUNDS);
    // Each later day's refill, written by the sweep (the clock moved a day)
    // or by the user's first reserve of the day.
    let e = env(sdk).await?;
    let app = app_of(&e).await?;
    let u = user("lots-refill");
    let path = format!("/v1/admin/users/{u}/plan");
    answer(&handle(&app, Function::Admin, admin("PUT", &path, &plan, None)?).await, 200)?;
    let (mut by_sweep, mut idle, mut whole, mut by_reserve) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    for _ in 0..sweep_rounds {
        e.clock.advance_seconds(86_400);
        let (report, due, ms) = measure(&e, sweep(&e)).await;
        if report?.plan_refills != 1 {
            return Err("the sweep did not grant the day's allowance".into());
        }
        let (report, nothing, idle_ms) = measure(&e, sweep(&e)).await;
        if report?.plan_refills != 0 {
            return Err("a sweep granted a refill twice".into());
        }
        largest = largest.max(balance_bytes(&e.store, &u).await?);
        whole.add(due, ms);
        idle.add(nothing, idle_ms);
        by_sweep.add(share(due, nothing), ms - idle_ms);
        e.clock.advance_seconds(86_400);
        let (hold, used, ms) = measure(&e, reserve(&app, &u, 2)).await;
        by_reserve.add(used, ms);
        confirm(&app, &u, &hold_id(&hold?)?).await?;
    }
    let refills = e.ledger.balance(&u).await.map_err(|e| e.to_string())?;
    if !refills.adds_up() {
        return Err("the refilled balance does not add up".into());
    }
    rows.push(row("sweep with one plan refill due (whole run: 16 shard queries and its status put included)", whole));
    rows.push(row(
        "plan refill written by the sweep (the balance's share: that run less a run with nothing due)",
        by_sweep,
    ));
    rows.push(row("reserve (2 units) that first writes down the day's refill", by_reserve));

    // A lot expiry, written by the sweep or by the user's next reserve.
    let e = env(sdk).await?;
    let app = app_of(&e).await?;
    let u = user("lots-expiry");
    grant(&app, &u, 1_000_000, "purchase", None).await?;
    let (mut by_sweep, mut by_reserve) = (Samples::default(), Samples::default());
    for _ in 0..sweep_rounds {
        grant(&app, &u, 10, "promo", Some(e.ledger.now().plus_seconds(3_600))).await?;
        e.clock.advance_seconds(7_200);
        let (report, due, ms) = measure(&e, sweep(&e)).await;
        if report?.lots_expired != 1 {
            return Err("the sweep did not write the lot's expiry down".into());
        }
        let (report, nothing, idle_ms) = measure(&e, sweep(&e)).await;
        if report?.lots_expired != 0 {
            return Err("a sweep wrote an expiry down twice".into());
        }
        idle.add(nothing, idle_ms);
        by_sweep.add(share(due, nothing), ms - idle_ms);
        grant(&app, &u, 10, "promo", Some(e.ledger.now().plus_seconds(3_600))).await?;
        largest = largest.max(balance_bytes(&e.store, &u).await?);
        e.clock.advance_seconds(7_200);
        let (hold, used, ms) = measure(&e, reserve(&app, &u, 2)).await;
        by_reserve.add(used, ms);
        confirm(&app, &u, &hold_id(&hold?)?).await?;
    }
    let expired = e.ledger.balance(&u).await.map_err(|e| e.to_string())?;
    if !expired.adds_up() || expired.expired.get() != 20 * sweep_rounds as u64 {
        return Err(format!("the expiries do not add up: {} expired", expired.expired.get()));
    }
    rows.push(row("lot expiry written by the sweep (the balance's share, as above)", by_sweep));
    rows.push(row("reserve (2 units) that first writes down a lot's expiry", by_reserve));
    rows.push(row("sweep listing, nothing due (16 shard queries and the status put)", idle));
    Ok((rows, largest))
}

/// One row of table 3.
pub(super) struct Growth {
    pub(super) lots: usize,
    pub(super) bytes: usize,
    pub(super) last_grant: Samples,
    pub(super) lifecycle: Lifecycle,
    pub(super) balance: Samples,
}

/// Table 3: a user with 1, 10 and 100 live lots (promo lots of distinct
/// expiries, 1,000 credits each); the grant that made the last lot (the
/// latest expiry), then reserves of 10 credits (from the soonest lot) and
/// their confirms.
pub(super) async fn growth(sdk: &aws_config::SdkConfig, rounds: usize) -> Result<Vec<Growth>, String> {
    let e = env(sdk).await?;
    let app = app_of(&e).await?;
    let mut table = Vec::new();
    for lots in LOT_COUNTS {
        let u = user(&format!("lots-{lots}"));
        let month = e.ledger.now().plus_seconds(30 * 86_400);
        let expiry = |i: usize| Some(month.plus_seconds(60 * i as i64));
        for i in 1..lots {
            grant(&app, &u, 1_000, "promo", expiry(i)).await?;
        }
        let before = if lots > 1 { balance_bytes(&e.store, &u).await? } else { 0 };
        let (granted, used, ms) = measure(&e, grant(&app, &u, 1_000, "promo", expiry(lots))).await;
        granted?;
        let after = balance_bytes(&e.store, &u).await?;
        let mut last_grant = Samples::default();
        last_grant.add(per_kb(used, &[before.max(after)]), ms);
        let mut lifecycle = Lifecycle::default();
        let mut balance = Samples::default();
        for _ in 0..rounds {
            lifecycle.round(&e, &app, &u, 2, 1).await?;
            let request = event("GET", "/v1/balance", &u, "")?;
            let (read, used, ms) = measure(&e, handle(&app, Function::Account, request)).await;
            let shown = answer(&read, 200)?;
            if shown["lots"].as_array().map_or(0, Vec::len) != lots {
                return Err(format!("the balance shows {} lots, not {lots}", shown["lots"]));
            }
            balance.add(used, ms);
        }
        let bytes = balance_bytes(&e.store, &u).await?;
        table.push(Growth { lots, bytes, last_grant, lifecycle, balance });
    }
    Ok(table)
}
