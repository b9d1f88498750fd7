//! Webhook attempts: each one signed (Standard Webhooks, `webhook-id` = the
//! event id), its outcome appended to the delivery's log, the next one due
//! on the schedule; and the scheduled job's part, which takes over whatever
//! fell due (retries, and anything a crashed call left behind).

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use super::bus::Entry;
use super::connect;
use super::endpoints::{DISABLE_AFTER_MS, ENDPOINTS_PK};
use super::outbox::Outbox;
use super::schedule::{retry_after, LEASE_MS, TIMEOUT};
use crate::error::Result;
use crate::store::{
    endpoint_sk, from_item, key, n, outbox_shard_key, s, Attempt, ConditionalUpdate, DeliveryLogItem, DeliveryStatus,
    DueQuery, DueRead, EndpointItem, EndpointStatus, EventRecord, Item, WarningItem, OUTBOX_SHARDS, WARNING_PREFIX,
};

/// Due entries one run lists at most.
pub const MAX_LISTED: usize = 2_000;
/// Kept of a receiver's error text.
const ERROR_CHARS: usize = 200;

/// What the scheduled job did with due events and deliveries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxReport {
    pub published: u32,
    pub delivered: u32,
    pub failed_attempts: u32,
    /// `grant.expiring` events fired.
    pub warnings: u32,
    /// Items that failed (each logged; the next run retries them).
    pub errors: u32,
    /// Taken by someone else first (a concurrent job or the first attempt).
    pub skipped: u32,
    /// Left for the next run (time budget spent).
    pub remaining: u32,
    pub scanned: u32,
}

