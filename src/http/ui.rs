//! The dashboards: the page and its assets (embedded at build time from `assets/`), the
//! dashboard definitions (`dashboards/*.json`) with what the page's pickers need, and the
//! named reports the panels draw.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::ingest::check_admin;
use crate::error::Error;
use crate::query::output;
use crate::query::reports::{self, ASSETS, DASHBOARDS, Window};

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|(n, _)| *n == name) {
        Some((n, body)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, content_type(n)),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError(Error::NotFound(format!("no asset {name:?}"))).into_response(),
    }
}

/// `GET /`: the dashboard page.
pub async fn index() -> Response {
    asset("index.html")
}

/// `GET /assets/{file}`.
pub async fn assets(Path(file): Path<String>) -> Response {
    asset(&file)
}

/// `GET /api/dashboards`: the definitions, the data's time range, and the tasks and models
/// for the filters (read from the hourly rollup, so this stays fast on large stores).
pub async fn dashboards(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let mut defs = Vec::new();
    for (name, body) in DASHBOARDS {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Error::Internal(format!("dashboards/{name}.json: {e}")))?;
        defs.push(v);
    }
    let first_column = |sql: &'static str| {
        let q = state.query.clone();
        async move {
            let r = q.sql(sql).await?;
            let rows = output::columns_rows(&r)?;
            Ok::<_, Error>(
                rows["rows"]
                    .as_array()
                    .map(|rows| rows.iter().map(|r| r[0].clone()).collect::<Vec<_>>())
                    .unwrap_or_default(),
            )
        }
    };
    let range = state
        .query
        .sql(
            "SELECT MIN(ts_hour) AS min, MAX(ts_hour) + INTERVAL '1 hour' AS max \
             FROM requests_hourly",
        )
        .await?;
    let range = output::columns_rows(&range)?;
    let (min, max) = (&range["rows"][0][0], &range["rows"][0][1]);
    let data_range = if min.is_null() {
        Value::Null
    } else {
        json!({ "min": min, "max": max })
    };
    let tasks = first_column("SELECT DISTINCT task FROM requests_hourly ORDER BY task").await?;
    let models = first_column("SELECT DISTINCT model FROM requests_hourly ORDER BY model").await?;
    Ok(Json(json!({
        "dashboards": defs,
        "data_range": data_range,
        "tasks": tasks,
        "models": models,
    }))
    .into_response())
}

/// `GET /api/reports`: name, purpose, parameters and columns of every report.
pub async fn report_list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let list: Vec<Value> = reports::all()?
        .into_iter()
        .map(|r| json!({"name": r.name, "purpose": r.purpose, "params": r.params, "columns": r.columns}))
        .collect();
    Ok(Json(json!({ "reports": list })).into_response())
}

/// `GET /api/reports/{name}?since=&until=&task=&model=` → `{"columns": [...], "rows": [[...]]}`.
pub async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    if let Some(k) = q
        .keys()
        .find(|k| !matches!(k.as_str(), "since" | "until" | "task" | "model"))
    {
        return Err(Error::Invalid(format!(
            "unknown parameter {k:?}; known: since, until, task, model"
        ))
        .into());
    }
    let get = |k: &str| q.get(k).map(String::as_str);
    let window = Window::parse(
        get("since"),
        get("until"),
        get("task"),
        get("model"),
        chrono::Utc::now(),
    )?;
    let result = reports::run(&state.query, &name, &window).await?;
    Ok(Json(output::columns_rows(&result)?).into_response())
}

/// The recommend objective from query parameters (`since` and `until` are allowed and left to
/// the caller).
pub fn objective_from(q: &HashMap<String, String>) -> Result<crate::recommend::Objective, Error> {
    use crate::recommend::{Objective, Scope};
    let mut obj = Objective::default();
    let bad = |k: &str, v: &str| Error::Invalid(format!("{k}={v:?} is not valid"));
    for (k, v) in q {
        match k.as_str() {
            "quality_target" => obj.quality_target = v.parse().map_err(|_| bad(k, v))?,
            "min_samples" => obj.min_samples = v.parse().map_err(|_| bad(k, v))?,
            "explore" => obj.explore = v.parse().map_err(|_| bad(k, v))?,
            "max_p95_latency_ms" => {
                obj.max_p95_latency_ms = Some(v.parse().map_err(|_| bad(k, v))?)
            }
            "scope" => {
                obj.scope = match v.as_str() {
                    "overall" => Scope::Overall,
                    "task" => Scope::Task,
                    _ => return Err(bad(k, v)),
                }
            }
            "since" | "until" => {}
            other => {
                return Err(Error::Invalid(format!(
                    "unknown parameter {other:?}; known: quality_target, scope, min_samples, \
                     explore, max_p95_latency_ms, since, until"
                )));
            }
        }
    }
    Ok(obj)
}

/// `GET /api/recommendation?quality_target=&scope=&min_samples=&since=`: the policy
/// `recommend` would emit now (not saved).
pub async fn recommendation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let (_, policy) = recommend_now(&state, &q).await?;
    Ok(Json(policy).into_response())
}

/// The evidence in the window the query parameters name (`since`, default 30d; `until`) and
/// the policy `recommend` makes of it now under their objective.
pub async fn recommend_now(
    state: &AppState,
    q: &HashMap<String, String>,
) -> Result<(Vec<crate::recommend::Candidate>, crate::recommend::Policy), Error> {
    let obj = objective_from(q)?;
    let since = q.get("since").map_or("30d", String::as_str);
    let cands = crate::recommend::candidates(
        &state.query,
        Some(since),
        q.get("until").map(String::as_str),
    )
    .await?;
    let policy = crate::recommend::recommend(&cands, &obj, chrono::Utc::now());
    Ok((cands, policy))
}
