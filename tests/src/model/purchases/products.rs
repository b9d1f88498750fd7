//! What each session of an episode buys (a pack of the model's catalog,
//! at its price or not, free or not, or only `metadata.credits`), and that
//! catalog.

use credits_shared::prices::Catalog;
use serde_json::json;

use crate::catalog_with_packs;

/// Sessions an episode sells, so that events of one session meet.
pub const SESSIONS: usize = 10;
/// Every pack's price, so every charge, in cents: odd, so refunded shares floor.
pub(super) const CHARGE: u64 = 999;

/// The model's own catalog (the shipped operations): small packs, so that
/// spending and taking back meet; every price [`CHARGE`] in usd but the
/// free pack's.
pub(crate) fn catalog() -> Catalog {
    let priced =
        |pack: &str, credits: u64| json!({"pack": pack, "credits": credits, "amountTotal": CHARGE, "currency": "usd"});
    let mut trial = priced("trial", 20);
    trial["expiresInDays"] = json!(30);
    catalog_with_packs(json!([priced("starter", 40), priced("small", 7), priced("medium", 25), trial,
        {"pack": "gift", "credits": 13, "free": true}]))
}

/// What a session's metadata names.
#[derive(Clone, Copy)]
pub(super) enum Metadata {
    Pack(&'static str),
    /// `metadata.credits` alone, as sessions made for the old rule did.
    Credits(u64),
}

/// What a session says it buys, and how it was paid.
#[derive(Clone, Copy)]
pub(super) struct Product {
    pub(super) metadata: Metadata,
    /// `amount_total`, in usd cents.
    pub(super) total: u64,
    /// `no_payment_required` (a 100 % discount): nothing charged, so no
    /// payment intent, no payment link, and no refund or dispute ever applies.
    pub(super) free: bool,
}

impl Product {
    fn paid(pack: &'static str) -> Product {
        Product { metadata: Metadata::Pack(pack), total: CHARGE, free: false }
    }

    fn given(pack: &'static str) -> Product {
        Product { metadata: Metadata::Pack(pack), total: 0, free: true }
    }
}

/// Two trial packs (expiring 30 days after the session was created), a
/// pack the catalog does not have, a pack paid at another total, a free
/// pack given away and a pack that is not given so, and metadata credits.
pub(super) fn product(session: usize) -> Product {
    match session % SESSIONS {
        0 => Product::paid("starter"),
        1 => Product { total: CHARGE - 1, ..Product::paid("starter") },
        2 | 6 => Product::paid("trial"),
        3 => Product::paid("small"),
        4 => Product::paid("medium"),
        5 => Product::paid("legacy"),
        7 => Product::given("gift"),
        8 => Product { metadata: Metadata::Credits(40), ..Product::paid("starter") },
        _ => Product::given("medium"),
    }
}

/// Whether a session's payment links refunds and disputes to its purchase.
pub(super) fn charged(session: usize) -> bool {
    !product(session).free
}
