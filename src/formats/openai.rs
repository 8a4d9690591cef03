//! OpenAI-style chat completion responses (also OpenRouter's and other OpenAI-compatible
//! gateways'), with switchyard's side fields beside them, turned into canonical records.
//!
//! Mapping:
//!
//! - `request_id` = `id` (else a side field `request_id`); `model` = `model`.
//! - `ts` = side field `ts` (RFC 3339 or epoch milliseconds), else `created` (epoch seconds;
//!   `created_at` in Responses API objects).
//! - Tokens from `usage`, in whichever of three conventions it uses:
//!   - OpenAI chat completions: `prompt_tokens`, `completion_tokens`,
//!     `prompt_tokens_details.{cached_tokens, cache_write_tokens | cache_creation_tokens}`,
//!     `completion_tokens_details.reasoning_tokens` (LiteLLM's extra top-level
//!     `cache_read_input_tokens` / `cache_creation_input_tokens` are read as fallbacks);
//!   - OpenAI Responses API: `input_tokens` / `output_tokens` with `input_tokens_details` /
//!     `output_tokens_details` (input already includes cached tokens);
//!   - Anthropic Messages: `input_tokens`, `output_tokens`, `cache_read_input_tokens`,
//!     `cache_creation_input_tokens`, where input excludes cache reads and writes
//!     (normalised with [`Usage::from_anthropic`]).
//! - `cost_usd` = `usage.cost` (OpenRouter, reported), plus
//!   `usage.cost_details.upstream_inference_cost` when `usage.is_byok` (bring-your-own-key: the
//!   provider bills the upstream part directly); a side field `cost_usd` wins over both.
//! - `provider` = `provider` (OpenRouter's serving provider), lowercased so it groups with the
//!   catalog's provider names.
//! - `finish_reason` and `error` from `choices[0]` (OpenRouter reports mid-stream failures as
//!   `finish_reason: "error"` with `choices[0].error`); a top-level `error` also counts, and an
//!   error object's numeric `code` in 100..600 becomes `status`.
//! - `streamed` = side field `streamed` (or `stream`), else true for `chat.completion.chunk`.
//! - `gateway` = side field `gateway`, else `openrouter` when `usage.cost` or `provider` is
//!   present, else `openai`.
//! - Side fields: `task`, `latency_ms`, `ttft_ms`, `key_id`, `user_id`, `team_id`, `app`,
//!   `status`, `attempt`, `parent_id`, `policy_version`, `route`, `metadata` (object; its
//!   `task` is the task when no `task` side field is given).
//! - Other top-level scalars go to `metadata`; nested values (`choices`, `citations`, ...) do not.
//!
//! The small helpers at the bottom are shared with the OpenRouter and LiteLLM adapters.

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::{
    json_kind, opt_bool, opt_f64, opt_i32, opt_str, stringify, value_decimal, value_i64,
    value_ts_ms, value_ts_secs,
};
use crate::record::{Item, Record, Usage};

/// Top-level keys this adapter consumes; everything else scalar goes to `metadata`.
const CONSUMED: &[&str] = &[
    "id",
    "request_id",
    "object",
    "created",
    "created_at",
    "model",
    "choices",
    "usage",
    "system_fingerprint",
    "provider",
    "ts",
    "gateway",
    "cost_usd",
    "error",
    "streamed",
    "stream",
    "metadata",
    "status",
];

