//! The ledger operations. Each balance change is one TransactWriteItems whose
//! conditions encode the money rules; a failed condition is read back and
//! turned into an answer (a replay, or a refusal), never re-applied blindly.

mod debit;
mod due;
mod extend;
mod grant;
mod history;
mod job;
pub mod outcome;
mod plan;
mod purchase;
mod recharge;
mod reserve;
mod settings;
mod settle;
pub mod sweep;
mod task;
mod transition;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::TransactWriteItem;
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{Actor, Credits, DebitReason, EntryType, GrantReason, Hold, LotKey, Provider, Timestamp, UserId};
use crate::error::{Error, Result};
use crate::prices::{Catalog, PriceCache, PRICE_REFRESH};
use crate::store::{entry_sk, task_pk, user_pk, EntryItem, Store, TaskItem, TxFailure};
use crate::stripe_api::StripeApi;

/// Namespace of the ids derived from idempotency keys (UUID v5).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_2c1e_8b7a_4e0f_9a51_3c2d_4b5e_6f70);

/// Transactions touching the same item at once may be cancelled with
/// `TransactionConflict`. Retrying is safe (every write is conditional);
/// this bounds how long a caller waits before getting 503.
const MAX_ATTEMPTS: u32 = 12;

/// A first-time result or a replay of an earlier one (same idempotency key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    Created(T),
    Replayed(T),
}

impl<T> Outcome<T> {
    pub fn into_inner(self) -> T {
        match self {
            Outcome::Created(v) | Outcome::Replayed(v) => v,
        }
    }

    pub fn is_replay(&self) -> bool {
        matches!(self, Outcome::Replayed(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReserveRequest {
    pub operation: String,
    pub units: u32,
    pub task_id: Option<String>,
    pub provider: Provider,
    pub description: Option<String>,
    pub ttl_seconds: u32,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
    /// Who places it (the hold's `reserved` event).
    #[serde(skip)]
    pub by: Actor,
}

impl GrantRequest {
    /// A grant of `amount` for `reason` into the reason's default lot, never
    /// expiring, with no description.
    pub fn new(amount: u64, reason: GrantReason, idempotency_key: &str, actor: &str) -> GrantRequest {
        GrantRequest {
            amount: Credits(amount),
            reason,
            description: None,
            priority: None,
            expires_at: None,
            idempotency_key: idempotency_key.to_owned(),
            actor: actor.to_owned(),
        }
    }

    /// The lot the credits land in.
    pub fn lot(&self) -> LotKey {
        LotKey {
            priority: self.priority.unwrap_or_else(|| LotKey::default_priority(self.reason)),
            expires_at: self.expires_at,
        }
    }
}

impl ReserveRequest {
    /// A hold of `units` of `operation` with the contract's defaults: BFL,
    /// the default time to live, no task, no description, no key.
    pub fn new(operation: &str, units: u32) -> ReserveRequest {
        ReserveRequest {
            operation: operation.to_owned(),
            units,
            task_id: None,
            provider: Provider::Bfl,
            description: None,
            ttl_seconds: crate::domain::DEFAULT_TTL_SECONDS,
            idempotency_key: None,
            by: Actor::Server,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantRequest {
    pub amount: Credits,
    pub reason: GrantReason,
    pub description: Option<String>,
    /// The lot's priority; `None`: the reason's default. Left out of the
    /// request's identity when absent, so keys used before lots still replay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// When the lot's credits expire; `None`: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(skip)]
    pub idempotency_key: String,
    /// Who grants (the caller's `sub`): recorded, not part of the request's
    /// identity, so another operator's retry of the same key replays.
    #[serde(skip)]
    pub actor: String,
}

/// Credits taken back from what is available, in burn order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DebitRequest {
    pub amount: Credits,
    pub reason: DebitReason,
    pub description: Option<String>,
    /// Take what is available when that is less than `amount`.
    pub partial: bool,
    #[serde(skip)]
    pub idempotency_key: String,
    #[serde(skip)]
    pub actor: String,
}

pub use crate::domain::Attribution;
pub use due::PLAN_ACTOR;
pub use extend::MAX_EXTEND_EVENTS;
pub(crate) use history::{decode_cursor, encode_cursor};
pub use plan::PlanRequest;
pub use purchase::{StripeAnswer, StripeResult, STRIPE_ACTOR};
pub use recharge::{AutoRecharge, LastRecharge, RechargeRequest};
pub use settings::Settings;

/// What a job run under [`Ledger::with_credits`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobOutput<T> {
    pub value: T,
    /// Units that came out; `None` means all the units held.
    pub units: Option<u32>,
}

/// What [`Ledger::with_credits`] did with the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobRun<T> {
    /// The job ran and its hold was settled; its value.
    Ran(T),
    /// The reserve was a replay of the same key: the job did not run here.
    /// The hold as it stands (pending while another run of the key is under
    /// way, or settled by it).
    Replayed(Box<Hold>),
}

/// What [`Ledger::with_credits`] does when the reserve is a replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnReplay {
    /// Run nothing: a key runs its job once.
    Skip,
    /// Run the job when the hold is still pending: a trusted worker resuming
    /// its own job after a crash. Never for a key a browser could choose or
    /// repeat: each repeat would run the job again on one hold.
    Resume,
}

#[derive(Debug, thiserror::Error)]
pub enum WithCreditsError<E> {
    #[error("credits: {0}")]
    Credits(Error),
    #[error("job failed")]
    Job(E),
}

#[derive(Clone, Debug)]
pub struct Ledger {
    store: Store,
    clock: Arc<dyn Clock>,
    prices: Arc<PriceCache>,
    retention_seconds: i64,
    max_open_holds: u32,
    /// Webhook endpoints may be `http://localhost` (the dev server only).
    local_http_endpoints: bool,
    /// Stripe's API, to save the card a paid Checkout Session set up
    /// (`None`: no `CREDITS_STRIPE_API_KEY`, no card saved).
    stripe_api: Option<Arc<StripeApi>>,
}

fn request_hash<T: Serialize>(request: &T) -> Result<String> {
    let canonical = serde_json::to_vec(request).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(canonical)))
}

fn derived_id(kind: &str, user: &UserId, key: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("{kind}\n{user}\n{key}").as_bytes())
}

