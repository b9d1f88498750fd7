//! `make bench`'s sweep growth section: the sweep's time and reads as the
//! pending holds grow, 1% of them due.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use credits_shared::domain::UserId;
use credits_shared::store::{key, n, s};
use futures::future::join_all;

use crate::harness::ledger::{env, user};
use crate::harness::local::set_stream;
use crate::harness::meter::minus;

/// One sweep of `holds` pending holds, `due` of them due: its time and reads.
pub struct Sweep {
    pub holds: usize,
    pub due: usize,
    pub millis: u128,
    pub read: f64,
}

/// The sweep's time and reads with a growing table where 1% is due.
pub async fn growth(sdk: &aws_config::SdkConfig, out: &mut String, sizes: &[usize]) -> Result<Vec<Sweep>, String> {
    let mut sweeps = Vec::new();
    let _ = writeln!(out, "## Sweep growth: 1% of the pending holds due\n");
    let _ = writeln!(out, "| pending holds | due | expired | index entries read | read requests | RCU | sweep time (ms) |\n|---:|---:|---:|---:|---:|---:|---:|");
    for &size in sizes {
        let e = env(sdk).await?;
        let now = e.ledger.now().millis();
        let due = size / 100;
        let users: Vec<UserId> = (0..100).map(|i| user(&format!("g{i}"))).collect();
        let mut per_user: HashMap<String, u64> = HashMap::new();
        let mut requests = Vec::with_capacity(size);
        for i in 0..size {
            let id = uuid::Uuid::new_v4();
            let owner = &users[i % users.len()];
            let expires = if i < due { now - 1000 } else { now + 3_600_000 };
            *per_user.entry(owner.to_string()).or_default() += 5;
            let mut item: HashMap<String, AttributeValue> = key(format!("HOLD#{id}"), "HOLD");
            for (k, v) in [
                ("entity", s("hold")),
                ("reservationId", s(id.to_string())),
                ("userId", s(owner.as_str())),
                ("operation", s("design_generate_image")),
                ("units", n(1)),
                ("unitCost", n(5)),
                ("amount", n(5)),
                ("status", s("pending")),
                ("provider", s("bfl")),
                ("createdAt", n(now - 3_600_000)),
                ("expiresAt", n(expires)),
                ("capturedUnits", n(0)),
                ("capturedAmount", n(0)),
                ("releasedAmount", n(0)),
                ("events", AttributeValue::L(Vec::new())),
                ("pendingShard", s(credits_shared::store::pending_shard(id))),
            ] {
                item.insert(k.into(), v);
            }
            requests.push(
                WriteRequest::builder()
                    .put_request(PutRequest::builder().set_item(Some(item)).build().map_err(|e| e.to_string())?)
                    .build(),
            );
        }
        for (owner, reserved) in &per_user {
            let mut balance = key(format!("USER#{owner}"), "BALANCE");
            for (k, v) in [("available", 0), ("reserved", *reserved), ("spent", 0), ("granted", *reserved)] {
                balance.insert(k.into(), n(v));
            }
            balance.insert("userId".into(), s(owner.as_str()));
            balance.insert("entity".into(), s("balance"));
            e.store.put(balance).await.map_err(|e| e.to_string())?;
        }
        eprintln!("bench: loading {size} pending holds");
        let loading = Instant::now();
        // DynamoDB Local appends every write to the table's stream, and each
        // append gets slower as the stream grows: 100k holds took over ten
        // minutes to load with it, 45 s without. The stream is off for the
        // load and back on for the sweep, whose writes feed it as on AWS.
        set_stream(&e.store, false).await?;
        let chunks: Vec<Vec<WriteRequest>> = requests.chunks(25).map(<[WriteRequest]>::to_vec).collect();
        let table = e.store.table().to_owned();
        for (done, group) in chunks.chunks(8).enumerate() {
            let loaded = done * 8 * 25;
            if loaded > 0 && loaded % 10_000 == 0 {
                eprintln!("bench: {loaded} of {size} loaded ({:.0} s)", loading.elapsed().as_secs_f64());
            }
            let writes = group.iter().map(|chunk| {
                let (client, table) = (e.store.client().clone(), table.clone());
                let mut pending = chunk.clone();
                async move {
                    while !pending.is_empty() {
                        let out = client
                            .batch_write_item()
                            .request_items(table.clone(), pending)
                            .send()
                            .await
                            .map_err(|e| format!("{e:?}"))?;
                        pending = out.unprocessed_items.and_then(|mut m| m.remove(&table)).unwrap_or_default();
                    }
                    Ok::<(), String>(())
                }
            });
            for result in join_all(writes).await {
                result?;
            }
        }
        set_stream(&e.store, true).await?;
        eprintln!("bench: loaded {size} in {:.0} s; sweeping", loading.elapsed().as_secs_f64());
        let before = e.meter.snapshot();
        let started = Instant::now();
        let report = e.ledger.sweep(Instant::now() + Duration::from_secs(600), 8).await.map_err(|e| e.to_string())?;
        let elapsed = started.elapsed().as_millis();
        let used = minus(e.meter.snapshot(), before);
        let reads = report.scanned;
        let _ = writeln!(
            out,
            "| {size} | {due} | {} | {reads} | {} | {:.1} | {elapsed} |",
            report.expired, used.requests, used.read
        );
        sweeps.push(Sweep { holds: size, due, millis: elapsed, read: used.read });
    }
    let _ = writeln!(
        out,
        "\nThe sweep reads index entries only for due holds (16 shard queries + one GetItem and one transaction per due hold).\n\
         The holds are written straight into the table (a hold item with its index attributes, and the balances) with its\n\
         stream off, because DynamoDB Local's stream slows each write as it grows (100k holds took over ten minutes with\n\
         it, under a minute without); the stream is back on before the sweep, so the sweep's writes feed it as on AWS.\n\n\
         Throughput and sweep times are bounded by DynamoDB Local, which runs transactions on about one core; they say\n\
         nothing about DynamoDB's throughput, only that nothing breaks and the books add up under concurrency.\n"
    );
    Ok(sweeps)
}
