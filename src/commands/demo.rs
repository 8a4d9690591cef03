//! The live half of `serve --demo`: the built-in mock upstream serving the generator's ten
//! models (their per-task qualities taken from the generator's tables, so the history and the
//! live answers agree), the starting policy (each task's traffic mix as the history has it),
//! and the traffic driver: an application sending OpenAI-style requests with tasks through the
//! proxy (`model: "auto"`, so the policy in force decides) and posting quality feedback for
//! part of the answers to serve's ingest API by `X-Switchyard-Request-Id`, as a real app would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution};
use tokio::sync::Semaphore;

use crate::config::{Config, Upstream};
use crate::error::{Error, Result};
use crate::mock::{Mock, Profiles};
use crate::query::QueryEngine;
use crate::recommend::{
    Candidate, DefaultRoute, Evidence, Expected, Objective, Policy, Route, Target,
};

/// Version of the starting policy: the history's own traffic mix.
pub const BASELINE_VERSION: &str = "baseline";
/// Name of the mock upstream in the demo's config.
const UPSTREAM: &str = "demo-mock";
/// Largest prompt the driver sends, characters (the mock counts 4 per token).
const MAX_PROMPT_CHARS: usize = 24_000;
/// Longest answer the driver asks for, tokens (keeps the mock's answers to seconds).
const MAX_ANSWER_TOKENS: u32 = 400;
/// Requests the driver keeps in flight at most; beyond it, ticks are skipped.
const MAX_IN_FLIGHT: usize = 64;
/// Concentration of the judge-score Beta draws around a model's quality on a task.
const JUDGE_CONCENTRATION: f64 = 24.0;

/// Mock profiles: the built-in ten models, with every generator task's quality from the
/// generator's tables.
fn profiles() -> Profiles {
    let mut p = Profiles::builtin();
    for (model, profile) in p.models.iter_mut() {
        for task in crate::generate::task_names() {
            if let Some(q) = crate::generate::expected_quality(task, model) {
                profile.task_quality.insert(task.to_string(), q);
            }
        }
    }
    p
}

/// Starts the mock upstream on a free loopback port; its address.
pub async fn start_mock(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<Result<()>>)> {
    let mock = Mock::new(profiles(), crate::prices::PriceCatalog::embedded()?, 42)?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| Error::Config(format!("demo: cannot start the mock upstream: {e}")))?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(crate::mock::serve(listener, mock, shutdown));
    Ok((addr, task))
}

/// `config` with the mock as the proxy's only upstream (serving every model).
pub fn config_with_mock(config: &Config, mock: SocketAddr) -> Config {
    let mut c = config.clone();
    c.upstreams = vec![Upstream {
        name: UPSTREAM.into(),
        base_url: format!("http://{mock}/v1"),
        api_key_env: None,
        models: vec!["*".into()],
        timeout: Duration::from_secs(60),
    }];
    c
}

/// One task of the workload the driver sends.
#[derive(Debug, Clone)]
pub struct TaskLoad {
    pub task: String,
    /// Share of the requests.
    pub share: f64,
    pub prompt_chars: usize,
    pub max_tokens: u32,
    /// Feedback is 0/1 correctness (else a judge score in [0, 1]).
    pub binary: bool,
}

/// The history's workload: tasks by share, with their mean prompt and answer lengths.
pub async fn workload(engine: &QueryEngine) -> Result<Vec<TaskLoad>> {
    let r = engine
        .sql(
            "SELECT task, COUNT(*) AS n, AVG(prompt_tokens) AS p, AVG(completion_tokens) AS c \
             FROM requests WHERE status = 200 GROUP BY task ORDER BY n DESC",
        )
        .await?;
    let rows = crate::query::output::json_rows(&r)?;
    let f = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    let total: f64 = rows.iter().map(|r| f(r.get("n"))).sum();
    if total <= 0.0 {
        return Err(Error::NotFound(
            "demo: the history holds no successful requests to model traffic on".into(),
        ));
    }
    Ok(rows
        .iter()
        .filter_map(|r| {
            let task = r.get("task")?.as_str()?.to_string();
            Some(TaskLoad {
                binary: crate::generate::task_is_binary(&task).unwrap_or(false),
                share: f(r.get("n")) / total,
                prompt_chars: ((f(r.get("p")) * 4.0) as usize).clamp(16, MAX_PROMPT_CHARS),
                max_tokens: (f(r.get("c")).round() as u32).clamp(1, MAX_ANSWER_TOKENS),
                task,
            })
        })
        .collect())
}

