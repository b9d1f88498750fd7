//! `credits serve`, the dev server behind `make run`: DynamoDB Local, the
//! HTTP API on the very same handlers, and the stand-ins for what AWS runs
//! beside the functions (the schedule's sweep, the stream's two readers).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::cors::Cors;
use crate::devserver::{self, DevServer};
use crate::token;
use credits_shared::clock::SystemClock;
use credits_shared::config::Config;
use credits_shared::events::outbox::Outbox;
use credits_shared::inbound::Verifiers;
use credits_shared::ledger::sweep;
use credits_shared::prices::Catalog;
use credits_shared::stats::Stats;
use credits_shared::store::local_stream::LocalStream;
use credits_shared::store::stream::Change;
use credits_shared::store::{sdk_config, Store};
use credits_shared::stripe_api::StripeApi;
use credits_shared::{App, Ledger};

pub async fn serve(
    listen: String,
    data_dir: PathBuf,
    jwt_secret: String,
    allowed_origins: String,
) -> Result<(), String> {
    credits_shared::logging::init_logging();
    if jwt_secret.trim().is_empty() {
        return Err("CREDITS_DEV_JWT_SECRET is empty: unset it for the default, or give a secret".into());
    }
    // The default secret is public: anyone who reaches the server could
    // mint an admin token with it.
    let loopback =
        listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback()) || listen.starts_with("localhost:");
    if jwt_secret == token::DEFAULT_DEV_SECRET && !loopback {
        return Err(format!(
            "listening on {listen} with the default CREDITS_DEV_JWT_SECRET: set a secret of your own, or listen on 127.0.0.1"
        ));
    }
    // So are the webhook secrets `make run` shares with `make demo`: with
    // them anyone who reaches the server could sign a purchase or a settlement.
    for (variable, public) in token::LOCAL_WEBHOOK_SECRETS {
        let used = std::env::var(variable).is_ok_and(|v| v.split(',').any(|s| s.trim() == public));
        if used && !loopback {
            return Err(format!(
                "listening on {listen} with make run's local {variable}: set a secret of your own, or listen on 127.0.0.1"
            ));
        }
    }
    // Checked before DynamoDB Local starts: a bad secret stops here, named.
    let verifiers = Arc::new(Verifiers::from_env()?);
    let stripe_api = StripeApi::from_env()?;
    let cors = Cors::parse(&allowed_origins)?;
    let mut config = Config::from_env();
    if std::env::var_os("CREDITS_SERVER_CLIENT_IDS").is_none() {
        config.trusted = config.trusted.with_server_clients(token::DEV_SERVER_CLIENT);
    }
    let (endpoint, local) = match &config.endpoint {
        Some(endpoint) => (endpoint.clone(), None),
        None => {
            let local = dynamodb_local::start(Some(&data_dir))?;
            eprintln!("DynamoDB Local on {} (data in {})", local.endpoint, data_dir.display());
            (local.endpoint.clone(), Some(local))
        }
    };
    let sdk = sdk_config(Some(&endpoint)).await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&sdk), config.table.clone());
    store.create_table_if_missing().await.map_err(|e| format!("creating table {}: {e}", config.table))?;
    let ledger = Ledger::new(store, Arc::new(SystemClock), Arc::new(Catalog::default_catalog()), config.retention_days)
        .with_max_open_holds(config.max_open_holds)
        .allowing_local_http_endpoints()
        .with_stripe_api(stripe_api);
    // Webhooks are delivered from here; EventBridge gets the events when
    // CREDITS_EVENT_BUS names a bus (EVENTBRIDGE_ENDPOINT: a local one),
    // else they are logged.
    let outbox = Outbox::from_env(ledger.clone()).await;

    spawn_sweeps(ledger.clone(), outbox.clone());
    let stats = Stats::new(ledger.store().clone());
    let clock = ledger.clone();
    spawn_stream_reader(&sdk, &config.table, "stats", move |changes| {
        let (stats, clock) = (stats.clone(), clock.clone());
        async move { stats.apply(&changes, clock.now()).await.map(|_| ()) }
    })
    .await?;
    spawn_stream_reader(&sdk, &config.table, "events", move |changes| {
        let outbox = outbox.clone();
        async move { outbox.apply(&changes).await.map(|_| ()) }
    })
    .await?;

    // Installed before anything is printed, so that a Ctrl-C (or SIGTERM)
    // right after start-up still stops DynamoDB Local with the server.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("listening on {listen}: {e}"))?;
    let user_token = token::mint(&jwt_secret, token::Bearer::User("demo-user"), 86_400)?;
    let server_token = token::mint(&jwt_secret, token::Bearer::Server(token::DEV_SERVER_CLIENT), 86_400)?;
    let admin_token = token::mint(&jwt_secret, token::Bearer::Admin("demo-admin"), 86_400)?;
    println!("credits dev server on http://{listen} (table {})", config.table);
    println!("Demo tokens (paste into another terminal):");
    println!("export API=http://{listen}");
    println!("export USER_TOKEN={user_token}");
    println!("export SERVER_TOKEN={server_token}");
    println!("export ADMIN_TOKEN={admin_token}");
    if !cors.origins().is_empty() {
        println!("CORS for browsers on: {}", cors.origins().join(", "));
    }
    println!("Ctrl-C stops the server and DynamoDB Local.");

    let server = DevServer { app: App { ledger, verifiers, trusted: config.trusted.clone() }, jwt_secret, cors };
    let shutdown = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    let served = devserver::serve(listener, server, shutdown).await;
    if let Some(local) = local {
        local.stop();
    }
    served.map_err(|e| e.to_string())
}

