//! Settling a hold: captures, confirm, release, expiry and refund. Each
//! reads the hold, decides from it (domain::decide) and tries the one
//! conditional transition (transition.rs); whoever loses a race decides
//! again from what the winner left.

use uuid::Uuid;

use super::{Along, Attribution, Ledger, Outcome, MAX_ATTEMPTS};
use crate::domain::{decide, Actor, Ask, CaptureKey, Decision, Hold, Settlement, UserId};
use crate::error::{Error, Result};
use crate::store::HoldItem;
use crate::validate::{Invalid, Problem};

impl Ledger {
    /// A hold with its events. `user` is `None` for admins.
    pub async fn hold(&self, user: Option<&UserId>, id: Uuid) -> Result<Hold> {
        Ok(self.owned_hold(user, id).await?.into_hold(true))
    }

    /// The final confirm: captures `units` more (`None`: all still held)
    /// and returns the rest.
    pub async fn confirm(&self, user: Option<&UserId>, id: Uuid, units: Option<u32>, by: Actor) -> Result<Hold> {
        self.settle(user, id, Ask::Confirm { units }, by).await
    }

    /// A non-final capture: `units` more now, the rest stays held. Its
    /// `Idempotency-Key` makes a retry a replay, never a second charge.
    pub async fn capture(
        &self,
        user: Option<&UserId>,
        id: Uuid,
        units: u32,
        idempotency_key: &str,
        by: Actor,
    ) -> Result<Outcome<Hold>> {
        let ask = Ask::Capture { units, key: CaptureKey::of(idempotency_key) };
        Ok(match self.settle_once(user, id, ask, by).await? {
            (hold, true) => Outcome::Created(hold),
            (hold, false) => Outcome::Replayed(hold),
        })
    }

    pub async fn release(&self, user: Option<&UserId>, id: Uuid, by: Actor) -> Result<Hold> {
        self.settle(user, id, Ask::Release, by).await
    }

    /// Admin: gives a hold's captured credits back, once, recording who and
    /// why on the history line.
    pub async fn refund(&self, id: Uuid, note: &Attribution) -> Result<Hold> {
        let (hold, applied) = self.settle_noted(None, id, Ask::Refund, Actor::Admin, Some(note)).await?;
        // Credits back in a lot that expires later: that lot may have left
        // the balance item (spent to nothing) and with it the due-work
        // index; this puts its expiry back there. If it fails, the user's
        // next write does.
        let now = self.clock.now();
        if applied && hold.lots.iter().any(|lot| lot.expires_at.is_some_and(|at| at > now)) {
            if let Err(error) = self.caught_up(&hold.user_id, now).await {
                tracing::warn!(reservation = %id, error = %error, "writing down what is due after a refund failed");
            }
        }
        Ok(hold)
    }

    /// Expires one hold if it is pending and due (the sweep's transition).
    /// `true` when this call expired it, `false` when it already was.
    pub async fn expire(&self, id: Uuid, by: Actor) -> Result<bool> {
        self.settle_once(None, id, Ask::Expire, by).await.map(|(_, applied)| applied)
    }

    pub(super) async fn owned_hold(&self, user: Option<&UserId>, id: Uuid) -> Result<HoldItem> {
        match self.store.get_hold(id).await? {
            Some(hold) if user.is_none_or(|u| *u == hold.user_id) => Ok(hold),
            // Another user's hold answers exactly like a missing one.
            _ => Err(Error::HoldNotFound),
        }
    }

    pub(super) async fn settle(&self, user: Option<&UserId>, id: Uuid, ask: Ask, by: Actor) -> Result<Hold> {
        self.settle_once(user, id, ask, by).await.map(|(hold, _)| hold)
    }

    /// The settlement and whether this call applied it (`false`: a replay).
    pub(super) async fn settle_once(
        &self,
        user: Option<&UserId>,
        id: Uuid,
        ask: Ask,
        by: Actor,
    ) -> Result<(Hold, bool)> {
        self.settle_noted(user, id, ask, by, None).await
    }

    pub(super) async fn settle_noted(
        &self,
        user: Option<&UserId>,
        id: Uuid,
        ask: Ask,
        by: Actor,
        note: Option<&Attribution>,
    ) -> Result<(Hold, bool)> {
        for attempt in 0..MAX_ATTEMPTS {
            let item = self.owned_hold(user, id).await?;
            let hold = item.clone().into_hold(false);
            if let Ask::Capture { units, key } = ask {
                // Read again after every lost race: a capture that committed
                // meanwhile under this key is this request's own.
                match item.captures.as_ref().and_then(|seen| seen.get(&key.as_hex())) {
                    Some(&prior) if prior == units => return Ok((hold, false)),
                    Some(_) => return Err(Error::IdempotencyKeyReused),
                    None => {}
                }
            }
            let now = self.clock.now();
            match decide(&hold, ask, now) {
                Decision::Replay => return Ok((hold, false)),
                Decision::NotPending(status) => return Err(Error::HoldNotPending(status)),
                Decision::TooManyUnits { held } => {
                    return Err(Invalid::new("units", Problem::OutOfRange { min: 1, max: u64::from(held) }).into())
                }
                Decision::ExpireInstead => {
                    match self.transition(item, Settlement::Expire, by, now, Along::default()).await {
                        // The hold goes back by this very call, and the capture
                        // is refused.
                        Ok(_) => return Err(Error::HoldExpired),
                        Err(failure) => self.lost_race(failure, attempt, id).await?,
                    }
                }
                Decision::Apply(wanted) => match self
                    .transition(item, wanted, by, now, Along { note: note.cloned(), ..Along::default() })
                    .await
                {
                    Ok(settled) => return Ok((settled, true)),
                    Err(failure) => self.lost_race(failure, attempt, id).await?,
                },
            }
        }
        Err(Error::Unavailable("settlement kept conflicting".into()))
    }
}