/// The starting policy: per task, the models in the proportions the history sends them.
pub fn baseline_policy(cands: &[Candidate], now: chrono::DateTime<chrono::Utc>) -> Result<Policy> {
    let mut by_task: BTreeMap<&str, Vec<&Candidate>> = BTreeMap::new();
    for c in cands.iter().filter(|c| c.requests > 0) {
        by_task.entry(&c.task).or_default().push(c);
    }
    let mix = |cs: &[&Candidate]| -> Vec<Target> {
        let total: u64 = cs.iter().map(|c| c.requests).sum();
        let mut t: Vec<Target> = cs
            .iter()
            .map(|c| Target {
                model: c.model.clone(),
                weight: c.requests as f64 / total as f64,
                role: None,
            })
            .collect();
        // Weights sum to exactly 1 whatever the rounding.
        let rest: f64 = t.iter().skip(1).map(|t| t.weight).sum();
        if let Some(first) = t.first_mut() {
            first.weight = 1.0 - rest;
        }
        t
    };
    let mut routes = Vec::new();
    let mut overall: BTreeMap<&str, u64> = BTreeMap::new();
    for (task, mut cs) in by_task {
        cs.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then_with(|| a.model.cmp(&b.model))
        });
        for c in &cs {
            *overall.entry(&c.model).or_default() += c.requests;
        }
        let total: u64 = cs.iter().map(|c| c.requests).sum();
        let cost = cs
            .iter()
            .map(|c| {
                c.cost_per_request
                    .map(|x| x * c.requests as f64 / total as f64)
            })
            .sum::<Option<f64>>();
        routes.push(Route {
            task: task.to_string(),
            targets: mix(&cs),
            fallbacks: Vec::new(),
            expected: Expected {
                cost_per_request_usd: cost,
                quality: None,
                p95_latency_ms: None,
                savings_vs_current_pct: Some(0.0),
            },
            evidence: Evidence {
                samples: cs.iter().map(|c| c.samples).sum(),
                current_model: cs[0].model.clone(),
                reason: "the traffic mix of the logs: where the demo starts".into(),
                own_data: None,
            },
        });
    }
    let top = overall
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(m, _)| m.to_string())
        .ok_or_else(|| Error::NotFound("demo: no traffic to build a starting policy".into()))?;
    let p = Policy {
        version: BASELINE_VERSION.into(),
        generated_at: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        objective: Objective::default(),
        routes,
        default: DefaultRoute {
            targets: vec![Target {
                model: top,
                weight: 1.0,
                role: None,
            }],
            fallbacks: Vec::new(),
        },
    };
    p.validate()?;
    Ok(p)
}

/// Writes the starting policy beside the data unless one is there; its path.
pub fn write_baseline(dir: &std::path::Path, policy: &Policy) -> Result<PathBuf> {
    let path = dir.join("demo-policy.json");
    if !path.exists() {
        let body = serde_json::to_vec_pretty(policy)?;
        std::fs::write(&path, body).map_err(|e| Error::io(&path, e))?;
    }
    Ok(path)
}

/// Where the driver sends traffic and feedback.
#[derive(Debug, Clone)]
pub struct Driver {
    pub proxy: String,
    pub ingest: String,
    pub ingest_token: Option<String>,
    /// Requests per second.
    pub rate: f64,
    /// Share of answers that get a feedback record.
    pub feedback_share: f64,
    pub load: Vec<TaskLoad>,
}

/// Sends traffic until `stop` resolves; in-flight requests finish first.
pub async fn drive(d: Driver, stop: impl std::future::Future<Output = ()>) {
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
    else {
        tracing::error!("demo: cannot build an HTTP client; no live traffic");
        return;
    };
    let d = Arc::new(d);
    let cum: Vec<f64> = d
        .load
        .iter()
        .scan(0.0, |acc, t| {
            *acc += t.share;
            Some(*acc)
        })
        .collect();
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(0x5eed);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / d.rate.max(0.01)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let x: f64 = rng.random::<f64>() * cum.last().copied().unwrap_or(1.0);
        let i = cum
            .iter()
            .position(|c| x < *c)
            .unwrap_or(cum.len().saturating_sub(1));
        let (client, d) = (client.clone(), d.clone());
        let seed = rng.random::<u64>();
        tokio::spawn(async move {
            if let Err(e) = one(&client, &d, i, seed).await {
                tracing::debug!(error = %e, "demo request failed");
            }
            drop(permit);
        });
    }
    // Wait for the requests in flight.
    let _ = permits.acquire_many(MAX_IN_FLIGHT as u32).await;
}

/// One request through the proxy and, for a share of them, its feedback.
async fn one(client: &reqwest::Client, d: &Driver, i: usize, seed: u64) -> Result<()> {
    let Some(t) = d.load.get(i) else {
        return Ok(());
    };
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let words = [
        "route", "the", "request", "to", "a", "cheaper", "model", "while", "quality", "holds",
    ];
    let mut prompt = String::with_capacity(t.prompt_chars + 16);
    while prompt.len() < t.prompt_chars {
        prompt.push_str(words[rng.random_range(0..words.len())]);
        prompt.push(' ');
    }
    let body = serde_json::json!({
        "model": crate::proxy::AUTO,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": t.max_tokens,
        // The task travels in the body too, so the upstream (the mock) sees it.
        "metadata": {"task": t.task},
    });
    let resp = client
        .post(format!("{}/v1/chat/completions", d.proxy))
        .header("X-Switchyard-Task", &t.task)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body)?)
        .send()
        .await
        .map_err(|e| Error::Unavailable(format!("proxy: {e}")))?;
    let id = resp
        .headers()
        .get("x-switchyard-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if !resp.status().is_success() {
        return Ok(());
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| Error::Unavailable(format!("proxy answer: {e}")))?;
    let answer: serde_json::Value = serde_json::from_slice(&bytes)?;
    let (Some(id), Some(q)) = (id, answer["switchyard_mock"]["quality"].as_f64()) else {
        return Ok(());
    };
    if rng.random::<f64>() >= d.feedback_share {
        return Ok(());
    }
    let value = if t.binary {
        f64::from(u8::from(rng.random::<f64>() < q))
    } else {
        let q = q.clamp(0.01, 0.99);
        Beta::new(q * JUDGE_CONCENTRATION, (1.0 - q) * JUDGE_CONCENTRATION)
            .map(|b| b.sample(&mut rng))
            .unwrap_or(q)
    };
    let record = serde_json::json!({
        "request_id": id, "metric": "quality", "value": value, "source": "demo-app",
    });
    let mut req = client
        .post(format!("{}/v1/feedback", d.ingest))
        .body(record.to_string())
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if let Some(tok) = &d.ingest_token {
        req = req.bearer_auth(tok);
    }
    req.send()
        .await
        .map_err(|e| Error::Unavailable(format!("feedback: {e}")))?;
    Ok(())
}
