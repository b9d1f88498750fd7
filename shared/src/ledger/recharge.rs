//! Auto-recharge's settings: which pack a user's saved card buys when their
//! balance falls below their threshold, and at most how often a month. The
//! settings, the saved card and this month's count all live on the balance
//! item (`store::AUTO_RECHARGE` and its neighbours). The threshold is the
//! user's low-balance threshold, the one `balance.low` compares with.

use serde::Serialize;

use super::Ledger;
use crate::domain::recharge::recharges_this_month;
use crate::domain::{Credits, Timestamp, UserId};
use crate::error::Result;
use crate::store::{
    from_item, key, n, to_item, user_pk, AutoRechargeItem, BalanceWrite, RechargeState, AUTO_RECHARGE, BALANCE_SK,
    LOW_BALANCE_THRESHOLD,
};
use crate::validate::{Invalid, Problem};

/// What `PUT /v1/auto-recharge` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RechargeRequest {
    /// A pack of the catalog with a price (`amountTotal` and `currency`).
    pub pack: String,
    /// Recharge when `available` falls below this.
    pub threshold: Credits,
    pub monthly_limit: u32,
    /// Who asks: kept with the terms, as the consent to charge the card.
    pub actor: String,
}

/// `GET /v1/auto-recharge`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoRecharge {
    pub user_id: UserId,
    pub enabled: bool,
    pub pack: Option<String>,
    pub threshold: Option<u64>,
    pub monthly_limit: Option<u32>,
    pub recharges_this_month: u32,
    pub card_saved: bool,
    pub disabled_reason: Option<String>,
    pub last_recharge: Option<LastRecharge>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRecharge {
    pub id: String,
    pub status: String,
    pub code: Option<String>,
    pub payment_intent: Option<String>,
    pub credits: u64,
    pub at: Timestamp,
}

impl Ledger {
    /// Turns auto-recharge on (or changes it) and sets the user's threshold.
    /// Accepted before a card is saved: nothing is charged until one is.
    pub async fn set_auto_recharge(&self, user: &UserId, request: RechargeRequest) -> Result<AutoRecharge> {
        let prices = self.prices().await?;
        let priced = prices.pack(&request.pack).and_then(|p| Some((p.credits, p.amount_total?, p.currency.clone()?)));
        let Some((credits, amount_total, currency)) = priced else {
            return Err(Invalid::new("pack", Problem::NotAPack).into());
        };
        let settings = AutoRechargeItem {
            pack: request.pack,
            monthly_limit: request.monthly_limit,
            enabled: true,
            disabled_reason: None,
            credits: credits.get(),
            amount_total,
            currency,
            actor: request.actor,
            at: self.clock.now().millis(),
        };
        let mut write = BalanceWrite::new();
        write.set(AUTO_RECHARGE, to_map(&settings)?).set(LOW_BALANCE_THRESHOLD, n(request.threshold.get()));
        self.write_settings(user, write).await?;
        self.auto_recharge(user).await
    }

    /// Turns auto-recharge off; the threshold stays the user's.
    pub async fn end_auto_recharge(&self, user: &UserId) -> Result<AutoRecharge> {
        let mut write = BalanceWrite::new();
        write.remove(AUTO_RECHARGE);
        self.write_settings(user, write).await?;
        self.auto_recharge(user).await
    }

    pub async fn auto_recharge(&self, user: &UserId) -> Result<AutoRecharge> {
        let state: RechargeState = match self.store.get(key(user_pk(user), BALANCE_SK)).await? {
            Some(item) => from_item(item)?,
            None => RechargeState::default(),
        };
        let settings = state.auto_recharge.as_ref();
        Ok(AutoRecharge {
            user_id: user.clone(),
            enabled: settings.is_some_and(|s| s.enabled),
            pack: settings.map(|s| s.pack.clone()),
            threshold: state.low_balance_threshold,
            monthly_limit: settings.map(|s| s.monthly_limit),
            recharges_this_month: recharges_this_month(
                state.recharge_month.as_deref(),
                state.recharges_in_month,
                self.clock.now(),
            ),
            card_saved: state.saved_card.is_some(),
            disabled_reason: settings.and_then(|s| s.disabled_reason.clone()),
            last_recharge: state.last_recharge.map(|r| LastRecharge {
                id: r.id,
                status: r.status,
                code: r.code,
                payment_intent: r.payment_intent,
                credits: r.credits,
                at: Timestamp(r.at),
            }),
        })
    }
}

/// A settings map as DynamoDB stores it.
fn to_map(settings: &AutoRechargeItem) -> Result<aws_sdk_dynamodb::types::AttributeValue> {
    Ok(aws_sdk_dynamodb::types::AttributeValue::M(to_item(settings)?))
}
