//! A database fault in the middle of a concurrent load: DynamoDB Local (data
//! on disk) is stopped while clients reserve and confirm, then restarted on
//! the same port. Every request must answer its success or 503/500; each
//! 503/500, sent again with the same idempotency key, must settle exactly
//! once; the books must balance afterwards.

use std::sync::Arc;
use std::time::Duration;

use credits_shared::domain::UserId;
use credits_tests::{scan, text, user, TestServer, USER_HEADER};
use futures::future::join_all;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Mutex;

const USERS: usize = 8;
const LIFECYCLES: usize = 30;
const GRANT: u64 = 1000;
const BONUS: u64 = 50;
/// `design_generate_image` costs 5 a unit; each hold is for 2 units.
const COST: u64 = 10;

/// A request that answered 503/500, to send again.
#[derive(Clone, Debug)]
enum Failed {
    Reserve { user: usize, key: String },
    Confirm { user: usize, id: String },
    Grant { user: usize, key: String, amount: u64 },
}

#[derive(Default)]
struct Log {
    ok: u64,
    unavailable: u64,
    internal: u64,
    unexpected: Vec<String>,
    failed: Vec<Failed>,
    /// Holds to confirm once their reserve is known to have succeeded.
    to_confirm: Vec<(usize, String)>,
    /// Replayed reserves that found their hold placed before the fault.
    found_placed: u64,
}

struct World {
    server: TestServer,
    http: Client,
    users: Vec<UserId>,
    /// Each user's own token: reads only.
    tokens: Vec<String>,
    /// The app's back end: places and settles the holds.
    server_token: String,
    admin: String,
}

struct Reply {
    status: StatusCode,
    body: Value,
}

impl World {
    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                Reply { status, body: response.json().await.unwrap_or(Value::Null) }
            }
            // The dev server itself never goes down here; a transport error is a finding.
            Err(e) => Reply { status: StatusCode::IM_A_TEAPOT, body: json!({"transport": e.to_string()}) },
        }
    }

    async fn reserve(&self, user: usize, key: &str) -> Reply {
        let request = self
            .http
            .post(format!("{}/v1/reservations", self.server.base))
            .bearer_auth(&self.server_token)
            .header(USER_HEADER, self.users[user].as_str())
            .header("idempotency-key", key)
            .json(&json!({"operation": "design_generate_image", "units": 2}));
        self.send(request).await
    }

    async fn confirm(&self, user: usize, id: &str) -> Reply {
        let request = self
            .http
            .post(format!("{}/v1/reservations/{id}/confirm", self.server.base))
            .bearer_auth(&self.server_token)
            .header(USER_HEADER, self.users[user].as_str())
            .json(&json!({}));
        self.send(request).await
    }

    async fn grant(&self, user: usize, key: &str, amount: u64) -> Reply {
        let request = self
            .http
            .post(format!("{}/v1/admin/users/{}/grants", self.server.base, self.users[user]))
            .bearer_auth(&self.admin)
            .header("idempotency-key", key)
            .json(&json!({"amount": amount, "reason": "purchase"}));
        self.send(request).await
    }
}

/// Sorts an answer: success, a retryable failure, or a finding.
fn record(log: &mut Log, what: &str, reply: &Reply, success: &[StatusCode], failed: Failed) -> bool {
    if success.contains(&reply.status) {
        log.ok += 1;
        return true;
    }
    match reply.status {
        StatusCode::SERVICE_UNAVAILABLE => log.unavailable += 1,
        StatusCode::INTERNAL_SERVER_ERROR => log.internal += 1,
        other => {
            log.unexpected.push(format!("{what}: {other} {}", reply.body));
            return false;
        }
    }
    log.failed.push(failed);
    false
}

