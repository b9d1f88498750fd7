//! A reference Lambda for the bench's cold-start figures: it does what every
//! function here must do before its first request (load the AWS
//! configuration, build the DynamoDB client) and nothing else, so the
//! functions' figures can be read against it.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // The same HTTP client the functions build (credits_shared::store::https_client):
    // the workspace turns the SDK's default one off.
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let http = aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http).load().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let client = &client;
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<Value>| async move {
        // The client is only held, never called: the figure is the floor of
        // a Rust Lambda with this SDK, not of a DynamoDB request.
        let _ = client;
        Ok::<_, Error>(json!({"statusCode": 200}))
    }))
    .await
}
