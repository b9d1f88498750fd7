//! A hold's money rules without I/O: what each request asks of it, which
//! transitions are open from its state, and how each splits its credits.
//!
//! A hold of `units` may be captured several times while it stays pending
//! (`final: false`); whatever is captured stays spent, and the closing
//! transition (a final confirm, a release, an expiry) settles only what is
//! still held.

use sha2::{Digest, Sha256};

use super::{Credits, Hold, HoldStatus, Timestamp};

/// How long after it was placed a hold may still be open: `extend` moves
/// `expiresAt` no further.
pub const MAX_HOLD_SECONDS: i64 = 7 * 86_400;

/// A non-final capture's `Idempotency-Key`, kept in the hold as a short
/// digest so that a hold with many captures stays small (each write of it
/// costs a unit per KB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CaptureKey([u8; 12]);

impl CaptureKey {
    pub fn of(idempotency_key: &str) -> CaptureKey {
        let digest = Sha256::digest(idempotency_key.as_bytes());
        let mut short = [0u8; 12];
        short.copy_from_slice(&digest[..12]);
        CaptureKey(short)
    }

    pub fn as_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// What a caller asks of a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// The app's final confirm: capture `units` more (`None`: all still
    /// held; 0 only after captures), return the rest, close.
    Confirm {
        units: Option<u32>,
    },
    /// A provider's success: `units` is the task's total output (`None`:
    /// all the units held). Captured units rise to it, never fall, and the
    /// hold closes.
    Produced {
        units: Option<u32>,
    },
    /// Capture `units` more now and keep the hold open.
    Capture {
        units: u32,
        key: CaptureKey,
    },
    Release,
    Expire,
    Refund,
}

/// One change of a hold, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Capture `units` more, return what is still held, close.
    Confirm {
        units: u32,
    },
    /// Capture `units` more and keep the rest held.
    Capture {
        units: u32,
        key: CaptureKey,
    },
    Release,
    Expire,
    Refund,
}

/// What a request does, decided from the hold as last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Try this conditional transition.
    Apply(Settlement),
    /// The same request already happened: answer with the hold as it is.
    Replay,
    /// Settled otherwise (or, for the sweep, not due yet): refuse.
    NotPending(HoldStatus),
    /// Asked to capture from a pending hold past `expiresAt`: expire it,
    /// then refuse.
    ExpireInstead,
    /// More units than are still held (`held` of them): refuse.
    TooManyUnits { held: u32 },
}

impl Hold {
    /// Units neither captured nor returned yet.
    pub fn held_units(&self) -> u32 {
        match self.status {
            HoldStatus::Pending => self.units.saturating_sub(self.captured_units),
            _ => 0,
        }
    }

    /// Credits still held: what the hold's closing transition settles.
    pub fn held_amount(&self) -> Credits {
        match self.status {
            HoldStatus::Pending => Credits(self.amount.0.saturating_sub(self.captured_amount.0)),
            _ => Credits::ZERO,
        }
    }
}

/// The money rules for one hold. Expiry is judged against `now` here only
/// to pick the path; the write that follows carries the same comparison as
/// its condition, and the captured units it read.
pub fn decide(hold: &Hold, ask: Ask, now: Timestamp) -> Decision {
    use Decision::*;
    use HoldStatus::{Confirmed, Expired, Pending, Refunded, Released};
    let due = hold.expires_at <= now;
    let held = hold.held_units();
    let fits = |units: u32| (1..=held).contains(&units);
    match (ask, hold.status) {
        (Ask::Confirm { .. } | Ask::Produced { .. } | Ask::Capture { .. }, Pending) if due => ExpireInstead,
        (Ask::Confirm { units: None }, Pending) => Apply(Settlement::Confirm { units: held }),
        (Ask::Confirm { units: Some(units) }, Pending) if fits(units) => Apply(Settlement::Confirm { units }),
        // Outputs captured along the way, no more to come: close, return the rest.
        (Ask::Confirm { units: Some(0) }, Pending) if hold.captured_units > 0 => {
            Apply(Settlement::Confirm { units: 0 })
        }
        (Ask::Capture { units, key }, Pending) if fits(units) => Apply(Settlement::Capture { units, key }),
        (Ask::Confirm { .. } | Ask::Capture { .. }, Pending) => TooManyUnits { held },
        (Ask::Produced { units }, Pending) => {
            Apply(Settlement::Confirm { units: produced(hold, units).saturating_sub(hold.captured_units) })
        }
        (Ask::Confirm { units: None }, Confirmed) if hold.captured_units == hold.units => Replay,
        (Ask::Confirm { units: Some(units) }, Confirmed) if hold.final_units == units => Replay,
        (Ask::Produced { units }, Confirmed) if hold.captured_units >= produced(hold, units) => Replay,
        (Ask::Release, Pending) => Apply(Settlement::Release),
        (Ask::Expire, Pending) if due => Apply(Settlement::Expire),
        (Ask::Refund, Confirmed) => Apply(Settlement::Refund),
        // Credits captured before a release or an expiry stayed spent: an
        // operator can give them back too.
        (Ask::Refund, Released | Expired) if hold.captured_amount > Credits::ZERO => Apply(Settlement::Refund),
        (Ask::Release, Released) | (Ask::Expire, Expired) | (Ask::Refund, Refunded) => Replay,
        (_, status) => NotPending(status),
    }
}