impl Outbox {
    /// Makes one attempt of a delivery this process holds the lease of, and
    /// records it. The endpoint is as last read (`None`: deleted).
    pub(super) async fn attempt(
        &self,
        delivery: DeliveryLogItem,
        endpoint: Option<EndpointItem>,
    ) -> Result<DeliveryStatus> {
        let store = self.ledger.store();
        let item_key = key(delivery.pk.clone(), &delivery.sk);
        let before = delivery.attempts;
        let Some(endpoint) = endpoint.filter(|e| e.status == EndpointStatus::Enabled) else {
            store
                .update_if(
                    item_key,
                    ConditionalUpdate {
                        set: "SET #status = :dropped REMOVE pendingShard, expiresAt, nextAttemptAt",
                        condition: "attempts = :before AND #status = :pending",
                        names: &[("#status", "status")],
                        values: vec![(":dropped", s("dropped")), (":before", n(before)), (":pending", s("pending"))],
                    },
                )
                .await?;
            return Ok(DeliveryStatus::Dropped);
        };
        let started = Instant::now();
        let at = self.ledger.now();
        let (status_code, error) = self.post(&endpoint, &delivery, at.unix_seconds()).await;
        let ok = status_code.is_some_and(|c| (200..300).contains(&c));
        let tried = before + 1;
        let attempt = Attempt {
            attempt: tried,
            at: at.millis(),
            status_code,
            error,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let logged = aws_sdk_dynamodb::types::AttributeValue::L(vec![aws_sdk_dynamodb::types::AttributeValue::M(
            crate::store::to_item(&attempt)?,
        )]);
        let now = self.ledger.now();
        let (status, set) = match (ok, retry_after(tried)) {
            (true, _) => (
                DeliveryStatus::Delivered,
                "SET attempts = :tried, #log = list_append(#log, :attempt), #status = :next REMOVE pendingShard, expiresAt, nextAttemptAt",
            ),
            (false, Some(_)) => (
                DeliveryStatus::Pending,
                "SET attempts = :tried, #log = list_append(#log, :attempt), #status = :next, expiresAt = :due, nextAttemptAt = :due",
            ),
            (false, None) => (
                DeliveryStatus::Failed,
                "SET attempts = :tried, #log = list_append(#log, :attempt), #status = :next REMOVE pendingShard, expiresAt, nextAttemptAt",
            ),
        };
        let mut values = vec![
            (":tried", n(tried)),
            (":attempt", logged),
            (":next", s(status_name(status))),
            (":before", n(before)),
            (":pending", s("pending")),
        ];
        if let (false, Some(delay)) = (ok, retry_after(tried)) {
            values.push((":due", n(now.millis() + delay * 1000)));
        }
        // Conditional on the attempts as claimed: a claim that outlived its
        // lease records nothing over the one that took it over.
        store
            .update_if(
                item_key,
                ConditionalUpdate {
                    set,
                    condition: "attempts = :before AND #status = :pending",
                    names: &[("#status", "status"), ("#log", "log")],
                    values,
                },
            )
            .await?;
        self.note_health(&endpoint, ok).await?;
        crate::metrics::count(if ok { "WebhookDeliveries" } else { "WebhookFailures" }, 1);
        Ok(if ok { DeliveryStatus::Delivered } else { status })
    }

    /// POSTs the delivery, signed; the response code, or why there was none.
    async fn post(
        &self,
        endpoint: &EndpointItem,
        delivery: &DeliveryLogItem,
        timestamp: i64,
    ) -> (Option<u16>, Option<String>) {
        let body = delivery.payload.as_bytes();
        let Some(signature) = super::sign::signature(&endpoint.secret, &delivery.event_id, timestamp, body) else {
            return (None, Some("the endpoint's secret is unusable".into()));
        };
        let Some(http) = &self.http else {
            return (None, Some("no HTTP client (see the function's log)".into()));
        };
        // An IP address written as the host skips the client's resolver,
        // which checks every name's addresses: checked here instead.
        if connect::literal_refused(&endpoint.url, self.ledger.local_http_endpoints()) {
            return (None, Some(refused(endpoint)));
        }
        let sent = http
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .await;
        match sent {
            Ok(response) => (Some(response.status().as_u16()), None),
            Err(error) if connect::is_refusal(&error) => (None, Some(refused(endpoint))),
            Err(error) => {
                let kind = if error.is_timeout() {
                    "timed out".to_owned()
                } else if error.is_connect() {
                    "could not connect".to_owned()
                } else {
                    error.to_string()
                };
                (None, Some(kind.chars().take(ERROR_CHARS).collect()))
            }
        }
    }

    /// Any success clears an endpoint's failing streak; a failure starts one,
    /// and a streak of 5 days disables the endpoint.
    async fn note_health(&self, endpoint: &EndpointItem, ok: bool) -> Result<()> {
        // Read afresh (a read costs less than a write): the endpoint as listed
        // may predate another attempt's outcome, and a streak must not
        // survive a success it did not see.
        let Some(endpoint) = self.ledger.endpoint_item(endpoint.endpoint_id).await? else { return Ok(()) };
        let endpoint = &endpoint;
        let store = self.ledger.store();
        let item_key = || key(ENDPOINTS_PK.into(), &endpoint_sk(endpoint.endpoint_id));
        let now = self.ledger.now().millis();
        match (ok, endpoint.failing_since) {
            (true, Some(_)) => {
                store
                    .update_if(
                        item_key(),
                        ConditionalUpdate {
                            set: "SET lastSuccessAt = :now REMOVE failingSince",
                            condition: "attribute_exists(pk)",
                            names: &[],
                            values: vec![(":now", n(now))],
                        },
                    )
                    .await?;
            }
            (true, None) => {}
            (false, None) => {
                store
                    .update_if(
                        item_key(),
                        ConditionalUpdate {
                            set: "SET failingSince = :now",
                            condition: "attribute_exists(pk) AND attribute_not_exists(failingSince)",
                            names: &[],
                            values: vec![(":now", n(now))],
                        },
                    )
                    .await?;
            }
            (false, Some(since)) if now - since >= DISABLE_AFTER_MS => {
                let reason = format!(
                    "every delivery attempt failed for 5 days (since {})",
                    crate::domain::Timestamp(since).to_rfc3339()
                );
                let disabled = store
                    .update_if(
                        item_key(),
                        ConditionalUpdate {
                            set: "SET #status = :disabled, disabledAt = :now, disabledReason = :reason",
                            condition: "#status = :enabled AND failingSince = :since",
                            names: &[("#status", "status")],
                            values: vec![
                                (":disabled", s("disabled")),
                                (":enabled", s("enabled")),
                                (":now", n(now)),
                                (":reason", s(reason)),
                                (":since", n(since)),
                            ],
                        },
                    )
                    .await?;
                if disabled {
                    tracing::warn!(endpoint = %endpoint.endpoint_id, "webhook endpoint disabled after 5 days of failures");
                    crate::metrics::count("WebhookEndpointsDisabled", 1);
                }
            }
            (false, Some(_)) => {}
        }
        Ok(())
    }

    /// Publishes and delivers whatever fell due (retries, and anything a
    /// crashed call left), claiming each first, until `deadline`. One item
    /// that fails is logged and left for the next run; it stops nothing else.
    pub async fn sweep(&self, deadline: Instant) -> Result<OutboxReport> {
        // An attempt started may take its whole time limit: none starts
        // later than that before the deadline.
        let deadline = deadline.checked_sub(TIMEOUT + Duration::from_secs(1)).unwrap_or_else(Instant::now);
        let mut report = OutboxReport::default();
        let due = self.list_due(&mut report).await?;
        let sk_of = |item: &Item| crate::store::attr_text(item, "sk").to_owned();
        let (warnings, due): (Vec<Item>, Vec<Item>) =
            due.into_iter().partition(|item| sk_of(item).starts_with(WARNING_PREFIX));
        let (events, deliveries): (Vec<Item>, Vec<Item>) =
            due.into_iter().partition(|item| sk_of(item).starts_with("EVENT#"));
        let endpoints = self.ledger.endpoint_items().await?;

        for item in warnings {
            if Instant::now() >= deadline {
                report.remaining += 1;
                continue;
            }
            match self.fire_warning(&item, &endpoints).await {
                Ok(Some(sent)) => {
                    report.warnings += sent.recorded;
                    report.published += sent.published;
                    report.delivered += sent.delivered;
                    report.failed_attempts += sent.failed_attempts;
                }
                Ok(None) => report.skipped += 1,
                Err(error) => {
                    tracing::warn!(error = %error, "an expiry warning failed; the next run retries it");
                    report.errors += 1;
                }
            }
        }

        // Claimed, published and marked ten at a time (one PutEvents call):
        // a run cut short leaves at most one call's events to publish again.
        for chunk in events.chunks(super::bus::MAX_ENTRIES) {
            if Instant::now() >= deadline {
                report.remaining += chunk.len() as u32;
                continue;
            }
            match self.publish_due(chunk, &mut report).await {
                Ok(published) => report.published += published,
                Err(error) => {
                    tracing::warn!(error = %error, "publishing due events failed; the next run retries them");
                    report.errors += 1;
                }
            }
        }

        let outcomes: Vec<Option<Result<Option<DeliveryStatus>>>> = stream::iter(deliveries)
            .map(|item| {
                let endpoints = &endpoints;
                async move {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    Some(
                        async {
                            let Some(claimed) = self.claim(&item, Some(("#status", "status"))).await? else {
                                return Ok(None);
                            };
                            let delivery: DeliveryLogItem = from_item(claimed)?;
                            let endpoint = endpoints.iter().find(|e| e.endpoint_id == delivery.endpoint_id).cloned();
                            self.attempt(delivery, endpoint).await.map(Some)
                        }
                        .await,
                    )
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                None => report.remaining += 1,
                Some(Ok(None)) => report.skipped += 1,
                Some(Ok(Some(DeliveryStatus::Delivered))) => report.delivered += 1,
                Some(Ok(Some(_))) => report.failed_attempts += 1,
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "a delivery attempt failed to record; the next run retries it");
                    report.errors += 1;
                }
            }
        }
        tracing::info!(?report, "outbox");
        crate::metrics::count("OutboxBacklog", u64::from(report.remaining));
        Ok(report)
    }

