//! The loop's routes: what to change (`GET /api/policy/proposal`: the recommended policy per
//! task against the traffic mix and the live policy, with the projected saving at current
//! traffic), the policy in force (`GET /api/policy/live`), putting one in force on the
//! running proxy (`POST /api/policy/apply`, admin token), and what changed
//! (`GET /api/policy/changes`: per policy version, cost, quality and the realised saving
//! against the projection, exploration traffic apart).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use object_store::ObjectStoreExt as _;
use serde::Serialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::ingest::check_admin;
use crate::error::Error;
use crate::proxy::control::Control;
use crate::query::output;
use crate::query::reports::{self, Window};
use crate::recommend::{Candidate, Policy};

/// Two-sided 95 % normal quantile, for the quality intervals shown.
const Z95: f64 = 1.96;
/// Days in the per-month projection.
const DAYS_PER_MONTH: f64 = 30.0;

fn control(state: &AppState) -> Result<Option<Control>, Error> {
    state
        .proxy_url
        .as_deref()
        .map(|u| Control::new(u, state.tokens.admin.clone()))
        .transpose()
}

/// The policy in force on the proxy, or `None` (no proxy, or no policy loaded).
async fn live_policy(state: &AppState) -> Result<Option<Policy>, Error> {
    match control(state)? {
        Some(c) => c.live().await,
        None => Ok(None),
    }
}

/// `GET /api/policy/live` → `{"proxy": URL | null, "policy": POLICY | null}`.
pub async fn live(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let policy = live_policy(&state).await?;
    Ok(Json(json!({"proxy": state.proxy_url, "policy": policy})).into_response())
}

/// `POST /api/policy/apply` with a policy file as the body: kept beside the data, then put in
/// force on the proxy. → `{"version": V, "proxy": URL}`.
pub async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let Some(c) = control(&state)? else {
        return Err(Error::Invalid(
            "this server has no proxy to apply a policy to: start serve with --proxy-listen ADDR \
             or --proxy-url URL"
                .into(),
        )
        .into());
    };
    let policy = Policy::parse(&body)?;
    crate::commands::keep_policy(&state.store, &policy).await?;
    let version = c.apply(body.to_vec()).await?;
    tracing::info!(%version, proxy = c.base(), "policy applied from the dashboards");
    Ok(Json(json!({"version": version, "proxy": c.base()})).into_response())
}

/// One task of a proposal.
#[derive(Debug, Serialize)]
struct TaskLine {
    task: String,
    current_model: String,
    /// The models the logs show for the task, by share of its traffic.
    current_mix: Vec<Value>,
    proposed: Vec<Value>,
    fallbacks: Vec<String>,
    /// Targets of the task's route in the live policy (null: none, or no policy).
    live: Option<Vec<Value>>,
    changed: bool,
    requests: u64,
    samples: u64,
    requests_per_day: f64,
    current_cost_per_request: Option<f64>,
    expected_cost_per_request: Option<f64>,
    current_quality: Option<f64>,
    expected_quality: Option<f64>,
    /// Half-width of the 95 % interval of the expected quality.
    quality_ci: Option<f64>,
    expected_p95_latency_ms: Option<f64>,
    saving_pct: Option<f64>,
    saving_usd_per_day: Option<f64>,
    reason: String,
}

/// Mean of `f` weighted by `w` over `cs` (None when any weighted term is unknown).
fn weighted(
    cs: &[&Candidate],
    w: impl Fn(&Candidate) -> f64,
    f: impl Fn(&Candidate) -> Option<f64>,
) -> Option<f64> {
    let total: f64 = cs.iter().map(|&c| w(c)).sum();
    if total <= 0.0 {
        return None;
    }
    cs.iter()
        .filter(|&&c| w(c) > 0.0)
        .map(|&c| f(c).map(|x| x * w(c) / total))
        .sum()
}

