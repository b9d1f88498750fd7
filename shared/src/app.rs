//! What a function serves with: built once per cold start.

use std::sync::Arc;

use crate::domain::principal::TrustedClients;
use crate::inbound::Verifiers;
use crate::ledger::Ledger;

#[derive(Clone, Debug)]
pub struct App {
    pub ledger: Ledger,
    pub verifiers: Arc<Verifiers>,
    /// The app clients whose tokens act as the server or an admin.
    pub trusted: TrustedClients,
}
