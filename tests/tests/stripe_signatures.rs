//! Stripe-Signature as Stripe's own library makes it (npm `stripe`, in the
//! repository's devDependencies): every header it signs is accepted for
//! the exact body and secret, and refused for any other body or secret.

use credits_shared::domain::Timestamp;
use credits_shared::inbound::stripe::StripeSignatures;
use credits_shared::inbound::Rejected;
use credits_tests::events::signed_by_stripe;
use rand::{Rng, SeedableRng};
use serde_json::json;

#[test]
fn headers_signed_by_stripes_library_verify_and_nothing_else_does() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(18);
    let now = 1_800_000_000i64;
    let cases: Vec<(String, String, i64)> = (0..60)
        .map(|i| {
            let payload = json!({"id": format!("evt_{i}"), "type": "checkout.session.completed",
                "data": {"object": {"id": format!("cs_test_{}", rng.gen::<u32>()), "metadata": {"pack": "starter"}, "amount_total": 900,
                "note": "ünïcödé ✓"}}})
            .to_string();
            let secret = format!("whsec_{:032x}", rng.gen::<u128>());
            (payload, secret, now - rng.gen_range(0..=300))
        })
        .collect();
    let headers = signed_by_stripe(&cases);
    assert_eq!(headers.len(), cases.len());
    let at = Timestamp(now * 1000);
    for ((payload, secret, _), header) in cases.iter().zip(&headers) {
        // Our secret list while rotating: an old one first, this one second.
        let ours = StripeSignatures::new(vec!["whsec_retired".into(), secret.clone()], false);
        assert_eq!(ours.verify(Some(header), payload.as_bytes(), at), Ok(()), "{header}");
        let tampered = payload.replacen("900", "1", 1);
        assert_eq!(ours.verify(Some(header), tampered.as_bytes(), at), Err(Rejected::BadSignature));
        let other = StripeSignatures::new(vec![format!("{secret}x")], false);
        assert_eq!(other.verify(Some(header), payload.as_bytes(), at), Err(Rejected::BadSignature));
        let later = Timestamp((now + 301) * 1000);
        assert_eq!(ours.verify(Some(header), payload.as_bytes(), later), Err(Rejected::StaleTimestamp));
    }
}
