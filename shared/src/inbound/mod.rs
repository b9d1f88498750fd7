//! Inbound webhooks, verified: one verifier per provider behind a small
//! trait (adding a provider is one module), Stripe's signatures, and the
//! payload's meaning for the ledger (applied by `ledger::outcome`).

pub mod bfl;
pub mod generic;
pub mod stripe;

use lambda_http::http::HeaderMap;
use serde_json::Value;

use crate::domain::{Provider, Timestamp};
use crate::validate::{Invalid, Problem};

/// Checks that a delivery really comes from its provider.
pub trait Verifier: Send + Sync + std::fmt::Debug {
    fn provider(&self) -> Provider;

    /// `Ok` with the provider's delivery id (if it sends one) when any
    /// configured secret signed this exact body; `Err` otherwise.
    fn verify(&self, headers: &HeaderMap, body: &[u8], now: Timestamp) -> Result<Option<String>, Rejected>;
}

/// Why a delivery was refused (logged; the caller only sees 403).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    NoSecret,
    MissingSignature,
    BadSignature,
    StaleTimestamp,
}

/// The configured verifiers, one per provider.
#[derive(Debug, Default)]
pub struct Verifiers {
    verifiers: Vec<Box<dyn Verifier>>,
    /// Stripe's events are purchases, not a provider's jobs: apart.
    stripe: stripe::StripeSignatures,
}

impl Verifiers {
    /// From `CREDITS_WEBHOOK_SECRET_GENERIC`, `CREDITS_WEBHOOK_SECRET_BFL` and
    /// `CREDITS_STRIPE_WEBHOOK_SECRET` (comma-separated for rotation; Stripe's
    /// with `CREDITS_STRIPE_LIVEMODE`). A secret that cannot be used is an
    /// error naming its variable: refusing to start is loud, a verifier
    /// that silently refuses every delivery is not.
    pub fn from_env() -> Result<Verifiers, String> {
        let var = |name: &str| match std::env::var(name) {
            Ok(value) => Ok(value),
            Err(std::env::VarError::NotPresent) => Ok(String::new()),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name}: not valid UTF-8")),
        };
        let generic = var(GENERIC_VAR)?;
        let bfl = var(BFL_VAR)?;
        check_secrets(GENERIC_VAR, &generic, |s| generic::decode_secret(s).is_some())?;
        check_secrets(BFL_VAR, &bfl, |_| true)?;
        let stripe = stripe::StripeSignatures::from_config(&var(stripe::SECRET_VAR)?, &var(stripe::LIVEMODE_VAR)?)?;
        Ok(Verifiers { stripe, ..Verifiers::new(&generic, &bfl) })
    }

    /// These verifiers, with Stripe's secrets (comma-separated), acting on
    /// events of one mode (`true`: live).
    pub fn with_stripe(self, secrets: &str, livemode: bool) -> Verifiers {
        Verifiers { stripe: stripe::StripeSignatures::new(split_secrets(secrets), livemode), ..self }
    }

    pub fn stripe(&self) -> &stripe::StripeSignatures {
        &self.stripe
    }

    pub fn new(generic_secrets: &str, bfl_secrets: &str) -> Verifiers {
        Verifiers {
            verifiers: vec![
                Box::new(generic::StandardWebhooks::new(split_secrets(generic_secrets))),
                Box::new(bfl::Bfl::new(split_secrets(bfl_secrets))),
            ],
            stripe: stripe::StripeSignatures::default(),
        }
    }

    pub fn get(&self, provider: Provider) -> Option<&dyn Verifier> {
        self.verifiers.iter().find(|v| v.provider() == provider).map(|v| v.as_ref())
    }
}

pub const GENERIC_VAR: &str = "CREDITS_WEBHOOK_SECRET_GENERIC";
pub const BFL_VAR: &str = "CREDITS_WEBHOOK_SECRET_BFL";

/// An unset or empty variable configures no secret (that provider's
/// deliveries are refused); otherwise every comma-separated entry must be
/// non-empty and `usable`. The message names the variable and the entry's
/// position, never its value.
pub fn check_secrets(var: &str, raw: &str, usable: impl Fn(&str) -> bool) -> Result<(), String> {
    if raw.trim().is_empty() {
        return Ok(());
    }
    for (position, entry) in raw.split(',').map(str::trim).enumerate() {
        let n = position + 1;
        if entry.is_empty() {
            return Err(format!("{var}: secret {n} of the comma-separated list is empty"));
        }
        if !usable(entry) {
            return Err(format!("{var}: secret {n} is not a whsec_<base64> secret"));
        }
    }
    Ok(())
}

