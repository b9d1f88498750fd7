//! The Stripe events an episode sends: which event, about which session,
//! or an event sent again.

use rand::rngs::StdRng;
use rand::Rng;

use super::ledger::TakeBack;
use super::products::SESSIONS;
use crate::model::ops::Op;

/// The cumulative `amount_refunded` a `charge.refunded` may carry.
const REFUNDED: [u64; 5] = [1, 333, 500, 998, 999];

/// An event of Stripe's about a session (`Unhandled`: a type not acted on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StripeEvent {
    /// `checkout.session.completed`, paid.
    Paid,
    /// `checkout.session.completed`, unpaid (a bank debit still clearing).
    Unpaid,
    /// `checkout.session.async_payment_succeeded`.
    AsyncPaid,
    /// `charge.refunded` with this cumulative `amount_refunded`.
    Refund { refunded: u64 },
    /// `charge.dispute.created`.
    Dispute,
    /// `charge.dispute.closed`, `won` or `lost`.
    DisputeClosed { won: bool },
    /// `payment_intent.created`.
    Unhandled,
}

impl StripeEvent {
    pub(super) fn grants(self) -> bool {
        matches!(self, StripeEvent::Paid | StripeEvent::AsyncPaid)
    }

    pub(super) fn take_back(self) -> Option<TakeBack> {
        match self {
            StripeEvent::Refund { refunded } => Some(TakeBack::Refund { refunded }),
            StripeEvent::Dispute => Some(TakeBack::Dispute),
            _ => None,
        }
    }
}

/// The sessions that buy their pack, charged for it.
const BUYING: [usize; 5] = [0, 2, 3, 4, 6];
/// Two of them, the subject of most disputes.
const DISPUTED: [usize; 2] = [0, 4];

/// A Stripe operation: a new event about a session (the focus of a batch
/// when there is one, so events of one session race), or an event sent
/// again byte for byte.
pub(crate) fn op(rng: &mut StdRng, focus: Option<usize>) -> Op {
    // Mostly sessions that buy, so that their refunds and disputes meet a purchase.
    let session = match focus {
        Some(f) if f % 4 != 0 => BUYING[f % BUYING.len()],
        Some(f) => f % SESSIONS,
        None if rng.gen_bool(0.7) => BUYING[rng.gen_range(0..BUYING.len())],
        None => rng.gen_range(0..SESSIONS),
    };
    let event = match rng.gen_range(0..100) {
        0..=29 => StripeEvent::Paid,
        30..=36 => StripeEvent::Unpaid,
        37..=46 => StripeEvent::AsyncPaid,
        47..=68 => StripeEvent::Refund { refunded: REFUNDED[rng.gen_range(0..REFUNDED.len())] },
        69..=80 => StripeEvent::Dispute,
        81..=88 => StripeEvent::DisputeClosed { won: true },
        89..=94 => StripeEvent::DisputeClosed { won: false },
        _ => StripeEvent::Unhandled,
    };
    // Disputes are mostly of two sessions, so that a `won` often meets the
    // take-back of its dispute (one dispute per session).
    let disputed = matches!(event, StripeEvent::Dispute | StripeEvent::DisputeClosed { .. });
    let session = match focus {
        None if disputed && rng.gen_bool(0.8) => DISPUTED[rng.gen_range(0..DISPUTED.len())],
        _ => session,
    };
    match rng.gen_range(0..10) {
        0..=2 => Op::StripeRedeliver { nth: focus.unwrap_or_else(|| rng.gen_range(0..64)) },
        _ => Op::Stripe { session, event },
    }
}

pub(crate) fn op_name(event: StripeEvent) -> &'static str {
    match event {
        StripeEvent::Paid => "stripe: session paid",
        StripeEvent::Unpaid => "stripe: session completed unpaid",
        StripeEvent::AsyncPaid => "stripe: async payment succeeded",
        StripeEvent::Refund { .. } => "stripe: charge refunded",
        StripeEvent::Dispute => "stripe: dispute created",
        StripeEvent::DisputeClosed { won: true } => "stripe: dispute closed won",
        StripeEvent::DisputeClosed { won: false } => "stripe: dispute closed lost",
        StripeEvent::Unhandled => "stripe: event of another type",
    }
}
