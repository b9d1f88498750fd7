//! The deployed path: API Gateway HTTP API (payload 2.0) events shaped as
//! AWS documents them — a JWT authorizer's claims as a map of strings,
//! `scope` space-separated, `cognito:groups` as `"[a b]"`, a Cognito
//! client-credentials access token (`client_id`, no groups, `sub` = the
//! client), and no authorizer at all — through each HTTP function's
//! handler: who the caller is taken to be, and what each may do.

use std::sync::Arc;

use credits_shared::domain::principal::{Access, Role, TrustedClients};
use credits_shared::http::identity::caller;
use credits_shared::http::{handle, Function, Route, ROUTES};
use credits_shared::inbound::Verifiers;
use credits_shared::App;
use credits_tests::{user, TestEnv};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

const BACKEND: &str = "5f2kq1backendclient0000000";
const OPS_TOOL: &str = "7h1opstoolclient00000000000";
const POOL: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123";

/// A Cognito user's access token as the authorizer hands it over.
fn user_claims(sub: &str, groups: Option<&str>) -> Value {
    let mut claims = json!({
        "auth_time": "1795370645", "client_id": "3n4browserclient0000000000", "event_id": "a1b2c3",
        "exp": "1795374245", "iat": "1795370645", "iss": POOL, "jti": "j-1", "origin_jti": "o-1",
        "scope": "aws.cognito.signin.user.admin openid email", "sub": sub, "token_use": "access",
        "username": sub,
    });
    if let Some(groups) = groups {
        claims["cognito:groups"] = json!(groups);
    }
    claims
}

/// A client-credentials access token: no user, no groups, `sub` is the client.
fn client_claims(client_id: &str, scope: &str) -> Value {
    json!({
        "client_id": client_id, "exp": "1795374245", "iat": "1795370645", "iss": POOL, "jti": "j-2",
        "scope": scope, "sub": client_id, "token_use": "access", "version": "2",
    })
}

/// An HTTP API payload 2.0 event, as API Gateway sends it to the function.
fn event(method: &str, path: &str, claims: Option<Value>, headers: &[(&str, &str)], body: &str) -> Request {
    lambda_http::request::from_str(&event_json(method, path, claims, headers, body).to_string())
        .expect("an API Gateway event")
}

fn event_json(method: &str, path: &str, claims: Option<Value>, headers: &[(&str, &str)], body: &str) -> Value {
    let mut header_map = json!({
        "accept": "*/*", "content-length": body.len().to_string(), "host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "user-agent": "curl/8.5.0", "x-amzn-trace-id": "Root=1-6543-abc", "x-forwarded-for": "203.0.113.9",
        "x-forwarded-port": "443", "x-forwarded-proto": "https",
    });
    if !body.is_empty() {
        header_map["content-type"] = json!("application/json");
    }
    for (name, value) in headers {
        header_map[name.to_ascii_lowercase()] = json!(value);
    }
    let mut context = json!({
        "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
        "domainPrefix": "abc123",
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "curl/8.5.0"},
        "requestId": "JKJaXmPLvHcESHA=", "routeKey": format!("{method} {path}"), "stage": "$default",
        "time": "22/Nov/2026:18:04:05 +0000", "timeEpoch": 1795370645123i64,
    });
    if let Some(claims) = claims {
        context["authorizer"] = json!({"jwt": {"claims": claims, "scopes": null}});
    }
    json!({
        "version": "2.0", "routeKey": format!("{method} {path}"), "rawPath": path, "rawQueryString": "",
        "headers": header_map, "requestContext": context, "body": body, "isBase64Encoded": false,
    })
}

fn body(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null)
}

fn trusted() -> TrustedClients {
    TrustedClients::new(BACKEND, OPS_TOOL)
}

