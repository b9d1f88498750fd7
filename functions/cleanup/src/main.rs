//! The `cleanup` Lambda function: the EventBridge schedule invokes it (every
//! minute by default) to do whatever fell due, within the invocation's time
//! limit: expire due holds, write down lot expiries and plan refills, then
//! retry event publishes and webhook deliveries.

use credits_shared::config::Config;
use credits_shared::events::outbox::Outbox;
use credits_shared::ledger::sweep::{deadline_at, DEFAULT_CONCURRENCY};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    credits_shared::http::init_logging();
    let ledger = Config::from_env().ledger().await;
    let outbox = Outbox::from_env(ledger.clone()).await;
    let (ledger, outbox) = (&ledger, &outbox);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        // An error here makes the invocation fail, so the schedule's retry
        // policy (and then its dead-letter queue) takes over.
        let deadline = deadline_at(event.context.deadline());
        let holds = ledger.sweep(deadline, DEFAULT_CONCURRENCY).await?;
        let events = outbox.sweep(deadline).await?;
        Ok::<_, Error>(serde_json::json!({"holds": holds, "events": events}))
    }))
    .await
}
