//! Stripe's webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`,
//! where each `v1` is HMAC-SHA256 keyed with the endpoint secret as it is
//! (the whole `whsec_…` string, not base64-decoded as Standard Webhooks
//! does) over `"<t>.<raw body>"`. Several `v1` come while Stripe rolls a
//! secret; several secrets here while we do. Not a provider of jobs: Stripe's
//! events are purchases, so this verifier stands apart from `Verifiers`.

use serde_json::Value;

use super::{hmac_matches, Rejected};
use crate::domain::{Credits, Timestamp, UserId, MAX_AMOUNT};
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
    /// The mode events must be of (`CREDITS_STRIPE_LIVEMODE`); `None`: either.
    livemode: Option<bool>,
}

/// Says how many secrets, never what they are.
impl std::fmt::Debug for StripeSignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSignatures").field("secrets", &self.secrets.len()).finish()
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
    pub fn from_config(raw: &str, livemode: &str) -> Result<StripeSignatures, String> {
        super::check_secrets(SECRET_VAR, raw, |s| s.starts_with("whsec_") && s.len() > "whsec_".len())?;
        let livemode = match livemode.trim() {
            "" => None,
            "true" => Some(true),
            "false" => Some(false),
            _ => return Err(format!("{LIVEMODE_VAR}: true, false or empty")),
        };
        Ok(StripeSignatures::new(super::split_secrets(raw)).for_mode(livemode))
    }

    pub fn new(secrets: Vec<String>) -> StripeSignatures {
        StripeSignatures { secrets, livemode: None }
    }

    /// Only events of this mode are acted on (`true`: live).
    pub fn for_mode(self, livemode: Option<bool>) -> StripeSignatures {
        StripeSignatures { livemode, ..self }
    }

    pub fn livemode(&self) -> Option<bool> {
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
    /// A Checkout Session was paid: grant its credits, once per session.
    Grant(Paid),
    /// A charge was refunded (in part) or disputed: take credits back.
    TakeBack(TakeBack),
    /// Nothing to do, and why (answered 200: Stripe must not retry it).
    Ignored(&'static str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paid {
    pub session_id: String,
    pub user: UserId,
    /// `metadata.credits`, when given.
    pub credits: Option<Credits>,
    /// `metadata.pack`, when given (and no `credits`).
    pub pack: Option<String>,
    pub payment_intent: Option<String>,
    /// The session's `created`: packs that expire count their days from it,
    /// so every delivery of the event asks for the very same grant.
    pub created: Timestamp,
    pub amount_total: Option<u64>,
    pub currency: Option<String>,
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
/// `livemode` (when set: `CREDITS_STRIPE_LIVEMODE`) is ignored, so that a
/// test-mode secret that found its way into production grants nothing for
/// test cards.
pub fn parse_event(body: &[u8], livemode: Option<bool>) -> Result<(String, Action), Invalid> {
    let malformed = || Invalid::new("body", Problem::Malformed);
    let event: Value = serde_json::from_slice(body).map_err(|_| malformed())?;
    let id =
        event.get("id").and_then(Value::as_str).filter(|id| !id.is_empty() && id.len() <= 255).ok_or_else(malformed)?;
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
    if livemode.is_some_and(|live| event.get("livemode").and_then(Value::as_bool) != Some(live)) {
        return Ok((id.to_owned(), Action::Ignored("other_mode")));
    }
    let object = event.pointer("/data/object").cloned().unwrap_or(Value::Null);
    let text = |name: &str| object.get(name).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
    let action = match kind {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            // `completed` with an unpaid session (a bank debit still
            // clearing): its `async_payment_succeeded` grants.
            // `no_payment_required`: a 100% discount, paid in full all the same.
            match text("payment_status").as_deref() {
                Some("paid" | "no_payment_required") => paid(&object),
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
        _ => Action::Ignored("event_type_not_handled"),
    };
    Ok((id.to_owned(), action))
}

fn paid(session: &Value) -> Action {
    let text = |pointer: &str| session.pointer(pointer).and_then(Value::as_str).filter(|s| !s.is_empty());
    let Some(session_id) = text("/id") else { return Action::Ignored("no_session") };
    let Some(user) = text("/client_reference_id").and_then(UserId::parse) else { return Action::Ignored("no_user") };
    // Metadata values are strings in Stripe.
    let credits = match text("/metadata/credits") {
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(n) if (1..=MAX_AMOUNT).contains(&n) => Some(Credits(n)),
            _ => return Action::Ignored("invalid_credits"),
        },
        None => None,
    };
    let pack = text("/metadata/pack").map(str::to_owned);
    if credits.is_none() && pack.is_none() {
        return Action::Ignored("no_credits");
    }
    Action::Grant(Paid {
        session_id: session_id.to_owned(),
        user,
        credits,
        pack: if credits.is_some() { None } else { pack },
        payment_intent: text("/payment_intent").map(str::to_owned),
        created: Timestamp(session.get("created").and_then(Value::as_i64).unwrap_or(0) * 1000),
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
        let verifier = StripeSignatures::new(vec!["whsec_test".into()]);
        assert_eq!(verifier.verify(Some(header), payload, NOW), Ok(()));
    }

    #[test]
    fn refuses_what_it_should() {
        let body = br#"{"id":"evt_2"}"#;
        let verifier = StripeSignatures::new(vec!["whsec_old".into(), SECRET.into()]);
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
        let none = StripeSignatures::new(vec![]);
        assert_eq!(none.verify(Some(&good), body, NOW), Err(Rejected::NoSecret));
    }

    fn session(extra: serde_json::Value) -> Vec<u8> {
        let mut object = serde_json::json!({"id": "cs_test_1", "object": "checkout.session", "client_reference_id": "u1",
            "payment_status": "paid", "payment_intent": "pi_1", "created": 1_700_000_000, "amount_total": 999,
            "currency": "usd", "metadata": {"credits": "100"}});
        if let (Some(o), Some(e)) = (object.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        serde_json::json!({"id": "evt_1", "type": "checkout.session.completed", "data": {"object": object}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn events_become_actions() {
        let (id, action) = parse_event(&session(serde_json::json!({})), None).expect("parses");
        assert_eq!(id, "evt_1");
        let Action::Grant(paid) = action else { panic!("{action:?}") };
        assert_eq!(
            (paid.credits, paid.pack.as_deref(), paid.created),
            (Some(Credits(100)), None, Timestamp(1_700_000_000_000))
        );
        assert_eq!(paid.payment_intent.as_deref(), Some("pi_1"));
        let ignored = |extra| parse_event(&session(extra), None).expect("parses").1;
        assert_eq!(ignored(serde_json::json!({"payment_status": "unpaid"})), Action::Ignored("payment_not_settled"));
        assert_eq!(ignored(serde_json::json!({"client_reference_id": null})), Action::Ignored("no_user"));
        assert_eq!(ignored(serde_json::json!({"metadata": {}})), Action::Ignored("no_credits"));
        assert_eq!(ignored(serde_json::json!({"metadata": {"credits": "-5"}})), Action::Ignored("invalid_credits"));
        assert_eq!(ignored(serde_json::json!({"metadata": {"credits": "0"}})), Action::Ignored("invalid_credits"));
        let Action::Grant(pack) = ignored(serde_json::json!({"metadata": {"pack": "starter"}})) else { panic!() };
        assert_eq!((pack.credits, pack.pack.as_deref()), (None, Some("starter")));
        let refund = serde_json::json!({"id": "evt_2", "type": "charge.refunded",
            "data": {"object": {"id": "ch_1", "payment_intent": "pi_1", "amount": 1000, "amount_refunded": 250}}});
        assert_eq!(
            parse_event(refund.to_string().as_bytes(), None).expect("parses").1,
            Action::TakeBack(TakeBack {
                payment_intent: "pi_1".into(),
                source: "ch_1".into(),
                kind: TakeBackKind::Refund { amount: 1000, refunded: 250 }
            })
        );
        let other = serde_json::json!({"id": "evt_3", "type": "customer.created", "data": {"object": {}}});
        assert_eq!(
            parse_event(other.to_string().as_bytes(), None).expect("parses").1,
            Action::Ignored("event_type_not_handled")
        );
        assert!(parse_event(b"not json", None).is_err());
        assert!(parse_event(br#"{"type": "charge.refunded"}"#, None).is_err(), "no id");
        let free = ignored(serde_json::json!({"payment_status": "no_payment_required"}));
        assert!(matches!(free, Action::Grant(_)), "a 100% discount is paid: {free:?}");
        // A live deployment acts on live events only, and a test one on test events.
        let live = serde_json::json!({"id": "evt_l", "type": "charge.refunded", "livemode": true,
            "data": {"object": {"id": "ch_1", "payment_intent": "pi_1", "amount": 1, "amount_refunded": 1}}});
        let live = live.to_string();
        assert!(matches!(parse_event(live.as_bytes(), Some(true)).expect("parses").1, Action::TakeBack(_)));
        assert_eq!(parse_event(live.as_bytes(), Some(false)).expect("parses").1, Action::Ignored("other_mode"));
        assert_eq!(
            parse_event(&session(serde_json::json!({})), Some(true)).expect("parses").1,
            Action::Ignored("other_mode")
        );
    }

    #[test]
    fn secrets_are_checked_and_never_shown() {
        assert!(StripeSignatures::from_config("", "").is_ok());
        assert_eq!(StripeSignatures::from_config("whsec_a, whsec_b", "true").map(|s| s.livemode()), Ok(Some(true)));
        assert!(StripeSignatures::from_config("whsec_a", "yes").is_err());
        let refused = StripeSignatures::from_config("whsec_a,sk_live_secret", "").expect_err("not a whsec_ secret");
        assert!(refused.contains(SECRET_VAR) && refused.contains('2') && !refused.contains("sk_live_secret"));
        let shown = format!("{:?}", StripeSignatures::new(vec!["whsec_hidden".into()]));
        assert!(!shown.contains("hidden"), "{shown}");
    }
}
