//! Configuration from the environment, read once per cold start.

use std::sync::Arc;

use crate::app::App;
use crate::clock::SystemClock;
use crate::domain::principal::TrustedClients;
use crate::inbound::Verifiers;
use crate::ledger::Ledger;
use crate::prices::Catalog;
use crate::store::{client_from_env, Store};
use crate::stripe_api::StripeApi;

pub const DEFAULT_TABLE: &str = "credits";
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
pub use crate::ledger::DEFAULT_MAX_OPEN_HOLDS;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `CREDITS_TABLE`
    pub table: String,
    /// `DYNAMODB_ENDPOINT`: DynamoDB Local or another endpoint.
    pub endpoint: Option<String>,
    /// `CREDITS_RETENTION_DAYS`: how long settled holds are kept.
    pub retention_days: u32,
    /// `CREDITS_MAX_OPEN_HOLDS`: pending holds one user may have at once.
    pub max_open_holds: u32,
    /// `CREDITS_SERVER_CLIENT_IDS` and `CREDITS_ADMIN_CLIENT_IDS`.
    pub trusted: TrustedClients,
}

/// A setting that cannot be used: the function (or dev server) does not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(pub String);

impl Config {
    pub fn from_env() -> Config {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Config {
            table: var("CREDITS_TABLE").unwrap_or_else(|| DEFAULT_TABLE.to_owned()),
            endpoint: var("DYNAMODB_ENDPOINT"),
            retention_days: var("CREDITS_RETENTION_DAYS")
                .and_then(|v| v.parse().ok())
                .filter(|days| *days > 0)
                .unwrap_or(DEFAULT_RETENTION_DAYS),
            max_open_holds: var("CREDITS_MAX_OPEN_HOLDS")
                .and_then(|v| v.parse().ok())
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_MAX_OPEN_HOLDS),
            trusted: TrustedClients::new(
                &var("CREDITS_SERVER_CLIENT_IDS").unwrap_or_default(),
                &var("CREDITS_ADMIN_CLIENT_IDS").unwrap_or_default(),
            ),
        }
    }

    /// The ledger (with Stripe's API when a key is set), the webhook
    /// verifiers (secrets from the environment) and the trusted clients;
    /// `Unusable` names a variable that cannot be used.
    pub async fn app(&self) -> Result<App, Unusable> {
        let verifiers = Verifiers::from_env().map_err(Unusable)?;
        let stripe_api = StripeApi::from_env().map_err(Unusable)?;
        let ledger = self.ledger().await.with_stripe_api(stripe_api);
        Ok(App { ledger, verifiers: Arc::new(verifiers), trusted: self.trusted.clone() })
    }

    pub async fn ledger(&self) -> Ledger {
        let client = client_from_env(self.endpoint.as_deref()).await;
        Ledger::new(
            Store::new(client, self.table.clone()),
            Arc::new(SystemClock),
            Arc::new(Catalog::default_catalog()),
            self.retention_days,
        )
        .with_max_open_holds(self.max_open_holds)
    }
}
