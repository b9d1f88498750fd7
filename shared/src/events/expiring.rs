//! `grant.expiring`: when a grant makes a lot that expires, a warning is
//! scheduled in the due-work index for `CREDITS_EXPIRY_WARNING_HOURS` before
//! the expiry (one item per lot, put if absent: a second grant into the
//! same lot schedules nothing more). The scheduled job fires it when due,
//! if credits are left in the lot then, as an event like any other.

use serde_json::json;

use super::outbox::Outbox;
use super::schedule::KEEP_SECONDS;
use super::{event_id, Event, Kind};
use crate::domain::{LotKey, Timestamp, UserId};
use crate::error::Result;
use crate::store::{key, n, outbox_shard, s, to_item, user_pk, ConditionalUpdate, WarningItem, WARNING_PREFIX};

impl Outbox {
    /// Schedules the lot's warning; nothing if it is scheduled or fired
    /// already. One retired unfired (the lot was empty when it fell due) is
    /// armed again: the lot has credits again.
    pub(super) async fn schedule_warning(&self, user: &UserId, lot: LotKey) -> Result<()> {
        let Some(expiry) = lot.expires_at else { return Ok(()) };
        // A lot granted inside the window is warned about at once; its warning
        // is dated then, not in the past (an endpoint hears of what happens
        // after it was added).
        let due = (expiry.millis() - self.defaults().expiry_warning_seconds * 1000).max(self.ledger.now().millis());
        let item = WarningItem {
            pk: user_pk(user),
            sk: format!("{WARNING_PREFIX}{}", lot.name()),
            entity: "expiryWarning".into(),
            user_id: user.clone(),
            priority: lot.priority,
            lot_expires_at: expiry.millis(),
            due_at: due,
            fired_at: None,
            pending_shard: Some(outbox_shard(&format!("{user}\n{}", lot.name()))),
            expires_at: Some(due),
            ttl: expiry.unix_seconds() + KEEP_SECONDS,
        };
        let shard = item.pending_shard.clone().unwrap_or_default();
        let warning_key = key(item.pk.clone(), &item.sk);
        if !self.ledger.store().put_if_absent(to_item(&item)?).await? {
            self.ledger
                .store()
                .update_if(
                    warning_key,
                    ConditionalUpdate {
                        set: "SET pendingShard = :shard, expiresAt = :due, dueAt = :due",
                        condition: "attribute_not_exists(firedAt) AND attribute_not_exists(pendingShard)",
                        names: &[],
                        values: vec![(":shard", s(shard)), (":due", n(due))],
                    },
                )
                .await?;
        }
        Ok(())
    }

    /// A warning the job claimed: the event, if the lot still has credits
    /// and has not expired. Dated when it fell due, so that firing it again
    /// after a crash records the same event.
    pub(super) async fn warning_event(&self, warning: &WarningItem) -> Result<Option<Event>> {
        let lot = LotKey { priority: warning.priority, expires_at: Some(Timestamp(warning.lot_expires_at)) };
        let now = self.ledger.now();
        let balance = self.ledger.balance(&warning.user_id).await?;
        let left = balance
            .lots
            .iter()
            .find(|l| l.priority == lot.priority && l.expires_at == lot.expires_at)
            .map(|l| l.remaining.get())
            .unwrap_or(0);
        if left == 0 || lot.expires_at.is_some_and(|at| at <= now) {
            return Ok(None);
        }
        let data = json!({"priority": lot.priority, "expiresAt": lot.expires_at, "amount": left});
        let source = format!("{}\n{}", warning.user_id, lot.name());
        Ok(Some(Event {
            id: event_id(Kind::GrantExpiring, &source),
            kind: Kind::GrantExpiring,
            occurred_at: Timestamp(warning.due_at),
            user_id: warning.user_id.clone(),
            data,
        }))
    }

    /// Done with a warning (fired, or nothing left to warn about): out of
    /// the index, but kept (until TTL) so that a redelivered grant does not
    /// schedule a fired one again.
    pub(super) async fn retire_warning(&self, warning: &WarningItem, fired: bool) -> Result<()> {
        let update = if fired {
            ConditionalUpdate {
                set: "SET firedAt = :now REMOVE pendingShard, expiresAt",
                condition: "attribute_exists(pk)",
                names: &[],
                values: vec![(":now", n(self.ledger.now().millis()))],
            }
        } else {
            ConditionalUpdate {
                set: "REMOVE pendingShard, expiresAt",
                condition: "attribute_exists(pk)",
                names: &[],
                values: vec![],
            }
        };
        self.ledger.store().update_if(key(warning.pk.clone(), &warning.sk), update).await?;
        Ok(())
    }
}
