//! The price catalog. The default ships in `shared/prices.json`; a hold
//! records the unit cost it was priced at, so a later change never alters it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::domain::{Credits, PackTerms, Timestamp, MAX_AMOUNT};
use crate::store::{key, n, s, Item, Store, TxFailure};

const DEFAULT_CATALOG: &str = include_str!("../prices.json");

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Price {
    pub operation: String,
    pub unit_cost: Credits,
}

/// A credit pack sold through Stripe Checkout (`metadata.pack`): its
/// credits, and how many days they last from the Checkout Session's
/// `created` (`None`: forever).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pack {
    pub pack: String,
    pub credits: Credits,
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    /// What a paid session must total to buy it, in Stripe's minor units
    /// (`900`), with `currency` (`"usd"`): both or neither. Anything else in
    /// the same Stripe account can create a session naming the pack; only
    /// one at this price grants it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// A session that paid nothing (`no_payment_required`: a 100 % discount)
    /// may grant it. Not shown by `GET /v1/prices`: it is the catalog's rule,
    /// not something a front end sells.
    #[serde(default, skip_serializing)]
    pub free: bool,
}

impl Pack {
    /// What the catalog asks of a Checkout Session for this pack.
    pub fn terms(&self) -> PackTerms<'_> {
        PackTerms { price: self.amount_total.zip(self.currency.as_deref()), free: self.free }
    }

    fn is_valid(&self) -> bool {
        let days_ok = self.expires_in_days.is_none_or(|d| (1..=3660).contains(&d));
        // Stripe's currencies are three lower-case letters, and it sends them so.
        let currency_ok =
            self.currency.as_deref().is_none_or(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_lowercase()));
        let price_ok = self.amount_total.is_some() == self.currency.is_some() && self.amount_total != Some(0);
        !self.pack.is_empty() && (1..=MAX_AMOUNT).contains(&self.credits.get()) && days_ok && currency_ok && price_ok
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    operations: Vec<Price>,
    /// What a front end offers to buy (`GET /v1/prices` shows them); from
    /// `prices.json` only: operators change prices, not packs, at run time.
    #[serde(default)]
    packs: Vec<Pack>,
}

impl Catalog {
    /// The catalog shipped with the project.
    pub fn default_catalog() -> Catalog {
        // The file is part of the build and checked by a unit test below.
        Catalog::from_json(DEFAULT_CATALOG).unwrap_or(Catalog { operations: Vec::new(), packs: Vec::new() })
    }

    pub fn from_json(text: &str) -> Result<Catalog, String> {
        let mut catalog: Catalog = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = BTreeMap::new();
        for price in &catalog.operations {
            if price.operation.is_empty() || price.unit_cost.get() > MAX_AMOUNT {
                return Err(format!("invalid price for {:?}", price.operation));
            }
            if seen.insert(price.operation.clone(), ()).is_some() {
                return Err(format!("duplicate operation {:?}", price.operation));
            }
        }
        catalog.operations.sort_by(|a, b| a.operation.cmp(&b.operation));
        let mut packs = BTreeMap::new();
        for pack in &catalog.packs {
            if !pack.is_valid() {
                return Err(format!("invalid pack {:?}", pack.pack));
            }
            if packs.insert(pack.pack.clone(), ()).is_some() {
                return Err(format!("duplicate pack {:?}", pack.pack));
            }
        }
        Ok(catalog)
    }

    pub fn unit_cost(&self, operation: &str) -> Option<Credits> {
        self.operations.iter().find(|p| p.operation == operation).map(|p| p.unit_cost)
    }

    pub fn operations(&self) -> &[Price] {
        &self.operations
    }

    pub fn pack(&self, name: &str) -> Option<&Pack> {
        self.packs.iter().find(|p| p.pack == name)
    }

