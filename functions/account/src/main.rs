//! The `account` Lambda function: see `credits_shared::http::ROUTES` for its routes.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credits_shared::entry::run_function(credits_shared::http::Function::Account).await
}
