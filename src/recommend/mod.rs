//! The recommender: per task, which model (or mix) is cheapest at the quality target, with the
//! estimates guarded against the winner's curse.
//!
//! Inputs are per task × model statistics from the logs ([`Candidate`], read by the
//! `recommend_inputs` report). Three steps:
//!
//! 1. **Shrinkage** (empirical Bayes): each task × model quality mean is pulled toward that
//!    model's mean over all tasks, by how noisy it is against how much tasks really differ for
//!    that model (method of moments). Small tasks lean on the model's record elsewhere, so the
//!    cheapest-looking model of a small task is no longer the luckiest one.
//! 2. **Choice**. `task` scope: per task, the cheapest candidate whose one-sided lower
//!    confidence bound clears `target × best`. `overall` scope: traffic moves from each task's
//!    best model toward cheaper ones along the task's cost/quality frontier, best saving per
//!    unit of quality lost first (a fractional knapsack), until the traffic-weighted quality
//!    loss, plus `z` standard errors of that loss on fresh traffic (estimation noise and the
//!    fresh window's own sampling noise), uses up `(1 - target)` of the all-best quality. The
//!    guard is on the sum, whose noise shrinks as tasks add up, so it costs far less than
//!    guarding every task. Gaps between the same two models are shrunk toward their typical
//!    size across tasks (never made smaller), since the moves picked first are the ones whose
//!    gap looks small, partly by luck.
//! 3. **Calibration**: `z` is checked on the logs themselves, by seeded resampling from a
//!    hierarchical model of them: the smallest `z` at which policies fitted on windows drawn
//!    like the logged one hold the target on fresh windows like it with the stated confidence,
//!    raised by a double bootstrap where that calibration, run on such windows, falls short.
//!    The guard applied is never below the normal quantile (`calibrate.rs` says why).
//! 4. **Exploration and fallbacks**: an `explore` share goes to under-sampled candidates in
//!    proportion to their posterior chance of clearing the bar (a Thompson-sampling draw's
//!    probability, normal approximation); fallbacks are the other candidates by quality.
//!
//! Small tasks are decided by their shrunk estimates and uncertainty; tasks without feedback
//! keep their current model and say why (`min_samples` adds an explicit sample threshold).
//!
//! Files: `policy.rs` is the policy file format, `estimate.rs` the shrunk estimates,
//! `choose.rs` the optimiser and `overall.rs` its overall objective (pure functions from
//! per-task statistics to a [`Policy`]), `calibrate.rs` the guard's calibration,
//! `evaluate.rs` the offline replay; this file reads the evidence from the store.

mod calibrate;
mod choose;
mod estimate;
mod evaluate;
mod overall;
mod policy;
mod split;

use serde::{Deserialize, Serialize};

pub use choose::recommend;
pub use estimate::{norm_cdf, norm_quantile};
pub use evaluate::{Evaluation, evaluate};
pub use policy::{
    Calibration, DEFAULT_CALIBRATION_DRAWS, DEFAULT_CONFIDENCE, DefaultRoute, Evidence, Expected,
    Objective, Policy, Route, Scope, Target, explain,
};

/// Statistics of one task × model from the logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub task: String,
    pub model: String,
    /// Attempts in the window.
    pub requests: u64,
    /// Share of attempts that succeeded (2xx).
    pub success_rate: f64,
    /// Mean exact cost per attempt (None when no attempt was priced).
    pub cost_per_request: Option<f64>,
    /// Quality feedback samples and their mean and sample variance.
    pub samples: u64,
    pub quality: Option<f64>,
    pub quality_var: Option<f64>,
    /// Whether every sample is 0 or 1 (then Wilson intervals apply).
    pub binary: bool,
    pub p95_latency_ms: Option<f64>,
}

/// The evidence per task × model in `[since, until)`.
pub async fn candidates(
    engine: &crate::query::QueryEngine,
    since: Option<&str>,
    until: Option<&str>,
) -> crate::Result<Vec<Candidate>> {
    let window =
        crate::query::reports::Window::parse(since, until, None, None, chrono::Utc::now())?;
    let result = crate::query::reports::run(engine, "recommend_inputs", &window).await?;
    let rows = crate::query::output::json_rows(&result)?;
    rows.into_iter()
        .map(|mut r| {
            let f = |v: Option<serde_json::Value>| v.and_then(|v| v.as_f64());
            let s = |v: Option<serde_json::Value>| {
                v.and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            };
            Ok(Candidate {
                task: s(r.remove("task")),
                model: s(r.remove("model")),
                requests: f(r.remove("requests")).unwrap_or(0.0) as u64,
                success_rate: f(r.remove("success_rate")).unwrap_or(1.0),
                cost_per_request: f(r.remove("cost_per_request")),
                samples: f(r.remove("samples")).unwrap_or(0.0) as u64,
                quality: f(r.remove("quality")),
                quality_var: f(r.remove("quality_var")),
                binary: r
                    .remove("binary")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                p95_latency_ms: f(r.remove("p95_latency_ms")),
            })
        })
        .collect()
}