/// What `extend` does to a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension {
    /// Move `expiresAt` here.
    To(Timestamp),
    /// Expired already: too late.
    Expired,
    /// Pending past `expiresAt`: too late, and the caller expires it (as a
    /// confirm does).
    ExpireInstead,
    NotPending(HoldStatus),
    /// Beyond [`MAX_HOLD_SECONDS`] after `createdAt`: at most `max` seconds.
    TooLong {
        max: u64,
    },
}

/// `expiresAt` becomes `now + ttl_seconds`, at most [`MAX_HOLD_SECONDS`]
/// after the hold was placed. The write carries `expiresAt > now` as its
/// condition, so it never revives a hold the sweep may already take.
pub fn extension(hold: &Hold, ttl_seconds: u32, now: Timestamp) -> Extension {
    match hold.status {
        HoldStatus::Pending if hold.expires_at <= now => Extension::ExpireInstead,
        HoldStatus::Pending => {
            let until = now.plus_seconds(i64::from(ttl_seconds));
            let latest = hold.created_at.plus_seconds(MAX_HOLD_SECONDS);
            match until <= latest {
                true => Extension::To(until),
                false => Extension::TooLong { max: (latest.millis() - now.millis()).max(0) as u64 / 1000 },
            }
        }
        HoldStatus::Expired => Extension::Expired,
        status => Extension::NotPending(status),
    }
}

/// A provider's total, never more than the hold's units (a provider may
/// report more than was held: never charge more).
fn produced(hold: &Hold, units: Option<u32>) -> u32 {
    units.unwrap_or(hold.units).min(hold.units)
}

/// What one transition moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Units this transition captures (a refund: the units it refunds).
    pub captured_units: u32,
    /// Credits this transition moves into `spent` (a refund: out of it).
    pub captured: Credits,
    /// Credits this transition gives back to `available`.
    pub returned: Credits,
}

