//! What falls due in a balance: lot expiries, written down exactly once by
//! whichever comes first, a write of the user's that reads the balance or
//! the scheduled job, which finds the balance in the due-work index.

use aws_sdk_dynamodb::types::TransactWriteItem;
use uuid::Uuid;

use super::{Ledger, ID_NAMESPACE, MAX_ATTEMPTS};
use crate::domain::{Allocation, Balance, Credits, EntryType, LotKey, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::store::{
    balance_shard, key, lot_attributes, n, s, to_item, user_pk, BalanceWrite, LotPartItem, StoredBalance, TxFailure, BALANCE_SK,
    LOT_COUNT,
};

/// At most this many expiries are written down by one write: each is a
/// history line in the write's transaction (100 items at most). More stay
/// due, for the next write or the job.
pub(super) const MAX_DUE_PER_WRITE: usize = 20;

impl Ledger {
    /// The balance a read sees now: lots past their expiry count as
    /// expired already, whether or not that is written down.
    pub async fn balance(&self, user: &UserId) -> Result<Balance> {
        Ok(self.read_balance(user).await?.books.at(user.clone(), self.clock.now()))
    }

    /// Writes down what is due in `user`'s balance (the scheduled job, for
    /// a balance the due-work index lists): the number of lot expiries
    /// written, 0 when a write of the user's came first.
    pub async fn write_down_due(&self, user: &UserId) -> Result<u32> {
        for attempt in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            let stored = self.read_balance(user).await?;
            let mut write = BalanceWrite::new();
            let caught_up = self.catch_up(user, &stored, &mut write, None, now)?;
            if write.is_empty() {
                return Ok(0);
            }
            let mut items = vec![self.update(write.build(user, now))?];
            items.extend(caught_up.lines);
            match self.tx(items).await {
                Ok(()) => {
                    crate::metrics::count("LotsExpired", u64::from(caught_up.expiries));
                    return Ok(caught_up.expiries);
                }
                // Someone wrote the balance since it was read: read it again.
                Err(TxFailure::Cancelled(reasons)) if reasons.first().is_some_and(|r| r.condition_failed()) => {}
                Err(failure) => self.retry_or_fail(failure, attempt).await?,
            }
        }
        Err(Error::Unavailable("writing down due lots kept conflicting".into()))
    }

    pub(super) async fn read_balance(&self, user: &UserId) -> Result<StoredBalance> {
        Ok(match self.store.get(key(user_pk(user), BALANCE_SK)).await? {
            Some(item) => StoredBalance::from_item(&item),
            None => StoredBalance::default(),
        })
    }

    /// Adds to `write` what is due in `stored` at `now`: each expired lot's
    /// remaining credits move to `expired` (conditional on the figure read,
    /// so the expiry is written down once) with a `grant_expired` line dated
    /// at the lot's expiry; lots with nothing left go; the balance's entry
    /// in the due-work index moves to the next expiry. `new_lot` is a lot
    /// the same write creates.
    pub(super) fn catch_up(
        &self,
        user: &UserId,
        stored: &StoredBalance,
        write: &mut BalanceWrite,
        new_lot: Option<LotKey>,
        now: Timestamp,
    ) -> Result<CaughtUp> {
        let mut lines = Vec::new();
        let mut gone = 0i64;
        let due = stored.books.lots.due_expiries(now);
        let recorded: Vec<LotKey> = due.iter().take(MAX_DUE_PER_WRITE).map(|lot| lot.key).collect();
        let mut expired_so_far = stored.books.expired.get();
        for lot in due.iter().take(MAX_DUE_PER_WRITE) {
            let (rem, held) = lot_attributes(lot.key);
            write.expect(&rem, Some(n(lot.remaining))).remove(&rem).add("expired", lot.remaining.get() as i64);
            if lot.held == Credits::ZERO {
                write.expect_zero(&held).remove(&held);
                gone += 1;
            }
            if lot.remaining > Credits::ZERO {
                // Derived from what was written down before it, so a second
                // expiry of the same lot (credits a skewed clock let back in)
                // is a line of its own, and a retry of this one is not.
                let source = Uuid::new_v5(
                    &ID_NAMESPACE,
                    format!("lot-expiry\n{user}\n{}\n{expired_so_far}", lot.key.name()).as_bytes(),
                );
                expired_so_far += lot.remaining.get();
                let at = lot.key.expires_at.unwrap_or(now);
                let mut entry = self.entry(user, source, EntryType::GrantExpired, lot.remaining, None, None, at);
                entry.lots = Some(LotPartItem::from_allocation(&Allocation(vec![(lot.key, lot.remaining)])));
                lines.push(self.put(to_item(&entry)?, None)?);
            }
        }
        for lot in stored.books.lots.iter().filter(|lot| lot.is_dead()) {
            let (_, held) = lot_attributes(lot.key);
            write.expect(&held, Some(n(0))).remove(&held);
            gone += 1;
        }
        if gone > 0 {
            write.add(LOT_COUNT, -gone);
        }
        let lots_left = stored.books.lots.counted().saturating_sub(gone as u32);
        let next_due = stored
            .books
            .lots
            .iter()
            .filter(|lot| !lot.expiry_recorded && !recorded.contains(&lot.key))
            .filter_map(|lot| lot.key.expires_at)
            .chain(new_lot.and_then(|lot| lot.expires_at))
            .min();
        if next_due != stored.due {
            // Conditional on the entry as read: two writes moving it at once
            // must not leave it later than either wants.
            write.expect("expiresAt", stored.due.map(|at| n(at.millis())));
            match next_due {
                Some(at) => write.set("pendingShard", s(balance_shard(user))).set("expiresAt", n(at.millis())),
                None => write.remove("pendingShard").remove("expiresAt"),
            };
        }
        Ok(CaughtUp { lines, expiries: recorded.len() as u32, lots_left })
    }
}

/// What a write took on from what was due.
pub(super) struct CaughtUp {
    /// History lines to put in the same transaction.
    pub lines: Vec<TransactWriteItem>,
    /// Lot expiries written down.
    pub expiries: u32,
    /// Lots (other than the base) left after it.
    pub lots_left: u32,
}
