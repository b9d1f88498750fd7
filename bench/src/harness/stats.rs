//! Percentiles, means over rounds and prices.

use super::meter::Units;

/// On-demand prices assumed (us-east-1, per million request units).
pub const WRITE_PRICE: f64 = 0.625;
pub const READ_PRICE: f64 = 0.125;

/// What `read` and `write` units cost at those prices (per million).
pub fn dollars(read: f64, write: f64) -> f64 {
    write * WRITE_PRICE + read * READ_PRICE
}

pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(rank).copied().unwrap_or(0.0)
}

pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    percentile(&mut s, 0.5)
}

pub fn min(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Mean units and the times of one operation over its rounds.
#[derive(Default)]
pub struct Samples {
    read: f64,
    write: f64,
    requests: f64,
    ms: Vec<f64>,
}

impl Samples {
    pub fn add(&mut self, used: Units, ms: f64) {
        self.read += used.read;
        self.write += used.write;
        self.requests += used.requests as f64;
        self.ms.push(ms);
    }

    fn count(&self) -> f64 {
        self.ms.len().max(1) as f64
    }

    pub fn read(&self) -> f64 {
        self.read / self.count()
    }

    pub fn write(&self) -> f64 {
        self.write / self.count()
    }

    pub fn requests(&self) -> f64 {
        self.requests / self.count()
    }

    pub fn p50(&mut self) -> f64 {
        percentile(&mut self.ms, 0.5)
    }
}
