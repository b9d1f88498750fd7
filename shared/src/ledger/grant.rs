//! Grants: credits added to a user once per idempotency key.

use aws_sdk_dynamodb::types::Update;

use super::{applied_unread, derived_id, request_hash, GrantRequest, Ledger, Outcome, MAX_ATTEMPTS};
use crate::domain::{EntryType, Grant, UserId};
use crate::error::{Error, Result};
use crate::store::{key, n, s, to_item, user_pk, GrantItem, TxFailure};

impl Ledger {
    /// Credits a user once per idempotency key.
    pub async fn grant(&self, user: &UserId, request: GrantRequest) -> Result<Outcome<Grant>> {
        let grant_id = derived_id("grant", user, &request.idempotency_key);
        let hash = request_hash(&request)?;
        for attempt in 0..MAX_ATTEMPTS {
            let now = self.clock.now();
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
                at: now.millis(),
            };
            let balance = Update::builder()
                .set_key(Some(key(user_pk(user), "BALANCE")))
                .update_expression(
                    "SET available = if_not_exists(available, :zero) + :amount, \
                     granted = if_not_exists(granted, :zero) + :amount, \
                     reserved = if_not_exists(reserved, :zero), spent = if_not_exists(spent, :zero), \
                     openHolds = if_not_exists(openHolds, :zero), \
                     userId = :user, entity = :entity, updatedAt = :now",
                )
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":amount", n(request.amount))
                .expression_attribute_values(":user", s(user.as_str()))
                .expression_attribute_values(":entity", s("balance"))
                .expression_attribute_values(":now", n(now.millis()));
            let mut entry =
                self.entry(user, grant_id, EntryType::Grant, request.amount, None, request.description.clone(), now);
            entry.reason = Some(request.reason.as_str().to_owned());
            entry.actor = Some(request.actor.clone());
            let items = vec![
                self.put(to_item(&grant)?, Some("attribute_not_exists(pk)"))?,
                self.update(balance)?,
                self.put(to_item(&entry)?, None)?,
            ];
            match self.tx(items).await {
                Ok(()) => {
                    // Credited: a failed read must not say "may not have been applied".
                    let balance = self.store.get_balance(user).await.map_err(applied_unread)?;
                    return Ok(Outcome::Created(Grant { grant_id, balance }));
                }
                Err(TxFailure::Cancelled(reasons)) if reasons.first().is_some_and(|r| r.condition_failed()) => {
                    let stored_hash = reasons[0]
                        .item
                        .as_ref()
                        .and_then(|item| item.get("requestHash"))
                        .and_then(|v| v.as_s().ok())
                        .cloned();
                    if stored_hash.as_deref() != Some(hash.as_str()) {
                        return Err(Error::IdempotencyKeyReused);
                    }
                    let balance = self.store.get_balance(user).await.map_err(applied_unread)?;
                    return Ok(Outcome::Replayed(Grant { grant_id, balance }));
                }
                Err(failure) => self.retry_or_fail(failure, attempt).await?,
            }
        }
        Err(Error::Unavailable("grant kept conflicting".into()))
    }
}
