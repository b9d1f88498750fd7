//! Configuration from the environment, read once per cold start.

use std::sync::Arc;

use crate::clock::SystemClock;
use crate::prices::Catalog;
use crate::store::{client_from_env, Store};
use crate::webhook::Verifiers;
use crate::{App, Ledger};

pub const DEFAULT_TABLE: &str = "credits";
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// `CREDITS_TABLE`
    pub table: String,
    /// `DYNAMODB_ENDPOINT`: DynamoDB Local or another endpoint.
    pub endpoint: Option<String>,
    /// `CREDITS_RETENTION_DAYS`: how long settled holds are kept.
    pub retention_days: u32,
}

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
        }
    }

    /// The ledger and the webhook verifiers (secrets from the environment).
    pub async fn app(&self) -> App {
        App { ledger: self.ledger().await, verifiers: Arc::new(Verifiers::from_env()) }
    }

    pub async fn ledger(&self) -> Ledger {
        let client = client_from_env(self.endpoint.as_deref()).await;
        Ledger::new(
            Store::new(client, self.table.clone()),
            Arc::new(SystemClock),
            Arc::new(Catalog::default_catalog()),
            self.retention_days,
        )
    }
}
