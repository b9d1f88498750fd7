//! The local runner: the dev server behind `make run`, DynamoDB Local, and
//! the operator CLI `credits`.

pub mod check;
pub mod cors;
pub mod devserver;
pub mod events;
pub mod operate;
pub mod serve;
pub mod token;
