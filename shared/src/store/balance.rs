//! The balance item: its lots as attributes, read into [`Books`], and the
//! one builder every change of it goes through.
//!
//! Each lot other than the base is two number attributes,
//! `lot#<priority>#<expiresAt ms|never>#rem` and `…#held`, so that a
//! settlement can `ADD` to a lot without reading the balance (an `ADD` to a
//! top-level attribute needs no parent map to exist). The base lot
//! (priority 50, never expiring) keeps the names `available` and `reserved`
//! that every balance had before lots: a balance written before lots is
//! read as one base lot, with nothing to migrate. A lot's `rem` attribute
//! goes when its expiry is written down; the lot goes when nothing is held
//! in it any more.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::builders::UpdateBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Update};

use serde::{Deserialize, Serialize};

use super::{attr_number, from_item, key, n, s, shard_key, user_pk, Item, PENDING_SHARDS};
use crate::domain::{Allocation, Books, Credits, Lot, LotKey, Lots, Period, Plan, Timestamp, UserId};

pub const BALANCE_SK: &str = "BALANCE";

/// The start of the last period whose allowance was granted (ms).
pub const PLAN_PERIOD: &str = "planPeriod";
/// The user's own low-balance threshold (`PUT /v1/settings`), on the balance
/// so each stream image of it carries the threshold `balance.low` compares with.
pub const LOW_BALANCE_THRESHOLD: &str = "lowBalanceThreshold";

/// Auto-recharge lives on the balance too, so that each stream image of it
/// says all a `balance.low` crossing needs: the settings
/// (`PUT /v1/auto-recharge`), the card a paid Checkout Session saved, and
/// how many recharges this month.
pub const AUTO_RECHARGE: &str = "autoRecharge";
pub const SAVED_CARD: &str = "savedCard";
pub const RECHARGE_MONTH: &str = "rechargeMonth";
pub const RECHARGES_IN_MONTH: &str = "rechargesInMonth";
pub const LAST_RECHARGE: &str = "lastRecharge";

/// The settings map (`autoRecharge`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoRechargeItem {
    pub pack: String,
    pub monthly_limit: u32,
    pub enabled: bool,
    /// Why it turned itself off (three failed recharges in a row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The terms agreed to, as the catalog priced the pack then: a recharge
    /// charges these or nothing (a repriced pack is not charged unasked).
    #[serde(default)]
    pub credits: u64,
    #[serde(default)]
    pub amount_total: u64,
    #[serde(default)]
    pub currency: String,
    /// Who turned it on, and when: the consent behind off-session charges.
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub at: i64,
}

/// The last recharge as the balance keeps it (`lastRecharge`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRechargeItem {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub credits: u64,
    #[serde(default)]
    pub at: i64,
}

/// What of the balance item auto-recharge reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RechargeState {
    pub auto_recharge: Option<AutoRechargeItem>,
    /// Present once a paid session saved a card: its customer and payment
    /// method, read only by the recharge itself.
    pub saved_card: Option<serde::de::IgnoredAny>,
    pub recharge_month: Option<String>,
    pub recharges_in_month: u32,
    pub last_recharge: Option<LastRechargeItem>,
    pub low_balance_threshold: Option<u64>,
}

/// A plan as the balance item keeps it (the map `plan`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanItem {
    pub name: String,
    pub allowance: u64,
    pub period: Period,
    pub rollover: u64,
    pub anchor: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<i64>,
}

impl PlanItem {
    pub fn of(plan: &Plan) -> PlanItem {
        PlanItem {
            name: plan.name.clone(),
            allowance: plan.allowance.get(),
            period: plan.period,
            rollover: plan.rollover.get(),
            anchor: plan.anchor.millis(),
            ends_at: plan.ends_at.map(Timestamp::millis),
        }
    }

    pub fn into_plan(self) -> Plan {
        Plan {
            name: self.name,
            allowance: Credits(self.allowance),
            period: self.period,
            rollover: Credits(self.rollover),
            anchor: Timestamp(self.anchor),
            ends_at: self.ends_at.map(Timestamp),
        }
    }
}

/// Moves by one with every write that adds a lot or removes one, so that a
/// grant's check of the lot limit is conditional on the lots it read.
pub const LOTS_VERSION: &str = "lotsVersion";

