//! `credits`: the dev server and operator commands.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use clap::{Parser, Subcommand};
use credits_cli::cors::{self, Cors};
use credits_cli::devserver::{self, DevServer};
use credits_cli::operate;
use credits_cli::token;
use credits_shared::clock::SystemClock;
use credits_shared::config::Config;
use credits_shared::domain::{Attribution, Credits, MAX_AMOUNT};
use credits_shared::events::outbox::Outbox;
use credits_shared::inbound::Verifiers;
use credits_shared::ledger::sweep;
use credits_shared::prices::set_price;
use credits_shared::prices::Catalog;
use credits_shared::stats::Stats;
use credits_shared::store::local_stream::LocalStream;
use credits_shared::store::stream::Change;
use credits_shared::store::{sdk_config, Store};
use credits_shared::{App, Ledger};

#[derive(Parser)]
#[command(name = "credits", version, about = "Credits ledger: local dev server and operator commands")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API locally with DynamoDB Local (what `make run` runs).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "CREDITS_LISTEN", default_value = "127.0.0.1:3000")]
        listen: String,
        /// Where DynamoDB Local keeps its data (ignored with DYNAMODB_ENDPOINT).
        #[arg(long, env = "CREDITS_DATA_DIR", default_value = ".data")]
        data_dir: PathBuf,
        /// HS256 secret of local tokens.
        #[arg(long, env = "CREDITS_DEV_JWT_SECRET", default_value = token::DEFAULT_DEV_SECRET, hide_env_values = true, hide_default_value = true)]
        jwt_secret: String,
        /// Browser origins answered with CORS (scheme://host[:port], comma-separated, or *), like the template's AllowedOrigins; empty: no CORS.
        #[arg(long, env = cors::ORIGINS_VARIABLE, default_value = "")]
        allowed_origins: String,
    },
    /// Run the expiry sweep once against CREDITS_TABLE (DYNAMODB_ENDPOINT, or AWS) and print its report.
    Cleanup {
        /// Stop starting expiries after this many seconds.
        #[arg(long, default_value_t = 60)]
        budget: u64,
    },
    /// Reconcile every balance with its holds and ledger lines; list charged unit costs. Exits 1 on any drift.
    Check {
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Grant credits to a user (idempotent by --key), against CREDITS_TABLE.
    Grant {
        #[arg(long)]
        user: String,
        #[arg(long)]
        amount: u64,
        /// ad_reward, purchase, promo, plan_refill, adjustment, signup or dispute_won.
        #[arg(long, default_value = "adjustment")]
        reason: String,
        /// The idempotency key: the same key grants once.
        #[arg(long)]
        key: String,
        #[arg(long)]
        description: Option<String>,
        /// The lot's priority, 0 (spent first) to 100; default by reason.
        #[arg(long)]
        priority: Option<u8>,
        /// When the credits expire (RFC 3339); default: never.
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// Take credits back from a user's available credits, in burn order
    /// (idempotent by --key); without --partial, all or nothing.
    Debit {
        #[arg(long)]
        user: String,
        #[arg(long)]
        amount: u64,
        /// chargeback, refund or adjustment.
        #[arg(long, default_value = "adjustment")]
        reason: String,
        /// The idempotency key: the same key takes once.
        #[arg(long)]
        key: String,
        #[arg(long)]
        description: Option<String>,
        /// Take what is available when that is less than --amount.
        #[arg(long)]
        partial: bool,
    },
    /// A user's recent outgoing events (newest first), with where each
    /// stands on EventBridge.
    Events {
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = credits_cli::events::DEFAULT_LIMIT)]
        limit: u32,
        /// Print each event as delivered (JSON, one per line).
        #[arg(long)]
        json: bool,
    },
    /// Set or end a user's plan (an allowance each day, week or month).
    Plan {
        #[command(subcommand)]
        action: PlanAction,
    },
    /// Show the prices in force, or change one for new holds (recorded; holds already placed keep theirs).
    Prices {
        #[command(subcommand)]
        action: Option<PricesAction>,
    },
    /// Print a local token (HS256, the dev server's secret): a user's, an
    /// admin's (--user U --admin) or the app server's (--server).
    Token {
        /// The user id (`sub` claim).
        #[arg(long, required_unless_present = "server", conflicts_with = "server")]
        user: Option<String>,
        /// Add the `credits-admin` group.
        #[arg(long, requires = "user")]
        admin: bool,
        /// A client-credentials token of the app's back end (scope
        /// credits/server, client_id from --client).
        #[arg(long)]
        server: bool,
        /// The server token's client id (listed in CREDITS_SERVER_CLIENT_IDS).
        #[arg(long, default_value = token::DEV_SERVER_CLIENT, requires = "server")]
        client: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: i64,
        #[arg(long, env = "CREDITS_DEV_JWT_SECRET", default_value = token::DEFAULT_DEV_SECRET, hide_env_values = true, hide_default_value = true)]
        jwt_secret: String,
    },
}

