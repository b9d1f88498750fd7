//! Bad input over HTTP against the dev server: every row sends one bad (or
//! just-good-enough) request and asserts the status and problem `code` it
//! gets. The table in RELIABILITY.md ("Bad input") lists the same rows; run
//! with `--nocapture` to print them in that table's format.

use credits_shared::inbound::{bfl, generic, stripe};
use credits_tests::{
    user, Bearer, Provider, TestServer, ADMIN_CLIENT, BFL_SECRETS, GENERIC_SECRETS, SERVER_CLIENT, STRIPE_SECRETS,
    USER_HEADER,
};
use reqwest::header::HeaderValue;
use reqwest::{Client, Method};
use serde_json::{json, Value};

const HOLD: &str = "{hold}";
/// A hold of the user the server placed and then released.
const SETTLED: &str = "{settled}";
/// A pending hold of the user placed [`AGED_HOURS`] ago on the test clock.
const AGED: &str = "{aged}";
/// How old an `{aged}` hold is: 6 days 17 hours, so that it may be extended
/// by 7 hours at most (7 days after `createdAt`).
const AGED_HOURS: i64 = 161;
const USER: &str = "{user}";
const OP: &str = "design_generate_image";

#[derive(Clone)]
enum Auth {
    /// The app's back end naming the user in `Credits-User` (the default:
    /// how apps call every route but the admin ones).
    Server,
    /// The user's own token: reads only.
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
    /// A Stripe delivery: `Stripe-Signature` made with `secret` when it is
    /// sent, its `t` the server's clock moved by `skew` seconds, over the
    /// case's body (or over other bytes when `tampered`).
    Stripe {
        secret: &'static str,
        skew: i64,
        tampered: bool,
    },
}

#[derive(Clone)]
struct Case {
    name: String,
    method: Method,
    /// `{hold}` becomes a fresh pending hold of the user, `{settled}` a
    /// released one, `{aged}` a pending one placed [`AGED_HOURS`] ago;
    /// `{user}` the user.
    path: String,
    auth: Auth,
    content_type: Option<&'static str>,
    /// `{user}` in a value becomes the user. A `Credits-User` here replaces
    /// the one `Auth::Server` sends.
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    status: u16,
    code: Option<&'static str>,
    field: Option<&'static str>,
    /// Members the answer (problem or not) must carry, with these values;
    /// `{user}` in a string value is the user.
    members: Vec<(&'static str, Value)>,
}

fn request(name: impl Into<String>, method: Method, path: &str, body: impl Into<Vec<u8>>) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.to_owned(),
        auth: Auth::Server,
        content_type: Some("application/json"),
        headers: Vec::new(),
        body: body.into(),
        status: 0,
        code: None,
        field: None,
        members: Vec::new(),
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

    /// The answer also carries `name` with this value.
    fn with(mut self, name: &'static str, value: Value) -> Case {
        self.members.push((name, value));
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

/// A token with these claims besides `sub`, `iat` and `exp`, signed with
/// `secret`: for shapes `credits_cli::token::mint` does not make.
fn mint_claims(secret: &str, sub: &str, extra: Value) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"sub": sub, "iat": now, "exp": now + 3600, "iss": "credits-dev"});
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())).expect("mint")
}

