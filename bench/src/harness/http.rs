//! Requests to the handler as Lambda delivers them (API Gateway's HTTP API
//! events), from the app's back end or an operator, and their answers.

use credits_shared::domain::UserId;
use credits_shared::http::{handle, Function};
use credits_shared::App;
use serde_json::json;

/// An API Gateway HTTP API (payload 2.0) event, as Lambda delivers it.
pub fn api_event(
    method: &str,
    path: &str,
    claims: Option<serde_json::Value>,
    headers: serde_json::Value,
    body: &str,
) -> serde_json::Value {
    let mut context = json!({"accountId": "bench", "apiId": "bench", "domainName": "bench", "domainPrefix": "bench",
        "requestId": uuid::Uuid::new_v4().to_string(), "routeKey": "$default", "stage": "$default",
        "time": "23/Nov/2026:00:00:00 +0000", "timeEpoch": 0,
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "bench"}});
    if let Some(claims) = claims {
        context["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
    }
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": headers, "requestContext": context, "body": body, "isBase64Encoded": false,
    })
}

/// The client id of the bench's app back end (`CREDITS_SERVER_CLIENT_IDS`).
pub const BENCH_SERVER: &str = "bench-server";

/// The claims of the app's back end: a client-credentials token.
pub fn server_claims() -> serde_json::Value {
    json!({"sub": BENCH_SERVER, "client_id": BENCH_SERVER, "scope": "credits/server", "token_use": "access"})
}

/// The app's back end acting for `user`.
pub fn event(method: &str, path: &str, user: &UserId, body: &str) -> Result<lambda_http::Request, String> {
    keyed_event(method, path, user, body, None)
}

/// The same, with an `Idempotency-Key` when `key` is given.
pub fn keyed_event(
    method: &str,
    path: &str,
    user: &UserId,
    body: &str,
    key: Option<&str>,
) -> Result<lambda_http::Request, String> {
    let mut headers = json!({"content-type": "application/json", "credits-user": user.as_str()});
    if let Some(key) = key {
        headers["idempotency-key"] = json!(key);
    }
    let event = api_event(method, path, Some(server_claims()), headers, body);
    lambda_http::request::from_str(&event.to_string()).map_err(|e| e.to_string())
}

/// The answer's JSON, or what went wrong when its status is not `expected`.
pub fn answer(response: &lambda_http::Response<lambda_http::Body>, expected: u16) -> Result<serde_json::Value, String> {
    let body = String::from_utf8_lossy(response.body().as_ref()).into_owned();
    if response.status().as_u16() != expected {
        return Err(format!("expected {expected}, got {}: {body}", response.status()));
    }
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

/// A new hold of `units` units through the handler; its id.
pub async fn reserve_units(app: &App, u: &UserId, units: u32) -> Result<String, String> {
    let body = json!({"operation": "design_generate_image", "units": units}).to_string();
    let hold = answer(&handle(app, Function::Reserve, event("POST", "/v1/reservations", u, &body)?).await, 201)?;
    hold["reservationId"].as_str().map(str::to_owned).ok_or_else(|| "reserve answered no id".into())
}

/// A non-final capture of `units` through the handler.
pub async fn capture_units(app: &App, u: &UserId, id: &str, units: u32, key: &str) -> Result<(), String> {
    let body = json!({"units": units, "final": false}).to_string();
    let path = format!("/v1/reservations/{id}/confirm");
    answer(&handle(app, Function::Confirm, keyed_event("POST", &path, u, &body, Some(key))?).await, 200).map(|_| ())
}

/// An operator's request (a token in the `credits-admin` group).
pub fn admin(
    method: &str,
    path: &str,
    body: &str,
    idempotency_key: Option<&str>,
) -> Result<lambda_http::Request, String> {
    let mut headers = json!({"content-type": "application/json"});
    if let Some(k) = idempotency_key {
        headers["idempotency-key"] = json!(k);
    }
    let claims = json!({"sub": "bench-admin", "cognito:groups": "[credits-admin]"});
    let event = api_event(method, path, Some(claims), headers, body);
    lambda_http::request::from_str(&event.to_string()).map_err(|e| e.to_string())
}
