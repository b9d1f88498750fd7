//! The `main` of every Lambda function, so that each function's own is one
//! line: an HTTP function serves its routes (`run_function`), a stream
//! function reads the table's changes (`run_stream`), and the schedule does
//! what fell due (`run_schedule`).

use std::convert::Infallible;

use aws_lambda_events::event::dynamodb::Event;
use lambda_http::{service_fn, Request};
use lambda_runtime::{Error, LambdaEvent};

use crate::config::Config;
use crate::events::outbox::Outbox;
use crate::http::{handle, Function};
use crate::ledger::sweep::{deadline_at, DEFAULT_CONCURRENCY};
use crate::logging::init_logging;
use crate::stats::Stats;
use crate::store::stream::Change;

/// The functions that DynamoDB Streams invoke with the table's changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamReader {
    /// Keeps the aggregates behind `GET /v1/admin/monitoring`.
    Stats,
    /// Derives the outgoing events, records, publishes and delivers them.
    Events,
}

/// The whole `main` of an HTTP function.
pub async fn run_function(function: Function) -> Result<(), Error> {
    init_logging();
    let app = match Config::from_env().app().await {
        Ok(app) => app,
        Err(unusable) => {
            // Refusing to start is loud; a function that refuses every
            // request because of a bad secret is not.
            tracing::error!(error = %unusable, "configuration refused");
            return Err(unusable.into());
        }
    };
    let app = &app;
    lambda_http::run(service_fn(
        move |req: Request| async move { Ok::<_, Infallible>(handle(app, function, req).await) },
    ))
    .await
}

/// The whole `main` of a stream function. An error fails the batch; Lambda
/// retries it (then splits it, then parks it), and changes already applied
/// are recognised: by their marks (stats), by their events' keys (events).
pub async fn run_stream(reader: StreamReader) -> Result<(), Error> {
    init_logging();
    let ledger = Config::from_env().ledger().await;
    match reader {
        StreamReader::Stats => {
            let stats = &Stats::new(ledger.store().clone());
            let ledger = &ledger;
            lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<Event>| async move {
                let changes = changes_of(event.payload);
                let applied = stats.apply(&changes, ledger.now()).await?;
                tracing::info!(
                    records = changes.len(),
                    counted = applied.counted,
                    duplicates = applied.duplicates,
                    "stats"
                );
                Ok::<_, Error>(())
            }))
            .await
        }
        StreamReader::Events => {
            let outbox = &Outbox::from_env(ledger).await;
            lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<Event>| async move {
                let changes = changes_of(event.payload);
                // Boxed: its future is too deep for the compiler to lay out
                // inside the runtime's.
                let applied = Box::pin(outbox.apply(&changes)).await?;
                tracing::info!(
                    records = changes.len(),
                    recorded = applied.recorded,
                    duplicates = applied.duplicates,
                    published = applied.published,
                    delivered = applied.delivered,
                    failed_attempts = applied.failed_attempts,
                    "events"
                );
                Ok::<_, Error>(())
            }))
            .await
        }
    }
}

/// The whole `main` of the scheduled function (EventBridge, every minute by
/// default): expire due holds, write down lot expiries and plan refills,
/// then retry event publishes and webhook deliveries, within the
/// invocation's time limit. An error fails the invocation, so the
/// schedule's retry policy (and then its dead-letter queue) takes over.
pub async fn run_schedule() -> Result<(), Error> {
    init_logging();
    let ledger = &Config::from_env().ledger().await;
    let outbox = &Outbox::from_env(ledger.clone()).await;
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<serde_json::Value>| async move {
        let deadline = deadline_at(event.context.deadline());
        let holds = ledger.sweep(deadline, DEFAULT_CONCURRENCY).await?;
        let events = outbox.sweep(deadline).await?;
        Ok::<_, Error>(serde_json::json!({"holds": holds, "events": events}))
    }))
    .await
}

fn changes_of(event: Event) -> Vec<Change> {
    event
        .records
        .into_iter()
        .map(|record| Change::of_images(record.event_id, record.change.old_image, record.change.new_image))
        .collect()
}
