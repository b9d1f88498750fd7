//! The one error type. Every failure a caller can see is a variant here, and
//! `http::problem` maps each to a status, a stable code and a message.

use crate::domain::{Credits, HoldStatus};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid request: {0}")]
    Validation(#[from] crate::validate::Invalid),
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    /// A user token on a route that moves credits.
    #[error("a user token cannot change holds")]
    ReadOnlyToken,
    #[error("insufficient credits: available {available}, required {required}")]
    InsufficientCredits { available: Credits, required: Credits },
    #[error("reservation not found")]
    HoldNotFound,
    #[error("reservation is {0:?}, not pending")]
    HoldNotPending(HoldStatus),
    #[error("reservation expired")]
    HoldExpired,
    #[error("task already linked to another reservation")]
    TaskAlreadyLinked,
    #[error("too many open holds: {open} of {limit}")]
    TooManyOpenHolds { open: u64, limit: u64 },
    #[error("too many lots (limit {limit})")]
    TooManyLots { limit: u32 },
    #[error("webhook endpoint not found")]
    EndpointNotFound,
    #[error("too many webhook endpoints (limit {limit})")]
    TooManyEndpoints { limit: u32 },
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    #[error("route not found")]
    RouteNotFound,
    /// The change may or may not have been applied.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The change was applied, but reading its result failed.
    #[error("applied, result unreadable: {0}")]
    AppliedUnread(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
