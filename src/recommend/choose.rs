//! The optimiser: per task, the candidates it may choose from, the `task` objective with its
//! confidence guard (the `overall` one is in `overall.rs`), exploration and fallbacks, and the
//! policy assembled from them. Pure functions from candidates to a policy.

use std::collections::BTreeMap;

use super::estimate::{Est, norm_cdf, shrink};
use super::{
    Candidate, DefaultRoute, Evidence, Expected, Objective, Policy, Route, Scope, Target,
    calibrate, overall,
};

/// Candidates with fewer quality samples than this on a task may get an exploration share
/// (more of them would still move its estimate); `--min-samples` above it raises it.
pub const EXPLORE_BELOW_SAMPLES: u64 = 30;

/// One task's view: its candidates with estimates, the current model and the weight.
pub(super) struct TaskView<'a> {
    pub task: &'a str,
    pub requests: u64,
    pub current: &'a Candidate,
    /// Eligible candidates (enough samples, priced, within the latency limit).
    pub eligible: Vec<Est<'a>>,
    /// Under-sampled candidates (exploration).
    pub young: Vec<Est<'a>>,
    pub all: Vec<Est<'a>>,
    pub keep_reason: Option<String>,
}

/// The policy for `cands` under `obj`. With `obj.calibration` set, the guard's `z` is first
/// calibrated on the candidates themselves (resampled windows, `calibrate.rs`) and the
/// calibration is reported in the policy's objective.
pub fn recommend(
    cands: &[Candidate],
    obj: &Objective,
    now: chrono::DateTime<chrono::Utc>,
) -> Policy {
    let mut obj = obj.clone();
    if obj.calibration.is_some() {
        calibrate::calibrate(cands, &mut obj);
    }
    let (routes, default) = routes(cands, &obj);
    let generated_at = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let body = serde_json::to_vec(&routes).unwrap_or_default();
    Policy {
        version: format!(
            "{generated_at}-{:04x}",
            xxhash_rust::xxh3::xxh3_64(&body) & 0xffff
        ),
        generated_at,
        objective: obj,
        routes,
        default,
    }
}

/// The routes and the default route for `cands` under `obj`, with `obj.z` as the guard.
pub(super) fn routes(cands: &[Candidate], obj: &Objective) -> (Vec<Route>, DefaultRoute) {
    let est = shrink(cands, obj.shrink);
    let views = task_views(&est, obj);
    let plans = main_plans(&views, obj);
    let mut routes = Vec::new();
    for (v, (main, reason)) in views.iter().zip(plans) {
        let mut targets = targets(v, &main, obj);
        normalise(&mut targets);
        let chosen: Vec<&str> = targets.iter().map(|t| t.model.as_str()).collect();
        let mut fallbacks: Vec<&Est> = v
            .all
            .iter()
            .filter(|e| {
                !chosen.contains(&e.c.model.as_str()) && e.c.samples > 0 && e.mean.is_finite()
            })
            .collect();
        fallbacks.sort_by(|a, b| {
            b.mean
                .total_cmp(&a.mean)
                .then_with(|| a.c.model.cmp(&b.c.model))
        });
        let lookup = |m: &str| v.all.iter().find(|e| e.c.model == m);
        let mix = |f: &dyn Fn(&Est) -> Option<f64>| -> Option<f64> {
            targets
                .iter()
                .map(|t| lookup(&t.model).and_then(f).map(|x| x * t.weight))
                .sum()
        };
        let exp_cost = mix(&|e| e.c.cost_per_request);
        let current_cost = {
            let total: u64 = v.all.iter().map(|e| e.c.requests).sum();
            v.all
                .iter()
                .map(|e| {
                    e.c.cost_per_request
                        .map(|c| c * e.c.requests as f64 / total as f64)
                })
                .sum::<Option<f64>>()
        };
        routes.push(Route {
            task: v.task.to_string(),
            expected: Expected {
                cost_per_request_usd: exp_cost.map(|c| round(c, 8)),
                quality: mix(&|e| e.mean.is_finite().then_some(e.mean)).map(|q| round(q, 4)),
                p95_latency_ms: targets
                    .iter()
                    .filter_map(|t| lookup(&t.model).and_then(|e| e.c.p95_latency_ms))
                    .reduce(f64::max)
                    .map(|x| round(x, 1)),
                savings_vs_current_pct: match (exp_cost, current_cost) {
                    (Some(e), Some(c)) if c > 0.0 => Some(round(100.0 * (1.0 - e / c), 1)),
                    _ => None,
                },
            },
            evidence: Evidence {
                samples: v.all.iter().map(|e| e.c.samples).sum(),
                current_model: v.current.model.clone(),
                reason,
                own_data: own_data(&v.eligible),
            },
            targets,
            fallbacks: fallbacks.into_iter().map(|e| e.c.model.clone()).collect(),
        });
    }
    // Unknown tasks: judged on all tasks pooled, the cheapest model whose pooled quality holds
    // the target against the best pooled model (with enough samples); without feedback, the
    // model carrying the most traffic.
    #[derive(Default)]
    struct Pool {
        requests: u64,
        samples: u64,
        quality_sum: f64,
        cost_sum: f64,
        priced: u64,
    }
    let mut pools: BTreeMap<&str, Pool> = BTreeMap::new();
    for c in cands {
        let p = pools.entry(&c.model).or_default();
        p.requests += c.requests;
        if let Some(q) = c.quality {
            p.samples += c.samples;
            p.quality_sum += q * c.samples as f64;
        }
        if let Some(k) = c.cost_per_request {
            p.cost_sum += k * c.requests as f64;
            p.priced += c.requests;
        }
    }
    let pooled: Vec<(&str, f64, f64)> = pools
        .iter()
        .filter(|(_, p)| p.samples >= obj.min_samples.max(1) && p.priced > 0)
        .map(|(m, p)| {
            (
                *m,
                p.quality_sum / p.samples as f64,
                p.cost_sum / p.priced as f64,
            )
        })
        .collect();
    let top = pooled.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
    let default_model = pooled
        .iter()
        .filter(|x| x.1 >= obj.quality_target * top)
        .min_by(|a, b| a.2.total_cmp(&b.2).then_with(|| a.0.cmp(b.0)))
        .map(|x| x.0.to_string())
        .or_else(|| {
            pools
                .iter()
                .max_by(|a, b| a.1.requests.cmp(&b.1.requests).then_with(|| b.0.cmp(a.0)))
                .map(|(m, _)| m.to_string())
        });
    let default = DefaultRoute {
        targets: default_model
            .map(|m| {
                vec![Target {
                    model: m,
                    weight: 1.0,
                    role: None,
                }]
            })
            .unwrap_or_default(),
        fallbacks: Vec::new(),
    };
    (routes, default)
}