    /// The due entries of the events' shards, at most `MAX_LISTED` (a larger
    /// backlog is worked off by the following runs).
    async fn list_due(&self, report: &mut OutboxReport) -> Result<Vec<Item>> {
        let now = self.ledger.now();
        let shards = usize::from(OUTBOX_SHARDS);
        let mut due: Vec<Item> = Vec::new();
        for shard in 0..OUTBOX_SHARDS {
            // Each shard reads until the run's listing reaches its share so far.
            let share = MAX_LISTED * (usize::from(shard) + 1) / shards;
            let query = DueQuery {
                shard: outbox_shard_key(shard),
                until: now.millis(),
                read: DueRead::Entries,
                page: Some((MAX_LISTED / shards) as i32),
                at_most: share.saturating_sub(due.len()),
            };
            let listed = self.ledger.store().list_due(query, Some).await?;
            report.scanned += listed.scanned;
            due.extend(listed.kept);
        }
        Ok(due)
    }

    /// Claims a due warning and fires it (if its lot still has credits);
    /// `None` when someone else claimed it first.
    async fn fire_warning(&self, listed: &Item, endpoints: &[EndpointItem]) -> Result<Option<super::outbox::Applied>> {
        let Some(claimed) = self.claim(listed, None).await? else { return Ok(None) };
        let warning: WarningItem = from_item(claimed)?;
        let sent = match self.warning_event(&warning).await? {
            Some(event) => {
                let recorded = self.record_events(vec![event], endpoints).await?;
                Some(self.hand_on(recorded, endpoints, Self::attempt_by()).await?)
            }
            None => None,
        };
        self.retire_warning(&warning, sent.is_some()).await?;
        Ok(Some(sent.unwrap_or_default()))
    }