#[test]
fn who_each_aws_shaped_token_is_taken_to_be() {
    let trusted = trusted();
    let role = |claims: Value| caller(&event("GET", "/v1/balance", Some(claims), &[], ""), &trusted).map(|c| c.role);
    assert_eq!(role(user_claims("alice", None)).ok(), Some(Role::User));
    assert_eq!(role(user_claims("alice", Some("[beta-testers]"))).ok(), Some(Role::User));
    assert_eq!(role(user_claims("olga", Some("[credits-admin beta-testers]"))).ok(), Some(Role::Admin));
    // Groups are read strictly: a group whose name holds the admin group's
    // (apps create groups from names users type) makes no admin.
    for groups in
        ["[x,credits-admin]", "[x, credits-admin]", "[[credits-admin]]", "[credits-admin\"]", "x,credits-admin"]
    {
        assert_eq!(role(user_claims("mallory", Some(groups))).ok(), Some(Role::User), "{groups}");
    }
    assert_eq!(role(user_claims("olga", Some("[\"credits-admin\"]"))).ok(), Some(Role::Admin), "a JSON array");
    assert_eq!(role(client_claims(BACKEND, "credits/server")).ok(), Some(Role::Server));
    assert_eq!(role(client_claims(OPS_TOOL, "credits/admin")).ok(), Some(Role::Admin));
    // A scope alone never makes a server or an admin.
    assert_eq!(role(client_claims("rogue-client", "credits/server credits/admin")).ok(), Some(Role::User));
    assert_eq!(role(client_claims(BACKEND, "credits/admin")).ok(), Some(Role::User));
    let server =
        caller(&event("GET", "/v1/balance", Some(client_claims(BACKEND, "credits/server")), &[], ""), &trusted)
            .expect("a caller");
    assert_eq!(server.sub.as_str(), BACKEND, "the actor recorded for a client is its id");
    assert!(caller(&event("GET", "/v1/balance", None, &[], ""), &trusted).is_err(), "no authorizer, no caller");

    // The authorizer's own `scopes` list counts like the `scope` claim.
    let mut claims = client_claims(BACKEND, "");
    claims.as_object_mut().map(|c| c.remove("scope"));
    let mut listed = event_json("GET", "/v1/balance", Some(claims), &[], "");
    listed["requestContext"]["authorizer"]["jwt"]["scopes"] = json!(["credits/server"]);
    let listed = lambda_http::request::from_str(&listed.to_string()).expect("an API Gateway event");
    assert_eq!(caller(&listed, &trusted).map(|c| c.role).ok(), Some(Role::Server));
}

struct Handlers {
    app: App,
    env: TestEnv,
}

impl Handlers {
    async fn new() -> Handlers {
        let env = TestEnv::new().await;
        let app = App { ledger: env.ledger.clone(), verifiers: Arc::new(Verifiers::new("", "")), trusted: trusted() };
        Handlers { app, env }
    }

    async fn send(&self, function: Function, request: Request) -> (u16, Value) {
        let response = handle(&self.app, function, request).await;
        (response.status().as_u16(), body(&response))
    }
}

