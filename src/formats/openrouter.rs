//! OpenRouter generation stats (the `data` object of `GET /api/v1/generation?id=`, or the whole
//! `{"data": {...}}` answer) turned into canonical records.
//!
//! Mapping (field names as documented for the generation endpoint):
//!
//! - `request_id` = `id` (`gen-...`); `model` = `model`; `ts` = `created_at` (a side field `ts`,
//!   RFC 3339 or epoch milliseconds, wins).
//! - Tokens prefer the native counts (the ones OpenRouter bills): `native_tokens_prompt`,
//!   `native_tokens_completion`, `native_tokens_cached`, `native_tokens_reasoning`; the
//!   normalised `tokens_prompt` / `tokens_completion` are the fallback. Some providers count
//!   reasoning outside the completion; when `native_tokens_reasoning` exceeds the completion
//!   count the two are added so reasoning stays a part of completion (canonical convention).
//! - `cost_usd` = `total_cost` (reported; else `usage`, the same amount), plus
//!   `upstream_inference_cost` when `is_byok` (the provider bills that part directly).
//! - `latency_ms` = the larger of `latency` and `generation_time` (both milliseconds; the
//!   raw values stay in `metadata`), so it is the whole request under either reading of them.
//! - `provider` = `provider_name`, lowercased; `user_id` = `external_user`; `app` = `app_id`;
//!   `streamed` = `streamed`; `finish_reason` = `finish_reason`, else `native_finish_reason`.
//! - `cancelled: true` → `error = "cancelled"`, `status = 499` (client closed the request);
//!   `finish_reason: "error"` → `error`.
//! - `gateway` = `openrouter` (a side field `gateway` wins). The switchyard side fields `task`,
//!   `key_id`, `user_id`, `team_id`, `app`, `latency_ms`, `ttft_ms`, ... may sit beside the stats
//!   (inside `data` or beside it) and win.
//! - Other scalars (`upstream_id`, `cache_discount`, `origin`, `api_type`, `router`, `is_byok`,
//!   `moderation_latency`, `num_*`, ...) go to `metadata`; `provider_responses` becomes
//!   `metadata.provider_responses` = the number of provider attempts.

use serde_json::{Map, Value};

use super::{json_kind, opt_bool, opt_f64, opt_str, value_decimal, value_ts_ms};
use crate::formats::openai::{
    add_cost, count, extra_scalars, first_str, nested, obj_field, side_fields,
};
use crate::record::{Item, Record};

/// Keys consumed here; other scalars go to `metadata`.
const CONSUMED: &[&str] = &[
    "id",
    "model",
    "created_at",
    "ts",
    "total_cost",
    "usage",
    "native_tokens_prompt",
    "native_tokens_completion",
    "native_tokens_cached",
    "native_tokens_reasoning",
    "provider_name",
    "external_user",
    "app_id",
    "streamed",
    "finish_reason",
    "cancelled",
    "gateway",
    "metadata",
    "provider_responses",
];

/// One generation-stats object (or its `{"data": ...}` wrapper).
pub fn record(obj: Map<String, Value>) -> Result<Item, String> {
    let obj = unwrap_data(obj)?;
    let request_id = first_str(&obj, &["id"])?.ok_or("`id` is required")?;
    let model = first_str(&obj, &["model"])?.ok_or("`model` is required")?;
    let ts_us = match value_ts_ms(obj.get("ts"), "ts")? {
        Some(t) => t,
        None => {
            value_ts_ms(obj.get("created_at"), "created_at")?.ok_or("`created_at` is required")?
        }
    };
    let mut r = Record {
        request_id,
        ts_us,
        model,
        gateway: Some(opt_str(&obj, "gateway")?.unwrap_or_else(|| "openrouter".into())),
        ..Default::default()
    };

    let native_prompt = count(obj.get("native_tokens_prompt"), "native_tokens_prompt")?;
    let prompt = count(obj.get("tokens_prompt"), "tokens_prompt")?;
    let native_completion = count(
        obj.get("native_tokens_completion"),
        "native_tokens_completion",
    )?;
    let completion = count(obj.get("tokens_completion"), "tokens_completion")?;
    r.prompt_tokens = native_prompt.or(prompt);
    r.completion_tokens = native_completion.or(completion);
    r.cached_tokens = count(obj.get("native_tokens_cached"), "native_tokens_cached")?;
    r.reasoning_tokens = count(
        obj.get("native_tokens_reasoning"),
        "native_tokens_reasoning",
    )?;
    if let (Some(c), Some(reason)) = (r.completion_tokens, r.reasoning_tokens)
        && reason > c
    {
        // Both are at most 1e11 (checked by `count`), so this cannot overflow.
        r.completion_tokens = Some(c + reason);
    }

    let cost = match value_decimal(obj.get("total_cost"), "total_cost")? {
        Some(c) => Some(c),
        None => value_decimal(obj.get("usage"), "usage")?,
    };
    r.cost_usd = match cost {
        Some(c) if opt_bool(&obj, "is_byok")? == Some(true) => {
            match value_decimal(
                obj.get("upstream_inference_cost"),
                "upstream_inference_cost",
            )? {
                Some(up) => Some(add_cost(c, up, "total_cost")?),
                None => Some(c),
            }
        }
        other => other,
    };

    let latency = opt_f64(&obj, "latency")?;
    let generation = opt_f64(&obj, "generation_time")?;
    r.latency_ms = match (latency, generation) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    r.provider = opt_str(&obj, "provider_name")?.map(|p| p.to_lowercase());
    r.user_id = opt_str(&obj, "external_user")?;
    r.app = opt_str(&obj, "app_id")?;
    r.streamed = opt_bool(&obj, "streamed")?;
    r.finish_reason = match opt_str(&obj, "finish_reason")? {
        Some(f) => Some(f),
        None => opt_str(&obj, "native_finish_reason")?,
    };
    if opt_bool(&obj, "cancelled")? == Some(true) {
        r.error = Some("cancelled".into());
        r.status = Some(499);
    } else if r.finish_reason.as_deref() == Some("error") {
        r.error = Some(match opt_str(&obj, "native_finish_reason")? {
            Some(n) if n != "error" => format!("finish_reason: error ({n})"),
            _ => "finish_reason: error".into(),
        });
    }

    match obj.get("provider_responses") {
        Some(Value::Array(a)) => {
            r.metadata
                .insert("provider_responses".into(), a.len().to_string());
        }
        None | Some(Value::Null) => {}
        Some(v) => {
            return Err(format!(
                "`provider_responses` must be an array, got {}",
                json_kind(v)
            ));
        }
    }
    if let Some(m) = obj_field(&obj, "metadata", "metadata")? {
        for (k, v) in m {
            if !v.is_null() {
                r.metadata.insert(k.clone(), super::stringify(v));
            }
        }
        r.task = nested("metadata", "task", opt_str(m, "task"))?;
    }
    side_fields(&obj, &mut r)?;
    extra_scalars(&obj, CONSUMED, &mut r);
    Ok(Item::Request(Box::new(r)))
}

/// The stats object: `data` of a `{"data": {...}}` answer (with any keys beside `data`, such
/// as switchyard side fields, merged in where `data` lacks them), else the object itself.
fn unwrap_data(mut obj: Map<String, Value>) -> Result<Map<String, Value>, String> {
    match obj.remove("data") {
        None | Some(Value::Null) => Ok(obj),
        Some(Value::Object(mut inner)) => {
            for (k, v) in obj {
                inner.entry(k).or_insert(v);
            }
            Ok(inner)
        }
        Some(v) => Err(format!("`data` must be an object, got {}", json_kind(&v))),
    }
}
