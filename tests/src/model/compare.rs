//! The table and the reads against the model: the books on their own,
//! then balance items, holds, history lines and pages, parked deliveries
//! (and Stripe's records, `purchases/compare.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use credits_shared::domain::CaptureKey;
use credits_shared::ledger::keyed_hold_id;
use credits_shared::store::{attr_number, task_pk, user_pk};
use serde_json::Value;
use uuid::Uuid;

use super::account::{Line, LotId, Stored, View};
use super::answer::{lot_parts, LotParts};
use super::calendar::{parse_time, rfc3339};
use super::holds::{Hold, Status};
use super::ledger::Model;
use super::runner::{Item, Runner};
use super::tally::Tally;
use crate::{check_books, number, scan, text};

impl Runner {
    /// The books on their own, and the table and the balance reads against
    /// the models that explain the batch's answers: one must match, and
    /// becomes the model.
    pub(super) async fn compare(&mut self, explanations: Vec<Model>, tally: &mut Tally) -> Result<(), String> {
        let items = scan(&self.server.env.store).await;
        let views = self.read_views(&items, tally).await?;
        check_books(&items)?;
        for (u, view) in views.iter().enumerate() {
            if view.available + view.reserved + view.spent + view.expired + view.debited != view.granted {
                return Err(format!("user {u}: the balance read does not add up: {view:?}"));
            }
        }
        let mut first_difference = None;
        for model in explanations {
            self.model = model;
            match self.compare_with(&items, &views) {
                Ok(()) => return Ok(()),
                Err(difference) => {
                    first_difference.get_or_insert(difference);
                }
            }
        }
        Err(first_difference.unwrap_or_default())
    }

