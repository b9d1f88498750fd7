//! Randomized operation sequences against the model (see `credits_tests::model`).
//!
//! `make test` runs a fixed seed; `MODEL_SEED=<n>` replays another. `make
//! soak` runs the ignored `soak` test: at least `MODEL_OPS` (10,000)
//! operations from a random seed, and writes the figures into RELIABILITY.md.

use std::time::{Duration, Instant};

use credits_tests::model::{
    episode_seed, generate, report, run_episode, shrink, Batch, DebitSpec, Op, Shape, StripeEvent, Tally,
};

const FIXED_SEED: u64 = 20_261_123;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn shape() -> Shape {
    let defaults = Shape::default();
    Shape { batches: env_u64("MODEL_BATCHES").map_or(defaults.batches, |b| b as usize), ..defaults }
}

/// Runs episodes until `ops` operations have run; on a violation, shrinks
/// it and panics with the report.
async fn run(seed: u64, ops: u64) -> (Tally, u64, Duration) {
    let shape = shape();
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut episode = 0;
    while tally.total_ops() < ops {
        let batches = generate(episode_seed(seed, episode), shape);
        match run_episode(&batches, shape).await {
            Ok(t) => tally.add(&t),
            Err(violation) => {
                eprintln!("violation in episode {episode} at batch {}: {}", violation.batch, violation.message);
                let budget = Duration::from_secs(env_u64("MODEL_SHRINK_SECONDS").unwrap_or(300));
                let (shrunk, last) = shrink(batches, shape, budget).await;
                panic!("{}", report(seed, episode, &shrunk, &last));
            }
        }
        episode += 1;
    }
    (tally, episode, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_sequences_keep_the_ledger_equal_to_its_model() {
    let seed = env_u64("MODEL_SEED").unwrap_or(FIXED_SEED);
    let (tally, episodes, took) = run(seed, env_u64("MODEL_OPS").unwrap_or(400)).await;
    eprintln!("seed {seed}: {} operations in {episodes} episodes, {took:.1?}: {:?}", tally.total_ops(), tally.ops);
    eprintln!("answers: {:?}", tally.answers);
    eprintln!(
        "{} balance reads; {} lot expiries and {} plan refills written down; {} grant_expired lines",
        tally.reads, tally.lots_expired, tally.plan_refills, tally.expired_lines
    );
    // The generator must reach every kind of operation and the interesting answers.
    for op in [
        "grant",
        "reserve",
        "confirm",
        "capture",
        "extend",
        "release",
        "link task",
        "refund",
        "webhook",
        "webhook redelivery",
        "sweep",
        "debit",
        "set plan",
        "end plan",
        "clock jump to a due instant",
        "clock jump (6 hours to 31 days)",
        "stripe: session paid",
        "stripe: charge refunded",
        "stripe: dispute created",
        "stripe: dispute closed won",
        "stripe: dispute closed lost",
        "stripe: event sent again",
    ] {
        assert!(tally.ops.get(op).copied().unwrap_or(0) > 0, "no {op} generated");
    }
    for answer in [
        "200 confirmed",
        "200 captured",
        "200 capture replayed",
        "200 extended",
        "409 reservation_not_pending",
        "202 webhook parked",
        "200 webhook duplicate",
        "201 granted (expiring lot)",
        "201 debited",
        "200 plan set",
        "200 plan ended",
        "200 stripe granted",
        "200 stripe taken_back",
        "200 stripe parked",
        "200 stripe duplicate",
    ] {
        assert!(tally.answers.get(answer).copied().unwrap_or(0) > 0, "no {answer:?} answer seen: {:?}", tally.answers);
    }
    // Lots expire and plans refill, written down by writes or sweeps.
    assert!(tally.lots_expired > 0 && tally.plan_refills > 0, "no lot expiry or refill written down: {tally:?}");
}

/// Stripe's events where the service's steps interleave most, each of five
/// races run on two sessions (of packs bought at their price), three
/// episodes over: a refund parked, then the payment racing two more
/// refunds, then the first refund sent again beside a full refund and a
/// dispute; a fresh refund racing its own copy and the payment, then the
/// paid event's copies racing a dispute after credits were spent; a dispute
/// parked and closed won, then the payment racing a debit of the same user
/// (the parked dispute takes nothing); a refund and a dispute parked, then
/// the payment racing another refund, then the dispute closed won; a
/// dispute racing its own `won` and that `won`'s copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_stripe_events_are_explained_by_the_model() {
    let (refund, paid, dispute) = (|r| StripeEvent::Refund { refunded: r }, StripeEvent::Paid, StripeEvent::Dispute);
    let won = StripeEvent::DisputeClosed { won: true };
    let stripe = |session, event| Op::Stripe { session, event };
    let debit = |session: usize, amount| Op::Debit {
        user: session % 3,
        key: session as u8,
        spec: DebitSpec { amount, reason: 2, partial: true, retry: false },
    };
    let mut batches: Vec<Batch> = Vec::new();
    // Every event sent so far, in order: `StripeRedeliver { nth }` names one.
    let mut sent = 0;
    // Sessions whose pack is paid at its price (see `model/purchases/products.rs`).
    for (i, session) in [0, 2, 3, 4, 6, 10, 12, 13, 14, 16].into_iter().enumerate() {
        match i % 5 {
            0 => {
                let first = sent;
                batches.push(vec![stripe(session, refund(333))]);
                batches.push(vec![stripe(session, paid), stripe(session, refund(500)), stripe(session, refund(1))]);
                batches.push(vec![
                    Op::StripeRedeliver { nth: first },
                    stripe(session, refund(999)),
                    stripe(session, dispute),
                ]);
                sent += 6;
            }
            1 => {
                batches.push(vec![
                    stripe(session, refund(500)),
                    Op::StripeRedeliver { nth: sent },
                    stripe(session, paid),
                ]);
                batches.push(vec![debit(session, 10)]);
                let paid_at = sent + 1;
                batches.push(vec![
                    Op::StripeRedeliver { nth: paid_at },
                    Op::StripeRedeliver { nth: paid_at },
                    stripe(session, dispute),
                ]);
                sent += 3;
            }
            2 => {
                batches.push(vec![stripe(session, dispute)]);
                batches.push(vec![stripe(session, won)]);
                batches.push(vec![stripe(session, paid), debit(session, 30)]);
                sent += 3;
            }
            3 => {
                batches.push(vec![stripe(session, refund(333))]);
                batches.push(vec![stripe(session, dispute)]);
                batches.push(vec![stripe(session, paid), stripe(session, refund(500))]);
                batches.push(vec![stripe(session, won)]);
                sent += 5;
            }
            _ => {
                batches.push(vec![stripe(session, paid)]);
                let won_at = sent + 2;
                batches.push(vec![stripe(session, dispute), stripe(session, won), Op::StripeRedeliver { nth: won_at }]);
                sent += 3;
            }
        }
    }
    let shape = Shape { users: 3, tasks: 6, batches: batches.len() };
    let mut tally = Tally::default();
    for episode in 0..3 {
        match run_episode(&batches, shape).await {
            Ok(t) => tally.add(&t),
            Err(violation) => panic!("episode {episode}, batch {}: {}", violation.batch, violation.message),
        }
    }
    eprintln!("answers: {:?}", tally.answers);
    for answer in [
        "200 stripe taken_back",
        "200 stripe taken_back (some already spent)",
        "200 stripe parked",
        "200 stripe granted (dispute won)",
        "200 stripe ignored (nothing_taken)",
    ] {
        assert!(tally.answers.get(answer).copied().unwrap_or(0) > 0, "no {answer:?} answer seen: {:?}", tally.answers);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run by `make soak`"]
async fn soak() {
    let seed = env_u64("MODEL_SEED").unwrap_or_else(rand::random);
    let ops = env_u64("MODEL_OPS").unwrap_or(10_000);
    let (tally, episodes, took) = run(seed, ops).await;
    let mut counts: Vec<_> = tally.ops.iter().collect();
    counts.sort_by(|a, b| b.1.cmp(a.1));
    let mut answers: Vec<_> = tally.answers.iter().collect();
    answers.sort_by(|a, b| b.1.cmp(a.1));
    let machine = machine();
    let mut section = format!(
        "Command: `make soak` (seed {seed}; replay with `MODEL_SEED={seed} make soak`).\n\n\
         What is checked (`tests/src/model/`): the answers of each batch must be those of some \
         order of its operations run on a model of the ledger; after every batch the table must \
         equal that model (each balance item: every lot's remaining and held credits and whether \
         its expiry is written down, spent, granted, expired, debited, the last refilled period, \
         the due-work index entry never later than what falls due next; each hold's state, split, captured units, the units of its \
         closing confirm, its capture keys, its `expiresAt` and the lots it took; history lines \
         per user by type, amount and date; parked deliveries), every balance read \
         (`GET /v1/balance`, read again whenever its item or the clock moved) must show what the \
         model shows at that instant (available, reserved, spent, expired, debited, granted, \
         their equation, every live lot's priority, expiry, remaining and reserved credits, \
         `nextExpiry`, the plan and its current period), each episode's history pages \
         (`GET /v1/transactions`) must be the model's lines newest first, and the books must \
         balance on their own (`credits check`'s audit: each balance equation, each lot against \
         its pending holds and its history lines, `openHolds`, captures adding up, the due-work \
         index entries). The model keeps its own lot, calendar and refill arithmetic. The \
         operations: grants into lots (a priority or the reason's, never expiring or on a grid \
         of expiries so grants share lots, at the end of the plan's period, or already past: \
         `400`, or a replay), keyed and retried (`422` for another body); reserves (keyed, \
         retried, keys reused with another body) taking lots in burn order; non-final captures \
         (`final: false`, keys drawn from four per hold, so replays, `422` for a key sent with \
         other units, `400` past the units still held, `409` once expired or settled) spending \
         a hold's lots from the start; final confirms after captures; releases and expiries \
         returning what is still held to its lots, or to `expired` at once past a lot's expiry; \
         refunds (also of released or expired holds with captures); debits (all or `402`, \
         partial, replayed, `422`); plans set (day, week, month; the same plan again, changed \
         plans, anchors on the 28th–31st, in the past, the future) and ended; extends (`expiresAt` \
         moved, `409` past it, `400` beyond 7 days after placing: about 30 % of the episodes \
         extend their oldest pending hold by a day eight days running); task links, provider \
         webhooks whose success names the task's total units, redeliveries, sweeps (alone, they \
         must say how many lot expiries and refills they wrote down); and clock jumps: seconds to \
         an hour, 6 hours to 31 days, and to the next lot expiry, period end or hold expiry (a \
         millisecond before, on it, a millisecond or a second after), about two thirds of the \
         episodes starting just before a month end (28th–31st), 29 February 2028 or a year end. \
         Writes go through the app's server token (`Credits-User`) or an admin's; the paying \
         user's own token tries reserves, confirms, captures, releases, extends and task links, \
         which must answer 403 and change nothing. Stripe's events, signed as Stripe signs \
         them, buy credits (Checkout Sessions naming a pack of the model's catalog: paid at its \
         999-cent price or at another total, one pack expiring 30 days after the session was \
         created, one the catalog lacks, a free pack and a pack not free given at 100 % off \
         (`no_payment_required`), and sessions naming only `metadata.credits`; paid at once, or \
         unpaid then `async_payment_succeeded`), take them back (`charge.refunded` with \
         cumulative refunds of the 999-cent charge, so shares floor, arriving out of order; \
         `charge.dispute.created`) and give back what a dispute took when it is closed won \
         (`charge.dispute.closed`, won or lost, also before its take-back), redelivered byte \
         for byte, raced with copies of themselves and with the session's payment, and often \
         before the session (parked, then applied in the order of their keys); each must \
         answer what the model answers (granted, taken back with the credits recovered and \
         those already spent, parked, duplicate, ignored and why), and the table's purchases \
         (credits, taken back, unrecoverable), payment links, parked take-backs, dispute \
         records and event records must equal the model's.\n\n\
         Result: **0 invariant violations** in {} operations ({episodes} episodes, {} batches, \
         {} of them with 2–4 operations in flight at once; {} balance reads; {} lot expiries and \
         {} plan refills written down, {} `grant_expired` lines), {:.0} s on {}.\n\n\
         | operation | count |\n|---|---:|\n",
        tally.total_ops(),
        tally.batches,
        tally.concurrent_batches,
        tally.reads,
        tally.lots_expired,
        tally.plan_refills,
        tally.expired_lines,
        took.as_secs_f64(),
        machine,
    );
    for (op, n) in counts {
        section.push_str(&format!("| {op} | {n} |\n"));
    }
    section.push_str("\n| answer | count |\n|---|---:|\n");
    for (answer, n) in answers {
        section.push_str(&format!("| {answer} | {n} |\n"));
    }
    let figure = format!(
        "**0 invariant violations** in {} operations ({episodes} episodes, {} batches), seed {seed}, {:.0} s on \
         {machine}",
        tally.total_ops(),
        tally.batches,
        took.as_secs_f64(),
    );
    let command = format!("`make soak` (replay: `MODEL_SEED={seed} make soak`)");
    write_section("Randomized operation sequences", &section, &[&figure, &command]);
    eprintln!("{section}");
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {}", chrono::Utc::now().format("%Y-%m-%d"))
}

/// Replaces the body of `## <title>` in RELIABILITY.md, and the cells after
/// the first of its row in the headline table above the sections (the row
/// whose first cell is `<title>` or a link `[<title>](…)`) by `row`.
fn write_section(title: &str, body: &str, row: &[&str]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../RELIABILITY.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let heading = format!("## {title}\n");
    let Some(start) = text.find(&heading) else {
        panic!("RELIABILITY.md has no section {title:?}");
    };
    let body_start = start + heading.len();
    let end = text[body_start..].find("\n## ").map_or(text.len(), |i| body_start + i + 1);
    let updated = format!(
        "{}{}\n{}\n\n{}",
        headline_row(&text[..start], title, row),
        &text[start..body_start],
        body.trim_end(),
        &text[end..]
    );
    std::fs::write(&path, updated).unwrap_or_else(|e| panic!("writing RELIABILITY.md: {e}"));
}

/// `text` with the row of a table whose first cell names `title` ending in
/// `cells` instead.
fn headline_row(text: &str, title: &str, cells: &[&str]) -> String {
    let names = |cell: &str| cell == title || cell.starts_with(&format!("[{title}]("));
    let mut found = false;
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let first = line.strip_prefix("| ").and_then(|rest| rest.split(" | ").next()).map(str::trim);
        match first {
            Some(first) if !found && names(first) => {
                found = true;
                out.push_str(&format!("| {first} | {} |\n", cells.join(" | ")));
            }
            _ => out.push_str(line),
        }
    }
    if !found {
        panic!("RELIABILITY.md has no headline row for {title:?}");
    }
    out
}
