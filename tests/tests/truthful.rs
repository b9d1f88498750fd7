//! Truthful failures: when a write committed and the read that follows it
//! failed, the answer says the change was applied (never "may not have
//! been"), and a retry with the same key replays it without applying it
//! twice.

use std::sync::Arc;

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use credits_shared::domain::{Credits, GrantReason};
use credits_shared::http::problem::{problem, Lang};
use credits_shared::ledger::{GrantRequest, Outcome};
use credits_shared::prices::Catalog;
use credits_shared::store::Store;
use credits_shared::{Error, Ledger};
use credits_tests::{user, TestEnv};
use serde_json::Value;

/// Every `GetItem` after the first transaction fails before it is sent, as
/// when the database stops answering between a transaction and the read
/// after it.
#[derive(Debug, Default)]
struct ReadsFail {
    written: AtomicBool,
}

impl Intercept for ReadsFail {
    fn name(&self) -> &'static str {
        "reads-fail"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if context.input().downcast_ref::<TransactWriteItemsInput>().is_some() {
            self.written.store(true, Ordering::SeqCst);
        }
        match context.input().downcast_ref::<GetItemInput>() {
            Some(_) if self.written.load(Ordering::SeqCst) => Err("reads are down".into()),
            _ => Ok(()),
        }
    }
}

#[tokio::test]
async fn a_grant_whose_balance_cannot_be_read_says_it_was_applied_and_replays_once() {
    let env = TestEnv::new().await;
    let config = aws_sdk_dynamodb::config::Builder::from(&env.config).interceptor(ReadsFail::default()).build();
    let store = Store::new(aws_sdk_dynamodb::Client::from_conf(config), env.store.table());
    let blind = Ledger::new(store, env.clock.clone(), Arc::new(Catalog::default_catalog()), 90);
    let alice = user("alice");
    let request = GrantRequest::new(30, GrantReason::Purchase, "order-7", "ops");

    let error = blind.grant(&alice, request.clone()).await.expect_err("the read after the grant fails");
    assert!(matches!(error, Error::AppliedUnread(_)), "{error:?}");
    let answer = problem(&error, Lang::En, "r-1");
    assert_eq!(answer.status().as_u16(), 503);
    let body: Value = serde_json::from_slice(answer.body().as_ref()).expect("json");
    assert_eq!((body["code"].as_str(), body["applied"].as_bool()), (Some("unavailable"), Some(true)));
    assert!(body["detail"].as_str().is_some_and(|d| d.contains("was applied")), "{body}");

    // It was: credited once, and the retry the answer asks for replays it.
    assert_eq!(env.ledger.balance(&alice).await.expect("balance").granted, Credits(30));
    let retried = env.ledger.grant(&alice, request).await.expect("retry");
    assert!(matches!(retried, Outcome::Replayed(ref g) if g.balance.granted == Credits(30)), "{retried:?}");
    env.assert_books_balance().await;
}