/// An OpenAI-style chat completion response with switchyard's side fields.
pub fn record(obj: Map<String, Value>) -> Result<Item, String> {
    let request_id = first_str(&obj, &["id", "request_id"])?.ok_or("`id` is required")?;
    let model = first_str(&obj, &["model"])?.ok_or("`model` is required")?;
    let ts_us = match value_ts_ms(obj.get("ts"), "ts")? {
        Some(t) => t,
        None => match value_ts_secs(obj.get("created"), "created")? {
            Some(t) => t,
            // The Responses API names it `created_at`.
            None => value_ts_secs(obj.get("created_at"), "created_at")?
                .ok_or("`created` (or a `ts` side field) is required")?,
        },
    };
    let mut r = Record {
        request_id,
        ts_us,
        model,
        ..Default::default()
    };

    let mut openrouter = false;
    if let Some(p) = opt_str(&obj, "provider")? {
        openrouter = true;
        r.provider = Some(p.to_lowercase());
    }
    if let Some(u) = obj_field(&obj, "usage", "usage")? {
        parse_usage(u, "usage")?.apply(&mut r);
        if let Some(cost) = reported_cost(u, "usage")? {
            openrouter = true;
            r.cost_usd = Some(cost);
        }
    }
    if let Some(c) = value_decimal(obj.get("cost_usd"), "cost_usd")? {
        r.cost_usd = Some(c);
    }

    // The first choice carries the finish reason (and OpenRouter's mid-stream error).
    match obj.get("choices") {
        None | Some(Value::Null) => {}
        Some(Value::Array(choices)) => {
            if let Some(first) = choices.first() {
                let Value::Object(c) = first else {
                    return Err(format!(
                        "`choices[0]` must be an object, got {}",
                        json_kind(first)
                    ));
                };
                r.finish_reason =
                    nested("choices[0]", "finish_reason", opt_str(c, "finish_reason"))?;
                if let Some((msg, code)) = error_of(c.get("error")) {
                    r.error = Some(msg);
                    r.status = code;
                }
            }
        }
        Some(v) => return Err(format!("`choices` must be an array, got {}", json_kind(v))),
    }
    if let Some((msg, code)) = error_of(obj.get("error")) {
        r.error = Some(msg);
        r.status = code.or(r.status);
    }
    if r.error.is_none() && r.finish_reason.as_deref() == Some("error") {
        r.error = Some("finish_reason: error".into());
    }

    r.streamed = match opt_bool(&obj, "streamed")? {
        Some(b) => Some(b),
        None => opt_bool(&obj, "stream")?,
    };
    if r.streamed.is_none()
        && obj.get("object").and_then(Value::as_str) == Some("chat.completion.chunk")
    {
        r.streamed = Some(true);
    }

    side_fields(&obj, &mut r)?;
    side_metadata(&obj, &mut r)?;
    r.gateway = Some(match opt_str(&obj, "gateway")? {
        Some(g) => g,
        None if openrouter => "openrouter".into(),
        None => "openai".into(),
    });
    extra_scalars(&obj, CONSUMED, &mut r);
    Ok(Item::Request(Box::new(r)))
}

/// `usage.cost`, plus the upstream part billed separately for bring-your-own-key requests.
fn reported_cost(u: &Map<String, Value>, path: &str) -> Result<Option<Decimal>, String> {
    let Some(cost) = value_decimal(u.get("cost"), &format!("{path}.cost"))? else {
        return Ok(None);
    };
    let byok = nested(path, "is_byok", opt_bool(u, "is_byok"))?.unwrap_or(false);
    let details_path = format!("{path}.cost_details");
    let upstream = match obj_field(u, "cost_details", &details_path)? {
        Some(d) if byok => value_decimal(
            d.get("upstream_inference_cost"),
            &format!("{details_path}.upstream_inference_cost"),
        )?,
        _ => None,
    };
    match upstream {
        Some(up) => add_cost(cost, up, &format!("{path}.cost")).map(Some),
        None => Ok(Some(cost)),
    }
}

// ---- helpers shared by the gateway adapters -------------------------------------------------

/// Token counts read from a `usage`-like object, each absent unless the source gave it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub prompt: Option<i64>,
    pub completion: Option<i64>,
    pub cached: Option<i64>,
    pub cache_write: Option<i64>,
    pub reasoning: Option<i64>,
}

impl Tokens {
    /// Sets the record's counts that this usage knows.
    pub(crate) fn apply(&self, r: &mut Record) {
        r.prompt_tokens = self.prompt.or(r.prompt_tokens);
        r.completion_tokens = self.completion.or(r.completion_tokens);
        r.cached_tokens = self.cached.or(r.cached_tokens);
        r.cache_write_tokens = self.cache_write.or(r.cache_write_tokens);
        r.reasoning_tokens = self.reasoning.or(r.reasoning_tokens);
    }
}

