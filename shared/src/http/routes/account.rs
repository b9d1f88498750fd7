//! The account routes: a user's balance and history, the prices.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use super::history;
use crate::error::Error;
use crate::error::Result;
use crate::http::identity::Caller;
use crate::http::{json, Op};
use crate::ledger::Ledger;

pub(super) async fn handle(ledger: &Ledger, op: Op, req: &Request, caller: &Caller) -> Result<Response<Body>> {
    match op {
        Op::GetBalance => Ok(json(StatusCode::OK, &ledger.balance(&caller.subject(req)?).await?)),
        Op::GetPrices => Ok(json(StatusCode::OK, ledger.prices().await?.as_ref())),
        Op::ListTransactions => history(ledger, &caller.subject(req)?, req).await,
        _ => Err(Error::RouteNotFound),
    }
}
