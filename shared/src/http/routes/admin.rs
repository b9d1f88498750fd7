//! The admin routes: grants, debits, plans, refunds, settings, a user's
//! balance and history, the sweep on demand, monitoring and its dashboard.

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::json;

use super::{
    created_or_replayed, history, idempotency_key, reservation_id, user_param, ReasonBody, MAX_DESCRIPTION, MAX_REASON,
};
use crate::domain::{Credits, DebitReason, GrantReason, MAX_AMOUNT, MAX_PRIORITY};
use crate::error::Error;
use crate::error::Result;
use crate::http::identity::Caller;
use crate::http::{json, Op, Params};
use crate::ledger::sweep;
use crate::ledger::Ledger;
use crate::ledger::{Attribution, DebitRequest, GrantRequest, PlanRequest};
use crate::monitoring::{period_name, Monitor};
use crate::stats::Period;
use crate::validate::{self, json_body, Invalid, Problem};

const GRANT_REASONS: &[&str] =
    &["ad_reward", "purchase", "promo", "plan_refill", "adjustment", "signup", "dispute_won"];

pub const MAX_PLAN_NAME: usize = 64;

/// How long `POST /v1/admin/cleanup` may sweep outside Lambda.
pub const ADMIN_SWEEP_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

const MONITORING_TYPES: &[&str] = &["overview", "health", "usage", "top-users", "models", "dashboard"];

const PERIODS: &[&str] = &["hour", "day", "week", "month"];

