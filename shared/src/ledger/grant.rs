//! Grants: credits added to a user's lot once per idempotency key.

use super::{applied_unread, derived_id, request_hash, GrantRequest, Ledger, Outcome, MAX_ATTEMPTS};
use crate::domain::{Allocation, EntryType, Grant, UserId, MAX_LOTS};
use crate::error::{Error, Result};
use crate::store::{
    balance_shard, lot_attributes, n, s, to_item, user_pk, BalanceWrite, GrantItem, LotPartItem, TxFailure,
    LOTS_VERSION,
};
use crate::validate::{Invalid, Problem};

impl Ledger {
    /// Credits a user once per idempotency key, into the lot
    /// `(priority, expiresAt)` (a live lot of that pair grows).
    pub async fn grant(&self, user: &UserId, request: GrantRequest) -> Result<Outcome<Grant>> {
        let grant_id = derived_id("grant", user, &request.idempotency_key);
        let hash = request_hash(&request)?;
        let lot = request.lot();
        for attempt in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            if lot.expired_at(now) {
                // A retry after the lot's expiry still finds its grant.
                if let Some(replayed) = self.grant_replay(user, grant_id, &hash).await? {
                    return Ok(replayed);
                }
                return Err(Invalid::new("expiresAt", Problem::NotInFuture).into());
            }
            let stored = self.caught_up(user, now).await?;
            let mut write = BalanceWrite::new();
            let (remaining, _) = lot_attributes(lot);
            if stored.books.lots.get(lot).is_none_or(|l| !l.is_live()) {
                // One more live lot.
                if stored.books.lots.live_count() >= MAX_LOTS {
                    // A replay must still answer as one, over the limit or not.
                    if let Some(replayed) = self.grant_replay(user, grant_id, &hash).await? {
                        return Ok(replayed);
                    }
                    return Err(Error::TooManyLots { limit: MAX_LOTS });
                }
                // Conditional on the lots read: grants making lots live at
                // once cannot pass the limit together, nor race the write
                // that removes an empty lot.
                write.expect(LOTS_VERSION, stored.lots_version.map(n)).add(LOTS_VERSION, 1);
                if let Some(at) = lot.expires_at {
                    // Its expiry falls due: the due-work index must find it,
                    // so the entry as read must still be there when this
                    // commits (the job may be moving it).
                    write.expect("expiresAt", stored.due.map(|due| n(due.millis())));
                    if stored.due.is_none_or(|due| at < due) {
                        write.set("pendingShard", s(balance_shard(user))).set("expiresAt", n(at.millis()));
                    }
                }
            }
            write.add(&remaining, request.amount.get() as i64).add("granted", request.amount.get() as i64);
            let grant = GrantItem {
                pk: user_pk(user),
                sk: format!("GRANT#{grant_id}"),
                entity: "grant".into(),
                grant_id,
                user_id: user.clone(),
                amount: request.amount.get(),
                reason: request.reason,
                description: request.description.clone(),
                request_hash: hash.clone(),
                actor: Some(request.actor.clone()),
                priority: Some(lot.priority),
                expires_at: lot.expires_at.map(|at| at.millis()),
                at: now.millis(),
            };
            let mut entry =
                self.entry(user, grant_id, EntryType::Grant, request.amount, None, request.description.clone(), now);
            entry.reason = Some(request.reason.as_str().to_owned());
            entry.actor = Some(request.actor.clone());
            entry.lots = Some(LotPartItem::from_allocation(&Allocation(vec![(lot, request.amount)])));
            let items = vec![
                self.store.tx_put(to_item(&grant)?, Some("attribute_not_exists(pk)"))?,
                self.store.tx_update(write.build(user, now))?,
                self.store.tx_put(to_item(&entry)?, None)?,
            ];
            match self.tx(items).await {
                Ok(()) => {
                    // Credited: a failed read must not say "may not have been applied".
                    let balance = self.balance(user).await.map_err(applied_unread)?;
                    return Ok(Outcome::Created(Grant { grant_id, balance }));
                }
                Err(TxFailure::Cancelled(reasons)) if reasons.first().is_some_and(|r| r.condition_failed()) => {
                    return match self.grant_replay(user, grant_id, &hash).await? {
                        Some(replayed) => Ok(replayed),
                        None => Err(Error::Internal("grant vanished after its put failed".into())),
                    };
                }
                // The balance moved since it was read: read it again.
                Err(TxFailure::Cancelled(reasons)) if reasons.get(1).is_some_and(|r| r.condition_failed()) => {}
                Err(failure) => self.retry_or_fail(failure, attempt).await?,
            }
        }
        Err(Error::Unavailable("grant kept conflicting".into()))
    }

    /// The answer to a grant whose key was used before: the same grant, or
    /// a refusal when the key came with another request.
    async fn grant_replay(&self, user: &UserId, grant_id: uuid::Uuid, hash: &str) -> Result<Option<Outcome<Grant>>> {
        let Some(item) = self.store.get(crate::store::key(user_pk(user), &format!("GRANT#{grant_id}"))).await? else {
            return Ok(None);
        };
        if crate::store::attr_text(&item, "requestHash") != hash {
            return Err(Error::IdempotencyKeyReused);
        }
        let balance = self.balance(user).await.map_err(applied_unread)?;
        Ok(Some(Outcome::Replayed(Grant { grant_id, balance })))
    }
}
