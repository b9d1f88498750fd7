//! Stripe's webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`,
//! where each `v1` is HMAC-SHA256 keyed with the endpoint secret as it is
//! (the whole `whsec_…` string, not base64-decoded as Standard Webhooks
//! does) over `"<t>.<raw body>"`. Several `v1` come while Stripe rolls a
//! secret; several secrets here while we do. Not a provider of jobs: Stripe's
//! events are purchases, so this verifier stands apart from `Verifiers`.

use super::{hmac_matches, Rejected};
use crate::domain::Timestamp;

/// Stripe's libraries refuse signatures older than this by default.
pub const TOLERANCE_SECONDS: i64 = 300;
pub const SECRET_VAR: &str = "CREDITS_STRIPE_WEBHOOK_SECRET";
/// Longest header read: a handful of signatures, never an unbounded scan.
const MAX_HEADER: usize = 2048;

pub struct StripeSignatures {
    secrets: Vec<String>,
}

/// Says how many secrets, never what they are.
impl std::fmt::Debug for StripeSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSignatures").field("secrets", &self.secrets.len()).finish()
    }
}

/// The `Stripe-Signature` value Stripe sends: for tests and relays.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl StripeSignatures {
    /// Comma-separated secrets (`CREDITS_STRIPE_WEBHOOK_SECRET`; the stack
    /// parameter `StripeWebhookSecrets`): every entry must be a `whsec_`
    /// secret. The message names the entry's position, never its value.
    pub fn from_config(raw: &str) -> Result<StripeSignatures, String> {
        super::check_secrets(SECRET_VAR, raw, |s| s.starts_with("whsec_") && s.len() > "whsec_".len())?;
        Ok(StripeSignatures::new(super::split_secrets(raw)))
    }

    pub fn new(secrets: Vec<String>) -> StripeSignatures {
        StripeSignatures { secrets }
    }

    /// `Ok` when a configured secret signed this exact body within the
    /// tolerance; the timestamp is checked both ways (a signature from the
    /// future is as suspect as a stale one). Each candidate is compared in
    /// constant time.
    pub fn verify(&self, header: Option<&str>, body: &[u8], now: Timestamp) -> Result<(), Rejected> {
        if self.secrets.is_empty() {
            return Err(Rejected::NoSecret);
        }
        let header = header.filter(|h| h.len() <= MAX_HEADER).ok_or(Rejected::MissingSignature)?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                // One `t` only: two would leave which one was signed a guess.
                Some(("t", value)) if timestamp.is_none() => {
                    timestamp = Some(value.parse::<i64>().map_err(|_| Rejected::BadSignature)?)
                }
                Some(("t", _)) => return Err(Rejected::BadSignature),
                Some(("v1", value)) => signatures.extend(hex::decode(value).ok().filter(|s| s.len() == 32)),
                // `v0` (test-mode legacy) and anything else: not ours to trust.
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(Rejected::MissingSignature)?;
        if signatures.is_empty() {
            return Err(Rejected::MissingSignature);
        }
        if (now.unix_seconds() - timestamp).abs() > TOLERANCE_SECONDS {
            return Err(Rejected::StaleTimestamp);
        }
        let prefix = format!("{timestamp}.");
        let signed = self.secrets.iter().any(|secret| {
            signatures.iter().any(|signature| hmac_matches(secret.as_bytes(), &[prefix.as_bytes(), body], signature))
        });
        if signed {
            Ok(())
        } else {
            Err(Rejected::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const NOW: Timestamp = Timestamp(1_700_000_100_000);

    /// Made with Stripe's own library (npm `stripe` 23.1.0):
    /// `stripe.webhooks.generateTestHeaderString({payload, secret: "whsec_test", timestamp: 1700000000})`.
    #[test]
    fn matches_stripes_library() {
        let payload = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
        let header = "t=1700000000,v1=749721cbedbfa4cc1aa6c9c2bec1edd93766a07906c9d9b3dbc7626e4e660caf";
        assert_eq!(sign("whsec_test", 1_700_000_000, payload), header);
        let verifier = StripeSignatures::new(vec!["whsec_test".into()]);
        assert_eq!(verifier.verify(Some(header), payload, NOW), Ok(()));
    }

    #[test]
    fn refuses_what_it_should() {
        let body = br#"{"id":"evt_2"}"#;
        let verifier = StripeSignatures::new(vec!["whsec_old".into(), SECRET.into()]);
        let good = sign(SECRET, 1_700_000_000, body);
        let good_v1 = good.split_once(",v1=").map(|(_, v)| v.to_owned()).unwrap_or_default();
        assert_eq!(verifier.verify(Some(&good), body, NOW), Ok(()), "the second secret (rotation)");
        let rolled = format!("t=1700000000,v1={},v1={good_v1},v0=abc", "0".repeat(64));
        assert_eq!(verifier.verify(Some(&rolled), body, NOW), Ok(()), "one of several v1");
        assert_eq!(verifier.verify(Some(&good), br#"{"id":"evt_3"}"#, NOW), Err(Rejected::BadSignature));
        let wrong = sign("whsec_other", 1_700_000_000, body);
        assert_eq!(verifier.verify(Some(&wrong), body, NOW), Err(Rejected::BadSignature));
        let stale = sign(SECRET, 1_700_000_100 - 301, body);
        assert_eq!(verifier.verify(Some(&stale), body, NOW), Err(Rejected::StaleTimestamp));
        let edge = sign(SECRET, 1_700_000_100 - 300, body);
        assert_eq!(verifier.verify(Some(&edge), body, NOW), Ok(()));
        let future = sign(SECRET, 1_700_000_100 + 301, body);
        assert_eq!(verifier.verify(Some(&future), body, NOW), Err(Rejected::StaleTimestamp));
        let v0_only = format!("t=1700000000,v0={good_v1}");
        assert_eq!(verifier.verify(Some(&v0_only), body, NOW), Err(Rejected::MissingSignature));
        let two_t = format!("t=1,{good}");
        assert_eq!(verifier.verify(Some(&two_t), body, NOW), Err(Rejected::BadSignature));
        assert_eq!(verifier.verify(None, body, NOW), Err(Rejected::MissingSignature));
        assert_eq!(verifier.verify(Some("garbage"), body, NOW), Err(Rejected::MissingSignature));
        let signed_by_hex_key = format!("t=1700000000,v1={}", "z".repeat(64));
        assert_eq!(verifier.verify(Some(&signed_by_hex_key), body, NOW), Err(Rejected::MissingSignature));
        let none = StripeSignatures::new(vec![]);
        assert_eq!(none.verify(Some(&good), body, NOW), Err(Rejected::NoSecret));
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert!(StripeSignatures::from_config("").is_ok());
        assert!(StripeSignatures::from_config("whsec_a, whsec_b").is_ok());
        let refused = StripeSignatures::from_config("whsec_a,sk_live_secret").expect_err("not a whsec_ secret");
        assert!(refused.contains(SECRET_VAR) && refused.contains('2') && !refused.contains("sk_live_secret"));
        let shown = format!("{:?}", StripeSignatures::new(vec!["whsec_hidden".into()]));
        assert!(!shown.contains("hidden"), "{shown}");
    }
}
