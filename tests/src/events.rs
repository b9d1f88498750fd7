//! What the events tests receive with: a webhook receiver that records
//! every delivery and answers as scripted, the reference library's verdict
//! on what it got, moto's EventBridge with a rule into an SQS queue, and a
//! resolver whose answers the test writes (`Hosts`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use serde_json::{json, Value};

/// One delivery as the receiver got it.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Received {
    pub fn id(&self) -> &str {
        self.headers.get("webhook-id").map(String::as_str).unwrap_or("")
    }

    pub fn event(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct Script {
    got: Vec<Received>,
    /// Statuses to answer with, in order; then 200.
    answers: VecDeque<u16>,
}

pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    /// A receiver that answers the given statuses first, then 200.
    pub async fn start(answers: &[u16]) -> Receiver {
        let script = Arc::new(Mutex::new(Script { got: Vec::new(), answers: answers.iter().copied().collect() }));
        let app = Router::new().fallback(receive).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let url = format!("http://{}/hooks/credits", listener.local_addr().expect("address"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Receiver { url, script, shutdown: Some(tx) }
    }

    pub fn got(&self) -> Vec<Received> {
        self.script.lock().expect("receiver state").got.clone()
    }

    pub fn answer_next(&self, answers: &[u16]) {
        self.script.lock().expect("receiver state").answers.extend(answers.iter().copied());
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn receive(State(script): State<Arc<Mutex<Script>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut script = script.lock().expect("receiver state");
    let headers =
        headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    script.got.push(Received { headers, body: String::from_utf8_lossy(&body).into_owned() });
    let status = script.answers.pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}

/// Names and their addresses, as the test writes (and rewrites, as DNS
/// changes): the lookup of webhook deliveries (`Outbox::with_lookup`).
/// Counts the lookups of each name; a name not written is not found.
#[derive(Clone, Default)]
pub struct Hosts {
    table: Arc<Mutex<HashMap<String, Vec<IpAddr>>>>,
    lookups: Arc<Mutex<HashMap<String, u32>>>,
}

impl Hosts {
    /// `name` resolves to `addresses` from now on.
    pub fn set(&self, name: &str, addresses: &[&str]) {
        let parsed = addresses.iter().map(|a| a.parse().unwrap_or_else(|_| panic!("{a} is no address"))).collect();
        self.table.lock().expect("hosts").insert(name.to_owned(), parsed);
    }

    /// How often `name` was looked up.
    pub fn lookups(&self, name: &str) -> u32 {
        self.lookups.lock().expect("hosts").get(name).copied().unwrap_or(0)
    }
}

impl reqwest::dns::Resolve for Hosts {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        *self.lookups.lock().expect("hosts").entry(name.as_str().to_owned()).or_default() += 1;
        let found = self.table.lock().expect("hosts").get(name.as_str()).cloned();
        Box::pin(async move {
            let addresses = found.ok_or_else(|| std::io::Error::other("no such name"))?;
            let addrs: Vec<SocketAddr> = addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The repository's virtualenv (made by `make deps`).
fn venv_bin(name: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let bin = root.join(".venv/bin").join(name);
    assert!(bin.exists(), "{} is missing: run `make deps` (requirements-dev.txt installs it)", bin.display());
    bin
}

/// The event ids the Standard Webhooks reference library (PyPI
/// `standardwebhooks`) accepts, in order; panics at the first it refuses.
pub fn verify_with_reference_library(secret: &str, deliveries: &[Received]) -> Vec<String> {
    use std::io::Write;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let mut child = std::process::Command::new(venv_bin("python"))
        .arg(root.join("scripts/verify-webhooks.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the verifier");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for d in deliveries {
            let line = json!({"secret": secret, "headers": d.headers, "body": d.body});
            writeln!(stdin, "{line}").expect("write to the verifier");
        }
    }
    let out = child.wait_with_output().expect("verifier output");
    assert!(out.status.success(), "the reference library refused a delivery: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// moto's server: EventBridge (and SQS, where a rule sends what arrived).
pub struct Moto {
    pub endpoint: String,
    child: std::process::Child,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("port").port();
        let child = std::process::Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), child };
        for _ in 0..200 {
            if reqwest::get(format!("{}/moto-api/", moto.endpoint)).await.is_ok() {
                return moto;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("moto_server did not start on {}", moto.endpoint);
    }

    /// One call in the AWS JSON protocol (moto routes by the signing scope).
    pub async fn call(&self, service: &str, target: &str, body: Value) -> Value {
        let (prefix, content_type) = match service {
            "events" => ("AWSEvents", "application/x-amz-json-1.1"),
            _ => ("AmazonSQS", "application/x-amz-json-1.0"),
        };
        let response = reqwest::Client::new()
            .post(&self.endpoint)
            .header(
                "authorization",
                format!("AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
            )
            .header("x-amz-target", format!("{prefix}.{target}"))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .expect("call moto");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "moto {service} {target}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A bus whose every `credits` event lands in a queue; the queue's URL.
    pub async fn bus_into_queue(&self, bus: &str) -> String {
        self.call("events", "CreateEventBus", json!({"Name": bus})).await;
        let queue = self.call("sqs", "CreateQueue", json!({"QueueName": format!("{bus}-q")})).await;
        let rule = json!({"Name": "all", "EventBusName": bus, "EventPattern": r#"{"source":["credits"]}"#});
        self.call("events", "PutRule", rule).await;
        let arn = format!("arn:aws:sqs:us-east-1:123456789012:{bus}-q");
        let targets = json!({"Rule": "all", "EventBusName": bus, "Targets": [{"Id": "q", "Arn": arn}]});
        self.call("events", "PutTargets", targets).await;
        queue["QueueUrl"].as_str().expect("queue url").to_owned()
    }

    /// Every EventBridge envelope waiting in the queue (taken off it).
    pub async fn drain(&self, queue: &str) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let got = self
                .call(
                    "sqs",
                    "ReceiveMessage",
                    json!({"QueueUrl": queue, "MaxNumberOfMessages": 10, "VisibilityTimeout": 300}),
                )
                .await;
            let messages = got["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                return out;
            }
            for message in messages {
                out.push(serde_json::from_str(message["Body"].as_str().unwrap_or("null")).unwrap_or(Value::Null));
            }
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Stripe-Signature` headers made by Stripe's own library (npm `stripe`,
/// through `scripts/stripe-sign.mjs`), one per `(payload, secret, timestamp)`.
pub fn signed_by_stripe(cases: &[(String, String, i64)]) -> Vec<String> {
    use std::io::Write;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let mut child = std::process::Command::new("node")
        .arg(root.join("scripts/stripe-sign.mjs"))
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        for (payload, secret, timestamp) in cases {
            let line = json!({"payload": payload, "secret": secret, "timestamp": timestamp});
            writeln!(stdin, "{line}").expect("write to node");
        }
    }
    let out = child.wait_with_output().expect("node output");
    assert!(out.status.success(), "stripe-sign.mjs (run `make deps`): {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}
