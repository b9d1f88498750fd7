//! The books check, item by item: `credits check` and the tests feed it
//! every item of a table and read back what does not add up. For each
//! user it reconciles the balance with its pending holds and with its
//! history lines, lot by lot: each line records the credits it moved in
//! each lot, so a lot's remaining and held credits follow from the history
//! alone, long after settled holds are gone.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::{Credits, LotKey, Timestamp};
use crate::store::{
    attr_number as num, attr_text as text, balance_adds_up, from_item, HoldItem, Item, LotPartItem, StoredBalance,
};

/// One figure that does not add up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub user: String,
    pub what: String,
}

/// One lot's credits as a source sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LotFigures {
    remaining: i64,
    held: i64,
}

#[derive(Debug, Default)]
struct UserBooks {
    balance: Option<Item>,
    /// What pending holds still hold, per lot.
    holds: BTreeMap<LotKey, i64>,
    /// Pending holds their reserve counted (what `openHolds` counts).
    open: i64,
    /// Per lot, from the history lines.
    lines: BTreeMap<LotKey, LotFigures>,
    /// Sums of history lines by type.
    sums: BTreeMap<String, i64>,
}

/// Feed it every item; `drifts` says what does not add up.
#[derive(Debug, Default)]
pub struct Audit {
    users: BTreeMap<String, UserBooks>,
    problems: Vec<Drift>,
}

fn parts(item: &Item) -> Vec<(LotKey, i64)> {
    match item.get("lots") {
        Some(AttributeValue::L(values)) => values
            .iter()
            .filter_map(|v| match v {
                AttributeValue::M(m) => from_item::<LotPartItem>(m.clone()).ok(),
                _ => None,
            })
            .map(|p| (LotKey { priority: p.priority, expires_at: p.expires_at.map(Timestamp) }, p.amount as i64))
            .collect(),
        // Written before lots: all of it in the base lot.
        _ => vec![(LotKey::BASE, num(item, "amount"))],
    }
}

impl Audit {
    pub fn users(&self) -> usize {
        self.users.len()
    }

    pub fn add(&mut self, item: &Item) {
        match text(item, "entity") {
            "balance" => self.users.entry(text(item, "userId").to_owned()).or_default().balance = Some(item.clone()),
            "hold" => self.add_hold(item),
            "entry" => self.add_line(item),
            _ => {}
        }
    }

    fn add_hold(&mut self, item: &Item) {
        let user = text(item, "userId").to_owned();
        let mut problem = |what: String| self.problems.push(Drift { user: user.clone(), what });
        let hold: HoldItem = match from_item(item.clone()) {
            Ok(hold) => hold,
            Err(e) => return problem(format!("unreadable hold: {e}")),
        };
        let id = hold.reservation_id;
        if hold.captured_units > hold.units || hold.captured_amount != u64::from(hold.captured_units) * hold.unit_cost {
            problem(format!("hold {id}: captured units and credits disagree"));
        }
        // Each non-final capture's units, then the closing confirm's, make up the captured units.
        let by_key: u32 = hold.captures.as_ref().map_or(0, |c| c.values().sum());
        let status = text(item, "status");
        let closing = match status {
            "confirmed" | "refunded" => hold.final_units.unwrap_or(hold.captured_units.saturating_sub(by_key)),
            _ => 0,
        };
        if by_key + closing != hold.captured_units {
            problem(format!("hold {id}: captures by key and the final confirm do not add up"));
        }
        let allocation = hold.allocation();
        if allocation.total() != Credits(hold.amount) {
            problem(format!("hold {id}: its lots hold {} of its {}", allocation.total(), hold.amount));
        }
        match status {
            "pending" => {
                if hold.released_amount != 0 {
                    problem(format!("hold {id}: pending with returned credits"));
                }
                let books = self.users.entry(user.clone()).or_default();
                for (lot, amount) in allocation.slice(Credits(hold.captured_amount), Credits(hold.amount)).0 {
                    *books.holds.entry(lot).or_default() += amount.get() as i64;
                }
                books.open += i64::from(hold.open_counted);
            }
            _ if hold.captured_amount + hold.released_amount != hold.amount => {
                problem(format!("hold {id}: settled, but captured and returned do not make its amount"))
            }
            _ => {}
        }
        if hold.pending_shard.is_some() != (status == "pending") {
            self.problems.push(Drift { user, what: format!("hold {id}: in the due-work index while {status}") });
        }
    }