/// The attribute names of a lot's remaining and held credits.
pub fn lot_attributes(lot: LotKey) -> (String, String) {
    match lot.is_base() {
        true => ("available".into(), "reserved".into()),
        false => (format!("lot#{}#rem", lot.name()), format!("lot#{}#held", lot.name())),
    }
}

/// The due-work index shard of a user's balance (lot expiries fall due
/// there), spread like holds are.
pub fn balance_shard(user: &UserId) -> String {
    let digest = sha2::Sha256::digest(user.as_str().as_bytes());
    shard_key(digest[0] % PENDING_SHARDS)
}

use sha2::Digest;

/// A balance item as read: the books, and what a write must condition on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredBalance {
    pub books: Books,
    /// When the due-work index says the balance next falls due.
    pub due: Option<Timestamp>,
    /// `lotsVersion` as read (absent on balances that never had a lot).
    pub lots_version: Option<u64>,
    pub open_holds: u64,
}

impl StoredBalance {
    pub fn from_item(item: &Item) -> StoredBalance {
        let figure = |name: &str| Credits(attr_number(item, name).max(0) as u64);
        let mut lots: BTreeMap<LotKey, Lot> = BTreeMap::new();
        lots.insert(
            LotKey::BASE,
            Lot { key: LotKey::BASE, remaining: figure("available"), held: figure("reserved"), expiry_recorded: false },
        );
        for (name, value) in item {
            let Some((lot, part)) = name.strip_prefix("lot#").and_then(|rest| rest.rsplit_once('#')) else {
                continue;
            };
            let Some(lot) = LotKey::parse_name(lot) else { continue };
            let amount = Credits(value.as_n().ok().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0).max(0) as u64);
            let entry = lots.entry(lot).or_insert(Lot { expiry_recorded: true, ..Lot::new(lot) });
            match part {
                "rem" => {
                    entry.remaining = amount;
                    entry.expiry_recorded = false;
                }
                "held" => entry.held = amount,
                _ => {}
            }
        }
        StoredBalance {
            books: Books {
                lots: Lots::from_lots(lots.into_values()),
                spent: figure("spent"),
                granted: figure("granted"),
                expired: figure("expired"),
                debited: figure("debited"),
                plan: item
                    .get("plan")
                    .and_then(|v| v.as_m().ok())
                    .and_then(|m| from_item::<PlanItem>(m.clone()).ok())
                    .map(PlanItem::into_plan),
                plan_period: item.get(PLAN_PERIOD).and_then(|v| v.as_n().ok()?.parse().ok()).map(Timestamp),
                updated_at: item.get("updatedAt").and_then(|v| v.as_n().ok()?.parse().ok()).map(Timestamp),
            },
            due: item
                .get("pendingShard")
                .and(item.get("expiresAt"))
                .and_then(|v| v.as_n().ok()?.parse().ok())
                .map(Timestamp),
            lots_version: item.get(LOTS_VERSION).and_then(|v| v.as_n().ok()?.parse().ok()),
            open_holds: attr_number(item, "openHolds").max(0) as u64,
        }
    }
}

