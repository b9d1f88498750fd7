//! Plans: setting and ending a user's allowance. The refills themselves are
//! what falls due (`due.rs`): the first one is written right after the plan
//! is set, each later one by the first write or job after its period starts.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{Ledger, MAX_ATTEMPTS};
use crate::domain::{Balance, Credits, Period, Plan, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::store::{balance_shard, n, s, to_item, BalanceWrite, PlanItem, TxFailure, PLAN_PERIOD};

/// A plan as an operator sets it; `anchor` defaults to the current plan's
/// anchor, or to now for a user without one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanRequest {
    pub name: String,
    pub allowance: Credits,
    pub period: Period,
    pub rollover: Credits,
    pub anchor: Option<Timestamp>,
}

impl Ledger {
    /// Sets `user`'s plan. A new plan grants the current period's
    /// allowance at once. A changed plan grants from its first period that
    /// starts after the last allowance (so never twice for one period: an
    /// upgrade counts from the next period unless it moves the anchor);
    /// setting the same plan again changes nothing, so a retried request
    /// never grants twice.
    pub async fn set_plan(&self, user: &UserId, request: PlanRequest) -> Result<Balance> {
        self.change_plan(user, |current, now| {
            let plan = Plan {
                name: request.name.clone(),
                allowance: request.allowance,
                period: request.period,
                rollover: request.rollover,
                // A change keeps the periods unless told otherwise.
                anchor: request.anchor.or(current.map(|p| p.anchor)).unwrap_or(now),
                ends_at: None,
            };
            (current != Some(&plan)).then_some(plan)
        })
        .await
    }

    /// Ends `user`'s plan at the end of its current period (at once if it
    /// has not started). Ending it again changes nothing.
    pub async fn end_plan(&self, user: &UserId) -> Result<Balance> {
        self.change_plan(user, |current, now| {
            let plan = current.filter(|p| p.ends_at.is_none())?;
            let end = plan.period_at(now).map_or(now, |(_, end)| end);
            Some(Plan { ends_at: Some(end), ..plan.clone() })
        })
        .await
    }

    /// Applies `change` to the stored plan (`None`: nothing to change),
    /// conditional on the balance not having moved since it was read; then
    /// writes down what the new plan makes due.
    async fn change_plan<F>(&self, user: &UserId, change: F) -> Result<Balance>
    where
        F: Fn(Option<&Plan>, Timestamp) -> Option<Plan>,
    {
        for attempt in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let stored = self.caught_up(user, now).await?;
            let Some(plan) = change(stored.books.plan.as_ref(), now) else {
                return Ok(stored.books.at(user.clone(), now));
            };
            let mut write = BalanceWrite::new();
            write.expect("updatedAt", stored.books.updated_at.map(|at| n(at.millis())));
            write.set("plan", AttributeValue::M(to_item(&PlanItem::of(&plan))?));
            // The new plan's first allowance: the current period's, unless
            // that one was already granted (then the next period's).
            let current = plan.period_at(now).map(|(start, _)| start);
            match (current, stored.books.plan_period) {
                (Some(start), Some(last)) if start <= last => write.set(PLAN_PERIOD, n(start.millis())),
                (_, Some(_)) => write.remove(PLAN_PERIOD),
                (_, None) => &mut write,
            };
            // Due now: should writing the first allowance down below fail,
            // the job finds it.
            write
                .expect("expiresAt", stored.due.map(|at| n(at.millis())))
                .set("pendingShard", s(balance_shard(user)))
                .set("expiresAt", n(now.millis()));
            match self.tx(vec![self.store.tx_update(write.build(user, now))?]).await {
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
