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
mod jobs;
mod latency;
mod lots;
mod sweep_growth;
mod throughput;

use std::fmt::Write as _;
use std::time::Instant;

use harness::ledger::env;
use harness::local::{fresh_local, warm_local, WARM_UP_LIFECYCLES};

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {cpu}, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

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
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Made by `make bench` (`cargo run --profile perf -p credits-bench`) on {}, {}; DynamoDB Local 3.3.0 (in memory) on the same machine,\n\
         so latencies include no network and are a floor; costs are what DynamoDB would charge for the same requests.\n\
         Each section below runs against a DynamoDB Local of its own, warmed up first ({WARM_UP_LIFECYCLES} reserve → capture → confirm\n\
         lifecycles, untimed, on a table without a stream). The tables the sections measure have their stream on (the stats\n\
         function reads it on AWS), and DynamoDB Local slows every write as its stream records pile up, whatever the table:\n\
         with one instance for all sections, the 4-image jobs after the latency section took 484 ms at p50 (110 on an\n\
         instance of their own) and the throughput runs after them made 3 lifecycles a second (55 to 65 with every\n\
         table's stream off).\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine()
    );
    let mut shown = 0;
    let mut show = |out: &String| {
        print!("{}", &out[shown..]);
        shown = out.len();
    };
    show(&out);
    // This run's plain success lifecycle, for the lots section.
    let mut today = lots::Today::default();
    if runs("cost") {
        let (local, sdk) = warm_local().await?;
        today.units = Some(cost::cost(&sdk, &mut out).await?);
        show(&out);
        local.stop();
    }
    if runs("latency") {
        let (local, sdk) = warm_local().await?;
        today.p50 = Some(latency::latency(&sdk, &mut out, if quick { 20 } else { 300 }).await?);
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
        lots::lots(&mut out, if quick { 5 } else { 50 }, &today).await?;
        show(&out);
    }
    if runs("throughput") {
        let (local, sdk) = warm_local().await?;
        throughput::throughput(&sdk, &mut out, if quick { 1 } else { 4 }).await?;
        show(&out);
        local.stop();
    }
    let sizes: &[usize] = if quick { &[1_000] } else { &[1_000, 10_000, 100_000] };
    if runs("growth") {
        let (local, sdk) = warm_local().await?;
        sweep_growth::growth(&sdk, &mut out, sizes).await?;
        show(&out);
        local.stop();
    }
    // Its own DynamoDB Local and moto for the units, then the dev server
    // (which starts a DynamoDB Local of its own) for the delay.
    if runs("events") {
        events::events(&mut out, if quick { 10 } else { 30 }).await?;
        show(&out);
    }
    // A fresh DynamoDB Local for the functions too: after the sweep's bulk
    // loads an old one answers several times slower, and that would be
    // read as the functions' time.
    if runs("cold") {
        let (local, sdk) = fresh_local().await?;
        let fixture = coldstart::Fixture::new(env(&sdk).await?.ledger, local.endpoint.clone()).await?;
        coldstart::coldstart(&fixture, &mut out).await?;
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
    if !quick && only.is_none() {
        std::fs::write("BENCHMARKS.md", &out).map_err(|e| e.to_string())?;
    }
    Ok(())
}
