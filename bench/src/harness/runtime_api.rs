//! A local Lambda Runtime API (the part of it a function uses): the bench
//! starts a function's binary against it, queues events, and notes when the
//! function first asks for work and when each answer arrives.
//! <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::{mpsc, Mutex};

/// How long a function has for each invocation (its deadline header).
const INVOCATION_TIMEOUT: Duration = Duration::from_secs(30);

struct Invocation {
    id: String,
    event: Value,
}

/// What the function sent back for one invocation (or for its init).
#[derive(Debug)]
pub struct Answer {
    pub id: String,
    pub at: Instant,
    pub ok: bool,
    pub body: Bytes,
}

struct Shared {
    /// Held by the one `next` request waiting for an event: a function
    /// asks for its next event only after answering the previous one.
    queue: Mutex<mpsc::UnboundedReceiver<Invocation>>,
    answers: mpsc::UnboundedSender<Answer>,
    first_next: OnceLock<Instant>,
}

/// One execution environment's Runtime API, on a free local port.
pub struct RuntimeApi {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Invocation>,
    answers: mpsc::UnboundedReceiver<Answer>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn start() -> Result<RuntimeApi, String> {
        let (events, queue) = mpsc::unbounded_channel();
        let (answered, answers) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared { queue: Mutex::new(queue), answers: answered, first_next: OnceLock::new() });
        let routes = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener =
            tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.map_err(|e| format!("runtime API: {e}"))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, routes).await;
        });
        Ok(RuntimeApi { address, shared, events, answers, server })
    }

    /// Queues an event; the function gets it at its next `next`.
    pub fn queue(&self, event: Value) -> Result<String, String> {
        let id = uuid::Uuid::new_v4().to_string();
        self.events.send(Invocation { id: id.clone(), event }).map_err(|_| "runtime API stopped".to_owned())?;
        Ok(id)
    }

    /// The function's answer to invocation `id`, or its init error.
    pub async fn answer(&mut self, id: &str, within: Duration) -> Result<Answer, String> {
        let answer = tokio::time::timeout(within, self.answers.recv())
            .await
            .map_err(|_| format!("no answer within {} s", within.as_secs()))?
            .ok_or("runtime API stopped")?;
        match answer.id.as_str() {
            "init" => Err(format!("init error: {}", String::from_utf8_lossy(&answer.body))),
            other if other != id => Err(format!("answer to {other}, expected {id}")),
            _ => Ok(answer),
        }
    }

    pub async fn invoke(&mut self, event: Value, within: Duration) -> Result<Answer, String> {
        let id = self.queue(event)?;
        self.answer(&id, within).await
    }

    /// When the function first asked for an event.
    pub fn first_next(&self) -> Option<Instant> {
        self.shared.first_next.get().copied()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    // Only the first call counts; later ones find it set.
    let _ = shared.first_next.set(Instant::now());
    let Some(invocation) = shared.queue.lock().await.recv().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + INVOCATION_TIMEOUT;
    let headers = [
        ("lambda-runtime-aws-request-id", invocation.id),
        ("lambda-runtime-deadline-ms", deadline.as_millis().to_string()),
        ("lambda-runtime-invoked-function-arn", "arn:aws:lambda:us-east-1:000000000000:function:bench".to_owned()),
        ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000;Sampled=0".to_owned()),
        ("content-type", "application/json".to_owned()),
    ];
    (headers, invocation.event.to_string()).into_response()
}

async fn response(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let _ = shared.answers.send(Answer { id, at: Instant::now(), ok: true, body });
    StatusCode::ACCEPTED
}

async fn error(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let _ = shared.answers.send(Answer { id, at: Instant::now(), ok: false, body });
    StatusCode::ACCEPTED
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let _ = shared.answers.send(Answer { id: "init".into(), at: Instant::now(), ok: false, body });
    StatusCode::ACCEPTED
}
