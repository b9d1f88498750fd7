//! What falls due in a balance, lot expiries and plan refills, written down
//! exactly once by whichever comes first: a write of the user's (which
//! writes it down before its own change) or the scheduled job, which finds
//! the balance in the due-work index. Reads never wait for either: they
//! apply what is due in memory.

use aws_sdk_dynamodb::types::TransactWriteItem;
use uuid::Uuid;

use super::{Ledger, ID_NAMESPACE, MAX_ATTEMPTS};
use crate::domain::{Allocation, Balance, Books, Credits, EntryType, GrantReason, Plan, Step, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::store::{
    balance_shard, key, lot_attributes, n, s, to_item, user_pk, BalanceWrite, LotPartItem, StoredBalance, TxFailure,
    BALANCE_SK, LOT_COUNT, PLAN_PERIOD,
};

/// At most this many steps are written down by one write: each is up to
/// two history lines in the write's transaction (100 items at most). More
/// stay due, for the next write.
const MAX_DUE_PER_WRITE: usize = 20;

/// The write that records what is due, its history lines, and the steps.
struct DueWrite {
    write: BalanceWrite,
    lines: Vec<TransactWriteItem>,
    steps: Vec<Step>,
}

/// What the job wrote down for one balance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DueWritten {
    pub lots_expired: u32,
    pub plan_refills: u32,
}

/// Who the history says granted a plan's allowance.
pub const PLAN_ACTOR: &str = "plan";

impl Ledger {
    /// The balance a read sees now: what is due has happened, whether or not
    /// it is written down yet.
    pub async fn balance(&self, user: &UserId) -> Result<Balance> {
        Ok(self.read_balance(user).await?.books.at(user.clone(), self.clock.now()))
    }

    pub(super) async fn read_balance(&self, user: &UserId) -> Result<StoredBalance> {
        Ok(match self.store.get(key(user_pk(user), BALANCE_SK)).await? {
            Some(item) => StoredBalance::from_item(&item),
            None => StoredBalance::default(),
        })
    }

    /// The balance with everything due at `now` written down: what a write
    /// of the user's decides from.
    pub(super) async fn caught_up(&self, user: &UserId, now: Timestamp) -> Result<StoredBalance> {
        for attempt in 0..MAX_ATTEMPTS {
            let stored = self.read_balance(user).await?;
            let Some(DueWrite { write, lines, .. }) = self.due_write(user, &stored, now)? else { return Ok(stored) };
            let mut items = vec![self.update(write.build(user, now))?];
            items.extend(lines);
            match self.tx(items).await {
                // Written, or written by someone else first: read again.
                Ok(()) => {}
                Err(TxFailure::Cancelled(reasons)) if reasons.first().is_some_and(|r| r.condition_failed()) => {}
                Err(failure) => self.retry_or_fail(failure, attempt).await?,
            }
        }
        Err(Error::Unavailable("writing down what is due kept conflicting".into()))
    }

