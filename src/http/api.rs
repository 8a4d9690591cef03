//! Query and operations handlers: `POST /api/query`, `/metrics`, `/healthz`, `/readyz`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::ingest::check_admin;
use crate::error::Error;
use crate::query::output;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    sql: String,
}

/// `POST /api/query` `{"sql": "..."}` → `{"columns": [...], "rows": [[...]]}`.
pub async fn query(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let req: QueryRequest = serde_json::from_slice(&body)
        .map_err(|e| Error::Invalid(format!("body must be {{\"sql\": \"...\"}}: {e}")))?;
    let result = state.query.sql(&req.sql).await?;
    Ok(Json(output::columns_rows(&result)?).into_response())
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 `ready` while the store makes progress; 503 with the reason while it
/// cannot (WAL stopped after a failed sync, flushes failing, buffer past its limit).
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.readiness() {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "ready": false, "reason": reason })),
            )
                .into_response()
        }
    }
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let m = state.store.metrics();
    let q = state.query.metrics();
    let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (dedupe_keys, dedupe_bytes) = state.store.dedupe_usage();
    let rows: &[(&str, &str, &str, f64)] = &[
        (
            "switchyard_ingested_records_total",
            "counter",
            "Records accepted.",
            g(&m.accepted) as f64,
        ),
        (
            "switchyard_duplicate_records_total",
            "counter",
            "Records dropped as already stored.",
            g(&m.duplicates) as f64,
        ),
        (
            "switchyard_rejected_records_total",
            "counter",
            "Records rejected as invalid.",
            g(&m.rejected) as f64,
        ),
        (
            "switchyard_ingest_batches_total",
            "counter",
            "Ingest batches committed.",
            g(&m.batches) as f64,
        ),
        (
            "switchyard_buffered_rows",
            "gauge",
            "Rows acknowledged but not yet in Parquet.",
            state.store.buffered_rows() as f64,
        ),
        (
            "switchyard_ready",
            "gauge",
            "1 while the store makes progress (see /readyz), else 0.",
            if state.store.readiness().is_ok() {
                1.0
            } else {
                0.0
            },
        ),
        (
            "switchyard_wal_quarantined_segments_total",
            "counter",
            "Damaged WAL segments moved to wal/quarantine when the store opened.",
            g(&m.wal_quarantined) as f64,
        ),
        (
            "switchyard_ingest_overloaded_total",
            "counter",
            "Ingest batches refused (503) because flushes did not keep up within the deadline.",
            g(&m.overloaded) as f64,
        ),
        (
            "switchyard_dedupe_keys",
            "gauge",
            "Keys held in memory by the dedupe index.",
            dedupe_keys as f64,
        ),
        (
            "switchyard_dedupe_bytes",
            "gauge",
            "Bytes held by the dedupe index.",
            dedupe_bytes as f64,
        ),
        (
            "switchyard_wal_bytes",
            "gauge",
            "Bytes in WAL segments.",
            state.store.wal_bytes() as f64,
        ),
        (
            "switchyard_flushes_total",
            "counter",
            "Flushes to Parquet.",
            g(&m.flushes) as f64,
        ),
        (
            "switchyard_flushed_rows_total",
            "counter",
            "Rows flushed to Parquet.",
            g(&m.flushed_rows) as f64,
        ),
        (
            "switchyard_flush_seconds_total",
            "counter",
            "Time spent flushing.",
            g(&m.flush_micros_total) as f64 / 1e6,
        ),
        (
            "switchyard_last_flush_seconds",
            "gauge",
            "Duration of the last flush.",
            g(&m.last_flush_micros) as f64 / 1e6,
        ),
        (
            "switchyard_compactions_total",
            "counter",
            "Compacted files written.",
            g(&m.compactions) as f64,
        ),
        (
            "switchyard_wal_queue_depth",
            "gauge",
            "Ingest batches waiting for their WAL sync.",
            g(&m.wal_queue) as f64,
        ),
        (
            "switchyard_queries_rejected_total",
            "counter",
            "Queries rejected before running (writes, DDL, bad SQL).",
            g(&q.rejected) as f64,
        ),
        (
            "switchyard_queries_limited_total",
            "counter",
            "Queries stopped by their time or memory bound.",
            g(&q.limited) as f64,
        ),
        (
            "switchyard_queries_running",
            "gauge",
            "Queries executing now.",
            g(&q.running) as f64,
        ),
        (
            "switchyard_queries_failed_total",
            "counter",
            "Queries that failed otherwise.",
            g(&q.failed) as f64,
        ),
    ];
    let mut s = String::new();
    for &(name, kind, help, v) in rows {
        crate::metrics::render_value(&mut s, name, kind, help, v);
    }
    m.flush_seconds.render(
        &mut s,
        "switchyard_flush_duration_seconds",
        "Duration of flushes to Parquet.",
    );
    q.seconds.render(
        &mut s,
        "switchyard_query_duration_seconds",
        "Wall time of queries and reports.",
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s,
    )
        .into_response()
}
