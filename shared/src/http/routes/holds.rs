//! The routes of holds: reserve, read, confirm (or capture), extend,
//! release, link a provider task.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use super::{
    applied_or_replayed, created_or_replayed, idempotency_key, reservation_id, ReasonBody, MAX_DESCRIPTION, MAX_REASON,
};
use crate::domain::{Actor, Provider, DEFAULT_TTL_SECONDS, MAX_TTL_SECONDS, MAX_UNITS};
use crate::error::Error;
use crate::error::Result;
use crate::http::identity::Caller;
use crate::http::{json, Op, Params};
use crate::ledger::Ledger;
use crate::ledger::ReserveRequest;
use crate::validate::{self, json_body, Invalid, Problem};

const PROVIDERS: &[&str] = &["bfl", "generic"];

pub const MAX_TASK_ID: usize = 256;

pub(super) async fn handle(
    ledger: &Ledger,
    op: Op,
    params: &Params,
    req: &Request,
    caller: &Caller,
    by: Actor,
) -> Result<Response<Body>> {
    let body = req.body().as_ref();
    match op {
        Op::CreateHold => {
            let user = caller.subject(req)?;
            let request = reserve_request(body, idempotency_key(req)?, by)?;
            let outcome = ledger.reserve(&user, request).await?;
            Ok(created_or_replayed(outcome))
        }
        Op::GetHold => {
            let id = reservation_id(params)?;
            Ok(json(StatusCode::OK, &ledger.hold(caller.hold_owner(req)?.as_ref(), id).await?))
        }
        Op::ConfirmHold => {
            let id = reservation_id(params)?;
            let body: ConfirmBody = json_body(body)?;
            // A final confirm may name 0 more units (after captures); the
            // hold's own figures bound the rest.
            let capturing = body.r#final == Some(false);
            let min = if capturing { 1 } else { 0 };
            let units = body.units.map(|u| validate::range("units", u, min, u64::from(MAX_UNITS))).transpose()?;
            let units = units.map(|u| u as u32);
            let owner = caller.hold_owner(req)?;
            // A malformed key is refused even where none is needed.
            let key = idempotency_key(req)?;
            if capturing {
                // A retried partial capture would charge twice: its key is what
                // makes the retry a replay.
                let key = key.ok_or_else(|| Invalid::new("Idempotency-Key", Problem::Missing))?;
                let units = units.ok_or_else(|| Invalid::new("units", Problem::Missing))?;
                let outcome = ledger.capture(owner.as_ref(), id, units, &key, by).await?;
                return Ok(applied_or_replayed(outcome, StatusCode::OK));
            }
            Ok(json(StatusCode::OK, &ledger.confirm(owner.as_ref(), id, units, by).await?))
        }
        Op::ExtendHold => {
            let id = reservation_id(params)?;
            let body: ExtendBody = json_body(body)?;
            let ttl = validate::range("ttlSeconds", body.ttl_seconds, 1, u64::from(MAX_TTL_SECONDS))? as u32;
            Ok(json(StatusCode::OK, &ledger.extend(caller.hold_owner(req)?.as_ref(), id, ttl, by).await?))
        }
        Op::ReleaseHold => {
            let id = reservation_id(params)?;
            let body: ReasonBody = json_body(body)?;
            validate::optional_text("reason", &body.reason, MAX_REASON)?;
            let hold = ledger.release(caller.hold_owner(req)?.as_ref(), id, by).await?;
            tracing::info!(reservation = %id, reason = body.reason.as_deref().unwrap_or(""), "released");
            Ok(json(StatusCode::OK, &hold))
        }
        Op::LinkTask => {
            let id = reservation_id(params)?;
            let body: TaskBody = json_body(body)?;
            validate::text("taskId", &body.task_id, 1, MAX_TASK_ID)?;
            let provider = provider(body.provider.as_deref())?;
            let owner = caller.hold_owner(req)?;
            Ok(json(StatusCode::OK, &ledger.link_task(owner.as_ref(), id, provider, &body.task_id, by).await?))
        }
        _ => Err(Error::RouteNotFound),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReserveBody {
    operation: String,
    units: Option<u64>,
    task_id: Option<String>,
    provider: Option<String>,
    description: Option<String>,
    ttl_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmBody {
    units: Option<u64>,
    /// `false`: capture and keep the rest held.
    r#final: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExtendBody {
    ttl_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TaskBody {
    task_id: String,
    provider: Option<String>,
}

fn reserve_request(body: &[u8], idempotency_key: Option<String>, by: Actor) -> Result<ReserveRequest> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Invalid::new("operation", Problem::Missing).into());
    }
    let body: ReserveBody = json_body(body)?;
    validate::text("operation", &body.operation, 1, 128)?;
    let units = validate::range("units", body.units.unwrap_or(1), 1, u64::from(MAX_UNITS))? as u32;
    let ttl_seconds = validate::range(
        "ttlSeconds",
        body.ttl_seconds.unwrap_or(u64::from(DEFAULT_TTL_SECONDS)),
        1,
        u64::from(MAX_TTL_SECONDS),
    )? as u32;
    if let Some(task_id) = &body.task_id {
        validate::text("taskId", task_id, 1, MAX_TASK_ID)?;
    }
    validate::optional_text("description", &body.description, MAX_DESCRIPTION)?;
    Ok(ReserveRequest {
        operation: body.operation,
        units,
        task_id: body.task_id,
        provider: provider(body.provider.as_deref())?,
        description: body.description,
        ttl_seconds,
        idempotency_key,
        by,
    })
}

fn provider(raw: Option<&str>) -> Result<Provider, Invalid> {
    match raw {
        None | Some("bfl") => Ok(Provider::Bfl),
        Some("generic") => Ok(Provider::Generic),
        Some(_) => Err(Invalid::new("provider", Problem::NotOneOf(PROVIDERS))),
    }
}
