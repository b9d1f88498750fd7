//! The credits ledger shared by every function: domain rules, the DynamoDB
//! store, the ledger operations and the HTTP glue.

pub mod audit;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod ledger;
#[cfg(feature = "local-stream")]
pub mod local_stream;
pub mod metrics;
pub mod monitoring;
pub mod prices;
pub mod stats;
pub mod store;
pub mod validate;

pub use error::{Error, Result};
pub use ledger::Ledger;

/// What a function serves with: built once per cold start.
#[derive(Clone, Debug)]
pub struct App {
    pub ledger: Ledger,
    pub verifiers: std::sync::Arc<webhook::Verifiers>,
    /// The app clients whose tokens act as the server or an admin.
    pub trusted: domain::principal::TrustedClients,
}
pub mod events;
pub mod webhook;
