//! Order statistics shared by the benchmark binaries.

use std::time::Duration;

pub fn median(v: Vec<Duration>) -> Duration {
    pct(v, 0.5)
}

pub fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}
