//! Who is calling, from the JWT claims API Gateway's authorizer (or the dev
//! server, in the same shape) put in the request context. What each kind
//! of caller may do is `domain::principal`'s table.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::domain::principal::{self, Role, TokenClaims, TrustedClients, USER_HEADER};
use crate::domain::UserId;
use crate::error::{Error, Result};
use crate::validate::{Invalid, Problem};

pub use crate::domain::principal::{ADMIN_GROUP, ADMIN_SCOPE, SERVER_SCOPE};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`: the user, or for a client-credentials token the
    /// client id. Recorded as `actor` on what it changes.
    pub sub: UserId,
    pub role: Role,
}

/// The caller of `req`, or `Unauthorized` when no authorizer vouched for one.
pub fn caller(req: &Request, trusted: &TrustedClients) -> Result<Caller> {
    let jwt = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()),
        _ => None,
    };
    let jwt = jwt.ok_or(Error::Unauthorized)?;
    let claim = |name: &str| jwt.claims.get(name).map(String::as_str);
    let sub = claim("sub").and_then(UserId::parse).ok_or(Error::Unauthorized)?;
    // The authorizer may also hand the scopes over as a list.
    let listed_scopes = jwt.scopes.as_ref().map(|scopes| scopes.join(" "));
    let role = trusted.role(TokenClaims {
        groups: claim("cognito:groups"),
        scope: claim("scope").or(listed_scopes.as_deref()),
        client_id: claim("client_id"),
    });
    Ok(Caller { sub, role })
}

/// The user named in `Credits-User`, if the request names one. One user:
/// API Gateway joins a repeated header with commas, so a comma is refused
/// rather than read as a user called "alice,bob".
fn named_user(req: &Request) -> Result<Option<UserId>> {
    let Some(value) = req.headers().get(USER_HEADER) else { return Ok(None) };
    let invalid = || Invalid::new(USER_HEADER, Problem::Length { min: 1, max: UserId::MAX_LEN });
    let text = value.to_str().map_err(|_| invalid())?;
    if text.contains(',') {
        return Err(Invalid::new(USER_HEADER, Problem::WrongType).into());
    }
    UserId::parse(text.trim()).map(Some).ok_or_else(|| invalid().into())
}

impl Caller {
    /// The user a user-scoped route (balance, history, reserve) acts on.
    pub fn subject(&self, req: &Request) -> Result<UserId> {
        principal::subject(self.role, &self.sub, named_user(req)?)
    }

    /// Whose hold a route on one hold may touch (`None`: anyone's).
    pub fn hold_owner(&self, req: &Request) -> Result<Option<UserId>> {
        principal::hold_owner(self.role, &self.sub, named_user(req)?)
    }
}
