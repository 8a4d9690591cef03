//! The `overall` objective: traffic moves from each task's best model down its cost/quality
//! frontier, best saving per unit of quality lost first (a fractional knapsack), until the
//! loss plus its guard uses up the allowed quality loss; gaps between the same two models are
//! shrunk toward their typical size across tasks first.

use std::collections::BTreeMap;

use super::Objective;
use super::choose::{TaskView, best, cost};
use super::estimate::{Est, GAP_SPREAD_FLOOR, moments_prior};

/// One step along a task's frontier: from `from` to `to`, saving `saving` per request and
/// losing `loss` quality per request.
struct Move {
    task: usize,
    to: usize,
    saving: f64,
    loss: f64,
    /// Variance of the loss estimate per request moved, and its two parts (the quality
    /// estimates moved from and to, times w²).
    var: f64,
    from_var: f64,
    to_var: f64,
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
        .filter_map(|(k, v)| Some((k, moments_prior(&v, GAP_SPREAD_FLOOR)?)))
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

/// Saving per unit of quality lost (free moves first).
fn ratio(m: &Move) -> f64 {
    if m.loss <= 0.0 {
        f64::INFINITY
    } else {
        m.saving / m.loss
    }
}

/// Makes a task's chain convex again after its gaps were shrunk: two steps whose second saves
/// more per loss than the first become one step past the middle point (which is then off the
/// frontier), so moves taken in order of saving per loss always follow the chain.
fn convexify(chain: Vec<Move>) -> Vec<Move> {
    let mut out: Vec<Move> = Vec::with_capacity(chain.len());
    for m in chain {
        let mut m = m;
        while let Some(prev) = out.last() {
            if ratio(prev) >= ratio(&m) {
                break;
            }
            let Some(prev) = out.pop() else { break };
            m = Move {
                task: m.task,
                to: m.to,
                saving: prev.saving + m.saving,
                loss: prev.loss + m.loss,
                var: prev.from_var + m.to_var,
                from_var: prev.from_var,
                to_var: m.to_var,
                w: m.w,
                pair: (prev.pair.0, m.pair.1),
            };
        }
        out.push(m);
    }
    out
}

/// The `overall` objective: a fractional knapsack over the tasks' cost/quality frontiers,
/// stopped where the loss plus its `z`-sigma guard uses up the allowed quality loss.
pub(super) fn overall(
    views: &[TaskView],
    obj: &Objective,
    plans: &mut [(Vec<(String, f64)>, String)],
) {
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
                from_var: w * w * here.var,
                to_var: w * w * to.var,
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
        chains = chains.into_iter().map(convexify).collect();
    }
    let mut moves: Vec<&Move> = chains.iter().flatten().collect();
    // Stable: equal ratios keep chain order.
    moves.sort_by(|a, b| ratio(b).total_cmp(&ratio(a)));
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
