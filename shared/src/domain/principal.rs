//! Who the caller is and what each kind of caller may do. The person who
//! pays never decides what they pay: only the app's back end (server),
//! operators (admin) and signed webhooks move credits; a user token reads.

pub const ADMIN_GROUP: &str = "credits-admin";
pub const ADMIN_SCOPE: &str = "credits/admin";
pub const SERVER_SCOPE: &str = "credits/server";
/// The header a server or admin names the user it acts for in.
pub const USER_HEADER: &str = "Credits-User";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The app's end user: reads their own balance, history and holds.
    User,
    /// The app's back end: reads and writes for any user.
    Server,
    /// Operators: all a server may, plus the admin routes.
    Admin,
}

/// What a route needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Admin,
}

impl Role {
    /// The one table of who may do what.
    pub fn may(self, access: Access) -> bool {
        match (self, access) {
            (_, Access::Read) => true,
            (Role::User, Access::Write | Access::Admin) => false,
            (Role::Server, Access::Write) => true,
            (Role::Server, Access::Admin) => false,
            (Role::Admin, Access::Write | Access::Admin) => true,
        }
    }
}

/// What a verified token says about its bearer, as the authorizer hands
/// it over (claims are strings; lists arrive as `"[a b]"`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenClaims<'a> {
    pub groups: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub client_id: Option<&'a str>,
}

/// The app clients trusted with the `credits/server` and `credits/admin`
/// scopes. A scope alone is not enough: in Cognito a custom scope belongs
/// to an app client, so anyone signing in through a client that allows it
/// would carry it; the client id list closes that door.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedClients {
    server: Vec<String>,
    admin: Vec<String>,
}

impl TrustedClients {
    /// From comma-separated lists (`CREDITS_SERVER_CLIENT_IDS`,
    /// `CREDITS_ADMIN_CLIENT_IDS`); empty entries are ignored.
    pub fn new(server: &str, admin: &str) -> TrustedClients {
        TrustedClients { server: split_list(server), admin: split_list(admin) }
    }

    /// The same, with `server` as the back end's clients instead.
    pub fn with_server_clients(self, server: &str) -> TrustedClients {
        TrustedClients { server: split_list(server), ..self }
    }

    pub fn role(&self, claims: TokenClaims<'_>) -> Role {
        let scoped = |scope: &str, clients: &[String]| {
            claims.scope.is_some_and(|s| list_contains(s, scope))
                && claims.client_id.is_some_and(|id| clients.iter().any(|c| c == id))
        };
        let in_admin_group = claims.groups.is_some_and(|g| groups(g).iter().any(|name| name == ADMIN_GROUP));
        if in_admin_group || scoped(ADMIN_SCOPE, &self.admin) {
            Role::Admin
        } else if scoped(SERVER_SCOPE, &self.server) {
            Role::Server
        } else {
            Role::User
        }
    }
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// OAuth's `scope` is space-separated (RFC 6749, 3.3).
fn list_contains(raw: &str, wanted: &str) -> bool {
    raw.split_whitespace().any(|part| part == wanted)
}

/// The groups of a `cognito:groups` claim, read strictly: a JSON array of
/// strings, or the `[a b]` API Gateway makes of a list claim (one pair of
/// brackets, names separated by whitespace only). Anything else is no group
/// at all: group names may hold commas, quotes and brackets (apps create
/// groups from names users type), so splitting on them would make a member
/// of `x,credits-admin` an admin.
fn groups(raw: &str) -> Vec<String> {
    if let Ok(names) = serde_json::from_str::<Vec<String>>(raw) {
        return names;
    }
    let Some(inner) = raw.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) else { return Vec::new() };
    if inner.contains(['[', ']', '"', ',']) {
        return Vec::new();
    }
    inner.split_whitespace().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedClients {
        TrustedClients::new("backend, ,other-backend", "ops-tool")
    }

