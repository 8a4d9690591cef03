//! The routing policy file (SPEC: Policy file): what `recommend` writes, `evaluate` and the
//! proxy read, with its validation and a person's table of it.

use serde::{Deserialize, Serialize};

/// Which objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Overall,
    Task,
}

/// The `objective` block of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    pub quality_target: f64,
    pub scope: Scope,
    pub max_p95_latency_ms: Option<f64>,
    pub explore: f64,
    /// Quality samples a model needs on a task before it can be chosen (0: any; the shrunk
    /// estimate and its uncertainty decide).
    #[serde(default)]
    pub min_samples: u64,
    /// One-sided z of the confidence guard: calibrated when `calibration` is set, else the
    /// normal quantile of `confidence` or the `--z` given.
    #[serde(default = "default_z")]
    pub z: f64,
    /// Empirical-Bayes shrinkage of quality estimates across tasks.
    #[serde(default = "default_true")]
    pub shrink: bool,
    /// The probability with which the target is to hold on fresh traffic.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// How `z` was calibrated on the logs (absent: a fixed `z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
}

/// The calibration of the guard on resampled windows (`calibrate.rs`): what was asked
/// (`draws`, `seed`) and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub method: String,
    /// Pairs of fit and fresh windows drawn.
    pub draws: u32,
    pub seed: u64,
    /// The smallest `z` at which the fresh windows held the target with the confidence, plus
    /// `correction`; the guard applies the larger of it and `split_half_z` (the normal
    /// quantile where there are no halves to judge).
    #[serde(default)]
    pub calibrated_z: Option<f64>,
    /// What the double bootstrap added to the resampled windows' confidence quantile: the
    /// amount by which the same calibration, run on windows like the logged one, fell short
    /// with the stated confidence (`calibrate.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correction: Option<f64>,
    /// Share of the fresh windows that held the target at the applied `z`.
    #[serde(default)]
    pub held_share: Option<f64>,
    /// The same check on the logs' own split halves (`split.rs`): the smallest `z` at which
    /// the judging halves held the target with the confidence, and the share of them that
    /// held at the applied `z`. The guard applies the larger of it and `calibrated_z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_half_z: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_half_held_share: Option<f64>,
    /// The normal quantile of the confidence, and the held share at it.
    #[serde(default)]
    pub normal_z: Option<f64>,
    #[serde(default)]
    pub normal_held_share: Option<f64>,
    /// Why the normal quantile stands in, when the logs cannot calibrate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Window pairs the calibration draws unless told otherwise.
pub const DEFAULT_CALIBRATION_DRAWS: u32 = 100;
/// The confidence unless told otherwise.
pub const DEFAULT_CONFIDENCE: f64 = 0.95;

