//! An answer of the server, reduced to what the model can predict.

use std::fmt;

use super::account::Parts;
use super::calendar::rfc3339;

/// A hold's or a debit's lots as answered: (priority, expiresAt, amount).
pub type LotParts = Vec<(u8, Option<i64>, u64)>;

pub(super) fn lot_parts(parts: &Parts) -> LotParts {
    parts.iter().map(|(id, c)| (id.priority, id.expires, *c)).collect()
}

/// An answer, reduced to what the model can predict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Problem {
        status: u16,
        code: String,
    },
    /// A hold as answered; `replayed` is the `Idempotent-Replayed` header.
    Hold {
        status: u16,
        hold: String,
        units: u32,
        captured: u64,
        released: u64,
        lots: LotParts,
        replayed: bool,
    },
    /// An extend's answer: the hold's new `expiresAt` (epoch ms).
    Extended {
        status: u16,
        hold: String,
        expires_at: i64,
    },
    Granted {
        status: u16,
    },
    Debited {
        status: u16,
        amount: u64,
        requested: u64,
        lots: LotParts,
        replayed: bool,
    },
    /// A plan set or ended.
    Planned {
        status: u16,
    },
    Webhook {
        status: u16,
        result: String,
        late: bool,
    },
    /// A sweep: holds it expired, and (when it ran alone in its batch) the
    /// lot expiries and plan refills it wrote down.
    Swept {
        expired: u64,
        due: Option<(u64, u64)>,
    },
    Moved,
    /// A Stripe event's answer: credits granted or taken back, and of those
    /// to take back, what the user no longer had.
    Stripe {
        status: u16,
        result: String,
        reason: Option<String>,
        credits: Option<u64>,
        unrecoverable: Option<u64>,
    },
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lots = |lots: &LotParts| {
            lots.iter()
                .map(|(p, at, c)| format!("{p}/{}:{c}", at.map_or("never".into(), rfc3339)))
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            Answer::Problem { status, code } => write!(f, "{status} {code}"),
            Answer::Hold { status, hold, units, captured, released, lots: parts, replayed } => {
                write!(
                    f,
                    "{status} {hold} capturedUnits={units} captured={captured} released={released} lots=[{}]{}",
                    lots(parts),
                    if *replayed { " (replayed)" } else { "" }
                )
            }
            Answer::Extended { status, hold, expires_at } => write!(f, "{status} {hold} expiresAt={expires_at}"),
            Answer::Granted { status } => write!(f, "{status} granted"),
            Answer::Debited { status, amount, requested, lots: parts, replayed } => write!(
                f,
                "{status} debited {amount} of {requested} lots=[{}]{}",
                lots(parts),
                if *replayed { " (replayed)" } else { "" }
            ),
            Answer::Planned { status } => write!(f, "{status} plan"),
            Answer::Webhook { status, result, late } => {
                write!(f, "{status} {result}{}", if *late { " late" } else { "" })
            }
            Answer::Swept { expired, due } => match due {
                Some((lots, refills)) => write!(f, "swept expired={expired} lotsExpired={lots} planRefills={refills}"),
                None => write!(f, "swept expired={expired}"),
            },
            Answer::Moved => write!(f, "clock moved"),
            Answer::Stripe { status, result, reason, credits, unrecoverable } => write!(
                f,
                "{status} {result}{}{}{}",
                reason.as_ref().map_or(String::new(), |r| format!(" ({r})")),
                credits.map_or(String::new(), |c| format!(" credits={c}")),
                unrecoverable.map_or(String::new(), |u| format!(" unrecoverable={u}"))
            ),
        }
    }
}

pub(super) fn problem(status: u16, code: &str) -> Answer {
    Answer::Problem { status, code: code.to_owned() }
}
