//! What the sections share: DynamoDB Local and a ledger over a table of
//! its own, the request meter on its client, requests to the handler, item
//! sizes, percentiles and prices, and the programs some sections start
//! (cargo builds, the dev server, moto, a webhook receiver, a local Lambda
//! Runtime API).

pub mod cargo;
pub mod dev_server;
pub mod http;
pub mod ledger;
pub mod local;
pub mod meter;
pub mod moto;
pub mod receiver;
pub mod runtime_api;
pub mod sizes;
pub mod stats;