/// A stored balance's figures summed over its lots, read with signs so that
/// a corrupted negative figure shows: `available`, `reserved`, `spent`,
/// `expired`, `debited`, `granted` (an unreadable number reads as -1).
pub fn signed_figures(item: &Item) -> [(&'static str, i64); 6] {
    let number = |v: &AttributeValue| v.as_n().ok().and_then(|v| v.parse::<i64>().ok()).unwrap_or(-1);
    let figure = |name: &str| item.get(name).map_or(0, number);
    let (mut available, mut reserved) = (figure("available"), figure("reserved"));
    for (name, value) in item {
        let Some(rest) = name.strip_prefix("lot#") else { continue };
        let sum = if rest.ends_with("#rem") { &mut available } else { &mut reserved };
        let v = number(value);
        *sum = if v < 0 || *sum < 0 { -1 } else { *sum + v };
    }
    [
        ("available", available),
        ("reserved", reserved),
        ("spent", figure("spent")),
        ("expired", figure("expired")),
        ("debited", figure("debited")),
        ("granted", figure("granted")),
    ]
}

/// Whether a stored balance adds up: every lot's remaining and held
/// credits, plus spent, expired and debited, make granted, none negative.
pub fn balance_adds_up(item: &Item) -> bool {
    let figures = signed_figures(item);
    let parts = &figures[..5];
    parts.iter().all(|(_, f)| *f >= 0)
        && figures[5].1 >= 0
        && parts.iter().try_fold(0i64, |sum, (_, f)| sum.checked_add(*f)) == Some(figures[5].1)
}

/// One update of a balance item, built from what it moves. Additions to
/// the same attribute are summed, and so are the "at least" conditions on
/// it, so a write taking from a lot twice checks the sum once.
#[derive(Debug, Default)]
pub struct BalanceWrite {
    adds: BTreeMap<String, i64>,
    sets: BTreeMap<String, AttributeValue>,
    removes: std::collections::BTreeSet<String>,
    at_least: BTreeMap<String, u64>,
    equals: BTreeMap<String, Option<AttributeValue>>,
    below: BTreeMap<String, u64>,
    zero_or_absent: Vec<String>,
}

impl BalanceWrite {
    pub fn new() -> BalanceWrite {
        BalanceWrite::default()
    }

    pub fn add(&mut self, name: &str, delta: i64) -> &mut Self {
        *self.adds.entry(name.to_owned()).or_default() += delta;
        self
    }

    /// Takes `amount` from `name`, on condition that it is there.
    pub fn take(&mut self, name: &str, amount: Credits) -> &mut Self {
        *self.at_least.entry(name.to_owned()).or_default() += amount.get();
        self.add(name, -(amount.get() as i64))
    }

    pub fn set(&mut self, name: &str, value: AttributeValue) -> &mut Self {
        self.sets.insert(name.to_owned(), value);
        self
    }

    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.removes.insert(name.to_owned());
        self
    }

    /// On condition that `name` is `value` as read (`None`: absent).
    pub fn expect(&mut self, name: &str, value: Option<AttributeValue>) -> &mut Self {
        self.equals.insert(name.to_owned(), value);
        self
    }

    /// On condition that `name` is 0 or absent.
    pub fn expect_zero(&mut self, name: &str) -> &mut Self {
        self.zero_or_absent.push(name.to_owned());
        self
    }

    /// On condition that `name` is below `limit` (or absent).
    pub fn below(&mut self, name: &str, limit: u64) -> &mut Self {
        self.below.insert(name.to_owned(), limit);
        self
    }

    /// A hold takes its allocation: from each lot's remaining to its held.
    pub fn hold(&mut self, allocation: &Allocation) -> &mut Self {
        for (lot, amount) in &allocation.0 {
            let (rem, held) = lot_attributes(*lot);
            self.take(&rem, *amount).add(&held, amount.get() as i64);
        }
        self
    }

    /// Held credits are spent (a capture, a confirm).
    pub fn spend_held(&mut self, parts: &Allocation) -> &mut Self {
        for (lot, amount) in &parts.0 {
            self.take(&lot_attributes(*lot).1, *amount).add("spent", amount.get() as i64);
        }
        self
    }

    /// Held credits come back to their lots (a release, an expiry, a
    /// confirm's rest); those of expired lots expire at once.
    pub fn return_held(&mut self, parts: &Allocation, now: Timestamp) -> &mut Self {
        for (lot, amount) in &parts.0 {
            let (rem, held) = lot_attributes(*lot);
            self.take(&held, *amount);
            match lot.expired_at(now) {
                true => self.add("expired", amount.get() as i64),
                false => self.add(&rem, amount.get() as i64),
            };
        }
        self
    }

    /// Spent credits come back to their lots (an admin refund); those of
    /// expired lots expire at once.
    pub fn return_spent(&mut self, parts: &Allocation, now: Timestamp) -> &mut Self {
        for (lot, amount) in &parts.0 {
            self.take("spent", *amount);
            match lot.expired_at(now) {
                true => self.add("expired", amount.get() as i64),
                false => self.add(&lot_attributes(*lot).0, amount.get() as i64),
            };
        }
        self
    }

    /// Credits taken back by a debit.
    pub fn debit(&mut self, parts: &Allocation) -> &mut Self {
        for (lot, amount) in &parts.0 {
            self.take(&lot_attributes(*lot).0, *amount).add("debited", amount.get() as i64);
        }
        self
    }

    /// Whether the write would change nothing but `updatedAt`.
    pub fn is_empty(&self) -> bool {
        self.adds.values().all(|d| *d == 0) && self.sets.is_empty() && self.removes.is_empty()
    }

    /// The `Update` of `user`'s balance item; `updatedAt`, `userId` and
    /// `entity` are set by every write (the first one creates the item).
    pub fn build(mut self, user: &UserId, now: Timestamp) -> UpdateBuilder {
        self.sets.insert("updatedAt".into(), n(now.millis()));
        self.sets.insert("userId".into(), s(user.as_str()));
        self.sets.insert("entity".into(), s("balance"));
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut placeholder = |name: &str| -> String {
            let next = format!("#a{}", names.len());
            names.entry(name.to_owned()).or_insert(next).clone()
        };
        let mut values: Vec<(String, AttributeValue)> = Vec::new();
        let mut value = |v: AttributeValue| -> String {
            let id = format!(":v{}", values.len());
            values.push((id.clone(), v));
            id
        };
        let sets: Vec<String> =
            self.sets.into_iter().map(|(k, v)| format!("{} = {}", placeholder(&k), value(v))).collect();
        let adds: Vec<String> = self
            .adds
            .into_iter()
            .filter(|(_, d)| *d != 0)
            .map(|(k, d)| format!("{} {}", placeholder(&k), value(n(d))))
            .collect();
        let removes: Vec<String> = self.removes.iter().map(|k| placeholder(k)).collect();
        let mut conditions: Vec<String> = Vec::new();
        for (k, at_least) in self.at_least {
            if at_least > 0 {
                conditions.push(format!("{} >= {}", placeholder(&k), value(n(at_least))));
            }
        }
        for (k, expected) in self.equals {
            let p = placeholder(&k);
            conditions.push(match expected {
                Some(v) => format!("{p} = {}", value(v)),
                None => format!("attribute_not_exists({p})"),
            });
        }
        for k in self.zero_or_absent {
            let p = placeholder(&k);
            conditions.push(format!("(attribute_not_exists({p}) OR {p} = {})", value(n(0))));
        }
        for (k, limit) in self.below {
            let p = placeholder(&k);
            conditions.push(format!("(attribute_not_exists({p}) OR {p} < {})", value(n(limit))));
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if !adds.is_empty() {
            expression.push_str(&format!(" ADD {}", adds.join(", ")));
        }
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let mut update = Update::builder()
            .set_key(Some(key(user_pk(user), BALANCE_SK)))
            .update_expression(expression)
            .set_expression_attribute_names(Some(names.into_iter().map(|(k, p)| (p, k)).collect()))
            .set_expression_attribute_values(Some(values.into_iter().collect()));
        if !conditions.is_empty() {
            update = update.condition_expression(conditions.join(" AND "));
        }
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, i64)]) -> Item {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), n(v))).collect()
    }

    #[test]
    fn a_balance_from_before_lots_is_one_base_lot() {
        let stored =
            StoredBalance::from_item(&item(&[("available", 7), ("reserved", 3), ("spent", 2), ("granted", 12)]));
        let lots: Vec<Lot> = stored.books.lots.iter().copied().collect();
        assert_eq!(
            lots,
            vec![Lot { key: LotKey::BASE, remaining: Credits(7), held: Credits(3), expiry_recorded: false }]
        );
        assert_eq!(stored.due, None);
    }

    #[test]
    fn lot_attributes_read_back_as_lots() {
        let lot = LotKey { priority: 10, expires_at: Some(Timestamp(1000)) };
        let (rem, held) = lot_attributes(lot);
        let gone = LotKey { priority: 10, expires_at: Some(Timestamp(5)) };
        let (_, gone_held) = lot_attributes(gone);
        let stored = StoredBalance::from_item(&item(&[
            (&rem, 4),
            (&held, 1),
            (&gone_held, 2),
            ("available", 0),
            ("granted", 7),
        ]));
        assert_eq!(
            stored.books.lots.get(lot),
            Some(&Lot { key: lot, remaining: Credits(4), held: Credits(1), expiry_recorded: false })
        );
        assert!(stored.books.lots.get(gone).is_some_and(|l| l.expiry_recorded && l.held == Credits(2)));
    }

    #[test]
    fn adds_up_counts_every_lot_and_flags_negatives() {
        assert!(balance_adds_up(&item(&[("available", 2), ("lot#10#never#rem", 3), ("expired", 1), ("granted", 6)])));
        assert!(!balance_adds_up(&item(&[("available", 2), ("granted", 3)])));
        assert!(!balance_adds_up(&item(&[("available", 4), ("lot#10#never#rem", -1), ("granted", 3)])));
    }
}
