//! `make bench`'s throughput section: reserve → confirm lifecycles a
//! second, over distinct users and one hot user.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use credits_shared::domain::{Actor, Credits, UserId};
use futures::future::join_all;

use crate::harness::ledger::{env, grant, request, user};

/// Lifecycles a second with `clients` clients, over distinct users or one
/// hot user.
pub struct Rate {
    pub clients: usize,
    pub hot: bool,
    pub per_second: f64,
}

/// Reserve → confirm lifecycles a second, over distinct users and one hot user.
pub async fn throughput(sdk: &aws_config::SdkConfig, out: &mut String, seconds: u64) -> Result<Vec<Rate>, String> {
    let mut rates = Vec::new();
    let _ = writeln!(out, "## Throughput: reserve → confirm lifecycles ({seconds} s a run)\n");
    let _ = writeln!(out, "| clients | users | lifecycles/s | errors | transaction conflicts (retried) | books |\n|---:|---|---:|---:|---:|---|");
    for clients in [1usize, 8, 32] {
        for hot in [false, true] {
            let e = env(sdk).await?;
            let users: Vec<UserId> = (0..if hot { 1 } else { clients }).map(|i| user(&format!("tp{i}"))).collect();
            for u in &users {
                grant(&e.ledger, u, 1_000_000_000).await?;
            }
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let started = Instant::now();
            let results = join_all((0..clients).map(|i| {
                let (ledger, u) = (&e.ledger, &users[i % users.len()]);
                async move {
                    let (mut ok, mut errors) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        let done = match ledger.reserve(u, request("design_generate_image", 1)).await {
                            Ok(hold) => ledger
                                .confirm(Some(u), hold.into_inner().reservation_id, None, Actor::Server)
                                .await
                                .is_ok(),
                            Err(_) => false,
                        };
                        if done {
                            ok += 1;
                        } else {
                            errors += 1;
                        }
                    }
                    (ok, errors)
                }
            }))
            .await;
            let elapsed = started.elapsed().as_secs_f64();
            let (ok, errors) = results.iter().fold((0, 0), |(a, b), (o, e)| (a + o, b + e));
            let mut books = "add up";
            for u in &users {
                let b = e.ledger.balance(u).await.map_err(|e| e.to_string())?;
                if !b.adds_up() || b.reserved != Credits(0) && errors == 0 {
                    books = "DO NOT ADD UP";
                }
            }
            let per_second = ok as f64 / elapsed;
            let _ = writeln!(
                out,
                "| {clients} | {} | {per_second:.0} | {errors} | {} | {books} |",
                if hot { "1 hot user".to_owned() } else { format!("{clients} distinct") },
                e.meter.conflicts()
            );
            rates.push(Rate { clients, hot, per_second });
        }
    }
    let _ = writeln!(out);
    Ok(rates)
}
