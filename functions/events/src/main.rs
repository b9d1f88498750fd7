//! The `events` Lambda function: DynamoDB Streams deliver the table's changes
//! here, and the outgoing events are derived from them, recorded once,
//! published on the app's EventBridge bus and delivered to the registered
//! webhook endpoints (first attempt; the cleanup schedule makes the retries).

use aws_lambda_events::event::dynamodb::Event;
use credits_shared::config::Config;
use credits_shared::events::outbox::Outbox;
use credits_shared::stats::Change;
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    credits_shared::http::init_logging();
    let ledger = Config::from_env().ledger().await;
    let outbox = Outbox::from_env(ledger).await;
    let outbox = &outbox;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        let changes: Vec<Change> = event
            .payload
            .records
            .into_iter()
            .map(|record| Change::of_images(record.event_id, record.change.old_image, record.change.new_image))
            .collect();
        // An error fails the batch; Lambda retries it (then splits it, then
        // parks it), and events already recorded are recognised by their
        // keys: none is published or delivered twice. Boxed: its future
        // is too deep for the compiler to lay out inside the runtime's.
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
