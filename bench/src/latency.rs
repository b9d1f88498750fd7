//! `make bench`'s latency section: p50/p99 of each operation through the
//! real handler, next to the bare DynamoDB requests it makes.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use credits_shared::domain::principal::TrustedClients;
use credits_shared::http::{handle, Function};
use credits_shared::inbound::Verifiers;
use credits_shared::store::{key, n, s};
use credits_shared::App;

use crate::harness::http::{answer, capture_units, event, reserve_units, BENCH_SERVER};
use crate::harness::ledger::{env, grant, user};
use crate::harness::stats::percentile;

/// p50/p99 of each operation through the real handler, next to the bare
/// DynamoDB requests it makes; the reserve's and the confirm's p50, for
/// the lots section.
pub async fn latency(sdk: &aws_config::SdkConfig, out: &mut String, rounds: usize) -> Result<(f64, f64), String> {
    let e = env(sdk).await?;
    let trusted = TrustedClients::new(BENCH_SERVER, "");
    let app = App { ledger: e.ledger.clone(), verifiers: Arc::new(Verifiers::new("", "")), trusted };
    let u = user("latency");
    grant(&e.ledger, &u, 1_000_000_000).await?;
    let (mut reserve, mut confirm, mut balance) = (Vec::new(), Vec::new(), Vec::new());
    let (mut capture, mut extend) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let body = r#"{"operation":"design_generate_image"}"#;
        let t = Instant::now();
        let response = handle(&app, Function::Reserve, event("POST", "/v1/reservations", &u, body)?).await;
        reserve.push(t.elapsed().as_secs_f64() * 1000.0);
        let hold: serde_json::Value = serde_json::from_slice(response.body().as_ref()).map_err(|e| e.to_string())?;
        let id = hold["reservationId"].as_str().ok_or("reserve failed")?.to_owned();
        let t = Instant::now();
        handle(&app, Function::Confirm, event("POST", &format!("/v1/reservations/{id}/confirm"), &u, "")?).await;
        confirm.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        handle(&app, Function::Account, event("GET", "/v1/balance", &u, "")?).await;
        balance.push(t.elapsed().as_secs_f64() * 1000.0);
        // A non-final capture and an extend, on a hold of 4 units placed
        // and released around them.
        let id = reserve_units(&app, &u, 4).await?;
        let t = Instant::now();
        capture_units(&app, &u, &id, 1, "image-1").await?;
        capture.push(t.elapsed().as_secs_f64() * 1000.0);
        let path = format!("/v1/reservations/{id}/extend");
        let t = Instant::now();
        let response = handle(&app, Function::Account, event("POST", &path, &u, r#"{"ttlSeconds":900}"#)?).await;
        extend.push(t.elapsed().as_secs_f64() * 1000.0);
        answer(&response, 200)?;
        let path = format!("/v1/reservations/{id}/release");
        answer(&handle(&app, Function::Release, event("POST", &path, &u, "")?).await, 200)?;
    }
    // The bare requests: a 3-item transaction shaped like reserve's, and a GetItem.
    let client = e.store.client();
    let bare_user = format!("USER#{}", user("bare"));
    let mut seed = key(bare_user.clone(), "BALANCE");
    seed.insert("available".into(), n(1_000_000_000u64));
    e.store.put(seed).await.map_err(|e| e.to_string())?;
    // An item in the pending index, for an UpdateItem that moves its entry
    // as extend's does.
    let mut indexed = key(bare_user.clone(), "INDEXED");
    indexed.insert("pendingShard".into(), s("P#00"));
    indexed.insert("expiresAt".into(), n(1u64));
    indexed.insert("v".into(), s("x".repeat(300)));
    e.store.put(indexed).await.map_err(|e| e.to_string())?;
    let (mut transact, mut get, mut moved) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let put = |sk: String| -> Result<aws_sdk_dynamodb::types::TransactWriteItem, String> {
            let mut item = key(bare_user.clone(), &sk);
            item.insert("v".into(), s("x".repeat(300)));
            let put = aws_sdk_dynamodb::types::Put::builder()
                .table_name(e.store.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| e.to_string())?;
            Ok(aws_sdk_dynamodb::types::TransactWriteItem::builder().put(put).build())
        };
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(e.store.table())
            .set_key(Some(key(bare_user.clone(), "BALANCE")))
            .update_expression("SET available = available - :a")
            .condition_expression("available >= :a")
            .expression_attribute_values(":a", n(5))
            .build()
            .map_err(|e| e.to_string())?;
        let items = vec![
            aws_sdk_dynamodb::types::TransactWriteItem::builder().update(update).build(),
            put(format!("A#{}", uuid::Uuid::new_v4()))?,
            put(format!("B#{}", uuid::Uuid::new_v4()))?,
        ];
        let t = Instant::now();
        client.transact_write_items().set_transact_items(Some(items)).send().await.map_err(|e| format!("{e:?}"))?;
        transact.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        client
            .get_item()
            .table_name(e.store.table())
            .set_key(Some(key(bare_user.clone(), "BALANCE")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        get.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        client
            .update_item()
            .table_name(e.store.table())
            .set_key(Some(key(bare_user.clone(), "INDEXED")))
            .update_expression("SET expiresAt = expiresAt + :one")
            .condition_expression("expiresAt > :zero")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(|e| format!("{e:?}"))?;
        moved.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (t50, t99, g50, g99) = (
        percentile(&mut transact, 0.5),
        percentile(&mut transact, 0.99),
        percentile(&mut get, 0.5),
        percentile(&mut get, 0.99),
    );
    let (m50, m99) = (percentile(&mut moved, 0.5), percentile(&mut moved, 0.99));
    let _ = writeln!(out, "## Latency through the handler vs the bare DynamoDB requests ({rounds} rounds, ms)\n");
    let _ = writeln!(out, "| operation | p50 | p99 | bare requests it makes | bare p50 | bare p99 | p50 ratio |\n|---|---:|---:|---|---:|---:|---:|");
    for (name, samples, bare, b50, b99) in [
        ("POST /v1/reservations", &mut reserve, "1 transaction (3 items)", t50, t99),
        ("POST …/confirm", &mut confirm, "GetItem + transaction (3 items)", g50 + t50, g99 + t99),
        ("POST …/confirm `final: false`", &mut capture, "GetItem + transaction (3 items)", g50 + t50, g99 + t99),
        ("POST …/extend", &mut extend, "GetItem + UpdateItem (moving an index entry)", g50 + m50, g99 + m99),
        ("GET /v1/balance", &mut balance, "GetItem", g50, g99),
    ] {
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        let _ = writeln!(
            out,
            "| {name} | {p50:.2} | {p99:.2} | {bare} | {b50:.2} | {b99:.2} | {:.2} |",
            p50 / b50.max(0.001)
        );
    }
    let _ = writeln!(
        out,
        "\nEach round: a reserve, its confirm and a balance read; then a hold of 4 units placed, captured once (1 unit,\n\
         `final: false`, an `Idempotency-Key`), extended (`ttlSeconds` 900) and released, the capture and the extend timed.\n\
         All through the handler as the app's back end calls it (a server token naming the user in `Credits-User`).\n"
    );
    Ok((percentile(&mut reserve, 0.5), percentile(&mut confirm, 0.5)))
}
