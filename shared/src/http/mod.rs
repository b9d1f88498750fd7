//! HTTP glue: the route table, request parsing, and `handle`, which every
//! HTTP function (`entry::run_function`) and the dev server mount.

pub mod identity;
pub mod problem;
pub mod routes;

use std::time::{Duration, Instant};

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

use crate::app::App;
use crate::domain::principal::Access;
use crate::error::Error;
use crate::validate::{Invalid, Problem};
use problem::Lang;

/// Largest request body accepted (the contract's 64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The Lambda functions that serve HTTP routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Function {
    Reserve,
    Confirm,
    Release,
    Account,
    Admin,
    Webhook,
}

impl Function {
    pub const ALL: [Function; 6] = [
        Function::Reserve,
        Function::Confirm,
        Function::Release,
        Function::Account,
        Function::Admin,
        Function::Webhook,
    ];

    /// The function's name in template.yaml (`<Name>Function`) and its binary.
    pub fn name(self) -> &'static str {
        match self {
            Function::Reserve => "reserve",
            Function::Confirm => "confirm",
            Function::Release => "release",
            Function::Account => "account",
            Function::Admin => "admin",
            Function::Webhook => "webhook",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    GetBalance,
    GetAutoRecharge,
    SetAutoRecharge,
    EndAutoRecharge,
    GetPrices,
    CreateHold,
    GetHold,
    ConfirmHold,
    ExtendHold,
    ReleaseHold,
    LinkTask,
    ListTransactions,
    AdminGrant,
    AdminDebit,
    AdminSetPlan,
    AdminEndPlan,
    AdminBalance,
    AdminTransactions,
    AdminRefund,
    AdminCleanup,
    AdminMonitoring,
    AdminDashboardPage,
    AdminSetSettings,
    AdminCreateEndpoint,
    AdminListEndpoints,
    AdminGetEndpoint,
    AdminDeleteEndpoint,
    AdminEndpointDeliveries,
    ProviderWebhook,
}

impl Op {
    /// What the route needs of its caller; `None` for public routes, which
    /// carry no JWT: a webhook is authenticated by its signature; the
    /// dashboard page holds no data (it calls the admin API with the
    /// operator's token).
    pub fn access(self) -> Option<Access> {
        match self {
            Op::ProviderWebhook | Op::AdminDashboardPage => None,
            Op::GetBalance | Op::GetPrices | Op::GetHold | Op::ListTransactions | Op::GetAutoRecharge => {
                Some(Access::Read)
            }
            Op::CreateHold
            | Op::ConfirmHold
            | Op::ExtendHold
            | Op::ReleaseHold
            | Op::LinkTask
            | Op::SetAutoRecharge
            | Op::EndAutoRecharge => Some(Access::Write),
            Op::AdminGrant
            | Op::AdminDebit
            | Op::AdminSetPlan
            | Op::AdminEndPlan
            | Op::AdminBalance
            | Op::AdminTransactions
            | Op::AdminRefund
            | Op::AdminCleanup
            | Op::AdminMonitoring
            | Op::AdminSetSettings
            | Op::AdminCreateEndpoint
            | Op::AdminListEndpoints
            | Op::AdminGetEndpoint
            | Op::AdminDeleteEndpoint
            | Op::AdminEndpointDeliveries => Some(Access::Admin),
        }
    }

