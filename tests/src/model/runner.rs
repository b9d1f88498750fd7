//! Running an episode: a dev server over a fresh table, each batch's
//! operations sent at once, and the orders of the batch whose answers are
//! those seen (each a model, which the table must then match).

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use credits_shared::domain::UserId;
use credits_shared::prices::Catalog;
use futures::future::join_all;
use reqwest::Client;
use uuid::Uuid;

use super::account::View;
use super::answer::Answer;
use super::ledger::Model;
use super::ops::{Batch, ReserveSpec, Shape};
use super::purchases;
use super::request::{Resolved, Sent};
use super::tally::{answer_kind, op_name, Tally};
use crate::{Setup, TestServer};

/// What went wrong in an episode, and where.
#[derive(Clone, Debug)]
pub struct Violation {
    pub batch: usize,
    pub message: String,
}

/// An item of the table.
pub(super) type Item = HashMap<String, AttributeValue>;

/// A balance read: the clock and the user's balance item then, and what it showed.
type Read = (i64, Option<Item>, View);

pub(super) struct Runner {
    pub(super) server: TestServer,
    pub(super) http: Client,
    catalog: Catalog,
    pub(super) users: Vec<UserId>,
    /// The app's back end: every write goes through it.
    pub(super) server_token: String,
    /// Each user's own token, for the writes that must be refused and for
    /// reading their balance.
    pub(super) user_tokens: Vec<String>,
    pub(super) admin: String,
    pub(super) run: String,
    pub(super) model: Model,
    pub(super) sent: Vec<Sent>,
    pub(super) tasks: usize,
    /// Keyed reserves of the last batch answered `task_already_linked`: the
    /// one that placed its hold before losing the link race keeps its key
    /// bound to that (released) hold.
    pub(super) lost_links: Vec<(usize, u8, ReserveSpec)>,
    /// Each user's last balance read: the clock and the balance item then,
    /// and what it showed.
    pub(super) reads: Vec<Option<Read>>,
    /// Stripe events sent (to send again), and each session's `created`.
    pub(super) stripe_sent: Vec<purchases::StripeSent>,
    pub(super) stripe_created: HashMap<usize, i64>,
}

/// Runs the batches on a fresh table; `Err` at the first violation.
pub async fn run_episode(batches: &[Batch], shape: Shape) -> Result<Tally, Violation> {
    let server = TestServer::start_with(Setup { catalog: Some(purchases::catalog()), ..Setup::default() }).await;
    let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let users: Vec<UserId> = (0..shape.users)
        .map(|i| UserId::parse(&format!("m{i}-{run}")).ok_or_else(|| format!("user id m{i}-{run}")))
        .collect::<Result<_, _>>()
        .map_err(|message| Violation { batch: 0, message })?;
    // Long-lived tokens: clock jumps move the ledger's clock, not the JWT's.
    let server_token = server.server_token();
    let user_tokens = users.iter().map(|u| server.user_token(u)).collect();
    let admin = server.admin_token();
    let model = Model::new(shape.users, server.env.ledger.now().millis(), &run);
    let mut runner = Runner {
        catalog: purchases::catalog(),
        http: Client::new(),
        users,
        server_token,
        user_tokens,
        admin,
        run,
        model,
        sent: Vec::new(),
        tasks: shape.tasks,
        lost_links: Vec::new(),
        reads: vec![None; shape.users],
        stripe_sent: Vec::new(),
        stripe_created: HashMap::new(),
        server,
    };
    let mut tally = Tally::default();
    for (n, batch) in batches.iter().enumerate() {
        let failed = |message: String| Violation { batch: n, message: format!("batch {n} {batch:?}: {message}") };
        let explanations = runner.batch(batch, &mut tally).await.map_err(failed)?;
        runner.compare(explanations, &mut tally).await.map_err(failed)?;
    }
    let last = batches.len().saturating_sub(1);
    runner
        .compare_history_pages()
        .await
        .map_err(|message| Violation { batch: last, message: format!("after the last batch: {message}") })?;
    for account in &runner.model.accounts {
        tally.lots_expired += account.expiries_written;
        tally.plan_refills += account.refills_written;
        tally.expired_lines += account.lines.iter().filter(|l| l.0 == "grant_expired").count() as u64;
    }
    Ok(tally)
}

