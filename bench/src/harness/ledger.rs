//! A ledger over a table of its own, with the request meter on its client;
//! the users, reserve requests and grants the sections make.

use std::sync::Arc;

use credits_shared::clock::ManualClock;
use credits_shared::domain::{GrantReason, UserId};
use credits_shared::ledger::{GrantRequest, ReserveRequest};
use credits_shared::prices::Catalog;
use credits_shared::store::Store;
use credits_shared::Ledger;

use super::meter::Meter;

pub struct Env {
    pub ledger: Ledger,
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub meter: Meter,
}

pub async fn env(sdk: &aws_config::SdkConfig) -> Result<Env, String> {
    let meter = Meter::default();
    let config = aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(meter.clone()).build();
    let store = Store::new(aws_sdk_dynamodb::Client::from_conf(config), format!("b-{}", uuid::Uuid::new_v4().simple()));
    store.create_table_if_missing().await.map_err(|e| e.to_string())?;
    let clock = ManualClock::starting_now();
    let ledger = Ledger::new(store.clone(), clock.clone(), Arc::new(Catalog::default_catalog()), 90);
    Ok(Env { ledger, store, clock, meter })
}

pub fn user(name: &str) -> UserId {
    UserId::parse(&format!("{name}-{}", uuid::Uuid::new_v4().simple())).unwrap_or_else(|| unreachable!())
}

pub fn request(operation: &str, units: u32) -> ReserveRequest {
    ReserveRequest::new(operation, units)
}

pub async fn grant(ledger: &Ledger, user: &UserId, amount: u64) -> Result<(), String> {
    let request = GrantRequest::new(amount, GrantReason::Purchase, &uuid::Uuid::new_v4().to_string(), "bench");
    ledger.grant(user, request).await.map(|_| ()).map_err(|e| e.to_string())
}
