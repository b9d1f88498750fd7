//! `credits`: the dev server and operator commands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use credits_cli::cors;
use credits_cli::operate;
use credits_cli::token;
use credits_shared::config::Config;
use credits_shared::domain::{Attribution, Credits, MAX_AMOUNT};
use credits_shared::events::outbox::Outbox;
use credits_shared::ledger::sweep;
use credits_shared::prices::set_price;

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
            credits_cli::serve::serve(listen, data_dir, jwt_secret, allowed_origins).await
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
        .sweep(sweep::deadline_within(Duration::from_secs(budget).max(credits_cli::serve::OUTBOX_BUDGET)))
        .await
        .map_err(|e| e.to_string())?;
    let both = serde_json::json!({"holds": report, "events": events});
    println!("{}", serde_json::to_string_pretty(&both).map_err(|e| e.to_string())?);
    Ok(())
}
