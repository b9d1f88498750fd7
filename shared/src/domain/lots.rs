//! Credit lots: where granted credits wait until a hold takes them, a debit
//! takes them back or their lot expires. A lot is named by its pair
//! `(priority, expiresAt)`; holds and debits take from lots in burn order,
//! and what a hold gives back goes to the lots it came from.

use std::collections::BTreeMap;

use super::{Credits, GrantReason, Timestamp};

/// The most lots (other than the base lot) a user may have at once.
pub const MAX_LOTS: u32 = 100;
pub const MAX_PRIORITY: u8 = 100;

/// A lot's name. Ordered in burn order: priority ascending, then soonest
/// expiry, never-expiring last. Two grants with the same pair share a lot,
/// so "oldest first" never has to break a tie between two lots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LotKey {
    pub priority: u8,
    pub expires_at: Option<Timestamp>,
}

impl Ord for LotKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let expiry = |k: &LotKey| (k.expires_at.is_none(), k.expires_at);
        (self.priority, expiry(self)).cmp(&(other.priority, expiry(other)))
    }
}

impl PartialOrd for LotKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl LotKey {
    /// Paid credits that never expire: every credit granted before lots
    /// existed lives here.
    pub const BASE: LotKey = LotKey { priority: 50, expires_at: None };

    pub fn default_priority(reason: GrantReason) -> u8 {
        match reason {
            GrantReason::Promo | GrantReason::AdReward | GrantReason::Signup => 10,
            GrantReason::PlanRefill => 20,
            // Paid credits: what a won dispute gives back was bought.
            GrantReason::Purchase | GrantReason::Adjustment | GrantReason::DisputeWon => 50,
        }
    }

    pub fn is_base(self) -> bool {
        self == LotKey::BASE
    }

    /// Whether the lot has expired at `now` (its `expiresAt` is the first
    /// instant its credits are no longer available).
    pub fn expired_at(self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// The lot as it is written in an attribute name: `10#1764547200000`,
    /// `50#never`.
    pub fn name(self) -> String {
        match self.expires_at {
            Some(at) => format!("{}#{}", self.priority, at.millis()),
            None => format!("{}#never", self.priority),
        }
    }

    pub fn parse_name(name: &str) -> Option<LotKey> {
        let (priority, expiry) = name.split_once('#')?;
        let priority: u8 = priority.parse().ok().filter(|p| *p <= MAX_PRIORITY)?;
        let expires_at = match expiry {
            "never" => None,
            ms => Some(Timestamp(ms.parse().ok()?)),
        };
        // One spelling per lot ("010" or "+5" would name another attribute).
        Some(LotKey { priority, expires_at }).filter(|key| key.name() == name)
    }
}

/// One lot's credits: `remaining` may be taken, `held` is taken by pending
/// holds. `expiry_recorded` says its expiry is written down (its remaining
/// credits moved to `expired`); only held credits can be left in it then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lot {
    pub key: LotKey,
    pub remaining: Credits,
    pub held: Credits,
    pub expiry_recorded: bool,
}

impl Lot {
    pub fn new(key: LotKey) -> Lot {
        Lot { key, remaining: Credits::ZERO, held: Credits::ZERO, expiry_recorded: false }
    }

    /// Credits a hold or a debit may take at `now`.
    pub fn available_at(&self, now: Timestamp) -> Credits {
        match self.key.expired_at(now) {
            true => Credits::ZERO,
            false => self.remaining,
        }
    }

    /// Credits remaining or held in it.
    pub fn is_live(&self) -> bool {
        self.remaining > Credits::ZERO || self.held > Credits::ZERO
    }

    /// Nothing in it: its attributes can go (the base lot's never do). An
    /// admin refund may put credits back into a lot that is gone: the `ADD`
    /// makes it again.
    pub fn is_dead(&self) -> bool {
        !self.key.is_base() && self.held == Credits::ZERO && (self.expiry_recorded || self.remaining == Credits::ZERO)
    }
}

/// What one hold or debit took from which lot, in burn order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation(pub Vec<(LotKey, Credits)>);

impl Allocation {
    /// A hold placed before lots existed took everything from the base lot.
    pub fn base(amount: Credits) -> Allocation {
        match amount {
            Credits::ZERO => Allocation::default(),
            amount => Allocation(vec![(LotKey::BASE, amount)]),
        }
    }

