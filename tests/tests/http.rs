//! End-to-end over HTTP against the dev server (the same handlers the
//! Lambda functions run), with DynamoDB Local behind it.

use std::collections::BTreeSet;

use credits_shared::http::ROUTES;
use credits_shared::store::{client_from_env, Store};
use credits_tests::api::{actors, assert_problem, call, call_with, grant, reserve, Auth, Reply};
use credits_tests::{user, Bearer, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const LANGS: [&str; 3] = ["en-US", "pt-BR", "es-ES"];

#[allow(clippy::too_many_arguments)]
/// Sends the same failing request in the three languages and checks each
/// answers the code with a message of its own language.
async fn assert_problem_in_three_languages(
    server: &TestServer,
    method: Method,
    path: &str,
    auth: Option<&Auth>,
    body: Option<Value>,
    extra: &[(&str, &str)],
    status: u16,
    code: &str,
) -> Vec<Reply> {
    let mut replies = Vec::new();
    for lang in LANGS {
        let mut headers = extra.to_vec();
        headers.push(("accept-language", lang));
        let reply = call_with(server, method.clone(), path, auth, body.as_ref().map(|b| b.to_string()), &headers).await;
        assert_problem(&reply, status, code);
        replies.push(reply);
    }
    let details: BTreeSet<String> =
        replies.iter().map(|r| r.body["detail"].as_str().unwrap_or("").to_owned()).collect();
    assert_eq!(details.len(), 3, "three languages, three messages: {details:?}");
    // Any pt or es variant gets the same message; anything else is en-US.
    for (accept, expected) in [("pt", 1), ("es-AR, fr;q=0.8", 2), ("de-DE", 0)] {
        let mut headers = extra.to_vec();
        headers.push(("accept-language", accept));
        let reply = call_with(server, method.clone(), path, auth, body.as_ref().map(|b| b.to_string()), &headers).await;
        assert_eq!(reply.body["detail"], replies[expected].body["detail"], "Accept-Language: {accept}");
    }
    replies
}

#[tokio::test]
async fn image_generation_flow_grant_reserve_confirm_and_a_failure_released() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 50).await;

    let hold = reserve(&server, &a.server, json!({"operation": "design_generate_image", "units": 2})).await;
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
    assert_eq!(hold.body["amount"], 10);
    assert_eq!(hold.body["status"], "pending");
    let id = hold.body["reservationId"].as_str().expect("id").to_owned();

    let confirmed =
        call(&server, Method::POST, &format!("/v1/reservations/{id}/confirm"), Some(&a.server), Some(json!({}))).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert_eq!(confirmed.body["status"], "confirmed");
    assert_eq!(confirmed.body["capturedAmount"], 10);

    let failed = reserve(&server, &a.server, json!({"operation": "design_generate_logo"})).await;
    let failed_id = failed.body["reservationId"].as_str().expect("id").to_owned();
    let released = call(
        &server,
        Method::POST,
        &format!("/v1/reservations/{failed_id}/release"),
        Some(&a.server),
        Some(json!({"reason": "provider error"})),
    )
    .await;
    assert_eq!(released.status, StatusCode::OK);
    assert_eq!(released.body["status"], "released");

    let balance = call(&server, Method::GET, "/v1/balance", Some(&a.server), None).await;
    assert_eq!(balance.body["available"], 40);
    assert_eq!(balance.body["spent"], 10);
    assert_eq!(balance.body["reserved"], 0);
    assert_eq!(balance.body["granted"], 50);

    let got = call(&server, Method::GET, &format!("/v1/reservations/{id}"), Some(&a.server), None).await;
    let events: Vec<&str> =
        got.body["events"].as_array().expect("events").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(events, vec!["reserved", "confirmed"]);

    let history = call(&server, Method::GET, "/v1/transactions?limit=10", Some(&a.server), None).await;
    assert_eq!(history.body["items"].as_array().map(Vec::len), Some(5));
    let admin_view =
        call(&server, Method::GET, &format!("/v1/admin/users/{}/transactions", a.user_id), Some(&a.admin), None).await;
    assert_eq!(admin_view.body, history.body);
    let admin_balance =
        call(&server, Method::GET, &format!("/v1/admin/users/{}/balance", a.user_id), Some(&a.admin), None).await;
    assert_eq!(admin_balance.body, balance.body);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn reserve_replay_answers_200_with_the_replayed_header() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 50).await;
    let body = json!({"operation": "design_generate_image"}).to_string();
    let key = [("idempotency-key", "job-42")];
    let first = call_with(&server, Method::POST, "/v1/reservations", Some(&a.server), Some(body.clone()), &key).await;
    let again = call_with(&server, Method::POST, "/v1/reservations", Some(&a.server), Some(body), &key).await;
    assert_eq!((first.status, again.status), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(again.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(first.body, again.body);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn admin_grant_replay_answers_200_and_credits_once() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let path = format!("/v1/admin/users/{}/grants", a.user_id);
    let body = json!({"amount": 10, "reason": "ad_reward"}).to_string();
    let key = [("idempotency-key", "ad-1")];
    let first = call_with(&server, Method::POST, &path, Some(&a.admin), Some(body.clone()), &key).await;
    let again = call_with(&server, Method::POST, &path, Some(&a.admin), Some(body), &key).await;
    assert_eq!((first.status, again.status), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(first.body["grantId"], again.body["grantId"]);
    assert_eq!(again.body["balance"]["granted"], 10);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn admin_refund_returns_captured_credits_once() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 50).await;
    let hold = reserve(&server, &a.server, json!({"operation": "design_generate_image"})).await;
    let id = hold.body["reservationId"].as_str().expect("id").to_owned();
    call(&server, Method::POST, &format!("/v1/reservations/{id}/confirm"), Some(&a.server), None).await;
    let path = format!("/v1/admin/reservations/{id}/refund");
    let refunded = call(&server, Method::POST, &path, Some(&a.admin), Some(json!({"reason": "bad output"}))).await;
    assert_eq!(refunded.status, StatusCode::OK, "{}", refunded.body);
    assert_eq!(refunded.body["status"], "refunded");
    let again = call(&server, Method::POST, &path, Some(&a.admin), None).await;
    assert_eq!(again.status, StatusCode::OK);
    let balance = call(&server, Method::GET, "/v1/balance", Some(&a.server), None).await;
    assert_eq!((balance.body["available"].as_u64(), balance.body["spent"].as_u64()), (Some(50), Some(0)));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn task_link_route_links_once() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 50).await;
    let first = reserve(&server, &a.server, json!({"operation": "design_generate_image"})).await;
    let second = reserve(&server, &a.server, json!({"operation": "design_generate_image"})).await;
    let (first, second) =
        (first.body["reservationId"].as_str().unwrap_or(""), second.body["reservationId"].as_str().unwrap_or(""));
    let link = json!({"taskId": "bfl-123", "provider": "bfl"});
    let linked =
        call(&server, Method::POST, &format!("/v1/reservations/{first}/task"), Some(&a.server), Some(link.clone()))
            .await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
    assert_eq!(linked.body["taskId"], "bfl-123");
    let again =
        call(&server, Method::POST, &format!("/v1/reservations/{first}/task"), Some(&a.server), Some(link.clone()))
            .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_problem_in_three_languages(
        &server,
        Method::POST,
        &format!("/v1/reservations/{second}/task"),
        Some(&a.server),
        Some(link),
        &[],
        409,
        "task_already_linked",
    )
    .await;
}

