//! `make bench`'s events section: the request units each outgoing event
//! costs (recorded, published to EventBridge, first webhook attempt), what
//! a redelivered stream batch and a retry cost, and the delay from a change
//! to its webhook in the dev server.
//!
//! The units: the events function's own call (`Outbox::apply`) on the
//! records DynamoDB Local's stream gives for one grant or one confirm,
//! with EventBridge served by moto (`.venv/bin/moto_server`, `make deps`)
//! and webhook endpoints on a receiver in this process that answers 204.
//! The meter prices every request as the cost section does; its log of the
//! requests splits them by what they write. The delay: the real
//! dev server (`credits serve`, built as `make run` builds it) and a
//! receiver registered through its API.

mod delay;
mod units;

use std::fmt::Write as _;
use std::time::Instant;

use credits_shared::events::bus::Bus;
use credits_shared::events::schedule::SCHEDULE_SECONDS;

use crate::harness::local::fresh_local;
use crate::harness::moto::Moto;
use crate::harness::stats::{dollars, percentile};
use delay::{delays, WARM_UP_GRANTS};
use units::{per_event, retries, Other, Row};

/// Endpoint counts the units are measured at.
const ENDPOINT_COUNTS: [usize; 3] = [0, 1, 3];
const BUS: &str = "credits-bench";

