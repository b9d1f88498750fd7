//! What API Gateway does before any function runs, as template.yaml sets
//! it up: the write routes of holds admit only tokens with the server's or
//! the operators' scope (a user's token is refused there with a 403, and the
//! function checks again), and the users' read routes and the server's write
//! routes are throttled apart. Which route is which comes from the code's
//! route table (`ROUTES` and each route's `access`), so a write route added
//! there is held to the same rules.

use credits_shared::domain::principal::{Access, ADMIN_SCOPE, SERVER_SCOPE};
use credits_shared::http::{Route, ROUTES};
use serde_yaml::Value;

fn template() -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    serde_yaml::from_str(&std::fs::read_to_string(root.join("template.yaml")).expect("template.yaml")).expect("yaml")
}

/// Every HttpApi event of the template with the route it serves.
fn routes_in(template: &Value) -> Vec<(&'static Route, Value)> {
    let mut found = Vec::new();
    for (_, resource) in template["Resources"].as_mapping().expect("resources") {
        for (_, event) in resource["Properties"]["Events"].as_mapping().into_iter().flatten() {
            if event["Type"] != "HttpApi" {
                continue;
            }
            let props = &event["Properties"];
            let method = props["Method"].as_str().expect("method").to_uppercase();
            let path = props["Path"].as_str().expect("path");
            let route = ROUTES
                .iter()
                .find(|r| r.method == method && r.path == path)
                .unwrap_or_else(|| panic!("{method} {path} is not in the route table"));
            found.push((route, props.clone()));
        }
    }
    found
}

/// The parameter a `!Ref` names.
fn referenced(value: &Value) -> Option<&str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        _ => None,
    }
}

#[test]
fn every_write_route_of_holds_admits_only_the_server_and_admin_scopes() {
    let template = template();
    let writes = ROUTES.iter().filter(|r| r.op.access() == Some(Access::Write)).count();
    assert!(writes > 0, "the route table has write routes");
    // Scopes on the authorizer itself would apply to every route, reads too.
    let authorizers = &template["Resources"]["HttpApi"]["Properties"]["Auth"]["Authorizers"];
    for (name, authorizer) in authorizers.as_mapping().expect("authorizers") {
        assert!(authorizer["AuthorizationScopes"].is_null(), "authorizer {name:?} has scopes for every route");
    }

    let mut checked = 0;
    for (route, props) in routes_in(&template) {
        let auth = &props["Auth"];
        let scopes: Vec<&str> =
            auth["AuthorizationScopes"].as_sequence().into_iter().flatten().filter_map(Value::as_str).collect();
        let what = format!("{} {}", route.method, route.path);
        if route.op.access() == Some(Access::Write) {
            assert_eq!(scopes, [SERVER_SCOPE, ADMIN_SCOPE], "{what}: the write routes' scopes");
            // The stack's JWT authorizer (the default), never none.
            assert!(auth["Authorizer"].is_null() || auth["Authorizer"] == "Jwt", "{what}: {:?}", auth["Authorizer"]);
            checked += 1;
        } else {
            // Users read with their own token; operators signed in through
            // the user pool carry no custom scope.
            assert!(auth["AuthorizationScopes"].is_null(), "{what} is no write route of holds but has scopes");
        }
    }
    assert_eq!(checked, writes, "every write route of the route table is in the template");
}

#[test]
fn the_users_reads_and_the_servers_writes_are_throttled_apart() {
    let template = template();
    let default = &template["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"];
    assert_eq!(referenced(&default["ThrottlingRateLimit"]), Some("ThrottlingRateLimit"));
    assert_eq!(referenced(&default["ThrottlingBurstLimit"]), Some("ThrottlingBurstLimit"));
    for (route, props) in routes_in(&template) {
        let what = format!("{} {}", route.method, route.path);
        let settings = &props["RouteSettings"];
        let prefix = match route.op.access() {
            Some(Access::Read) => "User",
            Some(Access::Write) => "Server",
            // Admin routes and provider webhooks: the stage's default.
            _ => {
                assert!(settings.is_null(), "{what}: the default throttling");
                continue;
            }
        };
        for limit in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
            let parameter = format!("{prefix}{limit}");
            assert_eq!(referenced(&settings[limit]), Some(parameter.as_str()), "{what}: {limit}");
            assert_eq!(template["Parameters"][&parameter]["Type"], "Number", "{what}: the parameter {parameter}");
        }
    }
}
