//! Stripe purchases in the model: Checkout Sessions of the model's catalog
//! packs paid at once (one pack expiring, one the catalog lacks, one paid
//! at another total, one free pack given at 100 % off and one pack not free
//! given so, one session naming only `metadata.credits`), unpaid then paid
//! later, refunds (cumulative, several per charge, out of order, floored)
//! and disputes taking credits back in burn order, disputes closed won
//! (what the dispute took given back, once) or lost, events redelivered
//! byte for byte or raced, take-backs before their session (parked under
//! the payment, applied when the purchase is recorded), and events ignored
//! with their reason. The model keeps its own rules for what a session
//! buys, and its own take-back arithmetic.
//!
//! The parts: `products` (what each session buys, and the model's
//! catalog), `generate` (the events an episode sends), `races` (which
//! events of a batch race, and the steps a payment's look at parked
//! take-backs adds), `ledger` (the model's rules for purchases, take-backs
//! and disputes), `send` (events shaped and signed as Stripe sends them,
//! answers read back) and `compare` (the table's Stripe records against
//! the model's).

mod compare;
mod generate;
mod ledger;
mod products;
mod races;
mod send;

pub use generate::StripeEvent;
pub(crate) use generate::{op, op_name};
pub(crate) use ledger::Purchases;
pub(crate) use products::catalog;
pub(crate) use races::{Racing, Step};
pub(crate) use send::{answer_of, StripeSent};
