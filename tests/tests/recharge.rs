//! Auto-recharge's settings over HTTP against the dev server: who may set,
//! read and end them, that the threshold is the user's low-balance
//! threshold, and that what the balance item keeps of recharges (this
//! month's count, the last one, the saved card) is what a read shows; and
//! that a paid Checkout Session saves the card it set up for later, read from
//! Stripe's API (the tests' stand-in).

use aws_sdk_dynamodb::types::AttributeValue;
use credits_shared::domain::UserId;
use credits_shared::store::{key, n, s, user_pk, BALANCE_SK};
use credits_tests::api::{actors, assert_problem, call, post_signed, Auth};
use credits_tests::events::signed_by_stripe;
use credits_tests::stripe_api::{StripeStandIn, STAND_IN_KEY};
use credits_tests::{at, catalog_with_packs, user, Setup, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const PATH: &str = "/v1/auto-recharge";

async fn read(server: &TestServer, auth: &Auth) -> Value {
    let reply = call(server, Method::GET, PATH, Some(auth), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn the_server_sets_it_the_user_reads_it_and_the_threshold_is_theirs() {
    let server = TestServer::start().await;
    let a = actors(&server);

    // Never set: off, nothing chosen, nothing recharged.
    let never = read(&server, &a.user).await;
    assert_eq!(
        never,
        json!({"userId": a.user_id, "enabled": false, "pack": null, "threshold": null, "monthlyLimit": null,
               "rechargesThisMonth": 0, "cardSaved": false, "disabledReason": null, "lastRecharge": null})
    );

    let body = json!({"pack": "starter", "threshold": 20, "monthlyLimit": 3});
    let set = call(&server, Method::PUT, PATH, Some(&a.server), Some(body.clone())).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    let expected = json!({"userId": a.user_id, "enabled": true, "pack": "starter", "threshold": 20, "monthlyLimit": 3,
                          "rechargesThisMonth": 0, "cardSaved": false, "disabledReason": null, "lastRecharge": null});
    assert_eq!(set.body, expected);
    // The user reads their own; the same again changes nothing.
    assert_eq!(read(&server, &a.user).await, expected);
    // The terms agreed to and who agreed are kept with the settings.
    let alice = UserId::parse(&a.user_id).expect("alice");
    let item = server.env.ledger.store().get(key(user_pk(&alice), BALANCE_SK)).await.expect("read").expect("balance");
    let terms = item.get("autoRecharge").and_then(|m| m.as_m().ok()).expect("the settings");
    let number = |name: &str| terms.get(name).and_then(|v| v.as_n().ok()).cloned();
    assert_eq!((number("credits"), number("amountTotal")), (Some("100".into()), Some("900".into())));
    assert_eq!(terms.get("currency").and_then(|v| v.as_s().ok()).map(String::as_str), Some("usd"));
    assert_eq!(terms.get("actor").and_then(|v| v.as_s().ok()).map(String::as_str), Some("test-server"));
    let again = call(&server, Method::PUT, PATH, Some(&a.server), Some(body)).await;
    assert_eq!(again.body, expected);

    // The threshold is the user's low-balance threshold: one value, whoever sets it.
    let settings = format!("/v1/admin/users/{}/settings", a.user_id);
    let reply = call(&server, Method::PUT, &settings, Some(&a.admin), Some(json!({"lowBalanceThreshold": 50}))).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(read(&server, &a.user).await["threshold"], 50);

    // Off: the settings go, the threshold stays the user's.
    let off = call(&server, Method::DELETE, PATH, Some(&a.server), None).await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!((off.body["enabled"].clone(), off.body["pack"].clone()), (json!(false), Value::Null));
    assert_eq!(off.body["threshold"], 50);
    let off_again = call(&server, Method::DELETE, PATH, Some(&a.server), None).await;
    assert_eq!(off_again.body, off.body);
    // Settings on a balance nobody granted anything to: the books still add up.
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn the_person_who_pays_never_turns_it_on() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let body = json!({"pack": "starter", "threshold": 20, "monthlyLimit": 3});
    let reply = call(&server, Method::PUT, PATH, Some(&a.user), Some(body.clone())).await;
    assert_problem(&reply, 403, "forbidden");
    // Nor does a user reading someone else's.
    let bob = Auth::acting_for(server.user_token(&user("bob")), &a.user_id);
    assert_problem(&call(&server, Method::GET, PATH, Some(&bob), None).await, 403, "forbidden");
    assert_eq!(read(&server, &a.user).await["enabled"], false, "the refused call changed nothing");

    // An operator may, naming the user.
    let olga = Auth::acting_for(server.admin_token(), &a.user_id);
    let reply = call(&server, Method::PUT, PATH, Some(&olga), Some(body)).await;
    assert_eq!((reply.status, reply.body["enabled"].clone()), (StatusCode::OK, json!(true)), "{}", reply.body);
}

#[tokio::test]
async fn only_a_pack_with_a_price_can_be_bought_off_session() {
    // `gift` grants credits for a free session: no price to charge a card.
    let packs = json!([
        {"pack": "starter", "credits": 100, "amountTotal": 900, "currency": "usd"},
        {"pack": "gift", "credits": 10, "free": true}
    ]);
    let server = TestServer::start_with(Setup { catalog: Some(catalog_with_packs(packs)), ..Setup::default() }).await;
    let a = actors(&server);
    let body = |pack: &str| Some(json!({"pack": pack, "threshold": 20, "monthlyLimit": 3}));
    for pack in ["gift", "studio"] {
        let reply = call(&server, Method::PUT, PATH, Some(&a.server), body(pack)).await;
        assert_problem(&reply, 400, "validation_error");
        assert_eq!(reply.body["field"], "pack", "{pack}: {}", reply.body);
    }
    let reply = call(&server, Method::PUT, PATH, Some(&a.server), body("starter")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn a_read_shows_this_months_recharges_the_last_one_and_the_card() {
    let server = TestServer::start().await;
    let a = actors(&server);
    server.env.clock.set(at("2026-12-31T23:59:00Z"));
    let body = json!({"pack": "starter", "threshold": 20, "monthlyLimit": 3});
    assert_eq!(call(&server, Method::PUT, PATH, Some(&a.server), Some(body)).await.status, StatusCode::OK);

    // What the recharges keep on the balance item, as they will write it.
    let last = AttributeValue::M(
        [
            ("id".to_owned(), s("rch_1")),
            ("status".to_owned(), s("failed")),
            ("code".to_owned(), s("card_declined")),
            ("paymentIntent".to_owned(), s("pi_1")),
            ("credits".to_owned(), n(100)),
            ("at".to_owned(), n(at("2026-12-31T23:58:00Z").millis())),
        ]
        .into(),
    );
    let card = AttributeValue::M([("customer".to_owned(), s("cus_1")), ("paymentMethod".to_owned(), s("pm_1"))].into());
    let client = server.env.ledger.store().client().clone();
    client
        .update_item()
        .table_name(server.env.ledger.store().table())
        .set_key(Some(key(user_pk(&UserId::parse(&a.user_id).expect("alice")), BALANCE_SK)))
        .update_expression(
            "SET rechargeMonth = :month, rechargesInMonth = :count, lastRecharge = :last, savedCard = :card",
        )
        .expression_attribute_values(":month", s("2026-12"))
        .expression_attribute_values(":count", n(2))
        .expression_attribute_values(":last", last)
        .expression_attribute_values(":card", card)
        .send()
        .await
        .expect("update the balance item");

    let got = read(&server, &a.user).await;
    assert_eq!((got["rechargesThisMonth"].clone(), got["cardSaved"].clone()), (json!(2), json!(true)), "{got}");
    assert_eq!(
        got["lastRecharge"],
        json!({"id": "rch_1", "status": "failed", "code": "card_declined", "paymentIntent": "pi_1",
               "credits": 100, "at": "2026-12-31T23:58:00.000Z"})
    );
    // A new month (UTC) counts from none; the card and the last recharge stay.
    server.env.clock.set(at("2027-01-01T00:00:00Z"));
    let got = read(&server, &a.user).await;
    assert_eq!((got["rechargesThisMonth"].clone(), got["cardSaved"].clone()), (json!(0), json!(true)), "{got}");
    assert_eq!(got["lastRecharge"]["id"], "rch_1");
}

// ---- saving the card: a paid Checkout Session's PaymentIntent ----------

const STRIPE_SECRET: &str = "whsec_test_stripe_new";

/// `checkout.session.completed` of a paid `starter` session for `user`.
fn paid_session(event_id: &str, session_id: &str, user: &str, payment_intent: &str) -> String {
    let session = json!({"id": session_id, "object": "checkout.session", "mode": "payment",
        "client_reference_id": user, "payment_status": "paid", "status": "complete",
        "payment_intent": payment_intent, "amount_total": 900, "currency": "usd", "created": 1_780_000_000,
        "metadata": {"pack": "starter"}});
    json!({"id": event_id, "object": "event", "api_version": "2025-01-27.acacia", "created": 1_780_000_000,
           "livemode": false, "type": "checkout.session.completed", "data": {"object": session}})
    .to_string()
}

/// Signs `body` with Stripe's library and posts it to the Stripe webhook.
async fn post_stripe(server: &TestServer, body: &str) -> (StatusCode, Value) {
    let now = server.env.ledger.now().unix_seconds();
    let header = signed_by_stripe(&[(body.to_owned(), STRIPE_SECRET.to_owned(), now)]).remove(0);
    let reply = post_signed(server, body, Some(&header)).await;
    (reply.status, reply.body)
}

async fn with_stand_in() -> (TestServer, StripeStandIn) {
    let stripe = StripeStandIn::start().await;
    let server = TestServer::start_with(Setup { stripe_api: Some(stripe.base.clone()), ..Setup::default() }).await;
    (server, stripe)
}

#[tokio::test]
async fn a_paid_session_saves_the_card_it_set_up_for_later() {
    let (server, stripe) = with_stand_in().await;
    let a = actors(&server);
    stripe.saved_card("pi_card", "cus_1", "pm_1");
    let (status, answer) = post_stripe(&server, &paid_session("evt_card", "cs_card", &a.user_id, "pi_card")).await;
    assert_eq!((status, answer["result"].clone()), (StatusCode::OK, json!("granted")), "{answer}");
    assert_eq!(read(&server, &a.user).await["cardSaved"], true);
    // Read once, with the API key, from the session's PaymentIntent.
    let requests = stripe.requests();
    assert_eq!(requests, [("/v1/payment_intents/pi_card".to_owned(), format!("Bearer {STAND_IN_KEY}"))]);
    // The card is on the balance, to charge off-session later.
    let item = server.env.ledger.store().get(key(user_pk(&UserId::parse(&a.user_id).expect("alice")), BALANCE_SK));
    let item = item.await.expect("read").expect("the balance");
    let card = item.get("savedCard").and_then(|c| c.as_m().ok()).expect("a saved card");
    let text = |name: &str| card.get(name).and_then(|v| v.as_s().ok()).cloned();
    assert_eq!((text("customer"), text("paymentMethod")), (Some("cus_1".into()), Some("pm_1".into())));
}

#[tokio::test]
async fn a_payment_not_set_up_for_later_saves_no_card() {
    let (server, stripe) = with_stand_in().await;
    let a = actors(&server);
    // A session without `setup_future_usage`: its card may not be charged later.
    stripe.answer("pi_once", 200, json!({"id": "pi_once", "customer": "cus_1", "payment_method": "pm_1"}));
    let (status, _) = post_stripe(&server, &paid_session("evt_once", "cs_once", &a.user_id, "pi_once")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read(&server, &a.user).await["cardSaved"], false);
}

#[tokio::test]
async fn stripe_unreachable_is_a_503_and_the_redelivery_saves_the_card_granting_once() {
    let (server, stripe) = with_stand_in().await;
    let a = actors(&server);
    stripe.answer("pi_later", 500, json!({"error": {"type": "api_error"}}));
    let body = paid_session("evt_later", "cs_later", &a.user_id, "pi_later");
    let (status, answer) = post_stripe(&server, &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert_eq!(read(&server, &a.user).await["cardSaved"], false);

    // Stripe redelivers the event: the grant replays, the card is saved.
    stripe.saved_card("pi_later", "cus_2", "pm_2");
    let (status, answer) = post_stripe(&server, &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(read(&server, &a.user).await["cardSaved"], true);
    let balance = call(&server, Method::GET, "/v1/balance", Some(&a.user), None).await.body;
    assert_eq!(balance["granted"], 100, "one grant of the starter pack: {balance}");
    assert_eq!(stripe.requests().len(), 2);
}

#[tokio::test]
async fn stripe_refusing_the_read_saves_no_card_and_keeps_the_purchase() {
    let (server, stripe) = with_stand_in().await;
    let a = actors(&server);
    // A restricted key without read access to PaymentIntents.
    stripe.answer("pi_denied", 403, json!({"error": {"type": "invalid_request_error", "code": "secret_key_required"}}));
    let (status, answer) =
        post_stripe(&server, &paid_session("evt_denied", "cs_denied", &a.user_id, "pi_denied")).await;
    assert_eq!((status, answer["result"].clone()), (StatusCode::OK, json!("granted")), "{answer}");
    assert_eq!(read(&server, &a.user).await["cardSaved"], false);
}
