//! A reference Lambda for the bench's cold-start figures: it does what every
//! function here must do before its first request (load the AWS
//! configuration, build the DynamoDB client) and nothing else, so the
//! functions' figures can be read against it.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let config = aws_config::load_from_env().await;
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