/// A task's targets: its main weights, and under `obj.explore` a share for under-sampled
/// candidates by their chance of clearing the bar (not yet normalised).
pub(super) fn targets(v: &TaskView, main: &[(String, f64)], obj: &Objective) -> Vec<Target> {
    let mut targets: Vec<Target> = main
        .iter()
        .filter(|(_, w)| *w > 1e-9)
        .map(|(m, w)| Target {
            model: m.clone(),
            weight: *w,
            role: None,
        })
        .collect();
    // Exploration: under-sampled candidates by their chance of clearing the bar.
    if obj.explore > 0.0 && v.keep_reason.is_none() && !v.young.is_empty() {
        let b = best(&v.eligible);
        let bar = obj.quality_target * b.mean;
        let mut chances: Vec<(String, f64)> = v
            .young
            .iter()
            .filter(|e| !main.iter().any(|(m, _)| *m == e.c.model))
            .filter(|e| cost(e) < cost(b))
            .map(|e| {
                (
                    e.c.model.clone(),
                    1.0 - norm_cdf((bar - e.mean) / e.var.sqrt().max(1e-9)),
                )
            })
            .filter(|(_, p)| *p > 0.2)
            .collect();
        // The two most promising only: a trickle to each of many models teaches nothing.
        chances.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        chances.truncate(2);
        let total: f64 = chances.iter().map(|x| x.1).sum();
        if total > 0.0 {
            for t in &mut targets {
                t.weight *= 1.0 - obj.explore;
            }
            for (m, p) in chances {
                targets.push(Target {
                    model: m,
                    weight: obj.explore * p / total,
                    role: Some("explore".into()),
                });
            }
        }
    }
    targets
}

/// Per task, its view: candidates with their estimates, the current model, what is eligible
/// and why a task keeps its current model. Independent of the guard's `z`.
pub(super) fn task_views<'a>(est: &[Est<'a>], obj: &Objective) -> Vec<TaskView<'a>> {
    let mut tasks: BTreeMap<&str, Vec<Est>> = BTreeMap::new();
    for e in est {
        tasks.entry(&e.c.task).or_default().push(e.clone());
    }
    let mut views: Vec<TaskView> = Vec::new();
    for (task, all) in tasks {
        let requests: u64 = all.iter().map(|e| e.c.requests).sum();
        let Some(current) = all.iter().map(|e| e.c).max_by(|a, b| {
            a.requests
                .cmp(&b.requests)
                .then_with(|| b.model.cmp(&a.model))
        }) else {
            continue;
        };
        let within_latency = |e: &Est| match (obj.max_p95_latency_ms, e.c.p95_latency_ms) {
            (Some(limit), Some(p95)) => p95 <= limit,
            _ => true,
        };
        let usable =
            |e: &Est| e.mean.is_finite() && e.c.cost_per_request.is_some() && within_latency(e);
        let eligible: Vec<Est> = all
            .iter()
            .filter(|e| usable(e) && e.c.samples >= obj.min_samples)
            .cloned()
            .collect();
        let young: Vec<Est> = all
            .iter()
            .filter(|e| usable(e) && e.c.samples < obj.min_samples.max(EXPLORE_BELOW_SAMPLES))
            .cloned()
            .collect();
        let feedback: u64 = all.iter().map(|e| e.c.samples).sum();
        let keep_reason = if feedback == 0 {
            Some("no quality feedback for this task: keeping the current model".to_string())
        } else if eligible.is_empty() {
            Some(match obj.max_p95_latency_ms {
                Some(l) if all.iter().any(|e| e.c.samples >= obj.min_samples) => format!(
                    "no candidate with {} samples has p95 latency within {l} ms: keeping the current model",
                    obj.min_samples
                ),
                _ => format!(
                    "fewer than {} quality samples for every model (most: {}): keeping the current model",
                    obj.min_samples,
                    all.iter().map(|e| e.c.samples).max().unwrap_or(0)
                ),
            })
        } else if !eligible.iter().any(|e| e.c.model == current.model)
            && current.samples < obj.min_samples
        {
            Some(format!(
                "the current model {} has {} quality samples (< {}): no baseline to compare against, keeping it",
                current.model, current.samples, obj.min_samples
            ))
        } else {
            None
        };
        views.push(TaskView {
            task,
            requests,
            current,
            eligible,
            young,
            all,
            keep_reason,
        });
    }

    views
}

