//! Stripe's webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`,
//! where each `v1` is HMAC-SHA256 keyed with the endpoint secret as it is
//! (the whole `whsec_…` string, not base64-decoded as Standard Webhooks
//! does) over `"<t>.<raw body>"`. Several `v1` come while Stripe rolls a
//! secret; several secrets here while we do. Not a provider of jobs: Stripe's
//! events are purchases, so this verifier stands apart from `Verifiers`.
//!
//! A configured secret comes with the mode its events must be of
//! (`CREDITS_STRIPE_LIVEMODE`, no default): a test-mode secret deployed by
//! mistake, or a test event replayed against production, grants nothing.

use serde_json::Value;

use super::{hmac_matches, Rejected};
use crate::domain::{PaymentStatus, SessionTotals, Timestamp, UserId};
use crate::validate::{Invalid, Problem};

/// Stripe's libraries refuse signatures older than this by default.
pub const TOLERANCE_SECONDS: i64 = 300;
pub const SECRET_VAR: &str = "CREDITS_STRIPE_WEBHOOK_SECRET";
pub const LIVEMODE_VAR: &str = "CREDITS_STRIPE_LIVEMODE";
/// Longest header read: a handful of signatures, never an unbounded scan.
const MAX_HEADER: usize = 2048;

#[derive(Default)]
pub struct StripeSignatures {
    secrets: Vec<String>,
    /// The mode events must be of (`CREDITS_STRIPE_LIVEMODE`: `true` live).
    livemode: bool,
}

/// Says how many secrets, never what they are.
impl std::fmt::Debug for StripeSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSignatures")
            .field("secrets", &self.secrets.len())
            .field("livemode", &self.livemode)
            .finish()
    }
}

/// The `Stripe-Signature` value Stripe sends: for tests and relays.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl StripeSignatures {
    /// Comma-separated secrets (`CREDITS_STRIPE_WEBHOOK_SECRET`; the stack
    /// parameter `StripeWebhookSecrets`): every entry must be a `whsec_`
    /// secret. The message names the entry's position, never its value.
    /// With a secret, `livemode` (`CREDITS_STRIPE_LIVEMODE`; `StripeLivemode`)
    /// must say `true` or `false`: a mode nobody chose is not guessed.
    pub fn from_config(raw: &str, livemode: &str) -> Result<StripeSignatures, String> {
        super::check_secrets(SECRET_VAR, raw, |s| s.starts_with("whsec_") && s.len() > "whsec_".len())?;
        let secrets = super::split_secrets(raw);
        let livemode = match livemode.trim() {
            "true" => true,
            "false" => false,
            "" if secrets.is_empty() => false,
            "" => {
                return Err(format!(
                    "{LIVEMODE_VAR}: required with {SECRET_VAR}: true (live events) or false (test events)"
                ))
            }
            _ => return Err(format!("{LIVEMODE_VAR}: true or false")),
        };
        Ok(StripeSignatures::new(secrets, livemode))
    }

    /// These secrets, acting only on events of this mode (`true`: live).
    pub fn new(secrets: Vec<String>, livemode: bool) -> StripeSignatures {
        StripeSignatures { secrets, livemode }
    }

    pub fn livemode(&self) -> bool {
        self.livemode
    }

    /// `Ok` when a configured secret signed this exact body within the
    /// tolerance; the timestamp is checked both ways (a signature from the
    /// future is as suspect as a stale one). Each candidate is compared in
    /// constant time.
    pub fn verify(&self, header: Option<&str>, body: &[u8], now: Timestamp) -> Result<(), Rejected> {
        if self.secrets.is_empty() {
            return Err(Rejected::NoSecret);
        }
        let header = header.filter(|h| h.len() <= MAX_HEADER).ok_or(Rejected::MissingSignature)?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                // One `t` only: two would leave which one was signed a guess.
                Some(("t", value)) if timestamp.is_none() => {
                    timestamp = Some(value.parse::<i64>().map_err(|_| Rejected::BadSignature)?)
                }
                Some(("t", _)) => return Err(Rejected::BadSignature),
                Some(("v1", value)) => signatures.extend(hex::decode(value).ok().filter(|s| s.len() == 32)),
                // `v0` (test-mode legacy) and anything else: not ours to trust.
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(Rejected::MissingSignature)?;
        if signatures.is_empty() {
            return Err(Rejected::MissingSignature);
        }
        if now.unix_seconds().abs_diff(timestamp) > TOLERANCE_SECONDS as u64 {
            return Err(Rejected::StaleTimestamp);
        }
        let prefix = format!("{timestamp}.");
        let signed = self.secrets.iter().any(|secret| {
            signatures.iter().any(|signature| hmac_matches(secret.as_bytes(), &[prefix.as_bytes(), body], signature))
        });
        if signed {
            Ok(())
        } else {
            Err(Rejected::BadSignature)
        }
    }
}

