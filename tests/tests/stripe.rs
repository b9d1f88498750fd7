//! Stripe purchases over HTTP against the dev server, every event signed by
//! Stripe's own library (npm `stripe`): a paid Checkout Session granted
//! exactly once whatever is redelivered or raced, the unpaid → async-paid
//! path, packs bought only on their terms (the catalog's price, free packs
//! for sessions that paid nothing, never `metadata.credits`), events of the
//! other mode ignored, refunds taken back in proportion and at most once, a
//! dispute after a refund, a dispute won giving back what it took, a refund
//! before its session, signatures refused.

use credits_tests::api::{actors, balance, call, post_signed, reserve, Actors, Reply};
use credits_tests::events::signed_by_stripe;
use credits_tests::{catalog_with_packs, Setup, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const OLD_SECRET: &str = "whsec_test_stripe_old";
const NEW_SECRET: &str = "whsec_test_stripe_new";

/// A test-mode Stripe event as Stripe shapes it: `{id, object: "event", type, data: {object}}`.
fn event(id: &str, kind: &str, object: Value) -> String {
    event_in_mode(id, kind, object, false)
}

fn event_in_mode(id: &str, kind: &str, object: Value, livemode: bool) -> String {
    json!({"id": id, "object": "event", "api_version": "2025-01-27.acacia", "created": 1_780_000_000,
           "livemode": livemode, "type": kind, "data": {"object": object}})
    .to_string()
}

/// What the shipped catalog's packs cost (`shared/prices.json`), in cents.
fn price(pack: &str) -> u64 {
    match pack {
        "starter" => 900,
        "studio" => 3900,
        "trial" => 199,
        _ => 1000,
    }
}

/// A Checkout Session for `user`, of `metadata` (strings, as Stripe's are),
/// totalling what its pack costs.
fn session(id: &str, user: &str, payment_status: &str, metadata: Value) -> Value {
    let total = price(metadata["pack"].as_str().unwrap_or(""));
    json!({"id": id, "object": "checkout.session", "mode": "payment", "client_reference_id": user,
           "payment_status": payment_status, "status": "complete", "payment_intent": format!("pi_{id}"),
           "amount_total": total, "currency": "usd", "created": 1_780_000_000, "metadata": metadata})
}

/// The charge of a `starter` session (900 cents), `refunded` of it so far.
fn charge(session_id: &str, refunded: u64) -> Value {
    json!({"id": format!("ch_{session_id}"), "object": "charge", "amount": 900, "amount_refunded": refunded,
           "payment_intent": format!("pi_{session_id}"), "refunded": refunded == 900})
}

fn dispute(session_id: &str, status: &str) -> Value {
    json!({"id": format!("dp_{session_id}"), "object": "dispute", "charge": format!("ch_{session_id}"),
           "payment_intent": format!("pi_{session_id}"), "amount": 900, "reason": "fraudulent", "status": status})
}

/// Signs `body` with Stripe's library (the new secret, the server's clock) and posts it.
async fn deliver(server: &TestServer, body: &str) -> Reply {
    let now = server.env.ledger.now().unix_seconds();
    let header = signed_by_stripe(&[(body.to_owned(), NEW_SECRET.to_owned(), now)]).remove(0);
    let reply = post_signed(server, body, Some(&header)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
}

fn result(reply: &Reply) -> (&str, Option<&str>) {
    (reply.body["result"].as_str().unwrap_or(""), reply.body["reason"].as_str())
}

async fn lines(server: &TestServer, a: &Actors) -> Vec<Value> {
    let page = call(server, Method::GET, "/v1/transactions?limit=200", Some(&a.user), None).await.body;
    page["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_paid_session_is_granted_once_whatever_is_redelivered() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let completed =
        event("evt_c1", "checkout.session.completed", session("cs_1", &a.user_id, "paid", json!({"pack": "starter"})));
    let first = deliver(&server, &completed).await;
    assert_eq!(result(&first), ("granted", None), "{}", first.body);
    assert_eq!(first.body["credits"], 100);
    assert_eq!(result(&deliver(&server, &completed).await), ("duplicate", None), "a redelivery");
    // Another event for the same session (a resend with a new id): the same grant.
    let resent =
        event("evt_c1b", "checkout.session.completed", session("cs_1", &a.user_id, "paid", json!({"pack": "starter"})));
    assert_eq!(result(&deliver(&server, &resent).await), ("duplicate", None));
    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["granted"].as_u64()), (Some(100), Some(100)));
    let grants: Vec<Value> = lines(&server, &a).await.into_iter().filter(|l| l["type"] == "grant").collect();
    assert_eq!(grants.len(), 1);
    assert_eq!((grants[0]["reason"].as_str(), grants[0]["actor"].as_str()), (Some("purchase"), Some("stripe")));
    assert!(grants[0]["description"].as_str().unwrap_or("").contains("cs_1"), "{}", grants[0]);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn the_same_event_eight_times_at_once_grants_once() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let body = event(
        "evt_race",
        "checkout.session.completed",
        session("cs_race", &a.user_id, "paid", json!({"pack": "starter"})),
    );
    let now = server.env.ledger.now().unix_seconds();
    let header = signed_by_stripe(&[(body.clone(), NEW_SECRET.to_owned(), now)]).remove(0);
    let replies = futures::future::join_all((0..8).map(|_| post_signed(&server, &body, Some(&header)))).await;
    let mut results: Vec<&str> = replies.iter().map(|r| r.body["result"].as_str().unwrap_or("")).collect();
    results.sort();
    assert_eq!(results, ["duplicate"; 7].into_iter().chain(["granted"]).collect::<Vec<_>>(), "{results:?}");
    assert_eq!(balance(&server, &a).await["granted"], 100);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn signatures_rotation_tolerance_wrong_secret_and_tampering() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let body = event(
        "evt_sig",
        "checkout.session.completed",
        session("cs_sig", &a.user_id, "paid", json!({"pack": "starter"})),
    );
    let now = server.env.ledger.now().unix_seconds();
    let signed = signed_by_stripe(&[
        (body.clone(), OLD_SECRET.to_owned(), now),
        (body.clone(), "whsec_someone_else".to_owned(), now),
        (body.clone(), NEW_SECRET.to_owned(), now - 301),
        (body.clone(), NEW_SECRET.to_owned(), now - 299),
    ]);
    let refused = |reply: &Reply| reply.status == StatusCode::FORBIDDEN && reply.body["code"] == "forbidden";
    assert!(refused(&post_signed(&server, &body, Some(&signed[1])).await), "another account's secret");
    assert!(refused(&post_signed(&server, &body, Some(&signed[2])).await), "301 s old");
    assert!(refused(&post_signed(&server, &body, None).await), "unsigned");
    let tampered = body.replace("\"starter\"", "\"studio\"");
    assert!(refused(&post_signed(&server, &tampered, Some(&signed[0])).await), "tampered");
    assert_eq!(balance(&server, &a).await["granted"], 0, "nothing refused moved a credit");
    // The old secret still signs while it is rotated out; 299 s is in time.
    let old = post_signed(&server, &body, Some(&signed[0])).await;
    assert_eq!((old.status, old.body["result"].as_str()), (StatusCode::OK, Some("granted")));
    let late = post_signed(&server, &body, Some(&signed[3])).await;
    assert_eq!((late.status, late.body["result"].as_str()), (StatusCode::OK, Some("duplicate")));
    assert_eq!(balance(&server, &a).await["granted"], 100);
}

#[tokio::test]
async fn an_unpaid_session_waits_for_its_async_payment_and_ignored_events_say_why() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let unpaid = session("cs_ach", &a.user_id, "unpaid", json!({"pack": "starter"}));
    let reply = deliver(&server, &event("evt_u1", "checkout.session.completed", unpaid)).await;
    assert_eq!(result(&reply), ("ignored", Some("payment_not_settled")));
    assert_eq!(balance(&server, &a).await["granted"], 0);
    let paid = session("cs_ach", &a.user_id, "paid", json!({"pack": "starter"}));
    let reply = deliver(&server, &event("evt_u2", "checkout.session.async_payment_succeeded", paid)).await;
    assert_eq!((result(&reply).0, reply.body["credits"].as_u64()), ("granted", Some(100)), "the starter pack");
    // A pack that expires: its lot expires 30 days after the session was created.
    let created = server.env.ledger.now().unix_seconds() - 60;
    let mut trial = session("cs_trial", &a.user_id, "paid", json!({"pack": "trial"}));
    trial["created"] = json!(created);
    assert_eq!(result(&deliver(&server, &event("evt_t", "checkout.session.completed", trial)).await).0, "granted");
    let b = balance(&server, &a).await;
    let expiring: Vec<&Value> =
        b["lots"].as_array().into_iter().flatten().filter(|l| !l["expiresAt"].is_null()).collect();
    assert_eq!(expiring.len(), 1, "{b}");
    let expires = credits_shared::domain::Timestamp((created + 30 * 86_400) * 1000).to_rfc3339();
    assert_eq!(
        (expiring[0]["remaining"].as_u64(), expiring[0]["expiresAt"].as_str()),
        (Some(20), Some(expires.as_str()))
    );
    // A trial bought long ago whose payment cleared only after its days ran out: nothing to grant.
    let stale = session("cs_stale", &a.user_id, "paid", json!({"pack": "trial"}));
    let reply = deliver(&server, &event("evt_stale", "checkout.session.async_payment_succeeded", stale)).await;
    assert_eq!(result(&reply), ("ignored", Some("pack_expired_before_payment_cleared")));
    for (id, object, kind, reason) in [
        (
            "evt_i1",
            session("cs_x", &a.user_id, "paid", json!({"pack": "mystery"})),
            "checkout.session.completed",
            "unknown_pack",
        ),
        ("evt_i2", session("cs_y", "", "paid", json!({"pack": "starter"})), "checkout.session.completed", "no_user"),
        ("evt_i3", session("cs_z", &a.user_id, "paid", json!({})), "checkout.session.completed", "no_pack"),
        ("evt_i4", json!({"id": "cus_1", "object": "customer"}), "customer.created", "event_type_not_handled"),
    ] {
        let body = event(id, kind, object);
        let reply = deliver(&server, &body).await;
        assert_eq!(result(&reply), ("ignored", Some(reason)), "{id}");
        // Looked at again when resent (say, once the pack is deployed): not a duplicate.
        assert_eq!(result(&deliver(&server, &body).await), ("ignored", Some(reason)), "{id} resent");
    }
    assert_eq!(balance(&server, &a).await["granted"], 120);
    server.env.aggregate().await;
    let bucket = credits_shared::stats::buckets(server.env.ledger.now())[3].clone();
    let totals =
        credits_shared::monitoring::Monitor::new(server.env.store.clone()).totals(&bucket).await.expect("totals");
    assert_eq!((totals.stripe_ignored, totals.purchases), (6, 2), "ignored events are counted");
}

