//! One function per route: parse and validate into a typed command, call
//! the ledger, shape the response. No business rule lives here.

use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::identity::Caller;
use super::{json, Op, Params};
use crate::app::App;
use crate::domain::principal::Role;
use crate::domain::{
    Actor, Credits, DebitReason, GrantReason, Provider, UserId, DEFAULT_TTL_SECONDS, MAX_AMOUNT, MAX_PRIORITY,
    MAX_TTL_SECONDS, MAX_UNITS,
};
use crate::error::Error;
use crate::error::Result;
use crate::events::endpoints::NewEndpoint;
use crate::events::Kind;
use crate::ledger::sweep;
use crate::ledger::webhook::{Delivery, WebhookResult};
use crate::ledger::Ledger;
use crate::ledger::{Attribution, DebitRequest, GrantRequest, Outcome, PlanRequest, ReserveRequest};
use crate::monitoring::{period_name, Monitor};
use crate::stats::Period;
use crate::validate::{self, json_body, Invalid, Problem};
use crate::webhook::parse_payload;

const PROVIDERS: &[&str] = &["bfl", "generic"];
const GRANT_REASONS: &[&str] =
    &["ad_reward", "purchase", "promo", "plan_refill", "adjustment", "signup", "dispute_won"];
pub const DEFAULT_PAGE: u32 = 50;
pub const MAX_PAGE: u32 = 200;
pub const MAX_TASK_ID: usize = 256;
pub const MAX_DESCRIPTION: usize = 500;
pub const MAX_REASON: usize = 200;
pub const MAX_PLAN_NAME: usize = 64;
pub const MAX_IDEMPOTENCY_KEY: usize = 128;
pub const MAX_ENDPOINT_DESCRIPTION: usize = 200;
pub const DEFAULT_DELIVERY_PAGE: u32 = 50;
pub const MAX_DELIVERY_PAGE: u32 = 100;
/// How long `POST /v1/admin/cleanup` may sweep outside Lambda.
pub const ADMIN_SWEEP_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

