//! The admin routes of webhook endpoints and their delivery logs.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{page_limit, query_param};
use crate::error::Error;
use crate::error::Result;
use crate::events::endpoints::NewEndpoint;
use crate::events::Kind;
use crate::http::identity::Caller;
use crate::http::{json, Op, Params};
use crate::ledger::Ledger;
use crate::validate::{self, json_body, Invalid, Problem};

pub const MAX_ENDPOINT_DESCRIPTION: usize = 200;

pub const DEFAULT_DELIVERY_PAGE: u32 = 50;

pub const MAX_DELIVERY_PAGE: u32 = 100;

pub(super) async fn handle(
    ledger: &Ledger,
    op: Op,
    params: &Params,
    req: &Request,
    caller: &Caller,
) -> Result<Response<Body>> {
    let body = req.body().as_ref();
    match op {
        Op::AdminCreateEndpoint => {
            let body: EndpointBody = json_body(body)?;
            validate::webhook_url("url", &body.url, ledger.local_http_endpoints())?;
            let events = event_kinds(body.events.unwrap_or_default())?;
            validate::optional_text("description", &body.description, MAX_ENDPOINT_DESCRIPTION)?;
            let request =
                NewEndpoint { url: body.url, events, description: body.description, actor: caller.sub.to_string() };
            let endpoint = ledger.create_endpoint(request).await?;
            tracing::info!(endpoint = %endpoint.id, admin = %caller.sub, "webhook endpoint created");
            Ok(json(StatusCode::CREATED, &endpoint))
        }
        Op::AdminListEndpoints => Ok(json(StatusCode::OK, &Items { items: ledger.endpoints().await? })),
        Op::AdminGetEndpoint => Ok(json(StatusCode::OK, &ledger.endpoint(endpoint_id(params)?).await?)),
        Op::AdminDeleteEndpoint => {
            let id = endpoint_id(params)?;
            ledger.delete_endpoint(id).await?;
            tracing::info!(endpoint = %id, admin = %caller.sub, "webhook endpoint deleted");
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = StatusCode::NO_CONTENT;
            Ok(response)
        }
        Op::AdminEndpointDeliveries => {
            let id = endpoint_id(params)?;
            let limit = page_limit(req, DEFAULT_DELIVERY_PAGE, MAX_DELIVERY_PAGE)?;
            let cursor = query_param(req, "cursor");
            Ok(json(StatusCode::OK, &ledger.deliveries(id, limit, cursor.as_deref()).await?))
        }
        _ => Err(Error::RouteNotFound),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointBody {
    url: String,
    /// Absent, `null` or empty: every type.
    events: Option<Vec<String>>,
    description: Option<String>,
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

/// Known event type names, at most one of each (a repeat is dropped).
fn event_kinds(names: Vec<String>) -> Result<Vec<Kind>, Invalid> {
    if names.len() > Kind::ALL.len() {
        return Err(Invalid::new("events", Problem::TooMany { max: Kind::ALL.len() }));
    }
    let mut kinds = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let kind =
            Kind::parse(name).ok_or_else(|| Invalid::new(format!("events[{i}]"), Problem::NotOneOf(Kind::NAMES)))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

fn endpoint_id(params: &Params) -> Result<Uuid, Invalid> {
    validate::uuid("id", params.get("id").unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_are_known_and_deduplicated() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(event_kinds(Vec::new()), Ok(Vec::new()));
        assert_eq!(
            event_kinds(names(&["hold.expired", "balance.low", "hold.expired"])),
            Ok(vec![Kind::HoldExpired, Kind::BalanceLow])
        );
        assert_eq!(
            event_kinds(names(&["hold.expired", "hold.exploded"])),
            Err(Invalid::new("events[1]", Problem::NotOneOf(Kind::NAMES)))
        );
        assert_eq!(event_kinds(names(Kind::NAMES)).map(|k| k.len()), Ok(12));
        let thirteen: Vec<String> = Kind::NAMES.iter().chain(["hold.expired"].iter()).map(|s| s.to_string()).collect();
        assert_eq!(event_kinds(thirteen), Err(Invalid::new("events", Problem::TooMany { max: 12 })));
    }
}
