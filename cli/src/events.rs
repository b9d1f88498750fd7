//! `credits events --user <id>`: a user's recent outgoing events, newest
//! first, with where each stands on EventBridge, for an operator answering
//! "did the app hear about this?".

use credits_shared::config::Config;
use credits_shared::domain::Timestamp;
use credits_shared::events::outbox::Outbox;

pub const DEFAULT_LIMIT: u32 = 20;

pub async fn list(user: String, limit: u32, json: bool) -> Result<(), String> {
    let user = crate::operate::user_arg(&user)?;
    if !(1..=1000).contains(&limit) {
        return Err("--limit must be 1 to 1000".into());
    }
    let outbox = Outbox::from_env(Config::from_env().ledger().await).await;
    let events = outbox.recent(&user, limit).await.map_err(|e| e.to_string())?;
    if events.is_empty() {
        eprintln!("no events for {user} (events are kept 30 days)");
    }
    for event in events {
        if json {
            println!("{}", event.payload);
        } else {
            println!(
                "{}  {:<18}  {}  eventbridge: {:?}",
                Timestamp(event.occurred_at).to_rfc3339(),
                event.event_type.as_str(),
                event.event_id,
                event.bus
            );
        }
    }
    Ok(())
}
