//! Who is calling, from the JWT claims API Gateway's authorizer (or the dev
//! server, in the same shape) put in the request context.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::domain::UserId;
use crate::error::{Error, Result};

pub const ADMIN_GROUP: &str = "credits-admin";
pub const ADMIN_SCOPE: &str = "credits/admin";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    pub admin: bool,
}

impl Caller {
    pub fn require_admin(&self) -> Result<()> {
        if self.admin {
            Ok(())
        } else {
            Err(Error::Forbidden)
        }
    }
}

pub fn caller(req: &Request) -> Result<Caller> {
    let jwt = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()),
        _ => None,
    };
    let jwt = jwt.ok_or(Error::Unauthorized)?;
    let user = jwt.claims.get("sub").and_then(|sub| UserId::parse(sub)).ok_or(Error::Unauthorized)?;
    let in_groups = jwt.claims.get("cognito:groups").is_some_and(|g| list_contains(g, ADMIN_GROUP));
    let in_scope = jwt.claims.get("scope").is_some_and(|s| list_contains(s, ADMIN_SCOPE))
        || jwt.scopes.as_ref().is_some_and(|s| s.iter().any(|s| s == ADMIN_SCOPE));
    Ok(Caller { user, admin: in_groups || in_scope })
}

/// API Gateway flattens list claims into strings such as `[a b]`; JSON
/// arrays, commas and spaces all occur in the wild.
fn list_contains(raw: &str, wanted: &str) -> bool {
    raw.split(|c: char| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '"')).any(|part| part == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_claims_in_every_shape() {
        for raw in ["[credits-admin other]", "[\"other\",\"credits-admin\"]", "credits-admin", "a, credits-admin"] {
            assert!(list_contains(raw, ADMIN_GROUP), "{raw}");
        }
        assert!(!list_contains("[credits-admins]", ADMIN_GROUP));
        assert!(list_contains("openid credits/admin", ADMIN_SCOPE));
    }
}
