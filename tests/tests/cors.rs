//! CORS of the real dev server (`credits serve` with
//! `CREDITS_ALLOWED_ORIGINS`), as API Gateway answers it with the
//! template's `AllowedOrigins`; and the template lists what the dev server
//! does.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use credits_cli::cors::{self, ORIGINS_VARIABLE};
use reqwest::{Method, StatusCode};

const APP: &str = "http://localhost:3001";

/// `credits serve` as `make run` starts it, on a free port, over a fresh
/// table of this process's DynamoDB Local.
struct Served {
    child: Child,
    base: String,
    user_token: String,
    printed: String,
}

impl Served {
    async fn start(origins: Option<&str>) -> Served {
        // DynamoDB Local serving before the server creates its table.
        drop(credits_tests::TestEnv::new().await);
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("port").port();
        let mut command = Command::new(credits_tests::credits_bin());
        command
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DYNAMODB_ENDPOINT", credits_tests::endpoint())
            .env("CREDITS_TABLE", format!("t-{}", uuid::Uuid::new_v4().simple()))
            .env_remove("CREDITS_DEV_JWT_SECRET")
            .env_remove(ORIGINS_VARIABLE)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(origins) = origins {
            command.env(ORIGINS_VARIABLE, origins);
        }
        let mut child = command.spawn().expect("start credits serve");
        // Read all it prints (its logs too), so it never blocks on a full pipe.
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut printed = String::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    printed.push_str(&line);
                    printed.push('\n');
                    if line.starts_with("Ctrl-C stops") {
                        break;
                    }
                }
                Err(_) => panic!("credits serve did not start:\n{printed}"),
            }
        }
        let user_token =
            printed.lines().find_map(|l| l.strip_prefix("export USER_TOKEN=")).expect("a user token").to_owned();
        Served { child, base: format!("http://127.0.0.1:{port}"), user_token, printed }
    }

    async fn request(&self, method: Method, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().expect("text"))
}

fn has_cors_headers(response: &reqwest::Response) -> bool {
    response.headers().keys().any(|k| k.as_str().starts_with("access-control-"))
}

#[tokio::test]
async fn an_allowed_origin_gets_preflights_and_cors_headers_from_the_dev_server() {
    let served = Served::start(Some(&format!("{APP}, https://app.example.com"))).await;
    assert!(served.printed.contains("CORS for browsers on: http://localhost:3001, https://app.example.com"));

    // The preflight of a balance read: answered before any token check.
    let preflight = [
        ("origin", APP),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "authorization,accept-language"),
    ];
    let answer = served.request(Method::OPTIONS, "/v1/balance", &preflight).await;
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&answer, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&answer, "access-control-allow-methods"), Some("GET,POST,PUT,DELETE"));
    assert_eq!(
        header(&answer, "access-control-allow-headers"),
        Some("authorization,content-type,idempotency-key,credits-user,accept-language")
    );
    assert_eq!(header(&answer, "access-control-max-age"), Some("600"));
    assert_eq!(header(&answer, "vary"), Some("origin"));
    assert!(answer.text().await.expect("body").is_empty());

    // Another origin: no CORS headers, so the browser refuses.
    let other = [("origin", "http://localhost:3000"), ("access-control-request-method", "GET")];
    let answer = served.request(Method::OPTIONS, "/v1/balance", &other).await;
    assert!(!has_cors_headers(&answer), "{:?}", answer.headers());

    // The read itself, with the user's token.
    let bearer = format!("Bearer {}", served.user_token);
    let read = served.request(Method::GET, "/v1/balance", &[("origin", APP), ("authorization", &bearer)]).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(header(&read, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&read, "access-control-expose-headers"), Some("idempotent-replayed,retry-after"));
    assert_eq!(header(&read, "vary"), Some("origin"));
    // A refusal is readable too (the browser shows why), and goes to no other origin.
    let refused = served.request(Method::GET, "/v1/balance", &[("origin", "https://app.example.com")]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&refused, "access-control-allow-origin"), Some("https://app.example.com"));
    let elsewhere = served
        .request(Method::GET, "/v1/balance", &[("origin", "https://evil.example"), ("authorization", &bearer)])
        .await;
    assert_eq!(elsewhere.status(), StatusCode::OK);
    assert!(!has_cors_headers(&elsewhere), "{:?}", elsewhere.headers());
    // An OPTIONS that is no preflight goes to the routes: there is none.
    let options = served.request(Method::OPTIONS, "/v1/balance", &[("origin", APP)]).await;
    assert_eq!(options.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_allowed_origins_the_dev_server_sends_no_cors_headers() {
    let served = Served::start(None).await;
    assert!(!served.printed.contains("CORS"), "{}", served.printed);
    let preflight = [("origin", APP), ("access-control-request-method", "GET")];
    let answer = served.request(Method::OPTIONS, "/v1/balance", &preflight).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND, "as a route the API does not have");
    assert!(!has_cors_headers(&answer), "{:?}", answer.headers());
    let bearer = format!("Bearer {}", served.user_token);
    let read = served.request(Method::GET, "/v1/balance", &[("origin", APP), ("authorization", &bearer)]).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert!(!has_cors_headers(&read), "{:?}", read.headers());
}

/// template.yaml's `CorsConfiguration` allows what the dev server allows.
#[test]
fn the_template_configures_the_cors_of_the_dev_server() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let template: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("template.yaml")).expect("template.yaml"))
            .expect("yaml");
    let serde_yaml::Value::Tagged(only_if) = &template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]
    else {
        panic!("CorsConfiguration: !If [HasAllowedOrigins, ..., !Ref AWS::NoValue]");
    };
    assert_eq!(only_if.tag, "If");
    assert_eq!(only_if.value[0], "HasAllowedOrigins");
    let config = &only_if.value[1];
    let list = |key: &str| -> Vec<String> {
        config[key].as_sequence().expect(key).iter().map(|v| v.as_str().expect("text").to_owned()).collect()
    };
    assert_eq!(list("AllowHeaders"), cors::ALLOW_HEADERS);
    assert_eq!(list("AllowMethods"), cors::ALLOW_METHODS);
    assert_eq!(list("ExposeHeaders"), cors::EXPOSE_HEADERS);
    assert_eq!(config["MaxAge"].as_u64(), Some(u64::from(cors::MAX_AGE)));
    assert!(config.get("AllowCredentials").is_none(), "a bearer token needs no credentials");
}
