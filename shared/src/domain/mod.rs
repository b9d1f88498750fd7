//! Types and money rules without I/O: amounts, holds, their states and the
//! decision of what a settlement request does to a hold.

mod books;
mod hold;
mod lots;
pub mod outgoing;
mod plan;
pub mod principal;
mod purchase;
pub mod recharge;

pub use books::*;
pub use hold::*;
pub use lots::*;
pub use plan::*;
pub use purchase::*;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

/// The largest amount the contract accepts anywhere (grants, prices).
pub const MAX_AMOUNT: u64 = 1_000_000_000;
pub const MAX_UNITS: u32 = 1000;
pub const DEFAULT_TTL_SECONDS: u32 = 1800;
pub const MAX_TTL_SECONDS: u32 = 86_400;

/// Whole credits. Unsigned by construction: no balance figure can go negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Credits(pub u64);

impl Credits {
    pub const ZERO: Credits = Credits(0);

    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for Credits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch, UTC. Stored as a number (so conditions
/// compare numbers), shown as RFC 3339 with milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus_seconds(self, seconds: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(seconds.saturating_mul(1000)))
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.0)
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

/// The user a balance belongs to: the `sub` claim of the caller's token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 256;

    pub fn parse(raw: &str) -> Option<UserId> {
        let ok = !raw.is_empty() && raw.chars().count() <= Self::MAX_LEN && !raw.chars().any(char::is_control);
        ok.then(|| UserId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldStatus {
    Pending,
    Confirmed,
    Released,
    Expired,
    Refunded,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Pending => "pending",
            HoldStatus::Confirmed => "confirmed",
            HoldStatus::Released => "released",
            HoldStatus::Expired => "expired",
            HoldStatus::Refunded => "refunded",
        }
    }
}

/// Who made a change: shown as `settledBy` and in each event's `by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    /// The app's back end (holds placed before the trust model say `client`).
    #[serde(alias = "client")]
    Server,
    Webhook,
    Cleanup,
    Admin,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Server => "server",
            Actor::Webhook => "webhook",
            Actor::Cleanup => "cleanup",
            Actor::Admin => "admin",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Reserved,
    Confirmed,
    Released,
    Expired,
    Refunded,
    TaskLinked,
    /// Units captured while the hold stays open (`final: false`).
    Captured,
    /// `expiresAt` moved (`extend`).
    Extended,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub at: Timestamp,
    pub by: Actor,
    pub amount: Credits,
}

/// The provider whose webhook settles a hold's task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Bfl,
    Generic,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::Bfl, Provider::Generic];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Bfl => "bfl",
            Provider::Generic => "generic",
        }
    }
}

/// A hold ("reservation" in the HTTP contract): credits moved from
/// `available` to `reserved` until exactly one settlement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    pub reservation_id: Uuid,
    pub user_id: UserId,
    pub operation: String,
    pub units: u32,
    pub unit_cost: Credits,
    pub amount: Credits,
    pub status: HoldStatus,
    pub task_id: Option<String>,
    pub provider: Provider,
    pub description: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub captured_units: u32,
    pub captured_amount: Credits,
    pub released_amount: Credits,
    pub settled_at: Option<Timestamp>,
    pub settled_by: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<HoldEvent>>,
    /// Units the closing confirm captured (its replays must name the same).
    #[serde(skip)]
    pub final_units: u32,
    /// What the hold took from which lot, in burn order.
    pub lots: Vec<LotPart>,
}

/// What a hold or a debit took from one lot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LotPart {
    pub priority: u8,
    pub expires_at: Option<Timestamp>,
    pub amount: Credits,
}

impl LotPart {
    pub fn new(lot: LotKey, amount: Credits) -> LotPart {
        LotPart { priority: lot.priority, expires_at: lot.expires_at, amount }
    }
}

/// A balance as a read at one instant sees it:
/// `available + reserved + spent + expired + debited == granted`, always.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub user_id: UserId,
    pub available: Credits,
    pub reserved: Credits,
    pub spent: Credits,
    pub expired: Credits,
    pub debited: Credits,
    pub granted: Credits,
    pub lots: Vec<LotView>,
    pub next_expiry: Option<NextExpiry>,
    pub plan: Option<PlanView>,
    pub updated_at: Option<Timestamp>,
}

