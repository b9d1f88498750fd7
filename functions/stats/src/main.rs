//! The `stats` Lambda function: DynamoDB Streams deliver the table's changes
//! here, and the aggregates behind `GET /v1/admin/monitoring` are kept from
//! them: see `credits_shared::entry::run_stream`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    credits_shared::entry::run_stream(credits_shared::entry::StreamReader::Stats).await
}
