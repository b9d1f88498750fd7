//! Reserve, run a job, then confirm what came out or release: for Rust
//! callers in the same account.

use std::future::Future;

use super::{JobOutput, JobRun, Ledger, OnReplay, Outcome, ReserveRequest, WithCreditsError};
use crate::domain::{Actor, Hold, HoldStatus, UserId};
use crate::error::Result;

impl Ledger {
    /// Reserve, run the job, then confirm what came out — or release when
    /// the job fails or produced nothing. For Rust callers in the same
    /// account; HTTP callers do the same with the three routes.
    ///
    /// A job runs once per idempotency key: when the reserve is a replay
    /// (the same key again, or at once), the job does not run and the
    /// answer is [`JobRun::Replayed`] with the hold as it stands, whatever
    /// its status. [`OnReplay::Resume`] runs it anyway while the hold is
    /// still pending (a trusted worker resuming after a crash).
    pub async fn with_credits<T, E, F, Fut>(
        &self,
        user: &UserId,
        request: ReserveRequest,
        on_replay: OnReplay,
        job: F,
    ) -> Result<JobRun<T>, WithCreditsError<E>>
    where
        F: FnOnce(Hold) -> Fut,
        Fut: Future<Output = Result<JobOutput<T>, E>>,
    {
        let hold = match self.reserve(user, request).await.map_err(WithCreditsError::Credits)? {
            Outcome::Created(hold) => hold,
            Outcome::Replayed(hold) if on_replay == OnReplay::Resume && hold.status == HoldStatus::Pending => hold,
            // Another run of this key placed the hold: it runs the job, not us.
            Outcome::Replayed(hold) => return Ok(JobRun::Replayed(Box::new(hold))),
        };
        let id = hold.reservation_id;
        let held = hold.units;
        match job(hold).await {
            Ok(JobOutput { value, units }) => {
                // Never more than was held: the rest of a job's report is not ours to charge.
                let units = units.unwrap_or(held).min(held);
                let settled = if units == 0 {
                    self.release(Some(user), id, Actor::Server).await
                } else {
                    self.confirm(Some(user), id, Some(units), Actor::Server).await
                };
                settled.map_err(WithCreditsError::Credits)?;
                Ok(JobRun::Ran(value))
            }
            Err(job_error) => {
                if let Err(release_error) = self.release(Some(user), id, Actor::Server).await {
                    // The sweep returns the hold at its expiry if this fails.
                    tracing::warn!(reservation = %id, error = %release_error, "release after failed job failed");
                }
                Err(WithCreditsError::Job(job_error))
            }
        }
    }
}