/// The section; the delay's p50 (ms), for the headline table.
pub async fn events(out: &mut String, grants: usize) -> Result<f64, String> {
    let started = Instant::now();
    let (local, sdk) = fresh_local().await?;
    let moto = Moto::start().await?;
    let bus = match &moto {
        Some(moto) => moto.bus(BUS).await?,
        None => {
            eprintln!("bench: events: no .venv/bin/moto_server (`make deps`): measuring without a bus");
            Bus::Log
        }
    };
    let measured = async {
        let (rows, sizes, redelivered) = per_event(&sdk, &bus).await?;
        let others = retries(&sdk, &bus).await?;
        Ok::<_, String>((rows, sizes, redelivered, others))
    }
    .await;
    drop(moto);
    local.stop();
    let (rows, sizes, (redelivered, redelivery), (mut others, (put, retried))) = measured?;
    eprintln!("bench: events: units done at {:.0} s", started.elapsed().as_secs_f64());
    let mut d = delays(grants).await?;
    eprintln!("bench: events: delays done at {:.0} s", started.elapsed().as_secs_f64());

    others.insert(
        0,
        Other {
            case: format!(
                "the stream batch of a grant redelivered (1 event, {} endpoints): every put refused",
                ENDPOINT_COUNTS[2]
            ),
            cost: redelivery,
        },
    );
    let published = bus.is_configured();
    let _ = writeln!(out, "## Outgoing events: units per event, and the delay to a webhook in the dev server\n");
    let _ = writeln!(
        out,
        "What the events function (`Outbox::apply`) writes for the stream records of one change: one grant (`grant.created`)\n\
         or one confirm (`hold.confirmed`), with 0, 1 and 3 webhook endpoints subscribed, each answering 204 on a receiver\n\
         in the bench, and EventBridge {}. Units are the meter's, as in the cost section; a log of the requests\n\
         splits them by what they write. Stream reads are not in them (DynamoDB Streams reads by a Lambda trigger are free).\n",
        if published { "served by moto" } else { "not configured (no `.venv/bin/moto_server`: events logged instead)" }
    );
    let _ = writeln!(
        out,
        "| event | endpoints | requests | RCU | event item put | delivery puts | publish mark | attempt records | WCU per event | $ per million events |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &rows {
        let c = &r.cost;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            r.event,
            r.endpoints,
            r.used.requests,
            r.used.read,
            c.units("event put"),
            c.units("delivery put"),
            c.units("publish mark"),
            c.units("attempt record"),
            r.used.write,
            dollars(r.used.read, r.used.write)
        );
    }
    let _ = writeln!(out);
    let find = |event: &str, endpoints: usize| rows.iter().find(|r| r.event == event && r.endpoints == endpoints);
    let (Some(g0), Some(g1), Some(h1)) =
        (find("grant.created", 0), find("grant.created", 1), find("hold.confirmed", 1))
    else {
        return Err("a row is missing".into());
    };
    let per_endpoint = |event: &str| {
        let (a, b) = (find(event, 1).map_or(0.0, |r| r.used.write), find(event, 3).map_or(0.0, |r| r.used.write));
        (b - a) / 2.0
    };
    let reads = |r: &Row, category: &str| r.cost.units(category);
    let _ = writeln!(
        out,
        "Each event is one conditional PutItem of the event item (put only if absent, under a key derived from the\n\
         change) and one of a delivery item per subscribed endpoint; with a bus, each item also enters the due-work\n\
         index (`pending-by-expiry`, 1 WCU), so that the scheduled job finds whatever a crash leaves unsent. After\n\
         PutEvents accepts the event, an UpdateItem marks its item `published` and takes it out of that index: the\n\
         publish mark, {:.1} WCU for a grant, {:.1} for a confirm. Each delivery's first attempt is recorded by an\n\
         UpdateItem that appends the attempt to the delivery's log and, on a 2xx, takes it out of the index. The reads:\n\
         the endpoints' list, once per stream batch whatever the batch holds (a strongly consistent Query: {:.1} RCU\n\
         with none registered, {:.1} with 3), and after each attempt the endpoint, read afresh for its health (a\n\
         strongly consistent GetItem, {:.1} RCU). A grant's event costs {:.1} WCU with no endpoint and {:.1} more per\n\
         endpoint; a confirm's {:.1} and {:.1}. EventBridge bills PutEvents apart, per event (per 64 KB chunk of one),\n\
         not in these units.{}\n",
        g0.cost.units("publish mark"),
        h1.cost.units("publish mark"),
        reads(g0, "endpoints read"),
        find("grant.created", 3).map_or(0.0, |r| reads(r, "endpoints read")),
        reads(g1, "endpoint read"),
        g0.used.write,
        per_endpoint("grant.created"),
        find("hold.confirmed", 0).map_or(0.0, |r| r.used.write),
        per_endpoint("hold.confirmed"),
        if published {
            ""
        } else {
            " Without a bus there is no index entry and no publish mark: with one, the publish mark is 1 WCU an event\n\
             (an UpdateItem of an item under 1 KB) and the index entry 1 WCU more, in and out."
        }
    );
    let _ = writeln!(out, "| event | payload (bytes) | event item (bytes) | delivery item when put | after its first attempt |\n|---|---:|---:|---:|---:|");
    for s in &sizes {
        let _ =
            writeln!(out, "| {} | {} | {} | {} | {} |", s.event, s.payload, s.event_item, s.delivery, s.delivery_after);
    }
    let over: Vec<&str> = sizes.iter().filter(|s| s.event_item > 1024 || s.delivery > 1024).map(|s| s.event).collect();
    let _ = writeln!(
        out,
        "\nThe event item and every delivery item carry the payload (the event as JSON, a webhook's body), so an event's\n\
         bytes are written 1 + endpoints times. A delivery keeps a log entry per attempt and drops its index attributes\n\
         once delivered: a grant's delivery delivered at its third attempt was {retried} bytes ({put} when put). DynamoDB\n\
         bills a write per started KB of the item (an update: of its larger image). A `hold.*` or `refund.created`\n\
         payload is the reservation ({} bytes for this confirm), which takes {} past 1 KB: each\n\
         of their writes costs 1 WCU more than a grant's ({:.1} WCU against {:.1} at one endpoint). Sizes by DynamoDB's\n\
         rules, from the requests and read back; DynamoDB Local prices these non-transactional writes per KB itself.\n",
        sizes.iter().find(|s| s.event == "hold.confirmed").map_or(0, |s| s.payload),
        if over.is_empty() { "none of the items".to_owned() } else { format!("{}'s items", over.join(" and ")) },
        h1.used.write,
        g1.used.write,
    );

    let _ = writeln!(
        out,
        "| case | requests | RCU | WCU DynamoDB Local reports | WCU as DynamoDB charges | what |\n|---|---:|---:|---:|---:|---|"
    );
    for o in &others {
        let c = &o.cost;
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.1} | {:.1} | {} |",
            o.case,
            c.requests,
            c.read,
            c.write,
            c.charged,
            c.breakdown()
        );
    }
    let _ = writeln!(
        out,
        "\nA redelivered batch (Lambda retries a batch whose call failed, or the stream hands a record twice) records\n\
         nothing twice: each put is refused by its condition, nothing is published or attempted ({} events recorded,\n\
         {} duplicate). DynamoDB charges a refused conditional write by the item's size: 1 WCU per started KB, at least\n\
         1 (no index entry is written). DynamoDB Local reports no units with a refused condition, so the last column\n\
         prices each refused put by the size of the item it carried; its endpoints' read is charged as before.\n\
         A failed attempt is recorded as a success is, and also moves the delivery's entry in the due-work index to\n\
         its next attempt; the first failure of an endpoint that was not failing writes `failingSince` on it (the\n\
         endpoint's health: 5 days of failures disable it), later failures write nothing there, and the next success\n\
         clears it. A retry is the job's: a claim (an UpdateItem that takes the delivery's lease, moving its index\n\
         entry, and returns the item) and the attempt's record. While an endpoint is failing, the events function\n\
         makes no first attempt to it: its new deliveries are put as above and left to the job, each then a claim and\n\
         a record like a retry. The job lists due work every run (every minute by default), events or not: 16 shard\n\
         queries of the index, then the endpoints.\n",
        redelivered.value.recorded, redelivered.value.duplicates
    );

    let n = d.delivery.len();
    let (p50, p95) = (percentile(&mut d.delivery, 0.5), percentile(&mut d.delivery, 0.95));
    let max = d.delivery.iter().copied().fold(0.0, f64::max);
    let min = d.delivery.iter().copied().fold(f64::INFINITY, f64::min);
    let answer50 = percentile(&mut d.answer, 0.5);
    let _ = writeln!(out, "### From a change to its webhook in the dev server ({n} grants, ms)\n");
    let _ = writeln!(
        out,
        "| from the grant's HTTP answer to the receiver getting `grant.created` | p50 | p95 | max | min |\n|---|---:|---:|---:|---:|"
    );
    let _ = writeln!(
        out,
        "| `credits serve` (`make run`), no bus configured | {p50:.0} | {p95:.0} | {max:.0} | {min:.0} |"
    );
    let _ = writeln!(
        out,
        "\n`credits serve` as `make run` builds and starts it (its own DynamoDB Local, data in a folder of its own), a\n\
         receiver in the bench registered through `POST /v1/admin/webhook-endpoints` for `grant.created`, then {WARM_UP_GRANTS} untimed\n\
         grants and {n} timed ones through `POST /v1/admin/users/{{userId}}/grants` (p50 {answer50:.0} ms to answer), one at a time,\n\
         each after a random pause of up to 1 s so that it lands anywhere in the reader's cycle. The delay is dominated\n\
         by that cycle: the dev server reads DynamoDB Local's stream once a second, so a change waits 0 to 1 s for the\n\
         next read (about 0.5 s on average), then the read itself, `Outbox::apply` (the endpoints' list, the puts) and\n\
         the POST. With `CREDITS_EVENT_BUS` set, PutEvents and the publish mark come before the first attempt too. On\n\
         AWS, the events function is invoked by the table's stream through its event source mapping; this figure is the\n\
         dev server's, not that.\n\n\
         A retry's delay is not measured: a failed attempt is due {} s later (then 5 min, 30 min, 2 h, 5 h, 10 h, 10 h),\n\
         and only the scheduled job retries, when it next runs after that: every `CREDITS_CLEANUP_INTERVAL_SECONDS`\n\
         (default 60) in the dev server, every `CleanupSchedule` (default 1 minute) on AWS. The first retry so comes 5 s\n\
         to about one interval + 5 s after the failure, each later one up to one interval after its time. The dev server\n\
         was built in {:.0} s for this run (cargo's `make run` build: `cargo build --workspace --bin credits`).\n",
        SCHEDULE_SECONDS[0],
        d.built.as_secs_f64()
    );
    Ok(p50)
}
