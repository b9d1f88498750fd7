//! The price catalog. The default ships in `shared/prices.json`; a hold
//! records the unit cost it was priced at, so a later change never alters it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Credits, MAX_AMOUNT};

const DEFAULT_CATALOG: &str = include_str!("../prices.json");

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Price {
    pub operation: String,
    pub unit_cost: Credits,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    operations: Vec<Price>,
}

impl Catalog {
    /// The catalog shipped with the project.
    pub fn default_catalog() -> Catalog {
        // The file is part of the build and checked by a unit test below.
        Catalog::from_json(DEFAULT_CATALOG).unwrap_or(Catalog { operations: Vec::new() })
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
        Ok(catalog)
    }

    pub fn unit_cost(&self, operation: &str) -> Option<Credits> {
        self.operations.iter().find(|p| p.operation == operation).map(|p| p.unit_cost)
    }

    pub fn operations(&self) -> &[Price] {
        &self.operations
    }
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
    fn duplicate_operations_are_rejected() {
        let text = r#"{"operations":[{"operation":"a","unitCost":1},{"operation":"a","unitCost":2}]}"#;
        assert!(Catalog::from_json(text).is_err());
    }
}