    /// The table and the reads against `self.model`.
    fn compare_with(&mut self, items: &[Item], views: &[View]) -> Result<(), String> {
        let user_of: HashMap<String, usize> = self.users.iter().enumerate().map(|(i, u)| (user_pk(u), i)).collect();
        let by_name: HashMap<String, usize> =
            self.users.iter().enumerate().map(|(i, u)| (u.as_str().to_owned(), i)).collect();
        let now = self.model.now;

        let mut stored = vec![Stored::default(); self.users.len()];
        let mut lines: Vec<Vec<Line>> = vec![Vec::new(); self.users.len()];
        let mut parked = HashSet::new();
        let mut seen_holds = HashSet::new();
        for item in items {
            let pk = text(item, "pk");
            match text(item, "entity").as_str() {
                "balance" => {
                    let Some(&u) = user_of.get(&pk) else { return Err(format!("balance of an unknown user: {pk}")) };
                    stored[u] = stored_of(item)?;
                }
                "entry" => {
                    let Some(&u) = user_of.get(&pk) else {
                        return Err(format!("history line of an unknown user: {pk}"));
                    };
                    lines[u].push((text(item, "type"), number(item, "amount"), attr_number(item, "at")));
                }
                "parked" => {
                    parked.insert(pk);
                }
                "hold" => {
                    let id = Uuid::parse_str(&text(item, "reservationId")).map_err(|e| format!("hold id: {e}"))?;
                    seen_holds.insert(id);
                    let status = text(item, "status");
                    let (amount, captured, released) =
                        (number(item, "amount"), number(item, "capturedAmount"), number(item, "releasedAmount"));
                    let user = by_name.get(&text(item, "userId")).copied();
                    let lots = item_lots(item)?;
                    match self.model.holds.get(&id) {
                        Some(h) => {
                            let table = HoldState {
                                status,
                                captured_units: number(item, "capturedUnits"),
                                captured,
                                released,
                                final_units: item.contains_key("finalUnits").then(|| number(item, "finalUnits")),
                                captures: match item.get("captures") {
                                    Some(AttributeValue::M(map)) => map
                                        .iter()
                                        .map(|(k, v)| (k.clone(), v.as_n().ok().and_then(|n| n.parse().ok())))
                                        .collect(),
                                    _ => HashMap::new(),
                                },
                                expires_at: attr_number(item, "expiresAt"),
                                lots,
                            };
                            let model = HoldState {
                                status: h.status.as_str().into(),
                                captured_units: u64::from(h.captured_units),
                                captured: h.captured,
                                released: h.released,
                                final_units: h.final_units.map(u64::from),
                                captures: h
                                    .captures
                                    .iter()
                                    .map(|(k, units)| (capture_key(*k), Some(u64::from(*units))))
                                    .collect(),
                                expires_at: h.expires_at,
                                lots: lot_parts(&h.lots),
                            };
                            if table != model {
                                return Err(format!("hold {id}: table says {table:?}, model says {model:?}"));
                            }
                        }
                        // A hold placed by a reserve whose link then lost a race is released
                        // by that same request, which answers the link's error: it took its
                        // lots and gave them back (nothing had expired in between), and its
                        // reserve wrote down what was due.
                        None if status == "released" && captured == 0 => {
                            let Some(u) = user else { return Err(format!("hold {id} of an unknown user")) };
                            let account = &mut self.model.accounts[u];
                            if amount > 0 {
                                account.catch_up(now);
                            }
                            account.line("reserve", amount, attr_number(item, "createdAt"));
                            account.line("release", amount, attr_number(item, "settledAt"));
                            // Its key stays bound to it: a retry replays it, another body is 422.
                            for (_, k, spec) in self.lost_links.iter().filter(|(lu, _, _)| *lu == u) {
                                if keyed_hold_id(&self.users[u], &format!("reserve-{k}")) == id {
                                    self.model.reserve_keys.insert((u, *k), (id, spec.clone()));
                                }
                            }
                            self.model.holds.insert(
                                id,
                                Hold {
                                    user: u,
                                    units: u32::try_from(number(item, "units")).unwrap_or(0),
                                    unit_cost: number(item, "unitCost"),
                                    amount,
                                    status: Status::Released,
                                    captured_units: 0,
                                    captured: 0,
                                    released: amount,
                                    final_units: None,
                                    captures: HashMap::new(),
                                    task: None,
                                    created_at: attr_number(item, "createdAt"),
                                    expires_at: attr_number(item, "expiresAt"),
                                    lots: lots
                                        .iter()
                                        .map(|(p, at, c)| (LotId { priority: *p, expires: *at }, *c))
                                        .collect(),
                                },
                            );
                        }
                        None => return Err(format!("hold {id} ({status}) is not in the model")),
                    }
                }
                _ => {}
            }
        }
        for (u, account) in self.model.accounts.iter().enumerate() {
            // The due-work index entry is never later than what falls due
            // next (nor missing): the sweep must find it. It may be earlier
            // (a lot emptied since it was written), which costs a look.
            let model = account.stored(now);
            let table = Stored { due: model.due, ..stored[u].clone() };
            let late = match (stored[u].due, model.due) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(entry), Some(next)) => entry > next,
            };
            if table != model || late {
                return Err(format!("user {u}: the balance item says {:?}, the model {model:?}", stored[u]));
            }
            let (mut table, mut expected) = (lines[u].clone(), account.lines.clone());
            table.sort();
            expected.sort();
            if table != expected {
                return Err(format!(
                    "user {u}: history lines differ; only in the table: {:?}; only in the model: {:?}",
                    difference(&table, &expected),
                    difference(&expected, &table)
                ));
            }
            let (mut view, next_expiry) = account.view(now);
            let read = &views[u];
            view.next_expiry = read.next_expiry;
            if *read != view || !next_expiry.contains(&read.next_expiry) {
                view.next_expiry = next_expiry.first().copied().flatten();
                return Err(format!(
                    "user {u}: GET /v1/balance shows {read:?}, the model {view:?} (nextExpiry one of {next_expiry:?})"
                ));
            }
        }
        if let Some(missing) = self.model.holds.keys().find(|id| !seen_holds.contains(id)) {
            return Err(format!("hold {missing} is in the model but not in the table"));
        }
        let expected: HashSet<String> =
            self.model.parked.keys().map(|t| task_pk(Self::provider(*t), &self.task_name(*t))).collect();
        if parked != expected {
            return Err(format!("parked deliveries: table {parked:?}, model {expected:?}"));
        }
        self.compare_stripe(items)
    }

    /// Every user's history as `GET /v1/transactions` pages it: newest
    /// first, and exactly the model's lines.
    pub(super) async fn compare_history_pages(&self) -> Result<(), String> {
        for (u, token) in self.user_tokens.iter().enumerate() {
            let mut read: Vec<Line> = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut url = format!("{}/v1/transactions?limit=200", self.server.base);
                if let Some(c) = &cursor {
                    url.push_str(&format!("&cursor={c}"));
                }
                let response = self
                    .http
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| format!("GET /v1/transactions: {e}"))?;
                let body: Value = response.json().await.map_err(|e| format!("GET /v1/transactions: body: {e}"))?;
                for item in body["items"].as_array().into_iter().flatten() {
                    let at = parse_time(&item["at"])?.unwrap_or(i64::MIN);
                    read.push((
                        item["type"].as_str().unwrap_or("?").to_owned(),
                        item["amount"].as_u64().unwrap_or(u64::MAX),
                        at,
                    ));
                }
                match body["nextCursor"].as_str() {
                    Some(c) => cursor = Some(c.to_owned()),
                    None => break,
                }
            }
            if let Some(w) = read.windows(2).find(|w| w[0].2 < w[1].2) {
                return Err(format!("user {u}: history not newest first: {:?} before {:?}", w[0], w[1]));
            }
            let mut expected = self.model.accounts[u].lines.clone();
            read.sort();
            expected.sort();
            if read != expected {
                return Err(format!(
                    "user {u}: GET /v1/transactions differs; only there: {:?}; only in the model: {:?}",
                    difference(&read, &expected),
                    difference(&expected, &read)
                ));
            }
        }
        Ok(())
    }
}

