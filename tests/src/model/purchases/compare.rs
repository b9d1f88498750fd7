//! The table's purchases, payment links, parked take-backs, dispute records
//! and event records against the model's.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use credits_shared::store::{dispute_sk, payment_pk, purchase_pk};

use super::ledger::DisputeRecord;
use super::products::charged;
use super::send::{dispute_id, payment_id, session_id};
use crate::model::runner::{Item, Runner};
use crate::{number, text};

impl Runner {
    /// The table's purchases, payment links, parked take-backs, dispute
    /// records and event records against the model's.
    pub(crate) fn compare_stripe(&self, items: &[Item]) -> Result<(), String> {
        let run = &self.run;
        let model = &self.model.stripe;
        let (mut purchases, mut links, mut parked, mut disputes, mut events) =
            (BTreeMap::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), HashMap::new());
        for item in items {
            match text(item, "entity").as_str() {
                "purchase" => {
                    let user = self.users.iter().position(|u| u.as_str() == text(item, "userId"));
                    let figures =
                        (user, number(item, "credits"), number(item, "takenBack"), number(item, "unrecoverable"));
                    purchases.insert(text(item, "sessionId"), figures);
                }
                "paymentLink" => {
                    links.insert((text(item, "pk"), text(item, "sessionId")));
                }
                "parkedTakeBack" => {
                    parked.insert((text(item, "pk"), text(item, "sk")));
                }
                "dispute" => {
                    let user = self.users.iter().position(|u| u.as_str() == text(item, "userId"));
                    let figures = (user, number(item, "taken"), text(item, "closed"));
                    disputes.insert((text(item, "pk"), text(item, "sk"), figures));
                }
                "stripeEvent" => {
                    events.insert(text(item, "eventId"), text(item, "result"));
                }
                _ => {}
            }
        }
        let expected: BTreeMap<String, _> = model
            .purchases
            .iter()
            .map(|(s, p)| (session_id(run, *s), (Some(p.user), p.credits, p.taken_back, p.unrecoverable)))
            .collect();
        if purchases != expected {
            return Err(format!(
                "purchases (user, credits, takenBack, unrecoverable): table {purchases:?}, model {expected:?}"
            ));
        }
        let expected: BTreeSet<(String, String)> = model
            .purchases
            .keys()
            .filter(|s| charged(**s))
            .map(|s| (payment_pk(&payment_id(run, *s)), session_id(run, *s)))
            .collect();
        if links != expected {
            return Err(format!("payment links: table {links:?}, model {expected:?}"));
        }
        let expected: BTreeSet<(String, String)> = model
            .parked
            .iter()
            .flat_map(|(s, keys)| keys.keys().map(|k| (payment_pk(&payment_id(run, *s)), k.clone())))
            .collect();
        if parked != expected {
            return Err(format!("parked take-backs: table {parked:?}, model {expected:?}"));
        }
        let expected: BTreeSet<_> = model
            .disputes
            .iter()
            .map(|(s, record)| {
                let figures = match record {
                    DisputeRecord::Took { user, taken } => (Some(*user), *taken, String::new()),
                    DisputeRecord::WonFirst => (None, 0, "won".to_owned()),
                };
                (payment_pk(&payment_id(run, *s)), dispute_sk(&dispute_id(run, *s)), figures)
            })
            .collect();
        if disputes != expected {
            return Err(format!("disputes (user, taken, closed): table {disputes:?}, model {expected:?}"));
        }
        let recorded: HashSet<&String> = events.keys().collect();
        let seen: HashSet<&String> = model.events.keys().collect();
        if recorded != seen {
            return Err(format!("Stripe events recorded: table {recorded:?}, model {seen:?}"));
        }
        for (id, result) in &events {
            let allowed = model.events.get(id).map(|s| &s.results);
            if !allowed.is_some_and(|r| r.contains(result)) {
                return Err(format!("Stripe event {id} recorded as {result}, answered {allowed:?}"));
            }
        }
        // Purchase items are keyed by their session.
        if let Some(item) = items
            .iter()
            .find(|i| text(i, "entity") == "purchase" && text(i, "pk") != purchase_pk(&text(i, "sessionId")))
        {
            return Err(format!("a purchase under another key: {}", text(item, "pk")));
        }
        Ok(())
    }
}