/// Reads a usage object in the OpenAI chat, OpenAI Responses or Anthropic convention (see the
/// module doc) and returns counts in the canonical OpenAI convention. `path` names the object
/// in error messages (`usage`, `metadata.usage_object`, ...).
pub(crate) fn parse_usage(u: &Map<String, Value>, path: &str) -> Result<Tokens, String> {
    let has = |k: &str| u.get(k).is_some_and(|v| !v.is_null());
    let at = |k: &str| format!("{path}.{k}");
    let openai_style = has("prompt_tokens") || has("completion_tokens");
    if !openai_style && (has("input_tokens") || has("output_tokens")) {
        let input = count(u.get("input_tokens"), &at("input_tokens"))?;
        let output = count(u.get("output_tokens"), &at("output_tokens"))?;
        let in_details = obj_field(u, "input_tokens_details", &at("input_tokens_details"))?;
        let out_details = obj_field(u, "output_tokens_details", &at("output_tokens_details"))?;
        if in_details.is_some() || out_details.is_some() {
            // OpenAI Responses API: input_tokens already includes the cached ones.
            let cached = match in_details {
                Some(d) => count(
                    d.get("cached_tokens"),
                    &at("input_tokens_details.cached_tokens"),
                )?,
                None => None,
            };
            let reasoning = match out_details {
                Some(d) => count(
                    d.get("reasoning_tokens"),
                    &at("output_tokens_details.reasoning_tokens"),
                )?,
                None => None,
            };
            return Ok(Tokens {
                prompt: input,
                completion: output,
                cached,
                cache_write: None,
                reasoning,
            });
        }
        // Anthropic Messages: input_tokens excludes cache reads and writes.
        let read = count(
            u.get("cache_read_input_tokens"),
            &at("cache_read_input_tokens"),
        )?;
        let write = count(
            u.get("cache_creation_input_tokens"),
            &at("cache_creation_input_tokens"),
        )?;
        let n = Usage::from_anthropic(
            input.unwrap_or(0),
            output.unwrap_or(0),
            read.unwrap_or(0),
            write.unwrap_or(0),
        );
        return Ok(Tokens {
            prompt: Some(n.prompt),
            completion: output,
            cached: read,
            cache_write: write,
            reasoning: None,
        });
    }
    let mut t = Tokens {
        prompt: count(u.get("prompt_tokens"), &at("prompt_tokens"))?,
        completion: count(u.get("completion_tokens"), &at("completion_tokens"))?,
        ..Tokens::default()
    };
    if let Some(d) = obj_field(u, "prompt_tokens_details", &at("prompt_tokens_details"))? {
        let dp = |k: &str| format!("{path}.prompt_tokens_details.{k}");
        t.cached = count(d.get("cached_tokens"), &dp("cached_tokens"))?;
        t.cache_write = match count(d.get("cache_write_tokens"), &dp("cache_write_tokens"))? {
            Some(w) => Some(w),
            None => count(d.get("cache_creation_tokens"), &dp("cache_creation_tokens"))?,
        };
    }
    if let Some(d) = obj_field(
        u,
        "completion_tokens_details",
        &at("completion_tokens_details"),
    )? {
        t.reasoning = count(
            d.get("reasoning_tokens"),
            &format!("{path}.completion_tokens_details.reasoning_tokens"),
        )?;
    }
    // LiteLLM also puts Anthropic's cache counters at the top of its (OpenAI-style) usage.
    if t.cached.is_none() {
        t.cached = count(
            u.get("cache_read_input_tokens"),
            &at("cache_read_input_tokens"),
        )?;
    }
    if t.cache_write.is_none() {
        t.cache_write = count(
            u.get("cache_creation_input_tokens"),
            &at("cache_creation_input_tokens"),
        )?;
    }
    Ok(t)
}

/// Largest token count accepted; larger values are input errors (as in `Record::finish`).
const MAX_TOKENS: i64 = 100_000_000_000;

/// A token count: a whole number in 0..=1e11, or absent. The error names `path`.
pub(crate) fn count(v: Option<&Value>, path: &str) -> Result<Option<i64>, String> {
    match value_i64(v, path)? {
        Some(n) if n < 0 => Err(format!("`{path}` must be >= 0, got {n}")),
        Some(n) if n > MAX_TOKENS => Err(format!("`{path}` is implausibly large: {n}")),
        other => Ok(other),
    }
}

/// A nested object field: `None` when absent or null, an error naming `path` when not an object.
pub(crate) fn obj_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(v) => Err(format!("`{path}` must be an object, got {}", json_kind(v))),
    }
}

/// Rewrites a field helper's error about `key` to name the full path `prefix.key`.
pub(crate) fn nested<T>(prefix: &str, key: &str, r: Result<T, String>) -> Result<T, String> {
    r.map_err(|e| e.replacen(&format!("`{key}`"), &format!("`{prefix}.{key}`"), 1))
}

