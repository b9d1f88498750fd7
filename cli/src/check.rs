//! `credits check`: reconciles every balance with its holds and its ledger
//! lines, and lists the unit costs holds were charged against today's
//! catalog. A full scan, so it is an operator's command, never a request.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use credits_shared::prices::Catalog;
use credits_shared::store::{attr_number as num, attr_text as text, Store};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Books {
    balance: Option<[i64; 4]>,
    /// The balance's `openHolds` (the cap's count).
    open_holds: i64,
    pending: i64,
    /// Pending holds their reserve counted: what `openHolds` counts.
    pending_paid: i64,
    entries: BTreeMap<String, i64>,
}

/// One figure that does not add up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drift {
    pub user: String,
    pub what: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PriceLine {
    pub operation: String,
    pub unit_cost: i64,
    pub holds: u64,
    pub catalog: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub items: u64,
    pub users: u64,
    pub drifts: Vec<Drift>,
    pub prices: Vec<PriceLine>,
}

impl Report {
    /// 0 when every balance adds up, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.drifts.is_empty())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "checked {} items, {} users", self.items, self.users);
        let _ = writeln!(out, "\nunit costs charged (operation, unit cost, holds, today's price):");
        for p in &self.prices {
            let note = match p.catalog {
                Some(c) if c as i64 == p.unit_cost => "current".to_owned(),
                Some(c) => format!("old price (today {c})"),
                None => "not in today's catalog".to_owned(),
            };
            let _ = writeln!(out, "  {:<28} {:>6} {:>8}  {note}", p.operation, p.unit_cost, p.holds);
        }
        if self.drifts.is_empty() {
            let _ = writeln!(out, "\nevery balance adds up");
        } else {
            let _ = writeln!(out, "\n{} drifts:", self.drifts.len());
            for d in &self.drifts {
                let _ = writeln!(out, "  {}: {}", d.user, d.what);
            }
        }
        out
    }
}

/// Scans the table once and reconciles. `progress` shows a bar on stderr.
pub async fn run(store: &Store, catalog: &Catalog, progress: bool) -> Result<Report, String> {
    let bar = if progress { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} items scanned ({per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut books: BTreeMap<String, Books> = BTreeMap::new();
    let mut charged: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut report = Report::default();
    let mut start = None;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(store.table())
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| format!("scanning {}: {e:?}", store.table()))?;
        for item in page.items() {
            report.items += 1;
            let user = text(item, "userId").to_owned();
            match text(item, "entity") {
                "balance" => {
                    let b = books.entry(user).or_default();
                    b.balance = Some(["available", "reserved", "spent", "granted"].map(|name| num(item, name)));
                    b.open_holds = num(item, "openHolds");
                }
                "hold" => {
                    if text(item, "status") == "pending" {
                        let b = books.entry(user).or_default();
                        // What it still holds: captures so far are spent.
                        b.pending += num(item, "amount") - num(item, "capturedAmount");
                        b.pending_paid += i64::from(item.get("openCounted").is_some_and(|v| v.as_bool() == Ok(&true)));
                    }
                    *charged.entry((text(item, "operation").to_owned(), num(item, "unitCost"))).or_default() += 1;
                }
                "entry" => {
                    let user = text(item, "pk").trim_start_matches("USER#").to_owned();
                    *books.entry(user).or_default().entries.entry(text(item, "type").to_owned()).or_default() +=
                        num(item, "amount");
                }
                _ => {}
            }
        }
        bar.inc(page.items().len() as u64);
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    bar.finish_and_clear();

    report.users = books.len() as u64;
    for (user, b) in &books {
        let mut drift = |what: String| report.drifts.push(Drift { user: user.clone(), what });
        let e = |kind: &str| b.entries.get(kind).copied().unwrap_or(0);
        let [available, reserved, spent, granted] = b.balance.unwrap_or_default();
        if available + reserved + spent != granted {
            drift(format!("available {available} + reserved {reserved} + spent {spent} != granted {granted}"));
        }
        if reserved != b.pending {
            drift(format!("reserved {reserved} but its pending holds hold {}", b.pending));
        }
        if b.balance.is_some() && b.open_holds != b.pending_paid {
            drift(format!("openHolds {} but it has {} pending holds", b.open_holds, b.pending_paid));
        }
        if granted != e("grant") {
            drift(format!("granted {granted} but its grant lines sum to {}", e("grant")));
        }
        let ledger_spent = e("capture") + e("confirm") - e("refund");
        if spent != ledger_spent {
            drift(format!("spent {spent} but capture and confirm minus refund lines give {ledger_spent}"));
        }
        let ledger_reserved = e("reserve") - e("capture") - e("confirm") - e("release") - e("expire");
        if reserved != ledger_reserved {
            drift(format!("reserved {reserved} but reserve lines minus settlements give {ledger_reserved}"));
        }
    }
    report.prices = charged
        .into_iter()
        .map(|((operation, unit_cost), holds)| PriceLine {
            catalog: catalog.unit_cost(&operation).map(|c| c.get()),
            operation,
            unit_cost,
            holds,
        })
        .collect();
    Ok(report)
}
