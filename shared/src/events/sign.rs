//! Standard Webhooks signatures (https://www.standardwebhooks.com): the
//! same scheme this service verifies on the way in, here on the way out.
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`,
//! where the key is the base64 part of the endpoint's `whsec_…` secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore;

pub const PREFIX: &str = "whsec_";

/// A fresh endpoint secret: 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` value of one delivery: the very function the
/// inbound verifier's tests sign with.
pub use crate::inbound::generic::sign as signature;

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector made with the reference library (PyPI `standardwebhooks`
    /// 1.1.0): `Webhook(secret).sign(id, datetime.fromtimestamp(ts), body)`.
    #[test]
    fn matches_the_reference_library() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).as_deref(), Some(VECTOR));
    }

    const VECTOR: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn secrets_are_fresh_and_usable() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with(PREFIX));
        assert!(signature(&a, "evt_1", 1, b"{}").is_some());
        assert!(signature("whsec_not base64!", "evt_1", 1, b"{}").is_none());
    }
}
