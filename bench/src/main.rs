//! `make bench`: cost, latency, throughput and sweep growth of the ledger
//! against DynamoDB Local, printed and written into BENCHMARKS.md.
//! A benchmark prints figures; it never fails because a machine is slow.
//!
//! One module per section, in the order they run and are written; what
//! they share (DynamoDB Local, the request meter, requests to the handler,
//! sizes, percentiles, the programs some start) is in `harness`.

mod audit;
mod coldstart;
mod cost;
mod events;
mod harness;
mod headline;
mod jobs;
mod latency;
mod lots;
mod sweep_growth;
mod throughput;

use std::fmt::Write as _;
use std::time::Instant;

use harness::ledger::env;
use harness::local::{fresh_local, warm_local};

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
    let made = format!("{}, {}", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"), headline::machine());
    eprintln!("bench: {made}");
    // The sections, in order; the headline table above them is written
    // last, from the figures they computed.
    let mut out = String::new();
    let mut figures = headline::Figures::default();
    let mut shown = 0;
    let mut show = |out: &String| {
        print!("{}", &out[shown..]);
        shown = out.len();
    };
    if runs("cost") {
        let (local, sdk) = warm_local().await?;
        figures.cost = Some(cost::cost(&sdk, &mut out).await?);
        show(&out);
        local.stop();
    }
    if runs("latency") {
        let (local, sdk) = warm_local().await?;
        figures.latency = Some(latency::latency(&sdk, &mut out, if quick { 20 } else { 300 }).await?);
        show(&out);
        local.stop();
    }
    if runs("jobs") {
        let (local, sdk) = warm_local().await?;
        jobs::jobs(&sdk, &mut out, if quick { 20 } else { 300 }).await?;
        show(&out);
        local.stop();
    }
    if runs("lots") {
        // This run's plain success lifecycle, for the lots section.
        let units = figures.cost.as_ref().map(|c| (c.reserve, c.confirm));
        let today = lots::Today { units, p50: figures.latency };
        lots::lots(&mut out, if quick { 5 } else { 50 }, &today).await?;
        show(&out);
    }
    if runs("throughput") {
        let (local, sdk) = warm_local().await?;
        figures.rates = throughput::throughput(&sdk, &mut out, if quick { 1 } else { 4 }).await?;
        show(&out);
        local.stop();
    }
    let sizes: &[usize] = if quick { &[1_000] } else { &[1_000, 10_000, 100_000] };
    if runs("growth") {
        let (local, sdk) = warm_local().await?;
        figures.sweeps = sweep_growth::growth(&sdk, &mut out, sizes).await?;
        show(&out);
        local.stop();
    }
    // Its own DynamoDB Local and moto for the units, then the dev server
    // (which starts a DynamoDB Local of its own) for the delay.
    if runs("events") {
        figures.delay_p50 = Some(events::events(&mut out, if quick { 10 } else { 30 }).await?);
        show(&out);
    }
    // A fresh DynamoDB Local for the functions too: after the sweep's bulk
    // loads an old one answers several times slower, and that would be
    // read as the functions' time.
    if runs("cold") {
        let (local, sdk) = fresh_local().await?;
        let fixture = coldstart::Fixture::new(env(&sdk).await?.ledger, local.endpoint.clone()).await?;
        figures.cold = coldstart::coldstart(&fixture, &mut out).await?;
        show(&out);
        local.stop();
    }
    audit::audit(&mut out);
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
    let mut page = String::new();
    headline::write(&mut page, &made, &figures);
    print!("{page}");
    page.push_str(&out);
    if !quick && only.is_none() {
        std::fs::write("BENCHMARKS.md", &page).map_err(|e| e.to_string())?;
    }
    Ok(())
}
