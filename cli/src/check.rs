//! `credits check`: reconciles every balance, lot by lot, with its holds and
//! its ledger lines (`credits_shared::audit`), and lists the unit costs holds were charged against today's
//! catalog. A full scan, so it is an operator's command, never a request.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use credits_shared::audit::Audit;
use credits_shared::prices::Catalog;
use credits_shared::store::{attr_number as num, attr_text as text, Store};
use indicatif::{ProgressBar, ProgressStyle};

pub use credits_shared::audit::Drift;

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
    pub purchases: Purchases,
}

/// Stripe purchases: credits granted, taken back (refunds, disputes), and
/// of those the credits users had already spent, which no debit recovers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purchases {
    pub count: u64,
    pub credits: u64,
    pub taken_back: u64,
    pub unrecoverable: u64,
    /// Refunds and disputes still waiting for their purchase.
    pub parked: u64,
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
        let p = &self.purchases;
        let _ = writeln!(
            out,
            "\nstripe purchases: {} ({} credits), taken back {} (unrecoverable: {} already spent), {} refunds or disputes parked",
            p.count, p.credits, p.taken_back, p.unrecoverable, p.parked
        );
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
    let mut audit = Audit::default();
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
            audit.add(item);
            match text(item, "entity") {
                "hold" => {
                    *charged.entry((text(item, "operation").to_owned(), num(item, "unitCost"))).or_default() += 1;
                }
                "purchase" => {
                    let p = &mut report.purchases;
                    p.count += 1;
                    p.credits += num(item, "credits").max(0) as u64;
                    p.taken_back += num(item, "takenBack").max(0) as u64;
                    p.unrecoverable += num(item, "unrecoverable").max(0) as u64;
                }
                "parkedTakeBack" => report.purchases.parked += 1,
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

    report.users = audit.users() as u64;
    report.drifts = audit.drifts();
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