    /// This catalog with one price set (added if the operation is new).
    pub fn with_price(&self, operation: &str, unit_cost: Credits) -> Catalog {
        let mut operations: Vec<Price> = self.operations.iter().filter(|p| p.operation != operation).cloned().collect();
        operations.push(Price { operation: operation.to_owned(), unit_cost });
        operations.sort_by(|a, b| a.operation.cmp(&b.operation));
        Catalog { operations, packs: self.packs.clone() }
    }
}

/// Prices changed by an operator live in the table (`CATALOG`/`PRICES`,
/// every change recorded as `CATALOG`/`CHANGE#…`); each function reads them
/// at most every `refresh` and falls back to the shipped catalog.
#[derive(Debug)]
pub struct PriceCache {
    shipped: Arc<Catalog>,
    refresh: Duration,
    current: RwLock<Option<(Arc<Catalog>, Instant)>>,
}

pub const PRICES_PK: &str = "CATALOG";
pub const PRICE_REFRESH: Duration = Duration::from_secs(30);

impl PriceCache {
    pub fn new(shipped: Arc<Catalog>, refresh: Duration) -> PriceCache {
        PriceCache { shipped, refresh, current: RwLock::new(None) }
    }

    pub fn shipped(&self) -> &Arc<Catalog> {
        &self.shipped
    }

