//! The optimiser: empirical-Bayes estimates, the `task` and `overall` objectives with their
//! confidence guard, exploration and fallbacks. Pure functions from candidates to a policy.

use std::collections::BTreeMap;

use super::{Candidate, DefaultRoute, Evidence, Expected, Objective, Policy, Route, Scope, Target};

/// A candidate with its shrunk quality estimate.
#[derive(Debug, Clone)]
struct Est<'a> {
    c: &'a Candidate,
    /// Posterior mean and variance of the quality.
    mean: f64,
    var: f64,
}

/// Empirical-Bayes shrinkage of quality means toward each model's mean over tasks.
fn shrink(cands: &[Candidate], enabled: bool) -> Vec<Option<(f64, f64)>> {
    let se2 = |c: &Candidate| -> Option<(f64, f64)> {
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
    };
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
            let (q, s2) = se2(c)?;
            let (mu, tau2) = prior.get(c.model.as_str()).copied()?;
            if tau2.is_infinite() || !enabled {
                return Some((q, s2));
            }
            let b = s2 / (s2 + tau2);
            Some((q + b * (mu - q), (1.0 - b) * s2))
        })
        .collect()
}

/// Φ(x), the standard normal CDF (Abramowitz–Stegun 7.1.26 through erf).
fn norm_cdf(x: f64) -> f64 {
    0.5 * (1.0 + libm_erf(x / std::f64::consts::SQRT_2))
}

fn libm_erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    if x >= 0.0 { y } else { -y }
}

/// One task's view: its candidates with estimates, the current model and the weight.
struct TaskView<'a> {
    task: &'a str,
    requests: u64,
    current: &'a Candidate,
    /// Eligible candidates (enough samples, priced, within the latency limit).
    eligible: Vec<Est<'a>>,
    /// Under-sampled candidates (exploration).
    young: Vec<Est<'a>>,
    all: Vec<Est<'a>>,
    keep_reason: Option<String>,
}

/// The policy for `cands` under `obj`.
pub fn recommend(
    cands: &[Candidate],
    obj: &Objective,
    now: chrono::DateTime<chrono::Utc>,
) -> Policy {
    let est = shrink(cands, obj.shrink);
    let mut tasks: BTreeMap<&str, Vec<Est>> = BTreeMap::new();
    for (c, e) in cands.iter().zip(&est) {
        let (mean, var) = e.unwrap_or((f64::NAN, f64::INFINITY));
        tasks.entry(&c.task).or_default().push(Est { c, mean, var });
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
            .filter(|e| usable(e) && e.c.samples < obj.min_samples)
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

    // Main weights per task: model → weight, plus the reason.
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
                let bar = obj.quality_target * b.mean;
                let pick = v
                    .eligible
                    .iter()
                    .filter(|e| e.mean - obj.z * e.var.sqrt() >= bar || e.c.model == b.c.model)
                    .min_by(|x, y| {
                        cost(x)
                            .total_cmp(&cost(y))
                            .then_with(|| y.mean.total_cmp(&x.mean))
                    });
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
        Scope::Overall => overall(&views, obj, &mut plans),
    }

    let mut routes = Vec::new();
    for (v, (main, reason)) in views.iter().zip(plans) {
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
    let generated_at = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut policy = Policy {
        version: String::new(),
        generated_at: generated_at.clone(),
        objective: obj.clone(),
        routes,
        default: DefaultRoute {
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
        },
    };
    let body = serde_json::to_vec(&policy.routes).unwrap_or_default();
    policy.version = format!(
        "{generated_at}-{:04x}",
        xxhash_rust::xxh3::xxh3_64(&body) & 0xffff
    );
    policy
}

fn cost(e: &Est) -> f64 {
    e.c.cost_per_request.unwrap_or(f64::INFINITY)
}

/// The eligible candidate with the highest estimated quality (ties: cheaper).
fn best<'a, 'b>(eligible: &'b [Est<'a>]) -> &'b Est<'a> {
    eligible
        .iter()
        .max_by(|a, b| {
            a.mean
                .total_cmp(&b.mean)
                .then_with(|| cost(b).total_cmp(&cost(a)))
        })
        .unwrap_or(&eligible[0])
}

