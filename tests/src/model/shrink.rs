//! Shrinking a failing episode to a shorter sequence that still fails,
//! and the report that replays it.

use std::time::{Duration, Instant};

use super::ops::{Batch, Shape};
use super::runner::{run_episode, Violation};

/// Shrinks a failing sequence: drops batches (halves, then smaller chunks),
/// then runs concurrent batches one operation at a time, keeping each change
/// that still fails. Bounded by `budget`.
pub async fn shrink(mut batches: Vec<Batch>, shape: Shape, budget: Duration) -> (Vec<Batch>, Violation) {
    let started = Instant::now();
    let mut last = match run_episode(&batches, shape).await {
        Err(v) => v,
        Ok(_) => {
            return (batches, Violation { batch: 0, message: "did not fail again when rerun (a race)".into() });
        }
    };
    batches.truncate(last.batch + 1);
    let mut chunk = batches.len().div_ceil(2);
    while chunk >= 1 && started.elapsed() < budget {
        let mut start = 0;
        let mut removed_any = false;
        while start < batches.len() && started.elapsed() < budget {
            let mut candidate = batches.clone();
            let end = (start + chunk).min(candidate.len());
            candidate.drain(start..end);
            if candidate.is_empty() {
                start += chunk;
                continue;
            }
            match run_episode(&candidate, shape).await {
                Err(v) => {
                    candidate.truncate(v.batch + 1);
                    batches = candidate;
                    last = v;
                    removed_any = true;
                }
                Ok(_) => start += chunk,
            }
        }
        if !removed_any {
            chunk /= 2;
        }
    }
    // One operation at a time where that still fails.
    let mut i = 0;
    while i < batches.len() && started.elapsed() < budget {
        if batches[i].len() > 1 {
            let mut candidate = batches.clone();
            let ops = candidate.remove(i);
            for (k, op) in ops.into_iter().enumerate() {
                candidate.insert(i + k, vec![op]);
            }
            if let Err(v) = run_episode(&candidate, shape).await {
                candidate.truncate(v.batch + 1);
                batches = candidate;
                last = v;
            }
        }
        i += 1;
    }
    (batches, last)
}

/// A failure report: the seed, the violation and the shrunk sequence.
pub fn report(seed: u64, episode: u64, shrunk: &[Batch], violation: &Violation) -> String {
    let mut out = format!(
        "model violation (seed {seed}, episode {episode}; replay: MODEL_SEED={seed} make test, or cargo test -p credits-tests --test model)\n{}\nshortest failing sequence ({} batches; ops in one batch ran at once):\n",
        violation.message,
        shrunk.len()
    );
    for (n, batch) in shrunk.iter().enumerate() {
        out.push_str(&format!("  {n:>3}: {batch:?}\n"));
    }
    out
}
