//! Provider webhooks over HTTP against the dev server and DynamoDB Local,
//! for both providers: signatures, redeliveries, races with the client,
//! early deliveries, partial and late successes.

use credits_shared::domain::UserId;
use credits_shared::inbound::{bfl, generic};
use credits_tests::{user, TestServer, USER_HEADER};
use futures::future::join_all;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const GENERIC_ONE: &str = "whsec_Y3JlZGl0cy10ZXN0LXNlY3JldC1vbmUtMzItYnl0ZXM=";
const GENERIC_TWO: &str = "whsec_Y3JlZGl0cy10ZXN0LXNlY3JldC10d28tMzItYnl0ZXM=";
const GENERIC_UNKNOWN: &str = "whsec_bm90LW91ci1zZWNyZXQtYXQtYWxsLTMyLWJ5dGVz";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Generic,
    Bfl,
}

const BOTH: [Via; 2] = [Via::Generic, Via::Bfl];

struct Reply {
    status: StatusCode,
    body: Value,
}

struct World {
    server: TestServer,
    alice: UserId,
    /// The app's back end, acting for alice.
    server_token: String,
}

impl World {
    async fn new(credits: u64) -> World {
        let server = TestServer::start().await;
        let alice = user("alice");
        let server_token = server.server_token();
        if credits > 0 {
            server.env.grant(&alice, credits).await;
        }
        World { server, alice, server_token }
    }

    fn now_seconds(&self) -> i64 {
        self.server.env.ledger.now().unix_seconds()
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        let response = Client::new()
            .post(format!("{}{path}", self.server.base))
            .bearer_auth(&self.server_token)
            .header(USER_HEADER, self.alice.as_str())
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status();
        Reply { status, body: response.json().await.unwrap_or(Value::Null) }
    }

    async fn get(&self, path: &str) -> Value {
        let response = Client::new()
            .get(format!("{}{path}", self.server.base))
            .bearer_auth(&self.server_token)
            .header(USER_HEADER, self.alice.as_str())
            .send()
            .await
            .expect("request");
        response.json().await.expect("json")
    }

    /// Places a hold of `units` images, linked to `task` unless `None`.
    async fn hold(&self, via: Via, units: u32, task: Option<&str>, ttl: u32) -> String {
        let mut body = json!({"operation": "design_generate_image", "units": units, "ttlSeconds": ttl,
                              "provider": provider(via)});
        if let Some(task) = task {
            body["taskId"] = json!(task);
        }
        let reply = self.post("/v1/reservations", body).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        reply.body["reservationId"].as_str().expect("id").to_owned()
    }

    async fn balance(&self) -> (u64, u64, u64) {
        let b = self.get("/v1/balance").await;
        let figure = |k: &str| b[k].as_u64().unwrap_or(u64::MAX);
        (figure("available"), figure("reserved"), figure("spent"))
    }

    /// Sends a delivery signed as `via` signs it.
    async fn deliver(&self, via: Via, body: &str, signing: Signing<'_>) -> Reply {
        let mut request = Client::new()
            .post(format!("{}/v1/webhooks/{}", self.server.base, provider(via)))
            .header("content-type", "application/json");
        let now = self.now_seconds();
        match (via, signing) {
            (_, Signing::None) => {}
            (Via::Generic, Signing::Valid { id }) => {
                let sig = generic::sign(GENERIC_ONE, id, now, body.as_bytes()).expect("sign");
                request = standard_headers(request, id, now, &sig);
            }
            (Via::Generic, Signing::Rotated { id }) => {
                let old = generic::sign(GENERIC_UNKNOWN, id, now, body.as_bytes()).expect("sign");
                let new = generic::sign(GENERIC_TWO, id, now, body.as_bytes()).expect("sign");
                request = standard_headers(request, id, now, &format!("{old} {new}"));
            }
            (Via::Generic, Signing::WrongSecret { id }) => {
                let sig = generic::sign(GENERIC_UNKNOWN, id, now, body.as_bytes()).expect("sign");
                request = standard_headers(request, id, now, &sig);
            }
            (Via::Generic, Signing::Stale { id }) => {
                let then = now - 3600;
                let sig = generic::sign(GENERIC_ONE, id, then, body.as_bytes()).expect("sign");
                request = standard_headers(request, id, then, &sig);
            }
            (Via::Generic, Signing::ForBody { id, signed }) => {
                let sig = generic::sign(GENERIC_ONE, id, now, signed.as_bytes()).expect("sign");
                request = standard_headers(request, id, now, &sig);
            }
            (Via::Bfl, Signing::Valid { .. }) => {
                request = request.header("x-bfl-signature", bfl::sign("bfl-secret-a", body.as_bytes()));
            }
            (Via::Bfl, Signing::Rotated { .. }) => {
                request = request.header("x-bfl-signature", bfl::sign("bfl-secret-b", body.as_bytes()));
            }
            (Via::Bfl, Signing::WrongSecret { .. } | Signing::Stale { .. }) => {
                request = request.header("x-bfl-signature", bfl::sign("not-our-secret", body.as_bytes()));
            }
            (Via::Bfl, Signing::ForBody { signed, .. }) => {
                request = request.header("x-bfl-signature", bfl::sign("bfl-secret-a", signed.as_bytes()));
            }
        }
        let response = request.body(body.to_owned()).send().await.expect("request");
        let status = response.status();
        Reply { status, body: response.json().await.unwrap_or(Value::Null) }
    }
}