fn cases(server: &TestServer, tokens: &Tokens) -> Vec<Case> {
    let bearer = |token: String| Auth::Raw(format!("Bearer {token}"));
    let someone = user("bad");
    let other_secret = credits_cli::token::mint("another-secret", Bearer::User(someone.as_str()), 3600).expect("mint");
    // exp = now − 1 s; the dev server allows no leeway.
    let expired = credits_cli::token::mint(&server.secret, Bearer::User(someone.as_str()), -1).expect("mint");
    // The user's own valid claims, re-headed with alg none and no signature.
    let claims = tokens.user.split('.').nth(1).unwrap_or("");
    let alg_none = format!("{ALG_NONE_HEADER}.{claims}.");
    let padded_to = |size: usize| {
        let mut body = format!(r#"{{"operation":"{OP}"}}"#).into_bytes();
        body.resize(size, b' ');
        body
    };
    let hold = |suffix: &str| format!("/v1/reservations/{HOLD}/{suffix}");
    let random_id = uuid::Uuid::new_v4().to_string();
    let grants = format!("/v1/admin/users/{USER}/grants");
    let debits = format!("/v1/admin/users/{USER}/debits");
    let plan = format!("/v1/admin/users/{USER}/plan");
    // A user nobody granted anything: nothing available to take back.
    let debtor = user("debtor");
    let debtor_debits = format!("/v1/admin/users/{debtor}/debits");
    let admin_balance = format!("/v1/admin/users/{USER}/balance");
    let settings = format!("/v1/admin/users/{USER}/settings");
    let recharge = "/v1/auto-recharge";
    let recharge_body = |pack: &str, threshold: &str, limit: &str| {
        format!(r#"{{"pack":"{pack}","threshold":{threshold},"monthlyLimit":{limit}}}"#)
    };
    let endpoints = "/v1/admin/webhook-endpoints";
    let unknown_endpoint = format!("{endpoints}/{random_id}");
    let unknown_deliveries = |query: &str| format!("{endpoints}/{random_id}/deliveries{query}");
    let endpoint = |url: &str, extra: &str| format!(r#"{{"url":"{url}"{extra}}}"#);
    // "https://example.com/" is 20 characters.
    let url_of = |n: usize| format!("https://example.com/{}", "a".repeat(n - 20));
    let the_hold = format!("/v1/reservations/{HOLD}");
    let settled = |suffix: &str| format!("/v1/reservations/{SETTLED}/{suffix}");
    let aged = |suffix: &str| format!("/v1/reservations/{AGED}/{suffix}");
    let task_body = || format!(r#"{{"taskId":"bad-input-{}"}}"#, uuid::Uuid::new_v4().simple());
    // The server's token naming nobody in `Credits-User`.
    let server_alone = bearer(tokens.server.clone());
    // Another user's own token (theirs is valid; the hold is not theirs).
    let someone_token = bearer(server.mint(Bearer::User(someone.as_str())));
    // `scope credits/server` from a client that is not listed: a user.
    let unlisted_server = bearer(server.mint(Bearer::Server("unlisted-client")));
    // A user whose `cognito:groups` claim is `groups` (the dev server
    // flattens a list to `[a b]`, as API Gateway does).
    let in_groups =
        |groups: Value| bearer(mint_claims(&server.secret, someone.as_str(), json!({"cognito:groups": groups})));
    let admin_scope = |client: &str| {
        bearer(mint_claims(
            &server.secret,
            client,
            json!({"client_id": client, "scope": "credits/admin", "token_use": "access"}),
        ))
    };

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
        post("confirm with final not a boolean", &hold("confirm"), r#"{"units":1,"final":"false"}"#).invalid("final"),
        // Non-final captures (`final: false`): units and a key required.
        post("non-final capture of 1 unit", &hold("confirm"), r#"{"units":1,"final":false}"#)
            .header("idempotency-key", "capture-one")
            .succeeds(200)
            .with("status", json!("pending"))
            .with("capturedUnits", json!(1)),
        post("non-final capture of 0 units", &hold("confirm"), r#"{"units":0,"final":false}"#)
            .header("idempotency-key", "capture-zero")
            .invalid("units"),
        post("non-final capture of more units than held", &hold("confirm"), r#"{"units":2,"final":false}"#)
            .header("idempotency-key", "capture-two")
            .invalid("units"),
        post("non-final capture without units", &hold("confirm"), r#"{"final":false}"#)
            .header("idempotency-key", "capture-all")
            .invalid("units"),
        post("non-final capture without Idempotency-Key", &hold("confirm"), r#"{"units":1,"final":false}"#)
            .invalid("Idempotency-Key"),
        // Extending a hold: `ttlSeconds` 1–86400, at most 7 days after `createdAt`.
        post("extend ttlSeconds 0", &hold("extend"), r#"{"ttlSeconds":0}"#).invalid("ttlSeconds"),
        post("extend ttlSeconds at the limit (86400)", &hold("extend"), r#"{"ttlSeconds":86400}"#).succeeds(200),
        post("extend ttlSeconds above the range (86401)", &hold("extend"), r#"{"ttlSeconds":86401}"#)
            .invalid("ttlSeconds"),
        post("extend ttlSeconds as a string", &hold("extend"), r#"{"ttlSeconds":"3600"}"#).invalid("ttlSeconds"),
        post("extend without ttlSeconds", &hold("extend"), "{}").invalid("ttlSeconds"),
        post("extend a 161-hour-old hold to 7 days after createdAt (7 h)", &aged("extend"), r#"{"ttlSeconds":25200}"#)
            .succeeds(200)
            .with("status", json!("pending")),
        post("extend a 161-hour-old hold beyond 7 days after createdAt", &aged("extend"), r#"{"ttlSeconds":25201}"#)
            .invalid("ttlSeconds"),
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
        // Credit lots: a grant's lot is `(priority 0–100, expiresAt in the future)`.
        post(
            "grant expiresAt in the past",
            &grants,
            r#"{"amount":1,"reason":"promo","expiresAt":"2020-01-01T00:00:00.000Z"}"#,
        )
        .auth(Auth::Admin)
        .header("idempotency-key", "grant-expired")
        .invalid("expiresAt"),
        post(
            "grant expiresAt not a date-time (tomorrow)",
            &grants,
            r#"{"amount":1,"reason":"promo","expiresAt":"tomorrow"}"#,
        )
        .auth(Auth::Admin)
        .header("idempotency-key", "grant-tomorrow")
        .invalid("expiresAt"),
        post("grant priority at the limit (100)", &grants, r#"{"amount":1,"reason":"promo","priority":100}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "grant-priority-100")
            .succeeds(201),
        post("grant priority above the range (101)", &grants, r#"{"amount":1,"reason":"promo","priority":101}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "grant-priority-101")
            .invalid("priority"),
        post("grant priority negative", &grants, r#"{"amount":1,"reason":"promo","priority":-1}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "grant-priority-negative")
            .invalid("priority"),
        // Debits: an admin takes credits back, all of `amount` or (without `partial`) nothing.
        post("debit without Idempotency-Key", &debits, r#"{"amount":1,"reason":"refund"}"#)
            .auth(Auth::Admin)
            .invalid("Idempotency-Key"),
        post("debit reason not one of the list (theft)", &debits, r#"{"amount":1,"reason":"theft"}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "debit-theft")
            .invalid("reason"),
        post("debit amount 0", &debits, r#"{"amount":0,"reason":"refund"}"#)
            .auth(Auth::Admin)
            .header("idempotency-key", "debit-zero")
            .invalid("amount"),
        post(
            "debit more than available (5 of 0), not partial",
            &debtor_debits,
            r#"{"amount":5,"reason":"chargeback"}"#,
        )
        .auth(Auth::Admin)
        .header("idempotency-key", "debit-short")
        .fails(402, "insufficient_credits", None)
        .with("available", json!(0))
        .with("shortfall", json!(5)),
        // Plans (PUT): an allowance per day, week or month.
        request(
            "plan period not one of the list (fortnight)",
            Method::PUT,
            &plan,
            r#"{"plan":"pro","allowance":10,"period":"fortnight"}"#,
        )
        .auth(Auth::Admin)
        .invalid("period"),
        request("plan allowance 0", Method::PUT, &plan, r#"{"plan":"pro","allowance":0,"period":"day"}"#)
            .auth(Auth::Admin)
            .invalid("allowance"),
        request("plan name empty", Method::PUT, &plan, r#"{"plan":"","allowance":10,"period":"day"}"#)
            .auth(Auth::Admin)
            .invalid("plan"),
        request(
            "plan anchor not a date-time (soon)",
            Method::PUT,
            &plan,
            r#"{"plan":"pro","allowance":10,"period":"day","anchor":"soon"}"#,
        )
        .auth(Auth::Admin)
        .invalid("anchor"),
        request("server token: plan", Method::PUT, &plan, r#"{"plan":"pro","allowance":10,"period":"day"}"#).fails(
            403,
            "forbidden",
            None,
        ),
        // Settings (PUT): `lowBalanceThreshold` 0–1000000000, or null for the default.
        request("settings lowBalanceThreshold negative", Method::PUT, &settings, r#"{"lowBalanceThreshold":-1}"#)
            .auth(Auth::Admin)
            .invalid("lowBalanceThreshold"),
        request(
            "settings lowBalanceThreshold above the range (1000000001)",
            Method::PUT,
            &settings,
            r#"{"lowBalanceThreshold":1000000001}"#,
        )
        .auth(Auth::Admin)
        .invalid("lowBalanceThreshold"),
        request("settings lowBalanceThreshold as a string", Method::PUT, &settings, r#"{"lowBalanceThreshold":"5"}"#)
            .auth(Auth::Admin)
            .invalid("lowBalanceThreshold"),
        request("settings lowBalanceThreshold fractional", Method::PUT, &settings, r#"{"lowBalanceThreshold":2.5}"#)
            .auth(Auth::Admin)
            .invalid("lowBalanceThreshold"),
        request("settings without lowBalanceThreshold", Method::PUT, &settings, "{}")
            .auth(Auth::Admin)
            .invalid("lowBalanceThreshold"),
        request(
            "settings lowBalanceThreshold at the limit (1000000000)",
            Method::PUT,
            &settings,
            r#"{"lowBalanceThreshold":1000000000}"#,
        )
        .auth(Auth::Admin)
        .succeeds(200)
        .with("lowBalanceThreshold", json!(1_000_000_000)),
        request(
            "settings lowBalanceThreshold null (the default)",
            Method::PUT,
            &settings,
            r#"{"lowBalanceThreshold":null}"#,
        )
        .auth(Auth::Admin)
        .succeeds(200)
        .with("lowBalanceThreshold", Value::Null),
        request("server token: settings", Method::PUT, &settings, r#"{"lowBalanceThreshold":5}"#).fails(
            403,
            "forbidden",
            None,
        ),
        request("user token: settings", Method::PUT, &settings, r#"{"lowBalanceThreshold":5}"#).auth(Auth::User).fails(
            403,
            "forbidden",
            None,
        ),
        // Auto-recharge (PUT): a priced pack of the catalog, `threshold`
        // 1–1000000000, `monthlyLimit` 1–100; the server names the user.
        request("auto-recharge pack the catalog lacks", Method::PUT, recharge, recharge_body("gold", "20", "3"))
            .invalid("pack"),
        request("auto-recharge pack empty", Method::PUT, recharge, recharge_body("", "20", "3")).invalid("pack"),
        request("auto-recharge threshold 0", Method::PUT, recharge, recharge_body("starter", "0", "3"))
            .invalid("threshold"),
        request("auto-recharge threshold negative", Method::PUT, recharge, recharge_body("starter", "-5", "3"))
            .invalid("threshold"),
        request("auto-recharge monthlyLimit 0", Method::PUT, recharge, recharge_body("starter", "20", "0"))
            .invalid("monthlyLimit"),
        request(
            "auto-recharge monthlyLimit above the range (101)",
            Method::PUT,
            recharge,
            recharge_body("starter", "20", "101"),
        )
        .invalid("monthlyLimit"),
        request("auto-recharge without monthlyLimit", Method::PUT, recharge, r#"{"pack":"starter","threshold":20}"#)
            .invalid("monthlyLimit"),
        request(
            "auto-recharge unknown field",
            Method::PUT,
            recharge,
            r#"{"pack":"starter","threshold":20,"monthlyLimit":3,"amount":1}"#,
        )
        .invalid("amount"),
        request(
            "auto-recharge at the limits (1000000000, 100)",
            Method::PUT,
            recharge,
            recharge_body("starter", "1000000000", "100"),
        )
        .succeeds(200)
        .with("monthlyLimit", json!(100))
        .with("threshold", json!(1_000_000_000)),
        request("user token: auto-recharge on", Method::PUT, recharge, recharge_body("starter", "20", "3"))
            .auth(Auth::User)
            .fails(403, "forbidden", None),
        request("user token: auto-recharge off", Method::DELETE, recharge, Vec::new()).auth(Auth::User).fails(
            403,
            "forbidden",
            None,
        ),
        request(
            "server without Credits-User: auto-recharge",
            Method::PUT,
            recharge,
            recharge_body("starter", "20", "3"),
        )
        .auth(server_alone.clone())
        .invalid(USER_HEADER),
        // Webhook endpoints: an absolute https URL (http only to this
        // machine, and only on the dev server), known event types.
        post("webhook endpoint url ftp://", endpoints, endpoint("ftp://example.com/hooks", ""))
            .auth(Auth::Admin)
            .invalid("url"),
        post("webhook endpoint url http:// to another host", endpoints, endpoint("http://example.com/hooks", ""))
            .auth(Auth::Admin)
            .invalid("url"),
        post("webhook endpoint url with user:pass@", endpoints, endpoint("https://user:pass@example.com/hooks", ""))
            .auth(Auth::Admin)
            .invalid("url"),
        post("webhook endpoint url not absolute (/hooks)", endpoints, endpoint("/hooks", ""))
            .auth(Auth::Admin)
            .invalid("url"),
        post("webhook endpoint url without a host (https:///hooks)", endpoints, endpoint("https:///hooks", ""))
            .auth(Auth::Admin)
            .invalid("url"),
        post("webhook endpoint url at the limit (2048)", endpoints, endpoint(&url_of(2048), ""))
            .auth(Auth::Admin)
            .succeeds(201)
            .with("status", json!("enabled")),
        post("webhook endpoint url over the limit (2049)", endpoints, endpoint(&url_of(2049), ""))
            .auth(Auth::Admin)
            .invalid("url"),
        post(
            "webhook endpoint url http://127.0.0.1 (the dev server)",
            endpoints,
            endpoint("http://127.0.0.1:9/hooks", ""),
        )
        .auth(Auth::Admin)
        .succeeds(201)
        .with("events", json!([])),
        // An address written in the URL that webhooks would refuse to
        // connect to (the dev server excepts loopback only); a name passes
        // here and is checked where it connects, at every attempt.
        post("webhook endpoint url https://10.0.0.1 (private)", endpoints, endpoint("https://10.0.0.1/hooks", ""))
            .auth(Auth::Admin)
            .invalid("url"),
        post("webhook endpoint url https://100.64.0.1 (CGNAT)", endpoints, endpoint("https://100.64.0.1/hooks", ""))
            .auth(Auth::Admin)
            .invalid("url"),
        post(
            "webhook endpoint url https://169.254.169.254 (metadata)",
            endpoints,
            endpoint("https://169.254.169.254/latest/meta-data", ""),
        )
        .auth(Auth::Admin)
        .invalid("url"),
        post(
            "webhook endpoint url the metadata address in hex (https://0xa9.0xfe.0xa9.0xfe)",
            endpoints,
            endpoint("https://0xa9.0xfe.0xa9.0xfe/hooks", ""),
        )
        .auth(Auth::Admin)
        .invalid("url"),
        post(
            "webhook endpoint url https://[fd00:ec2::254] (IPv6 metadata)",
            endpoints,
            endpoint("https://[fd00:ec2::254]/hooks", ""),
        )
        .auth(Auth::Admin)
        .invalid("url"),
        post(
            "webhook endpoint url https://[::ffff:a9fe:a9fe] (IPv4-mapped)",
            endpoints,
            endpoint("https://[::ffff:a9fe:a9fe]/hooks", ""),
        )
        .auth(Auth::Admin)
        .invalid("url"),
        post(
            "webhook endpoint url https://[::7f00:1] (IPv4-compatible)",
            endpoints,
            endpoint("https://[::7f00:1]/hooks", ""),
        )
        .auth(Auth::Admin)
        .invalid("url"),
        post(
            "webhook endpoint url https://[64:ff9b::a9fe:a9fe] (NAT64)",
            endpoints,
            endpoint("https://[64:ff9b::a9fe:a9fe]/hooks", ""),
        )
        .auth(Auth::Admin)
        .invalid("url"),
        post(
            "webhook endpoint url https://[2002:a9fe:a9fe::1] (6to4)",
            endpoints,
            endpoint("https://[2002:a9fe:a9fe::1]/hooks", ""),
        )
        .auth(Auth::Admin)
        .invalid("url"),
        post(
            "webhook endpoint url a name (checked where it connects)",
            endpoints,
            endpoint("https://metadata.internal/hooks", ""),
        )
        .auth(Auth::Admin)
        .succeeds(201)
        .with("url", json!("https://metadata.internal/hooks")),
        post("webhook endpoint without url", endpoints, r#"{"events":["hold.expired"]}"#)
            .auth(Auth::Admin)
            .invalid("url"),
        post(
            "webhook endpoint event type unknown (hold.exploded)",
            endpoints,
            endpoint("https://example.com/hooks", r#","events":["hold.expired","hold.exploded"]"#),
        )
        .auth(Auth::Admin)
        .invalid("events[1]"),
        post(
            "webhook endpoint events not an array",
            endpoints,
            endpoint("https://example.com/hooks", r#","events":"hold.expired""#),
        )
        .auth(Auth::Admin)
        .invalid("events"),
        post(
            "webhook endpoint 13 event types",
            endpoints,
            endpoint(
                "https://example.com/hooks",
                &format!(r#","events":[{}]"#, vec![r#""hold.expired""#; 13].join(",")),
            ),
        )
        .auth(Auth::Admin)
        .invalid("events"),
        post(
            "webhook endpoint event type repeated (kept once)",
            endpoints,
            endpoint("https://example.com/hooks", r#","events":["hold.expired","hold.expired"]"#),
        )
        .auth(Auth::Admin)
        .succeeds(201)
        .with("events", json!(["hold.expired"])),
        post(
            "webhook endpoint description over the limit (201)",
            endpoints,
            endpoint("https://example.com/hooks", &format!(r#","description":"{}""#, text(201))),
        )
        .auth(Auth::Admin)
        .invalid("description"),
        get("webhook endpoint id not a UUID", &format!("{endpoints}/not-a-uuid")).auth(Auth::Admin).invalid("id"),
        get("webhook endpoint id a UUID nobody registered", &unknown_endpoint).auth(Auth::Admin).fails(
            404,
            "endpoint_not_found",
            None,
        ),
        request("delete a webhook endpoint, id not a UUID", Method::DELETE, &format!("{endpoints}/123"), Vec::new())
            .content_type(None)
            .auth(Auth::Admin)
            .invalid("id"),
        request("delete a webhook endpoint nobody registered", Method::DELETE, &unknown_endpoint, Vec::new())
            .content_type(None)
            .auth(Auth::Admin)
            .fails(404, "endpoint_not_found", None),
        get("webhook deliveries of an endpoint nobody registered", &unknown_deliveries("")).auth(Auth::Admin).fails(
            404,
            "endpoint_not_found",
            None,
        ),
        get("webhook deliveries limit 0", &unknown_deliveries("?limit=0")).auth(Auth::Admin).invalid("limit"),
        get("webhook deliveries limit above the range (101)", &unknown_deliveries("?limit=101"))
            .auth(Auth::Admin)
            .invalid("limit"),
        post("user token: create a webhook endpoint", endpoints, endpoint("https://example.com/hooks", ""))
            .auth(Auth::User)
            .fails(403, "forbidden", None),
        get("user token: webhook endpoints", endpoints).auth(Auth::User).fails(403, "forbidden", None),
        get("server token: webhook endpoints", endpoints).fails(403, "forbidden", None),
        request("user token: delete a webhook endpoint", Method::DELETE, &unknown_endpoint, Vec::new())
            .content_type(None)
            .auth(Auth::User)
            .fails(403, "forbidden", None),
        get("user token: webhook deliveries", &unknown_deliveries("")).auth(Auth::User).fails(403, "forbidden", None),
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
        // Hold ids.
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
        get("token without the Bearer scheme", "/v1/balance").auth(Auth::Raw(tokens.user.clone())).fails(
            401,
            "unauthorized",
            None,
        ),
        get("user token on an admin route", &admin_balance).auth(Auth::User).fails(403, "forbidden", None),
        // Principals. A user token reads; its writes are refused before the
        // body is read (a malformed one too), and nothing changes.
        reserve("user token: reserve", "").auth(Auth::User).fails(403, "forbidden", None),
        post("user token: reserve with a malformed body", "/v1/reservations", r#"{"operation":"#)
            .auth(Auth::User)
            .fails(403, "forbidden", None),
        reserve("user token: reserve naming themselves in Credits-User", "")
            .auth(Auth::User)
            .header(USER_HEADER, USER)
            .fails(403, "forbidden", None),
        post("user token: confirm", &hold("confirm"), "").auth(Auth::User).fails(403, "forbidden", None),
        post("user token: release", &hold("release"), "{}").auth(Auth::User).fails(403, "forbidden", None),
        post("user token: link a task", &hold("task"), task_body()).auth(Auth::User).fails(403, "forbidden", None),
        post("user token: extend", &hold("extend"), r#"{"ttlSeconds":3600}"#).auth(Auth::User).fails(
            403,
            "forbidden",
            None,
        ),
        get("user token: balance", "/v1/balance").auth(Auth::User).succeeds(200).with("userId", json!(USER)),
        get("user token: history", "/v1/transactions").auth(Auth::User).succeeds(200),
        get("user token: a hold of theirs", &the_hold).auth(Auth::User).succeeds(200).with("userId", json!(USER)),
        get("user token: balance naming themselves in Credits-User", "/v1/balance")
            .auth(Auth::User)
            .header(USER_HEADER, USER)
            .succeeds(200)
            .with("userId", json!(USER)),
        get("user token: balance naming another user in Credits-User", "/v1/balance")
            .auth(Auth::User)
            .header(USER_HEADER, someone.as_str())
            .fails(403, "forbidden", None),
        get("user token: a hold of theirs naming another user", &the_hold)
            .auth(Auth::User)
            .header(USER_HEADER, someone.as_str())
            .fails(403, "forbidden", None),
        get("another user's token: the user's hold", &the_hold).auth(someone_token).fails(
            404,
            "reservation_not_found",
            None,
        ),
        // Acting for a user: `Credits-User`.
        get("server without Credits-User: balance", "/v1/balance").auth(server_alone.clone()).invalid(USER_HEADER),
        get("server without Credits-User: history", "/v1/transactions").auth(server_alone.clone()).invalid(USER_HEADER),
        reserve("server without Credits-User: reserve", "").auth(server_alone.clone()).invalid(USER_HEADER),
        get("admin without Credits-User: balance", "/v1/balance").auth(Auth::Admin).invalid(USER_HEADER),
        // On the routes of one hold too: a hold id alone reaches nothing.
        get("server without Credits-User: a hold", &the_hold).auth(server_alone.clone()).invalid(USER_HEADER),
        post("server without Credits-User: confirm", &hold("confirm"), "")
            .auth(server_alone.clone())
            .invalid(USER_HEADER),
        post("server without Credits-User: release", &hold("release"), "{}")
            .auth(server_alone.clone())
            .invalid(USER_HEADER),
        post("server without Credits-User: extend", &hold("extend"), r#"{"ttlSeconds":3600}"#)
            .auth(server_alone.clone())
            .invalid(USER_HEADER),
        post("server without Credits-User: link a task", &hold("task"), task_body())
            .auth(server_alone)
            .invalid(USER_HEADER),
        // An operator may act on any hold without naming its user (on the
        // write routes, deployed, only with the scope: a machine admin).
        get("admin without Credits-User: a hold", &the_hold)
            .auth(Auth::Admin)
            .succeeds(200)
            .with("userId", json!(USER)),
        post("scope credits/admin, the listed admin client, without Credits-User: confirm", &hold("confirm"), "")
            .auth(admin_scope(ADMIN_CLIENT))
            .succeeds(200)
            .with("status", json!("confirmed")),
        get("server naming another user: a hold", &the_hold).header(USER_HEADER, someone.as_str()).fails(
            404,
            "reservation_not_found",
            None,
        ),
        post("server naming another user: confirm", &hold("confirm"), "").header(USER_HEADER, someone.as_str()).fails(
            404,
            "reservation_not_found",
            None,
        ),
        post("server naming another user: link a task", &hold("task"), task_body())
            .header(USER_HEADER, someone.as_str())
            .fails(404, "reservation_not_found", None),
        get("Credits-User empty", "/v1/balance").header(USER_HEADER, "").invalid(USER_HEADER),
        get("Credits-User only spaces", "/v1/balance").header(USER_HEADER, "   ").invalid(USER_HEADER),
        get("Credits-User at the limit (256)", "/v1/balance").header(USER_HEADER, text(256)).succeeds(200),
        get("Credits-User over the limit (257)", "/v1/balance").header(USER_HEADER, text(257)).invalid(USER_HEADER),
        reserve("Credits-User over the limit (257), reserve", "").header(USER_HEADER, text(257)).invalid(USER_HEADER),
        get("Credits-User with a control character (tab)", "/v1/balance")
            .header(USER_HEADER, "a\tb")
            .invalid(USER_HEADER),
        get("Credits-User in UTF-8 (josé)", "/v1/balance").header(USER_HEADER, "josé").invalid(USER_HEADER),
        // API Gateway joins a repeated header with commas: one user only.
        get("Credits-User repeated (alice,bob)", "/v1/balance").header(USER_HEADER, "alice,bob").invalid(USER_HEADER),
        // Trusted clients: a scope alone makes no server and no admin.
        reserve("scope credits/server, client not listed: reserve", "")
            .auth(unlisted_server.clone())
            .header(USER_HEADER, USER)
            .fails(403, "forbidden", None),
        get("scope credits/server, client not listed: own balance", "/v1/balance")
            .auth(unlisted_server.clone())
            .succeeds(200)
            .with("userId", json!("unlisted-client")),
        get("scope credits/server, client not listed: naming a user", "/v1/balance")
            .auth(unlisted_server)
            .header(USER_HEADER, USER)
            .fails(403, "forbidden", None),
        get("scope credits/admin, client not listed: admin route", &admin_balance)
            .auth(admin_scope("unlisted-ops"))
            .fails(403, "forbidden", None),
        get("scope credits/admin, the server's client: admin route", &admin_balance)
            .auth(admin_scope(SERVER_CLIENT))
            .fails(403, "forbidden", None),
        get("scope credits/admin, the listed admin client: admin route", &admin_balance)
            .auth(admin_scope(ADMIN_CLIENT))
            .succeeds(200)
            .with("userId", json!(USER)),
        // Groups: a JSON array or `[a b]`; anything else is no group at all.
        get("user in group x,credits-admin: admin route", &admin_balance)
            .auth(in_groups(json!(["x,credits-admin"])))
            .fails(403, "forbidden", None),
        reserve("user in group x,credits-admin: reserve", "")
            .auth(in_groups(json!(["x,credits-admin"])))
            .header(USER_HEADER, USER)
            .fails(403, "forbidden", None),
        get("user in group [credits-admin]: admin route", &admin_balance)
            .auth(in_groups(json!(["[credits-admin]"])))
            .fails(403, "forbidden", None),
        get("user in group credits-admin\": admin route", &admin_balance)
            .auth(in_groups(json!(["credits-admin\""])))
            .fails(403, "forbidden", None),
        get("groups claim a string, x,credits-admin: admin route", &admin_balance)
            .auth(in_groups(json!("x,credits-admin")))
            .fails(403, "forbidden", None),
        get("user in groups x and credits-admin: admin route", &admin_balance)
            .auth(in_groups(json!(["x", "credits-admin"])))
            .succeeds(200)
            .with("userId", json!(USER)),
        get("server token on an admin route", &admin_balance).fails(403, "forbidden", None),
        post("server token: grant", &grants, r#"{"amount":1,"reason":"promo"}"#)
            .header("idempotency-key", "server-grant")
            .fails(403, "forbidden", None),
        post("server token: debit", &debits, r#"{"amount":1,"reason":"refund"}"#)
            .header("idempotency-key", "server-debit")
            .fails(403, "forbidden", None),
        post("user token: debit", &debits, r#"{"amount":1,"reason":"refund"}"#)
            .auth(Auth::User)
            .header("idempotency-key", "user-debit")
            .fails(403, "forbidden", None),
        // Settled holds.
        post("link a task to a released hold", &settled("task"), task_body())
            .fails(409, "reservation_not_pending", None)
            .with("reservationStatus", json!("released")),
        post("confirm a released hold", &settled("confirm"), "")
            .fails(409, "reservation_not_pending", None)
            .with("reservationStatus", json!("released")),
        post("extend a released hold", &settled("extend"), r#"{"ttlSeconds":3600}"#)
            .fails(409, "reservation_not_pending", None)
            .with("reservationStatus", json!("released")),
    ]
    .into_iter()
    .chain(webhook_cases())
    .chain(stripe_cases())
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

/// Deliveries to `POST /v1/webhooks/stripe`: without a valid
/// `Stripe-Signature` (none, another secret's, over other bytes, its `t`
/// more than 300 s off) 403 whatever the body; a signed body that is not a
/// JSON event with an `id` 400 naming `body`; a signed event the ledger does
/// not act on 200 `ignored` with its reason (Stripe must not retry it).
fn stripe_cases() -> Vec<Case> {
    let path = "/v1/webhooks/stripe";
    let (old, new) = STRIPE_SECRETS.split_once(',').unwrap_or((STRIPE_SECRETS, STRIPE_SECRETS));
    let signed = |secret, skew| Auth::Stripe { secret, skew, tampered: false };
    let delivery = |name: &str, body: &str| post(format!("webhook (stripe): {name}"), path, body).auth(signed(new, 0));
    // An event type the ledger does not act on, under a fresh id; test mode, as the server's.
    let other = |id: &str| {
        format!(
            r#"{{"id":"{id}","object":"event","livemode":false,"type":"customer.created","data":{{"object":{{}}}}}}"#
        )
    };
    let paid = |id: &str, session: &str| {
        format!(
            r#"{{"id":"{id}","object":"event","livemode":false,"type":"checkout.session.completed","data":{{"object":{session}}}}}"#
        )
    };
    let ignored =
        |case: Case, reason: &str| case.succeeds(200).with("result", json!("ignored")).with("reason", json!(reason));
    let refused = |case: Case| case.fails(403, "forbidden", None);
    vec![
        refused(delivery("unsigned", &other("evt_bad_unsigned")).auth(Auth::Missing)),
        refused(
            delivery("signed with a secret not configured", &other("evt_bad_secret")).auth(signed("whsec_other", 0)),
        ),
        refused(delivery("signature over other bytes", &other("evt_bad_tampered")).auth(Auth::Stripe {
            secret: new,
            skew: 0,
            tampered: true,
        })),
        refused(delivery("signature 301 s old (stale)", &other("evt_bad_stale")).auth(signed(new, -301))),
        refused(delivery("signature 301 s ahead", &other("evt_bad_ahead")).auth(signed(new, 301))),
        ignored(
            delivery("signature 300 s old (the limit)", &other("evt_bad_limit")).auth(signed(new, -300)),
            "event_type_not_handled",
        ),
        ignored(
            delivery("signed with the older secret (rotation)", &other("evt_bad_rotation")).auth(signed(old, 0)),
            "event_type_not_handled",
        ),
        delivery("signed body that is not JSON", "payment done").invalid("body"),
        delivery("signed JSON array", &format!("[{}]", other("evt_bad_array"))).invalid("body"),
        delivery("signed event without an id", r#"{"object":"event","type":"charge.refunded"}"#).invalid("body"),
        delivery("signed event with an empty id", &other("")).invalid("body"),
        delivery("signed event id a number", r#"{"id":7,"type":"charge.refunded"}"#).invalid("body"),
        delivery("signed event id of 256 characters", &other(&text(256))).invalid("body"),
        ignored(
            delivery("signed event id of 255 characters (the limit)", &other(&text(255))),
            "event_type_not_handled",
        ),
        ignored(
            delivery(
                "paid session without a user",
                &paid("evt_bad_no_user", r#"{"id":"cs_bad_1","payment_status":"paid","metadata":{"credits":"100"}}"#),
            ),
            "no_user",
        ),
        ignored(
            delivery(
                "paid session naming metadata.credits, no pack",
                &paid(
                    "evt_bad_credits",
                    r#"{"id":"cs_bad_2","client_reference_id":"bad","payment_status":"paid","metadata":{"credits":"100"}}"#,
                ),
            ),
            "metadata_credits_not_accepted",
        ),
        ignored(
            delivery(
                "paid session of a pack at another amount",
                &paid(
                    "evt_bad_amount",
                    r#"{"id":"cs_bad_3","client_reference_id":"bad","payment_status":"paid","amount_total":1,"currency":"usd","metadata":{"pack":"starter"}}"#,
                ),
            ),
            "amount_mismatch",
        ),
        ignored(
            delivery(
                "paid session of a pack in another currency",
                &paid(
                    "evt_bad_currency",
                    r#"{"id":"cs_bad_4","client_reference_id":"bad","payment_status":"paid","amount_total":900,"currency":"jpy","metadata":{"pack":"starter"}}"#,
                ),
            ),
            "currency_mismatch",
        ),
        ignored(
            delivery(
                "no_payment_required session of a pack not free",
                &paid(
                    "evt_bad_free",
                    r#"{"id":"cs_bad_5","client_reference_id":"bad","payment_status":"no_payment_required","amount_total":0,"currency":"usd","metadata":{"pack":"starter"}}"#,
                ),
            ),
            "pack_not_free",
        ),
        ignored(
            delivery(
                "live-mode event (the server acts on test mode)",
                &other("evt_bad_live").replace(r#""livemode":false"#, r#""livemode":true"#),
            ),
            "other_mode",
        ),
        ignored(
            delivery("event that does not say its mode", &other("evt_bad_unmoded").replace(r#""livemode":false,"#, "")),
            "other_mode",
        ),
        ignored(
            delivery("any Content-Type (the raw body is what is signed)", &other("evt_bad_content_type"))
                .content_type(Some("text/plain")),
            "event_type_not_handled",
        ),
    ]
}

async fn place_hold(client: &Client, server: &TestServer, token: &str, user_id: &str) -> String {
    let response = client
        .post(format!("{}/v1/reservations", server.base))
        .bearer_auth(token)
        .header(USER_HEADER, user_id)
        .header("content-type", "application/json")
        .body(format!(r#"{{"operation":"{OP}"}}"#))
        .send()
        .await
        .expect("reserve");
    assert_eq!(response.status().as_u16(), 201, "placing a hold for a case");
    let body: Value = response.json().await.expect("hold json");
    body["reservationId"].as_str().expect("reservationId").to_owned()
}

/// Keeps a fresh hold pending for [`AGED_HOURS`] of the test clock: it is
/// extended by a day (the longest `ttlSeconds`) every 23 hours, and after
/// the last 23 hours it is still pending for one more.
async fn age_hold(client: &Client, server: &TestServer, token: &str, user_id: &str, id: &str) -> Result<(), String> {
    const STEP_HOURS: i64 = 23;
    for _ in 0..AGED_HOURS / STEP_HOURS {
        let extended = client
            .post(format!("{}/v1/reservations/{id}/extend", server.base))
            .bearer_auth(token)
            .header(USER_HEADER, user_id)
            .header("content-type", "application/json")
            .body(r#"{"ttlSeconds":86400}"#)
            .send()
            .await
            .map(|r| r.status().as_u16());
        if !matches!(extended, Ok(200)) {
            return Err(format!("extend: {extended:?}"));
        }
        server.env.clock.advance_seconds(STEP_HOURS * 3600);
    }
    Ok(())
}

/// The tokens the rows are sent with.
struct Tokens {
    user: String,
    server: String,
    admin: String,
}

/// Sends the case; returns a description of what was wrong, if anything.
async fn run(client: &Client, server: &TestServer, tokens: &Tokens, user_id: &str, case: &Case) -> Option<String> {
    let mut path = case.path.replace(USER, user_id);
    if path.contains(HOLD) {
        path = path.replace(HOLD, &place_hold(client, server, &tokens.server, user_id).await);
    }
    if path.contains(SETTLED) {
        let id = place_hold(client, server, &tokens.server, user_id).await;
        let released = client
            .post(format!("{}/v1/reservations/{id}/release", server.base))
            .bearer_auth(&tokens.server)
            .header(USER_HEADER, user_id)
            .send()
            .await
            .map(|r| r.status().as_u16());
        if !matches!(released, Ok(200)) {
            return Some(format!("releasing the hold for the case: {released:?}"));
        }
        path = path.replace(SETTLED, &id);
    }
    if path.contains(AGED) {
        let id = place_hold(client, server, &tokens.server, user_id).await;
        if let Err(problem) = age_hold(client, server, &tokens.server, user_id, &id).await {
            return Some(format!("ageing the hold for the case: {problem}"));
        }
        path = path.replace(AGED, &id);
    }
    let names_user = case.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(USER_HEADER));
    let mut request = client.request(case.method.clone(), format!("{}{}", server.base, path));
    request = match &case.auth {
        Auth::Server if names_user => request.bearer_auth(&tokens.server),
        Auth::Server => request.bearer_auth(&tokens.server).header(USER_HEADER, user_id),
        Auth::User => request.bearer_auth(&tokens.user),
        Auth::Admin => request.bearer_auth(&tokens.admin),
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
        Auth::Stripe { secret, skew, tampered } => {
            let mut signed = case.body.clone();
            if *tampered {
                signed.extend_from_slice(b" ");
            }
            let at = server.env.ledger.now().unix_seconds() + skew;
            request.header("stripe-signature", stripe::sign(secret, at, &signed))
        }
    };
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    for (name, value) in &case.headers {
        let value = match std::str::from_utf8(value) {
            Ok(text) => text.replace(USER, user_id).into_bytes(),
            Err(_) => value.clone(),
        };
        let Ok(value) = HeaderValue::from_bytes(&value) else { return Some("unsendable header".into()) };
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
    let members_ok = case.members.iter().all(|(name, value)| match value {
        Value::String(wanted) => body[*name] == wanted.replace(USER, user_id),
        _ => body[*name] == *value,
    });
    if !members_ok {
        return Some(format!("expected {:?}, got {text:.300}", case.members));
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
    let tokens = Tokens { user: server.user_token(&alice), server: server.server_token(), admin: server.admin_token() };
    let client = Client::new();

    let mut failures = Vec::new();
    let table = cases(&server, &tokens);
    for case in &table {
        let answer = match case.code {
            Some(code) => {
                let field = case.field.map(|f| format!(" (`{f}`)")).unwrap_or_default();
                let members: String =
                    case.members.iter().map(|(name, value)| format!(" (`{name}`: {value})")).collect();
                format!("{} `{code}`{field}{members}", case.status)
            }
            None => {
                let members: String = case.members.iter().map(|(name, value)| format!(", `{name}` {value}")).collect();
                format!("{} (accepted{members})", case.status)
            }
        };
        println!("| {} | {answer} |", case.name);
        if let Some(problem) = run(&client, &server, &tokens, alice.as_str(), case).await {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), table.len(), failures.join("\n"));
    // Nothing a bad request did left the books inconsistent.
    server.env.assert_books_balance().await;
}

/// Sends `request`; its status and JSON body (`null` if none).
async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// What a user token's write attempts leave behind: nothing. The server's
/// hold stays pending, uncaptured, unlinked and due when it was; balance,
/// hold and history read the same before and after (the table's rows only
/// check the answers).
#[tokio::test]
async fn user_token_writes_change_nothing() {
    let server = TestServer::start().await;
    let (alice, bob) = (user("alice"), user("bob"));
    server.env.grant(&alice, 1_000).await;
    let client = Client::new();
    let (user_token, server_token) = (server.user_token(&alice), server.server_token());
    // `scope credits/server` from a client that is not listed: a user.
    let unlisted = server.mint(Bearer::Server("unlisted-client"));
    let id = place_hold(&client, &server, &server_token, alice.as_str()).await;
    let url = |path: &str| format!("{}{path}", server.base);
    let books = || async {
        let read = |path: String| answer(client.get(url(&path)).bearer_auth(&user_token));
        let (balance, hold, history) = (
            read("/v1/balance".into()).await,
            read(format!("/v1/reservations/{id}")).await,
            read("/v1/transactions".into()).await,
        );
        for (status, body) in [&balance, &hold, &history] {
            assert_eq!(*status, 200, "reading as the user: {body}");
        }
        (balance.1, hold.1, history.1)
    };
    let before = books().await;
    assert_eq!(before.1["status"], "pending");

    let post = |path: String, token: &str, body: &str| {
        client.post(url(&path)).bearer_auth(token).header("content-type", "application/json").body(body.to_owned())
    };
    let attempts = [
        ("confirm", post(format!("/v1/reservations/{id}/confirm"), &user_token, "{}"), 403, "forbidden"),
        (
            "partial confirm",
            post(format!("/v1/reservations/{id}/confirm"), &user_token, r#"{"units":1}"#),
            403,
            "forbidden",
        ),
        (
            "non-final capture",
            post(format!("/v1/reservations/{id}/confirm"), &user_token, r#"{"units":1,"final":false}"#)
                .header("idempotency-key", "user-capture"),
            403,
            "forbidden",
        ),
        (
            "extend",
            post(format!("/v1/reservations/{id}/extend"), &user_token, r#"{"ttlSeconds":86400}"#),
            403,
            "forbidden",
        ),
        ("release", post(format!("/v1/reservations/{id}/release"), &user_token, "{}"), 403, "forbidden"),
        (
            "link",
            post(format!("/v1/reservations/{id}/task"), &user_token, r#"{"taskId":"user-task"}"#),
            403,
            "forbidden",
        ),
        (
            "reserve",
            post("/v1/reservations".into(), &user_token, &format!(r#"{{"operation":"{OP}"}}"#)),
            403,
            "forbidden",
        ),
        (
            "unlisted client's confirm",
            post(format!("/v1/reservations/{id}/confirm"), &unlisted, "{}"),
            403,
            "forbidden",
        ),
        (
            "unlisted client's release naming the user",
            post(format!("/v1/reservations/{id}/release"), &unlisted, "{}").header(USER_HEADER, alice.as_str()),
            403,
            "forbidden",
        ),
        (
            "server naming another user: confirm",
            post(format!("/v1/reservations/{id}/confirm"), &server_token, "{}").header(USER_HEADER, bob.as_str()),
            404,
            "reservation_not_found",
        ),
        (
            "server naming another user: release",
            post(format!("/v1/reservations/{id}/release"), &server_token, "{}").header(USER_HEADER, bob.as_str()),
            404,
            "reservation_not_found",
        ),
        (
            "server naming no user: release",
            post(format!("/v1/reservations/{id}/release"), &server_token, "{}"),
            400,
            "validation_error",
        ),
    ];
    for (name, request, status, code) in attempts {
        let (got, body) = answer(request).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{name}: {body}");
    }

    let after = books().await;
    assert_eq!(after.1["status"], "pending", "the hold: {}", after.1);
    assert_eq!(after.1["taskId"], Value::Null, "the hold: {}", after.1);
    assert_eq!(after.0, before.0, "the balance changed");
    assert_eq!(after.1, before.1, "the hold changed");
    assert_eq!(after.2, before.2, "the history changed");
    // The server may still settle it: the refusals left it usable.
    let (status, body) =
        answer(post(format!("/v1/reservations/{id}/confirm"), &server_token, "{}").header(USER_HEADER, alice.as_str()))
            .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("confirmed")), "{body}");
    server.env.assert_books_balance().await;
}

/// `CREDITS_MAX_OPEN_HOLDS` (default 100, the test server's): one user's
/// 101st pending hold is refused with the figures and moves nothing; other
/// users are not held back; a retry of a hold already placed still replays;
/// settling a hold makes room, and the refused request's key then works.
#[tokio::test]
async fn open_holds_are_capped_per_user() {
    const LIMIT: u64 = 100;
    let server = TestServer::start().await;
    let (bob, carol) = (user("bob"), user("carol"));
    server.env.grant(&bob, 1_000_000).await;
    server.env.grant(&carol, 1_000).await;
    let client = Client::new();
    let token = server.server_token();
    let url = |path: &str| format!("{}{path}", server.base);
    let reserve = |who: &str, key: &str| {
        client
            .post(url("/v1/reservations"))
            .bearer_auth(&token)
            .header(USER_HEADER, who)
            .header("idempotency-key", key)
            .header("content-type", "application/json")
            .body(format!(r#"{{"operation":"{OP}"}}"#))
    };
    let settle = |id: &str, how: &str| {
        client.post(url(&format!("/v1/reservations/{id}/{how}"))).bearer_auth(&token).header(USER_HEADER, bob.as_str())
    };
    let balance = || answer(client.get(url("/v1/balance")).bearer_auth(&token).header(USER_HEADER, bob.as_str()));
    let refused = |(status, body): (u16, Value), open: u64| {
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["code"], "too_many_open_holds", "{body}");
        assert_eq!(body["type"], "urn:credits:error:too_many_open_holds", "{body}");
        assert_eq!((body["openHolds"].as_u64(), body["limit"].as_u64()), (Some(open), Some(LIMIT)), "{body}");
    };

    let mut holds = Vec::new();
    for i in 0..LIMIT {
        let (status, body) = answer(reserve(bob.as_str(), &format!("cap-{i}"))).await;
        assert_eq!(status, 201, "hold {i}: {body}");
        holds.push(body["reservationId"].as_str().expect("reservationId").to_owned());
    }
    let before = balance().await;
    refused(answer(reserve(bob.as_str(), "cap-refused")).await, LIMIT);
    assert_eq!(balance().await, before, "a refused hold moved credits");
    // A retry of the last hold placed is a replay, not a refusal.
    let (status, body) = answer(reserve(bob.as_str(), &format!("cap-{}", LIMIT - 1))).await;
    assert_eq!((status, body["reservationId"].as_str()), (200, holds.last().map(String::as_str)), "{body}");
    // The cap is per user.
    let (status, body) = answer(reserve(carol.as_str(), "carol-1")).await;
    assert_eq!(status, 201, "another user: {body}");

    // A release makes room for one: the refused request's key now works.
    let (status, body) = answer(settle(&holds[0], "release")).await;
    assert_eq!(status, 200, "release: {body}");
    let (status, body) = answer(reserve(bob.as_str(), "cap-refused")).await;
    assert_eq!(status, 201, "after a release: {body}");
    refused(answer(reserve(bob.as_str(), "cap-refused-again")).await, LIMIT);
    // So does a confirm.
    let (status, body) = answer(settle(&holds[1], "confirm")).await;
    assert_eq!(status, 200, "confirm: {body}");
    let (status, body) = answer(reserve(bob.as_str(), "cap-refused-again")).await;
    assert_eq!(status, 201, "after a confirm: {body}");

    // The count the cap reads is the user's pending holds.
    let items = credits_tests::scan(&server.env.store).await;
    let bobs = |entity: &str| {
        items
            .iter()
            .filter(|i| credits_tests::text(i, "entity") == entity && credits_tests::text(i, "userId") == bob.as_str())
            .collect::<Vec<_>>()
    };
    let pending = bobs("hold").iter().filter(|h| credits_tests::text(h, "status") == "pending").count() as u64;
    let open = bobs("balance").first().map(|b| credits_tests::number(b, "openHolds"));
    assert_eq!((pending, open), (LIMIT, Some(LIMIT)), "pending holds and the balance's openHolds");
    server.env.assert_books_balance().await;
}
