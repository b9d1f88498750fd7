//! `make bench`'s jobs section: a 4-image job captured per image against
//! one final confirm, through the handler.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use credits_shared::domain::principal::TrustedClients;
use credits_shared::domain::Credits;
use credits_shared::http::{handle, Function};
use credits_shared::inbound::Verifiers;
use credits_shared::App;
use serde_json::json;

use crate::harness::http::{answer, capture_units, event, reserve_units, BENCH_SERVER};
use crate::harness::ledger::{env, grant, user};
use crate::harness::meter::{minus, Units};
use crate::harness::stats::{percentile, READ_PRICE, WRITE_PRICE};

/// A 4-image job charged per image (4 non-final captures, then a final
/// confirm of 0 more) against one final confirm: units and end-to-end time.
pub async fn jobs(sdk: &aws_config::SdkConfig, out: &mut String, rounds: usize) -> Result<(), String> {
    let e = env(sdk).await?;
    let trusted = TrustedClients::new(BENCH_SERVER, "");
    let app = App { ledger: e.ledger.clone(), verifiers: Arc::new(Verifiers::new("", "")), trusted };
    let u = user("jobs");
    grant(&e.ledger, &u, 1_000_000_000).await?;
    let (mut per_image, mut at_once) = (Vec::new(), Vec::new());
    let (mut per_image_units, mut at_once_units) = (Units::default(), Units::default());
    let add = |total: &mut Units, used: Units| {
        total.read += used.read;
        total.write += used.write;
        total.requests += used.requests;
    };
    for _ in 0..rounds {
        let before = e.meter.snapshot();
        let t = Instant::now();
        let id = reserve_units(&app, &u, 4).await?;
        for image in 1..=4 {
            capture_units(&app, &u, &id, 1, &format!("{id}-image-{image}")).await?;
        }
        let path = format!("/v1/reservations/{id}/confirm");
        let hold = answer(&handle(&app, Function::Confirm, event("POST", &path, &u, "{}")?).await, 200)?;
        per_image.push(t.elapsed().as_secs_f64() * 1000.0);
        add(&mut per_image_units, minus(e.meter.snapshot(), before));
        if hold["capturedUnits"] != json!(4) || hold["status"] != json!("confirmed") {
            return Err(format!("the job captured per image did not close with 4 units captured: {hold}"));
        }

        let before = e.meter.snapshot();
        let t = Instant::now();
        let id = reserve_units(&app, &u, 4).await?;
        let path = format!("/v1/reservations/{id}/confirm");
        answer(&handle(&app, Function::Confirm, event("POST", &path, &u, r#"{"units":4}"#)?).await, 200)?;
        at_once.push(t.elapsed().as_secs_f64() * 1000.0);
        add(&mut at_once_units, minus(e.meter.snapshot(), before));
    }
    let balance = e.ledger.balance(&u).await.map_err(|e| e.to_string())?;
    let books = if balance.adds_up() && balance.reserved == Credits(0) { "add up" } else { "DO NOT ADD UP" };
    let _ = writeln!(out, "## A 4-image job: captured per image vs one final confirm ({rounds} jobs each)\n");
    let _ = writeln!(
        out,
        "| job | HTTP calls | DynamoDB requests | RCU | WCU | $ per million jobs | p50 (ms) | p99 (ms) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (name, calls, samples, used) in [
        ("captured per image (reserve 4 → 4 × capture 1 → confirm 0 more)", 6, &mut per_image, per_image_units),
        ("one final confirm (reserve 4 → confirm 4)", 2, &mut at_once, at_once_units),
    ] {
        let count = rounds.max(1) as f64;
        let (read, write) = (used.read / count, used.write / count);
        let dollars = write * WRITE_PRICE + read * READ_PRICE;
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        let _ = writeln!(
            out,
            "| {name} | {calls} | {:.1} | {read:.1} | {write:.1} | {dollars:.2} | {p50:.2} | {p99:.2} |",
            used.requests as f64 / count
        );
    }
    let _ = writeln!(
        out,
        "\nEach job through the handler as the app's back end calls it (a server token, `Credits-User`), one request after\n\
         the other; the units are the meter's over the whole job (the mean of the {rounds}), the time from sending the\n\
         reserve to the last answer. The captures carry one `Idempotency-Key` per image and `units: 1`; the closing\n\
         `POST …/confirm` with `{{}}` captures nothing more (there is nothing left) and writes a `confirm` history line\n\
         of 0 credits. Per image, the balance shows each image's spend as it lands and a job that dies midway keeps only\n\
         its unfinished images held; that costs four more reads and transactions (hold, balance and a `capture` line\n\
         each): {:.1} times the write units and {:.1} times the time of one final confirm. Books after all {} jobs: {books}.\n",
        per_image_units.write / at_once_units.write.max(0.001),
        percentile(&mut per_image, 0.5) / percentile(&mut at_once, 0.5).max(0.001),
        2 * rounds
    );
    Ok(())
}