/// What a verified Stripe event asks of the ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A Checkout Session was paid: grant its pack, once per session, if the
    /// catalog's terms for the pack are met.
    Grant(Paid),
    /// A charge was refunded (in part) or disputed: take credits back.
    TakeBack(TakeBack),
    /// A dispute was closed won: give back what it took, once.
    GiveBack(DisputeWon),
    /// Nothing to do, and why (answered 200: Stripe must not retry it).
    Ignored(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paid {
    pub session_id: String,
    pub user: UserId,
    /// `metadata.pack`: what the session buys, if the catalog sells it.
    pub pack: String,
    pub payment_intent: Option<String>,
    /// The session's `created`: packs that expire count their days from it,
    /// so every delivery of the event asks for the very same grant.
    pub created: Timestamp,
    pub payment: PaymentStatus,
    pub amount_total: Option<u64>,
    pub currency: Option<String>,
}

impl Paid {
    /// What the session paid, to hold against the pack's terms.
    pub fn totals(&self) -> SessionTotals<'_> {
        SessionTotals { payment: self.payment, amount_total: self.amount_total, currency: self.currency.as_deref() }
    }
}

/// `charge.dispute.closed` with `status: won`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisputeWon {
    pub payment_intent: String,
    /// The dispute's id (`dp_…`): what its take-back recorded is keyed by it.
    pub dispute: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakeBack {
    pub payment_intent: String,
    /// The charge's or the dispute's id.
    pub source: String,
    pub kind: TakeBackKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakeBackKind {
    /// `amount_refunded` of `amount` so far (cumulative, in the smallest unit).
    Refund {
        amount: u64,
        refunded: u64,
    },
    Dispute,
}

/// A verified event's id and what it asks. An event of the other mode than
/// `livemode` (`CREDITS_STRIPE_LIVEMODE`), or that does not say its mode, is
/// ignored, so that a test-mode secret that found its way into production
/// grants nothing for test cards.
pub fn parse_event(body: &[u8], livemode: bool) -> Result<(String, Action), Invalid> {
    let malformed = || Invalid::new("body", Problem::Malformed);
    let event: Value = serde_json::from_slice(body).map_err(|_| malformed())?;
    let id =
        event.get("id").and_then(Value::as_str).filter(|id| !id.is_empty() && id.len() <= 255).ok_or_else(malformed)?;
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    if event.get("livemode").and_then(Value::as_bool) != Some(livemode) {
        return Ok((id.to_owned(), Action::Ignored("other_mode")));
    }
    let object = event.pointer("/data/object").cloned().unwrap_or(Value::Null);
    let text = |name: &str| object.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let action = match kind {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            // `completed` with an unpaid session (a bank debit still
            // clearing): its `async_payment_succeeded` grants.
            // `no_payment_required`: a 100% discount (free packs only).
            match text("payment_status").as_deref() {
                Some("paid") => paid(&object, PaymentStatus::Paid),
                Some("no_payment_required") => paid(&object, PaymentStatus::NoPaymentRequired),
                _ => Action::Ignored("payment_not_settled"),
            }
        }
        "charge.refunded" => match (text("payment_intent"), text("id")) {
            (Some(payment_intent), Some(source)) => Action::TakeBack(TakeBack {
                payment_intent,
                source,
                kind: TakeBackKind::Refund {
                    amount: object.get("amount").and_then(Value::as_u64).unwrap_or(0),
                    refunded: object.get("amount_refunded").and_then(Value::as_u64).unwrap_or(0),
                },
            }),
            _ => Action::Ignored("no_payment_intent"),
        },
        "charge.dispute.created" => match (text("payment_intent"), text("id")) {
            (Some(payment_intent), Some(source)) => {
                Action::TakeBack(TakeBack { payment_intent, source, kind: TakeBackKind::Dispute })
            }
            _ => Action::Ignored("no_payment_intent"),
        },
        // `lost` (the dispute's take-back stands), `warning_closed` and the
        // rest change nothing.
        "charge.dispute.closed" => match (text("status").as_deref(), text("payment_intent"), text("id")) {
            (Some("won"), Some(payment_intent), Some(dispute)) => {
                Action::GiveBack(DisputeWon { payment_intent, dispute })
            }
            (Some("won"), _, _) => Action::Ignored("no_payment_intent"),
            _ => Action::Ignored("dispute_not_won"),
        },
        _ => Action::Ignored("event_type_not_handled"),
    };
    Ok((id.to_owned(), action))
}

