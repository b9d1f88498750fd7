//! Webhook endpoints an admin registers, each with its own signing secret
//! (shown once, at creation) and the event types it wants; and the
//! delivery log per endpoint.

use serde::Serialize;
use uuid::Uuid;

use super::Kind;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::store::{from_item, key, to_item, Item};

pub use crate::store::{deliveries_pk, endpoint_sk, ENDPOINTS_PK};
use crate::store::{DeliveryLogItem, DeliveryStatus, EndpointItem, EndpointStatus};

/// Endpoints at most: every event is recorded once per subscribed endpoint.
pub const MAX_ENDPOINTS: usize = 20;
/// An endpoint that failed every attempt for this long is disabled.
pub const DISABLE_AFTER_MS: i64 = 5 * 86_400_000;

impl From<&EndpointItem> for Endpoint {
    fn from(item: &EndpointItem) -> Endpoint {
        Endpoint {
            id: item.endpoint_id,
            url: item.url.clone(),
            events: item.events.clone(),
            description: item.description.clone(),
            status: item.status,
            created_at: Timestamp(item.created_at),
            failing_since: item.failing_since.map(Timestamp),
            last_success_at: item.last_success_at.map(Timestamp),
            disabled_at: item.disabled_at.map(Timestamp),
            disabled_reason: item.disabled_reason.clone(),
            secret: None,
        }
    }
}

/// An endpoint as the API shows it; `secret` only in the answer that made it.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<Kind>,
    pub description: Option<String>,
    pub status: EndpointStatus,
    pub created_at: Timestamp,
    pub failing_since: Option<Timestamp>,
    pub last_success_at: Option<Timestamp>,
    pub disabled_at: Option<Timestamp>,
    pub disabled_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("id", &self.id).field("url", &self.url).finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<Kind>,
    pub description: Option<String>,
    pub actor: String,
}

/// A delivery as the API shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub event_id: String,
    pub event_type: Kind,
    pub user_id: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<AttemptView>,
    pub created_at: Timestamp,
    pub next_attempt_at: Option<Timestamp>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    pub attempt: u32,
    pub at: Timestamp,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl From<DeliveryLogItem> for Delivery {
    fn from(item: DeliveryLogItem) -> Delivery {
        Delivery {
            event_id: item.event_id,
            event_type: item.event_type,
            user_id: item.user_id,
            status: item.status,
            attempts: item
                .log
                .into_iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    at: Timestamp(a.at),
                    response_code: a.status_code,
                    error: a.error,
                    duration_ms: a.duration_ms,
                })
                .collect(),
            created_at: Timestamp(item.created_at),
            next_attempt_at: item.next_attempt_at.map(Timestamp),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    pub next_cursor: Option<String>,
}

impl Ledger {
    /// Registers an endpoint; the answer is the only one that shows its secret.
    pub async fn create_endpoint(&self, request: NewEndpoint) -> Result<Endpoint> {
        if self.endpoint_items().await?.len() >= MAX_ENDPOINTS {
            return Err(Error::TooManyEndpoints { limit: MAX_ENDPOINTS as u32 });
        }
        let id = Uuid::new_v4();
        let item = EndpointItem {
            pk: ENDPOINTS_PK.into(),
            sk: endpoint_sk(id),
            entity: "webhookEndpoint".into(),
            endpoint_id: id,
            url: request.url,
            events: request.events,
            description: request.description,
            secret: super::sign::new_secret(),
            status: EndpointStatus::Enabled,
            created_at: self.now().millis(),
            created_by: request.actor,
            failing_since: None,
            last_success_at: None,
            disabled_at: None,
            disabled_reason: None,
        };
        if !self.store().put_if_absent(to_item(&item)?).await? {
            return Err(Error::Internal("a fresh endpoint id was taken".into()));
        }
        Ok(Endpoint { secret: Some(item.secret.clone()), ..Endpoint::from(&item) })
    }

    pub async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        Ok(self.endpoint_items().await?.iter().map(Endpoint::from).collect())
    }

    pub async fn endpoint(&self, id: Uuid) -> Result<Endpoint> {
        Ok(Endpoint::from(&self.endpoint_item(id).await?.ok_or(Error::EndpointNotFound)?))
    }

    /// Deletes an endpoint; its pending deliveries are dropped when they fall due.
    pub async fn delete_endpoint(&self, id: Uuid) -> Result<()> {
        if self.store().delete_endpoint(id).await? {
            Ok(())
        } else {
            Err(Error::EndpointNotFound)
        }
    }

    /// An endpoint's deliveries, newest first.
    pub async fn deliveries(&self, id: Uuid, limit: u32, cursor: Option<&str>) -> Result<DeliveryPage> {
        self.endpoint_item(id).await?.ok_or(Error::EndpointNotFound)?;
        let before = cursor.map(|c| crate::ledger::decode_cursor(c, "DLV#")).transpose()?;
        let mut items = self.store().deliveries(id, limit, before).await?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let mut page = Vec::with_capacity(items.len());
        let mut last = None;
        for item in items {
            let delivery: DeliveryLogItem = from_item(item)?;
            last = Some(delivery.sk.clone());
            page.push(Delivery::from(delivery));
        }
        let next_cursor = if more { last.map(|sk| crate::ledger::encode_cursor(&sk)) } else { None };
        Ok(DeliveryPage { items: page, next_cursor })
    }

    pub(crate) async fn endpoint_item(&self, id: Uuid) -> Result<Option<EndpointItem>> {
        match self.store().get(key(ENDPOINTS_PK.into(), &endpoint_sk(id))).await? {
            Some(item) => Ok(Some(from_item(item)?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn endpoint_items(&self) -> Result<Vec<EndpointItem>> {
        self.store().endpoint_items().await?.into_iter().map(|item: Item| from_item(item)).collect()
    }
}
