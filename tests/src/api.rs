//! Calling the dev server as an app does: a bearer token, the user it acts
//! for, a JSON body; and checking problem answers.

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use crate::{user, TestServer, USER_HEADER};

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// A bearer token and, for the app's server acting for a user, the user it
/// names in `Credits-User`.
#[derive(Clone, Debug)]
pub struct Auth {
    pub token: String,
    pub for_user: Option<String>,
}

impl Auth {
    pub fn bearer(token: String) -> Auth {
        Auth { token, for_user: None }
    }

    pub fn acting_for(token: String, user: &str) -> Auth {
        Auth { token, for_user: Some(user.to_owned()) }
    }
}

pub async fn call(server: &TestServer, method: Method, path: &str, auth: Option<&Auth>, body: Option<Value>) -> Reply {
    call_with(server, method, path, auth, body.map(|b| b.to_string()), &[]).await
}

pub async fn call_with(
    server: &TestServer,
    method: Method,
    path: &str,
    auth: Option<&Auth>,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Client::new().request(method, format!("{}{}", server.base, path));
    if let Some(auth) = auth {
        request = request.bearer_auth(&auth.token);
        if let Some(user) = &auth.for_user {
            request = request.header(USER_HEADER, user);
        }
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, headers, body }
}

/// Asserts the reply is the problem `code` with `status`.
pub fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
    assert_eq!(reply.body["code"], code, "{}", reply.body);
    assert_eq!(reply.body["status"], status);
    assert_eq!(reply.body["type"], format!("urn:credits:error:{code}"));
    let content_type = reply.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(content_type, "application/problem+json");
}

/// An operator grants `amount` to `user_id` (a fresh key).
pub async fn grant(server: &TestServer, admin: &Auth, user_id: &str, amount: u64) {
    let key = uuid::Uuid::new_v4().to_string();
    let reply = call_with(
        server,
        Method::POST,
        &format!("/v1/admin/users/{user_id}/grants"),
        Some(admin),
        Some(json!({"amount": amount, "reason": "purchase"}).to_string()),
        &[("idempotency-key", &key)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
}

/// The app's server (or whoever `auth` is) places a hold.
pub async fn reserve(server: &TestServer, auth: &Auth, body: Value) -> Reply {
    call(server, Method::POST, "/v1/reservations", Some(auth), Some(body)).await
}

/// The user's balance, read with their own token, after checking its
/// equation (`available + reserved + spent + expired + debited == granted`).
pub async fn balance(server: &TestServer, a: &Actors) -> Value {
    let reply = call(server, Method::GET, "/v1/balance", Some(&a.user), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let b = &reply.body;
    let sum: u64 =
        ["available", "reserved", "spent", "expired", "debited"].iter().map(|k| b[k].as_u64().unwrap_or(0)).sum();
    assert_eq!(Some(sum), b["granted"].as_u64(), "the balance equation: {b}");
    reply.body
}

pub struct Actors {
    /// Alice's own token: reads only.
    pub user: Auth,
    /// The app's back end acting for alice.
    pub server: Auth,
    pub admin: Auth,
    pub user_id: String,
}

pub fn actors(server: &TestServer) -> Actors {
    let alice = user("alice");
    Actors {
        user: Auth::bearer(server.user_token(&alice)),
        server: Auth::acting_for(server.server_token(), alice.as_str()),
        admin: Auth::bearer(server.admin_token()),
        user_id: alice.as_str().to_owned(),
    }
}

/// Posts `body` to the Stripe webhook with `header` as its signature.
pub async fn post_signed(server: &TestServer, body: &str, header: Option<&str>) -> Reply {
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/webhooks/stripe", server.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(header) = header {
        request = request.header("stripe-signature", header);
    }
    let response = request.send().await.expect("post");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    Reply { status, headers: Default::default(), body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}
