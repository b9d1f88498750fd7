//! The account routes: a user's balance, history and auto-recharge, the
//! prices.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use super::history;
use crate::domain::recharge::MAX_MONTHLY_RECHARGES;
use crate::domain::{Credits, MAX_AMOUNT};
use crate::error::Error;
use crate::error::Result;
use crate::http::identity::Caller;
use crate::http::{json, Op};
use crate::ledger::{Ledger, RechargeRequest};
use crate::validate::{self, json_body};

pub(super) async fn handle(ledger: &Ledger, op: Op, req: &Request, caller: &Caller) -> Result<Response<Body>> {
    match op {
        Op::GetBalance => Ok(json(StatusCode::OK, &ledger.balance(&caller.subject(req)?).await?)),
        Op::GetPrices => Ok(json(StatusCode::OK, ledger.prices().await?.as_ref())),
        Op::ListTransactions => history(ledger, &caller.subject(req)?, req).await,
        Op::GetAutoRecharge => Ok(json(StatusCode::OK, &ledger.auto_recharge(&caller.subject(req)?).await?)),
        Op::SetAutoRecharge => {
            let user = caller.subject(req)?;
            let body: RechargeBody = json_body(req.body().as_ref())?;
            validate::text("pack", &body.pack, 1, MAX_PACK_NAME)?;
            let threshold = validate::range("threshold", body.threshold, 1, MAX_AMOUNT)?;
            let limit = validate::range("monthlyLimit", body.monthly_limit, 1, u64::from(MAX_MONTHLY_RECHARGES))?;
            let request = RechargeRequest {
                pack: body.pack,
                threshold: Credits(threshold),
                monthly_limit: limit as u32,
                actor: caller.sub.to_string(),
            };
            Ok(json(StatusCode::OK, &ledger.set_auto_recharge(&user, request).await?))
        }
        Op::EndAutoRecharge => Ok(json(StatusCode::OK, &ledger.end_auto_recharge(&caller.subject(req)?).await?)),
        _ => Err(Error::RouteNotFound),
    }
}

/// The longest pack name accepted (the catalog's are short words).
const MAX_PACK_NAME: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RechargeBody {
    pack: String,
    threshold: u64,
    monthly_limit: u64,
}
