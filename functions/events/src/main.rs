//! The `events` Lambda function: DynamoDB Streams deliver the table's changes
//! here, and the outgoing events are derived, recorded once, published on the
//! app's EventBridge bus and delivered to the registered webhook endpoints
//! (first attempt; the cleanup schedule makes the retries): see
//! `credits_shared::entry::run_stream`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    credits_shared::entry::run_stream(credits_shared::entry::StreamReader::Events).await
}
