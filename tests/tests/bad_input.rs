//! Bad input over HTTP against the dev server: every row sends one bad (or
//! just-good-enough) request and asserts the status and problem `code` it
//! gets. The table in RELIABILITY.md ("Bad input") lists the same rows; run
//! with `--nocapture` to print them in that table's format.

use credits_shared::webhook::{bfl, generic};
use credits_tests::{user, Provider, TestServer, BFL_SECRETS, GENERIC_SECRETS};
use reqwest::header::HeaderValue;
use reqwest::{Client, Method};
use serde_json::Value;

const HOLD: &str = "{hold}";
const USER: &str = "{user}";
const OP: &str = "design_generate_image";

#[derive(Clone)]
enum Auth {
    User,
    Admin,
    Missing,
    /// The whole `Authorization` header value.
    Raw(String),
    /// A webhook delivery signed with the provider's first secret when it
    /// is sent (BFL's `X-BFL-Signature`, or Standard Webhooks' three
    /// headers): over the case's body, or over other bytes when `tampered`.
    Signed {
        provider: Provider,
        tampered: bool,
    },
}

#[derive(Clone)]
struct Case {
    name: String,
    method: Method,
    /// `{hold}` becomes a fresh pending hold of the user; `{user}` the user.
    path: String,
    auth: Auth,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
    field: Option<&'static str>,
}

fn request(name: impl Into<String>, method: Method, path: &str, body: impl Into<Vec<u8>>) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.to_owned(),
        auth: Auth::User,
        content_type: Some("application/json"),
        headers: Vec::new(),
        body: body.into(),
        status: 0,
        code: None,
        field: None,
    }
}

fn post(name: impl Into<String>, path: &str, body: impl Into<Vec<u8>>) -> Case {
    request(name, Method::POST, path, body)
}

fn get(name: impl Into<String>, path: &str) -> Case {
    let mut case = request(name, Method::GET, path, Vec::new());
    case.content_type = None;
    case
}

