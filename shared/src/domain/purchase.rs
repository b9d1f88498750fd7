//! Which Stripe Checkout Sessions buy credits: money rules without I/O.
//!
//! Anything else in the same Stripe account (another product, a payment
//! link, a restricted key, a dashboard user) can create a Checkout Session
//! and put what it likes in its metadata. So a session buys only a pack of
//! this stack's catalog, and what the pack grants is the catalog's word,
//! never the session's: when the pack names its price, the session must have
//! paid exactly that, in that currency; a session that paid nothing buys
//! only a pack the catalog marks free.

/// How a session was settled (Stripe's `payment_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    /// `paid`.
    Paid,
    /// `no_payment_required`: a 100 % discount, nothing charged.
    NoPaymentRequired,
}

/// What the catalog asks of a session for one pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackTerms<'a> {
    /// The `amount_total` (minor units) and `currency` a paid session must
    /// show; `None`: the catalog names no price, any total buys it.
    pub price: Option<(u64, &'a str)>,
    /// A session that paid nothing may buy it.
    pub free: bool,
}

/// A session's payment and totals, as Stripe sent them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTotals<'a> {
    pub payment: PaymentStatus,
    pub amount_total: Option<u64>,
    pub currency: Option<&'a str>,
}

/// Why a session does not buy a pack with these terms (the reason it is
/// ignored with), or `None` when it does.
pub fn refusal(terms: PackTerms<'_>, session: SessionTotals<'_>) -> Option<&'static str> {
    match session.payment {
        PaymentStatus::NoPaymentRequired if !terms.free => Some("pack_not_free"),
        // Nothing was charged: there is no total to compare with the price.
        PaymentStatus::NoPaymentRequired => None,
        PaymentStatus::Paid => match terms.price {
            None => None,
            // An amount in another currency means nothing: that first.
            Some((_, currency)) if session.currency != Some(currency) => Some("currency_mismatch"),
            Some((amount, _)) if session.amount_total != Some(amount) => Some("amount_mismatch"),
            Some(_) => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICED: PackTerms<'static> = PackTerms { price: Some((900, "usd")), free: false };

    fn paid(amount_total: Option<u64>, currency: Option<&str>) -> SessionTotals<'_> {
        SessionTotals { payment: PaymentStatus::Paid, amount_total, currency }
    }

    #[test]
    fn a_priced_pack_is_bought_only_at_its_price() {
        assert_eq!(refusal(PRICED, paid(Some(900), Some("usd"))), None);
        assert_eq!(refusal(PRICED, paid(Some(899), Some("usd"))), Some("amount_mismatch"));
        assert_eq!(
            refusal(PRICED, paid(Some(90_000), Some("usd"))),
            Some("amount_mismatch"),
            "more is not the price either"
        );
        assert_eq!(refusal(PRICED, paid(None, Some("usd"))), Some("amount_mismatch"));
        assert_eq!(refusal(PRICED, paid(Some(900), Some("jpy"))), Some("currency_mismatch"));
        assert_eq!(refusal(PRICED, paid(Some(900), None)), Some("currency_mismatch"));
        assert_eq!(refusal(PRICED, paid(Some(1), Some("eur"))), Some("currency_mismatch"));
    }

    #[test]
    fn a_pack_without_a_price_is_bought_at_any_total() {
        let open = PackTerms { price: None, free: false };
        assert_eq!(refusal(open, paid(Some(1), Some("eur"))), None);
        assert_eq!(refusal(open, paid(None, None)), None);
    }

    #[test]
    fn a_session_that_paid_nothing_buys_only_a_free_pack() {
        let nothing =
            SessionTotals { payment: PaymentStatus::NoPaymentRequired, amount_total: Some(0), currency: Some("usd") };
        assert_eq!(refusal(PRICED, nothing), Some("pack_not_free"));
        assert_eq!(refusal(PackTerms { price: None, free: false }, nothing), Some("pack_not_free"));
        assert_eq!(refusal(PackTerms { price: None, free: true }, nothing), None);
        // A free pack with a list price: given away at 100 % off, or sold at that price.
        let gift = PackTerms { free: true, ..PRICED };
        assert_eq!(refusal(gift, nothing), None);
        assert_eq!(refusal(gift, paid(Some(900), Some("usd"))), None);
        assert_eq!(refusal(gift, paid(Some(500), Some("usd"))), Some("amount_mismatch"));
    }
}