fn round(x: f64, digits: i32) -> f64 {
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

/// One step along a task's frontier: from `from` to `to`, saving `saving` per request and
/// losing `loss` quality per request.
struct Move {
    task: usize,
    to: usize,
    saving: f64,
    loss: f64,
    /// Variance of the loss estimate per request moved.
    var: f64,
    /// The task's traffic share, and the models moved between (for shrinking the losses).
    w: f64,
    pair: (String, String),
}

/// Empirical-Bayes shrinkage of the quality gaps between the same two models across tasks.
/// The gaps a cost-driven choice picks are the ones that look small, and those are the ones
/// most likely to be small by luck; each is pulled toward the pair's typical gap by its
/// noise (method of moments, 3+ tasks per pair). The guard keeps the unshrunk variance.
fn shrink_gaps(chains: &mut [Vec<Move>]) {
    let mut by_pair: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for m in chains.iter().flatten() {
        by_pair
            .entry(m.pair.clone())
            .or_default()
            .push((m.loss / m.w, m.var / (m.w * m.w)));
    }
    let prior: BTreeMap<(String, String), (f64, f64)> = by_pair
        .into_iter()
        .filter(|(_, v)| v.len() >= 3)
        .map(|(k, v)| {
            let n = v.len() as f64;
            let mean = v.iter().map(|x| x.0).sum::<f64>() / n;
            let spread = v.iter().map(|x| (x.0 - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let noise = v.iter().map(|x| x.1).sum::<f64>() / n;
            (k, (mean, (spread - noise).max(1e-6)))
        })
        .collect();
    for m in chains.iter_mut().flatten() {
        if let Some((mean, tau2)) = prior.get(&m.pair) {
            let (gap, v) = (m.loss / m.w, m.var / (m.w * m.w));
            let b = v / (v + tau2);
            // Only ever toward a larger loss: shrinkage must not make a move look safer.
            m.loss = m.w * (gap + b * (mean - gap)).max(gap);
        }
    }
}

/// The `overall` objective: a fractional knapsack over the tasks' cost/quality frontiers,
/// stopped where the loss plus its `z`-sigma guard uses up the allowed quality loss.
fn overall(views: &[TaskView], obj: &Objective, plans: &mut [(Vec<(String, f64)>, String)]) {
    let total_requests: f64 = views.iter().map(|v| v.requests as f64).sum();
    if total_requests == 0.0 {
        return;
    }
    let mut budget = 0.0; // allowed loss, in quality × traffic share
    // Loss already committed: tasks that keep their current model give up what their best
    // model would give (their estimates are weak, but shrinkage makes them usable here).
    let (mut loss, mut var) = (0.0f64, 0.0f64);
    // Per task: the frontier, as a chain of moves from the best model to cheaper ones.
    let mut chains: Vec<Vec<Move>> = Vec::new();
    for (i, v) in views.iter().enumerate() {
        if v.keep_reason.is_some() {
            let w = v.requests as f64 / total_requests;
            let known = |e: &&Est| e.mean.is_finite() && e.var.is_finite();
            let top = v
                .all
                .iter()
                .filter(known)
                .max_by(|a, b| a.mean.total_cmp(&b.mean));
            let cur = v
                .all
                .iter()
                .filter(known)
                .find(|e| e.c.model == v.current.model);
            if let (Some(top), Some(cur)) = (top, cur) {
                budget += w * (1.0 - obj.quality_target) * top.mean;
                loss += w * (top.mean - cur.mean);
                if top.c.model != cur.c.model {
                    var += w * w * (top.var + cur.var);
                }
            }
            chains.push(Vec::new());
            continue;
        }
        let w = v.requests as f64 / total_requests;
        let b = best(&v.eligible);
        budget += w * (1.0 - obj.quality_target) * b.mean;
        let mut chain = Vec::new();
        let mut at = v
            .eligible
            .iter()
            .position(|e| std::ptr::eq(e.c, b.c))
            .unwrap_or(0);
        loop {
            let here = &v.eligible[at];
            // Next frontier point: the cheaper candidate with the best saving per loss.
            let next = v
                .eligible
                .iter()
                .enumerate()
                .filter(|(_, e)| cost(e) < cost(here))
                .map(|(j, e)| {
                    let saving = cost(here) - cost(e);
                    let loss = here.mean - e.mean;
                    let ratio = if loss <= 0.0 {
                        f64::INFINITY
                    } else {
                        saving / loss
                    };
                    (j, ratio)
                })
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let Some((j, _)) = next else { break };
            let to = &v.eligible[j];
            chain.push(Move {
                task: i,
                to: j,
                saving: w * (cost(here) - cost(to)),
                loss: w * (here.mean - to.mean),
                var: w * w * (here.var + to.var),
                w,
                pair: (here.c.model.clone(), to.c.model.clone()),
            });
            at = j;
        }
        chains.push(chain);
    }
    // All moves in order of saving per loss (frontiers are convex, so order within a task
    // holds); each applied whole while the guarded loss stays within budget, the last in part.
    if obj.shrink {
        shrink_gaps(&mut chains);
    }
    let mut moves: Vec<&Move> = chains.iter().flatten().collect();
    moves.sort_by(|a, b| {
        let r = |m: &Move| {
            if m.loss <= 0.0 {
                f64::INFINITY
            } else {
                m.saving / m.loss
            }
        };
        r(b).total_cmp(&r(a))
    });
    // fraction moved so far per task, along its chain
    let mut taken: Vec<Vec<(usize, f64)>> = vec![Vec::new(); views.len()];
    for m in moves {
        if m.saving <= 0.0 {
            continue;
        }
        // The promise is about fresh traffic: its own sampling noise, for a window as large as
        // the one learned from, doubles the variance the guard covers.
        let guarded = |f: f64| loss + f * m.loss + obj.z * (2.0 * (var + f * f * m.var)).sqrt();
        let f = if guarded(1.0) <= budget {
            1.0
        } else {
            // Largest fraction within budget (the guard is monotone in f).
            let (mut lo, mut hi) = (0.0, 1.0);
            for _ in 0..40 {
                let mid = (lo + hi) / 2.0;
                if guarded(mid) <= budget {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            lo
        };
        if f <= 1e-6 {
            break;
        }
        loss += f * m.loss;
        var += f * f * m.var;
        taken[m.task].push((m.to, f));
        if f < 1.0 {
            break;
        }
    }
    for (i, v) in views.iter().enumerate() {
        if taken[i].is_empty() {
            continue;
        }
        // Walk the chain: each move shifts fraction f of what sits at the previous point.
        let b = best(&v.eligible);
        let mut weights: BTreeMap<String, f64> = BTreeMap::new();
        let mut at = b.c.model.clone();
        weights.insert(at.clone(), 1.0);
        for (to, f) in &taken[i] {
            let share = weights.get(&at).copied().unwrap_or(0.0);
            let to_model = v.eligible[*to].c.model.clone();
            *weights.entry(at.clone()).or_default() -= share * f;
            *weights.entry(to_model.clone()).or_default() += share * f;
            at = to_model;
        }
        let main: Vec<(String, f64)> = weights.into_iter().filter(|(_, w)| *w > 1e-6).collect();
        let reason = if main.len() == 1 {
            format!(
                "cheaper than {} ({:.3}) at {:.3} estimated quality: the overall quality budget allows it",
                b.c.model,
                b.mean,
                v.eligible
                    .iter()
                    .find(|e| e.c.model == main[0].0)
                    .map_or(f64::NAN, |e| e.mean)
            )
        } else {
            format!(
                "split with {}: the overall quality budget ends inside this task",
                b.c.model
            )
        };
        plans[i] = (main, reason);
    }
}
