//! Recording events once and handing them on: an event item per event and
//! a delivery item per subscribed endpoint, each put only if absent under a
//! key derived from the change. What this call created it also publishes
//! and attempts at once; what failed (or what a crash left) stays in the
//! due-work index for the scheduled job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};
use reqwest::dns::Resolve;
use serde::Serialize;
use serde_json::json;

use super::bus::{Bus, Entry};
use super::connect::SystemLookup;
use super::derive::{events_of, Defaults, Derived};
use super::schedule::{retry_after, KEEP_SECONDS, LEASE_MS, TIMEOUT};
use super::Event;
use crate::error::Result;
use crate::ledger::Ledger;
use crate::store::stream::Change;
use crate::store::{
    deliveries_pk, event_sk, key, n, outbox_shard, s, to_item, BusState, ConditionalUpdate, DeliveryLogItem,
    DeliveryStatus, EndpointItem, EventRecord,
};

/// Writes in flight at once.
const CONCURRENCY: usize = 8;

/// The client webhook attempts are made with. Never a default client
/// instead: it would follow redirects, connect anywhere and wait forever.
/// Without one, every attempt fails, loudly.
fn http_client(lookup: Arc<dyn Resolve>, allow_loopback: bool) -> Option<reqwest::Client> {
    super::connect::client(lookup, allow_loopback)
        .inspect_err(|error| tracing::error!(error = %error, "no HTTP client for webhook deliveries"))
        .ok()
}

/// What one call of [`Outbox::apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    /// Events recorded for the first time.
    pub recorded: u32,
    /// Events recorded before (a redelivered batch): not published again.
    pub duplicates: u32,
    pub published: u32,
    pub delivered: u32,
    /// Attempts that failed (retried on the schedule).
    pub failed_attempts: u32,
    /// Deliveries left to the job: their endpoint is failing, or time ran out.
    pub deferred: u32,
}

/// What recording a batch left to send.
#[derive(Default)]
pub(super) struct Recorded {
    fresh: Vec<Event>,
    duplicates: u32,
    deliveries: Vec<DeliveryLogItem>,
}

/// Outgoing events: records, publishes and delivers them.
#[derive(Clone, Debug)]
pub struct Outbox {
    pub(super) ledger: Ledger,
    pub(super) bus: Bus,
    pub(super) http: Option<reqwest::Client>,
    defaults: Defaults,
}

impl Outbox {
    /// Webhooks connect to public addresses only; a ledger that allows
    /// local http endpoints (the dev server's) also lets them reach loopback.
    pub fn new(ledger: Ledger, bus: Bus, defaults: Defaults) -> Outbox {
        let http = http_client(Arc::new(SystemLookup), ledger.local_http_endpoints());
        Outbox { ledger, bus, http, defaults }
    }

    /// Looks endpoints' names up with `lookup` instead of the system's
    /// resolver: for tests, which give names addresses of their own. What it
    /// returns is checked as the system's answers are.
    pub fn with_lookup(mut self, lookup: Arc<dyn Resolve>) -> Outbox {
        self.http = http_client(lookup, self.ledger.local_http_endpoints());
        self
    }

