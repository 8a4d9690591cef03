//! The proxy's non-traffic routes: `GET /v1/models`, `/healthz`, `/metrics`, and the live
//! policy (`GET`/`PUT /admin/policy`, admin token) with the policy file watcher. A new policy
//! is validated against the upstreams and swapped in whole; requests already running keep
//! the one they loaded; an invalid one is refused with the reason and the old one stays.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ProxyError;
use super::routing::Live;
use super::server::State;
use super::stats::Stats;
use crate::recommend::Policy;

pub async fn models(Extract(p): Extract<State>) -> Response {
    let live = p.live.load();
    let mut names: Vec<&str> = p.upstreams.named_models().collect();
    names.extend(live.models());
    names.sort_unstable();
    names.dedup();
    let data: Vec<serde_json::Value> = names
        .into_iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "switchyard"}))
        .collect();
    axum::Json(serde_json::json!({"object": "list", "data": data})).into_response()
}

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn metrics(Extract(p): Extract<State>) -> Response {
    let mut out = String::with_capacity(4096);
    p.stats.render(&mut out);
    p.sink.render_metrics(&mut out);
    p.budgets.render_metrics(&mut out);
    let _ = writeln!(
        out,
        "# HELP switchyard_proxy_upstream_open Whether an upstream's circuit is open (skipped).\n# TYPE switchyard_proxy_upstream_open gauge"
    );
    for (name, open) in p.upstreams.states() {
        let _ = writeln!(
            out,
            "switchyard_proxy_upstream_open{{upstream=\"{name}\"}} {}",
            u8::from(open)
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        out,
    )
        .into_response()
}

fn check_admin(p: &State, headers: &HeaderMap) -> Result<(), ProxyError> {
    let Some(want) = p.admin_token.as_deref() else {
        return Ok(());
    };
    let given = super::keys::bearer(headers).unwrap_or("");
    if super::keys::ct_eq(given.as_bytes(), want.as_bytes()) {
        Ok(())
    } else {
        Err(ProxyError::unauthorized(
            "The admin token is missing or wrong",
        ))
    }
}

pub async fn get_policy(Extract(p): Extract<State>, headers: HeaderMap) -> Response {
    if let Err(e) = check_admin(&p, &headers) {
        return e.into_response();
    }
    match &p.live.load().policy {
        Some(policy) => axum::Json(policy).into_response(),
        None => ProxyError::not_found("No routing policy is loaded").into_response(),
    }
}

pub async fn put_policy(Extract(p): Extract<State>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = check_admin(&p, &headers) {
        return e.into_response();
    }
    match install(&p, &body) {
        Ok(version) => {
            axum::Json(serde_json::json!({"status": "ok", "version": &*version})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Validates a policy and puts it in force; the version on success.
fn install(p: &State, text: &[u8]) -> Result<Arc<str>, ProxyError> {
    let compiled = Policy::parse(text).and_then(|policy| Live::compile(policy, &p.upstreams));
    match compiled {
        Ok(live) => {
            let version = live.version.clone().unwrap_or_else(|| Arc::from(""));
            p.live.store(Arc::new(live));
            Stats::inc(&p.stats.policy_reloads);
            tracing::info!(version = %version, "routing policy in force");
            Ok(version)
        }
        Err(e) => {
            Stats::inc(&p.stats.policy_rejected);
            tracing::warn!(error = %e, "routing policy refused; the previous one stays");
            Err(ProxyError::invalid(e.to_string()).code("invalid_policy"))
        }
    }
}

/// Reloads the policy file whenever its modification time or size changes.
pub async fn watch_policy(p: State, path: PathBuf) {
    let stamp = |path: &PathBuf| {
        std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    };
    let mut last = stamp(&path);
    let mut tick = tokio::time::interval(p.opts.watch_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp(&path);
        if now == last || now.is_none() {
            continue;
        }
        last = now;
        match tokio::fs::read(&path).await {
            Ok(text) => {
                if install(&p, &text).is_ok() {
                    tracing::info!(path = %path.display(), "policy file reloaded");
                }
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the policy file")
            }
        }
    }
}
