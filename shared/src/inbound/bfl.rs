//! Black Forest Labs: `X-BFL-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`,
//! the secret being the plain string the app passed as `webhook_secret`.

use lambda_http::http::HeaderMap;

use super::{hmac_matches, Rejected, Verifier};
use crate::domain::{Provider, Timestamp};

/// The `X-BFL-Signature` value BFL sends: for tests and relays.
pub fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct Bfl {
    secrets: Vec<String>,
}

/// Says how many secrets, never what they are.
impl std::fmt::Debug for Bfl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bfl").field("secrets", &self.secrets.len()).finish()
    }
}

impl Bfl {
    pub fn new(secrets: Vec<String>) -> Bfl {
        Bfl { secrets }
    }
}

impl Verifier for Bfl {
    fn provider(&self) -> Provider {
        Provider::Bfl
    }

    fn verify(&self, headers: &HeaderMap, body: &[u8], _now: Timestamp) -> Result<Option<String>, Rejected> {
        if self.secrets.is_empty() {
            return Err(Rejected::NoSecret);
        }
        let signature = headers
            .get("x-bfl-signature")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().strip_prefix("sha256="))
            .ok_or(Rejected::MissingSignature)?;
        let signature = hex::decode(signature).map_err(|_| Rejected::BadSignature)?;
        if self.secrets.iter().any(|secret| hmac_matches(secret.as_bytes(), &[body], &signature)) {
            // BFL sends no delivery id: redeliveries are recognised by task and outcome.
            Ok(None)
        } else {
            Err(Rejected::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    // python3: hmac.new(b"bfl-secret-a", BODY, hashlib.sha256).hexdigest()
    const BODY: &[u8] = br#"{"id":"bfl-task-9","status":"Ready","result":{"sample":"https://x/y.png"}}"#;
    const BY_A: &str = "0ac96d3954f2a460a2f901f9c0a78dd7f812c6813f7da86efbc0fe8429707aaa";
    const BY_B: &str = "bc61a3a29935410cee5cb400b340a79a4f23525a384d13afe355df1d1c394646";

    fn signed(hex: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-bfl-signature", HeaderValue::from_str(&format!("sha256={hex}")).expect("header"));
        h
    }

    fn bfl(secrets: &[&str]) -> Bfl {
        Bfl::new(secrets.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn signing_reproduces_the_fixed_vectors() {
        assert_eq!(sign("bfl-secret-a", BODY), format!("sha256={BY_A}"));
        assert_eq!(sign("bfl-secret-b", BODY), format!("sha256={BY_B}"));
    }

    #[test]
    fn fixed_vector_verifies_and_rotation_accepts_either_secret() {
        assert_eq!(bfl(&["bfl-secret-a"]).verify(&signed(BY_A), BODY, Timestamp(0)), Ok(None));
        let rotating = bfl(&["bfl-secret-b", "bfl-secret-a"]);
        assert!(rotating.verify(&signed(BY_A), BODY, Timestamp(0)).is_ok());
        assert!(rotating.verify(&signed(BY_B), BODY, Timestamp(0)).is_ok());
    }

    #[test]
    fn tampered_missing_and_malformed_signatures_fail() {
        let v = bfl(&["bfl-secret-a"]);
        let tampered = br#"{"id":"bfl-task-9","status":"Error","result":{"sample":"https://x/y.png"}}"#;
        assert_eq!(v.verify(&signed(BY_A), tampered, Timestamp(0)), Err(Rejected::BadSignature));
        assert_eq!(v.verify(&signed(BY_B), BODY, Timestamp(0)), Err(Rejected::BadSignature));
        assert_eq!(v.verify(&signed("zz"), BODY, Timestamp(0)), Err(Rejected::BadSignature));
        assert_eq!(v.verify(&HeaderMap::new(), BODY, Timestamp(0)), Err(Rejected::MissingSignature));
        assert_eq!(bfl(&[]).verify(&signed(BY_A), BODY, Timestamp(0)), Err(Rejected::NoSecret));
    }
}
