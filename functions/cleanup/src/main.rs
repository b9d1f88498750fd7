//! The `cleanup` Lambda function: the EventBridge schedule invokes it (every
//! minute by default) to do whatever fell due: see `credits_shared::entry::run_schedule`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    credits_shared::entry::run_schedule().await
}