    /// Claims up to ten due events, publishes those claimed, and marks each.
    async fn publish_due(&self, listed: &[Item], report: &mut OutboxReport) -> Result<u32> {
        let mut claimed = Vec::with_capacity(listed.len());
        for item in listed {
            match self.claim(item, Some(("#bus", "bus"))).await? {
                Some(item) => claimed.push(from_item::<EventRecord>(item)?),
                None => report.skipped += 1,
            }
        }
        if claimed.is_empty() {
            return Ok(0);
        }
        let entries: Vec<Entry> = claimed
            .iter()
            .map(|r| Entry { detail_type: r.event_type.as_str().into(), detail: r.payload.clone() })
            .collect();
        let targets: Vec<(String, String, u32)> =
            claimed.iter().map(|r| (r.pk.clone(), r.sk.clone(), r.bus_attempts)).collect();
        self.publish_entries(&entries, &targets).await
    }

    /// Takes the lease of a due item as listed: it must still be pending
    /// and due at the instant listed. The item as claimed, or `None` when
    /// someone else took it.
    async fn claim(&self, listed: &Item, state: Option<(&'static str, &'static str)>) -> Result<Option<Item>> {
        self.ledger.store().claim_due(listed, self.ledger.now().millis() + LEASE_MS, state).await
    }
}

/// The error of an attempt refused before connecting, the same whatever the
/// address: the log shows the endpoint, never what its name resolved to.
fn refused(endpoint: &EndpointItem) -> String {
    tracing::warn!(endpoint = %endpoint.endpoint_id, "webhook attempt refused: the endpoint's address is not public");
    connect::NOT_PUBLIC.to_owned()
}

fn status_name(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Failed => "failed",
        DeliveryStatus::Dropped => "dropped",
    }
}