    /// The prices in force: the cached copy while it is fresh.
    pub async fn get(&self, store: &Store) -> crate::error::Result<Arc<Catalog>> {
        let cached = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((catalog, at)) = cached {
            if at.elapsed() < self.refresh {
                return Ok(catalog);
            }
        }
        let catalog = match store.get(key(PRICES_PK.into(), "PRICES")).await? {
            Some(item) => Arc::new(overlay(&self.shipped, &item)),
            None => self.shipped.clone(),
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some((catalog.clone(), Instant::now()));
        Ok(catalog)
    }
}

/// The shipped catalog with the operator's changes laid over it, so an
/// operation added to `prices.json` by a later deploy is priced at once.
fn overlay(shipped: &Catalog, item: &Item) -> Catalog {
    let Some(changed) = item.get("operations").and_then(|v| v.as_m().ok()) else { return shipped.clone() };
    let mut catalog = shipped.clone();
    for (operation, cost) in changed {
        match cost.as_n().ok().and_then(|c| c.parse::<u64>().ok()).filter(|c| *c <= MAX_AMOUNT) {
            Some(cost) => catalog = catalog.with_price(operation, Credits(cost)),
            None => tracing::warn!(operation = %operation, "ignoring an unreadable stored price"),
        }
    }
    catalog
}

/// Sets one price for new holds (holds already placed keep theirs) and
/// records the change. Returns the previous price, if any.
pub async fn set_price(
    store: &Store,
    current: &Catalog,
    operation: &str,
    unit_cost: Credits,
    who: &crate::domain::Attribution,
    at: Timestamp,
) -> crate::error::Result<Option<Credits>> {
    use aws_sdk_dynamodb::types::{AttributeValue, Update};
    let previous = current.unit_cost(operation);
    // One map entry per changed operation: concurrent changes of different
    // operations both land, and the same operation's last write wins.
    let update = Update::builder()
        .set_key(Some(key(PRICES_PK.into(), "PRICES")))
        .update_expression("SET operations = if_not_exists(operations, :empty), updatedAt = :at")
        .expression_attribute_values(":empty", AttributeValue::M(Default::default()))
        .expression_attribute_values(":at", n(at.millis()));
    let entry = Update::builder()
        .set_key(Some(key(PRICES_PK.into(), "PRICES")))
        .update_expression("SET operations.#op = :cost")
        .expression_attribute_names("#op", operation)
        .expression_attribute_values(":cost", n(unit_cost));
    let mut change = key(PRICES_PK.into(), &format!("CHANGE#{:013}#{operation}", at.millis()));
    change.insert("operation".into(), s(operation));
    change.insert("unitCost".into(), n(unit_cost));
    if let Some(previous) = previous {
        change.insert("previous".into(), n(previous));
    }
    change.insert("actor".into(), s(&who.actor));
    if let Some(reason) = &who.reason {
        change.insert("reason".into(), s(reason));
    }
    change.insert("at".into(), n(at.millis()));
    let failed = |failure: TxFailure| match failure {
        TxFailure::Store(e) => e,
        TxFailure::Cancelled(reasons) => crate::error::Error::Internal(format!(
            "price change cancelled: {:?}",
            reasons.iter().map(|r| r.code.as_str()).collect::<Vec<_>>()
        )),
    };
    // The map must exist before an entry can be set in it: two steps, each
    // harmless to repeat; the change line goes with the price itself.
    store.transact(vec![store.tx_update(update)?], None).await.map_err(failed)?;
    store.transact(vec![store.tx_update(entry)?, store.tx_put(change, None)?], None).await.map_err(failed)?;
    Ok(previous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_catalog_parses_and_holds_the_contract_prices() {
        let catalog = Catalog::from_json(DEFAULT_CATALOG).expect("shipped catalog parses");
        let expected = [
            ("design_generate_image", 5),
            ("design_generate_logo", 6),
            ("design_generate_icon", 4),
            ("design_generate_pattern", 4),
            ("design_generate_svg", 5),
            ("design_edit_image", 5),
            ("design_remove_background", 5),
            ("design_upscale_image", 6),
            ("design_generate_variations", 15),
            ("design_analyze_image", 1),
            ("design_extract_colors", 2),
            ("design_trends", 2),
            ("design_assistant", 0),
            ("ai_habit_analysis", 3),
            ("text_to_image_flux_dev", 10),
            ("image_generation", 1),
        ];
        for (op, cost) in expected {
            assert_eq!(catalog.unit_cost(op), Some(Credits(cost)), "{op}");
        }
        assert_eq!(catalog.unit_cost("nope"), None);
    }

    #[test]
    fn shipped_packs_name_their_prices() {
        let catalog = Catalog::from_json(DEFAULT_CATALOG).expect("shipped catalog parses");
        // The Next.js example's Stripe stand-in sells them at these prices (DEMO_PRICES).
        for (name, credits, amount) in [("starter", 100, 900), ("studio", 500, 3900), ("trial", 20, 199)] {
            let pack = catalog.pack(name).expect(name);
            assert_eq!(
                (pack.credits, pack.terms()),
                (Credits(credits), PackTerms { price: Some((amount, "usd")), free: false })
            );
        }
    }

    #[test]
    fn packs_name_a_price_whole_or_not_at_all() {
        let pack = |fields: &str| {
            Catalog::from_json(&format!(r#"{{"operations":[],"packs":[{{"pack":"p","credits":5{fields}}}]}}"#))
        };
        assert!(pack("").is_ok());
        assert!(pack(r#","free":true"#).is_ok_and(|c| c.pack("p").is_some_and(|p| p.free)));
        assert!(pack(r#","amountTotal":500,"currency":"eur""#).is_ok());
        for bad in [
            r#","amountTotal":500"#,
            r#","currency":"usd""#,
            r#","amountTotal":0,"currency":"usd""#,
            r#","amountTotal":500,"currency":"USD""#,
            r#","amountTotal":500,"currency":"dollars""#,
            r#","amountTotal":-1,"currency":"usd""#,
            r#","free":"yes""#,
        ] {
            assert!(pack(bad).is_err(), "{bad}");
        }
        // `free` is the catalog's rule: not listed to front ends.
        let listed = serde_json::to_value(pack(r#","free":true"#).expect("parses")).expect("serializes");
        assert_eq!(listed["packs"][0], serde_json::json!({"pack": "p", "credits": 5, "expiresInDays": null}));
    }

    #[test]
    fn duplicate_operations_are_rejected() {
        let text = r#"{"operations":[{"operation":"a","unitCost":1},{"operation":"a","unitCost":2}]}"#;
        assert!(Catalog::from_json(text).is_err());
    }
}