#[tokio::test]
async fn prices_list_the_catalog() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let prices = call(&server, Method::GET, "/v1/prices", Some(&a.server), None).await;
    let ops = prices.body["operations"].as_array().expect("operations");
    assert!(ops.iter().any(|p| p["operation"] == "text_to_image_flux_dev" && p["unitCost"] == 10));
    assert_eq!(ops.len(), 16);
    // The packs a Checkout Session may name, as shipped, with what each costs
    // (the Next.js example's Stripe stand-in charges the same).
    assert_eq!(
        prices.body["packs"],
        json!([{"pack": "starter", "credits": 100, "expiresInDays": null, "amountTotal": 900, "currency": "usd"},
               {"pack": "studio", "credits": 500, "expiresInDays": null, "amountTotal": 3900, "currency": "usd"},
               {"pack": "trial", "credits": 20, "expiresInDays": 30, "amountTotal": 199, "currency": "usd"}])
    );
    let stand_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/nextjs/standins/stripe.mjs"))
            .expect("the example's Stripe stand-in");
    for (pack, amount) in [("starter", 900), ("studio", 3900), ("trial", 199)] {
        let line = format!(r#"{{ unit_amount: {amount}, currency: "usd", pack: "{pack}" }}"#);
        assert!(stand_in.contains(&line), "DEMO_PRICES sells {pack} at {amount} usd, as prices.json");
    }
}