pub async fn dispatch(
    app: &App,
    op: Op,
    params: &Params,
    req: &Request,
    caller: Option<&Caller>,
) -> Result<Response<Body>> {
    let ledger = &app.ledger;
    let body = req.body().as_ref();
    match op {
        Op::ProviderWebhook => return provider_webhook(app, params, req).await,
        Op::AdminDashboardPage => return Ok(dashboard_page()),
        _ => {}
    }
    // `handle` has checked that the caller may use this route at all.
    let Some(caller) = caller else { return Err(Error::Unauthorized) };
    let by = match caller.role {
        Role::Admin => Actor::Admin,
        Role::Server | Role::User => Actor::Server,
    };
    match op {
        Op::ProviderWebhook | Op::AdminDashboardPage => Err(Error::RouteNotFound),
        Op::GetBalance => Ok(json(StatusCode::OK, &ledger.balance(&caller.subject(req)?).await?)),
        Op::GetPrices => Ok(json(StatusCode::OK, ledger.prices().await?.as_ref())),
        Op::CreateReservation => {
            let user = caller.subject(req)?;
            let request = reserve_request(body, idempotency_key(req)?, by)?;
            let outcome = ledger.reserve(&user, request).await?;
            Ok(created_or_replayed(outcome))
        }
        Op::GetReservation => {
            let id = reservation_id(params)?;
            Ok(json(StatusCode::OK, &ledger.reservation(caller.hold_owner(req)?.as_ref(), id).await?))
        }
        Op::ConfirmReservation => {
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
        Op::ExtendReservation => {
            let id = reservation_id(params)?;
            let body: ExtendBody = json_body(body)?;
            let ttl = validate::range("ttlSeconds", body.ttl_seconds, 1, u64::from(MAX_TTL_SECONDS))? as u32;
            Ok(json(StatusCode::OK, &ledger.extend(caller.hold_owner(req)?.as_ref(), id, ttl, by).await?))
        }
        Op::ReleaseReservation => {
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
        Op::ListTransactions => history(ledger, &caller.subject(req)?, req).await,
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
        Op::AdminCreateEndpoint => {
            let body: EndpointBody = json_body(body)?;
            validate::webhook_url("url", &body.url, ledger.local_http_endpoints())?;
            let events = event_kinds(body.events.unwrap_or_default())?;
            validate::optional_text("description", &body.description, MAX_ENDPOINT_DESCRIPTION)?;
            let request =
                NewEndpoint { url: body.url, events, description: body.description, actor: caller.sub.to_string() };
            let endpoint = ledger.create_endpoint(request).await?;
            tracing::info!(endpoint = %endpoint.id, admin = %caller.sub, "webhook endpoint created");
            Ok(json(StatusCode::CREATED, &endpoint))
        }
        Op::AdminListEndpoints => Ok(json(StatusCode::OK, &Items { items: ledger.endpoints().await? })),
        Op::AdminGetEndpoint => Ok(json(StatusCode::OK, &ledger.endpoint(endpoint_id(params)?).await?)),
        Op::AdminDeleteEndpoint => {
            let id = endpoint_id(params)?;
            ledger.delete_endpoint(id).await?;
            tracing::info!(endpoint = %id, admin = %caller.sub, "webhook endpoint deleted");
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        Op::AdminEndpointDeliveries => {
            let id = endpoint_id(params)?;
            let limit = page_limit(req, DEFAULT_DELIVERY_PAGE, MAX_DELIVERY_PAGE)?;
            let cursor = query_param(req, "cursor");
            Ok(json(StatusCode::OK, &ledger.deliveries(id, limit, cursor.as_deref()).await?))
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
    }
}

/// `POST /v1/webhooks/{provider}`: verify the signature over the raw body,
/// then apply the provider's outcome. 2xx whenever the request is authentic.
async fn provider_webhook(app: &App, params: &Params, req: &Request) -> Result<Response<Body>> {
    let provider = match params.get("provider") {
        Some("bfl") => Provider::Bfl,
        Some("generic") => Provider::Generic,
        Some("stripe") => return stripe_webhook(app, req).await,
        _ => return Err(Error::RouteNotFound),
    };
    let verifier = app.verifiers.get(provider).ok_or(Error::Forbidden)?;
    let body = req.body().as_ref();
    let delivery_id = verifier.verify(req.headers(), body, app.ledger.now()).map_err(|rejected| {
        tracing::warn!(provider = provider.as_str(), reason = ?rejected, "webhook refused");
        Error::Forbidden
    })?;
    let payload = parse_payload(body)?;
    let delivery = Delivery { provider, task_id: payload.task_id, outcome: payload.outcome, delivery_id };
    let answer = app.ledger.apply_webhook(&delivery).await?;
    tracing::info!(
        provider = provider.as_str(),
        task = %delivery.task_id,
        result = ?answer.result,
        late_success = answer.late_success,
        "webhook"
    );
    let status = if answer.result == WebhookResult::Parked { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok(json(status, &answer))
}

/// Stripe: verified, then always 200 with what it did (a purchase granted,
/// credits taken back, parked, a duplicate, or ignored and why), so that
/// Stripe never retries an event that would change nothing; an error of
/// ours is a 5xx, which Stripe retries.
async fn stripe_webhook(app: &App, req: &Request) -> Result<Response<Body>> {
    let body = req.body().as_ref();
    let header = req.headers().get("stripe-signature").and_then(|v| v.to_str().ok());
    app.verifiers.stripe().verify(header, body, app.ledger.now()).map_err(|rejected| {
        tracing::warn!(provider = "stripe", reason = ?rejected, "webhook refused");
        Error::Forbidden
    })?;
    let (event_id, action) = crate::webhook::stripe::parse_event(body, app.verifiers.stripe().livemode())?;
    let answer = app.ledger.apply_stripe(&event_id, action).await?;
    tracing::info!(provider = "stripe", event = %event_id, result = answer.result.as_str(), reason = ?answer.reason, "stripe");
    Ok(json(StatusCode::OK, &answer))
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
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TaskBody {
    task_id: String,
    provider: Option<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointBody {
    url: String,
    /// Absent, `null` or empty: every type.
    events: Option<Vec<String>>,
    description: Option<String>,
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

/// Known event type names, at most one of each (a repeat is dropped).
fn event_kinds(names: Vec<String>) -> Result<Vec<Kind>, Invalid> {
    if names.len() > Kind::ALL.len() {
        return Err(Invalid::new("events", Problem::TooMany { max: Kind::ALL.len() }));
    }
    let mut kinds = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let kind =
            Kind::parse(name).ok_or_else(|| Invalid::new(format!("events[{i}]"), Problem::NotOneOf(Kind::NAMES)))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
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

fn grant_reason(raw: &str) -> Result<GrantReason, Invalid> {
    serde_json::from_value(json!(raw)).map_err(|_| Invalid::new("reason", Problem::NotOneOf(GRANT_REASONS)))
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

fn endpoint_id(params: &Params) -> Result<Uuid, Invalid> {
    validate::uuid("id", params.get("id").unwrap_or(""))
}

fn user_param(params: &Params) -> Result<UserId, Invalid> {
    UserId::parse(params.get("userId").unwrap_or(""))
        .ok_or_else(|| Invalid::new("userId", Problem::Length { min: 1, max: UserId::MAX_LEN }))
}

/// The operator dashboard: one self-contained page (inline script and SVG
/// charts, nothing to build) that reads `GET /v1/admin/monitoring`.
fn dashboard_page() -> Response<Body> {
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

const MONITORING_TYPES: &[&str] = &["overview", "health", "usage", "top-users", "models", "dashboard"];
const PERIODS: &[&str] = &["hour", "day", "week", "month"];

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

    #[test]
    fn event_kinds_are_known_and_deduplicated() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(event_kinds(Vec::new()), Ok(Vec::new()));
        assert_eq!(
            event_kinds(names(&["hold.expired", "balance.low", "hold.expired"])),
            Ok(vec![Kind::HoldExpired, Kind::BalanceLow])
        );
        assert_eq!(
            event_kinds(names(&["hold.expired", "hold.exploded"])),
            Err(Invalid::new("events[1]", Problem::NotOneOf(Kind::NAMES)))
        );
        assert_eq!(event_kinds(names(Kind::NAMES)).map(|k| k.len()), Ok(12));
        let thirteen: Vec<String> = Kind::NAMES.iter().chain(["hold.expired"].iter()).map(|s| s.to_string()).collect();
        assert_eq!(event_kinds(thirteen), Err(Invalid::new("events", Problem::TooMany { max: 12 })));
    }
}
