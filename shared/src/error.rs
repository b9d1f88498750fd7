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
    #[error("insufficient credits: available {available}, required {required}")]
    InsufficientCredits { available: Credits, required: Credits },
    #[error("reservation not found")]
    ReservationNotFound,
    #[error("reservation is {0:?}, not pending")]
    ReservationNotPending(HoldStatus),
    #[error("reservation expired")]
    ReservationExpired,
    #[error("task already linked to another reservation")]
    TaskAlreadyLinked,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    #[error("route not found")]
    RouteNotFound,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