/// One live lot as the balance shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LotView {
    pub priority: u8,
    pub expires_at: Option<Timestamp>,
    pub remaining: Credits,
    pub reserved: Credits,
}

/// The user's plan as the balance shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanView {
    pub plan: String,
    pub allowance: Credits,
    pub period: Period,
    pub rollover: Credits,
    pub anchor: Timestamp,
    pub current_period_start: Option<Timestamp>,
    pub current_period_end: Option<Timestamp>,
    /// When a deleted plan stops (the end of the period it was deleted in).
    pub ends_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NextExpiry {
    pub amount: Credits,
    pub at: Timestamp,
}

impl Balance {
    pub fn empty(user_id: UserId) -> Balance {
        Books::default().at(user_id, Timestamp(0))
    }

    pub fn adds_up(&self) -> bool {
        [self.available, self.reserved, self.spent, self.expired, self.debited]
            .iter()
            .try_fold(0u64, |sum, c| sum.checked_add(c.get()))
            == Some(self.granted.get())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantReason {
    AdReward,
    Purchase,
    Promo,
    PlanRefill,
    Adjustment,
    Signup,
    /// A dispute closed in the merchant's favour gave back what it took.
    DisputeWon,
}

impl GrantReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantReason::AdReward => "ad_reward",
            GrantReason::Purchase => "purchase",
            GrantReason::Promo => "promo",
            GrantReason::PlanRefill => "plan_refill",
            GrantReason::Adjustment => "adjustment",
            GrantReason::Signup => "signup",
            GrantReason::DisputeWon => "dispute_won",
        }
    }
}

/// Why credits are taken back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DebitReason {
    Chargeback,
    Refund,
    Adjustment,
}

impl DebitReason {
    pub const ALL: &'static [&'static str] = &["chargeback", "refund", "adjustment"];

    pub fn as_str(self) -> &'static str {
        match self {
            DebitReason::Chargeback => "chargeback",
            DebitReason::Refund => "refund",
            DebitReason::Adjustment => "adjustment",
        }
    }
}

/// Credits taken back: `amount` of the `requested` (less only when the
/// debit was partial and not enough was available).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Debit {
    pub debit_id: Uuid,
    pub amount: Credits,
    pub requested: Credits,
    pub lots: Vec<LotPart>,
    pub balance: Balance,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub grant_id: Uuid,
    pub balance: Balance,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryType {
    Grant,
    Reserve,
    /// Credits captured by a non-final confirm; the hold stays open.
    Capture,
    Confirm,
    Release,
    Expire,
    Refund,
    /// Credits taken back by an operator (a refunded purchase, a chargeback).
    Debit,
    /// A lot's unheld credits at its expiry, or held credits that came back
    /// to a lot that had expired.
    #[serde(rename = "grant_expired")]
    GrantExpired,
}

/// One line of a user's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: EntryType,
    pub amount: Credits,
    pub reservation_id: Option<Uuid>,
    pub operation: Option<String>,
    pub description: Option<String>,
    /// Why (grants, refunds): the grant reason or the operator's words.
    pub reason: Option<String>,
    /// Who (grants, refunds): the caller's `sub`.
    pub actor: Option<String>,
    pub at: Timestamp,
}

/// Who made a change (a caller's `sub`, `stripe`, `cli:<user>`) and why,
/// recorded with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    pub actor: String,
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub items: Vec<LedgerEntry>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339_millis() {
        assert_eq!(Timestamp(1_795_370_645_123).to_rfc3339(), "2026-11-22T18:04:05.123Z");
    }

    #[test]
    fn user_ids_reject_empty_and_control_characters() {
        assert!(UserId::parse("").is_none());
        assert!(UserId::parse("a\nb").is_none());
        assert!(UserId::parse(&"x".repeat(257)).is_none());
        assert!(UserId::parse("auth0|123").is_some());
    }
}