#[derive(Clone, Copy)]
enum Signing<'a> {
    Valid { id: &'a str },
    Rotated { id: &'a str },
    WrongSecret { id: &'a str },
    Stale { id: &'a str },
    ForBody { id: &'a str, signed: &'a str },
    None,
}

fn standard_headers(request: reqwest::RequestBuilder, id: &str, ts: i64, signature: &str) -> reqwest::RequestBuilder {
    request.header("webhook-id", id).header("webhook-timestamp", ts.to_string()).header("webhook-signature", signature)
}

fn provider(via: Via) -> &'static str {
    match via {
        Via::Generic => "generic",
        Via::Bfl => "bfl",
    }
}

/// The payload each provider sends: BFL says `id` and `Ready`/`Error`,
/// Standard Webhooks senders `task_id` and `succeeded`/`failed`.
fn payload(via: Via, task: &str, success: bool, units: Option<u32>) -> String {
    let mut body = match (via, success) {
        (Via::Bfl, true) => json!({"id": task, "status": "Ready", "result": {"sample": "https://cdn/x.png"}}),
        (Via::Bfl, false) => json!({"id": task, "status": "Error"}),
        (Via::Generic, true) => json!({"task_id": task, "status": "succeeded", "extra": {"model": "flux"}}),
        (Via::Generic, false) => json!({"task_id": task, "status": "FAILED"}),
    };
    if let Some(units) = units {
        body["units"] = json!(units);
    }
    body.to_string()
}

fn task(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn signed_success_confirms_once_and_redelivery_is_duplicate() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("ok");
        let id = w.hold(via, 2, Some(&t), 1800).await;
        let body = payload(via, &t, true, None);
        let first = w.deliver(via, &body, Signing::Valid { id: "msg-1" }).await;
        assert_eq!((first.status, first.body["result"].as_str()), (StatusCode::OK, Some("confirmed")), "{via:?}");
        let again = w.deliver(via, &body, Signing::Valid { id: "msg-1" }).await;
        assert_eq!((again.status, again.body["result"].as_str()), (StatusCode::OK, Some("duplicate")), "{via:?}");
        assert_eq!(w.balance().await, (40, 0, 10), "{via:?}");
        let hold = w.get(&format!("/v1/reservations/{id}")).await;
        assert_eq!(hold["settledBy"], "webhook");
        w.server.env.assert_books_balance().await;
    }
}

#[tokio::test]
async fn bad_missing_tampered_and_stale_signatures_are_403_and_change_nothing() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("bad");
        w.hold(via, 1, Some(&t), 1800).await;
        let body = payload(via, &t, true, None);
        let failure = payload(via, &t, false, None);
        let mut attempts = vec![
            ("wrong secret", w.deliver(via, &body, Signing::WrongSecret { id: "m" }).await),
            ("missing", w.deliver(via, &body, Signing::None).await),
            ("tampered", w.deliver(via, &body, Signing::ForBody { id: "m", signed: &failure }).await),
        ];
        if via == Via::Generic {
            attempts.push(("an hour old", w.deliver(via, &body, Signing::Stale { id: "m" }).await));
        }
        for (what, reply) in attempts {
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{via:?} {what}");
            assert_eq!(reply.body["code"], "forbidden", "{via:?} {what}");
        }
        assert_eq!(w.balance().await, (45, 5, 0), "{via:?}: nothing changed");
        // The genuine delivery still settles afterwards (nothing was recorded).
        let ok = w.deliver(via, &body, Signing::Valid { id: "m" }).await;
        assert_eq!(ok.body["result"], "confirmed", "{via:?}");
        w.server.env.assert_books_balance().await;
    }
}