#[tokio::test]
async fn missing_bad_and_expired_tokens_are_401() {
    let server = TestServer::start().await;
    assert_problem_in_three_languages(&server, Method::GET, "/v1/balance", None, None, &[], 401, "unauthorized").await;
    let forged = Auth::bearer(credits_cli::token::mint("not-the-secret", Bearer::Admin("alice"), 600).expect("token"));
    assert_problem(&call(&server, Method::GET, "/v1/balance", Some(&forged), None).await, 401, "unauthorized");
    let expired = Auth::bearer(credits_cli::token::mint(&server.secret, Bearer::User("alice"), -10).expect("token"));
    assert_problem(&call(&server, Method::GET, "/v1/balance", Some(&expired), None).await, 401, "unauthorized");
}

#[tokio::test]
async fn admin_routes_are_forbidden_to_users() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let path = format!("/v1/admin/users/{}/balance", a.user_id);
    assert_problem_in_three_languages(&server, Method::GET, &path, Some(&a.user), None, &[], 403, "forbidden").await;
    // The app's server is not an operator either.
    assert_problem(&call(&server, Method::GET, &path, Some(&a.server), None).await, 403, "forbidden");
    let grant_path = format!("/v1/admin/users/{}/grants", a.user_id);
    let body = Some(json!({"amount": 5, "reason": "promo"}));
    let reply = call_with(
        &server,
        Method::POST,
        &grant_path,
        Some(&a.server),
        body.map(|b| b.to_string()),
        &[("idempotency-key", "k")],
    )
    .await;
    assert_problem(&reply, 403, "forbidden");
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn validation_errors_name_the_field_in_three_languages() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"operation": "design_generate_image", "unitz": 1}), "unitz"),
        (json!({"operation": "design_generate_image", "units": "two"}), "units"),
        (json!({"operation": "design_generate_image", "units": 0}), "units"),
        (json!({"operation": "design_generate_image", "units": 1001}), "units"),
        (json!({"operation": "design_generate_image", "ttlSeconds": 86401}), "ttlSeconds"),
        (json!({"operation": "design_generate_image", "description": "x".repeat(501)}), "description"),
        (json!({"operation": "design_generate_image", "provider": "acme"}), "provider"),
        (json!({"units": 1}), "operation"),
    ];
    for (body, field) in cases {
        let replies = assert_problem_in_three_languages(
            &server,
            Method::POST,
            "/v1/reservations",
            Some(&a.server),
            Some(body),
            &[],
            400,
            "validation_error",
        )
        .await;
        for reply in replies {
            assert!(reply.body["detail"].as_str().unwrap_or("").contains(field), "{field}: {}", reply.body);
            assert_eq!(reply.body["field"], field);
        }
    }
    let malformed =
        call_with(&server, Method::POST, "/v1/reservations", Some(&a.server), Some("{nope".into()), &[]).await;
    assert_problem(&malformed, 400, "validation_error");
    let bad_id = call(&server, Method::POST, "/v1/reservations/not-a-uuid/confirm", Some(&a.server), None).await;
    assert_problem(&bad_id, 400, "validation_error");
    assert_eq!(bad_id.body["field"], "id");
    let long_key = "k".repeat(129);
    let reply = call_with(
        &server,
        Method::POST,
        "/v1/reservations",
        Some(&a.server),
        Some(json!({"operation": "design_generate_image"}).to_string()),
        &[("idempotency-key", &long_key)],
    )
    .await;
    assert_problem(&reply, 400, "validation_error");
    for query in ["limit=0", "limit=201", "limit=ten", "cursor=%%%"] {
        let reply = call(&server, Method::GET, &format!("/v1/transactions?{query}"), Some(&a.server), None).await;
        assert_problem(&reply, 400, "validation_error");
    }
    let path = format!("/v1/admin/users/{}/grants", a.user_id);
    let no_key =
        call(&server, Method::POST, &path, Some(&a.admin), Some(json!({"amount": 5, "reason": "promo"}))).await;
    assert_problem(&no_key, 400, "validation_error");
    assert_eq!(no_key.body["field"], "Idempotency-Key");
    let bad_reason = call_with(
        &server,
        Method::POST,
        &path,
        Some(&a.admin),
        Some(json!({"amount": 5, "reason": "gift"}).to_string()),
        &[("idempotency-key", "k")],
    )
    .await;
    assert_problem(&bad_reason, 400, "validation_error");
    let too_much = call_with(
        &server,
        Method::POST,
        &path,
        Some(&a.admin),
        Some(json!({"amount": 1_000_000_001u64, "reason": "promo"}).to_string()),
        &[("idempotency-key", "k2")],
    )
    .await;
    assert_problem(&too_much, 400, "validation_error");
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn unknown_operation_in_three_languages() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let body = Some(json!({"operation": "paint_a_horse"}));
    assert_problem_in_three_languages(
        &server,
        Method::POST,
        "/v1/reservations",
        Some(&a.server),
        body,
        &[],
        400,
        "unknown_operation",
    )
    .await;
}