    pub fn public(self) -> bool {
        self.access().is_none()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub function: Function,
    pub op: Op,
}

/// Every route of the service. template.yaml, openapi.yaml and the dev
/// server are checked against this list by a test.
pub const ROUTES: &[Route] = &[
    Route { method: "GET", path: "/v1/balance", function: Function::Account, op: Op::GetBalance },
    Route { method: "GET", path: "/v1/prices", function: Function::Account, op: Op::GetPrices },
    Route { method: "POST", path: "/v1/reservations", function: Function::Reserve, op: Op::CreateHold },
    Route { method: "GET", path: "/v1/reservations/{id}", function: Function::Account, op: Op::GetHold },
    Route { method: "POST", path: "/v1/reservations/{id}/confirm", function: Function::Confirm, op: Op::ConfirmHold },
    Route { method: "POST", path: "/v1/reservations/{id}/extend", function: Function::Account, op: Op::ExtendHold },
    Route { method: "POST", path: "/v1/reservations/{id}/release", function: Function::Release, op: Op::ReleaseHold },
    Route { method: "POST", path: "/v1/reservations/{id}/task", function: Function::Account, op: Op::LinkTask },
    Route { method: "GET", path: "/v1/transactions", function: Function::Account, op: Op::ListTransactions },
    Route { method: "GET", path: "/v1/auto-recharge", function: Function::Account, op: Op::GetAutoRecharge },
    Route { method: "PUT", path: "/v1/auto-recharge", function: Function::Account, op: Op::SetAutoRecharge },
    Route { method: "DELETE", path: "/v1/auto-recharge", function: Function::Account, op: Op::EndAutoRecharge },
    Route { method: "POST", path: "/v1/admin/users/{userId}/grants", function: Function::Admin, op: Op::AdminGrant },
    Route { method: "POST", path: "/v1/admin/users/{userId}/debits", function: Function::Admin, op: Op::AdminDebit },
    Route { method: "PUT", path: "/v1/admin/users/{userId}/plan", function: Function::Admin, op: Op::AdminSetPlan },
    Route { method: "DELETE", path: "/v1/admin/users/{userId}/plan", function: Function::Admin, op: Op::AdminEndPlan },
    Route { method: "GET", path: "/v1/admin/users/{userId}/balance", function: Function::Admin, op: Op::AdminBalance },
    Route {
        method: "GET",
        path: "/v1/admin/users/{userId}/transactions",
        function: Function::Admin,
        op: Op::AdminTransactions,
    },
    Route {
        method: "POST",
        path: "/v1/admin/reservations/{id}/refund",
        function: Function::Admin,
        op: Op::AdminRefund,
    },
    Route { method: "POST", path: "/v1/admin/cleanup", function: Function::Admin, op: Op::AdminCleanup },
    Route { method: "GET", path: "/v1/admin/monitoring", function: Function::Admin, op: Op::AdminMonitoring },
    Route { method: "GET", path: "/v1/admin/dashboard", function: Function::Admin, op: Op::AdminDashboardPage },
    Route {
        method: "PUT",
        path: "/v1/admin/users/{userId}/settings",
        function: Function::Admin,
        op: Op::AdminSetSettings,
    },
    Route {
        method: "POST",
        path: "/v1/admin/webhook-endpoints",
        function: Function::Admin,
        op: Op::AdminCreateEndpoint,
    },
    Route { method: "GET", path: "/v1/admin/webhook-endpoints", function: Function::Admin, op: Op::AdminListEndpoints },
    Route {
        method: "GET",
        path: "/v1/admin/webhook-endpoints/{id}",
        function: Function::Admin,
        op: Op::AdminGetEndpoint,
    },
    Route {
        method: "DELETE",
        path: "/v1/admin/webhook-endpoints/{id}",
        function: Function::Admin,
        op: Op::AdminDeleteEndpoint,
    },
    Route {
        method: "GET",
        path: "/v1/admin/webhook-endpoints/{id}/deliveries",
        function: Function::Admin,
        op: Op::AdminEndpointDeliveries,
    },
    Route { method: "POST", path: "/v1/webhooks/{provider}", function: Function::Webhook, op: Op::ProviderWebhook },
];

/// Path parameters by name, percent-decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// Finds the route for a method and path.
pub fn match_route(method: &Method, path: &str) -> Option<(&'static Route, Params)> {
    let wanted: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    ROUTES.iter().filter(|r| r.method == method.as_str()).find_map(|route| {
        let pattern: Vec<&'static str> = route.path.split('/').collect();
        if pattern.len() != wanted.len() {
            return None;
        }
        let mut params = Vec::new();
        for (p, w) in pattern.iter().zip(&wanted) {
            match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) if !w.is_empty() => params.push((name, percent_decode(w)?)),
                Some(_) => return None,
                None if p == w => {}
                None => return None,
            }
        }
        Some((route, Params(params)))
    })
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    match serde_json::to_string(body) {
        Ok(text) => {
            let mut response = Response::new(Body::from(text));
            *response.status_mut() = status;
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => problem::problem(&Error::Internal(e.to_string()), Lang::En, ""),
    }
}

fn request_id(req: &Request) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    }
    .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()))
    .unwrap_or_default()
}

const JSON_MEDIA_TYPE: &[&str] = &["application/json"];

/// A body must say it is JSON: a form or text body that happens to parse
/// would otherwise be taken on trust (a browser `fetch` with a string body
/// sends `text/plain`). An empty body needs no type (`confirm` with no body
/// captures all units). Parameters such as `charset` are allowed. Webhooks
/// are exempt: a provider's authentic delivery is answered 2xx whatever
/// its headers.
fn json_or_empty(req: &Request) -> bool {
    if req.body().as_ref().iter().all(u8::is_ascii_whitespace) {
        return true;
    }
    let Some(value) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let media_type = value.split(';').next().unwrap_or("").trim();
    media_type.eq_ignore_ascii_case("application/json")
}

/// How long a request may take outside Lambda (the dev server), like API
/// Gateway's 30 s integration limit.
pub const LOCAL_REQUEST_BUDGET: Duration = Duration::from_secs(25);
/// Kept free before the function's own timeout to answer in.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// The time this request may run before it must answer: the invocation's
/// deadline less a margin, so a slow database ends in a truthful 503 from
/// us, never in the function's timeout (API Gateway's bare 503).
fn request_budget(req: &Request) -> Duration {
    match req.lambda_context_ref() {
        Some(context) => context
            .deadline()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .saturating_sub(ANSWER_MARGIN),
        None => LOCAL_REQUEST_BUDGET,
    }
}