#[derive(Subcommand)]
enum PlanAction {
    /// Set the plan; a new or changed plan grants the current period's allowance at once.
    Set {
        #[arg(long)]
        user: String,
        /// The plan's name.
        #[arg(long)]
        plan: String,
        #[arg(long)]
        allowance: u64,
        /// day, week or month.
        #[arg(long)]
        period: String,
        /// Unused credits carried into the next period, at most.
        #[arg(long, default_value_t = 0)]
        rollover: u64,
        /// Start of the first period (RFC 3339); default: now.
        #[arg(long)]
        anchor: Option<String>,
    },
    /// End the plan at the end of its current period.
    End {
        #[arg(long)]
        user: String,
    },
}

#[derive(Subcommand)]
enum PricesAction {
    /// Print the prices in force (the default).
    Show,
    /// Set one operation's unit cost for holds placed from now on.
    Set {
        #[arg(long)]
        operation: String,
        #[arg(long)]
        unit_cost: u64,
        /// Why, recorded with the change.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::Serve { listen, data_dir, jwt_secret, allowed_origins } => {
            serve(listen, data_dir, jwt_secret, allowed_origins).await
        }
        Command::Cleanup { budget } => cleanup(budget).await,
        Command::Check { quiet } => return check(quiet).await,
        Command::Prices { action } => prices(action.unwrap_or(PricesAction::Show)).await,
        Command::Grant { user, amount, reason, key, description, priority, expires_at } => {
            operate::grant(operate::GrantArgs { user, amount, reason, key, description, priority, expires_at }).await
        }
        Command::Debit { user, amount, reason, key, description, partial } => {
            operate::debit(user, amount, reason, key, description, partial).await
        }
        Command::Plan { action: PlanAction::Set { user, plan, allowance, period, rollover, anchor } } => {
            operate::set_plan(user, plan, allowance, period, rollover, anchor).await
        }
        Command::Plan { action: PlanAction::End { user } } => operate::end_plan(user).await,
        Command::Events { user, limit, json } => credits_cli::events::list(user, limit, json).await,
        Command::Token { user, admin, server, client, ttl, jwt_secret } => {
            let bearer = match (&user, admin, server) {
                (_, _, true) => token::Bearer::Server(&client),
                (Some(user), true, _) => token::Bearer::Admin(user),
                (Some(user), false, _) => token::Bearer::User(user),
                (None, _, false) => unreachable!("clap requires --user or --server"),
            };
            token::mint(&jwt_secret, bearer, ttl).map(|t| println!("{t}"))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("credits: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// How long the dev server's job may spend on due events and deliveries.
const OUTBOX_BUDGET: Duration = Duration::from_secs(25);

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

async fn check(quiet: bool) -> std::process::ExitCode {
    let ledger = Config::from_env().ledger().await;
    let prices = match ledger.prices().await {
        Ok(prices) => prices,
        Err(error) => {
            eprintln!("credits check: reading prices: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    match credits_cli::check::run(ledger.store(), &prices, !quiet).await {
        Ok(report) => {
            print!("{}", report.render());
            std::process::ExitCode::from(report.exit_code())
        }
        Err(message) => {
            eprintln!("credits check: {message}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn prices(action: PricesAction) -> Result<(), String> {
    let ledger = Config::from_env().ledger().await;
    let current = ledger.prices().await.map_err(|e| e.to_string())?;
    match action {
        PricesAction::Show => {
            for price in current.operations() {
                println!("{:<28} {:>6}", price.operation, price.unit_cost);
            }
        }
        PricesAction::Set { operation, unit_cost, reason } => {
            if operation.is_empty() || operation.len() > 128 || unit_cost > MAX_AMOUNT {
                return Err(format!("--operation must be 1 to 128 characters and --unit-cost at most {MAX_AMOUNT}"));
            }
            let who = Attribution { actor: operate::cli_actor(), reason };
            let previous = set_price(ledger.store(), &current, &operation, Credits(unit_cost), &who, ledger.now())
                .await
                .map_err(|e| e.to_string())?;
            match previous {
                Some(old) => {
                    println!("{operation}: {old} -> {unit_cost} for new holds (holds already placed keep {old})")
                }
                None => println!("{operation}: new operation at {unit_cost}"),
            }
        }
    }
    Ok(())
}

async fn cleanup(budget: u64) -> Result<(), String> {
    let ledger = Config::from_env().ledger().await;
    let deadline = sweep::deadline_within(Duration::from_secs(budget));
    let report = ledger.sweep(deadline, sweep::DEFAULT_CONCURRENCY).await.map_err(|e| e.to_string())?;
    let events = Outbox::from_env(ledger)
        .await
        .sweep(sweep::deadline_within(Duration::from_secs(budget).max(OUTBOX_BUDGET)))
        .await
        .map_err(|e| e.to_string())?;
    let both = serde_json::json!({"holds": report, "events": events});
    println!("{}", serde_json::to_string_pretty(&both).map_err(|e| e.to_string())?);
    Ok(())
}

async fn serve(listen: String, data_dir: PathBuf, jwt_secret: String, allowed_origins: String) -> Result<(), String> {
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
        .allowing_local_http_endpoints();
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