    pub fn total(&self) -> Credits {
        Credits(self.0.iter().map(|(_, c)| c.get()).sum())
    }

    /// The credits between `from` and `to` of the allocation, lot by lot.
    /// Captures spend a hold's allocation from its start, in burn order, so
    /// what a hold has spent is `slice(0, captured)` and what it still holds
    /// `slice(captured, amount)`.
    pub fn slice(&self, from: Credits, to: Credits) -> Allocation {
        let mut parts = Vec::new();
        let mut start = 0u64;
        for (lot, amount) in &self.0 {
            let end = start + amount.get();
            let (lo, hi) = (start.max(from.get()), end.min(to.get()));
            if hi > lo {
                parts.push((*lot, Credits(hi - lo)));
            }
            start = end;
        }
        Allocation(parts)
    }
}

/// Credits coming back to their lots: to `remaining` while the lot lives,
/// straight to `expired` once it has expired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Return {
    pub to_lots: Allocation,
    pub expired: Allocation,
}

impl Return {
    pub fn of(parts: &Allocation, now: Timestamp) -> Return {
        let (expired, to_lots) = parts.0.iter().partition(|(lot, _)| lot.expired_at(now));
        Return { to_lots: Allocation(to_lots), expired: Allocation(expired) }
    }
}

/// A user's lots in burn order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lots(BTreeMap<LotKey, Lot>);

impl Lots {
    pub fn from_lots(lots: impl IntoIterator<Item = Lot>) -> Lots {
        Lots(lots.into_iter().map(|lot| (lot.key, lot)).collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lot> {
        self.0.values()
    }

    pub fn get(&self, key: LotKey) -> Option<&Lot> {
        self.0.get(&key)
    }

    /// The lot `key`, created empty if missing.
    pub fn entry(&mut self, key: LotKey) -> &mut Lot {
        self.0.entry(key).or_insert_with(|| Lot::new(key))
    }

    pub fn keys(&self) -> impl Iterator<Item = LotKey> + '_ {
        self.0.keys().copied()
    }

    /// Lots with credits remaining or held, which count towards [`MAX_LOTS`].
    pub fn live_count(&self) -> u32 {
        self.iter().filter(|l| l.is_live()).count() as u32
    }

    /// Drops the lots with nothing in them.
    pub fn drop_dead(&mut self) {
        self.0.retain(|_, lot| !lot.is_dead());
    }

    pub fn available_at(&self, now: Timestamp) -> Credits {
        Credits(self.iter().map(|lot| lot.available_at(now).get()).sum())
    }

    pub fn held(&self) -> Credits {
        Credits(self.iter().map(|lot| lot.held.get()).sum())
    }

    /// Remaining credits of lots that expired but whose expiry is not
    /// written down yet: a read counts them as expired already.
    pub fn expired_unrecorded_at(&self, now: Timestamp) -> Credits {
        Credits(self.iter().filter(|lot| lot.key.expired_at(now)).map(|lot| lot.remaining.get()).sum())
    }

    /// Takes `amount` in burn order from what is available at `now`, or
    /// answers with what is available when that is not enough.
    pub fn take(&self, amount: Credits, now: Timestamp) -> Result<Allocation, Credits> {
        let taken = self.take_up_to(amount, now);
        match taken.total() == amount {
            true => Ok(taken),
            false => Err(self.available_at(now)),
        }
    }

    /// Takes up to `amount` in burn order (a partial debit).
    pub fn take_up_to(&self, amount: Credits, now: Timestamp) -> Allocation {
        let mut left = amount.get();
        let mut parts = Vec::new();
        for lot in self.iter() {
            let take = lot.available_at(now).get().min(left);
            if take > 0 {
                parts.push((lot.key, Credits(take)));
                left -= take;
            }
        }
        Allocation(parts)
    }

    /// Lots whose expiry is due at `now` and not written down yet, soonest
    /// first, with the credits that expire (maybe 0).
    pub fn due_expiries(&self, now: Timestamp) -> Vec<Lot> {
        let mut due: Vec<Lot> = self
            .iter()
            .filter(|lot| lot.key.expired_at(now) && !lot.expiry_recorded && !lot.is_dead())
            .copied()
            .collect();
        due.sort_by_key(|lot| lot.key.expires_at);
        due
    }

    /// When the next expiry falls due (the due-work index's time for the
    /// balance), if any lot still has one to write down.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.iter().filter(|lot| !lot.expiry_recorded && !lot.is_dead()).filter_map(|lot| lot.key.expires_at).min()
    }