/// Per task, the main (not exploration) weights by model and the reason, under `obj.z`.
pub(super) fn main_plans(views: &[TaskView], obj: &Objective) -> Vec<(Vec<(String, f64)>, String)> {
    let mut plans: Vec<(Vec<(String, f64)>, String)> = views
        .iter()
        .map(|v| match &v.keep_reason {
            Some(r) => (vec![(v.current.model.clone(), 1.0)], r.clone()),
            None => {
                let b = best(&v.eligible);
                (
                    vec![(b.c.model.clone(), 1.0)],
                    "the best-quality model with enough evidence: no cheaper one holds the target"
                        .to_string(),
                )
            }
        })
        .collect();
    match obj.scope {
        Scope::Task => {
            for (v, plan) in views.iter().zip(plans.iter_mut()) {
                if v.keep_reason.is_some() {
                    continue;
                }
                let b = best(&v.eligible);
                let pick = task_pick(v, obj);
                if let Some(p) = pick
                    && p.c.model != b.c.model
                {
                    *plan = (
                        vec![(p.c.model.clone(), 1.0)],
                        format!(
                            "cheapest model whose quality lower bound ({:.3}) holds {:.0}% of the best ({} at {:.3})",
                            p.mean - obj.z * p.var.sqrt(),
                            obj.quality_target * 100.0,
                            b.c.model,
                            b.mean
                        ),
                    );
                }
            }
        }
        Scope::Overall => overall::overall(views, obj, &mut plans),
    }
    plans
}

/// `task` scope: the cheapest eligible candidate whose lower confidence bound (`obj.z`
/// standard errors) clears `target ×` the best, or the best itself.
pub(super) fn task_pick<'b, 'a>(v: &'b TaskView<'a>, obj: &Objective) -> Option<&'b Est<'a>> {
    let b = best(&v.eligible);
    let bar = obj.quality_target * b.mean;
    v.eligible
        .iter()
        .filter(|e| e.mean - obj.z * e.var.sqrt() >= bar || e.c.model == b.c.model)
        .min_by(|x, y| {
            cost(x)
                .total_cmp(&cost(y))
                .then_with(|| y.mean.total_cmp(&x.mean))
        })
}

pub(super) fn cost(e: &Est) -> f64 {
    e.c.cost_per_request.unwrap_or(f64::INFINITY)
}

/// How much of the estimates a task's decision compared came from its own data rather than
/// the pool over tasks: the mean own-data weight of its eligible candidates.
fn own_data(eligible: &[Est]) -> Option<f64> {
    (!eligible.is_empty()).then(|| {
        round(
            eligible.iter().map(|e| e.own).sum::<f64>() / eligible.len() as f64,
            3,
        )
    })
}

/// The eligible candidate with the highest estimated quality (ties: cheaper).
pub(super) fn best<'a, 'b>(eligible: &'b [Est<'a>]) -> &'b Est<'a> {
    eligible
        .iter()
        .max_by(|a, b| {
            a.mean
                .total_cmp(&b.mean)
                .then_with(|| cost(b).total_cmp(&cost(a)))
        })
        .unwrap_or(&eligible[0])
}

pub(super) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn normalise(targets: &mut [Target]) {
    let sum: f64 = targets.iter().map(|t| t.weight).sum();
    if sum > 0.0 {
        for t in targets.iter_mut() {
            t.weight = round(t.weight / sum, 6);
        }
        // Rounding leftovers go to the largest weight, so weights sum to exactly 1.
        let rest = 1.0 - targets.iter().map(|t| t.weight).sum::<f64>();
        if let Some(t) = targets
            .iter_mut()
            .max_by(|a, b| a.weight.total_cmp(&b.weight))
        {
            t.weight = round(t.weight + rest, 6);
        }
    }
}
