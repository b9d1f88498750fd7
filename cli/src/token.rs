//! Local JWTs: HS256 with the dev secret, checked by the dev server the way
//! API Gateway's JWT authorizer checks real ones.

use std::collections::HashMap;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Map, Value};

pub const DEFAULT_DEV_SECRET: &str = "credits-dev-secret-not-for-production";
pub const ADMIN_GROUP: &str = credits_shared::http::identity::ADMIN_GROUP;

/// Mints a token for `user`, valid for `ttl_seconds`.
pub fn mint(secret: &str, user: &str, admin: bool, ttl_seconds: i64) -> Result<String, String> {
    let now = chrono::Utc::now().timestamp();
    let mut claims = json!({"sub": user, "iat": now, "exp": now + ttl_seconds, "iss": "credits-dev"});
    if admin {
        claims["cognito:groups"] = json!([ADMIN_GROUP]);
    }
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|e| e.to_string())
}

/// Checks `Authorization: Bearer <jwt>` and returns the claims flattened to
/// strings, the shape API Gateway hands to functions.
pub fn verify(secret: &str, authorization: Option<&str>) -> Option<HashMap<String, String>> {
    let token = authorization?.strip_prefix("Bearer ")?.trim();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_aud = false;
    let data = decode::<Map<String, Value>>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation).ok()?;
    Some(data.claims.into_iter().map(|(k, v)| (k, flatten(v))).collect())
}

/// API Gateway renders list claims as `[a b]` and everything else as text.
fn flatten(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Array(items) => {
            let parts: Vec<String> = items.into_iter().map(flatten).collect();
            format!("[{}]", parts.join(" "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_carry_groups() {
        let token = mint("s", "alice", true, 60).expect("mint");
        let claims = verify("s", Some(&format!("Bearer {token}"))).expect("valid");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["cognito:groups"], "[credits-admin]");
    }

    #[test]
    fn wrong_secret_expired_and_missing_tokens_fail() {
        let token = mint("s", "alice", false, 60).expect("mint");
        assert!(verify("other", Some(&format!("Bearer {token}"))).is_none());
        let expired = mint("s", "alice", false, -5).expect("mint");
        assert!(verify("s", Some(&format!("Bearer {expired}"))).is_none());
        assert!(verify("s", None).is_none());
        assert!(verify("s", Some(&token)).is_none(), "the Bearer scheme is required");
    }
}
