//! The estimates the optimiser works on: each task × model quality mean shrunk toward the
//! model's mean over tasks (empirical Bayes, method of moments), with its posterior variance
//! and how much of it is the task's own data; and the standard normal the guards use.

use std::collections::BTreeMap;

use statrs::distribution::{ContinuousCDF, Normal};

use super::Candidate;

/// A candidate with its shrunk quality estimate.
#[derive(Debug, Clone)]
pub(super) struct Est<'a> {
    pub c: &'a Candidate,
    /// Posterior mean and variance of the quality.
    pub mean: f64,
    pub var: f64,
    /// Weight of the task's own data in `mean` (1 - the shrinkage factor); 1 when unshrunk.
    pub own: f64,
}

/// Mean and squared standard error of a candidate's observed quality.
pub(super) fn se2(c: &Candidate) -> Option<(f64, f64)> {
    let (q, n) = (c.quality?, c.samples as f64);
    if n < 1.0 {
        return None;
    }
    // Binary scores: the binomial variance with a half-sample pseudo-count keeps it > 0.
    let v = if c.binary {
        let p = (q * n + 0.5) / (n + 1.0);
        p * (1.0 - p)
    } else {
        c.quality_var.unwrap_or(0.0).max(1e-4)
    };
    Some((q, v / n))
}

/// Empirical-Bayes shrinkage of quality means toward each model's mean over tasks: one
/// estimate per candidate, in order (`NaN` mean and infinite variance without feedback).
pub(super) fn shrink(cands: &[Candidate], enabled: bool) -> Vec<Est<'_>> {
    let mut by_model: BTreeMap<&str, Vec<(f64, f64, f64)>> = BTreeMap::new();
    for c in cands {
        if let Some((q, s2)) = se2(c) {
            by_model
                .entry(&c.model)
                .or_default()
                .push((q, s2, c.samples as f64));
        }
    }
    // Per model: prior mean (sample-weighted) and between-task variance tau².
    let prior: BTreeMap<&str, (f64, f64)> = by_model
        .iter()
        .map(|(m, v)| {
            let w: f64 = v.iter().map(|x| x.2).sum();
            let mu = v.iter().map(|x| x.0 * x.2).sum::<f64>() / w;
            let k = v.len() as f64;
            let tau2 = if k < 3.0 {
                f64::INFINITY // too few tasks to learn a prior: no shrinkage
            } else {
                let spread = v.iter().map(|x| (x.0 - mu).powi(2)).sum::<f64>() / (k - 1.0);
                let noise = v.iter().map(|x| x.1).sum::<f64>() / k;
                (spread - noise).max(1e-4)
            };
            (*m, (mu, tau2))
        })
        .collect();
    cands
        .iter()
        .map(|c| {
            let none = Est {
                c,
                mean: f64::NAN,
                var: f64::INFINITY,
                own: 0.0,
            };
            let Some((q, s2)) = se2(c) else { return none };
            let Some(&(mu, tau2)) = prior.get(c.model.as_str()) else {
                return none;
            };
            if tau2.is_infinite() || !enabled {
                return Est {
                    c,
                    mean: q,
                    var: s2,
                    own: 1.0,
                };
            }
            let b = s2 / (s2 + tau2);
            Est {
                c,
                mean: q + b * (mu - q),
                var: (1.0 - b) * s2,
                own: 1.0 - b,
            }
        })
        .collect()
}

/// Smallest spread between tasks a method-of-moments prior of gaps is given: true gaps can be
/// all alike, and a zero spread would make every gap its pair's mean exactly.
pub(super) const GAP_SPREAD_FLOOR: f64 = 1e-6;

/// Method-of-moments prior of values each observed with a known noise variance, `(value,
/// noise)`: their mean and the variance between them beyond the noise (at least `floor`).
/// None under three values, too few to learn a spread from.
pub(super) fn moments_prior(xs: &[(f64, f64)], floor: f64) -> Option<(f64, f64)> {
    if xs.len() < 3 {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().map(|x| x.0).sum::<f64>() / n;
    let spread = xs.iter().map(|x| (x.0 - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let noise = xs.iter().map(|x| x.1).sum::<f64>() / n;
    Some((mean, (spread - noise).max(floor)))
}

/// Φ(x), the standard normal CDF.
pub fn norm_cdf(x: f64) -> f64 {
    Normal::standard().cdf(x)
}

/// Φ⁻¹(p), the standard normal quantile: the one-sided z of confidence `p`.
pub fn norm_quantile(p: f64) -> f64 {
    Normal::standard().inverse_cdf(p)
}