/// Pending holds one user may have at once, unless configured
/// (`CREDITS_MAX_OPEN_HOLDS`).
pub const DEFAULT_MAX_OPEN_HOLDS: u32 = 100;

/// The id a reserve of `user` with `Idempotency-Key: key` gets (and keeps
/// for every retry of that key).
pub fn keyed_hold_id(user: &UserId, key: &str) -> Uuid {
    derived_id("reserve", user, key)
}

async fn backoff(attempt: u32) {
    let cap = 5u64 << attempt.min(5);
    let jitter = rand::random::<u64>() % cap.max(1);
    tokio::time::sleep(Duration::from_millis(2 + jitter)).await;
}

impl Ledger {
    pub fn new(store: Store, clock: Arc<dyn Clock>, catalog: Arc<Catalog>, retention_days: u32) -> Ledger {
        Ledger {
            store,
            clock,
            prices: Arc::new(PriceCache::new(catalog, PRICE_REFRESH)),
            retention_seconds: i64::from(retention_days) * 86_400,
            max_open_holds: DEFAULT_MAX_OPEN_HOLDS,
            local_http_endpoints: false,
            stripe_api: None,
        }
    }

    /// Reads PaymentIntents through `api`, to save the cards paid Checkout
    /// Sessions set up for later.
    pub fn with_stripe_api(mut self, api: Option<StripeApi>) -> Ledger {
        self.stripe_api = api.map(Arc::new);
        self
    }

    /// Lets webhook endpoints be plain-http URLs on this machine
    /// (`localhost`, `127.0.0.1`, `[::1]`): the dev server's receivers.
    /// Deployed, endpoints are https only.
    pub fn allowing_local_http_endpoints(mut self) -> Ledger {
        self.local_http_endpoints = true;
        self
    }

    pub fn local_http_endpoints(&self) -> bool {
        self.local_http_endpoints
    }