    /// The bus and defaults from the environment (`CREDITS_EVENT_BUS`,
    /// `EVENTBRIDGE_ENDPOINT`, `CREDITS_LOW_BALANCE_THRESHOLD`,
    /// `CREDITS_EXPIRY_WARNING_HOURS`).
    pub async fn from_env(ledger: Ledger) -> Outbox {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
        let defaults = Defaults {
            low_balance_threshold: number("CREDITS_LOW_BALANCE_THRESHOLD").unwrap_or(0),
            expiry_warning_seconds: number("CREDITS_EXPIRY_WARNING_HOURS")
                .map_or(super::derive::DEFAULT_EXPIRY_WARNING_HOURS, |h| h.min(24 * 366) as i64)
                * 3600,
        };
        Outbox::new(ledger, Bus::from_env().await, defaults)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn defaults(&self) -> Defaults {
        self.defaults
    }

    /// Records the events of a batch of stream changes, publishes them and
    /// makes each delivery's first attempt. Safe to call again with any of
    /// the changes: nothing is recorded, published or delivered twice.
    pub async fn apply(&self, changes: &[Change]) -> Result<Applied> {
        let attempt_by = Self::attempt_by();
        let (recorded, endpoints) = self.record_all(changes).await?;
        self.hand_on(recorded, &endpoints, attempt_by).await
    }

    /// The latest instant a first attempt may start: its lease (taken when
    /// the delivery was recorded) must outlast it, or the job would send the
    /// same delivery at the same time.
    pub(super) fn attempt_by() -> Instant {
        let lease = Duration::from_millis(LEASE_MS as u64);
        Instant::now() + lease.saturating_sub(TIMEOUT + Duration::from_secs(5))
    }

    /// Publishes what was recorded for the first time and makes the first
    /// attempt of each delivery created, until `attempt_by`. A delivery to an
    /// endpoint on a failing streak is left to the job's schedule, so one
    /// endpoint that hangs cannot hold up the stream.
    pub(super) async fn hand_on(
        &self,
        recorded: Recorded,
        endpoints: &[EndpointItem],
        attempt_by: Instant,
    ) -> Result<Applied> {
        let mut applied =
            Applied { recorded: recorded.fresh.len() as u32, duplicates: recorded.duplicates, ..Applied::default() };
        if self.bus.is_configured() {
            applied.published = self.publish(&recorded.fresh).await?;
        }
        let outcomes: Vec<Option<DeliveryStatus>> = stream::iter(recorded.deliveries)
            .map(|delivery| {
                let endpoint = endpoints.iter().find(|e| e.endpoint_id == delivery.endpoint_id).cloned();
                async move {
                    let failing = endpoint.as_ref().is_some_and(|e| e.failing_since.is_some());
                    if failing || Instant::now() >= attempt_by {
                        return Ok(None);
                    }
                    self.attempt(delivery, endpoint).await.map(Some)
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        applied.delivered = outcomes.iter().filter(|s| **s == Some(DeliveryStatus::Delivered)).count() as u32;
        applied.deferred = outcomes.iter().filter(|s| s.is_none()).count() as u32;
        applied.failed_attempts = outcomes.len() as u32 - applied.delivered - applied.deferred;
        Ok(applied)
    }

    /// Only records the events (and their deliveries), sending nothing: what
    /// a call that dies before sending leaves behind, for tests to take over.
    /// The number of events recorded for the first time.
    pub async fn record(&self, changes: &[Change]) -> Result<u32> {
        Ok(self.record_all(changes).await?.0.fresh.len() as u32)
    }

    async fn record_all(&self, changes: &[Change]) -> Result<(Recorded, Vec<EndpointItem>)> {
        let mut derived = Vec::new();
        for d in changes.iter().flat_map(|c| events_of(c, self.defaults)) {
            match d {
                Derived::Expiring { user, lot } => self.schedule_warning(&user, lot).await?,
                other => derived.push(other),
            }
        }
        if derived.is_empty() {
            return Ok((Recorded::default(), Vec::new()));
        }
        let events: Vec<Event> = stream::iter(derived).then(|d| self.complete(d)).try_collect::<Vec<Event>>().await?;
        let endpoints = self.ledger.endpoint_items().await?;
        let recorded = self.record_events(events, &endpoints).await?;
        Ok((recorded, endpoints))
    }

    pub(super) async fn record_events(&self, events: Vec<Event>, endpoints: &[EndpointItem]) -> Result<Recorded> {
        let results: Vec<(Event, bool, Vec<DeliveryLogItem>)> = stream::iter(events)
            .map(|event| self.record_one(event, endpoints))
            .buffered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut recorded = Recorded::default();
        for (event, new, created) in results {
            if new {
                recorded.fresh.push(event);
            } else {
                recorded.duplicates += 1;
            }
            recorded.deliveries.extend(created);
        }
        Ok(recorded)
    }

    /// An event whose data is the reservation (a late success) reads it.
    async fn complete(&self, derived: Derived) -> Result<Event> {
        match derived {
            Derived::Ready(event) => Ok(event),
            Derived::Expiring { .. } => {
                Err(crate::error::Error::Internal("an expiry warning is not an event yet".into()))
            }
            Derived::NeedsHold { mut event, reservation_id } => {
                event.data = match self.ledger.hold(None, reservation_id).await {
                    Ok(hold) => serde_json::to_value(hold).unwrap_or_default(),
                    Err(crate::error::Error::HoldNotFound) => json!({"reservationId": reservation_id}),
                    Err(error) => return Err(error),
                };
                Ok(event)
            }
        }
    }

    /// Puts the event and its deliveries if absent; says whether the event
    /// is new and which deliveries this call created.
    async fn record_one(
        &self,
        event: Event,
        endpoints: &[EndpointItem],
    ) -> Result<(Event, bool, Vec<DeliveryLogItem>)> {
        let now = self.ledger.now();
        let payload = serde_json::to_string(&event).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
        let ttl = now.unix_seconds() + KEEP_SECONDS;
        let lease = now.millis() + LEASE_MS;
        let configured = self.bus.is_configured();
        let record = EventRecord {
            pk: crate::store::user_pk(&event.user_id),
            sk: event_sk(event.occurred_at, &event.id),
            entity: "event".into(),
            event_id: event.id.clone(),
            event_type: event.kind,
            user_id: event.user_id.as_str().to_owned(),
            occurred_at: event.occurred_at.millis(),
            payload: payload.clone(),
            bus: if configured { BusState::Pending } else { BusState::Logged },
            bus_attempts: 0,
            // Due when the lease runs out: published by the job if this call dies first.
            pending_shard: configured.then(|| outbox_shard(&event.id)),
            expires_at: configured.then_some(lease),
            ttl,
        };
        let new = self.ledger.store().put_if_absent(to_item(&record)?).await?;
        if new && !configured {
            self.bus.publish(&[Entry { detail_type: event.kind.as_str().into(), detail: payload.clone() }]).await;
        }
        let mut created = Vec::new();
        // An endpoint hears of what happens from its creation on: a change
        // the stream hands over after an endpoint was added is not news to it.
        let listening = |e: &&EndpointItem| e.wants(event.kind) && event.occurred_at.millis() >= e.created_at;
        for endpoint in endpoints.iter().filter(listening) {
            let delivery = DeliveryLogItem {
                pk: deliveries_pk(endpoint.endpoint_id),
                sk: format!("DLV#{:013}#{}", event.occurred_at.millis().max(0), event.id),
                entity: "webhookDelivery".into(),
                endpoint_id: endpoint.endpoint_id,
                event_id: event.id.clone(),
                event_type: event.kind,
                user_id: event.user_id.as_str().to_owned(),
                payload: payload.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                log: Vec::new(),
                created_at: now.millis(),
                next_attempt_at: Some(now.millis()),
                pending_shard: Some(outbox_shard(&event.id)),
                expires_at: Some(lease),
                ttl,
            };
            if self.ledger.store().put_if_absent(to_item(&delivery)?).await? {
                created.push(delivery);
            }
        }
        Ok((event, new, created))
    }

    /// Publishes events this process holds the lease of, and records each
    /// outcome: published, or due again on the retry schedule.
    pub(super) async fn publish(&self, events: &[Event]) -> Result<u32> {
        let entries: Vec<Entry> = events
            .iter()
            .map(|e| Entry {
                detail_type: e.kind.as_str().into(),
                detail: serde_json::to_string(e).unwrap_or_default(),
            })
            .collect();
        let targets: Vec<(String, String, u32)> =
            events.iter().map(|e| (crate::store::user_pk(&e.user_id), event_sk(e.occurred_at, &e.id), 0)).collect();
        self.publish_entries(&entries, &targets).await
    }

    /// `targets`: each entry's event item key and its attempts so far.
    pub(super) async fn publish_entries(&self, entries: &[Entry], targets: &[(String, String, u32)]) -> Result<u32> {
        let accepted = self.bus.publish(entries).await;
        let now = self.ledger.now();
        let mut published = 0;
        for (ok, (pk, sk, attempts)) in accepted.iter().zip(targets) {
            let item_key = key(pk.clone(), sk);
            if *ok {
                published += 1;
                self.ledger
                    .store()
                    .update_if(
                        item_key,
                        ConditionalUpdate {
                            set: "SET #bus = :published REMOVE pendingShard, expiresAt",
                            condition: "#bus = :pending",
                            names: &[("#bus", "bus")],
                            values: vec![(":published", s("published")), (":pending", s("pending"))],
                        },
                    )
                    .await?;
                continue;
            }
            let tried = attempts + 1;
            let update = match retry_after(tried) {
                Some(delay) => ConditionalUpdate {
                    set: "SET busAttempts = :tried, expiresAt = :next",
                    condition: "#bus = :pending AND busAttempts = :before",
                    names: &[("#bus", "bus")],
                    values: vec![
                        (":tried", n(tried)),
                        (":next", n(now.millis() + delay * 1000)),
                        (":pending", s("pending")),
                        (":before", n(attempts)),
                    ],
                },
                None => {
                    tracing::error!(pk = %pk, sk = %sk, "an event could not be published to EventBridge on any retry");
                    ConditionalUpdate {
                        set: "SET busAttempts = :tried, #bus = :failed REMOVE pendingShard, expiresAt",
                        condition: "#bus = :pending AND busAttempts = :before",
                        names: &[("#bus", "bus")],
                        values: vec![
                            (":tried", n(tried)),
                            (":failed", s("failed")),
                            (":pending", s("pending")),
                            (":before", n(attempts)),
                        ],
                    }
                }
            };
            self.ledger.store().update_if(item_key, update).await?;
        }
        Ok(published)
    }

    /// A user's events, newest first (for operators: `credits events`).
    pub async fn recent(&self, user: &crate::domain::UserId, limit: u32) -> Result<Vec<EventRecord>> {
        self.ledger.store().recent_events(user, limit).await?.into_iter().map(crate::store::from_item).collect()
    }
}