/// The first of `keys` holding a non-empty string (numbers are printed).
pub(crate) fn first_str(obj: &Map<String, Value>, keys: &[&str]) -> Result<Option<String>, String> {
    for k in keys {
        if let Some(s) = opt_str(obj, k)?
            && !s.is_empty()
        {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

/// An optional 32-bit integer field.
/// Exact sum of two amounts; an overflow is an input error, not a panic.
pub(crate) fn add_cost(a: Decimal, b: Decimal, path: &str) -> Result<Decimal, String> {
    a.checked_add(b)
        .ok_or_else(|| format!("`{path}` is out of range"))
}

/// An error value as text, with the HTTP status it carries: a string as is, an object's
/// `message` (else the object as JSON) and its numeric `code`/`status` when it is one.
pub(crate) fn error_of(v: Option<&Value>) -> Option<(String, Option<i32>)> {
    match v? {
        Value::Null | Value::Bool(false) => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some((s.clone(), None)),
        Value::Object(m) => {
            let msg = match m.get("message") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                _ => Value::Object(m.clone()).to_string(),
            };
            let code = ["code", "status"]
                .iter()
                .find_map(|k| http_status(m.get(*k)));
            Some((msg, code))
        }
        other => Some((stringify(other), None)),
    }
}

/// A value that is an HTTP status code (a number or numeric string in 100..600).
pub(crate) fn http_status(v: Option<&Value>) -> Option<i32> {
    let n = match v? {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        _ => return None,
    };
    i32::try_from(n).ok().filter(|c| (100..600).contains(c))
}

/// Switchyard's side fields set beside a gateway's own payload; present ones win.
pub(crate) fn side_fields(obj: &Map<String, Value>, r: &mut Record) -> Result<(), String> {
    for (key, slot) in [
        ("task", &mut r.task),
        ("key_id", &mut r.key_id),
        ("user_id", &mut r.user_id),
        ("team_id", &mut r.team_id),
        ("app", &mut r.app),
        ("parent_id", &mut r.parent_id),
        ("policy_version", &mut r.policy_version),
        ("route", &mut r.route),
    ] {
        if let Some(v) = opt_str(obj, key)? {
            *slot = Some(v);
        }
    }
    if let Some(v) = opt_f64(obj, "latency_ms")? {
        r.latency_ms = Some(v);
    }
    if let Some(v) = opt_f64(obj, "ttft_ms")? {
        r.ttft_ms = Some(v);
    }
    if let Some(v) = opt_i32(obj, "attempt")? {
        r.attempt = Some(v);
    }
    Ok(())
}

/// Side fields a switchyard-shaped wrapper may carry: `status` (an HTTP status; a word goes to
/// `metadata.status`) and the `metadata` object
/// of custom properties, whose `task` is the task when none was given.
fn side_metadata(obj: &Map<String, Value>, r: &mut Record) -> Result<(), String> {
    match obj.get("status") {
        // A word (the Responses API's `completed`, `failed`, ...) is not an HTTP status.
        Some(Value::String(s)) if s.trim().parse::<i64>().is_err() => {
            r.metadata.insert("status".into(), s.clone());
        }
        _ => {
            if let Some(s) = opt_i32(obj, "status")? {
                r.status = Some(s);
            }
        }
    }
    if let Some(m) = obj_field(obj, "metadata", "metadata")? {
        for (k, v) in m {
            if !v.is_null() {
                r.metadata.insert(k.clone(), stringify(v));
            }
        }
        if r.task.is_none() {
            r.task = nested("metadata", "task", opt_str(m, "task"))?;
        }
    }
    Ok(())
}

/// The side fields [`side_fields`] reads.
const SIDE_KEYS: &[&str] = &[
    "task",
    "key_id",
    "user_id",
    "team_id",
    "app",
    "parent_id",
    "policy_version",
    "route",
    "latency_ms",
    "ttft_ms",
    "attempt",
];

/// Keeps the top-level scalars that are neither in `consumed` nor side fields as metadata
/// (existing entries win).
pub(crate) fn extra_scalars(obj: &Map<String, Value>, consumed: &[&str], r: &mut Record) {
    for (k, v) in obj {
        let scalar = matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
        if scalar && !consumed.contains(&k.as_str()) && !SIDE_KEYS.contains(&k.as_str()) {
            r.metadata.entry(k.clone()).or_insert_with(|| stringify(v));
        }
    }
}
