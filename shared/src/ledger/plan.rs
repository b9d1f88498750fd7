//! Plans: setting and ending a user's allowance. The refills themselves are
//! what falls due (`due.rs`): the first one is written right after the plan
//! is set, each later one by the first write or job after its period starts.

use super::{Ledger, MAX_ATTEMPTS};
use crate::domain::{Balance, Credits, Period, Plan, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::store::{n, to_item, BalanceWrite, PlanItem, TxFailure, PLAN_PERIOD};

/// A plan as an operator sets it; `anchor` defaults to the plan's current
/// anchor when only the same plan is set again, else to now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRequest {
    pub name: String,
    pub allowance: Credits,
    pub period: Period,
    pub rollover: Credits,
    pub anchor: Option<Timestamp>,
}

impl Ledger {
    /// Sets `user`'s plan. A new or changed plan grants the current
    /// period's allowance at once; setting the same plan again changes
    /// nothing (so a retried request never grants twice).
    pub async fn set_plan(&self, user: &UserId, request: PlanRequest) -> Result<Balance> {
        self.change_plan(user, |current, now| {
            let same = current.filter(|p| {
                (p.name.as_str(), p.allowance, p.period, p.rollover)
                    == (request.name.as_str(), request.allowance, request.period, request.rollover)
                    && request.anchor.is_none_or(|anchor| anchor == p.anchor)
            });
            match same {
                Some(plan) if plan.ends_at.is_none() => None,
                // Set again before it ended: it just goes on. After: it
                // starts over from the current period.
                Some(plan) => {
                    Some((Plan { ends_at: None, ..plan.clone() }, plan.ends_at.is_some_and(|end| end <= now)))
                }
                None => Some((
                    Plan {
                        name: request.name.clone(),
                        allowance: request.allowance,
                        period: request.period,
                        rollover: request.rollover,
                        anchor: request.anchor.unwrap_or(now),
                        ends_at: None,
                    },
                    true,
                )),
            }
        })
        .await
    }

    /// Ends `user`'s plan at the end of its current period (at once if it
    /// has not started). Ending it again changes nothing.
    pub async fn end_plan(&self, user: &UserId) -> Result<Balance> {
        self.change_plan(user, |current, now| {
            let plan = current.filter(|p| p.ends_at.is_none())?;
            let end = plan.period_at(now).map_or(now, |(_, end)| end);
            Some((Plan { ends_at: Some(end), ..plan.clone() }, false))
        })
        .await
    }

    /// Applies `change` to the stored plan (`None`: nothing to change; the
    /// flag: its refills start over from the current period), conditional on
    /// the balance not having moved since it was read; then writes down what
    /// the new plan makes due.
    async fn change_plan<F>(&self, user: &UserId, change: F) -> Result<Balance>
    where
        F: Fn(Option<&Plan>, Timestamp) -> Option<(Plan, bool)>,
    {
        for attempt in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let stored = self.caught_up(user, now).await?;
            let Some((plan, restart)) = change(stored.books.plan.as_ref(), now) else {
                return Ok(stored.books.at(user.clone(), now));
            };
            let mut write = BalanceWrite::new();
            write.expect("updatedAt", stored.books.updated_at.map(|at| n(at.millis())));
            write.set("plan", aws_sdk_dynamodb::types::AttributeValue::M(to_item(&PlanItem::of(&plan))?));
            if restart && stored.books.plan_period.is_some() {
                write.remove(PLAN_PERIOD);
            }
            match self.tx(vec![self.update(write.build(user, now))?]).await {
                Ok(()) => {
                    self.caught_up(user, now).await?;
                    return self.balance(user).await;
                }
                Err(TxFailure::Cancelled(reasons)) if reasons.first().is_some_and(|r| r.condition_failed()) => {}
                Err(failure) => self.retry_or_fail(failure, attempt).await?,
            }
        }
        Err(Error::Unavailable("changing the plan kept conflicting".into()))
    }
}