#[tokio::test]
async fn insufficient_credits_in_three_languages_with_figures() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 3).await;
    let body = Some(json!({"operation": "design_generate_image"}));
    let replies = assert_problem_in_three_languages(
        &server,
        Method::POST,
        "/v1/reservations",
        Some(&a.server),
        body,
        &[],
        402,
        "insufficient_credits",
    )
    .await;
    assert_eq!(replies[0].body["available"], 3);
    assert_eq!(replies[0].body["required"], 5);
    assert_eq!(replies[0].body["shortfall"], 2);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn not_found_not_pending_and_expired_in_three_languages() {
    let server = TestServer::start().await;
    let a = actors(&server);
    // Mallory's own token, and the server naming mallory: alice's hold is
    // not there for either.
    let mallory_id = user("mallory");
    let mallory = Auth::bearer(server.user_token(&mallory_id));
    let for_mallory = Auth::acting_for(server.server_token(), mallory_id.as_str());
    grant(&server, &a.admin, &a.user_id, 50).await;
    let hold = reserve(&server, &a.server, json!({"operation": "design_generate_image", "ttlSeconds": 60})).await;
    let id = hold.body["reservationId"].as_str().expect("id").to_owned();

    for path in [format!("/v1/reservations/{id}"), format!("/v1/reservations/{}", uuid::Uuid::new_v4())] {
        assert_problem_in_three_languages(
            &server,
            Method::GET,
            &path,
            Some(&mallory),
            None,
            &[],
            404,
            "reservation_not_found",
        )
        .await;
    }
    let release = format!("/v1/reservations/{id}/release");
    assert_problem(
        &call(&server, Method::POST, &release, Some(&for_mallory), None).await,
        404,
        "reservation_not_found",
    );
    assert_problem(
        &call(&server, Method::GET, &format!("/v1/reservations/{id}"), Some(&for_mallory), None).await,
        404,
        "reservation_not_found",
    );

    let confirm = format!("/v1/reservations/{id}/confirm");
    let too_many = call(&server, Method::POST, &confirm, Some(&a.server), Some(json!({"units": 2}))).await;
    assert_problem(&too_many, 400, "validation_error");

    server.env.clock.advance_seconds(61);
    let expired = call(&server, Method::POST, &confirm, Some(&a.server), None).await;
    assert_problem(&expired, 409, "reservation_expired");
    let replies = assert_problem_in_three_languages(
        &server,
        Method::POST,
        &release,
        Some(&a.server),
        None,
        &[],
        409,
        "reservation_not_pending",
    )
    .await;
    assert_eq!(replies[0].body["reservationStatus"], "expired");
    let refund = format!("/v1/admin/reservations/{id}/refund");
    assert_problem(&call(&server, Method::POST, &refund, Some(&a.admin), None).await, 409, "reservation_not_pending");
    let balance = call(&server, Method::GET, "/v1/balance", Some(&a.server), None).await;
    assert_eq!(balance.body["available"], 50);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn confirm_after_expiry_is_409_expired_in_three_languages() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 50).await;
    let mut ids = Vec::new();
    for _ in LANGS {
        let hold = reserve(&server, &a.server, json!({"operation": "design_generate_image", "ttlSeconds": 1})).await;
        ids.push(hold.body["reservationId"].as_str().expect("id").to_owned());
    }
    server.env.clock.advance_seconds(1);
    let mut details = BTreeSet::new();
    for (id, lang) in ids.iter().zip(LANGS) {
        let path = format!("/v1/reservations/{id}/confirm");
        let reply = call_with(&server, Method::POST, &path, Some(&a.server), None, &[("accept-language", lang)]).await;
        assert_problem(&reply, 409, "reservation_expired");
        details.insert(reply.body["detail"].to_string());
    }
    assert_eq!(details.len(), 3);
    let balance = call(&server, Method::GET, "/v1/balance", Some(&a.server), None).await;
    assert_eq!((balance.body["available"].as_u64(), balance.body["reserved"].as_u64()), (Some(50), Some(0)));
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn idempotency_key_reuse_in_three_languages() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 50).await;
    let key = [("idempotency-key", "job-1")];
    let first = call_with(
        &server,
        Method::POST,
        "/v1/reservations",
        Some(&a.server),
        Some(json!({"operation": "design_generate_image"}).to_string()),
        &key,
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let other = Some(json!({"operation": "design_generate_logo"}));
    assert_problem_in_three_languages(
        &server,
        Method::POST,
        "/v1/reservations",
        Some(&a.server),
        other,
        &key,
        422,
        "idempotency_key_reused",
    )
    .await;
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn bodies_over_64_kib_are_413_in_three_languages() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let body = json!({"operation": "design_generate_image", "description": "x".repeat(70 * 1024)});
    assert_problem_in_three_languages(
        &server,
        Method::POST,
        "/v1/reservations",
        Some(&a.server),
        Some(body),
        &[],
        413,
        "payload_too_large",
    )
    .await;
}

