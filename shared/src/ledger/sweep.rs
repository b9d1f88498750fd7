//! The expiry sweep: reads only due work from the sparse due-work index
//! (`pending-by-expiry`): it expires each due hold with the same
//! conditional transition as a release, so a confirm racing it either wins
//! or is refused, never both, and writes down the lot expiries of each due
//! balance.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;
use uuid::Uuid;

use super::Ledger;
use crate::domain::{Actor, HoldStatus, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::store::{attr_text, n, shard_key, DueQuery, DueRead, PENDING_SHARDS};

/// Holds expired at once by one sweep.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Due holds one run lists at most, so listing never eats the time budget;
/// a larger backlog is worked off by the following runs.
pub const MAX_LISTED: usize = 20_000;

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Holds this run expired (credits returned).
    pub expired: u32,
    /// Due holds someone else settled first (a confirm, a release, another sweep).
    pub already_settled: u32,
    /// Due holds extended since they were listed: not due any more.
    pub extended: u32,
    /// Due holds left for the next run (time budget spent).
    pub remaining: u32,
    /// Lots whose expiry this run wrote down (balances the due-work index
    /// listed; a user's own write may have come first).
    pub lots_expired: u32,
    /// Plan allowances this run granted (periods that started since).
    pub plan_refills: u32,
    /// Expiries that failed (retried by the next run).
    pub errors: u32,
    /// Index entries read: the due holds, never the table.
    pub scanned: u32,
    pub duration_ms: u64,
}

impl Ledger {
    /// Expires every pending hold whose `expiresAt` has passed, `concurrency`
    /// at a time, starting no expiry after `deadline` (the rest is left for
    /// the next run). Each expiry is its own
    /// atomic transition, so stopping anywhere leaves nothing half done.
    pub async fn sweep(&self, deadline: Instant, concurrency: usize) -> Result<SweepReport> {
        let started = Instant::now();
        let now = self.clock.now();
        let mut report = SweepReport::default();

        // Listing reads only due index entries, so it is cheap and always
        // completes: `remaining` is then exact.
        let mut due = Vec::new();
        for shard in 0..PENDING_SHARDS {
            if due.len() >= MAX_LISTED {
                break;
            }
            let (ids, scanned) = self.due_in_shard(shard, now, MAX_LISTED / usize::from(PENDING_SHARDS)).await?;
            report.scanned += scanned;
            due.extend(ids);
        }
        let (balances, due): (Vec<Due>, Vec<Due>) = due.into_iter().partition(|d| matches!(d, Due::Balance(_)));
        let due: Vec<Uuid> =
            due.into_iter().filter_map(|d| if let Due::Hold(id) = d { Some(id) } else { None }).collect();

        let outcomes: Vec<Option<Result<bool>>> = stream::iter(due)
            .map(|id| async move {
                if Instant::now() >= deadline {
                    return None;
                }
                Some(self.expire(id, Actor::Cleanup).await)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for outcome in outcomes {
            match outcome {
                None => report.remaining += 1,
                Some(Ok(true)) => report.expired += 1,
                Some(Ok(false)) => report.already_settled += 1,
                Some(Err(Error::HoldNotPending(HoldStatus::Pending))) => report.extended += 1,
                Some(Err(Error::HoldNotPending(_) | Error::HoldNotFound)) => report.already_settled += 1,
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "expiry failed; the next sweep retries it");
                    report.errors += 1;
                }
            }
        }
        let written: Vec<Option<Result<super::due::DueWritten>>> = stream::iter(balances)
            .map(|due| async move {
                let Due::Balance(user) = due else { return None };
                if Instant::now() >= deadline {
                    return None;
                }
                Some(self.write_down_due(&user).await)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for outcome in written {
            match outcome {
                None => report.remaining += 1,
                Some(Ok(written)) => {
                    report.lots_expired += written.lots_expired;
                    report.plan_refills += written.plan_refills;
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "writing down due lots failed; the next sweep retries it");
                    report.errors += 1;
                }
            }
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            expired = report.expired,
            already_settled = report.already_settled,
            extended = report.extended,
            remaining = report.remaining,
            lots_expired = report.lots_expired,
            plan_refills = report.plan_refills,
            errors = report.errors,
            scanned = report.scanned,
            duration_ms = report.duration_ms,
            "sweep"
        );
        // What the health check reads as the sweep's lag.
        let mut status = crate::store::key(crate::store::HEALTH_PK.into(), "SWEEP");
        status.insert("lastRunAt".into(), n(self.clock.now().millis()));
        for (name, value) in [
            ("expired", u64::from(report.expired)),
            ("remaining", u64::from(report.remaining)),
            ("errors", u64::from(report.errors)),
            ("durationMs", report.duration_ms),
        ] {
            status.insert(name.into(), n(value));
        }
        if let Err(error) = self.store.put(status).await {
            tracing::warn!(error = %error, "recording the sweep's status failed");
        }
        crate::metrics::count("ExpiredBacklog", u64::from(report.remaining));
        crate::metrics::count("SweepErrors", u64::from(report.errors));
        Ok(report)
    }

    /// One shard's due work (holds and balances), with how many index
    /// entries were read.
    async fn due_in_shard(&self, shard: u8, now: Timestamp, at_most: usize) -> Result<(Vec<Due>, u32)> {
        let query = DueQuery { shard: shard_key(shard), until: now.millis(), read: DueRead::Keys, page: None, at_most };
        let listed = self
            .store
            .list_due(query, |item| {
                let pk = attr_text(&item, "pk");
                let due = match (pk.strip_prefix("HOLD#"), pk.strip_prefix("USER#")) {
                    (Some(id), _) => Uuid::try_parse(id).ok().map(Due::Hold),
                    (_, Some(user)) => UserId::parse(user).map(Due::Balance),
                    _ => None,
                };
                if due.is_none() {
                    tracing::warn!(?item, "unreadable entry in the due-work index");
                }
                due
            })
            .await?;
        Ok((listed.kept, listed.scanned))
    }
}

/// What the due-work index lists: a pending hold past its expiry, or a
/// balance with a lot expiry to write down.
enum Due {
    Hold(Uuid),
    Balance(UserId),
}

/// Time kept back from a budget to answer in.
pub const MARGIN: Duration = Duration::from_millis(1500);

/// A deadline `budget` from now, less the margin to answer in.
pub fn deadline_within(budget: Duration) -> Instant {
    Instant::now() + budget.saturating_sub(MARGIN)
}

/// The deadline of a Lambda invocation whose context says it must end at
/// `deadline` (wall clock), less the margin.
pub fn deadline_at(deadline: std::time::SystemTime) -> Instant {
    let left = deadline.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO);
    deadline_within(left)
}