/// A reservation body with `extra` JSON members after the operation.
fn reserve(name: impl Into<String>, extra: &str) -> Case {
    post(name, "/v1/reservations", format!(r#"{{"operation":"{OP}"{extra}}}"#))
}

impl Case {
    fn auth(mut self, auth: Auth) -> Case {
        self.auth = auth;
        self
    }

    fn content_type(mut self, value: Option<&'static str>) -> Case {
        self.content_type = value;
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Case {
        self.headers.push((name, value.into()));
        self
    }

    /// A 4xx problem with this code, naming `field` (for validation errors).
    fn fails(mut self, status: u16, code: &'static str, field: Option<&'static str>) -> Case {
        self.status = status;
        self.code = Some(code);
        self.field = field;
        self
    }

    fn invalid(self, field: &'static str) -> Case {
        self.fails(400, "validation_error", Some(field))
    }

    fn succeeds(mut self, status: u16) -> Case {
        self.status = status;
        self
    }
}

fn text(n: usize) -> String {
    "x".repeat(n)
}

/// `{"alg":"none","typ":"JWT"}`, base64url: the unsigned-token attack.
const ALG_NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

fn cases(server: &TestServer, user_token: &str) -> Vec<Case> {
    let bearer = |token: String| Auth::Raw(format!("Bearer {token}"));
    let someone = user("bad");
    let other_secret = credits_cli::token::mint("another-secret", someone.as_str(), false, 3600).expect("mint");
    // exp = now − 1 s; the dev server allows no leeway.
    let expired = credits_cli::token::mint(&server.secret, someone.as_str(), false, -1).expect("mint");
    // The user's own valid claims, re-headed with alg none and no signature.
    let claims = user_token.split('.').nth(1).unwrap_or("");
    let alg_none = format!("{ALG_NONE_HEADER}.{claims}.");
    let padded_to = |size: usize| {
        let mut body = format!(r#"{{"operation":"{OP}"}}"#).into_bytes();
        body.resize(size, b' ');
        body
    };
    let hold = |suffix: &str| format!("/v1/reservations/{HOLD}/{suffix}");
    let random_id = uuid::Uuid::new_v4().to_string();
    let grants = format!("/v1/admin/users/{USER}/grants");

    vec![
        // Malformed and truncated JSON.
        post("truncated JSON", "/v1/reservations", r#"{"operation":"design_gen"#).invalid("body"),
        post("truncated after a key", "/v1/reservations", r#"{"operation":"#).invalid("body"),
        post("unquoted key", "/v1/reservations", r#"{operation:"design_generate_image"}"#).invalid("body"),
        post("trailing comma", "/v1/reservations", format!(r#"{{"operation":"{OP}",}}"#)).invalid("body"),
        post("JSON array, not an object", "/v1/reservations", "[]").invalid("body"),
        post("JSON after the object", "/v1/reservations", format!(r#"{{"operation":"{OP}"}} {{}}"#)).invalid("body"),
        post("empty body where a field is required", "/v1/reservations", "").invalid("operation"),
        reserve("unknown field", r#","unitz":2"#).invalid("unitz"),
        reserve("wrong type (string for a number)", r#","units":"2""#).invalid("units"),
        // Duplicate keys: refused, never first-wins or last-wins.
        reserve("duplicate key", r#","units":1,"units":1000"#).invalid("units"),
        post("duplicate key in a grant", &grants, r#"{"amount":1,"amount":1000000000,"reason":"promo"}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "dup-grant")
            .invalid("amount"),
        post("duplicate key in a confirm", &hold("confirm"), r#"{"units":1,"units":1}"#).invalid("units"),
        // Numbers.
        reserve("negative units", r#","units":-1"#).invalid("units"),
        reserve("negative zero units", r#","units":-0"#).invalid("units"),
        reserve("zero units", r#","units":0"#).invalid("units"),
        reserve("fractional units", r#","units":1.5"#).invalid("units"),
        reserve("integral float units (1.0)", r#","units":1.0"#).invalid("units"),
        reserve("exponent units (1e2)", r#","units":1e2"#).invalid("units"),
        reserve("units at the limit (1000)", r#","units":1000"#).succeeds(201),
        reserve("units above the range (1001)", r#","units":1001"#).invalid("units"),
        reserve("units = 2^64 − 1", r#","units":18446744073709551615"#).invalid("units"),
        reserve("units = 2^64 (beyond 64 bits)", r#","units":18446744073709551616"#).invalid("units"),
        reserve("units with 30 digits", r#","units":123456789012345678901234567890"#).invalid("units"),
        reserve("ttlSeconds 0", r#","ttlSeconds":0"#).invalid("ttlSeconds"),
        reserve("ttlSeconds at the limit (86400)", r#","ttlSeconds":86400"#).succeeds(201),
        reserve("ttlSeconds above the range (86401)", r#","ttlSeconds":86401"#).invalid("ttlSeconds"),
        post("confirm more units than held", &hold("confirm"), r#"{"units":2}"#).invalid("units"),
        post("confirm negative units", &hold("confirm"), r#"{"units":-1}"#).invalid("units"),
        post("grant amount at the limit (1000000000)", &grants, r#"{"amount":1000000000,"reason":"promo"}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "grant-at-limit")
            .succeeds(201),
        post("grant amount above the range", &grants, r#"{"amount":1000000001,"reason":"promo"}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "grant-above")
            .invalid("amount"),
        post("grant amount 0", &grants, r#"{"amount":0,"reason":"promo"}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "grant-zero")
            .invalid("amount"),
        post("grant amount negative", &grants, r#"{"amount":-5,"reason":"promo"}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "grant-negative")
            .invalid("amount"),
        post("grant amount fractional", &grants, r#"{"amount":2.5,"reason":"promo"}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "grant-fraction")
            .invalid("amount"),
        post("grant amount beyond 64 bits", &grants, r#"{"amount":18446744073709551616,"reason":"promo"}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "grant-huge")
            .invalid("amount"),
        get("history limit 0", "/v1/transactions?limit=0").invalid("limit"),
        get("history limit above the range (201)", "/v1/transactions?limit=201").invalid("limit"),
        get("history limit negative", "/v1/transactions?limit=-1").invalid("limit"),
        get("history limit fractional", "/v1/transactions?limit=1.5").invalid("limit"),
        get("history limit beyond 64 bits", "/v1/transactions?limit=18446744073709551616").invalid("limit"),
        get("history cursor not base64", "/v1/transactions?cursor=%25%25").invalid("cursor"),
        // Strings at and over each length limit (characters, not bytes).
        post(
            "operation at the limit (128), not in the catalog",
            "/v1/reservations",
            format!(r#"{{"operation":"{}"}}"#, text(128)),
        )
        .fails(400, "unknown_operation", None),
        post("operation over the limit (129)", "/v1/reservations", format!(r#"{{"operation":"{}"}}"#, text(129)))
            .invalid("operation"),
        post("operation empty", "/v1/reservations", r#"{"operation":""}"#).invalid("operation"),
        reserve("description at the limit (500 × é)", &format!(r#","description":"{}""#, "é".repeat(500)))
            .succeeds(201),
        reserve("description over the limit (501)", &format!(r#","description":"{}""#, text(501)))
            .invalid("description"),
        reserve("description with a control character", r#","description":"a\u0007b""#).invalid("description"),
        reserve("taskId at the limit (256)", &format!(r#","taskId":"{}""#, text(256))).succeeds(201),
        reserve("taskId over the limit (257)", &format!(r#","taskId":"{}""#, text(257))).invalid("taskId"),
        reserve("taskId empty", r#","taskId":"""#).invalid("taskId"),
        post("link taskId at the limit (256)", &hold("task"), format!(r#"{{"taskId":"{}"}}"#, "t".repeat(256)))
            .succeeds(200),
        post("link taskId over the limit (257)", &hold("task"), format!(r#"{{"taskId":"{}"}}"#, text(257)))
            .invalid("taskId"),
        post("release reason at the limit (200)", &hold("release"), format!(r#"{{"reason":"{}"}}"#, text(200)))
            .succeeds(200),
        post("release reason over the limit (201)", &hold("release"), format!(r#"{{"reason":"{}"}}"#, text(201)))
            .invalid("reason"),
        // Past validation, the random id is simply not found.
        post(
            "refund reason at the limit (200), unknown id",
            &format!("/v1/admin/reservations/{random_id}/refund"),
            format!(r#"{{"reason":"{}"}}"#, text(200)),
        )
        .auth(Auth::Admin)
        .fails(404, "reservation_not_found", None),
        post(
            "refund reason over the limit (201)",
            &format!("/v1/admin/reservations/{random_id}/refund"),
            format!(r#"{{"reason":"{}"}}"#, text(201)),
        )
        .auth(Auth::Admin)
        .invalid("reason"),
        post(
            "grant description at the limit (500)",
            &grants,
            format!(r#"{{"amount":1,"reason":"promo","description":"{}"}}"#, text(500)),
        )
        .auth(Auth::Admin)
        .header("idempotency-key", "grant-description-500")
        .succeeds(201),
        post(
            "grant description over the limit (501)",
            &grants,
            format!(r#"{{"amount":1,"reason":"promo","description":"{}"}}"#, text(501)),
        )
        .auth(Auth::Admin)
        .header("idempotency-key", "grant-description-501")
        .invalid("description"),
        post("grant reason not one of the list", &grants, r#"{"amount":1,"reason":"gift"}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "grant-gift")
            .invalid("reason"),
        get("userId at the limit (256)", &format!("/v1/admin/users/{}/balance", text(256)))
            .auth(Auth::Admin)
            .succeeds(200),
        get("userId over the limit (257)", &format!("/v1/admin/users/{}/balance", text(257)))
            .auth(Auth::Admin)
            .invalid("userId"),
        get("userId with a control character (%07)", "/v1/admin/users/a%07b/balance")
            .auth(Auth::Admin)
            .invalid("userId"),
        // Idempotency-Key: 1–128 printable ASCII characters.
        reserve("Idempotency-Key at the limit (128)", "").header("idempotency-key", text(128)).succeeds(201),
        reserve("Idempotency-Key over the limit (129)", "")
            .header("idempotency-key", text(129))
            .invalid("Idempotency-Key"),
        reserve("Idempotency-Key over 255 characters (256)", "")
            .header("idempotency-key", text(256))
            .invalid("Idempotency-Key"),
        reserve("Idempotency-Key empty", "").header("idempotency-key", "").invalid("Idempotency-Key"),
        reserve("Idempotency-Key with a non-ASCII byte (0xE9)", "")
            .header("idempotency-key", b"cl\xe9".to_vec())
            .invalid("Idempotency-Key"),
        post("grant without Idempotency-Key", &grants, r#"{"amount":1,"reason":"promo"}"#)
            .auth(Auth::Admin)
            .invalid("Idempotency-Key"),
        // Bytes that are not UTF-8.
        post("non-UTF-8 byte in a string", "/v1/reservations", b"{\"operation\":\"design\xff\"}".to_vec())
            .invalid("body"),
        post("non-UTF-8 bytes as the body", "/v1/reservations", vec![0xff, 0xfe, 0x00, 0x7b]).invalid("body"),
        post(
            "UTF-16 body",
            "/v1/reservations",
            "{\"operation\":\"x\"}".encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>(),
        )
        .invalid("body"),
        reserve("lone surrogate escape (\\ud800)", r#","description":"\ud800""#).invalid("body"),
        // Content type.
        reserve("no Content-Type", "").content_type(None).invalid("Content-Type"),
        reserve("Content-Type text/plain", "").content_type(Some("text/plain")).invalid("Content-Type"),
        reserve("Content-Type form-urlencoded", "")
            .content_type(Some("application/x-www-form-urlencoded"))
            .invalid("Content-Type"),
        reserve("Content-Type application/json; charset=utf-8", "")
            .content_type(Some("application/json; charset=utf-8"))
            .succeeds(201),
        reserve("Content-Type in capitals", "").content_type(Some("Application/JSON")).succeeds(201),
        post("confirm with no body and no Content-Type", &hold("confirm"), "").content_type(None).succeeds(200),
        // Body size.
        post("body of exactly 64 KiB (JSON + spaces)", "/v1/reservations", padded_to(64 * 1024)).succeeds(201),
        post("body of 64 KiB + 1", "/v1/reservations", padded_to(64 * 1024 + 1)).fails(413, "payload_too_large", None),
        post("body of 1 MiB + 1", "/v1/reservations", padded_to(1024 * 1024 + 1)).fails(413, "payload_too_large", None),
        // Reservation ids.
        get("reservation id not a UUID", "/v1/reservations/not-a-uuid").invalid("id"),
        get("reservation id in upper case", &format!("/v1/reservations/{}", random_id.to_uppercase())).invalid("id"),
        get("reservation id without hyphens", &format!("/v1/reservations/{}", random_id.replace('-', "")))
            .invalid("id"),
        get("reservation id with braces", &format!("/v1/reservations/%7B{random_id}%7D")).invalid("id"),
        post("confirm an id that is not a UUID", "/v1/reservations/123/confirm", "").invalid("id"),
        get("reservation id a UUID nobody holds", &format!("/v1/reservations/{random_id}")).fails(
            404,
            "reservation_not_found",
            None,
        ),
        // Tokens.
        get("no Authorization header", "/v1/balance").auth(Auth::Missing).fails(401, "unauthorized", None),
        get("token signed with another secret", "/v1/balance").auth(bearer(other_secret)).fails(
            401,
            "unauthorized",
            None,
        ),
        get("token with alg none, no signature", "/v1/balance").auth(bearer(alg_none)).fails(401, "unauthorized", None),
        get("token expired by one second", "/v1/balance").auth(bearer(expired)).fails(401, "unauthorized", None),
        get("token that is not a JWT", "/v1/balance").auth(bearer("garbage".into())).fails(401, "unauthorized", None),
        get("token without the Bearer scheme", "/v1/balance").auth(Auth::Raw(user_token.to_owned())).fails(
            401,
            "unauthorized",
            None,
        ),
        get("user token on an admin route", &format!("/v1/admin/users/{USER}/balance")).fails(403, "forbidden", None),
    ]
    .into_iter()
    .chain(webhook_cases())
    .collect()
}

/// Authentic deliveries (signed with the server's secret) whose bodies are
/// wrong, for both verifiers: 400 naming the field, never a 5xx, nothing
/// settled. The body is read only after the signature checks out.
fn webhook_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for provider in [Provider::Bfl, Provider::Generic] {
        let path = format!("/v1/webhooks/{}", provider.as_str());
        let delivery = |name: &str, body: &str| {
            post(format!("webhook ({}): {name}", provider.as_str()), &path, body)
                .auth(Auth::Signed { provider, tampered: false })
        };
        let task = || format!("bad-input-{}", uuid::Uuid::new_v4().simple());
        cases.extend([
            delivery("signed body that is not JSON", "job done").invalid("body"),
            delivery("signed JSON array", r#"[{"id":"t","status":"Ready"}]"#).invalid("body"),
            delivery("no task id", r#"{"status":"Ready"}"#).invalid("task_id"),
            delivery("empty task id", r#"{"id":"","status":"Ready"}"#).invalid("task_id"),
            delivery("task id a number", r#"{"task_id":7,"status":"Ready"}"#).invalid("task_id"),
            delivery("task id of 257 characters", &format!(r#"{{"id":"{}","status":"Ready"}}"#, text(257)))
                .invalid("task_id"),
            delivery("no status", r#"{"id":"t"}"#).invalid("status"),
            delivery("status a number", r#"{"id":"t","status":1}"#).invalid("status"),
            delivery("negative units", r#"{"id":"t","status":"Ready","units":-1}"#).invalid("units"),
            delivery("fractional units", r#"{"id":"t","status":"Ready","units":1.5}"#).invalid("units"),
            delivery("units as a string", r#"{"id":"t","status":"Ready","units":"2"}"#).invalid("units"),
            delivery("units over 2³²−1", r#"{"id":"t","status":"Ready","units":4294967296}"#).invalid("units"),
            delivery("signature over other bytes", r#"{"id":"t","status":"Ready"}"#)
                .auth(Auth::Signed { provider, tampered: true })
                .fails(403, "forbidden", None),
            delivery("a status nobody maps, task unknown", &format!(r#"{{"id":"{}","status":"exploded"}}"#, task()))
                .succeeds(200),
            delivery("success for a task nobody linked yet", &format!(r#"{{"id":"{}","status":"Ready"}}"#, task()))
                .succeeds(202),
            delivery(
                "any Content-Type (the raw body is what is signed)",
                &format!(r#"{{"id":"{}","status":"Ready"}}"#, task()),
            )
            .content_type(Some("text/plain"))
            .succeeds(202),
        ]);
    }
    cases
}

async fn place_hold(client: &Client, server: &TestServer, token: &str) -> String {
    let response = client
        .post(format!("{}/v1/reservations", server.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(format!(r#"{{"operation":"{OP}"}}"#))
        .send()
        .await
        .expect("reserve");
    assert_eq!(response.status().as_u16(), 201, "placing a hold for a case");
    let body: Value = response.json().await.expect("hold json");
    body["reservationId"].as_str().expect("reservationId").to_owned()
}

/// Sends the case; returns a description of what was wrong, if anything.
async fn run(client: &Client, server: &TestServer, tokens: (&str, &str), user_id: &str, case: &Case) -> Option<String> {
    let mut path = case.path.replace(USER, user_id);
    if path.contains(HOLD) {
        path = path.replace(HOLD, &place_hold(client, server, tokens.0).await);
    }
    let mut request = client.request(case.method.clone(), format!("{}{}", server.base, path));
    request = match &case.auth {
        Auth::User => request.bearer_auth(tokens.0),
        Auth::Admin => request.bearer_auth(tokens.1),
        Auth::Missing => request,
        Auth::Raw(value) => request.header("authorization", value),
        Auth::Signed { provider, tampered } => {
            let mut signed = case.body.clone();
            if *tampered {
                signed.extend_from_slice(b" ");
            }
            if *provider == Provider::Bfl {
                let secret = BFL_SECRETS.split(',').next().unwrap_or_default();
                request.header("x-bfl-signature", bfl::sign(secret, &signed))
            } else {
                let secret = GENERIC_SECRETS.split(',').next().unwrap_or_default();
                let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
                let now = server.env.ledger.now().unix_seconds();
                let Some(signature) = generic::sign(secret, &id, now, &signed) else {
                    return Some("unsignable".into());
                };
                request
                    .header("webhook-id", id)
                    .header("webhook-timestamp", now.to_string())
                    .header("webhook-signature", signature)
            }
        }
    };
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    for (name, value) in &case.headers {
        let Ok(value) = HeaderValue::from_bytes(value) else { return Some("unsendable header".into()) };
        request = request.header(*name, value);
    }
    let response = match request.body(case.body.clone()).send().await {
        Ok(response) => response,
        Err(e) => return Some(format!("request failed: {e}")),
    };
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let got = format!("{status} {} field={}", body["code"], body["field"]);
    if status != case.status {
        return Some(format!("expected {} {:?}, got {got}: {text:.300}", case.status, case.code));
    }
    // A row that expects success is right once its status is.
    let code = case.code?;
    let problem_ok = content_type == "application/problem+json"
        && body["code"] == code
        && body["status"] == status
        && body["type"] == format!("urn:credits:error:{code}")
        && body["detail"].as_str().is_some_and(|d| !d.is_empty())
        && case.field.is_none_or(|field| body["field"] == field);
    (!problem_ok).then(|| format!("expected {status} {code} field={:?}, got {got} ({content_type})", case.field))
}

#[tokio::test]
async fn every_bad_input_gets_its_documented_4xx() {
    let server = TestServer::start().await;
    let alice = user("alice");
    server.env.grant(&alice, 1_000_000_000).await;
    let user_token = server.token(&alice, false);
    let admin_token = server.token(&user("admin"), true);
    let client = Client::new();

    let mut failures = Vec::new();
    let table = cases(&server, &user_token);
    for case in &table {
        let answer = match case.code {
            Some(code) => {
                format!("{} `{code}`{}", case.status, case.field.map(|f| format!(" (`{f}`)")).unwrap_or_default())
            }
            None => format!("{} (accepted)", case.status),
        };
        println!("| {} | {answer} |", case.name);
        if let Some(problem) = run(&client, &server, (&user_token, &admin_token), alice.as_str(), case).await {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), table.len(), failures.join("\n"));
    // Nothing a bad request did left the books inconsistent.
    server.env.assert_books_balance().await;
}