    fn role(groups: Option<&str>, scope: Option<&str>, client_id: Option<&str>) -> Role {
        trusted().role(TokenClaims { groups, scope, client_id })
    }

    #[test]
    fn groups_are_a_json_array_or_one_pair_of_brackets_around_names() {
        let admin = |raw: &str| groups(raw).iter().any(|g| g == ADMIN_GROUP);
        for raw in [
            "[credits-admin]",
            "[credits-admin other]",
            "[other\tcredits-admin]",
            "[ credits-admin ]",
            "[\"credits-admin\"]",
            "[\"other\", \"credits-admin\"]",
        ] {
            assert!(admin(raw), "{raw} names the admin group");
        }
        for raw in [
            "x,credits-admin",
            "[x,credits-admin]",
            "[x, credits-admin]",
            "[\"x,credits-admin\"]",
            "[[credits-admin]]",
            "[credits-admin]]",
            "[[credits-admin]",
            "credits-admin\"",
            "[credits-admin\"]",
            "[\"credits-admin\" other]",
            "credits-admin",
            "[credits-admins]",
            "[\"credits-admin\", 1]",
            "",
        ] {
            assert!(!admin(raw), "{raw} is no admin group");
        }
        assert_eq!(groups("[a b]"), ["a", "b"]);
        assert_eq!(groups("[x,credits-admin]"), Vec::<String>::new(), "anything else is no group at all");
    }

    #[test]
    fn scopes_are_space_separated() {
        assert!(list_contains("openid credits/admin", ADMIN_SCOPE));
        assert!(!list_contains("openid,credits/admin", ADMIN_SCOPE));
    }

    #[test]
    fn the_admin_group_makes_an_admin() {
        assert_eq!(role(Some("[credits-admin other]"), None, None), Role::Admin);
        assert_eq!(role(Some("[other]"), None, None), Role::User);
        assert_eq!(role(Some("[x,credits-admin]"), None, None), Role::User);
    }

    #[test]
    fn a_scope_needs_a_listed_client() {
        assert_eq!(role(None, Some("credits/server"), Some("backend")), Role::Server);
        assert_eq!(role(None, Some("openid credits/server"), Some("other-backend")), Role::Server);
        assert_eq!(role(None, Some("credits/server"), Some("browser-app")), Role::User);
        assert_eq!(role(None, Some("credits/server"), None), Role::User);
        assert_eq!(role(None, None, Some("backend")), Role::User);
        assert_eq!(role(None, Some("credits/admin"), Some("ops-tool")), Role::Admin);
        // The server's client is not an admin's, and the other way round.
        assert_eq!(role(None, Some("credits/admin"), Some("backend")), Role::User);
        assert_eq!(role(None, Some("credits/server"), Some("ops-tool")), Role::User);
        assert_eq!(
            TrustedClients::new("", "").role(TokenClaims {
                scope: Some("credits/server"),
                client_id: Some(""),
                groups: None
            }),
            Role::User
        );
    }

    #[test]
    fn replacing_the_server_clients_keeps_the_admin_clients() {
        let dev = trusted().with_server_clients("dev-server");
        let role =
            |scope, client_id| dev.role(TokenClaims { groups: None, scope: Some(scope), client_id: Some(client_id) });
        assert_eq!(role("credits/server", "dev-server"), Role::Server);
        assert_eq!(role("credits/server", "backend"), Role::User);
        assert_eq!(role("credits/admin", "ops-tool"), Role::Admin);
    }

    #[test]
    fn users_read_servers_write_admins_do_all() {
        assert!(Role::User.may(Access::Read));
        assert!(!Role::User.may(Access::Write));
        assert!(!Role::User.may(Access::Admin));
        assert!(Role::Server.may(Access::Write));
        assert!(!Role::Server.may(Access::Admin));
        assert!(Role::Admin.may(Access::Write) && Role::Admin.may(Access::Admin));
    }
}
