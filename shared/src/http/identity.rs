//! Who is calling, from the JWT claims API Gateway's authorizer (or the dev
//! server, in the same shape) put in the request context. What each kind
//! of caller may do is `domain::principal`'s table; how a caller that may
//! not is answered, and whom a caller acts for, is here.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::domain::principal::{Access, Role, TokenClaims, TrustedClients, USER_HEADER};
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
        subject(self.role, &self.sub, named_user(req)?)
    }

    /// Whose hold a route on one hold may touch (`None`: anyone's).
    pub fn hold_owner(&self, req: &Request) -> Result<Option<UserId>> {
        hold_owner(self.role, &self.sub, named_user(req)?)
    }
}

/// The refusal for a route this role may not use.
pub fn refusal(role: Role, access: Access) -> Error {
    match (role, access) {
        (Role::User, Access::Write) => Error::ReadOnlyToken,
        _ => Error::Forbidden,
    }
}

/// The user a user-scoped request (balance, history, reserve) is about.
/// A server or admin must name it in `Credits-User`; a user token is about
/// its own `sub`, and naming anyone else is refused.
pub fn subject(role: Role, sub: &UserId, named: Option<UserId>) -> Result<UserId> {
    match (role, named) {
        (Role::User, Some(named)) if named != *sub => Err(Error::Forbidden),
        (Role::User, _) => Ok(sub.clone()),
        (Role::Server | Role::Admin, Some(named)) => Ok(named),
        (Role::Server | Role::Admin, None) => Err(Invalid::new(USER_HEADER, Problem::Missing).into()),
    }
}

/// Whose holds a request on one hold may see: a user only their own; a
/// server only the user it names in `Credits-User` (another user's hold
/// then answers 404), so that a hold id leaked from a browser reaches
/// nothing; an admin the named user's, or any (`None`) without the header.
pub fn hold_owner(role: Role, sub: &UserId, named: Option<UserId>) -> Result<Option<UserId>> {
    match (role, named) {
        (Role::User, Some(named)) if named != *sub => Err(Error::Forbidden),
        (Role::User, _) => Ok(Some(sub.clone())),
        (Role::Server, None) => Err(Invalid::new(USER_HEADER, Problem::Missing).into()),
        (Role::Server | Role::Admin, named) => Ok(named),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_token_writing_is_told_it_only_reads() {
        assert!(matches!(refusal(Role::User, Access::Write), Error::ReadOnlyToken));
        assert!(matches!(refusal(Role::Server, Access::Admin), Error::Forbidden));
    }

    #[test]
    fn acting_for_a_user() {
        let alice = UserId::parse("alice").expect("valid");
        let bob = UserId::parse("bob").expect("valid");
        assert_eq!(subject(Role::User, &alice, None).ok(), Some(alice.clone()));
        assert_eq!(subject(Role::User, &alice, Some(alice.clone())).ok(), Some(alice.clone()));
        assert!(matches!(subject(Role::User, &alice, Some(bob.clone())), Err(Error::Forbidden)));
        assert!(matches!(subject(Role::Server, &alice, None), Err(Error::Validation(_))));
        assert_eq!(subject(Role::Server, &alice, Some(bob.clone())).ok(), Some(bob.clone()));
        assert!(matches!(hold_owner(Role::Server, &alice, None), Err(Error::Validation(_))));
        assert_eq!(hold_owner(Role::Server, &alice, Some(bob.clone())).ok(), Some(Some(bob.clone())));
        assert_eq!(hold_owner(Role::Admin, &alice, None).ok(), Some(None));
        assert_eq!(hold_owner(Role::Admin, &alice, Some(bob.clone())).ok(), Some(Some(bob.clone())));
        assert_eq!(hold_owner(Role::User, &alice, None).ok(), Some(Some(alice.clone())));
        assert!(matches!(hold_owner(Role::User, &alice, Some(bob)), Err(Error::Forbidden)));
    }
}
