//! Test support: one DynamoDB Local per test process (started here, from
//! the jar `make` installs), a fresh table per test, and the books check
//! every test ends with.

pub mod api;
pub mod events;
pub mod model;
pub mod stripe_api;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use aws_sdk_dynamodb::types::AttributeValue;
use credits_cli::devserver::{self, DevServer};
pub use credits_cli::token::Bearer;
use credits_shared::clock::ManualClock;
use credits_shared::domain::principal::TrustedClients;
use credits_shared::domain::{GrantReason, Timestamp, UserId};
use credits_shared::inbound::Verifiers;
use credits_shared::ledger::{GrantRequest, ReserveRequest};
use credits_shared::prices::Catalog;
use credits_shared::stats::Stats;
use credits_shared::store::local_stream::LocalStream;
use credits_shared::store::stream::Change;
use credits_shared::store::{sdk_config, Store};
use credits_shared::stripe_api::StripeApi;
use credits_shared::{App, Ledger};
use dynamodb_local::DynamoDbLocal;

/// Webhook secrets of the test server: two per provider, as while rotating.
pub const GENERIC_SECRETS: &str =
    "whsec_Y3JlZGl0cy10ZXN0LXNlY3JldC1vbmUtMzItYnl0ZXM=,whsec_Y3JlZGl0cy10ZXN0LXNlY3JldC10d28tMzItYnl0ZXM=";
pub const BFL_SECRETS: &str = "bfl-secret-a,bfl-secret-b";
/// Stripe endpoint secrets of the test server: the old one and the new one.
pub const STRIPE_SECRETS: &str = "whsec_test_stripe_old,whsec_test_stripe_new";

pub use credits_shared::domain::Provider;

/// The test server's trusted app clients: the back end's and an
/// operators' tool (`CREDITS_SERVER_CLIENT_IDS`, `CREDITS_ADMIN_CLIENT_IDS`).
pub const SERVER_CLIENT: &str = "test-server";
pub const ADMIN_CLIENT: &str = "test-ops";
/// The header a server or admin names the user it acts for in.
pub const USER_HEADER: &str = credits_shared::domain::principal::USER_HEADER;

static DYNAMODB: OnceLock<Result<DynamoDbLocal, String>> = OnceLock::new();

/// The endpoint of the DynamoDB Local this process uses: `DYNAMODB_ENDPOINT`
/// if set, else one started on first use.
pub fn endpoint() -> String {
    if let Ok(endpoint) = std::env::var("DYNAMODB_ENDPOINT") {
        return endpoint;
    }
    match DYNAMODB.get_or_init(|| dynamodb_local::start(None)) {
        Ok(local) => local.endpoint.clone(),
        Err(message) => panic!("cannot start DynamoDB Local: {message}"),
    }
}

pub struct TestEnv {
    pub ledger: Ledger,
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub config: aws_config::SdkConfig,
    stream: tokio::sync::Mutex<Option<LocalStream>>,
}

impl TestEnv {
    /// A ledger on a table of its own, with a clock the test moves.
    pub async fn new() -> TestEnv {
        TestEnv::on(&endpoint()).await
    }

    /// The same, on the DynamoDB Local at `endpoint`.
    pub async fn on(endpoint: &str) -> TestEnv {
        TestEnv::with_catalog(endpoint, Catalog::default_catalog()).await
    }

