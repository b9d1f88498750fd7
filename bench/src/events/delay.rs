//! The events section's delay: from a grant's HTTP answer to its webhook in
//! the dev server, as `make run` builds and starts it.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::dev_server::{build_dev_server, DevServer};
use crate::harness::ledger::user;
use crate::harness::receiver::Receiver;

/// Grants timed in the dev server, after the untimed ones that warm it up.
pub(super) const WARM_UP_GRANTS: usize = 5;

/// The delays, ms: from each grant's HTTP answer to its webhook's arrival,
/// and the grants' own answer times.
pub(super) struct Delays {
    pub(super) delivery: Vec<f64>,
    pub(super) answer: Vec<f64>,
    pub(super) built: Duration,
}

pub(super) async fn delays(grants: usize) -> Result<Delays, String> {
    eprintln!("bench: events: building the dev server as `make run` does");
    let (bin, built) = build_dev_server().await?;
    let server = DevServer::start(&bin).await?;
    let measured = time_deliveries(&server, grants).await;
    server.stop().await;
    measured.map(|(delivery, answer)| Delays { delivery, answer, built })
}

async fn time_deliveries(server: &DevServer, grants: usize) -> Result<(Vec<f64>, Vec<f64>), String> {
    let receiver = Receiver::start(&[]).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let registered = http
        .post(format!("{}/v1/admin/webhook-endpoints", server.base))
        .bearer_auth(&server.admin)
        .json(&json!({"url": receiver.url, "events": ["grant.created"]}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if registered.status().as_u16() != 201 {
        return Err(format!("registering the receiver: {}", registered.text().await.unwrap_or_default()));
    }
    let (mut delivery, mut answer) = (Vec::new(), Vec::new());
    for round in 0..WARM_UP_GRANTS + grants {
        // A random pause, so that the grants fall anywhere in the reader's
        // one-second cycle rather than just after its last poll.
        let pause = (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let u = user("delay");
        let sent = Instant::now();
        let granted = http
            .post(format!("{}/v1/admin/users/{u}/grants", server.base))
            .bearer_auth(&server.admin)
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"amount": 10, "reason": "purchase"}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let answered = Instant::now();
        if granted.status().as_u16() != 201 {
            return Err(format!("a grant: {}", granted.text().await.unwrap_or_default()));
        }
        let arrived = receiver.arrival(&u, Duration::from_secs(60)).await?;
        if round >= WARM_UP_GRANTS {
            delivery.push(arrived.saturating_duration_since(answered).as_secs_f64() * 1000.0);
            answer.push((answered - sent).as_secs_f64() * 1000.0);
        }
    }
    Ok((delivery, answer))
}
