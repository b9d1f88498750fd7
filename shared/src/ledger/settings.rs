//! A user's settings that live on the balance item, so each stream image of
//! the balance carries them (the low-balance threshold the events compare
//! `available` with).

use serde::Serialize;

use super::Ledger;
use crate::domain::UserId;
use crate::error::Result;
use crate::store::{n, BalanceWrite, LOW_BALANCE_THRESHOLD};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub user_id: UserId,
    /// `None`: the deployment's default (`CREDITS_LOW_BALANCE_THRESHOLD`).
    pub low_balance_threshold: Option<u64>,
}

impl Ledger {
    /// Sets (or, with `None`, clears back to the default) the user's
    /// low-balance threshold; 0 turns `balance.low` off for them.
    pub async fn set_settings(&self, user: &UserId, low_balance_threshold: Option<u64>) -> Result<Settings> {
        let mut write = BalanceWrite::new();
        match low_balance_threshold {
            Some(threshold) => write.set(LOW_BALANCE_THRESHOLD, n(threshold)),
            None => write.remove(LOW_BALANCE_THRESHOLD),
        };
        self.write_settings(user, write).await?;
        Ok(Settings { user_id: user.clone(), low_balance_threshold })
    }

    /// Writes settings that live on the balance item (this file's, and
    /// auto-recharge's), retrying conflicts with the user's other writes.
    pub(super) async fn write_settings(&self, user: &UserId, write: BalanceWrite) -> Result<()> {
        let update = write.build(user, self.clock.now());
        for attempt in 0..super::MAX_ATTEMPTS {
            match self.tx(vec![self.store.tx_update(update.clone())?]).await {
                Ok(()) => return Ok(()),
                Err(failure) => self.retry_or_fail(failure, attempt).await?,
            }
        }
        Err(crate::error::Error::Unavailable("settings kept conflicting".into()))
    }
}