    /// Writes down what is due in `user`'s balance (the scheduled job, for a
    /// balance the due-work index lists): what it wrote, nothing when a
    /// write of the user's came first.
    pub async fn write_down_due(&self, user: &UserId) -> Result<DueWritten> {
        let mut written = DueWritten::default();
        for attempt in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let stored = self.read_balance(user).await?;
            let Some(DueWrite { write, lines, steps }) = self.due_write(user, &stored, now)? else {
                return Ok(written);
            };
            let mut items = vec![self.update(write.build(user, now))?];
            items.extend(lines);
            match self.tx(items).await {
                Ok(()) => {
                    for step in steps {
                        match step {
                            Step::Expire { .. } => written.lots_expired += 1,
                            Step::Refill { .. } => written.plan_refills += 1,
                        }
                    }
                    crate::metrics::count("LotsExpired", u64::from(written.lots_expired));
                    crate::metrics::count("PlanRefills", u64::from(written.plan_refills));
                }
                Err(TxFailure::Cancelled(reasons)) if reasons.first().is_some_and(|r| r.condition_failed()) => {}
                Err(failure) => self.retry_or_fail(failure, attempt).await?,
            }
        }
        Err(Error::Unavailable("writing down what is due kept conflicting".into()))
    }

    /// The write that records what is due in `stored` at `now` (at most
    /// [`MAX_DUE_PER_WRITE`] steps), with its history lines; `None` when
    /// nothing is due and the due-work index entry is right. Every figure it
    /// changes is conditional on the value read, so two writers cannot both
    /// record the same step.
    fn due_write(&self, user: &UserId, stored: &StoredBalance, now: Timestamp) -> Result<Option<DueWrite>> {
        let old = &stored.books;
        let (new, steps) = old.due(now, MAX_DUE_PER_WRITE);
        let next_due = new.next_due(now);
        if steps.is_empty() && next_due == stored.due {
            return Ok(None);
        }
        let mut write = BalanceWrite::new();
        let touched: std::collections::BTreeSet<_> = old.lots.keys().chain(new.lots.keys()).collect();
        for lot in touched.into_iter().filter(|k| !k.is_base()) {
            let (rem, held) = lot_attributes(lot);
            let before = old.lots.get(lot).filter(|l| !l.expiry_recorded).map(|l| l.remaining);
            let after = new.lots.get(lot).filter(|l| !l.expiry_recorded).map(|l| l.remaining);
            if before != after {
                write.expect(&rem, before.map(n));
                match after {
                    Some(remaining) => write.set(&rem, n(remaining)),
                    None => write.remove(&rem),
                };
            }
            if new.lots.get(lot).is_some_and(|l| l.is_dead()) && old.lots.get(lot).is_some() {
                write.expect_zero(&held).remove(&held);
            }
        }
        let counted = u64::from(new.lots.counted());
        if stored.lot_count != Some(counted) {
            write.expect(LOT_COUNT, stored.lot_count.map(n)).set(LOT_COUNT, n(counted));
        }
        write
            .add("expired", (new.expired.get() - old.expired.get()) as i64)
            .add("granted", (new.granted.get() - old.granted.get()) as i64);
        if new.plan_period != old.plan_period {
            write.expect(PLAN_PERIOD, old.plan_period.map(|at| n(at.millis())));
            if let Some(start) = new.plan_period {
                write.set(PLAN_PERIOD, n(start.millis()));
            }
        }
        if next_due != stored.due {
            // Conditional on the entry as read: two writes moving it at once
            // must not leave it later than either wants.
            write.expect("expiresAt", stored.due.map(|at| n(at.millis())));
            match next_due {
                Some(at) => write.set("pendingShard", s(balance_shard(user))).set("expiresAt", n(at.millis())),
                None => write.remove("pendingShard").remove("expiresAt"),
            };
        }
        let lines = self.due_lines(user, old, &steps)?;
        Ok(Some(DueWrite { write, lines, steps }))
    }

    /// The history lines of what fell due: an expiry is a `grant_expired`
    /// line dated at the lot's expiry; a refill a `plan_refill` grant dated
    /// at the period's start (noting what it carried over) and a
    /// `grant_expired` line for the previous allowance it did not carry.
    fn due_lines(&self, user: &UserId, old: &Books, steps: &[Step]) -> Result<Vec<TransactWriteItem>> {
        let mut lines = Vec::new();
        let mut expired_so_far = old.expired.get();
        let mut expiry_line = |lot, amount: Credits, at: Timestamp| -> Result<()> {
            if amount == Credits::ZERO {
                return Ok(());
            }
            // Derived from what was written down before it, so that a retry
            // of this write is the same line, and a later expiry of the same
            // lot (credits a skewed clock let back in) a line of its own.
            let source = Uuid::new_v5(
                &ID_NAMESPACE,
                format!("lot-expiry\n{user}\n{}\n{expired_so_far}", crate::domain::LotKey::name(lot)).as_bytes(),
            );
            expired_so_far += amount.get();
            let mut entry = self.entry(user, source, EntryType::GrantExpired, amount, None, None, at);
            entry.lots = Some(LotPartItem::from_allocation(&Allocation(vec![(lot, amount)])));
            lines.push(self.put(to_item(&entry)?, None)?);
            Ok(())
        };
        let mut refills = Vec::new();
        for step in steps {
            match *step {
                Step::Expire { lot, amount } => expiry_line(lot, amount, lot.expires_at.unwrap_or(Timestamp(0)))?,
                Step::Refill { start, end, allowance, carried, expired } => {
                    expiry_line(Plan::lot(start), expired, start)?;
                    refills.push((start, end, allowance, carried));
                }
            }
        }
        let name = old.plan.as_ref().map_or("plan", |p| p.name.as_str());
        for (start, end, allowance, carried) in refills {
            let source = Uuid::new_v5(&ID_NAMESPACE, format!("refill\n{user}\n{}", start.millis()).as_bytes());
            let description = match carried {
                Credits::ZERO => format!("{name}: allowance until {}", end.to_rfc3339()),
                carried => format!("{name}: allowance until {}, {carried} carried over", end.to_rfc3339()),
            };
            let mut entry = self.entry(user, source, EntryType::Grant, allowance, None, Some(description), start);
            entry.reason = Some(GrantReason::PlanRefill.as_str().to_owned());
            entry.actor = Some(PLAN_ACTOR.to_owned());
            entry.lots = Some(LotPartItem::from_allocation(&Allocation(vec![(Plan::lot(end), allowance)])));
            if carried > Credits::ZERO {
                entry.rollover = Some(LotPartItem::from_allocation(&Allocation(vec![(Plan::lot(start), carried)])));
            }
            lines.push(self.put(to_item(&entry)?, None)?);
        }
        Ok(lines)
    }
}