#[tokio::test]
async fn rotated_secret_passes() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("rot");
        w.hold(via, 1, Some(&t), 1800).await;
        let reply = w.deliver(via, &payload(via, &t, true, None), Signing::Rotated { id: "r-1" }).await;
        assert_eq!((reply.status, reply.body["result"].as_str()), (StatusCode::OK, Some("confirmed")), "{via:?}");
    }
}

#[tokio::test]
async fn failure_status_releases() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("fail");
        let id = w.hold(via, 3, Some(&t), 1800).await;
        let reply = w.deliver(via, &payload(via, &t, false, None), Signing::Valid { id: "f-1" }).await;
        assert_eq!(reply.body["result"], "released", "{via:?}");
        assert_eq!(w.balance().await, (50, 0, 0), "{via:?}");
        let hold = w.get(&format!("/v1/reservations/{id}")).await;
        assert_eq!((hold["status"].as_str(), hold["settledBy"].as_str()), (Some("released"), Some("webhook")));
        w.server.env.assert_books_balance().await;
    }
}

#[tokio::test]
async fn pending_status_is_ignored() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("pending");
        w.hold(via, 1, Some(&t), 1800).await;
        let body = match via {
            Via::Bfl => json!({"id": t, "status": "Pending"}).to_string(),
            Via::Generic => json!({"task_id": t, "status": "processing"}).to_string(),
        };
        let reply = w.deliver(via, &body, Signing::Valid { id: "p-1" }).await;
        assert_eq!(reply.body["result"], "ignored");
        assert_eq!(w.balance().await, (45, 5, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_webhooks_and_four_client_confirms_at_once_charge_once() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("race");
        let id = w.hold(via, 2, Some(&t), 1800).await;
        let body = payload(via, &t, true, None);
        let confirm_path = format!("/v1/reservations/{id}/confirm");
        let ids = ["w-1", "w-2", "w-3", "w-4"];
        let hooks = join_all(ids.iter().map(|id| w.deliver(via, &body, Signing::Valid { id })));
        let clients = join_all((0..4).map(|_| w.post(&confirm_path, json!({}))));
        let (hooks, clients) = tokio::join!(hooks, clients);
        for reply in &hooks {
            assert_eq!(reply.status, StatusCode::OK, "{via:?} {}", reply.body);
            let result = reply.body["result"].as_str().unwrap_or("");
            assert!(["confirmed", "duplicate"].contains(&result), "{via:?} {result}");
        }
        let bodies: std::collections::HashSet<String> = clients
            .iter()
            .map(|r| {
                assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                r.body.to_string()
            })
            .collect();
        assert_eq!(bodies.len(), 1, "every client sees the same confirmed hold");
        assert_eq!(w.balance().await, (40, 0, 10), "{via:?}: charged exactly once");
        let hold = w.get(&format!("/v1/reservations/{id}")).await;
        let confirmations =
            hold["events"].as_array().map(|e| e.iter().filter(|e| e["type"] == "confirmed").count()).unwrap_or(0);
        assert_eq!(confirmations, 1);
        w.server.env.assert_books_balance().await;
    }
}

