//! `POST /v1/embeddings` of the mock: one deterministic unit vector per input (the same text
//! always gives the same vector), as float arrays or, with `encoding_format: "base64"` (what
//! the official Python client asks for), little-endian `f32` bytes in base64.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::chat::{begin, reported_cost, tokens_of_chars};
use super::{Mock, error_response, splitmix64};
use crate::record::Usage;

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: Option<String>,
    input: Option<Value>,
    dimensions: Option<u32>,
    encoding_format: Option<String>,
}

/// The texts of `input` (a string, strings, or token arrays), each as bytes to hash and the
/// tokens it counts for.
fn inputs(input: &Value) -> Option<Vec<(Vec<u8>, u64)>> {
    let one = |v: &Value| -> Option<(Vec<u8>, u64)> {
        match v {
            Value::String(s) => Some((
                s.as_bytes().to_vec(),
                tokens_of_chars(s.chars().count()).max(1),
            )),
            Value::Array(toks) if toks.iter().all(Value::is_u64) => {
                Some((v.to_string().into_bytes(), toks.len() as u64))
            }
            _ => None,
        }
    };
    match input {
        Value::String(_) => Some(vec![one(input)?]),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_u64) => {
            Some(vec![one(input)?])
        }
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        _ => None,
    }
}

/// A unit vector of `dims` components drawn from `seed`.
fn vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dims as u64)
        .map(|i| {
            let x = splitmix64(seed ^ i.wrapping_mul(0xD6E8_FEB8_6659_FD93));
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

pub async fn embeddings(State(m): State<Mock>, body: Bytes) -> Response {
    let req: EmbeddingRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
    };
    let Some(texts) = req.input.as_ref().and_then(inputs) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "`input` must be a non-empty string, array of strings or array of token arrays",
        );
    };
    let (model, fx, _) = match begin(&m, req.model.as_deref()) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let name = &*model.name;
    if let Some(ms) = fx.latency_ms.filter(|ms| *ms > 0) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let dims = req.dimensions.unwrap_or(model.profile.embedding_dims);
    if dims == 0 || dims > 8192 {
        return error_response(StatusCode::BAD_REQUEST, "`dimensions` must be in 1..=8192");
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("unknown encoding_format {other:?}"),
            );
        }
    };
    let seed = m.0.seed;
    let mut prompt = 0;
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, (bytes, tokens))| {
            prompt += tokens;
            let v = vector(
                xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed),
                dims as usize,
            );
            let embedding = if base64 {
                let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(raw))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let usage = fx.usage.then(|| {
        let u = Usage {
            prompt: prompt as i64,
            ..Usage::default()
        };
        EmbeddingUsage {
            prompt_tokens: prompt,
            total_tokens: prompt,
            cost: reported_cost(fx.report_cost, model.price.as_deref(), &u),
        }
    });
    axum::Json(EmbeddingList {
        object: "list",
        data,
        model: name,
        usage,
    })
    .into_response()
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Value>,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<EmbeddingUsage>,
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost: Option<Box<RawValue>>,
}