fn targets_json(t: &[crate::recommend::Target]) -> Vec<Value> {
    t.iter()
        .map(|t| json!({"model": t.model, "weight": t.weight, "role": t.role}))
        .collect()
}

/// Requests per day per task at current traffic: those of the hours that began in the last
/// day (read from `requests_hourly`), over the time since their first attempt, scaled up
/// when the data is younger than a day.
async fn daily_rates(state: &AppState) -> Result<HashMap<String, f64>, Error> {
    let r = state
        .query
        .sql(
            "SELECT task, SUM(requests) AS n, \
             to_unixtime(MIN(COALESCE(first_ts, ts_hour))) AS first_s \
             FROM requests_hourly WHERE ts_hour >= now() - INTERVAL '1 day' \
             AND date >= CAST(CAST(now() - INTERVAL '1 day' AS DATE) AS VARCHAR) GROUP BY task",
        )
        .await?;
    let rows = output::json_rows(&r)?;
    let now_s = chrono::Utc::now().timestamp() as f64;
    let first = rows
        .iter()
        .filter_map(|r| r.get("first_s")?.as_f64())
        .fold(now_s, f64::min);
    let span = (now_s - first).clamp(3600.0, 86_400.0);
    Ok(rows
        .iter()
        .filter_map(|r| {
            let task = r.get("task")?.as_str()?.to_string();
            let n = r.get("n")?.as_f64()?;
            Some((task, n * 86_400.0 / span))
        })
        .collect())
}

/// `GET /api/policy/proposal?quality_target=&scope=&min_samples=&explore=&since=`: the policy
/// `recommend` would emit now, explained per task against the logs and the live policy.
pub async fn proposal(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let (cands, policy) = super::ui::recommend_now(&state, &q).await?;
    let since = q.get("since").map_or("30d", String::as_str);
    let live = live_policy(&state).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "proposal: cannot read the live policy");
        None
    });
    let rates = daily_rates(&state).await?;
    let mut by_task: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in &cands {
        by_task.entry(&c.task).or_default().push(c);
    }
    let mut lines = Vec::new();
    for route in &policy.routes {
        let cs = by_task
            .get(route.task.as_str())
            .cloned()
            .unwrap_or_default();
        let requests: u64 = cs.iter().map(|c| c.requests).sum();
        let mut mix: Vec<&&Candidate> = cs.iter().filter(|c| c.requests > 0).collect();
        mix.sort_by_key(|c| std::cmp::Reverse(c.requests));
        let current_cost = weighted(&cs, |c| c.requests as f64, |c| c.cost_per_request);
        let current_quality = weighted(&cs, |c| c.samples as f64, |c| c.quality);
        let find = |m: &str| cs.iter().find(|c| c.model == m);
        // Variance of the mix's mean quality: each target's sampling variance, by its weight.
        let var: Option<f64> = route
            .targets
            .iter()
            .map(|t| {
                let c = find(&t.model)?;
                let q = c.quality?;
                let v = c.quality_var.unwrap_or(q * (1.0 - q));
                (c.samples > 0).then(|| t.weight * t.weight * v / c.samples as f64)
            })
            .sum();
        let live_route = live.as_ref().map(|p| {
            p.routes
                .iter()
                .find(|r| r.task == route.task)
                .map(|r| &r.targets)
        });
        let rate = rates.get(&route.task).copied().unwrap_or(0.0);
        let saving = match (current_cost, route.expected.cost_per_request_usd) {
            (Some(c), Some(e)) => Some((c - e) * rate),
            _ => None,
        };
        lines.push(TaskLine {
            task: route.task.clone(),
            current_model: route.evidence.current_model.clone(),
            current_mix: mix
                .iter()
                .map(|c| json!({"model": c.model, "share": c.requests as f64 / requests.max(1) as f64}))
                .collect(),
            proposed: targets_json(&route.targets),
            fallbacks: route.fallbacks.clone(),
            changed: live_route.flatten().is_none_or(|t| *t != route.targets),
            live: live_route.flatten().map(|t| targets_json(t.as_slice())),
            requests,
            samples: route.evidence.samples,
            requests_per_day: rate,
            current_cost_per_request: current_cost,
            expected_cost_per_request: route.expected.cost_per_request_usd,
            current_quality,
            expected_quality: route.expected.quality,
            quality_ci: var.map(|v| Z95 * v.sqrt()),
            expected_p95_latency_ms: route.expected.p95_latency_ms,
            saving_pct: route.expected.savings_vs_current_pct,
            saving_usd_per_day: saving,
            reason: route.evidence.reason.clone(),
        });
    }
    let sum = |f: &dyn Fn(&TaskLine) -> Option<f64>| -> f64 { lines.iter().filter_map(f).sum() };
    let current_day =
        sum(&|l: &TaskLine| l.current_cost_per_request.map(|c| c * l.requests_per_day));
    let saving_day = sum(&|l: &TaskLine| l.saving_usd_per_day);
    Ok(Json(json!({
        "policy": policy,
        "live": live,
        "proxy": state.proxy_url,
        "since": since,
        "tasks": lines,
        "totals": {
            "requests_per_day": sum(&|l: &TaskLine| Some(l.requests_per_day)),
            "current_usd_per_day": current_day,
            "saving_usd_per_day": saving_day,
            "saving_usd_per_month": saving_day * DAYS_PER_MONTH,
            "saving_pct": if current_day > 0.0 { Some(100.0 * saving_day / current_day) } else { None },
        },
    }))
    .into_response())
}

