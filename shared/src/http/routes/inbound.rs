//! Inbound webhooks: a provider's outcome of a task, Stripe's events.
//! Public routes: each request is authenticated by its signature.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::app::App;
use crate::domain::Provider;
use crate::error::Error;
use crate::error::Result;
use crate::http::{json, Params};
use crate::inbound::parse_payload;
use crate::ledger::outcome::{Delivery, OutcomeResult};

/// `POST /v1/webhooks/{provider}`: verify the signature over the raw body,
/// then apply the provider's outcome. 2xx whenever the request is authentic.
pub(super) async fn provider_webhook(app: &App, params: &Params, req: &Request) -> Result<Response<Body>> {
    let provider = match params.get("provider") {
        Some("bfl") => Provider::Bfl,
        Some("generic") => Provider::Generic,
        Some("stripe") => return stripe_webhook(app, req).await,
        _ => return Err(Error::RouteNotFound),
    };
    let verifier = app.verifiers.get(provider).ok_or(Error::Forbidden)?;
    let body = req.body().as_ref();
    let delivery_id = verifier.verify(req.headers(), body, app.ledger.now()).map_err(|rejected| {
        tracing::warn!(provider = provider.as_str(), reason = ?rejected, "webhook refused");
        Error::Forbidden
    })?;
    let payload = parse_payload(body)?;
    let delivery = Delivery { provider, task_id: payload.task_id, outcome: payload.outcome, delivery_id };
    let answer = app.ledger.apply_outcome(&delivery).await?;
    tracing::info!(
        provider = provider.as_str(),
        task = %delivery.task_id,
        result = ?answer.result,
        late_success = answer.late_success,
        "webhook"
    );
    let status = if answer.result == OutcomeResult::Parked { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok(json(status, &answer))
}

/// Stripe: verified, then always 200 with what it did (a purchase granted,
/// credits taken back, parked, a duplicate, or ignored and why), so that
/// Stripe never retries an event that would change nothing; an error of
/// ours is a 5xx, which Stripe retries.
async fn stripe_webhook(app: &App, req: &Request) -> Result<Response<Body>> {
    let body = req.body().as_ref();
    let header = req.headers().get("stripe-signature").and_then(|v| v.to_str().ok());
    app.verifiers.stripe().verify(header, body, app.ledger.now()).map_err(|rejected| {
        tracing::warn!(provider = "stripe", reason = ?rejected, "webhook refused");
        Error::Forbidden
    })?;
    let (event_id, action) = crate::inbound::stripe::parse_event(body, app.verifiers.stripe().livemode())?;
    let answer = app.ledger.apply_stripe(&event_id, action).await?;
    tracing::info!(provider = "stripe", event = %event_id, result = answer.result.as_str(), reason = ?answer.reason, "stripe");
    Ok(json(StatusCode::OK, &answer))
}
