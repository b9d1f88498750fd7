//! One function per route, in a file per route group: parse and validate
//! into a typed command, call the ledger, shape the response. No business
//! rule lives here. `dispatch` hands each route to its group.

mod account;
mod admin;
mod endpoints;
mod holds;
mod inbound;

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::app::App;
use crate::domain::principal::Role;
use crate::domain::{Actor, UserId};
use crate::error::Error;
use crate::error::Result;
use crate::http::identity::Caller;
use crate::http::{json, Op, Params};
use crate::ledger::Ledger;
use crate::ledger::Outcome;
use crate::validate::{self, Invalid, Problem};

pub const DEFAULT_PAGE: u32 = 50;

pub const MAX_PAGE: u32 = 200;

pub const MAX_DESCRIPTION: usize = 500;

pub const MAX_REASON: usize = 200;

pub const MAX_IDEMPOTENCY_KEY: usize = 128;

pub async fn dispatch(
    app: &App,
    op: Op,
    params: &Params,
    req: &Request,
    caller: Option<&Caller>,
) -> Result<Response<Body>> {
    match op {
        Op::ProviderWebhook => return inbound::provider_webhook(app, params, req).await,
        Op::AdminDashboardPage => return Ok(admin::dashboard_page()),
        _ => {}
    }
    // `handle` has checked that the caller may use this route at all.
    let Some(caller) = caller else { return Err(Error::Unauthorized) };
    let by = match caller.role {
        Role::Admin => Actor::Admin,
        Role::Server | Role::User => Actor::Server,
    };
    let ledger = &app.ledger;
    match op {
        Op::ProviderWebhook | Op::AdminDashboardPage => Err(Error::RouteNotFound),
        Op::GetBalance
        | Op::GetPrices
        | Op::ListTransactions
        | Op::GetAutoRecharge
        | Op::SetAutoRecharge
        | Op::EndAutoRecharge => account::handle(ledger, op, req, caller).await,
        Op::CreateHold | Op::GetHold | Op::ConfirmHold | Op::ExtendHold | Op::ReleaseHold | Op::LinkTask => {
            holds::handle(ledger, op, params, req, caller, by).await
        }
        Op::AdminGrant
        | Op::AdminDebit
        | Op::AdminSetPlan
        | Op::AdminEndPlan
        | Op::AdminBalance
        | Op::AdminTransactions
        | Op::AdminRefund
        | Op::AdminCleanup
        | Op::AdminMonitoring
        | Op::AdminSetSettings => admin::handle(ledger, op, params, req, caller).await,
        Op::AdminCreateEndpoint
        | Op::AdminListEndpoints
        | Op::AdminGetEndpoint
        | Op::AdminDeleteEndpoint
        | Op::AdminEndpointDeliveries => endpoints::handle(ledger, op, params, req, caller).await,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

fn idempotency_key(req: &Request) -> Result<Option<String>, Invalid> {
    let Some(value) = req.headers().get("idempotency-key") else { return Ok(None) };
    let invalid = || Invalid::new("Idempotency-Key", Problem::Length { min: 1, max: MAX_IDEMPOTENCY_KEY });
    let key = value.to_str().map_err(|_| invalid())?;
    let visible = key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !visible {
        return Err(invalid());
    }
    Ok(Some(key.to_owned()))
}

fn reservation_id(params: &Params) -> Result<Uuid, Invalid> {
    validate::uuid("id", params.get("id").unwrap_or(""))
}

fn user_param(params: &Params) -> Result<UserId, Invalid> {
    UserId::parse(params.get("userId").unwrap_or(""))
        .ok_or_else(|| Invalid::new("userId", Problem::Length { min: 1, max: UserId::MAX_LEN }))
}

async fn history(ledger: &Ledger, user: &UserId, req: &Request) -> Result<Response<Body>> {
    let limit = page_limit(req, DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = query_param(req, "cursor");
    Ok(json(StatusCode::OK, &ledger.history(user, limit, cursor.as_deref()).await?))
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref().and_then(|q| q.first(name)).map(str::to_owned)
}

/// `?limit=`: a whole number in `1..=max`, `default` when absent.
fn page_limit(req: &Request, default: u32, max: u32) -> Result<u32, Invalid> {
    match query_param(req, "limit") {
        None => Ok(default),
        Some(raw) => {
            let parsed = raw.parse::<u64>().map_err(|_| Invalid::new("limit", Problem::WrongType))?;
            Ok(validate::range("limit", parsed, 1, u64::from(max))? as u32)
        }
    }
}

/// 201 the first time; 200 with `Idempotent-Replayed: true` on a replay.
fn created_or_replayed<T: Serialize>(outcome: Outcome<T>) -> Response<Body> {
    applied_or_replayed(outcome, StatusCode::CREATED)
}

/// `status` for a first application; a replay answers 200 and says so.
fn applied_or_replayed<T: Serialize>(outcome: Outcome<T>, status: StatusCode) -> Response<Body> {
    match outcome {
        Outcome::Created(value) => json(status, &value),
        Outcome::Replayed(value) => {
            let mut response = json(StatusCode::OK, &value);
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
    }
}
