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
    BALANCE_SK, LOTS_VERSION, PLAN_PERIOD,
};

/// At most this many steps are written down by one write: each is up to
/// two history lines in the write's transaction (100 items at most). More
/// stay due, for the next write.
const MAX_DUE_PER_WRITE: usize = 20;

/// Writes one call makes at most: a balance far behind (a job down for
/// weeks under a daily plan) is caught up over several calls.
const MAX_DUE_WRITES: u32 = 50;

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
        self.write_due_until_done(user, now).await.map(|(stored, _)| stored)
    }

    /// Writes down what is due in `user`'s balance (the scheduled job, for a
    /// balance the due-work index lists): what it wrote, nothing when a
    /// write of the user's came first.
    pub async fn write_down_due(&self, user: &UserId) -> Result<DueWritten> {
        self.write_due_until_done(user, self.clock.now()).await.map(|(_, written)| written)
    }

    /// Writes what is due at `now` until nothing is (over several writes
    /// when much is due), reading the balance again after each; answers the
    /// balance as last read and what this call wrote.
    async fn write_due_until_done(&self, user: &UserId, now: Timestamp) -> Result<(StoredBalance, DueWritten)> {
        let mut written = DueWritten::default();
        let mut conflicts = 0;
        for _ in 0..MAX_DUE_WRITES {
            let stored = self.read_balance(user).await?;
            let Some(DueWrite { write, lines, steps }) = self.due_write(user, &stored, now)? else {
                return Ok((stored, written));
            };
            match self.due_tx(user, write, lines, now).await {
                Ok(true) => {
                    let (expiries, refills) = steps.iter().fold((0, 0), |(e, r), step| match step {
                        Step::Expire { .. } => (e + 1, r),
                        Step::Refill { .. } => (e, r + 1),
                    });
                    crate::metrics::count("LotsExpired", expiries);
                    crate::metrics::count("PlanRefills", refills);
                    written.lots_expired += expiries as u32;
                    written.plan_refills += refills as u32;
                }
                // Another writer changed the balance first: read it again.
                Ok(false) => {}
                Err(failure) => {
                    self.retry_or_fail(failure, conflicts).await?;
                    conflicts += 1;
                    if conflicts >= MAX_ATTEMPTS {
                        break;
                    }
                }
            }
        }
        Err(Error::Unavailable("writing down what is due kept conflicting".into()))
    }

    /// One due write: `true` when it applied, `false` when another writer
    /// changed the balance first (the caller reads it again).
    async fn due_tx(
        &self,
        user: &UserId,
        write: BalanceWrite,
        lines: Vec<TransactWriteItem>,
        now: Timestamp,
    ) -> Result<bool, TxFailure> {
        let mut items = vec![self.store.tx_update(write.build(user, now)).map_err(TxFailure::Store)?];
        items.extend(lines);
        match self.tx(items).await {
            Ok(()) => Ok(true),
            Err(TxFailure::Cancelled(reasons)) if reasons.first().is_some_and(|r| r.condition_failed()) => Ok(false),
            Err(failure) => Err(failure),
        }
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
        // Lots with nothing left in them go too (they would still count
        // towards the item's size), whether or not anything else is due.
        if steps.is_empty() && next_due == stored.due && !old.lots.iter().any(|l| l.is_dead()) {
            return Ok(None);
        }
        let mut write = BalanceWrite::new();
        let mut lots_changed = false;
        let touched: std::collections::BTreeSet<_> = old.lots.keys().chain(new.lots.keys()).collect();
        for lot in touched.into_iter().filter(|k| !k.is_base()) {
            let (rem, held) = lot_attributes(lot);
            let before = old.lots.get(lot).filter(|l| !l.expiry_recorded).map(|l| l.remaining);
            match new.lots.get(lot) {
                // Nothing left in it: both attributes go.
                None => {
                    write.expect(&rem, before.map(n)).remove(&rem).expect_zero(&held).remove(&held);
                    lots_changed = true;
                }
                Some(after) => {
                    let after_rem = (!after.expiry_recorded).then_some(after.remaining);
                    if before != after_rem {
                        write.expect(&rem, before.map(n));
                        match after_rem {
                            Some(remaining) => write.set(&rem, n(remaining)),
                            None => write.remove(&rem),
                        };
                    }
                    lots_changed |= old.lots.get(lot).is_none();
                }
            }
        }
        if lots_changed {
            // A grant's check of the lot limit is conditional on this too.
            write.expect(LOTS_VERSION, stored.lots_version.map(n)).add(LOTS_VERSION, 1);
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
            // Never over another line: a collision fails the write, loudly.
            lines.push(self.store.tx_put(to_item(&entry)?, Some("attribute_not_exists(pk)"))?);
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
        let mut granted_so_far = old.granted.get();
        for (start, end, allowance, carried) in refills {
            // Like an expiry's: derived from what was granted before it, so
            // a retry is the same line and no other refill can overwrite it.
            let source =
                Uuid::new_v5(&ID_NAMESPACE, format!("refill\n{user}\n{}\n{granted_so_far}", start.millis()).as_bytes());
            granted_so_far += allowance.get();
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
            lines.push(self.store.tx_put(to_item(&entry)?, Some("attribute_not_exists(pk)"))?);
        }
        Ok(lines)
    }
}