/// Serves one request for `function`: the route must belong to it.
pub async fn handle(app: &App, function: Function, req: Request) -> Response<Body> {
    let started = Instant::now();
    let lang = Lang::from_accept_language(req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()));
    let request_id = request_id(&req);
    let route = match_route(req.method(), req.uri().path()).filter(|(route, _)| route.function == function);
    let access = route.as_ref().and_then(|(route, _)| route.op.access());
    let caller = access.and_then(|_| identity::caller(&req, &app.trusted).ok());
    let sub = caller.as_ref().map(|c| c.sub.to_string()).unwrap_or_default();
    // The user acted for: named by a server or admin, else the caller.
    let user = match req.headers().get(crate::domain::principal::USER_HEADER).and_then(|v| v.to_str().ok()) {
        Some(named) if caller.is_some() => named.trim().chars().take(crate::domain::UserId::MAX_LEN).collect(),
        _ => sub.clone(),
    };
    // `{id}` names a reservation on every route but the webhook endpoints'.
    let (op, reservation) = match &route {
        Some((route, params)) if route.path.contains("reservations/{id}") => {
            (Some(route.op), params.get("id").unwrap_or("").to_owned())
        }
        Some((route, _)) => (Some(route.op), String::new()),
        None => (None, String::new()),
    };
    let refused = match (access, &caller) {
        (Some(_), None) => Some(Error::Unauthorized),
        // Before the body is read: a caller who may not write learns
        // nothing from validation errors, and nothing changes.
        (Some(access), Some(caller)) if !caller.role.may(access) => Some(identity::refusal(caller.role, access)),
        _ => None,
    };
    let result = match (route, refused) {
        (None, _) => Err(Error::RouteNotFound),
        (Some(_), Some(refusal)) => Err(refusal),
        (Some(_), None) if req.body().len() > MAX_BODY_BYTES => Err(Error::PayloadTooLarge),
        (Some((route, _)), None) if !route.op.public() && !json_or_empty(&req) => {
            Err(Invalid::new("Content-Type", Problem::NotOneOf(JSON_MEDIA_TYPE)).into())
        }
        (Some((route, params)), None) => {
            let served = routes::dispatch(app, route.op, &params, &req, caller.as_ref());
            match tokio::time::timeout(request_budget(&req), served).await {
                Ok(result) => result,
                Err(_) => Err(Error::Unavailable("the request ran out of time".into())),
            }
        }
    };
    let (response, outcome) = match result {
        Ok(response) => (response, "ok"),
        Err(error) => {
            let code = problem::code_of(&error);
            if code.status.is_server_error() {
                // Internal details are logged, never sent.
                tracing::error!(request_id = %request_id, error = %error, "request failed");
            }
            (problem::problem(&error, lang, &request_id), code.code)
        }
    };
    crate::metrics::latency(started.elapsed().as_millis() as u64);
    tracing::info!(
        request_id = %request_id,
        function = function.name(),
        op = ?op,
        caller = %sub,
        user = %user,
        role = ?caller.as_ref().map(|c| c.role),
        reservation = %reservation,
        status = response.status().as_u16(),
        outcome,
        latency_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_with_parameters() {
        let (route, params) =
            match_route(&Method::POST, "/v1/reservations/abc/confirm").expect("confirm route matches");
        assert_eq!(route.op, Op::ConfirmHold);
        assert_eq!(params.get("id"), Some("abc"));
        let (route, params) =
            match_route(&Method::GET, "/v1/admin/users/auth0%7C42/balance").expect("admin balance matches");
        assert_eq!(route.op, Op::AdminBalance);
        assert_eq!(params.get("userId"), Some("auth0|42"));
        let (route, params) =
            match_route(&Method::GET, "/v1/admin/webhook-endpoints/abc/deliveries").expect("deliveries route matches");
        assert_eq!(route.op, Op::AdminEndpointDeliveries);
        assert_eq!(params.get("id"), Some("abc"));
        let (route, _) = match_route(&Method::DELETE, "/v1/admin/webhook-endpoints/abc").expect("delete matches");
        assert_eq!(route.op, Op::AdminDeleteEndpoint);
        let (route, _) = match_route(&Method::GET, "/v1/admin/webhook-endpoints/").expect("list matches");
        assert_eq!(route.op, Op::AdminListEndpoints);
        assert!(match_route(&Method::DELETE, "/v1/balance").is_none());
        assert!(match_route(&Method::GET, "/v1/reservations//confirm").is_none());
        assert!(match_route(&Method::GET, "/v1/nope").is_none());
    }
}