pub(super) async fn handle(
    ledger: &Ledger,
    op: Op,
    params: &Params,
    req: &Request,
    caller: &Caller,
) -> Result<Response<Body>> {
    let body = req.body().as_ref();
    match op {
        Op::AdminGrant => {
            let user = user_param(params)?;
            let key = idempotency_key(req)?.ok_or_else(|| Invalid::new("Idempotency-Key", Problem::Missing))?;
            let body: GrantBody = json_body(body)?;
            let amount = validate::range("amount", body.amount, 1, MAX_AMOUNT)?;
            let reason = grant_reason(&body.reason)?;
            validate::optional_text("description", &body.description, MAX_DESCRIPTION)?;
            let priority =
                body.priority.map(|p| validate::range("priority", p, 0, u64::from(MAX_PRIORITY))).transpose()?;
            // In the future: the ledger checks, once it has looked for a replay.
            let expires_at = body.expires_at.as_deref().map(|raw| validate::time("expiresAt", raw)).transpose()?;
            let request = GrantRequest {
                amount: Credits(amount),
                reason,
                description: body.description,
                priority: priority.map(|p| p as u8),
                expires_at,
                idempotency_key: key,
                actor: caller.sub.to_string(),
            };
            let outcome = ledger.grant(&user, request).await?;
            Ok(created_or_replayed(outcome))
        }
        Op::AdminDebit => {
            let user = user_param(params)?;
            let key = idempotency_key(req)?.ok_or_else(|| Invalid::new("Idempotency-Key", Problem::Missing))?;
            let body: DebitBody = json_body(body)?;
            let amount = validate::range("amount", body.amount, 1, MAX_AMOUNT)?;
            let reason = serde_json::from_value(json!(body.reason))
                .map_err(|_| Invalid::new("reason", Problem::NotOneOf(DebitReason::ALL)))?;
            validate::optional_text("description", &body.description, MAX_DESCRIPTION)?;
            let request = DebitRequest {
                amount: Credits(amount),
                reason,
                description: body.description,
                partial: body.partial.unwrap_or(false),
                idempotency_key: key,
                actor: caller.sub.to_string(),
            };
            Ok(created_or_replayed(ledger.debit(&user, request).await?))
        }
        Op::AdminSetPlan => {
            let user = user_param(params)?;
            let body: PlanBody = json_body(body)?;
            validate::text("plan", &body.plan, 1, MAX_PLAN_NAME)?;
            let allowance = validate::range("allowance", body.allowance, 1, MAX_AMOUNT)?;
            let period = serde_json::from_value(json!(body.period))
                .map_err(|_| Invalid::new("period", Problem::NotOneOf(crate::domain::Period::ALL)))?;
            let rollover = validate::range("rollover", body.rollover.unwrap_or(0), 0, MAX_AMOUNT)?;
            let anchor = body.anchor.as_deref().map(|raw| validate::time("anchor", raw)).transpose()?;
            let request = PlanRequest {
                name: body.plan,
                allowance: Credits(allowance),
                period,
                rollover: Credits(rollover),
                anchor,
            };
            Ok(json(StatusCode::OK, &ledger.set_plan(&user, request).await?))
        }
        Op::AdminEndPlan => Ok(json(StatusCode::OK, &ledger.end_plan(&user_param(params)?).await?)),
        Op::AdminBalance => Ok(json(StatusCode::OK, &ledger.balance(&user_param(params)?).await?)),
        Op::AdminTransactions => history(ledger, &user_param(params)?, req).await,
        Op::AdminCleanup => {
            // Within this invocation's time limit, else the dev server's default.
            let deadline = match req.lambda_context_ref() {
                Some(context) => sweep::deadline_at(context.deadline()),
                None => sweep::deadline_within(ADMIN_SWEEP_BUDGET),
            };
            let report = ledger.sweep(deadline, sweep::DEFAULT_CONCURRENCY).await?;
            tracing::info!(admin = %caller.sub, expired = report.expired, "cleanup on demand");
            Ok(json(StatusCode::OK, &report))
        }
        Op::AdminMonitoring => monitoring(ledger, req).await,
        Op::AdminSetSettings => {
            let user = user_param(params)?;
            let body: SettingsBody = json_body(body)?;
            // Required, so that `{}` is not read as "back to the default".
            let threshold =
                body.low_balance_threshold.ok_or_else(|| Invalid::new("lowBalanceThreshold", Problem::Missing))?;
            let threshold = threshold.map(|t| validate::range("lowBalanceThreshold", t, 0, MAX_AMOUNT)).transpose()?;
            Ok(json(StatusCode::OK, &ledger.set_settings(&user, threshold).await?))
        }
        Op::AdminRefund => {
            let id = reservation_id(params)?;
            let body: ReasonBody = json_body(body)?;
            validate::optional_text("reason", &body.reason, MAX_REASON)?;
            let note = Attribution { actor: caller.sub.to_string(), reason: body.reason };
            let hold = ledger.refund(id, &note).await?;
            tracing::info!(reservation = %id, admin = %caller.sub, "refunded");
            Ok(json(StatusCode::OK, &hold))
        }
        _ => Err(Error::RouteNotFound),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GrantBody {
    amount: u64,
    reason: String,
    description: Option<String>,
    priority: Option<u64>,
    expires_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanBody {
    plan: String,
    allowance: u64,
    period: String,
    rollover: Option<u64>,
    anchor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DebitBody {
    amount: u64,
    reason: String,
    description: Option<String>,
    partial: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SettingsBody {
    /// Outer `None`: absent; `Some(None)`: `null` (back to the default).
    #[serde(default, deserialize_with = "present")]
    low_balance_threshold: Option<Option<u64>>,
}

/// A field that is present, `null` or not: absent stays `None` (`default`).
fn present<'de, D, T>(deserializer: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

fn grant_reason(raw: &str) -> Result<GrantReason, Invalid> {
    serde_json::from_value(json!(raw)).map_err(|_| Invalid::new("reason", Problem::NotOneOf(GRANT_REASONS)))
}

/// The operator dashboard: one self-contained page (inline script and SVG
/// charts, nothing to build) that reads `GET /v1/admin/monitoring`.
pub(super) fn dashboard_page() -> Response<Body> {
    let mut response = Response::new(Body::from(include_str!("dashboard.html")));
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

/// `GET /v1/admin/monitoring?type=…&period=…&limit=…`
async fn monitoring(ledger: &Ledger, req: &Request) -> Result<Response<Body>> {
    let query = req.query_string_parameters_ref();
    let first = |name: &str| query.and_then(|q| q.first(name)).map(str::to_owned);
    let kind = first("type").unwrap_or_else(|| "overview".into());
    if !MONITORING_TYPES.contains(&kind.as_str()) {
        return Err(Invalid::new("type", Problem::NotOneOf(MONITORING_TYPES)).into());
    }
    let period = match first("period") {
        None => Period::Day,
        Some(raw) => Period::parse(&raw).ok_or_else(|| Invalid::new("period", Problem::NotOneOf(PERIODS)))?,
    };
    let limit = match first("limit") {
        None => 10,
        Some(raw) => {
            let parsed = raw.parse::<u64>().map_err(|_| Invalid::new("limit", Problem::WrongType))?;
            validate::range("limit", parsed, 1, 100)? as u32
        }
    };
    let monitor = Monitor::new(ledger.store().clone());
    let now = ledger.now();
    let prices = ledger.prices().await?;
    let body = match kind.as_str() {
        "health" => serde_json::to_value(monitor.health(now).await?),
        "usage" => Ok(monitor.usage(period, now).await?),
        "top-users" => serde_json::to_value(
            json!({"period": period_name(period), "users": monitor.top_users(period, now, limit).await?}),
        ),
        "models" => serde_json::to_value(
            json!({"period": period_name(period), "operations": monitor.models(period, now, &prices).await?}),
        ),
        "dashboard" => Ok(monitor.dashboard(period, now, limit, &prices).await?),
        _ => Ok(monitor.overview(period, now).await?),
    }
    .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(json(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_threshold_is_required_and_may_be_null() {
        let parse = |body: &[u8]| json_body::<SettingsBody>(body).map(|b| b.low_balance_threshold);
        assert_eq!(parse(br#"{"lowBalanceThreshold":5}"#), Ok(Some(Some(5))));
        assert_eq!(parse(br#"{"lowBalanceThreshold":null}"#), Ok(Some(None)));
        assert_eq!(parse(b"{}"), Ok(None));
        for bad in [
            &br#"{"lowBalanceThreshold":-1}"#[..],
            br#"{"lowBalanceThreshold":"5"}"#,
            br#"{"lowBalanceThreshold":1.5}"#,
        ] {
            assert_eq!(parse(bad), Err(Invalid::new("lowBalanceThreshold", Problem::WrongType)));
        }
    }
}