    /// Pending holds one user may have at once (`CREDITS_MAX_OPEN_HOLDS`).
    pub fn with_max_open_holds(mut self, limit: u32) -> Ledger {
        self.max_open_holds = limit.max(1);
        self
    }

    /// Reads operator price changes at most every `refresh` (tests: always).
    pub fn with_price_refresh(mut self, refresh: std::time::Duration) -> Ledger {
        self.prices = Arc::new(PriceCache::new(self.prices.shipped().clone(), refresh));
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The catalog shipped with the project (`shared/prices.json`).
    pub fn catalog(&self) -> &Catalog {
        self.prices.shipped()
    }

    /// The prices in force for new holds (shipped catalog plus operator changes).
    pub async fn prices(&self) -> Result<Arc<Catalog>> {
        self.prices.get(&self.store).await
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// `placed`: when the hold was created.
    fn task_item(&self, provider: Provider, task_id: &str, id: Uuid, user: &UserId, placed: Timestamp) -> TaskItem {
        TaskItem {
            pk: task_pk(provider, task_id),
            sk: "TASK".into(),
            entity: "task".into(),
            reservation_id: id,
            user_id: user.clone(),
            // Kept while the hold it points to could still be settled (an
            // extend moves its expiry up to this far), plus the retention.
            ttl: placed.plus_seconds(crate::domain::MAX_HOLD_SECONDS).unix_seconds() + self.retention_seconds,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        user: &UserId,
        source: Uuid,
        kind: EntryType,
        amount: Credits,
        origin: Option<(Uuid, &str)>,
        description: Option<String>,
        at: Timestamp,
    ) -> EntryItem {
        // Derived from its source so that one change is one line, whatever runs.
        let id = Uuid::new_v5(&ID_NAMESPACE, format!("entry\n{source}\n{kind:?}").as_bytes());
        EntryItem {
            pk: user_pk(user),
            sk: entry_sk(at, id),
            entity: "entry".into(),
            id,
            kind,
            amount: amount.get(),
            reservation_id: origin.map(|(id, _)| id),
            operation: origin.map(|(_, op)| op.to_owned()),
            description,
            reason: None,
            actor: None,
            lots: None,
            rollover: None,
            at: at.millis(),
        }
    }

    async fn tx(&self, items: Vec<TransactWriteItem>) -> Result<(), TxFailure> {
        self.store.transact(items, None).await
    }

    /// After a transition did not apply: if the hold's own condition failed,
    /// someone else moved it first, and the caller decides again from what
    /// they left. A failed balance condition means the books are broken.
    async fn lost_race(&self, failure: TxFailure, attempt: u32, id: Uuid) -> Result<()> {
        match failure {
            TxFailure::Cancelled(reasons) if reasons.first().is_some_and(|r| r.condition_failed()) => Ok(()),
            TxFailure::Cancelled(reasons) if reasons.iter().any(|r| r.condition_failed()) => {
                Err(Error::Internal(format!("balance invariant broken for hold {id}")))
            }
            other => self.retry_or_fail(other, attempt).await,
        }
    }

    /// Conflicts are retried after a jittered pause; anything else ends the
    /// operation with its error.
    async fn retry_or_fail(&self, failure: TxFailure, attempt: u32) -> Result<()> {
        match failure {
            TxFailure::Cancelled(reasons) if reasons.iter().any(|r| r.conflict() || r.throttled()) => {
                backoff(attempt).await;
                Ok(())
            }
            TxFailure::Cancelled(reasons) => Err(Error::Internal(format!(
                "transaction cancelled: {:?}",
                reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>()
            ))),
            TxFailure::Store(error) => Err(error),
        }
    }
}

/// What travels with a hold's transition in the same transaction.
#[derive(Debug, Default)]
struct Along {
    /// Link this provider task to the hold as it settles.
    link: Option<(Provider, String)>,
    /// Further items, placed after the transition's own.
    items: Vec<TransactWriteItem>,
    /// Who and why, on the history line (refunds).
    note: Option<Attribution>,
}

/// A read after a write that committed: its failure must not be reported
/// as "may not have been applied".
fn applied_unread(error: Error) -> Error {
    Error::AppliedUnread(error.to_string())
}
