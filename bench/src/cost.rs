//! `make bench`'s cost section: read and write units per operation and per
//! lifecycle, the ledger called directly, and a hold item's size as it
//! grows with its captures.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use credits_shared::domain::{Actor, Attribution, Provider};
use credits_shared::inbound::Outcome;
use credits_shared::ledger::outcome::Delivery;
use credits_shared::Error;

use crate::harness::ledger::{env, grant, request, user};
use crate::harness::meter::{minus, Units};
use crate::harness::sizes::{hold_size, per_kb};
use crate::harness::stats::{dollars, READ_PRICE, WRITE_PRICE};

/// Captures on one hold before the bench measures the next (item growth).
const MANY_CAPTURES: usize = 20;

macro_rules! metered {
    ($env:expr, $body:expr) => {{
        let before = $env.meter.snapshot();
        let value = $body;
        (value, minus($env.meter.snapshot(), before))
    }};
}

/// What the headline table and the lots section take from this section.
pub struct Figures {
    pub reserve: Units,
    pub confirm: Units,
    pub release: Units,
    /// The success lifecycle (reserve → confirm): RCU, WCU, $ per million.
    pub success: (f64, f64, f64),
}

/// Read and write units per operation and per lifecycle; the success
/// lifecycle's reserve and confirm, for the lots section and the headline.
pub async fn cost(sdk: &aws_config::SdkConfig, out: &mut String) -> Result<Figures, String> {
    let e = env(sdk).await?;
    let l = &e.ledger;
    let u = user("cost");
    let e_ = |err: Error| err.to_string();
    let mut rows: Vec<(&str, Units)> = Vec::new();

    let (_, c) = metered!(e, grant(l, &u, 1_000_000).await?);
    rows.push(("grant", c));
    let (hold, c) = metered!(e, l.reserve(&u, request("design_generate_image", 2)).await.map_err(e_)?.into_inner());
    rows.push(("reserve", c));
    let (_, c) = metered!(e, l.confirm(Some(&u), hold.reservation_id, None, Actor::Server).await.map_err(e_)?);
    rows.push(("confirm (all units)", c));
    let success = rows[1].1.write + rows[2].1.write;
    let success_reads = rows[1].1.read + rows[2].1.read;
    let (_, c) = metered!(e, l.confirm(Some(&u), hold.reservation_id, None, Actor::Server).await.map_err(e_)?);
    rows.push(("confirm replay", c));

    let (hold, reserve) =
        metered!(e, l.reserve(&u, request("design_generate_image", 4)).await.map_err(e_)?.into_inner());
    let (_, c) = metered!(e, l.confirm(Some(&u), hold.reservation_id, Some(3), Actor::Server).await.map_err(e_)?);
    rows.push(("confirm (partial)", c));
    let partial = (reserve.write + c.write, reserve.read + c.read);

    // Captures and extends, for a user of their own (the history page
    // below reads the first user's lines). A 4-image job captured per image
    // (`final: false`, a key each), then closed by a final confirm that
    // captures nothing more.
    let w = user("capture");
    grant(l, &w, 1_000_000).await?;
    let hold = l.reserve(&w, request("design_generate_image", 4)).await.map_err(e_)?.into_inner();
    let id = hold.reservation_id;
    let (_, c) = metered!(e, l.capture(Some(&w), id, 1, "image-1", Actor::Server).await.map_err(e_)?);
    rows.push(("capture (non-final, 1 of 4 units)", c));
    let (_, c) = metered!(e, l.capture(Some(&w), id, 1, "image-1", Actor::Server).await.map_err(e_)?);
    rows.push(("capture replay (same key)", c));
    for image in 2..=4 {
        l.capture(Some(&w), id, 1, &format!("image-{image}"), Actor::Server).await.map_err(e_)?;
    }
    let (_, c) = metered!(e, l.confirm(Some(&w), id, None, Actor::Server).await.map_err(e_)?);
    rows.push(("confirm after captures (0 more)", c));
    let job_size = hold_size(&e.store, id).await?;

    let hold = l.reserve(&w, request("design_generate_image", 1)).await.map_err(e_)?.into_inner();
    let (_, c) = metered!(e, l.extend(Some(&w), hold.reservation_id, 3600, Actor::Server).await.map_err(e_)?);
    rows.push(("extend", c));
    l.release(Some(&w), hold.reservation_id, Actor::Server).await.map_err(e_)?;

    // A hold item keeps an event and a key for every capture: it outgrows
    // 1 KB, and every write of it is billed per KB.
    let hold = l.reserve(&w, request("design_generate_image", 30)).await.map_err(e_)?.into_inner();
    let id = hold.reservation_id;
    let mut sizes = vec![hold_size(&e.store, id).await?];
    for capture in 1..=MANY_CAPTURES {
        l.capture(Some(&w), id, 1, &format!("capture-{capture}"), Actor::Server).await.map_err(e_)?;
        if capture == 1 {
            sizes.push(hold_size(&e.store, id).await?);
        }
    }
    sizes.push(hold_size(&e.store, id).await?);
    let (_, c) = metered!(e, l.capture(Some(&w), id, 1, "one-more", Actor::Server).await.map_err(e_)?);
    let after = hold_size(&e.store, id).await?;
    rows.push(("capture, the 21st on one hold ¹", per_kb(c, &[sizes[2].max(after)])));
    let (_, c) = metered!(e, l.extend(Some(&w), id, 3600, Actor::Server).await.map_err(e_)?);
    rows.push(("extend, after 21 captures", c));
    let before = hold_size(&e.store, id).await?;
    let (_, c) = metered!(e, l.confirm(Some(&w), id, None, Actor::Server).await.map_err(e_)?);
    let after = hold_size(&e.store, id).await?;
    rows.push(("confirm, after 21 captures (the rest) ¹", per_kb(c, &[before.max(after)])));
    sizes.push(after);

    let (hold, reserve) =
        metered!(e, l.reserve(&u, request("design_generate_logo", 1)).await.map_err(e_)?.into_inner());
    let (_, c) = metered!(e, l.release(Some(&u), hold.reservation_id, Actor::Server).await.map_err(e_)?);
    rows.push(("release", c));
    let failure = (reserve.write + c.write, reserve.read + c.read);

    let mut short = request("design_generate_icon", 1);
    short.ttl_seconds = 1;
    let (hold, reserve) = metered!(e, l.reserve(&u, short).await.map_err(e_)?.into_inner());
    e.clock.advance_seconds(2);
    let (_, c) = metered!(e, l.expire(hold.reservation_id, Actor::Cleanup).await.map_err(e_)?);
    rows.push(("expire (one hold, by the sweep)", c));
    let expiry = (reserve.write + c.write, reserve.read + c.read);
    let (_, c) = metered!(e, l.sweep(Instant::now() + Duration::from_secs(30), 8).await.map_err(e_)?);
    rows.push(("sweep listing, nothing due (16 shard queries)", c));

    let mut with_task = request("design_generate_image", 1);
    with_task.task_id = Some("bench-task".into());
    let (hold, reserve) = metered!(e, l.reserve(&u, with_task).await.map_err(e_)?.into_inner());
    rows.push(("reserve with taskId", reserve));
    let delivery = Delivery {
        provider: Provider::Bfl,
        task_id: "bench-task".into(),
        outcome: Outcome::Success { units: None },
        delivery_id: None,
    };
    let (_, c) = metered!(e, l.apply_outcome(&delivery).await.map_err(e_)?);
    rows.push(("webhook confirms a linked hold", c));
    let webhook = (reserve.write + c.write, reserve.read + c.read);
    let (_, c) = metered!(e, l.apply_outcome(&delivery).await.map_err(e_)?);
    rows.push(("webhook redelivery", c));
    let (_, c) = metered!(
        e,
        l.refund(hold.reservation_id, &Attribution { actor: "ops".into(), reason: None }).await.map_err(e_)?
    );
    rows.push(("refund (admin)", c));

    let other = l.reserve(&u, request("design_generate_image", 1)).await.map_err(e_)?.into_inner();
    let (_, c) = metered!(
        e,
        l.link_task(Some(&u), other.reservation_id, Provider::Bfl, "bench-task-2", Actor::Server).await.map_err(e_)?
    );
    rows.push(("link task", c));
    let (_, c) = metered!(e, l.balance(&u).await.map_err(e_)?);
    rows.push(("balance", c));
    let (_, c) = metered!(e, l.history(&u, 50, None).await.map_err(e_)?);
    rows.push(("history page (up to 50 lines)", c));

    let _ = writeln!(out, "## Cost: request units per operation\n");
    let _ = writeln!(out, "From `ReturnConsumedCapacity` (`INDEXES`) on every request, corrected for DynamoDB Local's");
    let _ = writeln!(out, "pricing of transactions (a transactional item is 2 WCU, an index write 1).\n");
    let _ = writeln!(out, "| operation | requests | RCU | WCU |\n|---|---:|---:|---:|");
    for (name, c) in &rows {
        let _ = writeln!(out, "| {name} | {} | {:.1} | {:.1} |", c.requests, c.read, c.write);
    }
    let _ =
        writeln!(out, "\n| lifecycle | RCU | WCU | floor WCU | $ per million lifecycles |\n|---|---:|---:|---:|---:|");
    for (name, (write, read), floor) in [
        ("success (reserve → confirm)", (success, success_reads), 8.0),
        ("failure (reserve → release)", failure, 8.0),
        ("expiry (reserve → sweep)", expiry, 8.0),
        ("webhook-settled (reserve with taskId → webhook)", webhook, 8.0),
        ("partial capture (reserve 4 → confirm 3)", partial, 8.0),
    ] {
        let dollars = write * WRITE_PRICE + read * READ_PRICE;
        let _ = writeln!(out, "| {name} | {read:.1} | {write:.1} | {floor:.0} | {dollars:.2} |");
    }
    let _ = writeln!(
        out,
        "\nFloor: the hold and the balance written together twice (place, settle) as transactions: 2 items × 2 WCU × 2.\n\
         Above it: the history lines (2 WCU each) and the pending index entry in and out (1 WCU each); see docs/DATA_MODEL.md.\n\
         Prices assumed: on-demand ${WRITE_PRICE} per million write and ${READ_PRICE} per million read request units.\n"
    );
    let _ = writeln!(
        out,
        "A non-final capture (`final: false`) is one transaction like a confirm's (the hold, the balance, a `capture`\n\
         history line) that leaves the hold in the pending index; its replay (same key, same units) is the hold's read\n\
         alone. The final confirm after captures closes the hold capturing 0 more: its `confirm` line says 0 credits, and\n\
         there is no `release` line when nothing is left. Extend is one conditional UpdateItem of the hold that moves its\n\
         entry in the pending index (sorted by `expiresAt`): 1 WCU for the hold, a delete and a put there, 1 WCU each.\n\n\
         A hold item grows with its captures: each adds an event and its key (a 12-byte digest, 24 hex characters) to the\n\
         item. It was {} bytes when placed, {} after its first capture, {} after {MANY_CAPTURES} and {} once closed after 21 (sizes\n\
         by DynamoDB's rules, read back from the table); a 4-image job's hold captured per image is {job_size} bytes once closed.\n\
         DynamoDB bills every write of the hold per started KB of the larger of its old and new image (2 WCU a KB in a\n\
         transaction), so a hold with very many captures costs more on every later capture, extend and close.\n\
         ¹ DynamoDB Local's figures for transactions do not follow item size, so the meter prices each transactional item at\n\
         2 WCU (1 KB); on these rows the hold's size, read back before and after the write, adds 2 WCU per KB beyond its first.\n\
         Extend's UpdateItem is priced by DynamoDB Local itself, per KB.\n",
        sizes[0], sizes[1], sizes[2], sizes[3]
    );
    let release = rows.iter().find(|(name, _)| *name == "release").map(|(_, c)| *c).unwrap_or_default();
    let success = (success_reads, success, dollars(success_reads, success));
    Ok(Figures { reserve: rows[1].1, confirm: rows[2].1, release, success })
}
