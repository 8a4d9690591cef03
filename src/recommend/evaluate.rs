//! Offline replay: what a policy gives on logged traffic, against current traffic and
//! against the oracle (the same optimiser on the logged means, without a guard).

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Candidate, Objective, Policy, recommend};

/// What a policy is expected to give on logged traffic: quality and cost per request under
/// the policy, under the current traffic, and under the oracle that knows the logged means.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub requests: u64,
    pub tasks: usize,
    pub policy_quality: f64,
    pub policy_cost_per_request: f64,
    pub current_quality: f64,
    pub current_cost_per_request: f64,
    pub best_quality: f64,
    pub oracle_quality: f64,
    pub oracle_cost_per_request: f64,
    pub target_quality: f64,
    pub holds_target: bool,
    /// Tasks and models without data for the replay.
    pub unevaluated: Vec<String>,
}

/// Replays `cands` (logged per task × model means) under `policy`.
pub fn evaluate(cands: &[Candidate], policy: &Policy) -> Evaluation {
    // A task × model's logged mean is taken as its truth only with enough samples.
    let known: Vec<Candidate> = cands
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if c.samples < policy.objective.min_samples {
                c.quality = None;
            }
            c
        })
        .collect();
    let cands = &known[..];
    let mut by_task: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in cands {
        by_task.entry(&c.task).or_default().push(c);
    }
    let total: u64 = cands.iter().map(|c| c.requests).sum();
    let mut e = Evaluation {
        requests: total,
        tasks: by_task.len(),
        policy_quality: 0.0,
        policy_cost_per_request: 0.0,
        current_quality: 0.0,
        current_cost_per_request: 0.0,
        best_quality: 0.0,
        oracle_quality: 0.0,
        oracle_cost_per_request: 0.0,
        target_quality: 0.0,
        holds_target: false,
        unevaluated: Vec::new(),
    };
    if total == 0 {
        return e;
    }
    // Quality is averaged over the tasks with a known best model; cost over all traffic.
    let mut quality_weight = 0.0;
    for (task, cs) in &by_task {
        let w = cs.iter().map(|c| c.requests).sum::<u64>() as f64 / total as f64;
        let k = |c: &Candidate| c.cost_per_request.unwrap_or(0.0);
        let known_q: Vec<&&Candidate> = cs.iter().filter(|c| c.quality.is_some()).collect();
        let q = |c: &Candidate| c.quality.unwrap_or(0.0);
        let known_requests: u64 = known_q.iter().map(|c| c.requests).sum();
        let current_q = (known_requests > 0).then(|| {
            known_q
                .iter()
                .map(|c| q(c) * c.requests as f64)
                .sum::<f64>()
                / known_requests as f64
        });
        let mut current_k = 0.0;
        for c in cs {
            current_k += c.requests as f64 / total as f64 * k(c);
        }
        e.current_cost_per_request += current_k;
        let best = known_q.iter().max_by(|a, b| q(a).total_cmp(&q(b)));
        let targets = policy
            .routes
            .iter()
            .find(|r| r.task == *task)
            .map_or(&policy.default.targets, |r| &r.targets);
        for t in targets {
            match cs.iter().find(|c| c.model == t.model) {
                Some(c) if c.cost_per_request.is_some() => {
                    e.policy_cost_per_request += w * t.weight * k(c);
                }
                _ => e.policy_cost_per_request += t.weight * current_k,
            }
        }
        let (Some(b), Some(cur)) = (best, current_q) else {
            e.unevaluated.push(format!(
                "{task}: no model with {} quality samples",
                policy.objective.min_samples.max(1)
            ));
            continue;
        };
        quality_weight += w;
        e.best_quality += w * q(b);
        e.current_quality += w * cur;
        for t in targets {
            match cs
                .iter()
                .find(|c| c.model == t.model && c.quality.is_some())
            {
                Some(c) => e.policy_quality += w * t.weight * q(c),
                None => {
                    e.unevaluated.push(format!(
                        "{task}: {} (counted at the current quality)",
                        t.model
                    ));
                    e.policy_quality += w * t.weight * cur;
                }
            }
        }
    }
    if quality_weight > 0.0 {
        e.best_quality /= quality_weight;
        e.current_quality /= quality_weight;
        e.policy_quality /= quality_weight;
    }
    e.target_quality = policy.objective.quality_target * e.best_quality;
    e.holds_target = e.policy_quality + 1e-12 >= e.target_quality;
    // The oracle: the same optimiser on the logged means, with no guard and no minimum.
    let exact: Vec<Candidate> = cands
        .iter()
        .map(|c| Candidate {
            samples: c.samples.max(1_000_000),
            quality_var: Some(0.0),
            binary: false,
            ..c.clone()
        })
        .collect();
    let oracle_obj = Objective {
        z: 0.0,
        explore: 0.0,
        min_samples: 0,
        calibration: None,
        ..policy.objective.clone()
    };
    let oracle = recommend(&exact, &oracle_obj, chrono::Utc::now());
    let o = evaluate_plain(&by_task, total, &oracle);
    e.oracle_quality = if quality_weight > 0.0 {
        o.0 / quality_weight
    } else {
        0.0
    };
    e.oracle_cost_per_request = o.1;
    e
}

fn evaluate_plain(by_task: &BTreeMap<&str, Vec<&Candidate>>, total: u64, p: &Policy) -> (f64, f64) {
    let (mut q, mut k) = (0.0, 0.0);
    for (task, cs) in by_task {
        let w = cs.iter().map(|c| c.requests).sum::<u64>() as f64 / total as f64;
        let targets = p
            .routes
            .iter()
            .find(|r| r.task == *task)
            .map_or(&p.default.targets, |r| &r.targets);
        let has_quality = cs.iter().any(|c| c.quality.is_some());
        for t in targets {
            if let Some(c) = cs.iter().find(|c| c.model == t.model) {
                if has_quality {
                    q += w * t.weight * c.quality.unwrap_or(0.0);
                }
                k += w * t.weight * c.cost_per_request.unwrap_or(0.0);
            }
        }
    }
    (q, k)
}
