//! The top of BENCHMARKS.md: who made it, on what, the headline figures
//! (each as a section computed it in this run) and what to know before
//! reading the sections.

use std::fmt::Write as _;

use crate::harness::local::WARM_UP_LIFECYCLES;
use crate::sweep_growth::Sweep;
use crate::throughput::Rate;
use crate::{coldstart, cost};

/// This run's figures the headline table shows, as the sections computed
/// them (none for a section that did not run).
#[derive(Default)]
pub struct Figures {
    pub cost: Option<cost::Figures>,
    /// The reserve's and the confirm's p50 through the handler (ms).
    pub latency: Option<(f64, f64)>,
    pub rates: Vec<Rate>,
    pub sweeps: Vec<Sweep>,
    /// From a grant's HTTP answer to its webhook in the dev server, p50 (ms).
    pub delay_p50: Option<f64>,
    pub cold: Option<coldstart::Figures>,
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{cores} cores, {cpu}, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

/// The rows of the headline table: figure, this run's value, section.
fn rows(f: &Figures) -> Vec<(String, String, &'static str)> {
    let mut rows = Vec::new();
    if let Some(c) = &f.cost {
        for (name, u) in [("reserve", c.reserve), ("confirm (all units)", c.confirm), ("release", c.release)] {
            let value = format!("{} / {:.1} / {:.1}", u.requests, u.read, u.write);
            rows.push((format!("{name}: requests / RCU / WCU"), value, "cost"));
        }
        let (read, write, dollars) = c.success;
        let value = format!("{read:.1} / {write:.1} / ${dollars:.2}");
        rows.push(("success lifecycle (reserve → confirm): RCU / WCU / $ per million".into(), value, "cost"));
    }
    if let Some((reserve, confirm)) = f.latency {
        let value = format!("{reserve:.2} / {confirm:.2}");
        rows.push(("reserve / confirm through the handler, p50 (ms)".into(), value, "latency"));
    }
    let distinct: Vec<&Rate> = f.rates.iter().filter(|r| !r.hot).collect();
    if !distinct.is_empty() {
        let clients: Vec<String> = distinct.iter().map(|r| r.clients.to_string()).collect();
        let rates: Vec<String> = distinct.iter().map(|r| format!("{:.0}", r.per_second)).collect();
        let figure = format!("reserve → confirm lifecycles a second, {} clients (distinct users)", clients.join(" / "));
        rows.push((figure, rates.join(" / "), "throughput"));
    }
    if let Some(s) = f.sweeps.last() {
        let figure = format!("sweep of {} pending holds, {} due: time (ms) / RCU", s.holds, s.due);
        rows.push((figure, format!("{} / {:.1}", s.millis, s.read), "sweep growth"));
    }
    if let Some(c) = &f.cold {
        let value = format!("{:.1} / {:.1}", c.init_ms, c.first_answer_ms);
        rows.push(("reserve's cold start: init / first answer, median (ms)".into(), value, "cold start"));
    }
    if let Some(p50) = f.delay_p50 {
        let figure = "a grant's webhook in the dev server, from the grant's answer, p50 (ms)".to_owned();
        rows.push((figure, format!("{p50:.0}"), "events"));
    }
    if let Some(c) = &f.cold {
        rows.push(("reserve's binary (MiB)".into(), format!("{:.1}", c.size_mib), "cold start"));
        let figure = "reserve's peak memory after its warm invokes (MiB)".to_owned();
        rows.push((figure, format!("{:.1}", c.memory_mib), "cold start"));
    }
    rows
}

/// The title, who made the file, the headline table and what to know
/// before the sections.
pub fn write(out: &mut String, made: &str, figures: &Figures) {
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Made by `make bench` on {made}\n\
         (`cargo run --profile perf -p credits-bench`; DynamoDB Local 3.3.0, in memory, on the same machine).\n"
    );
    let _ = writeln!(out, "## Headline figures\n");
    let _ = writeln!(out, "| figure | this run | section |\n|---|---:|---|");
    for (figure, value, section) in rows(figures) {
        let _ = writeln!(out, "| {figure} | {value} | {section} |");
    }
    let _ = writeln!(
        out,
        "\nLatencies include no network and are a floor; costs are what DynamoDB would charge for the same requests.\n\
         Each section runs against a DynamoDB Local of its own, warmed up first ({WARM_UP_LIFECYCLES} reserve → capture → confirm\n\
         lifecycles, untimed, on a table without a stream): DynamoDB Local slows every write as the stream records of\n\
         the measured tables pile up (their stream is on, as on AWS), and with one instance for all sections the\n\
         4-image jobs took 484 ms at p50 instead of 110.\n"
    );
}