    fn add_line(&mut self, item: &Item) {
        let user = text(item, "pk").trim_start_matches("USER#").to_owned();
        let books = self.users.entry(user).or_default();
        let kind = text(item, "type").to_owned();
        *books.sums.entry(kind.clone()).or_default() += num(item, "amount");
        // A plan refill carries the previous period's unused allowance into
        // the new period's lot (the first lot the line names).
        if let (Some(AttributeValue::L(_)), Some((into, _))) = (item.get("rollover"), parts(item).first().copied()) {
            let mut carried = item.clone();
            carried.insert("lots".into(), item["rollover"].clone());
            for (from, amount) in parts(&carried) {
                books.lines.entry(from).or_default().remaining -= amount;
                books.lines.entry(into).or_default().remaining += amount;
            }
        }
        for (lot, amount) in parts(item) {
            let figures = books.lines.entry(lot).or_default();
            let (remaining, held) = match kind.as_str() {
                "grant" | "refund" => (amount, 0),
                "reserve" => (-amount, amount),
                "capture" | "confirm" => (0, -amount),
                "release" | "expire" => (amount, -amount),
                "debit" | "grant_expired" => (-amount, 0),
                _ => (0, 0),
            };
            figures.remaining += remaining;
            figures.held += held;
        }
    }

    /// Everything that does not add up, user by user.
    pub fn drifts(&self) -> Vec<Drift> {
        let mut drifts = self.problems.clone();
        for (user, books) in &self.users {
            let mut drift = |what: String| drifts.push(Drift { user: user.clone(), what });
            let Some(item) = &books.balance else {
                if books.holds.values().any(|h| *h != 0) || books.sums.values().any(|s| *s != 0) {
                    drift("holds or history lines but no balance".into());
                }
                continue;
            };
            let stored = StoredBalance::from_item(item);
            let sum = |kind: &str| books.sums.get(kind).copied().unwrap_or(0);
            if !balance_adds_up(item) {
                drift("available + reserved + spent + expired + debited != granted".into());
            }
            let figures = [
                ("granted", stored.books.granted, sum("grant")),
                ("spent", stored.books.spent, sum("capture") + sum("confirm") - sum("refund")),
                ("expired", stored.books.expired, sum("grant_expired")),
                ("debited", stored.books.debited, sum("debit")),
            ];
            for (name, stored, lines) in figures {
                if stored.get() as i64 != lines {
                    drift(format!("{name} {stored} but its history lines give {lines}"));
                }
            }
            if num(item, "openHolds") != books.open {
                drift(format!("openHolds {} but it has {} pending holds", num(item, "openHolds"), books.open));
            }
            let mut lots: Vec<LotKey> = stored.books.lots.iter().map(|l| l.key).collect();
            lots.extend(books.lines.keys().chain(books.holds.keys()));
            lots.sort();
            lots.dedup();
            for lot in lots {
                let (remaining, held) =
                    stored.books.lots.get(lot).map_or((0, 0), |l| (l.remaining.get() as i64, l.held.get() as i64));
                let from_lines = books.lines.get(&lot).copied().unwrap_or_default();
                let by_holds = books.holds.get(&lot).copied().unwrap_or(0);
                let name = lot.name();
                if held != by_holds {
                    drift(format!("lot {name}: {held} held but its pending holds hold {by_holds}"));
                }
                if (remaining, held) != (from_lines.remaining, from_lines.held) {
                    drift(format!(
                        "lot {name}: {remaining} remaining and {held} held, but its history lines give {} and {}",
                        from_lines.remaining, from_lines.held
                    ));
                }
            }
            // Every expiry still to write down must be found by the job.
            if let Some(next) = stored.books.lots.next_due() {
                if stored.due.is_none_or(|due| due > next) {
                    drift(format!(
                        "a lot expires at {} but the due-work index says {:?}",
                        next.to_rfc3339(),
                        stored.due
                    ));
                }
            }
        }
        drifts
    }
}