#[tokio::test]
async fn refunds_take_back_their_share_once_and_a_dispute_takes_the_rest() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let paid = session("cs_r", &a.user_id, "paid", json!({"pack": "starter"}));
    deliver(&server, &event("evt_r0", "checkout.session.completed", paid)).await;
    let quarter = event("evt_r1", "charge.refunded", charge("cs_r", 225));
    let reply = deliver(&server, &quarter).await;
    assert_eq!((result(&reply).0, reply.body["credits"].as_u64()), ("taken_back", Some(25)));
    assert_eq!(result(&deliver(&server, &quarter).await).0, "duplicate");
    // Stripe's second partial refund carries the cumulative amount: 60% in all.
    let reply = deliver(&server, &event("evt_r2", "charge.refunded", charge("cs_r", 540))).await;
    assert_eq!(reply.body["credits"], 35);
    // The first refund's event again, under a new id, and out of order: nothing.
    assert_eq!(
        result(&deliver(&server, &event("evt_r1b", "charge.refunded", charge("cs_r", 225))).await).0,
        "duplicate"
    );
    let reply = deliver(&server, &event("evt_r3", "charge.dispute.created", dispute("cs_r", "needs_response"))).await;
    assert_eq!((result(&reply).0, reply.body["credits"].as_u64()), ("taken_back", Some(40)));
    assert_eq!(
        result(&deliver(&server, &event("evt_r4", "charge.refunded", charge("cs_r", 900))).await).0,
        "duplicate"
    );
    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["debited"].as_u64()), (Some(0), Some(100)), "{b}");
    let debits: Vec<(u64, String)> = lines(&server, &a)
        .await
        .into_iter()
        .filter(|l| l["type"] == "debit")
        .map(|l| (l["amount"].as_u64().unwrap_or(0), l["reason"].as_str().unwrap_or("").to_owned()))
        .collect();
    let mut debits = debits;
    debits.sort();
    assert_eq!(debits, vec![(25, "refund".into()), (35, "refund".into()), (40, "chargeback".into())]);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn credits_already_spent_are_recorded_as_unrecoverable() {
    let server = TestServer::start().await;
    let a = actors(&server);
    deliver(
        &server,
        &event("evt_s0", "checkout.session.completed", session("cs_s", &a.user_id, "paid", json!({"pack": "starter"}))),
    )
    .await;
    let hold = reserve(&server, &a.server, json!({"operation": "design_generate_image", "units": 16})).await;
    let id = hold.body["reservationId"].as_str().unwrap_or("").to_owned();
    let confirmed = call(&server, Method::POST, &format!("/v1/reservations/{id}/confirm"), Some(&a.server), None).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let reply = deliver(&server, &event("evt_s1", "charge.dispute.created", dispute("cs_s", "needs_response"))).await;
    assert_eq!(
        (result(&reply).0, reply.body["credits"].as_u64(), reply.body["unrecoverable"].as_u64()),
        ("taken_back", Some(20), Some(80))
    );
    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["spent"].as_u64(), b["debited"].as_u64()), (Some(0), Some(80), Some(20)));
    server.env.assert_books_balance().await;
    // The figure shows in monitoring and in `credits check`.
    server.env.aggregate().await;
    let bucket = credits_shared::stats::buckets(server.env.ledger.now())[3].clone();
    let totals =
        credits_shared::monitoring::Monitor::new(server.env.store.clone()).totals(&bucket).await.expect("totals");
    assert_eq!(
        (totals.purchases, totals.credits_purchased, totals.credits_taken_back, totals.credits_unrecoverable),
        (1, 100, 100, 80)
    );
    let out = std::process::Command::new(credits_tests::credits_bin())
        .args(["check", "--quiet"])
        .env("DYNAMODB_ENDPOINT", credits_tests::endpoint())
        .env("CREDITS_TABLE", server.env.store.table())
        .output()
        .expect("credits check");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(
        report.contains("stripe purchases: 1 (100 credits), taken back 100 (unrecoverable: 80 already spent)"),
        "{report}"
    );
}

