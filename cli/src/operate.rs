//! Operator commands that move credits (`credits grant`, `debit`, `plan`):
//! the same ledger calls as the admin routes, recorded with the operator's
//! login as the actor.

use credits_shared::config::Config;
use credits_shared::domain::{Credits, DebitReason, GrantReason, Period, UserId, MAX_AMOUNT};
use credits_shared::ledger::{DebitRequest, GrantRequest, PlanRequest};
use credits_shared::validate;

/// The actor of changes made from this command line: the operator's login.
pub fn cli_actor() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "operator".into()))
}

pub(crate) fn user_arg(user: &str) -> Result<UserId, String> {
    // The answer is what this command prints: no metric lines around it.
    credits_shared::metrics::discard();
    UserId::parse(user).ok_or_else(|| "--user must be 1 to 256 characters".to_owned())
}

fn amount_arg(amount: u64) -> Result<Credits, String> {
    match (1..=MAX_AMOUNT).contains(&amount) {
        true => Ok(Credits(amount)),
        false => Err(format!("--amount must be 1 to {MAX_AMOUNT}")),
    }
}

fn print<T: serde::Serialize>(value: &T, replayed: bool, what: &str) -> Result<(), String> {
    println!("{}", serde_json::to_string_pretty(value).map_err(|e| e.to_string())?);
    if replayed {
        eprintln!("(a replay: this key was used before; nothing {what} now)");
    }
    Ok(())
}

pub struct GrantArgs {
    pub user: String,
    pub amount: u64,
    pub reason: String,
    pub key: String,
    pub description: Option<String>,
    pub priority: Option<u8>,
    pub expires_at: Option<String>,
}

pub async fn grant(args: GrantArgs) -> Result<(), String> {
    let user = user_arg(&args.user)?;
    let reason: GrantReason = serde_json::from_value(serde_json::Value::String(args.reason))
        .map_err(|_| "--reason must be ad_reward, purchase, promo, plan_refill, adjustment, signup or dispute_won")?;
    let amount = amount_arg(args.amount)?;
    if args.priority.is_some_and(|p| p > credits_shared::domain::MAX_PRIORITY) {
        return Err("--priority must be 0 to 100".into());
    }
    let ledger = Config::from_env().ledger().await;
    let expires_at = args
        .expires_at
        .map(|raw| validate::future_time("expiresAt", &raw, ledger.now()))
        .transpose()
        .map_err(|_| "--expires-at must be an RFC 3339 date-time in the future")?;
    let request = GrantRequest {
        description: args.description,
        priority: args.priority,
        expires_at,
        ..GrantRequest::new(amount.get(), reason, &args.key, &cli_actor())
    };
    let outcome = ledger.grant(&user, request).await.map_err(|e| e.to_string())?;
    print(&outcome.clone().into_inner(), outcome.is_replay(), "credited")
}

pub async fn debit(
    user: String,
    amount: u64,
    reason: String,
    key: String,
    description: Option<String>,
    partial: bool,
) -> Result<(), String> {
    let user = user_arg(&user)?;
    let amount = amount_arg(amount)?;
    let reason: DebitReason = serde_json::from_value(serde_json::Value::String(reason))
        .map_err(|_| "--reason must be chargeback, refund or adjustment")?;
    let ledger = Config::from_env().ledger().await;
    let request = DebitRequest { amount, reason, description, partial, idempotency_key: key, actor: cli_actor() };
    let outcome = ledger.debit(&user, request).await.map_err(|e| e.to_string())?;
    print(&outcome.clone().into_inner(), outcome.is_replay(), "taken")
}

pub async fn set_plan(
    user: String,
    plan: String,
    allowance: u64,
    period: String,
    rollover: u64,
    anchor: Option<String>,
) -> Result<(), String> {
    let user = user_arg(&user)?;
    let allowance = amount_arg(allowance).map_err(|_| format!("--allowance must be 1 to {MAX_AMOUNT}"))?;
    let period: Period =
        serde_json::from_value(serde_json::Value::String(period)).map_err(|_| "--period must be day, week or month")?;
    if plan.is_empty() || plan.chars().count() > 64 || rollover > MAX_AMOUNT {
        return Err(format!("--plan must be 1 to 64 characters and --rollover at most {MAX_AMOUNT}"));
    }
    let anchor = anchor
        .map(|raw| validate::time("anchor", &raw))
        .transpose()
        .map_err(|_| "--anchor must be an RFC 3339 date-time")?;
    let ledger = Config::from_env().ledger().await;
    let request = PlanRequest { name: plan, allowance, period, rollover: Credits(rollover), anchor };
    let balance = ledger.set_plan(&user, request).await.map_err(|e| e.to_string())?;
    print(&balance, false, "")
}

pub async fn end_plan(user: String) -> Result<(), String> {
    let user = user_arg(&user)?;
    let ledger = Config::from_env().ledger().await;
    let balance = ledger.end_plan(&user).await.map_err(|e| e.to_string())?;
    print(&balance, false, "")
}