    /// The lot that expires next after `now` with credits that would be
    /// lost, and how many.
    pub fn next_expiry(&self, now: Timestamp) -> Option<(Timestamp, Credits)> {
        self.iter()
            .filter(|lot| lot.available_at(now) > Credits::ZERO)
            .filter_map(|lot| lot.key.expires_at.map(|at| (at, lot.remaining)))
            .min_by_key(|(at, _)| *at)
    }

    /// The lots as `now` sees them: expired remaining credits are no longer
    /// in any lot; lots with nothing remaining or held are left out.
    pub fn live_at(&self, now: Timestamp) -> Vec<Lot> {
        self.iter()
            .map(|lot| Lot { remaining: lot.available_at(now), ..*lot })
            .filter(|lot| lot.remaining > Credits::ZERO || lot.held > Credits::ZERO)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000_000);

    fn key(priority: u8, expires_in_ms: Option<i64>) -> LotKey {
        LotKey { priority, expires_at: expires_in_ms.map(|ms| Timestamp(NOW.millis() + ms)) }
    }

    fn lot(key: LotKey, remaining: u64, held: u64) -> Lot {
        Lot { key, remaining: Credits(remaining), held: Credits(held), expiry_recorded: false }
    }

    #[test]
    fn burn_order_is_priority_then_soonest_expiry_then_never() {
        let mut keys = vec![key(50, None), key(10, None), key(10, Some(5_000)), key(10, Some(1_000)), key(20, Some(1))];
        keys.sort();
        assert_eq!(
            keys,
            vec![key(10, Some(1_000)), key(10, Some(5_000)), key(10, None), key(20, Some(1)), key(50, None)]
        );
    }

    #[test]
    fn names_round_trip() {
        for k in [LotKey::BASE, key(0, Some(7)), key(100, None)] {
            assert_eq!(LotKey::parse_name(&k.name()), Some(k));
        }
        assert_eq!(LotKey::BASE.name(), "50#never");
        assert_eq!(LotKey::parse_name("101#never"), None);
        assert_eq!(LotKey::parse_name("10#soon"), None);
        assert_eq!(LotKey::parse_name("10"), None);
    }

    #[test]
    fn default_priorities_follow_the_contract() {
        assert_eq!(LotKey::default_priority(GrantReason::Signup), 10);
        assert_eq!(LotKey::default_priority(GrantReason::Promo), 10);
        assert_eq!(LotKey::default_priority(GrantReason::AdReward), 10);
        assert_eq!(LotKey::default_priority(GrantReason::PlanRefill), 20);
        assert_eq!(LotKey::default_priority(GrantReason::Purchase), 50);
        assert_eq!(LotKey::default_priority(GrantReason::Adjustment), 50);
        assert_eq!(LotKey::default_priority(GrantReason::DisputeWon), 50);
    }

    #[test]
    fn a_hold_takes_free_credits_first_and_skips_expired_lots() {
        let signup = key(10, Some(7 * 86_400_000));
        let gone = key(10, Some(-1));
        let lots = Lots::from_lots([lot(LotKey::BASE, 100, 0), lot(signup, 10, 0), lot(gone, 5, 0)]);
        assert_eq!(
            lots.take(Credits(15), NOW),
            Ok(Allocation(vec![(signup, Credits(10)), (LotKey::BASE, Credits(5))]))
        );
        assert_eq!(lots.take(Credits(111), NOW), Err(Credits(110)));
        assert_eq!(lots.expired_unrecorded_at(NOW), Credits(5));
        assert_eq!(lots.take_up_to(Credits(500), NOW).total(), Credits(110));
    }

    #[test]
    fn an_expiry_is_due_from_its_instant_on() {
        let soon = key(10, Some(0));
        let lots = Lots::from_lots([lot(soon, 3, 2)]);
        assert_eq!(lots.available_at(Timestamp(NOW.millis() - 1)), Credits(3));
        assert_eq!(lots.available_at(NOW), Credits::ZERO);
        assert_eq!(lots.due_expiries(NOW).len(), 1);
        assert_eq!(lots.next_due(), soon.expires_at);
        let recorded = Lots::from_lots([Lot { remaining: Credits::ZERO, expiry_recorded: true, ..lot(soon, 0, 2) }]);
        assert!(recorded.due_expiries(NOW).is_empty());
        assert_eq!(recorded.next_due(), None);
        assert_eq!(recorded.live_at(NOW).len(), 1, "held credits keep an expired lot live");
    }