#[tokio::test]
async fn webhook_before_the_task_link_is_parked_and_settles_at_the_link() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("early");
        let id = w.hold(via, 2, None, 1800).await;
        let early = w.deliver(via, &payload(via, &t, true, None), Signing::Valid { id: "e-1" }).await;
        assert_eq!((early.status, early.body["result"].as_str()), (StatusCode::ACCEPTED, Some("parked")), "{via:?}");
        assert_eq!(w.balance().await, (40, 10, 0), "parked: nothing settled yet");
        let again = w.deliver(via, &payload(via, &t, true, None), Signing::Valid { id: "e-1" }).await;
        assert_eq!(again.body["result"], "duplicate");

        let linked =
            w.post(&format!("/v1/reservations/{id}/task"), json!({"taskId": t, "provider": provider(via)})).await;
        assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
        assert_eq!(linked.body["status"], "confirmed", "the link applied the parked success");
        assert_eq!(linked.body["settledBy"], "webhook");
        assert_eq!(w.balance().await, (40, 0, 10));
        // Linking again is a no-op and charges nothing more.
        let relink =
            w.post(&format!("/v1/reservations/{id}/task"), json!({"taskId": t, "provider": provider(via)})).await;
        assert_eq!(relink.body["status"], "confirmed");
        assert_eq!(w.balance().await, (40, 0, 10));
        w.server.env.assert_books_balance().await;
    }
}

#[tokio::test]
async fn webhook_before_a_reserve_with_its_task_id_settles_at_the_reserve() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("early-reserve");
        let early = w.deliver(via, &payload(via, &t, false, None), Signing::Valid { id: "er-1" }).await;
        assert_eq!(early.body["result"], "parked");
        let reply = w
            .post(
                "/v1/reservations",
                json!({"operation": "design_generate_image", "taskId": t, "provider": provider(via)}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(reply.body["status"], "released", "the parked failure released the new hold");
        assert_eq!(reply.body["taskId"], t.as_str());
        assert_eq!(w.balance().await, (50, 0, 0));
        w.server.env.assert_books_balance().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_racing_the_link_settles_exactly_once() {
    for via in BOTH {
        let w = World::new(200).await;
        for round in 0..6 {
            let t = task("link-race");
            let id = w.hold(via, 1, None, 1800).await;
            let link_path = format!("/v1/reservations/{id}/task");
            let link_body = json!({"taskId": t, "provider": provider(via)});
            let body = payload(via, &t, true, None);
            let msg = format!("lr-{round}");
            let (hook, link) =
                tokio::join!(w.deliver(via, &body, Signing::Valid { id: &msg }), w.post(&link_path, link_body));
            assert!(hook.status.is_success(), "{}", hook.body);
            assert_eq!(link.status, StatusCode::OK, "{}", link.body);
            let hold = w.get(&format!("/v1/reservations/{id}")).await;
            assert_eq!(hold["status"], "confirmed", "{via:?} round {round}: {hook:?}", hook = hook.body);
        }
        assert_eq!(w.balance().await, (170, 0, 30), "{via:?}");
        w.server.env.assert_books_balance().await;
    }
}

#[tokio::test]
async fn units_in_the_webhook_capture_partially() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("partial");
        let id = w.hold(via, 4, Some(&t), 1800).await;
        let reply = w.deliver(via, &payload(via, &t, true, Some(3)), Signing::Valid { id: "u-1" }).await;
        assert_eq!(reply.body["result"], "confirmed");
        let hold = w.get(&format!("/v1/reservations/{id}")).await;
        assert_eq!((hold["capturedUnits"].as_u64(), hold["releasedAmount"].as_u64()), (Some(3), Some(5)));
        assert_eq!(w.balance().await, (35, 0, 15), "{via:?}");
        w.server.env.assert_books_balance().await;
    }
}

#[tokio::test]
async fn success_after_expiry_is_not_charged() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("late");
        let id = w.hold(via, 2, Some(&t), 60).await;
        w.server.env.clock.advance_seconds(61);
        let reply = w.deliver(via, &payload(via, &t, true, None), Signing::Valid { id: "l-1" }).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["result"], "ignored");
        assert_eq!(reply.body["lateSuccess"], true);
        assert_eq!(w.balance().await, (50, 0, 0), "{via:?}: the hold went back, nothing charged");
        let hold = w.get(&format!("/v1/reservations/{id}")).await;
        assert_eq!(hold["status"], "expired");
        let again = w.deliver(via, &payload(via, &t, true, None), Signing::Valid { id: "l-1" }).await;
        assert_eq!(again.body["result"], "duplicate");
        w.server.env.assert_books_balance().await;
    }
}

