//! Standard Webhooks (Svix, Replicate, …): `webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`,
//! several space-separated signatures for rotation, secrets `whsec_<base64>`.

use base64::Engine as _;
use lambda_http::http::HeaderMap;

use super::{hmac_matches, Rejected, Verifier};
use crate::domain::{Provider, Timestamp};

/// Deliveries more than this far from our clock are refused (replays).
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

pub struct StandardWebhooks {
    keys: Vec<Vec<u8>>,
}

/// Says how many keys, never what they are.
impl std::fmt::Debug for StandardWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandardWebhooks").field("keys", &self.keys.len()).finish()
    }
}

/// The key of a `whsec_<base64>` secret, `None` when it is not one.
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    base64::engine::general_purpose::STANDARD.decode(encoded).ok().filter(|key| !key.is_empty())
}

impl StandardWebhooks {
    pub fn new(secrets: Vec<String>) -> StandardWebhooks {
        // `Verifiers::from_env` has refused any secret that does not decode.
        let keys = secrets.iter().filter_map(|s| decode_secret(s)).collect();
        StandardWebhooks { keys }
    }
}

/// The `webhook-signature` value a sender computes (`v1,<base64>`): for
/// tests and for apps that relay deliveries.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    use hmac::{Hmac, Mac};
    let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok()?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Some(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

impl Verifier for StandardWebhooks {
    fn provider(&self) -> Provider {
        Provider::Generic
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], now: Timestamp) -> Result<Option<String>, Rejected> {
        if self.keys.is_empty() {
            return Err(Rejected::NoSecret);
        }
        let (Some(id), Some(timestamp), Some(signatures)) =
            (header(headers, "webhook-id"), header(headers, "webhook-timestamp"), header(headers, "webhook-signature"))
        else {
            return Err(Rejected::MissingSignature);
        };
        let sent: i64 = timestamp.parse().map_err(|_| Rejected::StaleTimestamp)?;
        let off = now.unix_seconds().checked_sub(sent).map(i64::unsigned_abs);
        if off.is_none_or(|seconds| seconds > TOLERANCE_SECONDS as u64) {
            return Err(Rejected::StaleTimestamp);
        }
        let message: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
        let matched = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .any(|signature| self.keys.iter().any(|key| hmac_matches(key, &message, &signature)));
        if matched {
            Ok(Some(id.to_owned()))
        } else {
            Err(Rejected::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    // Produced with the reference library (PyPI `standardwebhooks`):
    // Webhook(SECRET).sign("msg_2Kc1", datetime.fromtimestamp(1795370645, utc), BODY)
    const SECRET_ONE: &str = "whsec_Y3JlZGl0cy10ZXN0LXNlY3JldC1vbmUtMzItYnl0ZXM=";
    const SECRET_TWO: &str = "whsec_Y3JlZGl0cy10ZXN0LXNlY3JldC10d28tMzItYnl0ZXM=";
    const SIGNED_BY_ONE: &str = "v1,uVIq3vsxKTSKr2wvYCspb9Ztb7LD1sWTgA9JAQzjPI0=";
    const SIGNED_BY_TWO: &str = "v1,7cvrcfhhKl2K/3AZ9kBkUmThU3Q+HeZarlpPY9XZuYU=";
    const BODY: &[u8] = br#"{"task_id":"task-1","status":"succeeded","units":2}"#;
    const SENT: i64 = 1_795_370_645;

    fn headers(signature: &str, timestamp: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_static("msg_2Kc1"));
        h.insert("webhook-timestamp", HeaderValue::from_str(&timestamp.to_string()).expect("header"));
        h.insert("webhook-signature", HeaderValue::from_str(signature).expect("header"));
        h
    }

    fn verifier(secrets: &[&str]) -> StandardWebhooks {
        StandardWebhooks::new(secrets.iter().map(|s| s.to_string()).collect())
    }

    const NOW: Timestamp = Timestamp(SENT * 1000 + 30_000);

    #[test]
    fn signing_reproduces_the_reference_vectors() {
        assert_eq!(sign(SECRET_ONE, "msg_2Kc1", SENT, BODY).as_deref(), Some(SIGNED_BY_ONE));
        assert_eq!(sign(SECRET_TWO, "msg_2Kc1", SENT, BODY).as_deref(), Some(SIGNED_BY_TWO));
    }

    #[test]
    fn reference_vector_verifies() {
        let result = verifier(&[SECRET_ONE]).verify(&headers(SIGNED_BY_ONE, SENT), BODY, NOW);
        assert_eq!(result, Ok(Some("msg_2Kc1".to_owned())));
    }

    #[test]
    fn rotation_several_signatures_and_several_secrets() {
        // The sender signs with both secrets while rotating; we know only the new one.
        let both = format!("{SIGNED_BY_ONE} {SIGNED_BY_TWO}");
        assert!(verifier(&[SECRET_TWO]).verify(&headers(&both, SENT), BODY, NOW).is_ok());
        // We accept old and new while the sender still signs with the old one.
        assert!(verifier(&[SECRET_TWO, SECRET_ONE]).verify(&headers(SIGNED_BY_ONE, SENT), BODY, NOW).is_ok());
    }

    #[test]
    fn tampered_body_wrong_secret_and_stale_timestamps_fail() {
        let v = verifier(&[SECRET_ONE]);
        let tampered = br#"{"task_id":"task-1","status":"succeeded","units":9}"#;
        assert_eq!(v.verify(&headers(SIGNED_BY_ONE, SENT), tampered, NOW), Err(Rejected::BadSignature));
        assert_eq!(
            verifier(&[SECRET_TWO]).verify(&headers(SIGNED_BY_ONE, SENT), BODY, NOW),
            Err(Rejected::BadSignature)
        );
        let hour_later = Timestamp((SENT + 3600) * 1000);
        assert_eq!(v.verify(&headers(SIGNED_BY_ONE, SENT), BODY, hour_later), Err(Rejected::StaleTimestamp));
        let hour_earlier = Timestamp((SENT - 3600) * 1000);
        assert_eq!(v.verify(&headers(SIGNED_BY_ONE, SENT), BODY, hour_earlier), Err(Rejected::StaleTimestamp));
        assert_eq!(v.verify(&HeaderMap::new(), BODY, NOW), Err(Rejected::MissingSignature));
        assert_eq!(v.verify(&headers(SIGNED_BY_ONE, i64::MIN), BODY, NOW), Err(Rejected::StaleTimestamp));
        assert_eq!(verifier(&[]).verify(&headers(SIGNED_BY_ONE, SENT), BODY, NOW), Err(Rejected::NoSecret));
    }
}
