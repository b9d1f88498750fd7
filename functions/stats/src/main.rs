//! The `stats` Lambda function: DynamoDB Streams deliver the table's changes
//! here, and the aggregates behind `GET /v1/admin/monitoring` are kept from
//! them (off the request path; each change counted once).

use aws_lambda_events::event::dynamodb::Event;
use credits_shared::config::Config;
use credits_shared::stats::{Change, Stats};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    credits_shared::http::init_logging();
    let ledger = Config::from_env().ledger().await;
    let stats = Stats::new(ledger.store().clone());
    let (ledger, stats) = (&ledger, &stats);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        let changes: Vec<Change> = event
            .payload
            .records
            .into_iter()
            .map(|record| Change::of_images(record.event_id, record.change.old_image, record.change.new_image))
            .collect();
        // An error fails the batch; Lambda retries it, and changes already
        // counted are recognised by their marks.
        let applied = stats.apply(&changes, ledger.now()).await?;
        tracing::info!(records = changes.len(), counted = applied.counted, duplicates = applied.duplicates, "stats");
        Ok::<_, Error>(())
    }))
    .await
}
