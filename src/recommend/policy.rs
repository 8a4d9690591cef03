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
    #[serde(default = "default_min_samples")]
    pub min_samples: u64,
    /// One-sided z of the confidence guard.
    #[serde(default = "default_z")]
    pub z: f64,
    /// Empirical-Bayes shrinkage of quality estimates across tasks.
    #[serde(default = "default_true")]
    pub shrink: bool,
}

fn default_true() -> bool {
    true
}

fn default_min_samples() -> u64 {
    30
}

fn default_z() -> f64 {
    1.645
}

impl Default for Objective {
    fn default() -> Self {
        Objective {
            quality_target: 0.95,
            scope: Scope::Overall,
            max_p95_latency_ms: None,
            explore: 0.05,
            min_samples: default_min_samples(),
            z: default_z(),
            shrink: true,
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
    let _ = writeln!(
        s,
        "policy {} · scope {} · quality target {} · min samples {}",
        p.version,
        match p.objective.scope {
            Scope::Overall => "overall",
            Scope::Task => "task",
        },
        p.objective.quality_target,
        p.objective.min_samples
    );
    let _ = writeln!(
        s,
        "{:<24} {:<30} {:<44} {:>8} {:>12} {:>8}  reason",
        "task", "current", "route", "quality", "usd/request", "saving"
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
            "{:<24} {:<30} {:<44} {:>8} {:>12} {:>7}%  {}",
            r.task,
            r.evidence.current_model,
            route,
            f(r.expected.quality, 3),
            f(r.expected.cost_per_request_usd, 6),
            f(r.expected.savings_vs_current_pct, 1),
            r.evidence.reason
        );
    }
    s
}
