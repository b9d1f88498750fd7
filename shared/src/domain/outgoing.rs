//! The types of the events the ledger tells apps about (`events/`), as
//! named on the wire.

use serde::{Deserialize, Serialize};

/// The types of event, as named on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "hold.confirmed")]
    HoldConfirmed,
    #[serde(rename = "hold.released")]
    HoldReleased,
    #[serde(rename = "hold.expired")]
    HoldExpired,
    #[serde(rename = "hold.late_success")]
    HoldLateSuccess,
    #[serde(rename = "grant.created")]
    GrantCreated,
    #[serde(rename = "grant.expiring")]
    GrantExpiring,
    #[serde(rename = "grant.expired")]
    GrantExpired,
    #[serde(rename = "debit.created")]
    DebitCreated,
    #[serde(rename = "refund.created")]
    RefundCreated,
    #[serde(rename = "balance.low")]
    BalanceLow,
    #[serde(rename = "balance.depleted")]
    BalanceDepleted,
    #[serde(rename = "balance.recovered")]
    BalanceRecovered,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::HoldConfirmed,
        Kind::HoldReleased,
        Kind::HoldExpired,
        Kind::HoldLateSuccess,
        Kind::GrantCreated,
        Kind::GrantExpiring,
        Kind::GrantExpired,
        Kind::DebitCreated,
        Kind::RefundCreated,
        Kind::BalanceLow,
        Kind::BalanceDepleted,
        Kind::BalanceRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::HoldConfirmed => "hold.confirmed",
            Kind::HoldReleased => "hold.released",
            Kind::HoldExpired => "hold.expired",
            Kind::HoldLateSuccess => "hold.late_success",
            Kind::GrantCreated => "grant.created",
            Kind::GrantExpiring => "grant.expiring",
            Kind::GrantExpired => "grant.expired",
            Kind::DebitCreated => "debit.created",
            Kind::RefundCreated => "refund.created",
            Kind::BalanceLow => "balance.low",
            Kind::BalanceDepleted => "balance.depleted",
            Kind::BalanceRecovered => "balance.recovered",
        }
    }

    pub fn parse(raw: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == raw)
    }

    /// The wire names, for "must be one of" answers.
    pub const NAMES: &'static [&'static str] = &[
        "hold.confirmed",
        "hold.released",
        "hold.expired",
        "hold.late_success",
        "grant.created",
        "grant.expiring",
        "grant.expired",
        "debit.created",
        "refund.created",
        "balance.low",
        "balance.depleted",
        "balance.recovered",
    ];
}