#[tokio::test]
async fn a_refund_before_its_session_is_parked_and_applied_when_the_purchase_arrives() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let refund = deliver(&server, &event("evt_p1", "charge.refunded", charge("cs_p", 450))).await;
    assert_eq!(result(&refund).0, "parked");
    assert_eq!(balance(&server, &a).await["granted"], 0);
    let paid = session("cs_p", &a.user_id, "paid", json!({"pack": "starter"}));
    assert_eq!(result(&deliver(&server, &event("evt_p0", "checkout.session.completed", paid)).await).0, "granted");
    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["debited"].as_u64()), (Some(50), Some(50)), "{b}");
    // Stripe retries the refund's event (it got a 200, but say it did): nothing more.
    assert_eq!(
        result(&deliver(&server, &event("evt_p1", "charge.refunded", charge("cs_p", 450))).await).0,
        "duplicate"
    );
    assert_eq!(balance(&server, &a).await["debited"], 50);
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_full_refund_and_a_dispute_at_once_take_back_each_credit_once() {
    let server = TestServer::start().await;
    let a = actors(&server);
    deliver(
        &server,
        &event("evt_x0", "checkout.session.completed", session("cs_x", &a.user_id, "paid", json!({"pack": "starter"}))),
    )
    .await;
    let refund = event("evt_x1", "charge.refunded", charge("cs_x", 900));
    let disputed = event("evt_x2", "charge.dispute.created", dispute("cs_x", "needs_response"));
    let now = server.env.ledger.now().unix_seconds();
    let headers = signed_by_stripe(&[
        (refund.clone(), NEW_SECRET.to_owned(), now),
        (disputed.clone(), NEW_SECRET.to_owned(), now),
    ]);
    let sends = (0..8).map(|i| {
        let (body, header) = if i % 2 == 0 { (&refund, &headers[0]) } else { (&disputed, &headers[1]) };
        post_signed(&server, body, Some(header))
    });
    let replies = futures::future::join_all(sends).await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let taken: u64 = replies.iter().filter_map(|r| r.body["credits"].as_u64()).sum();
    assert_eq!(taken, 100, "{:?}", replies.iter().map(|r| r.body.clone()).collect::<Vec<_>>());
    let b = balance(&server, &a).await;
    assert_eq!((b["available"].as_u64(), b["debited"].as_u64()), (Some(0), Some(100)));
    server.env.assert_books_balance().await;
}

