//! `POST /v1/chat/completions` and `POST /v1/embeddings`: read the few fields routing needs,
//! plan the models to try, then call upstreams in order — the next on 429, 5xx, timeouts and
//! connection errors, passes over the list again with backoff and jitter while the request's
//! deadline allows, upstreams with an open circuit skipped — and answer with the first
//! success, its cost added. Every attempt becomes one log record. The body goes upstream as
//! it came, only `model` (and for streams `stream_options.include_usage`) rewritten.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;

use super::attempt::{Attempt, Failure, GATEWAY, Outcome, call};
use super::body::{self, Fields, RequestHead};
use super::budget::Admission;
use super::error::ProxyError;
use super::keys::bearer;
use super::routing::Live;
use super::server::State;
use super::stats::Stats;
use super::upstream::Admit;
use crate::record::Record;

pub const H_REQUEST_ID: HeaderName = HeaderName::from_static("x-switchyard-request-id");
pub const H_MODEL: HeaderName = HeaderName::from_static("x-switchyard-model");
pub const H_POLICY: HeaderName = HeaderName::from_static("x-switchyard-policy-version");
pub const H_COST: HeaderName = HeaderName::from_static("x-switchyard-cost");
const H_TASK: &str = "x-switchyard-task";

/// Most upstream attempts one request makes.
const MAX_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Embeddings,
}

pub async fn chat_completions(
    Extract(p): Extract<State>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(p, headers, body, Kind::Chat).await
}

pub async fn embeddings(Extract(p): Extract<State>, headers: HeaderMap, body: Bytes) -> Response {
    handle(p, headers, body, Kind::Embeddings).await
}

async fn handle(p: State, headers: HeaderMap, body: Bytes, kind: Kind) -> Response {
    Stats::inc(&p.stats.requests);
    let started = Instant::now();
    let r = match serve(&p, &headers, body, kind, started).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if !r.status().is_success() {
        Stats::inc(&p.stats.failed);
    }
    p.stats.latency.observe(started.elapsed());
    r
}

/// One client request on its way through the attempts.
pub struct Ctx {
    pub p: State,
    pub live: Arc<Live>,
    pub rid: String,
    pub task: String,
    pub key_id: Option<Arc<str>>,
    pub head: RequestHead,
    pub kind: Kind,
    pub deadline: Instant,
}

