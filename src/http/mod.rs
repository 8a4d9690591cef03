//! `serve`'s HTTP API: routes are listed here and nothing else; handlers live by role in
//! `ingest.rs`, `api.rs` (query, operations) and `ui.rs` (dashboards, reports), and
//! `error.rs` maps [`crate::Error`] to a status code.

mod api;
mod error;
mod ingest;
mod policy;
mod ui;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::config::Tokens;
use crate::query::QueryEngine;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub query: QueryEngine,
    pub tokens: Arc<Tokens>,
    pub max_body_bytes: usize,
    /// The running proxy that Apply puts policies in force on, if any.
    pub proxy_url: Option<String>,
}

/// The router of `serve`.
pub fn router(state: AppState) -> Router {
    // Compressed bodies are limited after decompression too (see `ingest::body`).
    let limit = state.max_body_bytes;
    Router::new()
        .route("/v1/logs", post(ingest::logs))
        .route("/v1/feedback", post(ingest::feedback))
        .route("/v1/traces", post(ingest::traces))
        .route("/api/query", post(api::query))
        .route("/api/reports", get(ui::report_list))
        .route("/api/reports/{name}", get(ui::report))
        .route("/api/dashboards", get(ui::dashboards))
        .route("/api/recommendation", get(ui::recommendation))
        .route("/api/policy/proposal", get(policy::proposal))
        .route("/api/policy/live", get(policy::live))
        .route("/api/policy/apply", post(policy::apply))
        .route("/api/policy/changes", get(policy::changes))
        .route("/", get(ui::index))
        .route("/assets/{file}", get(ui::assets))
        .route("/metrics", get(api::metrics))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
