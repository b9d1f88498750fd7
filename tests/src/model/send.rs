//! Talking to the dev server: each request as the app's back end, the
//! user, an admin or a provider sends it (deliveries signed), its answer
//! read back, and `GET /v1/balance` read as the model's view.

use credits_shared::domain::Timestamp;
use credits_shared::inbound::{bfl, generic};
use credits_shared::store::user_pk;
use futures::future::join_all;
use serde_json::{json, Value};
use uuid::Uuid;

use super::account::{PlanView, View};
use super::answer::{Answer, LotParts};
use super::calendar::{parse_time, rfc3339};
use super::ops::{UserWrite, DEBIT_REASONS, OPERATIONS, PLANS, REASONS};
use super::purchases;
use super::request::{Resolved, Sent};
use super::runner::{Item, Runner};
use super::tally::Tally;
use crate::{text, BFL_SECRETS, GENERIC_SECRETS, USER_HEADER};

impl Runner {
    pub(super) async fn send(&self, op: &Resolved) -> Result<(Answer, Option<Uuid>), String> {
        let base = &self.server.base;
        let post = |path: String, token: &str| self.http.post(format!("{base}{path}")).bearer_auth(token);
        // The app's server acting for a user, as apps call it.
        let for_user =
            |path: String, user: usize| post(path, &self.server_token).header(USER_HEADER, self.users[user].as_str());
        let request = match op {
            Resolved::Grant { user, key, body } => {
                let mut json = json!({"amount": body.amount, "reason": REASONS[body.reason].0});
                if let Some(priority) = body.priority {
                    json["priority"] = json!(priority);
                }
                if let Some(at) = body.expires_at {
                    json["expiresAt"] = json!(rfc3339(at));
                }
                post(format!("/v1/admin/users/{}/grants", self.users[*user]), &self.admin)
                    .header("idempotency-key", format!("grant-{key}"))
                    .json(&json)
            }
            Resolved::Debit { user, key, body } => {
                let mut json = json!({"amount": body.amount, "reason": DEBIT_REASONS[body.reason]});
                if body.partial {
                    json["partial"] = json!(true);
                }
                post(format!("/v1/admin/users/{}/debits", self.users[*user]), &self.admin)
                    .header("idempotency-key", format!("debit-{key}"))
                    .json(&json)
            }
            Resolved::SetPlan { user, request } => {
                let def = PLANS[request.plan];
                let mut json = json!({
                    "plan": def.name, "allowance": def.allowance, "period": def.period.as_str(), "rollover": def.rollover
                });
                if let Some(anchor) = request.anchor {
                    json["anchor"] = json!(rfc3339(anchor));
                }
                self.http
                    .put(format!("{base}/v1/admin/users/{}/plan", self.users[*user]))
                    .bearer_auth(&self.admin)
                    .json(&json)
            }
            Resolved::EndPlan { user } => {
                self.http.delete(format!("{base}/v1/admin/users/{}/plan", self.users[*user])).bearer_auth(&self.admin)
            }
            Resolved::Reserve { user, spec, key } => {
                let mut body =
                    json!({"operation": OPERATIONS[spec.operation], "units": spec.units, "ttlSeconds": spec.ttl});
                if let Some(task) = spec.task {
                    body["taskId"] = json!(self.task_name(task));
                    body["provider"] = json!(Self::provider(task).as_str());
                }
                let mut request = for_user("/v1/reservations".into(), *user).json(&body);
                if let Some(key) = key {
                    request = request.header("idempotency-key", format!("reserve-{key}"));
                }
                request
            }
            Resolved::Confirm { id, units, as_other, explicit } => {
                let owner = self.model.holds.get(id).map_or(0, |h| h.user);
                let caller = if *as_other { (owner + 1) % self.users.len() } else { owner };
                let mut body = match units {
                    Some(units) => json!({"units": units}),
                    None => json!({}),
                };
                if *explicit {
                    body["final"] = json!(true);
                }
                // Naming another user than the hold's: 404, as for a missing hold.
                for_user(format!("/v1/reservations/{id}/confirm"), caller).json(&body)
            }
            Resolved::Capture { id, units, key } => {
                let owner = self.model.holds.get(id).map_or(0, |h| h.user);
                for_user(format!("/v1/reservations/{id}/confirm"), owner)
                    .header("idempotency-key", format!("capture-{key}"))
                    .json(&json!({"units": units, "final": false}))
            }
            Resolved::Extend { id, ttl } => {
                let owner = self.model.holds.get(id).map_or(0, |h| h.user);
                for_user(format!("/v1/reservations/{id}/extend"), owner).json(&json!({"ttlSeconds": ttl}))
            }
            Resolved::Release { id } => {
                let owner = self.model.holds.get(id).map_or(0, |h| h.user);
                for_user(format!("/v1/reservations/{id}/release"), owner).json(&json!({}))
            }
            Resolved::Link { id, task } => {
                let owner = self.model.holds.get(id).map_or(0, |h| h.user);
                for_user(format!("/v1/reservations/{id}/task"), owner)
                    .json(&json!({"taskId": self.task_name(*task), "provider": Self::provider(*task).as_str()}))
            }
            Resolved::Refund { id } => {
                post(format!("/v1/admin/reservations/{id}/refund"), &self.admin).json(&json!({"reason": "model"}))
            }
            Resolved::Webhook(sent) => self.signed(sent),
            Resolved::Stripe { sent, .. } => self.stripe_request(sent),
            Resolved::Sweep => post("/v1/admin/cleanup".into(), &self.admin),
            Resolved::UserWrite { user, id, write } => {
                let token = &self.user_tokens[*user];
                match write {
                    UserWrite::Reserve => {
                        post("/v1/reservations".into(), token).json(&json!({"operation": OPERATIONS[0], "units": 1}))
                    }
                    UserWrite::Confirm => {
                        post(format!("/v1/reservations/{id}/confirm"), token).json(&json!({"units": 1}))
                    }
                    UserWrite::Capture => post(format!("/v1/reservations/{id}/confirm"), token)
                        .header("idempotency-key", "capture-user")
                        .json(&json!({"units": 1, "final": false})),
                    UserWrite::Release => post(format!("/v1/reservations/{id}/release"), token).json(&json!({})),
                    UserWrite::Extend => {
                        post(format!("/v1/reservations/{id}/extend"), token).json(&json!({"ttlSeconds": 3600}))
                    }
                    UserWrite::Link => post(format!("/v1/reservations/{id}/task"), token)
                        .json(&json!({"taskId": self.task_name(0), "provider": Self::provider(0).as_str()})),
                }
            }
            Resolved::Advance { to } => {
                let to = (*to).max(self.server.env.ledger.now().millis());
                self.server.env.clock.set(Timestamp(to));
                return Ok((Answer::Moved, None));
            }
        };
        let response = request.send().await.map_err(|e| format!("{op:?}: {e}"))?;
        let status = response.status().as_u16();
        let replayed = response.headers().get("idempotent-replayed").is_some_and(|v| v.as_bytes() == b"true");
        let problem_json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/problem+json"));
        let body: Value = response.json().await.map_err(|e| format!("{op:?}: body: {e}"))?;
        if problem_json || status >= 400 {
            let code = body["code"].as_str().unwrap_or("?").to_owned();
            return Ok((Answer::Problem { status, code }, None));
        }
        let number = |k: &str| body[k].as_u64().unwrap_or(u64::MAX);
        let answer = match op {
            Resolved::Grant { .. } => Answer::Granted { status },
            Resolved::Debit { .. } => Answer::Debited {
                status,
                amount: number("amount"),
                requested: number("requested"),
                lots: answered_lots(&body["lots"]),
                replayed,
            },
            Resolved::SetPlan { .. } | Resolved::EndPlan { .. } => Answer::Planned { status },
            Resolved::Webhook(_) => Answer::Webhook {
                status,
                result: body["result"].as_str().unwrap_or("?").to_owned(),
                late: body["lateSuccess"].as_bool().unwrap_or(false),
            },
            Resolved::Stripe { .. } => purchases::answer_of(status, &body),
            Resolved::Sweep => {
                Answer::Swept { expired: number("expired"), due: Some((number("lotsExpired"), number("planRefills"))) }
            }
            Resolved::Extend { .. } => Answer::Extended {
                status,
                hold: body["status"].as_str().unwrap_or("?").to_owned(),
                expires_at: body["expiresAt"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map_or(i64::MIN, |t| t.timestamp_millis()),
            },
            _ => Answer::Hold {
                status,
                hold: body["status"].as_str().unwrap_or("?").to_owned(),
                units: body["capturedUnits"].as_u64().and_then(|u| u32::try_from(u).ok()).unwrap_or(u32::MAX),
                captured: number("capturedAmount"),
                released: number("releasedAmount"),
                lots: answered_lots(&body["lots"]),
                replayed,
            },
        };
        let id = body["reservationId"].as_str().and_then(|s| Uuid::parse_str(s).ok());
        Ok((answer, id))
    }

    fn signed(&self, sent: &Sent) -> reqwest::RequestBuilder {
        let provider = Self::provider(sent.task);
        let request = self
            .http
            .post(format!("{}/v1/webhooks/{}", self.server.base, provider.as_str()))
            .header("content-type", "application/json")
            .body(sent.body.clone());
        match &sent.id {
            Some(id) => {
                let now = self.server.env.ledger.now().unix_seconds();
                let secret = GENERIC_SECRETS.split(',').next().unwrap_or_default();
                let signature = generic::sign(secret, id, now, sent.body.as_bytes()).unwrap_or_default();
                request
                    .header("webhook-id", id)
                    .header("webhook-timestamp", now.to_string())
                    .header("webhook-signature", signature)
            }
            None => {
                let secret = BFL_SECRETS.split(',').next().unwrap_or_default();
                request.header("x-bfl-signature", bfl::sign(secret, sent.body.as_bytes()))
            }
        }
    }

    /// Every user's balance as `GET /v1/balance` shows it (their own
    /// token). A read shows the balance item as of the clock, so it is
    /// read again only when the item or the clock moved since the last.
    pub(super) async fn read_views(&mut self, items: &[Item], tally: &mut Tally) -> Result<Vec<View>, String> {
        let now = self.server.env.ledger.now().millis();
        let balance_pks: Vec<String> = self.users.iter().map(user_pk).collect();
        let item_of = |u: usize| {
            items.iter().find(|i| text(i, "entity") == "balance" && text(i, "pk") == balance_pks[u]).cloned()
        };
        let stale: Vec<(usize, Option<Item>)> = (0..self.users.len())
            .map(|u| (u, item_of(u)))
            .filter(|(u, item)| self.reads[*u].as_ref().is_none_or(|(at, seen, _)| *at != now || seen != item))
            .collect();
        let fresh = join_all(stale.iter().map(|(u, _)| self.read_view(*u))).await;
        tally.reads += fresh.len() as u64;
        for ((u, item), view) in stale.into_iter().zip(fresh) {
            self.reads[u] = Some((now, item, view?));
        }
        Ok(self.reads.iter().map(|r| r.as_ref().map(|(.., view)| view.clone()).unwrap_or_else(View::empty)).collect())
    }

    async fn read_view(&self, user: usize) -> Result<View, String> {
        let response = self
            .http
            .get(format!("{}/v1/balance", self.server.base))
            .bearer_auth(&self.user_tokens[user])
            .send()
            .await
            .map_err(|e| format!("GET /v1/balance: {e}"))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(|e| format!("GET /v1/balance: body: {e}"))?;
        if status != 200 {
            return Err(format!("GET /v1/balance answered {status}: {body}"));
        }
        view_of(&body).map_err(|e| format!("GET /v1/balance: {e}: {body}"))
    }
}

/// A reservation's or a debit's `lots` as answered.
fn answered_lots(lots: &Value) -> LotParts {
    lots.as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["priority"].as_u64().and_then(|p| u8::try_from(p).ok()).unwrap_or(u8::MAX),
                parse_time(&l["expiresAt"]).unwrap_or(Some(i64::MIN)),
                l["amount"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// A `GET /v1/balance` answer.
fn view_of(body: &Value) -> Result<View, String> {
    let count = |v: &Value, k: &str| v[k].as_u64().ok_or_else(|| format!("{k} is not a count"));
    let lots = body["lots"]
        .as_array()
        .ok_or("lots is not a list")?
        .iter()
        .map(|l| {
            let priority = l["priority"].as_u64().and_then(|p| u8::try_from(p).ok()).ok_or("lot priority")?;
            Ok((priority, parse_time(&l["expiresAt"])?, count(l, "remaining")?, count(l, "reserved")?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let next_expiry = match &body["nextExpiry"] {
        Value::Null => None,
        next => Some((parse_time(&next["at"])?.ok_or("nextExpiry.at")?, count(next, "amount")?)),
    };
    let plan = match &body["plan"] {
        Value::Null => None,
        p => Some(PlanView {
            plan: p["plan"].as_str().ok_or("plan.plan")?.to_owned(),
            allowance: count(p, "allowance")?,
            period: p["period"].as_str().ok_or("plan.period")?.to_owned(),
            rollover: count(p, "rollover")?,
            anchor: parse_time(&p["anchor"])?.ok_or("plan.anchor")?,
            current_start: parse_time(&p["currentPeriodStart"])?,
            current_end: parse_time(&p["currentPeriodEnd"])?,
            ends_at: parse_time(&p["endsAt"])?,
        }),
    };
    Ok(View {
        available: count(body, "available")?,
        reserved: count(body, "reserved")?,
        spent: count(body, "spent")?,
        expired: count(body, "expired")?,
        debited: count(body, "debited")?,
        granted: count(body, "granted")?,
        lots,
        next_expiry,
        plan,
    })
}
