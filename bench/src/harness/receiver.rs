//! A webhook receiver in the bench, for the events section.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use credits_shared::domain::UserId;
use serde_json::Value;

/// A webhook receiver: records when each delivery arrived, answers as
/// scripted, then 204.
#[derive(Default)]
struct Inbox {
    got: Vec<(Instant, Value)>,
    answers: VecDeque<u16>,
}

pub struct Receiver {
    pub url: String,
    inbox: Arc<Mutex<Inbox>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

async fn receive(State(inbox): State<Arc<Mutex<Inbox>>>, body: Bytes) -> StatusCode {
    let arrived = Instant::now();
    let mut inbox = inbox.lock().unwrap_or_else(PoisonError::into_inner);
    inbox.got.push((arrived, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    let status = inbox.answers.pop_front().unwrap_or(204);
    StatusCode::from_u16(status).unwrap_or(StatusCode::NO_CONTENT)
}

impl Receiver {
    pub async fn start(answers: &[u16]) -> Result<Receiver, String> {
        let inbox = Arc::new(Mutex::new(Inbox { got: Vec::new(), answers: answers.iter().copied().collect() }));
        let app = axum::Router::new().fallback(receive).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let url = format!("http://{}/hooks/credits", listener.local_addr().map_err(|e| e.to_string())?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Receiver { url, inbox, shutdown: Some(tx) })
    }

    pub fn count(&self) -> usize {
        self.inbox.lock().unwrap_or_else(PoisonError::into_inner).got.len()
    }

    /// When `user`'s `grant.created` arrived, waiting up to `within`.
    pub async fn arrival(&self, user: &UserId, within: Duration) -> Result<Instant, String> {
        let until = Instant::now() + within;
        loop {
            let found = {
                let inbox = self.inbox.lock().unwrap_or_else(PoisonError::into_inner);
                inbox
                    .got
                    .iter()
                    .find(|(_, e)| e["userId"] == user.as_str() && e["type"] == "grant.created")
                    .map(|(at, _)| *at)
            };
            if let Some(at) = found {
                return Ok(at);
            }
            if Instant::now() > until {
                return Err(format!("no grant.created for {user} within {} s", within.as_secs()));
            }
            // The arrival is stamped by the handler: this wait adds nothing to it.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