async fn serve(
    p: &State,
    headers: &HeaderMap,
    raw: Bytes,
    kind: Kind,
    started: Instant,
) -> Result<Response, ProxyError> {
    let Some(key_id) = p.keys.authenticate(bearer(headers)) else {
        return Err(ProxyError::unauthorized(
            "Incorrect API key provided: use a key configured on this proxy",
        ));
    };
    let fields = Fields::parse(&raw).map_err(|e| {
        ProxyError::invalid(format!(
            "We could not parse the JSON body of your request: {e}"
        ))
    })?;
    let head =
        RequestHead::read(&fields).map_err(|b| ProxyError::invalid(b.message).param(b.param))?;
    let Some(model) = head.model.clone() else {
        return Err(ProxyError::invalid("you must provide a model parameter").param(Some("model")));
    };
    let task = headers
        .get(H_TASK)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .or_else(|| head.task.clone())
        .unwrap_or_else(|| "default".to_string());
    let live = p.live.load_full();
    let mut plan = live.plan(&task, &model)?;
    if !plan.iter().any(|(m, _)| p.upstreams.serves(m)) {
        return Err(ProxyError::model_not_found(&model));
    }
    // Worst case reserved against the budgets before any call, settled to the real cost.
    let mut reservation = None;
    if !p.budgets.is_empty() {
        let prompt = body::estimate_tokens(head.prompt_bytes) as u64;
        match p.budgets.admit(
            &p.prices,
            &key_id,
            &task,
            &plan[0].0,
            prompt,
            head.max_tokens,
        ) {
            Admission::Serve {
                model,
                reservation: r,
                downgraded_by,
            } => {
                reservation = Some(r);
                if let Some(b) = downgraded_by {
                    Stats::inc(&p.stats.downgraded);
                    if !p.upstreams.serves(&model) {
                        return Err(ProxyError::model_not_found(&model));
                    }
                    plan = vec![(Arc::from(model), Arc::from(format!("budget-downgrade:{b}")))];
                }
            }
            Admission::Reject { message, budget } => {
                Stats::inc(&p.stats.rejected_budget);
                // Logged too, so refusals show beside spend; no upstream was called.
                p.sink.send(Record {
                    request_id: p.request_id(),
                    ts_us: chrono::Utc::now().timestamp_micros(),
                    model: plan[0].0.to_string(),
                    task: Some(task),
                    gateway: Some(GATEWAY.to_string()),
                    key_id: Some(key_id.to_string()),
                    status: Some(429),
                    error: Some(message.clone()),
                    streamed: Some(head.stream),
                    policy_version: live.version.as_deref().map(str::to_string),
                    route: Some(format!(
                        "budget-reject:{}",
                        budget.as_deref().unwrap_or("unpriced")
                    )),
                    ..Record::default()
                });
                return Err(ProxyError::quota(message));
            }
        }
    }
    let ctx = Ctx {
        p: p.clone(),
        live,
        rid: p.request_id(),
        task,
        key_id: Some(key_id),
        kind,
        deadline: started + p.opts.deadline,
        head,
    };
    // Bodies per model sent, built once each.
    let mut bodies: Vec<(Arc<str>, Bytes)> = Vec::with_capacity(plan.len());
    let mut attempt = 0u32;
    let mut last: Option<Failure> = None;
    'passes: for pass in 0..=p.opts.retries {
        if pass > 0 {
            let base = p.opts.backoff.saturating_mul(1 << (pass - 1).min(8));
            let wait = base.mul_f64(0.5 + fastrand::f64() * 0.5);
            if Instant::now() + wait >= ctx.deadline {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        for (model, route) in &plan {
            for ui in p.upstreams.serving(model) {
                let admit = p.upstreams.admit(ui);
                if admit == Admit::No {
                    continue;
                }
                if attempt >= MAX_ATTEMPTS || Instant::now() >= ctx.deadline {
                    break 'passes;
                }
                attempt += 1;
                Stats::inc(&p.stats.attempts);
                if attempt > 1 {
                    Stats::inc(&p.stats.fallbacks);
                }
                let body = match bodies.iter().find(|(m, _)| m == model) {
                    Some((_, b)) => b.clone(),
                    None => {
                        let b = upstream_body(&ctx, &fields, &raw, model);
                        bodies.push((model.clone(), b.clone()));
                        b
                    }
                };
                let a = Attempt {
                    n: attempt,
                    ui,
                    model: model.clone(),
                    route: route.clone(),
                };
                match call(&ctx, &a, body, &mut reservation).await {
                    Outcome::Answer(r) => return Ok(r),
                    Outcome::Retry(f) => last = Some(f),
                }
            }
        }
    }
    // Nothing was served: nothing was spent.
    if let Some(r) = reservation {
        r.settle(Some(Decimal::ZERO));
    }
    Ok(match last {
        Some(f) => f.into_response(),
        None if Instant::now() >= ctx.deadline => ProxyError::upstream(
            StatusCode::GATEWAY_TIMEOUT,
            "The request's deadline passed before an upstream answered",
        )
        .into_response(),
        None => ProxyError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            "Every upstream for this model is cooling down after failures; try again shortly",
        )
        .code("upstream_unavailable")
        .into_response(),
    })
}

/// The body for `model`: the client's bytes untouched when nothing changes.
fn upstream_body(ctx: &Ctx, fields: &Fields<'_>, raw: &Bytes, model: &str) -> Bytes {
    let same_model = ctx.head.model.as_deref() == Some(model);
    let want_usage = ctx.kind == Kind::Chat && ctx.head.stream && !ctx.head.client_usage;
    if same_model && !want_usage {
        return raw.clone();
    }
    let model_json = body::json_string(model);
    let options;
    let mut set: Vec<(&str, &str)> = Vec::with_capacity(2);
    set.push(("model", &model_json));
    if want_usage {
        options = stream_options_with_usage(fields);
        set.push(("stream_options", &options));
    }
    let mut out = Vec::with_capacity(raw.len() + 48);
    fields.write(&set, &[], &mut out);
    Bytes::from(out)
}

/// The client's `stream_options` with `include_usage: true`, other options kept.
fn stream_options_with_usage(fields: &Fields<'_>) -> String {
    let parsed = fields
        .get("stream_options")
        .and_then(|raw| serde_json::from_str::<Fields<'_>>(raw.get()).ok());
    let mut out = Vec::new();
    match parsed {
        Some(o) => o.write(&[("include_usage", "true")], &[], &mut out),
        None => Fields(Vec::new()).write(&[("include_usage", "true")], &[], &mut out),
    }
    String::from_utf8(out).unwrap_or_else(|_| "{\"include_usage\":true}".into())
}