/// How long the dev server's job may spend on due events and deliveries.
pub const OUTBOX_BUDGET: Duration = Duration::from_secs(25);

/// The sweep's time each run: its interval, at least 5 s (the margin it
/// keeps to answer in would leave a 1 s interval no time to expire anything)
/// and at most 20 s. A run that outlasts the interval delays the next tick.
fn sweep_budget(every_seconds: u64) -> Duration {
    Duration::from_secs(every_seconds.clamp(5, 20))
}

/// The dev server's stand-in for the EventBridge schedule: due holds and
/// balances, then due event publishes and webhook retries.
fn spawn_sweeps(ledger: Ledger, outbox: Outbox) {
    let every = std::env::var("CREDITS_CLEANUP_INTERVAL_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(60);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(every));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let deadline = sweep::deadline_within(sweep_budget(every));
            if let Err(error) = ledger.sweep(deadline, sweep::DEFAULT_CONCURRENCY).await {
                tracing::warn!(error = %error, "sweep failed; retrying at the next interval");
            }
            // Its own budget: an attempt may take its whole 10 s time limit.
            if let Err(error) = outbox.sweep(sweep::deadline_within(OUTBOX_BUDGET)).await {
                tracing::warn!(error = %error, "event retries failed; retrying at the next interval");
            }
        }
    });
}

/// The dev server's stand-in for a DynamoDB Streams → function mapping:
/// reads DynamoDB Local's stream every second and hands what it read to
/// `apply` until it succeeds (applying twice changes nothing twice), like
/// Lambda retrying a failed batch.
async fn spawn_stream_reader<F, Fut>(
    sdk: &aws_config::SdkConfig,
    table: &str,
    name: &'static str,
    apply: F,
) -> Result<(), String>
where
    F: Fn(Vec<Change>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = credits_shared::Result<()>> + Send,
{
    let mut stream = LocalStream::open(sdk, table).await?;
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        let mut unapplied = Vec::new();
        loop {
            ticks.tick().await;
            match stream.poll().await {
                Ok(changes) => unapplied.extend(changes),
                Err(error) => tracing::warn!(reader = name, error = %error, "reading the stream failed; retrying"),
            }
            if unapplied.is_empty() {
                continue;
            }
            match apply(unapplied.clone()).await {
                Ok(()) => unapplied.clear(),
                Err(error) => tracing::warn!(reader = name, error = %error, "applying stream records failed; retrying"),
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sweep_interval_leaves_the_sweep_time_to_work() {
        for every in [1, 2, 60, 3600] {
            let budget = sweep_budget(every);
            assert!(budget > sweep::MARGIN, "interval {every}: a budget of {budget:?} leaves no time after the margin");
            assert!(budget <= Duration::from_secs(20));
        }
    }
}