pub(crate) fn split_secrets(raw: &str) -> Vec<String> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// What a provider says happened to a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Succeeded; `units` when the provider reports a partial success.
    Success {
        units: Option<u32>,
    },
    Failure,
    /// Still running, or a status we do not act on.
    Other,
}

impl Outcome {
    /// Dedup key part: redeliveries of one outcome share it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success { .. } => "success",
            Outcome::Failure => "failure",
            Outcome::Other => "other",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    pub task_id: String,
    pub outcome: Outcome,
}

const SUCCESS: &[&str] = &["success", "ready", "succeeded", "completed"];
const FAILURE: &[&str] =
    &["failed", "error", "content moderated", "request moderated", "task not found", "cancelled", "canceled"];

/// Reads `{"task_id"|"id", "status", "units"?}`; other fields are the
/// provider's business and ignored.
pub fn parse_payload(body: &[u8]) -> Result<Payload, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|_| Invalid::new("body", Problem::Malformed))?;
    let object = value.as_object().ok_or_else(|| Invalid::new("body", Problem::Malformed))?;
    let task_id = object
        .get("task_id")
        .or_else(|| object.get("id"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.chars().count() <= 256)
        .ok_or_else(|| Invalid::new("task_id", Problem::Missing))?
        .to_owned();
    let status = object
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| Invalid::new("status", Problem::Missing))?
        .trim()
        .to_ascii_lowercase();
    let units = match object.get("units") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64().and_then(|u| u32::try_from(u).ok()).ok_or_else(|| Invalid::new("units", Problem::WrongType))?,
        ),
    };
    let outcome = if SUCCESS.contains(&status.as_str()) {
        // Zero units out of a "success" is nothing to charge for.
        match units {
            Some(0) => Outcome::Failure,
            _ => Outcome::Success { units },
        }
    } else if FAILURE.contains(&status.as_str()) {
        Outcome::Failure
    } else {
        Outcome::Other
    };
    Ok(Payload { task_id, outcome })
}

/// Constant-time HMAC-SHA256 check of `signature` over `message`.
pub(crate) fn hmac_matches(key: &[u8], message: &[&[u8]], signature: &[u8]) -> bool {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else { return false };
    for part in message {
        mac.update(part);
    }
    mac.verify_slice(signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_secrets_are_named_and_never_shown() {
        let generic = |s: &str| generic::decode_secret(s).is_some();
        assert_eq!(check_secrets("V", "", generic), Ok(()));
        assert_eq!(check_secrets("V", "whsec_c2VjcmV0", generic), Ok(()));
        let bad = check_secrets("V", "whsec_c2VjcmV0,whsec_not base64!", generic).expect_err("refused");
        assert!(bad.starts_with("V: secret 2") && !bad.contains("not base64"), "{bad}");
        assert!(check_secrets("V", "whsec_c2VjcmV0,", generic).expect_err("refused").contains("empty"));
        assert!(check_secrets("V", "a,,b", |_| true).is_err());
        assert!(check_secrets("V", "whsec_", generic).is_err());
        let shown = format!("{:?}", Verifiers::new("whsec_c2VjcmV0", "bfl-plain-secret"));
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("bfl-plain-secret") && !shown.contains("115"),
            "{shown}"
        );
    }

    #[test]
    fn status_mapping_is_case_insensitive() {
        for status in ["SUCCESS", "Ready", "succeeded", "completed"] {
            let body = format!(r#"{{"task_id":"t","status":"{status}"}}"#);
            assert_eq!(parse_payload(body.as_bytes()).map(|p| p.outcome), Ok(Outcome::Success { units: None }));
        }
        for status in
            ["FAILED", "Error", "Content Moderated", "Request Moderated", "Task not found", "cancelled", "canceled"]
        {
            let body = format!(r#"{{"id":"t","status":"{status}"}}"#);
            assert_eq!(parse_payload(body.as_bytes()).map(|p| p.outcome), Ok(Outcome::Failure), "{status}");
        }
        for status in ["Pending", "processing", "queued"] {
            let body = format!(r#"{{"id":"t","status":"{status}"}}"#);
            assert_eq!(parse_payload(body.as_bytes()).map(|p| p.outcome), Ok(Outcome::Other));
        }
    }

    #[test]
    fn payload_takes_id_for_task_id_units_and_ignores_the_rest() {
        let p = parse_payload(br#"{"id":"bfl-1","status":"Ready","units":3,"result":{"sample":"x"}}"#).expect("ok");
        assert_eq!(p, Payload { task_id: "bfl-1".into(), outcome: Outcome::Success { units: Some(3) } });
        assert!(parse_payload(br#"{"status":"Ready"}"#).is_err());
        assert!(parse_payload(br#"{"id":"t","status":"Ready","units":-1}"#).is_err());
        assert!(parse_payload(b"not json").is_err());
    }
}
