//! The local dev server: checks the JWT like API Gateway's authorizer,
//! turns each request into the API Gateway (HTTP API, payload 2.0) event the
//! functions receive in AWS, and runs the very same handlers. With allowed
//! origins it answers CORS as API Gateway does (`crate::cors`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::body::{to_bytes, Body as AxumBody};
use axum::extract::{Request as AxumRequest, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response as AxumResponse;
use axum::Router;
use base64::Engine as _;
use credits_shared::http::problem::{problem, Lang};
use credits_shared::http::{handle, match_route};
use credits_shared::{App, Error};
use serde_json::{json, Map, Value};

use crate::cors::Cors;
use crate::token;

/// Bodies above this are refused by the server itself, like API Gateway's
/// own limit; the handlers refuse anything above 64 KiB.
const SERVER_BODY_LIMIT: usize = 1024 * 1024;

#[derive(Clone)]
pub struct DevServer {
    pub app: App,
    pub jwt_secret: String,
    /// Off by default (no `CREDITS_ALLOWED_ORIGINS`), as deployed without `AllowedOrigins`.
    pub cors: Cors,
}

pub fn router(server: DevServer) -> Router {
    Router::new().fallback(serve_request).with_state(Arc::new(server))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: DevServer,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(server)).with_graceful_shutdown(shutdown).await
}

async fn serve_request(State(server): State<Arc<DevServer>>, request: AxumRequest) -> AxumResponse {
    // Like API Gateway with CORS configured: it answers a preflight itself,
    // before any route, token check or function.
    if let Some(headers) = server.cors.preflight(request.method(), request.headers()) {
        let mut response = AxumResponse::new(AxumBody::empty());
        *response.status_mut() = StatusCode::NO_CONTENT;
        *response.headers_mut() = headers;
        return response;
    }
    let origin = request.headers().get(axum::http::header::ORIGIN).cloned();
    let mut response = route_request(&server, request).await;
    server.cors.answer(origin.as_ref(), response.headers_mut());
    response
}

async fn route_request(server: &DevServer, request: AxumRequest) -> AxumResponse {
    let (parts, body) = request.into_parts();
    let lang = Lang::from_accept_language(parts.headers.get("accept-language").and_then(|v| v.to_str().ok()));
    let request_id = uuid::Uuid::new_v4().to_string();
    let refuse = |error: Error| convert(problem(&error, lang, &request_id));

    let Some((route, params)) = match_route(&parts.method, parts.uri.path()) else {
        return refuse(Error::RouteNotFound);
    };
    // Like API Gateway: public routes (webhooks) have no authorizer.
    let authorizer = if route.op.public() {
        Value::Null
    } else {
        let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
        let Some(claims) = token::verify(&server.jwt_secret, authorization) else {
            return refuse(Error::Unauthorized);
        };
        json!({"jwt": {"claims": claims, "scopes": null}})
    };
    let Ok(body) = to_bytes(body, SERVER_BODY_LIMIT).await else {
        return refuse(Error::PayloadTooLarge);
    };
    let path_parameters: Map<String, Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .filter_map(|name| params.get(name).map(|v| (name.to_owned(), json!(v))))
        .collect();
    let event = json!({
        "version": "2.0",
        "routeKey": format!("{} {}", route.method, route.path),
        "rawPath": parts.uri.path(),
        "rawQueryString": parts.uri.query().unwrap_or(""),
        "headers": headers_json(&parts.headers),
        "queryStringParameters": query_json(parts.uri.query().unwrap_or("")),
        "pathParameters": path_parameters,
        "requestContext": {
            "accountId": "local",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": "localhost",
            "requestId": request_id,
            "routeKey": format!("{} {}", route.method, route.path),
            "stage": "$default",
            "time": chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": chrono::Utc::now().timestamp_millis(),
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "authorizer": authorizer,
        },
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
        "isBase64Encoded": true,
    });
    let lambda_request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(e) => return refuse(Error::Internal(format!("building the event: {e}"))),
    };
    convert(handle(&server.app, route.function, lambda_request).await)
}

/// API Gateway joins repeated headers with commas. A value that is not
/// UTF-8 is passed on with U+FFFD in place of the bad bytes, never dropped:
/// dropping an `Idempotency-Key` would turn a retry-safe request into one
/// that can apply twice; the handlers refuse the mangled value instead.
fn headers_json(headers: &HeaderMap) -> Map<String, Value> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_owned()).or_default().push(value);
    }
    out.into_iter().map(|(k, v)| (k, json!(v.join(",")))).collect()
}

/// API Gateway decodes the query and joins repeated keys with commas.
fn query_json(query: &str) -> Value {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, values)) => values.push(value.into_owned()),
            None => out.push((key.into_owned(), vec![value.into_owned()])),
        }
    }
    if out.is_empty() {
        return Value::Null;
    }
    Value::Object(out.into_iter().map(|(k, v)| (k, json!(v.join(",")))).collect())
}

fn convert(response: lambda_http::Response<lambda_http::Body>) -> AxumResponse {
    let (parts, body) = response.into_parts();
    let bytes = body.as_ref().to_vec();
    let mut out = AxumResponse::new(AxumBody::from(bytes));
    *out.status_mut() = StatusCode::from_u16(parts.status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &parts.headers {
        out.headers_mut().append(name.clone(), value.clone());
    }
    out
}
