//! Stripe's API, called out to: reading a PaymentIntent, to learn the
//! customer and the payment method a paid Checkout Session saved. With a
//! restricted key (`CREDITS_STRIPE_API_KEY`, read access to PaymentIntents
//! is all it needs); `CREDITS_STRIPE_API_BASE` is the API's base URL
//! without `/v1` (default `https://api.stripe.com`; tests point it at a
//! local stand-in).

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

pub const KEY_VAR: &str = "CREDITS_STRIPE_API_KEY";
pub const BASE_VAR: &str = "CREDITS_STRIPE_API_BASE";
pub const DEFAULT_BASE: &str = "https://api.stripe.com";
/// One call's time limit: well inside a webhook function's.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct StripeApi {
    base: String,
    key: String,
    http: reqwest::Client,
}

/// Says where, never the key.
impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeApi").field("base", &self.base).finish_non_exhaustive()
    }
}

/// A PaymentIntent, as much of it as a saved card needs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub payment_method: Option<String>,
    /// `off_session` when the customer agreed to be charged later.
    #[serde(default)]
    pub setup_future_usage: Option<String>,
}

impl PaymentIntent {
    /// The customer and payment method to charge off-session later, if the
    /// payment saved them for that.
    pub fn saved_card(&self) -> Option<(&str, &str)> {
        match (self.setup_future_usage.as_deref(), &self.customer, &self.payment_method) {
            (Some("off_session"), Some(customer), Some(method)) => Some((customer, method)),
            _ => None,
        }
    }
}

impl StripeApi {
    /// `None` without a key: no card is saved, none is charged. A key must
    /// be a secret or restricted key (`sk_`, `rk_`); the message names the
    /// variable, never the value.
    pub fn from_env() -> std::result::Result<Option<StripeApi>, String> {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let Some(key) = var(KEY_VAR) else { return Ok(None) };
        if !(key.starts_with("rk_") || key.starts_with("sk_")) {
            return Err(format!("{KEY_VAR}: a Stripe restricted key (rk_…) or secret key (sk_…)"));
        }
        StripeApi::new(&var(BASE_VAR).unwrap_or_else(|| DEFAULT_BASE.to_owned()), &key).map(Some)
    }

    pub fn new(base: &str, key: &str) -> std::result::Result<StripeApi, String> {
        let base = base.trim_end_matches('/').to_owned();
        if !base_allowed(&base) {
            return Err(format!("{BASE_VAR}: an https:// URL (http only to this machine)"));
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("credits/1")
            .build()
            .map_err(|e| format!("Stripe API client: {e}"))?;
        Ok(StripeApi { base, key: key.to_owned(), http })
    }

    /// `GET /v1/payment_intents/{id}`. Stripe down, slow or throttling is
    /// `Unavailable` (the caller's 503 makes Stripe redeliver the event);
    /// any other refusal is `Internal`, logged with Stripe's status.
    pub async fn payment_intent(&self, id: &str) -> Result<PaymentIntent> {
        if id.is_empty() || id.len() > 255 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(Error::Internal("not a PaymentIntent id".into()));
        }
        let response = self
            .http
            .get(format!("{}/v1/payment_intents/{id}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("Stripe API: {}", e.without_url())))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(Error::Unavailable(format!("Stripe API answered {status}")));
        }
        if !status.is_success() {
            return Err(Error::Internal(format!("Stripe API refused reading a PaymentIntent: {status}")));
        }
        response.json().await.map_err(|e| Error::Unavailable(format!("Stripe API: {}", e.without_url())))
    }
}

/// The key goes where the base says: over https, or plain http only to this
/// machine (a stand-in), and never with a user name, a query or a fragment.
fn base_allowed(base: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(base) else { return false };
    let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let clean =
        url.username().is_empty() && url.password().is_none() && url.query().is_none() && url.fragment().is_none();
    clean && (url.scheme() == "https" || (url.scheme() == "http" && local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_is_saved_only_for_off_session_use() {
        let intent = |usage: Option<&str>, customer: Option<&str>| PaymentIntent {
            id: "pi_1".into(),
            customer: customer.map(str::to_owned),
            payment_method: Some("pm_1".into()),
            setup_future_usage: usage.map(str::to_owned),
        };
        assert_eq!(intent(Some("off_session"), Some("cus_1")).saved_card(), Some(("cus_1", "pm_1")));
        assert_eq!(intent(Some("on_session"), Some("cus_1")).saved_card(), None);
        assert_eq!(intent(None, Some("cus_1")).saved_card(), None);
        assert_eq!(intent(Some("off_session"), None).saved_card(), None);
    }

    #[test]
    fn the_key_goes_over_https_or_to_this_machine_only() {
        for allowed in ["https://api.stripe.com", "http://127.0.0.1:4242", "http://localhost:9", "http://[::1]:80"] {
            assert!(StripeApi::new(allowed, "rk_test_1").is_ok(), "{allowed}");
        }
        for refused in [
            "http://api.stripe.com",
            "http://127.0.0.1.evil.example",
            "http://localhost.evil.example",
            "https://user:pass@api.stripe.com",
            "https://api.stripe.com?x=1",
            "ftp://api.stripe.com",
            "api.stripe.com",
        ] {
            assert!(StripeApi::new(refused, "rk_test_1").is_err(), "{refused}");
        }
    }

    #[test]
    fn the_key_never_shows() {
        let api = StripeApi::new("https://api.stripe.com", "rk_test_secret").expect("api");
        assert!(!format!("{api:?}").contains("rk_test_secret"));
    }
}