/// This hour's monitoring totals, once the stats have read the table's stream.
async fn totals(server: &TestServer) -> credits_shared::monitoring::Totals {
    server.env.aggregate().await;
    let bucket = credits_shared::stats::buckets(server.env.ledger.now())[3].clone();
    credits_shared::monitoring::Monitor::new(server.env.store.clone()).totals(&bucket).await.expect("totals")
}

#[tokio::test]
async fn metadata_credits_buy_nothing() {
    let server = TestServer::start().await;
    let a = actors(&server);
    // A session anything else in the Stripe account could make (another
    // product, a payment link): 100 000 credits named, one cent paid.
    let mut minted = session("cs_mint", &a.user_id, "paid", json!({"credits": "100000"}));
    minted["amount_total"] = json!(1);
    let reply = deliver(&server, &event("evt_mint", "checkout.session.completed", minted)).await;
    assert_eq!(result(&reply), ("ignored", Some("metadata_credits_not_accepted")));
    // Beside a pack, the number is nothing: the pack is bought on its terms.
    let both = session("cs_both", &a.user_id, "paid", json!({"pack": "starter", "credits": "100000"}));
    let reply = deliver(&server, &event("evt_both", "checkout.session.completed", both)).await;
    assert_eq!((result(&reply).0, reply.body["credits"].as_u64()), ("granted", Some(100)));
    assert_eq!(balance(&server, &a).await["granted"], 100);
    assert_eq!(totals(&server).await.stripe_ignored, 1, "the ignored session is counted");
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_session_that_did_not_pay_the_packs_price_is_ignored_and_counted() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let starter = |id: &str| session(id, &a.user_id, "paid", json!({"pack": "starter"}));
    let mut cheap = starter("cs_cheap");
    cheap["amount_total"] = json!(1);
    let mut dear = starter("cs_dear");
    dear["amount_total"] = json!(90_000);
    let mut yen = starter("cs_yen");
    yen["currency"] = json!("jpy");
    let mut untold = starter("cs_untold");
    untold["amount_total"] = json!(null);
    for (id, object, reason) in [
        ("evt_cheap", cheap, "amount_mismatch"),
        ("evt_dear", dear, "amount_mismatch"),
        ("evt_yen", yen, "currency_mismatch"),
        ("evt_untold", untold, "amount_mismatch"),
    ] {
        let reply = deliver(&server, &event(id, "checkout.session.completed", object)).await;
        assert_eq!(result(&reply), ("ignored", Some(reason)), "{id}");
    }
    // The same user's session at the price: granted.
    let reply = deliver(&server, &event("evt_right", "checkout.session.completed", starter("cs_right"))).await;
    assert_eq!(result(&reply).0, "granted");
    assert_eq!(balance(&server, &a).await["granted"], 100);
    let totals = totals(&server).await;
    assert_eq!((totals.stripe_ignored, totals.purchases), (4, 1), "each ignored session counted");
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_session_that_paid_nothing_buys_only_a_free_pack() {
    let catalog = catalog_with_packs(json!([
        {"pack": "starter", "credits": 100, "amountTotal": 900, "currency": "usd"},
        {"pack": "welcome", "credits": 15, "free": true},
    ]));
    let server = TestServer::start_with(Setup { catalog: Some(catalog), ..Setup::default() }).await;
    let a = actors(&server);
    let discounted = |id: &str, pack: &str| {
        let mut s = session(id, &a.user_id, "no_payment_required", json!({"pack": pack}));
        s["amount_total"] = json!(0);
        s["payment_intent"] = json!(null);
        s
    };
    let reply =
        deliver(&server, &event("evt_100off", "checkout.session.completed", discounted("cs_100off", "starter"))).await;
    assert_eq!(result(&reply), ("ignored", Some("pack_not_free")));
    let reply =
        deliver(&server, &event("evt_gift", "checkout.session.completed", discounted("cs_gift", "welcome"))).await;
    assert_eq!((result(&reply).0, reply.body["credits"].as_u64()), ("granted", Some(15)));
    assert_eq!(balance(&server, &a).await["granted"], 15);
    // `free` is the catalog's rule, not listed; prices are.
    let prices = call(&server, Method::GET, "/v1/prices", Some(&a.user), None).await;
    assert_eq!(
        prices.body["packs"],
        json!([{"pack": "starter", "credits": 100, "expiresInDays": null, "amountTotal": 900, "currency": "usd"},
               {"pack": "welcome", "credits": 15, "expiresInDays": null}])
    );
    server.env.assert_books_balance().await;
}

#[tokio::test]
async fn events_act_only_in_the_configured_mode() {
    for live in [false, true] {
        let server = TestServer::start_with(Setup { stripe_live: live, ..Setup::default() }).await;
        let a = actors(&server);
        let paid = |id: &str| session(id, &a.user_id, "paid", json!({"pack": "starter"}));
        let other = event_in_mode("evt_other", "checkout.session.completed", paid("cs_other"), !live);
        assert_eq!(result(&deliver(&server, &other).await), ("ignored", Some("other_mode")), "live: {live}");
        let ours = event_in_mode("evt_ours", "checkout.session.completed", paid("cs_ours"), live);
        assert_eq!(result(&deliver(&server, &ours).await).0, "granted", "live: {live}");
        // An event that does not say its mode is of neither.
        let mut unsaid: Value =
            serde_json::from_str(&event("evt_unsaid", "checkout.session.completed", paid("cs_u"))).expect("json");
        unsaid.as_object_mut().map(|o| o.remove("livemode"));
        let reply = deliver(&server, &unsaid.to_string()).await;
        assert_eq!(result(&reply), ("ignored", Some("other_mode")), "live: {live}");
        assert_eq!(balance(&server, &a).await["granted"], 100, "live: {live}");
    }
}

#[tokio::test]
async fn a_dispute_won_gives_back_what_it_took_once_and_a_lost_one_nothing() {
    let server = TestServer::start().await;
    let a = actors(&server);
    let buy = |id: &str| {
        event(
            &format!("evt_{id}"),
            "checkout.session.completed",
            session(id, &a.user_id, "paid", json!({"pack": "starter"})),
        )
    };
    deliver(&server, &buy("cs_w")).await;
    // 30 of the 100 spent before the dispute: it takes the 70 left.
    let hold = reserve(&server, &a.server, json!({"operation": "design_generate_image", "units": 6})).await;
    let id = hold.body["reservationId"].as_str().unwrap_or("").to_owned();
    let confirmed = call(&server, Method::POST, &format!("/v1/reservations/{id}/confirm"), Some(&a.server), None).await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    let reply = deliver(&server, &event("evt_w1", "charge.dispute.created", dispute("cs_w", "needs_response"))).await;
    assert_eq!((reply.body["credits"].as_u64(), reply.body["unrecoverable"].as_u64()), (Some(70), Some(30)));
    // Won: the 70 it took come back (not the 30 it never took), once.
    let won = event("evt_w2", "charge.dispute.closed", dispute("cs_w", "won"));
    let reply = deliver(&server, &won).await;
    assert_eq!((result(&reply), reply.body["credits"].as_u64()), (("granted", None), Some(70)), "{}", reply.body);
    assert_eq!(result(&deliver(&server, &won).await), ("duplicate", None), "redelivered");
    let resent = event("evt_w2b", "charge.dispute.closed", dispute("cs_w", "won"));
    assert_eq!(result(&deliver(&server, &resent).await), ("duplicate", None), "resent under a new id");
    let b = balance(&server, &a).await;
    assert_eq!(
        (b["available"].as_u64(), b["spent"].as_u64(), b["debited"].as_u64(), b["granted"].as_u64()),
        (Some(70), Some(30), Some(70), Some(170)),
        "{b}"
    );
    let given: Vec<Value> = lines(&server, &a).await.into_iter().filter(|l| l["reason"] == "dispute_won").collect();
    assert_eq!(given.len(), 1);
    assert_eq!(
        (given[0]["type"].as_str(), given[0]["amount"].as_u64(), given[0]["actor"].as_str()),
        (Some("grant"), Some(70), Some("stripe"))
    );

    // Lost: what the dispute took stays taken.
    deliver(&server, &buy("cs_l")).await;
    deliver(&server, &event("evt_l1", "charge.dispute.created", dispute("cs_l", "needs_response"))).await;
    let reply = deliver(&server, &event("evt_l2", "charge.dispute.closed", dispute("cs_l", "lost"))).await;
    assert_eq!(result(&reply), ("ignored", Some("dispute_not_won")));
    // Won before its take-back was applied: there was nothing to give, and
    // the take-back, when it comes, takes nothing.
    deliver(&server, &buy("cs_e")).await;
    let reply = deliver(&server, &event("evt_e1", "charge.dispute.closed", dispute("cs_e", "won"))).await;
    assert_eq!(result(&reply), ("ignored", Some("nothing_taken")));
    let reply = deliver(&server, &event("evt_e2", "charge.dispute.created", dispute("cs_e", "needs_response"))).await;
    assert_eq!(result(&reply), ("ignored", Some("dispute_already_won")));
    let b = balance(&server, &a).await;
    assert_eq!(
        (b["available"].as_u64(), b["debited"].as_u64(), b["granted"].as_u64()),
        (Some(170), Some(170), Some(370)),
        "cs_l's 100 stay taken, cs_e's 100 were never taken: {b}"
    );
    server.env.assert_books_balance().await;
}