impl Runner {
    /// Sends a batch at once; returns the model after each order of it that
    /// gives exactly the answers seen (at least one, else the error).
    async fn batch(&mut self, batch: &Batch, tally: &mut Tally) -> Result<Vec<Model>, String> {
        let mut resolved: Vec<Resolved> = batch.iter().map(|op| self.resolve(op)).collect();
        self.mark_races(&mut resolved);
        tally.batches += 1;
        if batch.len() > 1 {
            tally.concurrent_batches += 1;
        }
        for op in batch {
            *tally.ops.entry(op_name(op)).or_default() += 1;
        }
        let observed = join_all(resolved.iter().map(|op| self.send(op))).await;
        let mut observed: Vec<(Answer, Option<Uuid>)> = observed.into_iter().collect::<Result<_, _>>()?;
        // A sweep racing other writes may find what is due written down
        // by them (or not): only a sweep alone says what it wrote down.
        let alone = resolved.len() == 1;
        for (answer, _) in &mut observed {
            if let Answer::Swept { due, .. } = answer {
                if !alone {
                    *due = None;
                }
            }
        }
        for (op, (answer, _)) in resolved.iter().zip(&observed) {
            *tally.answers.entry(answer_kind(op, answer)).or_default() += 1;
        }
        self.lost_links = resolved
            .iter()
            .zip(&observed)
            .filter_map(|(op, (answer, _))| match (op, answer) {
                (Resolved::Reserve { user, spec, key: Some(k) }, Answer::Problem { code, .. })
                    if code == "task_already_linked" =>
                {
                    Some((*user, *k, spec.clone()))
                }
                _ => None,
            })
            .collect();
        // Some order of the batch must give exactly these answers. Orders
        // may agree on the answers but not on the state (two extends of
        // one hold answer the same whichever wins): keep them all, for the
        // table to pick from.
        // A Stripe payment's look at the take-backs parked for its session
        // applies them one at a time, each a step of its own (looks are
        // alike: each distinct order is tried once).
        let steps = self.steps(&resolved);
        let mut tried = HashSet::new();
        let mut explanations = Vec::new();
        let mut first_mismatch = None;
        for order in permutations(steps.len()) {
            let order: Vec<purchases::Step> = order.iter().map(|s| steps[*s]).collect();
            if !tried.insert(order.clone()) {
                continue;
            }
            let mut model = self.model.clone();
            let mut mismatch = None;
            for step in &order {
                let i = match step {
                    purchases::Step::Op(i) => *i,
                    purchases::Step::Look(session) => {
                        model.look_at_parked(*session);
                        continue;
                    }
                };
                let mut allowed = model.step(&resolved[i], &observed[i], &self.catalog);
                if !alone {
                    for answer in &mut allowed {
                        if let Answer::Swept { due, .. } = answer {
                            *due = None;
                        }
                    }
                }
                if !allowed.contains(&observed[i].0) {
                    mismatch = Some(format!(
                        "{:?} answered {} but the model expected {}",
                        resolved[i],
                        observed[i].0,
                        allowed.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
                    ));
                    break;
                }
            }
            match mismatch {
                None => {
                    model.looked_at_parked();
                    explanations.push(model);
                }
                Some(m) => {
                    first_mismatch.get_or_insert(m);
                }
            }
        }
        if !explanations.is_empty() {
            return Ok(explanations);
        }
        Err(format!(
            "no order of the batch explains its answers; in the order sent: {}",
            first_mismatch.unwrap_or_default()
        ))
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n <= 1 {
        return vec![(0..n).collect()];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut order = rest.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}
