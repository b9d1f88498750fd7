//! Debits: credits taken back from what is available (a refunded purchase,
//! a chargeback), in burn order, once per idempotency key.

use super::{applied_unread, derived_id, request_hash, DebitRequest, Ledger, Outcome, MAX_ATTEMPTS};
use crate::domain::{Credits, Debit, EntryType, LotPart, UserId};
use crate::error::{Error, Result};
use aws_sdk_dynamodb::types::TransactWriteItem;

use crate::store::{from_item, key, to_item, user_pk, BalanceWrite, DebitItem, LotPartItem, TxFailure};

impl Ledger {
    /// Takes `amount` back from what is available, or nothing (402) when
    /// less is; with `partial`, takes what there is (maybe 0).
    pub async fn debit(&self, user: &UserId, request: DebitRequest) -> Result<Outcome<Debit>> {
        self.debit_along(user, request, &|_| Ok(Vec::new()))
            .await?
            .ok_or_else(|| Error::Internal("a debit with nothing along was refused by nothing along".into()))
    }

    /// A debit with `along(taken)` written in the same transaction (a
    /// purchase's record of what was taken back). `None` when a condition of
    /// those items failed: the caller reads again and decides again.
    pub(crate) async fn debit_along(
        &self,
        user: &UserId,
        request: DebitRequest,
        along: &(dyn Fn(Credits) -> Result<Vec<TransactWriteItem>> + Sync),
    ) -> Result<Option<Outcome<Debit>>> {
        let debit_id = derived_id("debit", user, &request.idempotency_key);
        let hash = request_hash(&request)?;
        let sk = format!("DEBIT#{debit_id}");
        for attempt in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
            if let Some(replayed) = self.debit_replay(user, &sk, &hash).await? {
                return Ok(Some(replayed));
            }
            let stored = self.caught_up(user, now).await?;
            let taken = match request.partial {
                true => stored.books.lots.take_up_to(request.amount, now),
                false => match stored.books.lots.take(request.amount, now) {
                    Ok(taken) => taken,
                    Err(available) => return Err(Error::InsufficientCredits { available, required: request.amount }),
                },
            };
            let mut write = BalanceWrite::new();
            write.debit(&taken);
            let item = DebitItem {
                pk: user_pk(user),
                sk: sk.clone(),
                entity: "debit".into(),
                debit_id,
                user_id: user.clone(),
                amount: taken.total().get(),
                requested: request.amount.get(),
                reason: request.reason,
                description: request.description.clone(),
                actor: request.actor.clone(),
                request_hash: hash.clone(),
                lots: LotPartItem::from_allocation(&taken),
                at: now.millis(),
            };
            let mut entry =
                self.entry(user, debit_id, EntryType::Debit, taken.total(), None, request.description.clone(), now);
            entry.reason = Some(request.reason.as_str().to_owned());
            entry.actor = Some(request.actor.clone());
            entry.lots = Some(LotPartItem::from_allocation(&taken));
            let mut items = vec![
                self.store.tx_put(to_item(&item)?, Some("attribute_not_exists(pk)"))?,
                self.store.tx_update(write.build(user, now))?,
                self.store.tx_put(to_item(&entry)?, None)?,
            ];
            items.extend(along(taken.total())?);
            match self.tx(items).await {
                Ok(()) => {
                    crate::metrics::count("Debited", taken.total().get());
                    let balance = self.balance(user).await.map_err(applied_unread)?;
                    return Ok(Some(Outcome::Created(debit_of(item, balance))));
                }
                // The same key at once (its put failed) or the balance moved
                // since it was read: look again.
                Err(TxFailure::Cancelled(reasons)) if reasons.iter().take(2).any(|r| r.condition_failed()) => {}
                Err(TxFailure::Cancelled(reasons)) if reasons.iter().skip(3).any(|r| r.condition_failed()) => {
                    return Ok(None)
                }
                Err(failure) => self.retry_or_fail(failure, attempt).await?,
            }
        }
        Err(Error::Unavailable("debit kept conflicting".into()))
    }

    async fn debit_replay(&self, user: &UserId, sk: &str, hash: &str) -> Result<Option<Outcome<Debit>>> {
        let Some(item) = self.store.get(key(user_pk(user), sk)).await? else { return Ok(None) };
        let item: DebitItem = from_item(item)?;
        if item.request_hash != hash {
            return Err(Error::IdempotencyKeyReused);
        }
        let balance = self.balance(user).await.map_err(applied_unread)?;
        Ok(Some(Outcome::Replayed(debit_of(item, balance))))
    }
}

fn debit_of(item: DebitItem, balance: crate::domain::Balance) -> Debit {
    Debit {
        debit_id: item.debit_id,
        amount: Credits(item.amount),
        requested: Credits(item.requested),
        lots: LotPartItem::to_allocation(&item.lots).0.into_iter().map(|(lot, c)| LotPart::new(lot, c)).collect(),
        balance,
    }
}