/// What `a` has that `b` has not (both sorted), as a multiset.
fn difference(a: &[Line], b: &[Line]) -> Vec<(String, u64, String)> {
    let mut rest: Vec<&Line> = b.iter().collect();
    let mut out = Vec::new();
    for line in a {
        match rest.iter().position(|l| *l == line) {
            Some(i) => {
                rest.remove(i);
            }
            None => out.push((line.0.clone(), line.1, rfc3339(line.2))),
        }
    }
    out
}

/// A hold item's `lots` (a free hold has none).
fn item_lots(item: &Item) -> Result<LotParts, String> {
    let Some(list) = item.get("lots") else { return Ok(Vec::new()) };
    let list = list.as_l().map_err(|_| format!("hold lots not a list: {list:?}"))?;
    list.iter()
        .map(|part| {
            let map = part.as_m().map_err(|_| format!("hold lot not a map: {part:?}"))?;
            let num = |k: &str| map.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
            let priority = num("priority").and_then(|p| u8::try_from(p).ok()).ok_or("hold lot priority")?;
            let amount = num("amount").and_then(|a| u64::try_from(a).ok()).ok_or("hold lot amount")?;
            Ok((priority, num("expiresAt"), amount))
        })
        .collect()
}

/// A balance item as the model keeps it: lot attributes
/// `lot#<priority>#<ms|never>#rem|held` (the base lot's are `available`
/// and `reserved`), the figures, `planPeriod`, the due-work index entry.
fn stored_of(item: &Item) -> Result<Stored, String> {
    let signed = |v: &AttributeValue| -> Result<u64, String> {
        v.as_n().ok().and_then(|n| n.parse::<u64>().ok()).ok_or_else(|| format!("not a count: {v:?}"))
    };
    let figure = |name: &str| item.get(name).map_or(Ok(0), signed);
    let mut lots: BTreeMap<LotId, (Option<u64>, u64)> = BTreeMap::new();
    lots.insert(LotId::BASE, (Some(figure("available")?), figure("reserved")?));
    for (name, value) in item {
        let Some(rest) = name.strip_prefix("lot#") else { continue };
        let parts: Vec<&str> = rest.split('#').collect();
        let [priority, expiry, part] = parts.as_slice() else { return Err(format!("lot attribute {name}")) };
        let priority: u8 = priority.parse().map_err(|_| format!("lot attribute {name}"))?;
        let expires = match *expiry {
            "never" => None,
            ms => Some(ms.parse::<i64>().map_err(|_| format!("lot attribute {name}"))?),
        };
        let lot = lots.entry(LotId { priority, expires }).or_default();
        match *part {
            "rem" => lot.0 = Some(signed(value)?),
            "held" => lot.1 = signed(value)?,
            _ => return Err(format!("lot attribute {name}")),
        }
    }
    let time = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
    Ok(Stored {
        lots,
        spent: figure("spent")?,
        granted: figure("granted")?,
        expired: figure("expired")?,
        debited: figure("debited")?,
        plan_period: time("planPeriod"),
        due: item.contains_key("pendingShard").then(|| time("expiresAt")).flatten(),
    }
    .normalized())
}

/// What the table says of a hold, or the model (`captures` by the
/// digest the table keeps of each key).
#[derive(Debug, PartialEq, Eq)]
struct HoldState {
    status: String,
    captured_units: u64,
    captured: u64,
    released: u64,
    final_units: Option<u64>,
    captures: HashMap<String, Option<u64>>,
    expires_at: i64,
    lots: LotParts,
}

/// How the table keys a capture sent with `Idempotency-Key: capture-<key>`.
fn capture_key(key: u8) -> String {
    CaptureKey::of(&format!("capture-{key}")).as_hex()
}
