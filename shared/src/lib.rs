//! The credits ledger shared by every function: domain rules, the DynamoDB
//! store, the ledger operations and the HTTP glue.

pub mod address;
pub mod app;
pub mod audit;
pub mod clock;
pub mod config;
pub mod domain;
pub mod entry;
pub mod error;
pub mod events;
pub mod http;
pub mod inbound;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod monitoring;
pub mod prices;
pub mod stats;
pub mod store;
pub mod stripe_api;
pub mod validate;

pub use app::App;
pub use error::{Error, Result};
pub use ledger::Ledger;