    #[test]
    fn next_expiry_names_the_soonest_lot_with_credits_to_lose() {
        let held_only = key(10, Some(1_000));
        let later = key(20, Some(2_000));
        let lots = Lots::from_lots([lot(held_only, 0, 5), lot(later, 7, 0), lot(LotKey::BASE, 9, 0)]);
        assert_eq!(lots.next_expiry(NOW), Some((later.expires_at.unwrap(), Credits(7))));
    }

    #[test]
    fn slices_follow_the_allocation_in_order() {
        let (a, b) = (key(10, None), LotKey::BASE);
        let alloc = Allocation(vec![(a, Credits(3)), (b, Credits(5))]);
        assert_eq!(alloc.slice(Credits(0), Credits(2)), Allocation(vec![(a, Credits(2))]));
        assert_eq!(alloc.slice(Credits(2), Credits(8)), Allocation(vec![(a, Credits(1)), (b, Credits(5))]));
        assert_eq!(alloc.slice(Credits(3), Credits(3)), Allocation::default());
        assert_eq!(alloc.slice(Credits(4), Credits(99)), Allocation(vec![(b, Credits(4))]));
    }

    #[test]
    fn returns_to_an_expired_lot_expire_at_once() {
        let (gone, live) = (key(10, Some(-5)), key(10, Some(5)));
        let back = Return::of(&Allocation(vec![(gone, Credits(2)), (live, Credits(3))]), NOW);
        assert_eq!(back.expired, Allocation(vec![(gone, Credits(2))]));
        assert_eq!(back.to_lots, Allocation(vec![(live, Credits(3))]));
    }

    fn random_lots(rng: &mut StdRng) -> Lots {
        Lots::from_lots((0..rng.gen_range(0..8)).map(|_| {
            let expiry = rng.gen_bool(0.6).then(|| rng.gen_range(-3_000..3_000));
            lot(key(rng.gen_range(0..=100), expiry), rng.gen_range(0..50), rng.gen_range(0..20))
        }))
    }

    /// Whatever the lots, a take never takes more than a lot has, never from
    /// an expired lot, and a later lot only once every earlier one is empty.
    #[test]
    fn property_takes_respect_burn_order_and_availability() {
        let mut rng = StdRng::seed_from_u64(16);
        for _ in 0..5_000 {
            let lots = random_lots(&mut rng);
            let want = Credits(rng.gen_range(0..200));
            let taken = lots.take_up_to(want, NOW);
            assert_eq!(taken.total(), want.min(lots.available_at(NOW)));
            let mut emptied_before = true;
            for l in lots.iter() {
                let took = taken.0.iter().find(|(k, _)| *k == l.key).map_or(Credits::ZERO, |(_, c)| *c);
                assert!(took <= l.available_at(NOW));
                if took > Credits::ZERO {
                    assert!(emptied_before, "{:?} taken before an earlier lot was empty", l.key);
                }
                emptied_before &= took == l.available_at(NOW);
            }
            match lots.take(want, NOW) {
                Ok(all) => assert_eq!(all, taken),
                Err(available) => assert!(available < want),
            }
        }
    }

    /// Slicing an allocation at any cut gives back exactly the allocation.
    #[test]
    fn property_slices_partition_an_allocation() {
        let mut rng = StdRng::seed_from_u64(61);
        for _ in 0..5_000 {
            let lots = random_lots(&mut rng);
            let alloc = lots.take_up_to(Credits(rng.gen_range(0..200)), NOW);
            let total = alloc.total().get();
            let cut = Credits(rng.gen_range(0..=total));
            let (head, tail) = (alloc.slice(Credits(0), cut), alloc.slice(cut, alloc.total()));
            assert_eq!(head.total().get() + tail.total().get(), alloc.total().get());
            let mut merged: BTreeMap<LotKey, u64> = BTreeMap::new();
            for (k, c) in head.0.iter().chain(&tail.0) {
                *merged.entry(*k).or_default() += c.get();
            }
            let whole: BTreeMap<LotKey, u64> = alloc.0.iter().map(|(k, c)| (*k, c.get())).collect();
            assert_eq!(merged, whole);
            let back = Return::of(&tail, NOW);
            assert_eq!(back.to_lots.total().get() + back.expired.total().get(), tail.total().get());
        }
    }
}