fn paid(session: &Value, payment: PaymentStatus) -> Action {
    let text = |pointer: &str| session.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty());
    let Some(session_id) = text("/id") else { return Action::Ignored("no_session") };
    let Some(user) = text("/client_reference_id").and_then(UserId::parse) else { return Action::Ignored("no_user") };
    let Some(pack) = text("/metadata/pack") else {
        // `metadata.credits` once named an amount: anything else in the
        // Stripe account could mint credits with it. Said apart, so that a
        // session made for the old rule is recognised in monitoring.
        let reason = if text("/metadata/credits").is_some() { "metadata_credits_not_accepted" } else { "no_pack" };
        return Action::Ignored(reason);
    };
    Action::Grant(Paid {
        session_id: session_id.to_owned(),
        user,
        pack: pack.to_owned(),
        payment_intent: text("/payment_intent").map(str::to_owned),
        created: Timestamp(session.get("created").and_then(Value::as_i64).unwrap_or(0) * 1000),
        payment,
        amount_total: session.get("amount_total").and_then(Value::as_u64),
        currency: text("/currency").map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const NOW: Timestamp = Timestamp(1_700_000_100_000);

    /// Made with Stripe's own library (npm `stripe` 23.1.0):
    /// `stripe.webhooks.generateTestHeaderString({payload, secret: "whsec_test", timestamp: 1700000000})`.
    #[test]
    fn matches_stripes_library() {
        let payload = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
        let header = "t=1700000000,v1=749721cbedbfa4cc1aa6c9c2bec1edd93766a07906c9d9b3dbc7626e4e660caf";
        assert_eq!(sign("whsec_test", 1_700_000_000, payload), header);
        let verifier = StripeSignatures::new(vec!["whsec_test".into()], false);
        assert_eq!(verifier.verify(Some(header), payload, NOW), Ok(()));
    }

    #[test]
    fn refuses_what_it_should() {
        let body = br#"{"id":"evt_2"}"#;
        let verifier = StripeSignatures::new(vec!["whsec_old".into(), SECRET.into()], false);
        let good = sign(SECRET, 1_700_000_000, body);
        let good_v1 = good.split_once(",v1=").map(|(_, v)| v.to_owned()).unwrap_or_default();
        assert_eq!(verifier.verify(Some(&good), body, NOW), Ok(()), "the second secret (rotation)");
        let rolled = format!("t=1700000000,v1={},v1={good_v1},v0=abc", "0".repeat(64));
        assert_eq!(verifier.verify(Some(&rolled), body, NOW), Ok(()), "one of several v1");
        assert_eq!(verifier.verify(Some(&good), br#"{"id":"evt_3"}"#, NOW), Err(Rejected::BadSignature));
        let wrong = sign("whsec_other", 1_700_000_000, body);
        assert_eq!(verifier.verify(Some(&wrong), body, NOW), Err(Rejected::BadSignature));
        let stale = sign(SECRET, 1_700_000_100 - 301, body);
        assert_eq!(verifier.verify(Some(&stale), body, NOW), Err(Rejected::StaleTimestamp));
        let edge = sign(SECRET, 1_700_000_100 - 300, body);
        assert_eq!(verifier.verify(Some(&edge), body, NOW), Ok(()));
        let future = sign(SECRET, 1_700_000_100 + 301, body);
        assert_eq!(verifier.verify(Some(&future), body, NOW), Err(Rejected::StaleTimestamp));
        let v0_only = format!("t=1700000000,v0={good_v1}");
        assert_eq!(verifier.verify(Some(&v0_only), body, NOW), Err(Rejected::MissingSignature));
        let two_t = format!("t=1,{good}");
        assert_eq!(verifier.verify(Some(&two_t), body, NOW), Err(Rejected::BadSignature));
        assert_eq!(verifier.verify(None, body, NOW), Err(Rejected::MissingSignature));
        assert_eq!(verifier.verify(Some("garbage"), body, NOW), Err(Rejected::MissingSignature));
        let signed_by_hex_key = format!("t=1700000000,v1={}", "z".repeat(64));
        assert_eq!(verifier.verify(Some(&signed_by_hex_key), body, NOW), Err(Rejected::MissingSignature));
        let none = StripeSignatures::new(vec![], false);
        assert_eq!(none.verify(Some(&good), body, NOW), Err(Rejected::NoSecret));
    }

    fn session(extra: serde_json::Value) -> Vec<u8> {
        let mut object = serde_json::json!({"id": "cs_test_1", "object": "checkout.session", "client_reference_id": "u1",
            "payment_status": "paid", "payment_intent": "pi_1", "created": 1_700_000_000, "amount_total": 900,
            "currency": "usd", "metadata": {"pack": "starter"}});
        if let (Some(o), Some(e)) = (object.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        serde_json::json!({"id": "evt_1", "type": "checkout.session.completed", "livemode": false,
            "data": {"object": object}})
        .to_string()
        .into_bytes()
    }

    fn action(body: serde_json::Value) -> Action {
        parse_event(body.to_string().as_bytes(), false).expect("parses").1
    }

    #[test]
    fn events_become_actions() {
        let (id, first) = parse_event(&session(serde_json::json!({})), false).expect("parses");
        assert_eq!(id, "evt_1");
        let Action::Grant(paid) = first else { panic!("{first:?}") };
        assert_eq!((paid.pack.as_str(), paid.created), ("starter", Timestamp(1_700_000_000_000)));
        assert_eq!(paid.payment_intent.as_deref(), Some("pi_1"));
        assert_eq!(
            paid.totals(),
            SessionTotals { payment: PaymentStatus::Paid, amount_total: Some(900), currency: Some("usd") }
        );
        let ignored = |extra| parse_event(&session(extra), false).expect("parses").1;
        assert_eq!(ignored(serde_json::json!({"payment_status": "unpaid"})), Action::Ignored("payment_not_settled"));
        assert_eq!(ignored(serde_json::json!({"client_reference_id": null})), Action::Ignored("no_user"));
        assert_eq!(ignored(serde_json::json!({"metadata": {}})), Action::Ignored("no_pack"));
        let free = ignored(serde_json::json!({"payment_status": "no_payment_required", "amount_total": 0}));
        let Action::Grant(free) = free else { panic!("{free:?}") };
        assert_eq!(free.payment, PaymentStatus::NoPaymentRequired, "the ledger holds it to the pack's `free`");
        let refund = serde_json::json!({"id": "evt_2", "type": "charge.refunded", "livemode": false,
            "data": {"object": {"id": "ch_1", "payment_intent": "pi_1", "amount": 1000, "amount_refunded": 250}}});
        assert_eq!(
            action(refund),
            Action::TakeBack(TakeBack {
                payment_intent: "pi_1".into(),
                source: "ch_1".into(),
                kind: TakeBackKind::Refund { amount: 1000, refunded: 250 }
            })
        );
        let other =
            serde_json::json!({"id": "evt_3", "type": "customer.created", "livemode": false, "data": {"object": {}}});
        assert_eq!(action(other), Action::Ignored("event_type_not_handled"));
        assert!(parse_event(b"not json", false).is_err());
        assert!(parse_event(br#"{"type": "charge.refunded"}"#, false).is_err(), "no id");
    }

    #[test]
    fn metadata_credits_buy_nothing() {
        let credits_only = serde_json::json!({"metadata": {"credits": "100"}});
        assert_eq!(
            parse_event(&session(credits_only), false).expect("parses").1,
            Action::Ignored("metadata_credits_not_accepted")
        );
        // Beside a pack, the pack is what is bought (at its own terms), never the number.
        let both = serde_json::json!({"metadata": {"credits": "1000000", "pack": "starter"}});
        let Action::Grant(paid) = parse_event(&session(both), false).expect("parses").1 else { panic!() };
        assert_eq!(paid.pack, "starter");
    }

    #[test]
    fn a_dispute_closed_won_gives_back_and_nothing_else_does() {
        let closed = |status: &str| {
            action(serde_json::json!({"id": "evt_d", "type": "charge.dispute.closed", "livemode": false,
                "data": {"object": {"id": "dp_1", "object": "dispute", "payment_intent": "pi_1", "status": status}}}))
        };
        assert_eq!(
            closed("won"),
            Action::GiveBack(DisputeWon { payment_intent: "pi_1".into(), dispute: "dp_1".into() })
        );
        for status in ["lost", "warning_closed", "under_review", ""] {
            assert_eq!(closed(status), Action::Ignored("dispute_not_won"), "{status}");
        }
        let orphan = serde_json::json!({"id": "evt_d", "type": "charge.dispute.closed", "livemode": false,
            "data": {"object": {"id": "dp_1", "status": "won"}}});
        assert_eq!(action(orphan), Action::Ignored("no_payment_intent"));
    }

    #[test]
    fn events_act_only_in_the_configured_mode() {
        let refund = |livemode: serde_json::Value| {
            let mut event = serde_json::json!({"id": "evt_l", "type": "charge.refunded",
                "data": {"object": {"id": "ch_1", "payment_intent": "pi_1", "amount": 1, "amount_refunded": 1}}});
            if !livemode.is_null() {
                event["livemode"] = livemode;
            }
            event.to_string()
        };
        let live = refund(serde_json::json!(true));
        let test = refund(serde_json::json!(false));
        assert!(matches!(parse_event(live.as_bytes(), true).expect("parses").1, Action::TakeBack(_)));
        assert!(matches!(parse_event(test.as_bytes(), false).expect("parses").1, Action::TakeBack(_)));
        assert_eq!(parse_event(live.as_bytes(), false).expect("parses").1, Action::Ignored("other_mode"));
        assert_eq!(parse_event(test.as_bytes(), true).expect("parses").1, Action::Ignored("other_mode"));
        for unsaid in [refund(serde_json::Value::Null), refund(serde_json::json!("true"))] {
            assert_eq!(parse_event(unsaid.as_bytes(), true).expect("parses").1, Action::Ignored("other_mode"));
            assert_eq!(parse_event(unsaid.as_bytes(), false).expect("parses").1, Action::Ignored("other_mode"));
        }
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert!(StripeSignatures::from_config("", "").is_ok());
        assert_eq!(StripeSignatures::from_config("whsec_a, whsec_b", "true").map(|s| s.livemode()), Ok(true));
        assert_eq!(StripeSignatures::from_config("whsec_a", " false ").map(|s| s.livemode()), Ok(false));
        assert!(StripeSignatures::from_config("whsec_a", "yes").is_err());
        assert!(StripeSignatures::from_config("", "yes").is_err(), "a typo is refused even before a secret is set");
        // A secret without a mode: refused, naming the variable that is missing.
        let unmoded = StripeSignatures::from_config("whsec_a", "").expect_err("no mode");
        assert!(unmoded.starts_with(LIVEMODE_VAR) && !unmoded.contains("whsec_a"), "{unmoded}");
        let refused = StripeSignatures::from_config("whsec_a,sk_live_secret", "true").expect_err("not a whsec_ secret");
        assert!(refused.contains(SECRET_VAR) && refused.contains('2') && !refused.contains("sk_live_secret"));
        let shown = format!("{:?}", StripeSignatures::new(vec!["whsec_hidden".into()], true));
        assert!(!shown.contains("hidden"), "{shown}");
    }
}
