//! The table's change stream: one record as the stats and events functions
//! take it (`Change`), whoever delivered it (Lambda's DynamoDB Streams
//! event, or `local_stream` reading DynamoDB Local's), and the attributes
//! of an item's image the aggregates read (`Image`).

use serde::Deserialize;

use crate::domain::HoldStatus;

/// One record of the change stream, whatever delivered it (Lambda's event,
/// or the dev server reading DynamoDB Local's stream).
#[derive(Clone, Debug)]
pub struct Change {
    pub event_id: String,
    pub old: Option<serde_dynamo::Item>,
    pub new: Option<serde_dynamo::Item>,
}

impl Change {
    /// A record as Lambda's DynamoDB Streams event carries it: an image the
    /// record has not (an insert's old, a removal's new) comes empty.
    pub fn of_images(event_id: String, old: serde_dynamo::Item, new: serde_dynamo::Item) -> Change {
        Change {
            event_id,
            old: Some(old).filter(|image| !image.is_empty()),
            new: Some(new).filter(|image| !image.is_empty()),
        }
    }
}

/// The attributes of any item the aggregates care about.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Image {
    pub pk: String,
    pub entity: Option<String>,
    /// A hold's status, or a delivery's (read as text: each entity has its own words).
    #[serde(rename = "status")]
    pub status_text: Option<String>,
    pub user_id: Option<String>,
    pub operation: Option<String>,
    pub amount: u64,
    pub captured_amount: u64,
    pub captured_units: u64,
    pub released_amount: u64,
    pub created_at: i64,
    pub settled_at: Option<i64>,
    pub at: i64,
    pub late_success: bool,
    pub refunded_at: Option<i64>,
    pub events: Vec<EventAt>,
    // A balance's figures that only some writes move.
    pub expired: i64,
    pub debited: i64,
    pub granted: i64,
    pub plan_period: Option<i64>,
    pub updated_at: i64,
    // Stripe: verified events and purchases.
    pub result: Option<String>,
    pub credits: i64,
    pub taken_back: i64,
    pub unrecoverable: i64,
    // Outgoing events and webhook deliveries.
    pub bus: Option<String>,
    pub occurred_at: i64,
    pub attempts: i64,
    pub log: Vec<EventAt>,
}

impl Image {
    pub fn read(item: &Option<serde_dynamo::Item>) -> Option<Image> {
        item.as_ref().and_then(|i| serde_dynamo::from_item(i.clone()).ok())
    }

    pub fn status(&self) -> Option<HoldStatus> {
        let text = self.status_text.as_deref()?;
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }

    pub fn is(&self, entity: &str) -> bool {
        self.entity.as_deref() == Some(entity)
    }

    pub fn adds_up(item: &serde_dynamo::Item) -> bool {
        super::balance_adds_up(&item.clone().into())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventAt {
    pub at: i64,
}
