//! The guard checked on the logs' own halves: split every cell's samples at random into two
//! halves, fit the policy on one and judge it on the other, and take the `z` from which on
//! the judging half holds the target with the stated confidence.
//!
//! Unlike the resampled windows of `calibrate.rs`, nothing here is drawn from a model of the
//! truths: given the truth, two random halves of a window are independent samples of it, so a
//! policy fitted on one and judged on the other meets the real gaps, with the logged window's
//! own luck on the judging side. A cell's half is drawn from its totals as its raw samples
//! would split: for 0/1 scores the successes in a half are hypergeometric (exact), for other
//! scores the two halves' means differ by a normal amount with the logged variance. The fit
//! half has half the samples, while `z` counts in standard errors of whatever the fit saw.
//! On the README's MMLU replay the split-half `z` (0.9-1.5) applied as is held the bound on
//! fewer splits than it promises, so it is used as a gate, not as the guard: only where it
//! and the resampled windows both find that no guard is needed is none applied
//! (`calibrate.rs`).

use rand::SeedableRng;
use rand_distr::{Distribution, Hypergeometric, StandardNormal};

use super::calibrate::judgements;
use super::{Candidate, Objective};

/// `draws` seeded split-half judgements `(critical z, weight)` of `cands` (sorted by task and
/// model) under `inner` (an objective without calibration), bisected in `steps` steps.
pub(super) fn split_halves(
    cands: &[Candidate],
    inner: &Objective,
    draws: u32,
    seed: u64,
    steps: u32,
) -> Vec<(f64, f64)> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed ^ SPLIT_SEED);
    (0..draws)
        .flat_map(|_| {
            let (fit, judge): (Vec<Candidate>, Vec<Candidate>) =
                cands.iter().map(|c| halves(&mut rng, c)).unzip();
            judgements(&fit, &judge, inner, steps)
        })
        .collect()
}

/// A seed offset, so the halves and the resampled windows of one seed are not in step.
const SPLIT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// One random split of `c`'s quality samples into a fit half and a judging half. Traffic
/// stays as logged (both halves see the same shares). A cell with fewer than two samples
/// stays whole on the fit side and has nothing to judge on the other.
fn halves(rng: &mut rand_pcg::Pcg64, c: &Candidate) -> (Candidate, Candidate) {
    let (mut a, mut b) = (c.clone(), c.clone());
    let n = c.samples;
    let Some(q) = c.quality.filter(|_| n >= 2) else {
        b.samples = 0;
        b.quality = None;
        return (a, b);
    };
    let (n1, n2) = (n / 2, n - n / 2);
    let (qa, qb) = if c.binary {
        let successes = ((q.clamp(0.0, 1.0) * n as f64).round() as u64).min(n);
        let k = Hypergeometric::new(n, successes, n1)
            .map_or((q * n1 as f64).round() as u64, |d| d.sample(rng))
            .min(successes);
        (k as f64 / n1 as f64, (successes - k) as f64 / n2 as f64)
    } else {
        let v = c.quality_var.unwrap_or(0.0).max(0.0);
        let z: f64 = StandardNormal.sample(rng);
        let d = (v * (1.0 / n1 as f64 + 1.0 / n2 as f64)).sqrt() * z;
        (q + n2 as f64 / n as f64 * d, q - n1 as f64 / n as f64 * d)
    };
    for (half, m, q) in [(&mut a, n1, qa), (&mut b, n2, qb)] {
        half.samples = m;
        half.quality = Some(q);
        if c.binary {
            half.quality_var = Some(q * (1.0 - q));
        }
    }
    (a, b)
}