/// Attempts, spend and feedback of one slice of a version's traffic.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Slice {
    requests: u64,
    cost_usd: f64,
    samples: u64,
    quality_sum: f64,
}

impl Slice {
    fn add(&mut self, o: &Slice) {
        self.requests += o.requests;
        self.cost_usd += o.cost_usd;
        self.samples += o.samples;
        self.quality_sum += o.quality_sum;
    }
    fn summary(&self) -> Value {
        json!({
            "requests": self.requests,
            "cost_usd": self.cost_usd,
            "cost_per_request": (self.requests > 0).then(|| self.cost_usd / self.requests as f64),
            "samples": self.samples,
            "quality": (self.samples > 0).then(|| self.quality_sum / self.samples as f64),
        })
    }
}

/// A stored policy file by version (`policies/VERSION.json`), if kept.
async fn stored_policy(state: &AppState, version: &str) -> Option<Policy> {
    let loc = state.store.location();
    let path = loc.path(&["policies", &format!("{version}.json")]);
    let bytes = loc.store.get(&path).await.ok()?.bytes().await.ok()?;
    Policy::parse(&bytes).ok()
}

/// `GET /api/policy/changes?since=` → `{"versions": [...]}`, oldest first: each version's
/// `policy_versions` row, its traffic apart from exploration, and against the version before
/// it on the same task mix the realised saving next to the policy's projection.
pub async fn changes(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let since = q.get("since").map_or("30d", String::as_str);
    let window = Window::parse(Some(since), None, None, None, chrono::Utc::now())?;
    let versions =
        output::json_rows(&reports::run(&state.query, "policy_versions", &window).await?)?;
    let cells =
        output::json_rows(&reports::run(&state.query, "policy_version_tasks", &window).await?)?;
    // version → task → model → slice
    type Cells = BTreeMap<String, BTreeMap<String, BTreeMap<String, Slice>>>;
    let key = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let mut by: Cells = BTreeMap::new();
    for c in &cells {
        let f = |k: &str| c.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        by.entry(key(c.get("policy_version")))
            .or_default()
            .entry(key(c.get("task")))
            .or_default()
            .insert(
                key(c.get("model")),
                Slice {
                    requests: f("requests") as u64,
                    cost_usd: f("cost_usd"),
                    samples: f("samples") as u64,
                    quality_sum: f("quality_sum"),
                },
            );
    }
    let empty = BTreeMap::new();
    let mut out = Vec::new();
    let mut prev: Option<String> = None;
    for row in versions {
        let v = key(row.get("policy_version"));
        let tasks = by.get(&v).unwrap_or(&empty);
        let policy = if v.is_empty() {
            None
        } else {
            stored_policy(&state, &v).await
        };
        let is_explore = |task: &str, model: &str| -> bool {
            policy.as_ref().is_some_and(|p| {
                p.routes.iter().any(|r| {
                    r.task == task
                        && r.targets
                            .iter()
                            .any(|t| t.model == model && t.role.as_deref() == Some("explore"))
                })
            })
        };
        let (mut exploit, mut explore) = (Slice::default(), Slice::default());
        let mut per_task: BTreeMap<&str, Slice> = BTreeMap::new();
        for (task, models) in tasks {
            for (model, s) in models {
                if is_explore(task, model) {
                    explore.add(s)
                } else {
                    exploit.add(s)
                }
                per_task.entry(task).or_default().add(s);
            }
        }
        // Against the version before, on this version's task mix.
        let before = prev.as_ref().and_then(|p| by.get(p));
        let (mut now_cost, mut then_cost, mut n) = (0.0, 0.0, 0u64);
        if let Some(before) = before {
            for (task, s) in &per_task {
                let b = before.get(*task).map(|m| {
                    let mut acc = Slice::default();
                    m.values().for_each(|x| acc.add(x));
                    acc
                });
                if let Some(b) = b.filter(|b| b.requests > 0) {
                    now_cost += s.cost_usd;
                    then_cost += b.cost_usd / b.requests as f64 * s.requests as f64;
                    n += s.requests;
                }
            }
        }
        let realised = (then_cost > 0.0).then(|| 100.0 * (1.0 - now_cost / then_cost));
        // The policy's own projection, on the same task mix.
        let (mut exp, mut cur) = (0.0, 0.0);
        if let Some(p) = &policy {
            for (task, s) in &per_task {
                let Some(r) = p.routes.iter().find(|r| r.task == *task) else {
                    continue;
                };
                if let (Some(e), Some(pct)) = (
                    r.expected.cost_per_request_usd,
                    r.expected.savings_vs_current_pct,
                ) && pct < 100.0
                {
                    exp += e * s.requests as f64;
                    cur += e / (1.0 - pct / 100.0) * s.requests as f64;
                }
            }
        }
        let projected = (cur > 0.0).then(|| 100.0 * (1.0 - exp / cur));
        let span_days = match (row.get("first_seen"), row.get("last_seen")) {
            (Some(Value::String(a)), Some(Value::String(b))) => {
                let p = |s: &str| crate::formats::parse_ts_str(s);
                match (p(a), p(b)) {
                    (Some(a), Some(b)) => ((b - a) as f64 / 86_400e6).max(1.0 / 1440.0),
                    _ => f64::NAN,
                }
            }
            _ => f64::NAN,
        };
        let requests = row.get("requests").and_then(Value::as_f64).unwrap_or(0.0);
        let saving_day = (n > 0 && then_cost > 0.0 && span_days.is_finite())
            .then(|| (then_cost - now_cost) / n as f64 * requests / span_days);
        out.push(json!({
            "version": row.get("policy_version"),
            "report": row,
            "generated_at": policy.as_ref().map(|p| p.generated_at.clone()),
            "exploit": exploit.summary(),
            "explore": explore.summary(),
            "before": prev,
            "compared_requests": n,
            "realised_saving_pct": realised,
            "projected_saving_pct": projected,
            "realised_saving_usd_per_day": saving_day,
        }));
        prev = Some(v);
    }
    Ok(Json(json!({"since": since, "versions": out})).into_response())
}