pub fn split(hold: &Hold, wanted: Settlement) -> Split {
    let held = hold.held_amount();
    let take = |units: u32| Credits(hold.unit_cost.0.saturating_mul(u64::from(units)).min(held.0));
    match wanted {
        Settlement::Confirm { units } => {
            let captured = take(units);
            Split { captured_units: units, captured, returned: Credits(held.0 - captured.0) }
        }
        Settlement::Capture { units, .. } => {
            Split { captured_units: units, captured: take(units), returned: Credits::ZERO }
        }
        Settlement::Release | Settlement::Expire => {
            Split { captured_units: 0, captured: Credits::ZERO, returned: held }
        }
        Settlement::Refund => Split {
            captured_units: hold.captured_units,
            captured: hold.captured_amount,
            returned: hold.captured_amount,
        },
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::domain::{Provider, UserId};

    /// 4 units at 5: 20 held, of which `captured` units were captured.
    fn hold(status: HoldStatus, expires_at: i64, captured: u32) -> Hold {
        Hold {
            reservation_id: Uuid::nil(),
            user_id: UserId::parse("u").expect("valid"),
            operation: "design_generate_image".into(),
            units: 4,
            unit_cost: Credits(5),
            amount: Credits(20),
            status,
            task_id: None,
            provider: Provider::Bfl,
            description: None,
            created_at: Timestamp(0),
            expires_at: Timestamp(expires_at),
            captured_units: captured,
            captured_amount: Credits(u64::from(captured) * 5),
            released_amount: Credits(0),
            settled_at: None,
            settled_by: None,
            events: None,
            final_units: captured,
            lots: Vec::new(),
        }
    }

    const NOW: Timestamp = Timestamp(1000);
    const KEY: &str = "output-1";

    fn confirm(units: Option<u32>) -> Ask {
        Ask::Confirm { units }
    }

    fn capture(units: u32) -> Ask {
        Ask::Capture { units, key: CaptureKey::of(KEY) }
    }

    #[test]
    fn confirm_of_pending_hold_before_expiry_applies() {
        let d = decide(&hold(HoldStatus::Pending, 2000, 0), confirm(Some(4)), NOW);
        assert_eq!(d, Decision::Apply(Settlement::Confirm { units: 4 }));
    }

    #[test]
    fn confirm_or_capture_at_or_after_expiry_expires_instead() {
        let at_deadline = hold(HoldStatus::Pending, 1000, 0);
        assert_eq!(decide(&at_deadline, confirm(Some(4)), NOW), Decision::ExpireInstead);
        assert_eq!(decide(&at_deadline, capture(1), NOW), Decision::ExpireInstead);
        assert_eq!(decide(&at_deadline, Ask::Produced { units: None }, NOW), Decision::ExpireInstead);
    }

    #[test]
    fn confirm_replay_needs_the_same_units() {
        let confirmed = hold(HoldStatus::Confirmed, 2000, 3);
        assert_eq!(decide(&confirmed, confirm(Some(3)), NOW), Decision::Replay);
        assert_eq!(decide(&confirmed, confirm(Some(4)), NOW), Decision::NotPending(HoldStatus::Confirmed));
        assert_eq!(decide(&confirmed, confirm(None), NOW), Decision::NotPending(HoldStatus::Confirmed));
        assert_eq!(decide(&hold(HoldStatus::Confirmed, 2000, 4), confirm(None), NOW), Decision::Replay);
    }

    #[test]
    fn a_final_confirm_after_captures_captures_more_and_replays_by_its_own_units() {
        let pending = hold(HoldStatus::Pending, 2000, 1);
        assert_eq!(decide(&pending, confirm(None), NOW), Decision::Apply(Settlement::Confirm { units: 3 }));
        assert_eq!(decide(&pending, confirm(Some(2)), NOW), Decision::Apply(Settlement::Confirm { units: 2 }));
        assert_eq!(decide(&pending, confirm(Some(4)), NOW), Decision::TooManyUnits { held: 3 });
        // Nothing more came out: 0 more closes it, the rest goes back.
        assert_eq!(decide(&pending, confirm(Some(0)), NOW), Decision::Apply(Settlement::Confirm { units: 0 }));
        let untouched = hold(HoldStatus::Pending, 2000, 0);
        assert_eq!(decide(&untouched, confirm(Some(0)), NOW), Decision::TooManyUnits { held: 4 });
        // Closed with 2 more after 1 captured: 3 captured, its replay says 2.
        let closed = Hold { captured_units: 3, final_units: 2, ..hold(HoldStatus::Confirmed, 2000, 3) };
        assert_eq!(decide(&closed, confirm(Some(2)), NOW), Decision::Replay);
        assert_eq!(decide(&closed, confirm(Some(3)), NOW), Decision::NotPending(HoldStatus::Confirmed));
    }

    #[test]
    fn captures_never_exceed_what_is_still_held() {
        let pending = hold(HoldStatus::Pending, 2000, 3);
        let key = CaptureKey::of(KEY);
        assert_eq!(decide(&pending, capture(1), NOW), Decision::Apply(Settlement::Capture { units: 1, key }));
        assert_eq!(decide(&pending, capture(2), NOW), Decision::TooManyUnits { held: 1 });
        let all_captured = hold(HoldStatus::Pending, 2000, 4);
        assert_eq!(decide(&all_captured, capture(1), NOW), Decision::TooManyUnits { held: 0 });
        // The final confirm still closes it, capturing nothing more.
        assert_eq!(decide(&all_captured, confirm(None), NOW), Decision::Apply(Settlement::Confirm { units: 0 }));
        assert_eq!(
            decide(&hold(HoldStatus::Confirmed, 2000, 4), capture(1), NOW),
            Decision::NotPending(HoldStatus::Confirmed)
        );
    }

    #[test]
    fn a_providers_total_raises_captured_units_never_lowers_them() {
        let pending = hold(HoldStatus::Pending, 2000, 2);
        let produced = |units| Ask::Produced { units };
        assert_eq!(decide(&pending, produced(Some(3)), NOW), Decision::Apply(Settlement::Confirm { units: 1 }));
        assert_eq!(decide(&pending, produced(Some(1)), NOW), Decision::Apply(Settlement::Confirm { units: 0 }));
        assert_eq!(decide(&pending, produced(None), NOW), Decision::Apply(Settlement::Confirm { units: 2 }));
        assert_eq!(decide(&pending, produced(Some(99)), NOW), Decision::Apply(Settlement::Confirm { units: 2 }));
        let confirmed = hold(HoldStatus::Confirmed, 2000, 3);
        assert_eq!(decide(&confirmed, produced(Some(2)), NOW), Decision::Replay);
        assert_eq!(decide(&confirmed, produced(Some(4)), NOW), Decision::NotPending(HoldStatus::Confirmed));
    }

    #[test]
    fn release_after_confirm_is_refused_and_release_twice_replays() {
        assert_eq!(
            decide(&hold(HoldStatus::Confirmed, 2000, 3), Ask::Release, NOW),
            Decision::NotPending(HoldStatus::Confirmed)
        );
        assert_eq!(decide(&hold(HoldStatus::Released, 2000, 0), Ask::Release, NOW), Decision::Replay);
    }

    #[test]
    fn expire_only_when_due() {
        assert_eq!(
            decide(&hold(HoldStatus::Pending, 2000, 0), Ask::Expire, NOW),
            Decision::NotPending(HoldStatus::Pending)
        );
        assert_eq!(decide(&hold(HoldStatus::Pending, 1000, 0), Ask::Expire, NOW), Decision::Apply(Settlement::Expire));
    }

    #[test]
    fn refund_once_and_only_of_captured_credits() {
        let refund = Decision::Apply(Settlement::Refund);
        assert_eq!(decide(&hold(HoldStatus::Confirmed, 0, 3), Ask::Refund, NOW), refund);
        assert_eq!(decide(&hold(HoldStatus::Refunded, 0, 3), Ask::Refund, NOW), Decision::Replay);
        assert_eq!(decide(&hold(HoldStatus::Released, 0, 2), Ask::Refund, NOW), refund);
        assert_eq!(
            decide(&hold(HoldStatus::Released, 0, 0), Ask::Refund, NOW),
            Decision::NotPending(HoldStatus::Released)
        );
    }

    #[test]
    fn partial_capture_returns_the_remainder() {
        let s = split(&hold(HoldStatus::Pending, 2000, 0), Settlement::Confirm { units: 3 });
        assert_eq!(s, Split { captured_units: 3, captured: Credits(15), returned: Credits(5) });
    }

    #[test]
    fn after_captures_only_what_is_still_held_moves() {
        let pending = hold(HoldStatus::Pending, 2000, 1);
        let key = CaptureKey::of(KEY);
        assert_eq!(
            split(&pending, Settlement::Capture { units: 2, key }),
            Split { captured_units: 2, captured: Credits(10), returned: Credits(0) }
        );
        assert_eq!(
            split(&pending, Settlement::Confirm { units: 1 }),
            Split { captured_units: 1, captured: Credits(5), returned: Credits(10) }
        );
        for closing in [Settlement::Release, Settlement::Expire] {
            assert_eq!(
                split(&pending, closing),
                Split { captured_units: 0, captured: Credits(0), returned: Credits(15) }
            );
        }
    }

    #[test]
    fn extend_moves_expiry_up_to_seven_days_after_placing() {
        let pending = hold(HoldStatus::Pending, 2000, 0);
        assert_eq!(extension(&pending, 3600, NOW), Extension::To(Timestamp(1000 + 3_600_000)));
        let week = MAX_HOLD_SECONDS as u32;
        // Placed at 0, now 1 s later: 7 days minus 1 s is the most.
        assert_eq!(extension(&pending, week - 1, NOW), Extension::To(Timestamp(MAX_HOLD_SECONDS * 1000)));
        assert_eq!(extension(&pending, week, NOW), Extension::TooLong { max: u64::from(week) - 1 });
        assert_eq!(extension(&hold(HoldStatus::Pending, 1000, 0), 60, NOW), Extension::ExpireInstead);
        assert_eq!(extension(&hold(HoldStatus::Expired, 1000, 0), 60, NOW), Extension::Expired);
        assert_eq!(
            extension(&hold(HoldStatus::Confirmed, 2000, 4), 60, NOW),
            Extension::NotPending(HoldStatus::Confirmed)
        );
    }

    #[test]
    fn capture_keys_are_short_and_stable() {
        assert_eq!(CaptureKey::of("a").as_hex().len(), 24);
        assert_eq!(CaptureKey::of("a"), CaptureKey::of("a"));
        assert_ne!(CaptureKey::of("a"), CaptureKey::of("b"));
    }
}
