//! Reserve, run a job, then confirm what came out or release: for Rust
//! callers in the same account.

use std::future::Future;

use super::{JobOutput, Ledger, ReserveRequest, WithCreditsError};
use crate::domain::{Actor, Reservation, UserId};
use crate::error::Result;

impl Ledger {
    /// Reserve, run the job, then confirm what came out — or release when
    /// the job fails or produced nothing. For Rust callers in the same
    /// account; HTTP callers do the same with the three routes.
    pub async fn with_credits<T, E, F, Fut>(
        &self,
        user: &UserId,
        request: ReserveRequest,
        job: F,
    ) -> Result<T, WithCreditsError<E>>
    where
        F: FnOnce(Reservation) -> Fut,
        Fut: Future<Output = Result<JobOutput<T>, E>>,
    {
        let hold = self.reserve(user, request).await.map_err(WithCreditsError::Credits)?.into_inner();
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
                Ok(value)
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
