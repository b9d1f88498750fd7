//! EventBridge: each event is one entry on the app's bus, source `credits`,
//! `detail-type` the event type, `detail` the event. Without a bus (the dev
//! server by default) events are logged instead.

use std::ops::Range;
use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;

pub const SOURCE: &str = "credits";
/// PutEvents takes at most 10 entries and 256 KiB per call.
pub const MAX_ENTRIES: usize = 10;
pub const MAX_BYTES: usize = 256 * 1024;
/// Rounds of retrying the failed entries within one call before leaving
/// them to the scheduled job.
const ROUNDS: u32 = 3;

#[derive(Clone, Debug)]
pub enum Bus {
    EventBridge {
        client: aws_sdk_eventbridge::Client,
        name: String,
    },
    /// No bus configured: each event is written to the log.
    Log,
}

/// One event to publish: its type and the event as JSON.
#[derive(Clone, Debug)]
pub struct Entry {
    pub detail_type: String,
    pub detail: String,
}

impl Entry {
    /// Its size as PutEvents counts it (source, detail-type and detail, UTF-8).
    pub fn size(&self) -> usize {
        SOURCE.len() + self.detail_type.len() + self.detail.len()
    }
}

/// Consecutive runs of entries that each fit one PutEvents call. An entry
/// larger than the limit goes alone (EventBridge refuses it, and says so).
pub fn batches(sizes: &[usize]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, size) in sizes.iter().enumerate() {
        if i > start && (i - start == MAX_ENTRIES || bytes + size > MAX_BYTES) {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

impl Bus {
    /// `CREDITS_EVENT_BUS` names the bus; `EVENTBRIDGE_ENDPOINT` points the
    /// client at another endpoint (a local one in tests).
    pub async fn from_env() -> Bus {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        match var("CREDITS_EVENT_BUS") {
            Some(name) => Bus::event_bridge(name, var("EVENTBRIDGE_ENDPOINT").as_deref()).await,
            None => Bus::Log,
        }
    }

    pub async fn event_bridge(name: String, endpoint: Option<&str>) -> Bus {
        let config = crate::store::sdk_config(endpoint).await;
        Bus::EventBridge { client: aws_sdk_eventbridge::Client::new(&config), name }
    }

    pub fn is_configured(&self) -> bool {
        matches!(self, Bus::EventBridge { .. })
    }

    /// Publishes `entries`; the answer says, per entry, whether it was
    /// accepted. Only failed entries are sent again.
    pub async fn publish(&self, entries: &[Entry]) -> Vec<bool> {
        let Bus::EventBridge { client, name } = self else {
            for entry in entries {
                tracing::info!(detail_type = %entry.detail_type, detail = %entry.detail, "event (no bus configured)");
            }
            return vec![true; entries.len()];
        };
        let mut accepted = vec![false; entries.len()];
        let sizes: Vec<usize> = entries.iter().map(Entry::size).collect();
        for batch in batches(&sizes) {
            let mut waiting: Vec<usize> = batch.collect();
            for round in 0..ROUNDS {
                if waiting.is_empty() {
                    break;
                }
                if round > 0 {
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(round))).await;
                }
                let request: Vec<PutEventsRequestEntry> = waiting
                    .iter()
                    .map(|&i| {
                        PutEventsRequestEntry::builder()
                            .event_bus_name(name)
                            .source(SOURCE)
                            .detail_type(&entries[i].detail_type)
                            .detail(&entries[i].detail)
                            .build()
                    })
                    .collect();
                match client.put_events().set_entries(Some(request)).send().await {
                    Ok(out) => {
                        // Result entries are in request order.
                        let results = out.entries.unwrap_or_default();
                        let mut failed = Vec::new();
                        for (position, &i) in waiting.iter().enumerate() {
                            match results.get(position) {
                                Some(r) if r.error_code.is_none() && r.event_id.is_some() => accepted[i] = true,
                                Some(r) => {
                                    tracing::warn!(code = ?r.error_code, message = ?r.error_message, "an event was refused by EventBridge");
                                    failed.push(i);
                                }
                                None => failed.push(i),
                            }
                        }
                        waiting = failed;
                    }
                    Err(error) => {
                        tracing::warn!(error = %aws_sdk_eventbridge::error::DisplayErrorContext(&error), "PutEvents failed");
                    }
                }
            }
        }
        crate::metrics::count("EventsPublished", accepted.iter().filter(|a| **a).count() as u64);
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_both_limits() {
        assert_eq!(batches(&[]), Vec::<Range<usize>>::new());
        assert_eq!(batches(&[10; 25]), vec![0..10, 10..20, 20..25]);
        let big = MAX_BYTES / 3;
        assert_eq!(batches(&[big, big, big, big]), vec![0..3, 3..4]);
        assert_eq!(batches(&[big, big, big + 2, 1]), vec![0..2, 2..4]);
        // Too big alone: sent alone, refused by EventBridge, not by us.
        assert_eq!(batches(&[1, MAX_BYTES + 1, 1]), vec![0..1, 1..2, 2..3]);
    }

    #[test]
    fn every_batch_fits() {
        let mut seed = 7u64;
        for _ in 0..2000 {
            let sizes: Vec<usize> = (0..(seed % 40) as usize)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 33) as usize % 120_000 + 1
                })
                .collect();
            let runs = batches(&sizes);
            let covered: Vec<usize> = runs.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(covered, (0..sizes.len()).collect::<Vec<_>>());
            for run in runs {
                assert!(run.len() <= MAX_ENTRIES);
                assert!(run.len() == 1 || sizes[run].iter().sum::<usize>() <= MAX_BYTES);
            }
        }
    }
}
