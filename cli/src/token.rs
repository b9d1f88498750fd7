//! Local JWTs: HS256 with the dev secret, checked by the dev server the way
//! API Gateway's JWT authorizer checks real ones.

use std::collections::HashMap;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Map, Value};

pub const DEFAULT_DEV_SECRET: &str = "credits-dev-secret-not-for-production";
/// The webhook secrets `make run` and `make demo` share by default (the
/// Makefile sets them), public like `DEFAULT_DEV_SECRET`: loopback only.
pub const LOCAL_WEBHOOK_SECRETS: [(&str, &str); 2] = [
    ("CREDITS_WEBHOOK_SECRET_BFL", "local-bfl-webhook-secret"),
    ("CREDITS_STRIPE_WEBHOOK_SECRET", "whsec_local_stripe_webhook_secret"),
];
/// The dev server's app client for the back end: its default
/// `CREDITS_SERVER_CLIENT_IDS`.
pub const DEV_SERVER_CLIENT: &str = "dev-server";
use credits_shared::domain::principal::{ADMIN_GROUP, SERVER_SCOPE};

/// Whom a token is for.
#[derive(Clone, Copy, Debug)]
pub enum Bearer<'a> {
    /// An end user (`sub`).
    User(&'a str),
    /// An operator: a user in the `credits-admin` group.
    Admin(&'a str),
    /// The app's back end: a client-credentials token as Cognito issues
    /// them (`sub` and `client_id` the client, scope `credits/server`).
    Server(&'a str),
}

/// Mints a token for `bearer`, valid for `ttl_seconds`.
pub fn mint(secret: &str, bearer: Bearer<'_>, ttl_seconds: i64) -> Result<String, String> {
    let now = chrono::Utc::now().timestamp();
    let sub = match bearer {
        Bearer::User(sub) | Bearer::Admin(sub) | Bearer::Server(sub) => sub,
    };
    let mut claims = json!({"sub": sub, "iat": now, "exp": now + ttl_seconds, "iss": "credits-dev"});
    match bearer {
        Bearer::User(_) => {}
        Bearer::Admin(_) => claims["cognito:groups"] = json!([ADMIN_GROUP]),
        Bearer::Server(client) => {
            claims["client_id"] = json!(client);
            claims["scope"] = json!(SERVER_SCOPE);
            claims["token_use"] = json!("access");
        }
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
        let token = mint("s", Bearer::Admin("alice"), 60).expect("mint");
        let claims = verify("s", Some(&format!("Bearer {token}"))).expect("valid");
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["cognito:groups"], "[credits-admin]");
        let token = mint("s", Bearer::Server("dev-server"), 60).expect("mint");
        let claims = verify("s", Some(&format!("Bearer {token}"))).expect("valid");
        assert_eq!((claims["client_id"].as_str(), claims["scope"].as_str()), ("dev-server", "credits/server"));
        assert!(!claims.contains_key("cognito:groups"));
    }

    #[test]
    fn wrong_secret_expired_and_missing_tokens_fail() {
        let token = mint("s", Bearer::User("alice"), 60).expect("mint");
        assert!(verify("other", Some(&format!("Bearer {token}"))).is_none());
        let expired = mint("s", Bearer::User("alice"), -5).expect("mint");
        assert!(verify("s", Some(&format!("Bearer {expired}"))).is_none());
        assert!(verify("s", None).is_none());
        assert!(verify("s", Some(&token)).is_none(), "the Bearer scheme is required");
    }
}