#[tokio::test]
async fn database_unreachable_is_503_with_retry_after() {
    let server = TestServer::start_with_store(|_| async {
        // Nothing listens on port 9 (discard) on loopback.
        Store::new(client_from_env(Some("http://127.0.0.1:9")).await, "credits")
    })
    .await;
    let a = actors(&server);
    let replies = assert_problem_in_three_languages(
        &server,
        Method::GET,
        "/v1/balance",
        Some(&a.server),
        None,
        &[],
        503,
        "unavailable",
    )
    .await;
    assert!(replies[0].headers.contains_key("retry-after"));
}

#[tokio::test]
async fn unexpected_database_fault_is_500_without_details() {
    let server = TestServer::start_with_store(|endpoint| async move {
        Store::new(client_from_env(Some(&endpoint)).await, "no-such-table")
    })
    .await;
    let a = actors(&server);
    let replies = assert_problem_in_three_languages(
        &server,
        Method::GET,
        "/v1/balance",
        Some(&a.server),
        None,
        &[],
        500,
        "internal",
    )
    .await;
    let text = replies[0].body.to_string();
    assert!(!text.contains("no-such-table") && !text.contains("ResourceNotFound"), "{text}");
    assert!(replies[0].body["requestId"].as_str().is_some_and(|id| !id.is_empty()));
}