    /// The same, selling `catalog`'s packs.
    pub async fn with_catalog(endpoint: &str, catalog: Catalog) -> TestEnv {
        let config = sdk_config(Some(endpoint)).await;
        let table = format!("t-{}", uuid::Uuid::new_v4().simple());
        let store = Store::new(aws_sdk_dynamodb::Client::new(&config), table);
        let mut attempts = 0;
        // DynamoDB Local may accept connections a moment before it serves.
        while let Err(e) = store.create_table_if_missing().await {
            attempts += 1;
            assert!(attempts < 50, "creating the test table: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let clock = ManualClock::starting_now();
        // Price changes show at once (deployed: within `PRICE_REFRESH`).
        let ledger = Ledger::new(store.clone(), clock.clone(), Arc::new(catalog), 90)
            .with_price_refresh(std::time::Duration::ZERO);
        TestEnv { ledger, store, clock, config, stream: tokio::sync::Mutex::new(None) }
    }

    /// Reads the table's change stream since the last call (DynamoDB Local
    /// keeps one, as DynamoDB does) and applies it to the aggregates, like
    /// the `stats` function. Returns the records, to redeliver them.
    pub async fn aggregate(&self) -> Vec<Change> {
        let mut stream = self.stream.lock().await;
        if stream.is_none() {
            *stream = Some(LocalStream::open(&self.config, self.store.table()).await.expect("open stream"));
        }
        let changes = match stream.as_mut() {
            Some(stream) => stream.poll().await.expect("read stream"),
            None => Vec::new(),
        };
        Stats::new(self.store.clone()).apply(&changes, self.ledger.now()).await.expect("apply stats");
        changes
    }

    pub async fn grant(&self, user: &UserId, amount: u64) {
        let request = GrantRequest::new(amount, GrantReason::Purchase, &uuid::Uuid::new_v4().to_string(), "test");
        self.ledger.grant(user, request).await.expect("grant");
    }

    /// Every balance adds up and its `reserved` is the sum of the user's
    /// pending holds; every settled hold's split adds up to its amount.
    pub async fn assert_books_balance(&self) {
        if let Err(problem) = check_books(&scan(&self.store).await) {
            panic!("{problem}");
        }
    }
}

/// The books of a table, on their own (the same audit as `credits check`):
/// every balance equation, each lot's remaining and held credits against
/// the user's pending holds and history lines, `openHolds`, every hold's
/// split and captures, and the due-work index entries.
pub fn check_books(items: &[HashMap<String, AttributeValue>]) -> Result<(), String> {
    let mut audit = credits_shared::audit::Audit::default();
    for item in items {
        audit.add(item);
    }
    match audit.drifts().as_slice() {
        [] => Ok(()),
        drifts => Err(drifts.iter().map(|d| format!("{}: {}", d.user, d.what)).collect::<Vec<_>>().join("\n")),
    }
}

/// The `credits` binary: `CREDITS_BIN` (what `make test` builds), else built here.
pub fn credits_bin() -> std::path::PathBuf {
    match std::env::var("CREDITS_BIN") {
        Ok(path) => std::path::PathBuf::from(path),
        Err(_) => {
            let build = std::process::Command::new(env!("CARGO"))
                .args(["build", "-q", "--workspace", "--bin", "credits"])
                .status()
                .expect("cargo build");
            assert!(build.success());
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/credits")
        }
    }
}

/// The instant an RFC 3339 date-time names.
pub fn at(rfc3339: &str) -> Timestamp {
    Timestamp(chrono::DateTime::parse_from_rfc3339(rfc3339).expect("date").timestamp_millis())
}

pub fn user(name: &str) -> UserId {
    UserId::parse(&format!("{name}-{}", uuid::Uuid::new_v4().simple())).expect("valid user id")
}

pub fn reserve_request(operation: &str, units: u32) -> ReserveRequest {
    ReserveRequest::new(operation, units)
}

/// Every item of a test table.
pub async fn scan(store: &Store) -> Vec<HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = store
            .client()
            .scan()
            .table_name(store.table())
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

/// A string attribute of an item (empty when absent).
pub fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    credits_shared::store::attr_text(item, name).to_owned()
}

/// A number attribute of an item (0 when absent; a negative one reads as
/// `u64::MAX`, so it fails every check).
pub fn number(item: &HashMap<String, AttributeValue>, name: &str) -> u64 {
    u64::try_from(credits_shared::store::attr_number(item, name)).unwrap_or(u64::MAX)
}

/// The shipped catalog with `packs` (as `prices.json` writes them) instead
/// of its own.
pub fn catalog_with_packs(packs: serde_json::Value) -> Catalog {
    let mut catalog = serde_json::to_value(Catalog::default_catalog()).expect("catalog as JSON");
    catalog["packs"] = packs;
    Catalog::from_json(&catalog.to_string()).expect("a valid catalog")
}

/// How a test server differs from the default one: another catalog, or
/// Stripe in live mode (the default acts on test-mode events, as `make run`),
/// or Stripe's API at a stand-in.
#[derive(Default)]
pub struct Setup {
    pub catalog: Option<Catalog>,
    pub stripe_live: bool,
    /// The base URL of Stripe's API (the tests' stand-in): cards are saved.
    pub stripe_api: Option<String>,
}

/// The dev server on a free port, in this process, over a fresh table.
pub struct TestServer {
    pub base: String,
    pub env: TestEnv,
    pub secret: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_on(&endpoint()).await
    }

    /// The dev server over a fresh table of the DynamoDB Local at `endpoint`.
    pub async fn start_on(endpoint: &str) -> TestServer {
        let env = TestEnv::on(endpoint).await;
        let ledger = env.ledger.clone();
        TestServer::serve(env, ledger, false).await
    }

    pub async fn start_with(setup: Setup) -> TestServer {
        let env = TestEnv::with_catalog(&endpoint(), setup.catalog.unwrap_or_else(Catalog::default_catalog)).await;
        let api = setup
            .stripe_api
            .map(|base| StripeApi::new(&base, stripe_api::STAND_IN_KEY).expect("the stand-in's base is a local URL"));
        let ledger = env.ledger.clone().with_stripe_api(api);
        TestServer::serve(env, ledger, setup.stripe_live).await
    }

    /// A server whose ledger uses the store `make` builds from the
    /// DynamoDB Local endpoint (to point it at a missing table, say).
    pub async fn start_with_store<F, Fut>(make: F) -> TestServer
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Store>,
    {
        let env = TestEnv::new().await;
        let store = make(endpoint()).await;
        let ledger = Ledger::new(store, env.clock.clone(), Arc::new(Catalog::default_catalog()), 90);
        TestServer::serve(env, ledger, false).await
    }

    async fn serve(env: TestEnv, ledger: Ledger, stripe_live: bool) -> TestServer {
        // As the dev server: webhook receivers on this machine may be plain http.
        let ledger = ledger.allowing_local_http_endpoints();
        let secret = "test-secret".to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let verifiers = Arc::new(Verifiers::new(GENERIC_SECRETS, BFL_SECRETS).with_stripe(STRIPE_SECRETS, stripe_live));
        let trusted = TrustedClients::new(SERVER_CLIENT, ADMIN_CLIENT);
        let server =
            DevServer { app: App { ledger, verifiers, trusted }, jwt_secret: secret.clone(), cors: Default::default() };
        tokio::spawn(devserver::serve(listener, server, async {
            let _ = rx.await;
        }));
        TestServer { base, env, secret, shutdown: Some(tx) }
    }

    /// An end user's token: reads only.
    pub fn user_token(&self, user: &UserId) -> String {
        self.mint(Bearer::User(user.as_str()))
    }

    /// The app's back end (a client-credentials token of a listed client);
    /// it names the user in `Credits-User`.
    pub fn server_token(&self) -> String {
        self.mint(Bearer::Server(SERVER_CLIENT))
    }

    /// An operator in the `credits-admin` group.
    pub fn admin_token(&self) -> String {
        self.mint(Bearer::Admin("ops"))
    }

    pub fn mint(&self, bearer: Bearer<'_>) -> String {
        credits_cli::token::mint(&self.secret, bearer, 3600).expect("token")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
