//! The built-in mock upstream (`switchyard mock-upstream`): an OpenAI-compatible server for
//! tests, the demo and the proxy benchmark. Requests go from the routes below to `chat.rs`
//! (completions, streamed by `stream.rs`) and `embeddings.rs`; each model behaves as its
//! profile says (`profile.rs`), with the switches tests set through the control API
//! (`behaviour.rs`):
//!
//! - `POST /mock/behaviour` `{"model": NAME | "*", "status", "latency_ms", "ttft_ms",
//!   "tokens_per_s", "error_rate", "abort_after_chunks", "usage", "report_cost"}`: every field
//!   optional and merged into the model's switches, `null` clears one;
//! - `GET /mock/stats` `{"requests": {MODEL: n}, "total": n}`; `POST /mock/reset` zeroes the
//!   counters and clears every switch.
//!
//! Answers echo the requested model and carry `switchyard_mock.quality`, the simulated quality
//! of that model on the request's task (header `X-Switchyard-Task`, else `metadata.task`, else
//! `default`), so a demo driver can post realistic feedback.

mod behaviour;
mod chat;
mod embeddings;
pub mod profile;
mod stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use behaviour::{Behaviour, Patch, Stats};
pub use profile::{Overrides, Profile, Profiles};

use crate::error::Result;
use crate::prices::PriceCatalog;
use behaviour::Registry;

/// Largest request body the mock reads.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A running mock's shared state; cheap to clone.
#[derive(Clone)]
pub struct Mock(Arc<Inner>);

struct Inner {
    registry: Registry,
    seed: u64,
    /// Request ids and the error-rate draws.
    counter: AtomicU64,
    text: chat::Text,
    models_body: Bytes,
}

impl Mock {
    /// A mock serving `profiles`, pricing `report_cost` from `catalog`, its random draws and
    /// per-task qualities fixed by `seed`.
    pub fn new(profiles: Profiles, catalog: PriceCatalog, seed: u64) -> Result<Mock> {
        let models_body = Bytes::from(serde_json::to_vec(&models_list(&profiles))?);
        Ok(Mock(Arc::new(Inner {
            registry: Registry::new(profiles, catalog),
            seed,
            counter: AtomicU64::new(0),
            text: chat::Text::build(),
            models_body,
        })))
    }

    /// The next request number.
    fn next(&self) -> u64 {
        self.0.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// A uniform draw in [0, 1), from the seed and the request number.
    fn draw(&self, n: u64) -> f64 {
        let x = splitmix64(self.0.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's output function: a well-mixed 64-bit value of `x`.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The mock's routes.
pub fn router(mock: Mock) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat::completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
        .route("/v1/models", get(models))
        .route("/healthz", get(healthz))
        .route("/mock/behaviour", post(set_behaviour))
        .route("/mock/stats", get(stats))
        .route("/mock/reset", post(reset))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(mock)
}

/// Serves the mock on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mock: Mock,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(mock))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| crate::Error::Internal(format!("mock upstream: {e}")))
}

/// An OpenAI-shaped error answer.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let (kind, code) = match status.as_u16() {
        400 | 413 | 422 => ("invalid_request_error", "invalid_request"),
        401 => ("authentication_error", "invalid_api_key"),
        404 => ("invalid_request_error", "model_not_found"),
        429 => ("rate_limit_error", "rate_limit_exceeded"),
        s if s >= 500 => ("server_error", "server_error"),
        _ => ("invalid_request_error", "error"),
    };
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    });
    (status, axum::Json(body)).into_response()
}

fn models_list(p: &Profiles) -> serde_json::Value {
    let data: Vec<serde_json::Value> = p
        .models
        .keys()
        .map(|id| {
            let owner = id.split_once('/').map_or("mock", |(o, _)| o);
            serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
        })
        .collect();
    serde_json::json!({"object": "list", "data": data})
}

async fn models(State(m): State<Mock>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        m.0.models_body.clone(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn set_behaviour(State(m): State<Mock>, body: Bytes) -> Response {
    let patch: Patch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    match m.0.registry.apply(&patch) {
        Ok(b) => {
            axum::Json(serde_json::json!({"model": patch.model, "behaviour": b})).into_response()
        }
        Err(e) => error_response(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

async fn stats(State(m): State<Mock>) -> axum::Json<Stats> {
    axum::Json(m.0.registry.stats())
}

async fn reset(State(m): State<Mock>) -> Response {
    m.0.registry.reset();
    axum::Json(serde_json::json!({"reset": true})).into_response()
}
