//! Stripe events of one batch that race: a copy of an event beside it,
//! and a take-back beside its session's first payment, whose look at the
//! take-backs parked for the session adds steps of its own.

use std::collections::{BTreeMap, BTreeSet};

use super::products::charged;
use super::send::StripeSent;
use crate::model::request::Resolved;
use crate::model::runner::Runner;

/// What else of its batch an event races, as the batch starts.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Racing {
    /// A copy of this event, which no delivery had recorded yet: each copy
    /// may look before the other records it.
    pub(super) fresh_copy: bool,
    /// A paid event of this session, not bought yet: a take-back may be
    /// parked, then found and applied by the paid event's look.
    pub(super) unbought_paid: bool,
}

/// A step of a batch in the model: an operation, or one take-back parked
/// for a session applied by a paid event's look (the service applies them
/// one at a time, after the payment link: other operations may come
/// between them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Step {
    Op(usize),
    Look(usize),
}

/// Orders of more steps than this are not tried (8! of them already).
const MAX_STEPS: usize = 8;

impl Runner {
    /// Marks each Stripe event racing another of its batch.
    pub(crate) fn mark_races(&self, resolved: &mut [Resolved]) {
        let sent: Vec<Option<StripeSent>> = resolved
            .iter()
            .map(|op| match op {
                Resolved::Stripe { sent, .. } => Some(sent.clone()),
                _ => None,
            })
            .collect();
        let model = &self.model.stripe;
        for (i, op) in resolved.iter_mut().enumerate() {
            let Resolved::Stripe { sent: mine, racing } = op else { continue };
            let others = sent.iter().enumerate().filter(|(j, _)| *j != i).filter_map(|(_, s)| s.as_ref());
            for other in others.filter(|o| o.session == mine.session) {
                racing.fresh_copy |= other.id == mine.id && !model.events.contains_key(&mine.id);
                racing.unbought_paid |=
                    other.event.grants() && charged(mine.session) && !model.purchases.contains_key(&mine.session);
            }
        }
    }

    /// The steps of a batch: its operations, and a look for each take-back
    /// that a paid event of a session bought in this batch may apply (those
    /// parked before, and those of the batch, which may park first). What
    /// no look applied is applied when the batch ends.
    pub(crate) fn steps(&self, resolved: &[Resolved]) -> Vec<Step> {
        let mut steps: Vec<Step> = (0..resolved.len()).map(Step::Op).collect();
        if resolved.len() < 2 {
            return steps;
        }
        let events: Vec<&StripeSent> = resolved
            .iter()
            .filter_map(|op| match op {
                Resolved::Stripe { sent, .. } => Some(sent),
                _ => None,
            })
            .collect();
        let model = &self.model.stripe;
        // A session that charged nothing links no payment: nothing to look at.
        let bought_here: BTreeSet<usize> = events
            .iter()
            .filter(|e| e.event.grants() && charged(e.session) && !model.purchases.contains_key(&e.session))
            .map(|e| e.session)
            .collect();
        for session in bought_here {
            let parked = model.parked.get(&session).map_or(0, BTreeMap::len);
            let racing = events.iter().filter(|e| e.session == session && e.event.take_back().is_some()).count();
            for _ in 0..(parked + racing) {
                if steps.len() < MAX_STEPS {
                    steps.push(Step::Look(session));
                }
            }
        }
        steps
    }
}