#[tokio::test]
async fn unknown_provider_is_404_and_malformed_authentic_payload_is_400() {
    let w = World::new(0).await;
    let response =
        Client::new().post(format!("{}/v1/webhooks/acme", w.server.base)).body("{}").send().await.expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let reply = w.deliver(Via::Bfl, r#"{"status":"Ready"}"#, Signing::Valid { id: "x" }).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["code"], "validation_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_reserves_for_one_parked_task_leave_no_stray_hold() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("contested");
        let early = w.deliver(via, &payload(via, &t, true, None), Signing::Valid { id: "c-1" }).await;
        assert_eq!(early.body["result"], "parked");
        let body = json!({"operation": "design_generate_image", "taskId": t, "provider": provider(via)});
        let (a, b) = tokio::join!(w.post("/v1/reservations", body.clone()), w.post("/v1/reservations", body));
        let statuses = [a.status.as_u16(), b.status.as_u16()];
        assert!(statuses.contains(&201), "{via:?}: one reserve wins: {} {}", a.body, b.body);
        let winner = if a.status == StatusCode::CREATED { &a } else { &b };
        let loser = if a.status == StatusCode::CREATED { &b } else { &a };
        assert_eq!(winner.body["status"], "confirmed", "the parked success settled the winner");
        assert_eq!(loser.status, StatusCode::CONFLICT, "{}", loser.body);
        assert_eq!(loser.body["code"], "task_already_linked");
        // One image charged; nothing left reserved by the losing request.
        assert_eq!(w.balance().await, (45, 0, 5), "{via:?}");
        w.server.env.assert_books_balance().await;
    }
}

#[tokio::test]
async fn a_delivery_settles_only_a_hold_linked_with_its_own_provider() {
    let w = World::new(50).await;
    let t = task("cross");
    // Linked with BFL; Standard Webhooks says the same task id succeeded.
    let id = w.hold(Via::Bfl, 2, Some(&t), 1800).await;
    let other = w.deliver(Via::Generic, &payload(Via::Generic, &t, true, None), Signing::Valid { id: "x-1" }).await;
    assert_eq!((other.status, other.body["result"].as_str()), (StatusCode::ACCEPTED, Some("parked")), "{}", other.body);
    assert_eq!(w.get(&format!("/v1/reservations/{id}")).await["status"], "pending");
    assert_eq!(w.balance().await, (40, 10, 0), "another provider's word changes nothing");
    // The hold's own provider settles it.
    let own = w.deliver(Via::Bfl, &payload(Via::Bfl, &t, false, None), Signing::Valid { id: "x-2" }).await;
    assert_eq!(own.body["result"], "released", "{}", own.body);
    assert_eq!(w.balance().await, (50, 0, 0));
    w.server.env.assert_books_balance().await;
}

#[tokio::test]
async fn a_settled_hold_takes_no_task_link_so_no_parked_outcome_can_be_steered() {
    for via in BOTH {
        let w = World::new(50).await;
        let t = task("late-link");
        let id = w.hold(via, 2, None, 1800).await;
        let released = w.post(&format!("/v1/reservations/{id}/release"), json!({})).await;
        assert_eq!(released.body["status"], "released");
        // A failure parked for the task, then a link to the released hold: refused.
        let parked = w.deliver(via, &payload(via, &t, false, None), Signing::Valid { id: "l-1" }).await;
        assert_eq!(parked.status, StatusCode::ACCEPTED);
        let link =
            w.post(&format!("/v1/reservations/{id}/task"), json!({"taskId": t, "provider": provider(via)})).await;
        assert_eq!((link.status, link.body["code"].as_str()), (StatusCode::CONFLICT, Some("reservation_not_pending")));
        assert_eq!(link.body["reservationStatus"], "released");
        // The parked outcome still waits for a pending hold of that task.
        let next = w.hold(via, 1, Some(&t), 1800).await;
        assert_eq!(w.get(&format!("/v1/reservations/{next}")).await["status"], "released", "{via:?}");
        assert_eq!(w.balance().await, (50, 0, 0));
        w.server.env.assert_books_balance().await;
    }
}