impl Calibration {
    /// A calibration to run: `draws` seeded window pairs, results not yet known.
    pub fn new(draws: u32, seed: u64) -> Calibration {
        Calibration {
            method: "resampled-windows".into(),
            draws,
            seed,
            calibrated_z: None,
            correction: None,
            split_half_z: None,
            split_half_held_share: None,
            held_share: None,
            normal_z: None,
            normal_held_share: None,
            note: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_confidence() -> f64 {
    DEFAULT_CONFIDENCE
}

/// Policies written before `z` was recorded used the 95% normal quantile.
fn default_z() -> f64 {
    super::estimate::norm_quantile(DEFAULT_CONFIDENCE)
}

impl Default for Objective {
    fn default() -> Self {
        Objective {
            quality_target: 0.95,
            scope: Scope::Overall,
            max_p95_latency_ms: None,
            explore: 0.05,
            min_samples: 0,
            z: default_z(),
            shrink: true,
            confidence: DEFAULT_CONFIDENCE,
            calibration: Some(Calibration::new(DEFAULT_CALIBRATION_DRAWS, 0)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub model: String,
    pub weight: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub cost_per_request_usd: Option<f64>,
    pub quality: Option<f64>,
    pub p95_latency_ms: Option<f64>,
    pub savings_vs_current_pct: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    pub samples: u64,
    pub current_model: String,
    pub reason: String,
    /// How much of the estimates behind the decision came from the task's own data (the rest
    /// from the pool over tasks: 1 - the shrinkage weight), averaged over its candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_data: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub task: String,
    pub targets: Vec<Target>,
    pub fallbacks: Vec<String>,
    pub expected: Expected,
    pub evidence: Evidence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultRoute {
    pub targets: Vec<Target>,
    pub fallbacks: Vec<String>,
}

/// The routing policy file (SPEC: Policy file). Unknown fields are errors: a misspelt key
/// must not silently route traffic differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    pub version: String,
    pub generated_at: String,
    pub objective: Objective,
    pub routes: Vec<Route>,
    pub default: DefaultRoute,
}

impl Policy {
    /// Checks what the proxy relies on: weights in [0, 1] summing to 1, no empty route.
    pub fn validate(&self) -> crate::Result<()> {
        let check = |what: &str, t: &[Target]| {
            let sum: f64 = t.iter().map(|t| t.weight).sum();
            if t.is_empty()
                || (sum - 1.0).abs() > 1e-6
                || t.iter().any(|t| !(0.0..=1.0).contains(&t.weight))
            {
                return Err(crate::Error::Invalid(format!(
                    "policy route {what}: target weights must be in [0, 1] and sum to 1 (sum {sum})"
                )));
            }
            Ok(())
        };
        let mut tasks = std::collections::HashSet::new();
        for r in &self.routes {
            if !tasks.insert(r.task.as_str()) {
                return Err(crate::Error::Invalid(format!(
                    "policy route {}: the task has more than one route",
                    r.task
                )));
            }
            check(&r.task, &r.targets)?;
        }
        check("default", &self.default.targets)
    }

    /// Parses and validates a policy file's text.
    pub fn parse(text: &[u8]) -> crate::Result<Policy> {
        let p: Policy = serde_json::from_slice(text)
            .map_err(|e| crate::Error::Invalid(format!("policy: {e}")))?;
        p.validate()?;
        Ok(p)
    }

    /// Every model the policy may send traffic to (targets and fallbacks), with where it is.
    pub fn models(&self) -> Vec<(&str, &str)> {
        let mut out = Vec::new();
        let routes = self
            .routes
            .iter()
            .map(|r| (r.task.as_str(), &r.targets, &r.fallbacks))
            .chain([("default", &self.default.targets, &self.default.fallbacks)]);
        for (task, targets, fallbacks) in routes {
            out.extend(targets.iter().map(|t| (task, t.model.as_str())));
            out.extend(fallbacks.iter().map(|m| (task, m.as_str())));
        }
        out
    }

    /// [`Policy::validate`], and every model it names is served by some upstream.
    pub fn validate_served(&self, serves: impl Fn(&str) -> bool) -> crate::Result<()> {
        self.validate()?;
        for (task, model) in self.models() {
            if !serves(model) {
                return Err(crate::Error::Invalid(format!(
                    "policy route {task}: no upstream serves model {model:?}"
                )));
            }
        }
        Ok(())
    }
}

/// A person's table of a policy: one line per task.
pub fn explain(p: &Policy) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let o = &p.objective;
    let _ = writeln!(
        s,
        "policy {} · scope {} · quality target {} · confidence {} · min samples {}",
        p.version,
        match o.scope {
            Scope::Overall => "overall",
            Scope::Task => "task",
        },
        o.quality_target,
        o.confidence,
        o.min_samples
    );
    let share = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.0}%", 100.0 * v));
    let _ = match &o.calibration {
        Some(c) if c.note.is_none() => {
            let resampled = format!(
                "the calibrated z {:.3} ({} fit and fresh windows resampled from the logs, seed \
                 {}, {:+.2} of it the correction from checking the calibration itself on \
                 resampled windows; {} of them held the target at z {:.3})",
                c.calibrated_z.unwrap_or(f64::NAN),
                c.draws,
                c.seed,
                c.correction.unwrap_or(0.0),
                share(c.held_share),
                o.z,
            );
            let halves = c.split_half_z.map_or_else(
                || "no quality samples to split".to_string(),
                |z| {
                    format!(
                        "the split-half z {z:.3} ({} split halves of the logs, {} of them held \
                         at z {:.3})",
                        c.draws,
                        share(c.split_half_held_share),
                        o.z
                    )
                },
            );
            let normal = c.normal_z.unwrap_or(f64::NAN);
            if o.z <= 0.0 {
                writeln!(
                    s,
                    "guard z {:.3}: both checks held the target without a guard, {resampled} \
                     and {halves}",
                    o.z
                )
            } else {
                writeln!(
                    s,
                    "guard z {:.3}, the larger of {resampled} and the normal z {normal:.3} ({} of \
                     the resampled windows held at it); {halves}",
                    o.z,
                    share(c.normal_held_share),
                )
            }
        }
        Some(c) => writeln!(
            s,
            "guard z {:.2}, the normal quantile of the confidence: {}",
            o.z,
            c.note.as_deref().unwrap_or_default()
        ),
        None => writeln!(s, "guard z {:.2} (fixed)", o.z),
    };
    let _ = writeln!(
        s,
        "{:<24} {:<30} {:<44} {:>8} {:>12} {:>8} {:>5}  reason",
        "task", "current", "route", "quality", "usd/request", "saving", "own"
    );
    for r in &p.routes {
        let route = r
            .targets
            .iter()
            .map(|t| {
                let role = t
                    .role
                    .as_deref()
                    .map(|x| format!(" {x}"))
                    .unwrap_or_default();
                format!("{} {:.0}%{role}", t.model, t.weight * 100.0)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let f = |x: Option<f64>, d: usize| x.map_or("-".to_string(), |v| format!("{v:.d$}"));
        let _ = writeln!(
            s,
            "{:<24} {:<30} {:<44} {:>8} {:>12} {:>7}% {:>5}  {}",
            r.task,
            r.evidence.current_model,
            route,
            f(r.expected.quality, 3),
            f(r.expected.cost_per_request_usd, 6),
            f(r.expected.savings_vs_current_pct, 1),
            share(r.evidence.own_data),
            r.evidence.reason
        );
    }
    s
}