async fn client(world: Arc<World>, log: Arc<Mutex<Log>>, user: usize) {
    for n in 0..LIFECYCLES {
        let key = format!("reserve-{n}");
        let reply = world.reserve(user, &key).await;
        let placed = {
            let mut log = log.lock().await;
            record(
                &mut log,
                "reserve",
                &reply,
                &[StatusCode::CREATED, StatusCode::OK],
                Failed::Reserve { user, key: key.clone() },
            )
        };
        if placed {
            let id = reply.body["reservationId"].as_str().unwrap_or_default().to_owned();
            let reply = world.confirm(user, &id).await;
            let mut log = log.lock().await;
            record(&mut log, "confirm", &reply, &[StatusCode::OK], Failed::Confirm { user, id });
        }
        if n == LIFECYCLES / 2 {
            let reply = world.grant(user, "bonus", BONUS).await;
            let mut log = log.lock().await;
            let failed = Failed::Grant { user, key: "bonus".into(), amount: BONUS };
            record(&mut log, "grant", &reply, &[StatusCode::CREATED, StatusCode::OK], failed);
        }
        // Spread the load over the outage.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sends a failed request again (same key) until the database answers.
async fn replay(world: &World, failed: &Failed, log: &mut Log) -> Result<(), String> {
    for _ in 0..40 {
        let (reply, success) = match failed {
            Failed::Reserve { user, key } => {
                (world.reserve(*user, key).await, vec![StatusCode::CREATED, StatusCode::OK])
            }
            Failed::Confirm { user, id } => (world.confirm(*user, id).await, vec![StatusCode::OK]),
            Failed::Grant { user, key, amount } => {
                (world.grant(*user, key, *amount).await, vec![StatusCode::CREATED, StatusCode::OK])
            }
        };
        if success.contains(&reply.status) {
            if let Failed::Reserve { user, .. } = failed {
                log.found_placed += u64::from(reply.status == StatusCode::OK);
                let id = reply.body["reservationId"].as_str().unwrap_or_default().to_owned();
                log.to_confirm.push((*user, id));
            }
            return Ok(());
        }
        if reply.status != StatusCode::SERVICE_UNAVAILABLE && reply.status != StatusCode::INTERNAL_SERVER_ERROR {
            return Err(format!("replay of {failed:?}: {} {}", reply.status, reply.body));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("replay of {failed:?} never succeeded"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_the_database_mid_load_loses_nothing_and_applies_nothing_twice() {
    let data = std::env::temp_dir().join(format!("credits-fault-{}", uuid::Uuid::new_v4().simple()));
    let port = dynamodb_local::free_port().expect("port");
    let database = dynamodb_local::start_at(Some(&data), port).expect("start DynamoDB Local");
    let server = TestServer::start_on(&database.endpoint).await;
    let users: Vec<UserId> = (0..USERS).map(|i| user(&format!("fault{i}"))).collect();
    let tokens = users.iter().map(|u| server.user_token(u)).collect();
    let (server_token, admin) = (server.server_token(), server.admin_token());
    let world = Arc::new(World { server, http: Client::new(), users, tokens, server_token, admin });
    for u in 0..USERS {
        let reply = world.grant(u, "welcome", GRANT).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }

    let log = Arc::new(Mutex::new(Log::default()));
    let load = tokio::spawn({
        let (world, log) = (world.clone(), log.clone());
        async move { join_all((0..USERS).map(|u| client(world.clone(), log.clone(), u))).await }
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    tokio::task::spawn_blocking(move || database.stop()).await.expect("stop DynamoDB Local");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = tokio::task::spawn_blocking({
        let data = data.clone();
        move || dynamodb_local::start_at(Some(&data), port)
    })
    .await
    .expect("join")
    .expect("restart DynamoDB Local on the same port");
    load.await.expect("load");

    let mut log = Arc::try_unwrap(log).map(Mutex::into_inner).unwrap_or_default();
    assert!(log.unexpected.is_empty(), "answers other than success or 503/500: {:?}", log.unexpected);
    assert!(log.unavailable + log.internal > 0, "the outage hit no request: move the stop earlier");
    eprintln!(
        "under load, across the stop and the restart: {} succeeded, {} answered 503, {} answered 500",
        log.ok, log.unavailable, log.internal
    );

    let failed = std::mem::take(&mut log.failed);
    for f in &failed {
        if let Err(e) = replay(&world, f, &mut log).await {
            panic!("{e}");
        }
    }
    // Holds whose reserve answered 503 and whose replay placed (or found) them.
    for (u, id) in std::mem::take(&mut log.to_confirm) {
        replay(&world, &Failed::Confirm { user: u, id }, &mut log).await.unwrap_or_else(|e| panic!("{e}"));
    }
    eprintln!(
        "replayed {} failed requests; {} reserves had been placed before their 503",
        failed.len(),
        log.found_placed
    );

    // Every lifecycle charged exactly once, every grant applied exactly once.
    let items = scan(&world.server.env.store).await;
    for (u, id) in world.users.iter().enumerate() {
        let reply =
            world.send(world.http.get(format!("{}/v1/balance", world.server.base)).bearer_auth(&world.tokens[u])).await;
        let figure = |k: &str| reply.body[k].as_u64().unwrap_or(u64::MAX);
        let spent = COST * LIFECYCLES as u64;
        assert_eq!(
            (figure("granted"), figure("spent"), figure("reserved"), figure("available")),
            (GRANT + BONUS, spent, 0, GRANT + BONUS - spent),
            "balance of {id}: {}",
            reply.body
        );
        let holds: Vec<_> =
            items.iter().filter(|i| text(i, "entity") == "hold" && text(i, "userId") == id.as_str()).collect();
        assert_eq!(holds.len(), LIFECYCLES, "holds of {id}");
        assert!(holds.iter().all(|h| text(h, "status") == "confirmed"));
        let lines = items
            .iter()
            .filter(|i| text(i, "entity") == "entry" && text(i, "pk") == credits_shared::store::user_pk(id))
            .count();
        assert_eq!(lines, 2 + 2 * LIFECYCLES, "history lines of {id}: two grants, a reserve and a confirm a hold");
    }
    world.server.env.assert_books_balance().await;
    restarted.stop();
    let _ = std::fs::remove_dir_all(&data);
}
