//! The `cleanup` Lambda function: the EventBridge schedule invokes it (every
//! minute by default) to expire due holds within the invocation's time limit.

use credits_shared::config::Config;
use credits_shared::ledger::sweep::{deadline_at, SweepReport, DEFAULT_CONCURRENCY};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    credits_shared::http::init_logging();
    let ledger = Config::from_env().ledger().await;
    let ledger = &ledger;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        // An error here makes the invocation fail, so the schedule's retry
        // policy (and then its dead-letter queue) takes over.
        let report: SweepReport = ledger.sweep(deadline_at(event.context.deadline()), DEFAULT_CONCURRENCY).await?;
        Ok::<_, Error>(report)
    }))
    .await
}