/// The routes template.yaml, openapi.yaml and the dev server declare are
/// one and the same set.
#[tokio::test]
async fn template_spec_and_dev_server_declare_the_same_routes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let code: BTreeSet<(String, String)> = ROUTES.iter().map(|r| (r.method.to_owned(), r.path.to_owned())).collect();

    let template: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("template.yaml")).expect("template.yaml"))
            .expect("yaml");
    let mut in_template = BTreeSet::new();
    for (_, resource) in template["Resources"].as_mapping().expect("resources") {
        if let Some(events) = resource["Properties"]["Events"].as_mapping() {
            for (_, event) in events {
                if event["Type"] == "HttpApi" {
                    let props = &event["Properties"];
                    let method = props["Method"].as_str().expect("method").to_uppercase();
                    in_template.insert((method, props["Path"].as_str().expect("path").to_owned()));
                }
            }
        }
    }
    assert_eq!(in_template, code, "template.yaml routes");

    let spec: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("openapi.yaml")).expect("openapi.yaml")).expect("yaml");
    let mut in_spec = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        for (method, _) in item.as_mapping().expect("path item") {
            let method = method.as_str().expect("method");
            if ["get", "post", "put", "patch", "delete"].contains(&method) {
                in_spec.insert((method.to_uppercase(), path.as_str().expect("path").to_owned()));
            }
        }
    }
    assert_eq!(in_spec, code, "openapi.yaml routes");

    // The dev server answers every route (whatever the answer), and nothing else.
    let server = TestServer::start().await;
    let token = Auth::bearer(server.admin_token());
    let id = uuid::Uuid::new_v4().to_string();
    for (method, path) in &code {
        let concrete = path.replace("{id}", &id).replace("{userId}", "someone").replace("{provider}", "bfl");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let reply = call(&server, method, &concrete, Some(&token), None).await;
        assert_ne!(reply.body["code"], "not_found", "{path} is not served");
    }
    let reply = call(&server, Method::GET, "/v1/nothing-here", Some(&token), None).await;
    assert_problem(&reply, 404, "not_found");
}

#[tokio::test]
async fn admin_cleanup_runs_the_sweep_on_demand() {
    let server = TestServer::start().await;
    let a = actors(&server);
    grant(&server, &a.admin, &a.user_id, 50).await;
    for _ in 0..2 {
        reserve(&server, &a.server, json!({"operation": "design_generate_image", "ttlSeconds": 5})).await;
    }
    reserve(&server, &a.server, json!({"operation": "design_generate_image", "ttlSeconds": 3600})).await;
    server.env.clock.advance_seconds(5);
    assert_problem(&call(&server, Method::POST, "/v1/admin/cleanup", Some(&a.user), None).await, 403, "forbidden");
    let report = call(&server, Method::POST, "/v1/admin/cleanup", Some(&a.admin), None).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(report.body["expired"], 2);
    assert_eq!(report.body["remaining"], 0);
    assert!(report.body["durationMs"].is_u64());
    let balance = call(&server, Method::GET, "/v1/balance", Some(&a.server), None).await;
    assert_eq!((balance.body["available"].as_u64(), balance.body["reserved"].as_u64()), (Some(45), Some(5)));
    server.env.assert_books_balance().await;
}

/// A slow database must end in the function's own 503, never in its
/// timeout: every HTTP function's timeout leaves room after the SDK's.
#[test]
fn every_function_times_out_after_the_sdk_with_room_to_answer() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("template.yaml")).expect("template.yaml"))
            .expect("yaml");
    let default = template["Globals"]["Function"]["Timeout"].as_u64().expect("a default timeout");
    let floor = credits_shared::store::OPERATION_TIMEOUT + credits_shared::http::ANSWER_MARGIN;
    for (name, resource) in template["Resources"].as_mapping().expect("resources") {
        if resource["Type"] == "AWS::Serverless::Function" {
            let timeout = resource["Properties"]["Timeout"].as_u64().unwrap_or(default);
            assert!(std::time::Duration::from_secs(timeout) > floor, "{name:?}: {timeout} s");
        }
    }
}