#[tokio::test]
async fn through_each_function_users_read_servers_write_admins_administer() {
    let h = Handlers::new().await;
    let alice = user("alice");
    h.env.grant(&alice, 50).await;
    let server = || Some(client_claims(BACKEND, "credits/server"));
    let for_alice = [("Credits-User", alice.as_str())];
    let alice_token = || Some(user_claims(alice.as_str(), Some("[beta-testers]")));
    let reserve_body = r#"{"operation":"design_generate_image","units":2}"#;

    // The user's own token: reads pass, every write is refused before the body is read.
    let (status, balance) = h.send(Function::Account, event("GET", "/v1/balance", alice_token(), &[], "")).await;
    assert_eq!((status, balance["available"].as_u64()), (200, Some(50)));
    let (status, problem) =
        h.send(Function::Reserve, event("POST", "/v1/reservations", alice_token(), &[], reserve_body)).await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));

    // The app's server places the hold for alice, and settles it.
    let (status, hold) =
        h.send(Function::Reserve, event("POST", "/v1/reservations", server(), &for_alice, reserve_body)).await;
    assert_eq!(status, 201, "{hold}");
    assert_eq!(hold["userId"], alice.as_str());
    let id = hold["reservationId"].as_str().expect("an id").to_owned();
    let hold_path = |verb: &str| format!("/v1/reservations/{id}/{verb}");
    // Every write route of the route table, with a body that would do.
    let writes: Vec<&Route> = ROUTES.iter().filter(|r| r.op.access() == Some(Access::Write)).collect();
    assert_eq!(writes.len(), 7, "reserve, confirm, release, extend, task link, auto-recharge on and off");
    for route in &writes {
        let path = route.path.replace("{id}", &id);
        let body = if route.path.ends_with("/task") { r#"{"taskId":"t-1"}"# } else { reserve_body };
        let (status, problem) = h.send(route.function, event(route.method, &path, alice_token(), &[], body)).await;
        assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")), "a user token on {}", route.path);
    }
    let (status, got) =
        h.send(Function::Account, event("GET", &format!("/v1/reservations/{id}"), alice_token(), &[], "")).await;
    assert_eq!((status, got["status"].as_str()), (200, Some("pending")), "the user's attempts changed nothing");

    // Another user's name on the hold: 404, as a missing hold.
    let bob = user("bob");
    let for_bob = [("Credits-User", bob.as_str())];
    let (status, _) = h.send(Function::Confirm, event("POST", &hold_path("confirm"), server(), &for_bob, "")).await;
    assert_eq!(status, 404);
    // Naming nobody: 400 on every route of one hold, the hold untouched.
    for route in ROUTES.iter().filter(|r| r.path.starts_with("/v1/reservations/{id}")) {
        let path = route.path.replace("{id}", &id);
        let body = match route.path.rsplit('/').next() {
            Some("task") => r#"{"taskId":"t-1"}"#,
            Some("extend") => r#"{"ttlSeconds":60}"#,
            Some("{id}") => "",
            _ => "{}",
        };
        let (status, problem) = h.send(route.function, event(route.method, &path, server(), &[], body)).await;
        assert_eq!((status, problem["field"].as_str()), (400, Some("Credits-User")), "{} {}", route.method, route.path);
    }
    let (status, confirmed) =
        h.send(Function::Confirm, event("POST", &hold_path("confirm"), server(), &for_alice, r#"{"units":1}"#)).await;
    assert_eq!((status, confirmed["status"].as_str()), (200, Some("confirmed")), "{confirmed}");
    let (_, got) =
        h.send(Function::Account, event("GET", &format!("/v1/reservations/{id}"), server(), &for_alice, "")).await;
    let by: Vec<&str> = got["events"].as_array().into_iter().flatten().filter_map(|e| e["by"].as_str()).collect();
    assert_eq!(by, ["server", "server"], "{got}");
    // An operator may read any hold without naming its user.
    let olga = || Some(user_claims("olga", Some("[credits-admin]")));
    let (status, got) =
        h.send(Function::Account, event("GET", &format!("/v1/reservations/{id}"), olga(), &[], "")).await;
    assert_eq!((status, got["userId"].as_str()), (200, Some(alice.as_str())), "{got}");

    // The server must name the user on user-scoped routes, and is no admin.
    let (status, problem) = h.send(Function::Account, event("GET", "/v1/balance", server(), &[], "")).await;
    assert_eq!((status, problem["field"].as_str()), (400, Some("Credits-User")));
    let admin_balance = format!("/v1/admin/users/{alice}/balance");
    let (status, _) = h.send(Function::Admin, event("GET", &admin_balance, server(), &[], "")).await;
    assert_eq!(status, 403);

    // A client whose scope is not backed by a listed client id is a user.
    let rogue = Some(client_claims("rogue-client", "credits/server credits/admin"));
    let (status, _) =
        h.send(Function::Reserve, event("POST", "/v1/reservations", rogue.clone(), &for_alice, reserve_body)).await;
    assert_eq!(status, 403);
    let (status, _) = h.send(Function::Admin, event("GET", &admin_balance, rogue, &[], "")).await;
    assert_eq!(status, 403);

    // Operators: by group, or by the listed operators' client.
    for admin in [user_claims("olga", Some("[credits-admin beta-testers]")), client_claims(OPS_TOOL, "credits/admin")] {
        let (status, balance) = h.send(Function::Admin, event("GET", &admin_balance, Some(admin), &[], "")).await;
        assert_eq!((status, balance["spent"].as_u64()), (200, Some(5)));
    }
    let grant = format!("/v1/admin/users/{alice}/grants");
    let (status, _) = h
        .send(
            Function::Admin,
            event("POST", &grant, olga(), &[("Idempotency-Key", "g-1")], r#"{"amount":5,"reason":"promo"}"#),
        )
        .await;
    assert_eq!(status, 201);
    let (_, history) = h.send(Function::Account, event("GET", "/v1/transactions", alice_token(), &[], "")).await;
    let granted = history["items"].as_array().into_iter().flatten().find(|i| i["reason"] == "promo").cloned();
    assert_eq!(granted.map(|g| g["actor"].clone()), Some(json!("olga")), "{history}");

    // No authorizer (a public route's shape on a private one): 401.
    let (status, problem) = h.send(Function::Account, event("GET", "/v1/balance", None, &[], "")).await;
    assert_eq!((status, problem["code"].as_str()), (401, Some("unauthorized")));
    h.env.assert_books_balance().await;
}
