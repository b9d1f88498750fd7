//! Reads a table's change stream from DynamoDB Local and hands the records
//! on as the stats aggregator and the events function take them: locally,
//! what the DynamoDB Streams event source mapping does in AWS. For the dev
//! server and the bench (feature `local-stream`); no function builds it.

use std::collections::HashMap;

use super::stream::Change;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;

#[derive(Debug)]
pub struct LocalStream {
    client: aws_sdk_dynamodbstreams::Client,
    arn: String,
    /// Next iterator per shard; `None` once a closed shard is read to its end.
    iterators: HashMap<String, Option<String>>,
}

impl LocalStream {
    /// Opens the stream of `table` from its oldest record.
    pub async fn open(config: &aws_config::SdkConfig, table: &str) -> Result<LocalStream, String> {
        let dynamodb = aws_sdk_dynamodb::Client::new(config);
        let described = dynamodb.describe_table().table_name(table).send().await.map_err(|e| format!("{e:?}"))?;
        let arn =
            described.table.and_then(|t| t.latest_stream_arn).ok_or_else(|| format!("table {table} has no stream"))?;
        Ok(LocalStream { client: aws_sdk_dynamodbstreams::Client::new(config), arn, iterators: HashMap::new() })
    }

    /// Every record written since the last poll.
    pub async fn poll(&mut self) -> Result<Vec<Change>, String> {
        let described =
            self.client.describe_stream().stream_arn(&self.arn).send().await.map_err(|e| format!("{e:?}"))?;
        let shards = described.stream_description.map(|d| d.shards.unwrap_or_default()).unwrap_or_default();
        for shard in shards {
            let Some(id) = shard.shard_id else { continue };
            if self.iterators.contains_key(&id) {
                continue;
            }
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.arn)
                .shard_id(&id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(|e| format!("{e:?}"))?
                .shard_iterator;
            self.iterators.insert(id, iterator);
        }
        let mut changes = Vec::new();
        let mut lost = Vec::new();
        for (shard, iterator) in self.iterators.iter_mut() {
            // Read each shard up to its current end.
            while let Some(current) = iterator.clone() {
                let out = match self.client.get_records().shard_iterator(current).send().await {
                    Ok(out) => out,
                    Err(error) => {
                        // Keep what the other shards gave; reopen this one from
                        // its start next time (records read twice count once).
                        tracing::warn!(shard = %shard, error = ?error, "reading a stream shard failed");
                        lost.push(shard.clone());
                        break;
                    }
                };
                let records = out.records.unwrap_or_default();
                let empty = records.is_empty();
                for record in records {
                    let Some(event_id) = record.event_id else { continue };
                    let data = record.dynamodb;
                    changes.push(Change {
                        event_id,
                        old: data.as_ref().and_then(|d| d.old_image.clone()).map(serde_dynamo::Item::from),
                        new: data.as_ref().and_then(|d| d.new_image.clone()).map(serde_dynamo::Item::from),
                    });
                }
                *iterator = out.next_shard_iterator;
                if empty {
                    break;
                }
            }
        }
        for shard in lost {
            self.iterators.remove(&shard);
        }
        Ok(changes)
    }
}
