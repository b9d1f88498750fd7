//! A stand-in of Stripe's API for the tests: the PaymentIntents it is told
//! about, answered as Stripe answers (or with the status it is told), and
//! every request recorded with its `Authorization`, so a test can count the
//! calls and see the key they carried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

/// The key the tests' ledgers call the stand-in with.
pub const STAND_IN_KEY: &str = "rk_test_stand_in";

#[derive(Default)]
struct Book {
    answers: HashMap<String, (u16, Value)>,
    requests: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct StripeStandIn {
    pub base: String,
    book: Arc<Mutex<Book>>,
}

impl StripeStandIn {
    pub async fn start() -> StripeStandIn {
        let book = Arc::new(Mutex::new(Book::default()));
        let app = Router::new().route("/v1/payment_intents/{id}", get(payment_intent)).with_state(book.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        StripeStandIn { base, book }
    }

    /// A PaymentIntent whose customer agreed to be charged later.
    pub fn saved_card(&self, id: &str, customer: &str, method: &str) {
        let intent = json!({"id": id, "object": "payment_intent", "status": "succeeded", "customer": customer,
                            "payment_method": method, "setup_future_usage": "off_session"});
        self.answer(id, 200, intent);
    }

    pub fn answer(&self, id: &str, status: u16, body: Value) {
        self.book.lock().expect("book").answers.insert(id.to_owned(), (status, body));
    }

    /// (path, Authorization) of every request, in order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.book.lock().expect("book").requests.clone()
    }
}

async fn payment_intent(
    State(book): State<Arc<Mutex<Book>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let mut book = book.lock().expect("book");
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    book.requests.push((format!("/v1/payment_intents/{id}"), authorization));
    let (status, body) = book.answers.get(&id).cloned().unwrap_or_else(|| {
        let error = json!({"error": {"type": "invalid_request_error", "code": "resource_missing"}});
        (404, error)
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json")], body.to_string())
}
