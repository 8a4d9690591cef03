//! Routing: the live policy compiled for lookups (swapped whole on reload, read once per
//! request), and the plan for one request: which models to try, in order, and which rule
//! chose each. Model `auto`, or the model a task's route replaces, goes by the route's
//! weighted targets then its fallbacks; any other model goes to the upstreams serving it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderValue;

use super::error::ProxyError;
use super::upstream::Upstreams;
use crate::recommend::{Policy, Target};

/// The model name that asks the proxy to choose.
pub const AUTO: &str = "auto";

/// One route, ready to draw from.
struct Compiled {
    /// `(model, cumulative weight)`, the last at 1.
    targets: Vec<(Arc<str>, f64)>,
    fallbacks: Vec<Arc<str>>,
    /// The model this route replaces (its evidence's current model).
    replaces: Option<String>,
    label: Arc<str>,
    fallback_label: Arc<str>,
}

impl Compiled {
    fn new(task: &str, targets: &[Target], fallbacks: &[String], replaces: Option<&str>) -> Self {
        let mut acc = 0.0;
        let mut t: Vec<(Arc<str>, f64)> = targets
            .iter()
            .filter(|t| t.weight > 0.0)
            .map(|t| {
                acc += t.weight;
                (Arc::from(t.model.as_str()), acc)
            })
            .collect();
        if let Some(last) = t.last_mut() {
            last.1 = f64::INFINITY;
        }
        Compiled {
            targets: t,
            fallbacks: fallbacks.iter().map(|m| Arc::from(m.as_str())).collect(),
            replaces: replaces.filter(|m| *m != AUTO).map(str::to_string),
            label: Arc::from(format!("policy:{task}")),
            fallback_label: Arc::from(format!("policy:{task}/fallback")),
        }
    }
}

/// The policy in force (or none).
pub struct Live {
    pub policy: Option<Policy>,
    pub version: Option<Arc<str>>,
    pub version_header: Option<HeaderValue>,
    routes: HashMap<String, Compiled>,
    default: Option<Compiled>,
}

/// The models to try for one request, in order, each with the route label that chose it.
pub type Plan = Vec<(Arc<str>, Arc<str>)>;

/// Route label of a model asked for by name.
pub const ROUTE_MODEL: &str = "model";

impl Live {
    pub fn none() -> Live {
        Live {
            policy: None,
            version: None,
            version_header: None,
            routes: HashMap::new(),
            default: None,
        }
    }

    /// Compiles a policy, after checking it against the upstreams.
    pub fn compile(policy: Policy, upstreams: &Upstreams) -> crate::Result<Live> {
        policy.validate_served(|m| upstreams.serves(m))?;
        let routes = policy
            .routes
            .iter()
            .map(|r| {
                (
                    r.task.clone(),
                    Compiled::new(
                        &r.task,
                        &r.targets,
                        &r.fallbacks,
                        Some(&r.evidence.current_model),
                    ),
                )
            })
            .collect();
        let default = Compiled::new(
            "default",
            &policy.default.targets,
            &policy.default.fallbacks,
            None,
        );
        Ok(Live {
            version: Some(Arc::from(policy.version.as_str())),
            version_header: HeaderValue::try_from(policy.version.as_str()).ok(),
            policy: Some(policy),
            routes,
            default: Some(default),
        })
    }

    /// The models to try for one request, in order, each with the rule that chose it.
    pub fn plan(&self, task: &str, model: &str) -> Result<Plan, ProxyError> {
        let route = match self.routes.get(task) {
            Some(r) if model == AUTO || r.replaces.as_deref() == Some(model) => Some(r),
            _ if model == AUTO => self.default.as_ref(),
            _ => None,
        };
        let Some(r) = route else {
            if model == AUTO {
                return Err(ProxyError::invalid(
                    "Model `auto` asks the proxy to choose a model, but no routing policy is loaded: \
                     start the proxy with --policy FILE or name a model",
                )
                .param(Some("model"))
                .code("no_policy"));
            }
            return Ok(vec![(Arc::from(model), Arc::from(ROUTE_MODEL))]);
        };
        let x = fastrand::f64();
        let Some(i) = r.targets.iter().position(|(_, c)| x < *c) else {
            return Err(ProxyError::internal("policy route has no target"));
        };
        let mut plan = Vec::with_capacity(1 + r.fallbacks.len());
        plan.push((r.targets[i].0.clone(), r.label.clone()));
        for f in &r.fallbacks {
            if !plan.iter().any(|(m, _)| m == f) {
                plan.push((f.clone(), r.fallback_label.clone()));
            }
        }
        Ok(plan)
    }

    /// Every model this policy names, and `auto` when there is one.
    pub fn models(&self) -> Vec<&str> {
        match &self.policy {
            None => Vec::new(),
            Some(p) => {
                let mut v: Vec<&str> = p.models().into_iter().map(|(_, m)| m).collect();
                v.push(AUTO);
                v
            }
        }
    }
}
