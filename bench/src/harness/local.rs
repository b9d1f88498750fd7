//! DynamoDB Local for a section: started fresh or warmed up, with the SDK
//! config the bench's clients use, and the table's stream turned off or on.

use std::time::Duration;

use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType};
use credits_shared::domain::Actor;
use credits_shared::store::{sdk_config, Store};

use super::ledger::{env, grant, request, user};

/// Untimed lifecycles each section's DynamoDB Local runs first.
pub const WARM_UP_LIFECYCLES: usize = 300;

/// Turns the table's stream off, or back on with the view the table is
/// created with (`Store::create_table_if_missing`).
pub async fn set_stream(store: &Store, enabled: bool) -> Result<(), String> {
    let mut spec = StreamSpecification::builder().stream_enabled(enabled);
    if enabled {
        spec = spec.stream_view_type(StreamViewType::NewAndOldImages);
    }
    let spec = spec.build().map_err(|e| e.to_string())?;
    let update = store.client().update_table().table_name(store.table()).stream_specification(spec);
    update
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("turning the stream {}: {e:?}", if enabled { "on" } else { "off" }))
}

/// DynamoDB Local on a loaded 2-core machine can take seconds under a
/// bulk load: give the bench's requests more time than the service's.
async fn bench_sdk(endpoint: &str) -> aws_config::SdkConfig {
    sdk_config(Some(endpoint))
        .await
        .to_builder()
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        )
        .build()
}

/// A DynamoDB Local of its own for one section, and the SDK config for it.
pub async fn fresh_local() -> Result<(dynamodb_local::DynamoDbLocal, aws_config::SdkConfig), String> {
    let local = dynamodb_local::start(None)?;
    let sdk = bench_sdk(&local.endpoint).await;
    Ok((local, sdk))
}

/// The same, warmed up: a new JVM runs its first thousand requests several
/// times slower. The warm-up's table has its stream off, so it leaves no
/// stream records behind to slow the section.
pub async fn warm_local() -> Result<(dynamodb_local::DynamoDbLocal, aws_config::SdkConfig), String> {
    let (local, sdk) = fresh_local().await?;
    let e = env(&sdk).await?;
    set_stream(&e.store, false).await?;
    let u = user("warm-up");
    grant(&e.ledger, &u, 1_000_000_000).await?;
    for _ in 0..WARM_UP_LIFECYCLES {
        let hold = e.ledger.reserve(&u, request("design_generate_image", 2)).await.map_err(|e| e.to_string())?;
        let id = hold.into_inner().reservation_id;
        e.ledger.capture(Some(&u), id, 1, "warm-up", Actor::Server).await.map_err(|e| e.to_string())?;
        e.ledger.confirm(Some(&u), id, None, Actor::Server).await.map_err(|e| e.to_string())?;
        e.ledger.balance(&u).await.map_err(|e| e.to_string())?;
    }
    Ok((local, sdk))
}
