//! LiteLLM logs turned into canonical records: the `StandardLoggingPayload` every LiteLLM
//! callback receives (`kwargs["standard_logging_object"]`), and rows of the proxy's
//! `LiteLLM_SpendLogs` table (as exported by `/spend/logs` or read from Postgres).
//!
//! Mapping:
//!
//! - `request_id` = `id` (payload) or `request_id` (SpendLogs row).
//! - `model` = `model`, else `hidden_params.litellm_model_name`, else `model_group`;
//!   `provider` = `custom_llm_provider`.
//! - `ts` = `startTime` (epoch seconds in the payload, an ISO datetime in SpendLogs);
//!   `latency_ms` = `request_duration_ms` when present, else `endTime - startTime`;
//!   `ttft_ms` = `completionStartTime - startTime` when the call was streamed (`stream: true`,
//!   or, when `stream` is unknown, when the first token came before the end — LiteLLM sets
//!   `completionStartTime = endTime` for calls that did not stream).
//! - `prompt_tokens`, `completion_tokens` as given: LiteLLM already normalises every provider
//!   to the OpenAI convention (cache reads and writes inside `prompt_tokens`). Cached, cache
//!   write and reasoning counts come from the first usage object found among
//!   `metadata.usage_object`, `hidden_params.usage_object`, `response.usage` and (SpendLogs)
//!   `metadata.additional_usage_values`: `prompt_tokens_details.cached_tokens` or
//!   `cache_read_input_tokens`, `cache_creation_input_tokens` or
//!   `prompt_tokens_details.cache_creation_tokens`, `completion_tokens_details.reasoning_tokens`.
//! - `cost_usd` = `response_cost` (payload) or `spend` (SpendLogs): LiteLLM's own figure, so
//!   `reported`. A null `response_cost` (LiteLLM could not price it) leaves pricing to the
//!   catalog.
//! - `key_id` = the key alias (`metadata.user_api_key_alias`) when present, else the key hash
//!   (`metadata.user_api_key_hash`, SpendLogs `api_key`, or `metadata.user_api_key`).
//!   `user_id` = `metadata.user_api_key_user_id` / SpendLogs `user`, else `end_user`;
//!   `team_id` = `metadata.user_api_key_team_id` / `team_id`.
//! - `task`, first found of: a top-level `task` (switchyard side field),
//!   `metadata.requester_metadata.task` (the `metadata` a client sends with its request),
//!   `metadata.spend_logs_metadata.task`, then a `task:NAME` tag in `request_tags` (a list,
//!   or a JSON string in SpendLogs) or `metadata.tags`. Tags are how LiteLLM users label
//!   traffic, and the `task:` prefix keeps unrelated tags from becoming tasks.
//!   `app` = `app` in the same two metadata objects.
//! - `status: "failure"` → `error` = `error_str`, else `error_information.error_message`
//!   (also under `metadata` in SpendLogs), else `failure`; HTTP `status` =
//!   `error_information.error_code` when it is a status code, else 500. A numeric `status` is
//!   taken as the HTTP status.
//! - `finish_reason` = `response.choices[0].finish_reason`; `streamed` = `stream`.
//! - `metadata`: the scalars of `requester_metadata` and `spend_logs_metadata` (custom
//!   properties), `team_alias`, `org_id`, `end_user`, `error_class`, then the payload's other
//!   top-level scalars (`call_type`, `model_group`, `model_id`, `api_base`, `cache_hit`,
//!   `trace_id`, `session_id`, ...). Message and response bodies, the raw key hash and the
//!   requester's IP address are never copied.
//! - `gateway` = `litellm` (a side field `gateway` wins). `metadata` may be an object or, in
//!   SpendLogs exports, a JSON-encoded object.

use serde_json::{Map, Value};

use super::{json_kind, opt_bool, opt_f64, opt_str, stringify, value_decimal, value_ts_secs};
use crate::formats::openai::{
    Tokens, count, extra_scalars, first_str, http_status, nested, obj_field, parse_usage,
    side_fields,
};
use crate::record::{Item, Record};

/// Keys consumed here, or deliberately never copied (bodies, key hash, client IP).
const CONSUMED: &[&str] = &[
    "id",
    "request_id",
    "model",
    "custom_llm_provider",
    "startTime",
    "endTime",
    "completionStartTime",
    "request_duration_ms",
    "response_time",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "response_cost",
    "spend",
    "api_key",
    "user",
    "end_user",
    "team_id",
    "status",
    "error_str",
    "stream",
    "metadata",
    "gateway",
    "messages",
    "response",
    "requester_ip_address",
    "proxy_server_request",
    "request_tags",
];

/// A LiteLLM `StandardLoggingPayload` or `LiteLLM_SpendLogs` row.
pub fn record(obj: Map<String, Value>) -> Result<Item, String> {
    let request_id = first_str(&obj, &["id", "request_id"])?
        .ok_or("`id` (StandardLoggingPayload) or `request_id` (SpendLogs row) is required")?;
    let meta = metadata_of(&obj)?;
    let meta = meta.as_ref();
    let hidden = obj_field(&obj, "hidden_params", "hidden_params")?;
    let response = match obj.get("response") {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    };

    let mut model = first_str(&obj, &["model"])?;
    if model.is_none()
        && let Some(h) = hidden
    {
        model = nested(
            "hidden_params",
            "litellm_model_name",
            first_str(h, &["litellm_model_name"]),
        )?;
    }
    let model = match model {
        Some(m) => m,
        None => first_str(&obj, &["model_group"])?.ok_or("`model` is required")?,
    };

    let start =
        value_ts_secs(obj.get("startTime"), "startTime")?.ok_or("`startTime` is required")?;
    let end = value_ts_secs(obj.get("endTime"), "endTime")?;
    let first_token = value_ts_secs(obj.get("completionStartTime"), "completionStartTime")?;
    let streamed = opt_bool(&obj, "stream")?;

    let mut r = Record {
        request_id,
        ts_us: start,
        model,
        provider: opt_str(&obj, "custom_llm_provider")?.filter(|p| !p.is_empty()),
        gateway: Some(opt_str(&obj, "gateway")?.unwrap_or_else(|| "litellm".into())),
        streamed,
        ..Default::default()
    };
    r.latency_ms = match opt_f64(&obj, "request_duration_ms")? {
        Some(ms) => Some(ms),
        None => end.and_then(|e| duration_ms(start, e)),
    };
    if let Some(ft) = first_token {
        let streamed_call = match streamed {
            Some(s) => s,
            None => end.is_some_and(|e| ft < e),
        };
        if streamed_call {
            r.ttft_ms = duration_ms(start, ft);
        }
    }

    // Tokens: the top-level counts, details from the first usage object there is.
    let usage = usage_object(meta, hidden, response)?;
    if let Some((u, path)) = usage {
        parse_usage(u, &path)?.apply(&mut r);
    }
    let top = Tokens {
        prompt: count(obj.get("prompt_tokens"), "prompt_tokens")?,
        completion: count(obj.get("completion_tokens"), "completion_tokens")?,
        ..Tokens::default()
    };
    r.prompt_tokens = top.prompt.or(r.prompt_tokens);
    r.completion_tokens = top.completion.or(r.completion_tokens);

    r.cost_usd = match value_decimal(obj.get("response_cost"), "response_cost")? {
        Some(c) => Some(c),
        None => value_decimal(obj.get("spend"), "spend")?,
    };

    // Who spent.
    let m = |k: &str| -> Result<Option<String>, String> {
        match meta {
            Some(m) => nested("metadata", k, first_str(m, &[k])),
            None => Ok(None),
        }
    };
    r.key_id = match m("user_api_key_alias")? {
        Some(a) => Some(a),
        None => match m("user_api_key_hash")? {
            Some(h) => Some(h),
            None => match first_str(&obj, &["api_key"])? {
                Some(h) => Some(h),
                None => m("user_api_key")?,
            },
        },
    };
    r.user_id = match m("user_api_key_user_id")? {
        Some(u) => Some(u),
        None => first_str(&obj, &["user", "end_user"])?,
    };
    r.team_id = match m("user_api_key_team_id")? {
        Some(t) => Some(t),
        None => first_str(&obj, &["team_id"])?,
    };
    for (src, dst) in [
        ("user_api_key_team_alias", "team_alias"),
        ("user_api_key_org_id", "org_id"),
    ] {
        if let Some(v) = m(src)? {
            r.metadata.insert(dst.into(), v);
        }
    }
    if let Some(e) = first_str(&obj, &["end_user"])? {
        r.metadata.insert("end_user".into(), e);
    }

    // Custom properties the client sent, and the task among them.
    let mut custom: Vec<(&str, &Map<String, Value>)> = Vec::new();
    if let Some(mm) = meta {
        for k in ["requester_metadata", "spend_logs_metadata"] {
            if let Some(o) = obj_field(mm, k, &format!("metadata.{k}"))? {
                custom.push((k, o));
            }
        }
    }
    for (k, o) in &custom {
        let path = format!("metadata.{k}");
        if r.task.is_none() {
            r.task = nested(&path, "task", first_str(o, &["task"]))?;
        }
        if r.app.is_none() {
            r.app = nested(&path, "app", first_str(o, &["app"]))?;
        }
        for (ck, cv) in o.iter() {
            let scalar = matches!(cv, Value::String(_) | Value::Number(_) | Value::Bool(_));
            if scalar && ck != "task" && ck != "app" {
                r.metadata
                    .entry(ck.clone())
                    .or_insert_with(|| stringify(cv));
            }
        }
    }
    // Tags are checked even when the task came from elsewhere.
    let tag_task = match task_tag(obj.get("request_tags"), "request_tags")? {
        Some(t) => Some(t),
        None => match meta {
            Some(mm) => task_tag(mm.get("tags"), "metadata.tags")?,
            None => None,
        },
    };
    if r.task.is_none() {
        r.task = tag_task;
    }

    // Outcome.
    let error_info = match obj_field(&obj, "error_information", "error_information")? {
        Some(e) => Some((e, "error_information".to_string())),
        None => match meta {
            Some(mm) => obj_field(mm, "error_information", "metadata.error_information")?
                .map(|e| (e, "metadata.error_information".to_string())),
            None => None,
        },
    };
    let status = match opt_str(&obj, "status")? {
        Some(s) => Some(s),
        None => m("status")?,
    };
    match status.as_deref() {
        Some("failure") => {
            let mut msg = opt_str(&obj, "error_str")?.filter(|s| !s.is_empty());
            let mut code = None;
            if let Some((e, path)) = &error_info {
                if msg.is_none() {
                    msg = nested(path, "error_message", first_str(e, &["error_message"]))?;
                }
                code = http_status(e.get("error_code"));
                if let Some(c) = nested(path, "error_class", first_str(e, &["error_class"]))? {
                    r.metadata.insert("error_class".into(), c);
                }
            }
            r.error = Some(msg.unwrap_or_else(|| "failure".into()));
            r.status = Some(code.unwrap_or(500));
        }
        Some(s) => {
            if let Some(code) = http_status(Some(&Value::String(s.to_string()))) {
                r.status = Some(code);
            }
        }
        None => {}
    }
    if let Some(resp) = response
        && let Some(Value::Array(choices)) = resp.get("choices")
        && let Some(Value::Object(c)) = choices.first()
    {
        r.finish_reason = nested(
            "response.choices[0]",
            "finish_reason",
            opt_str(c, "finish_reason"),
        )?;
    }

    side_fields(&obj, &mut r)?;
    extra_scalars(&obj, CONSUMED, &mut r);
    Ok(Item::Request(Box::new(r)))
}

/// LiteLLM's `metadata`: an object, or (SpendLogs exports) a JSON string holding one.
fn metadata_of(obj: &Map<String, Value>) -> Result<Option<Map<String, Value>>, String> {
    match obj.get("metadata") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(Value::Null) => Ok(None),
            _ => Err("`metadata` must be an object or a JSON-encoded object".into()),
        },
        Some(v) => Err(format!(
            "`metadata` must be an object, got {}",
            json_kind(v)
        )),
    }
}

/// A JSON object and the path naming it in error messages.
type Located<'a> = (&'a Map<String, Value>, String);

/// The first usage object with token details, and its path for error messages.
fn usage_object<'a>(
    meta: Option<&'a Map<String, Value>>,
    hidden: Option<&'a Map<String, Value>>,
    response: Option<&'a Map<String, Value>>,
) -> Result<Option<Located<'a>>, String> {
    let candidates = [
        (meta, "usage_object", "metadata"),
        (hidden, "usage_object", "hidden_params"),
        (response, "usage", "response"),
        (meta, "additional_usage_values", "metadata"),
    ];
    for (parent, key, prefix) in candidates {
        if let Some(p) = parent {
            let path = format!("{prefix}.{key}");
            if let Some(u) = obj_field(p, key, &path)? {
                return Ok(Some((u, path)));
            }
        }
    }
    Ok(None)
}

/// The `NAME` of the first `task:NAME` tag in a list of tags (or a JSON string of one).
fn task_tag(v: Option<&Value>, path: &str) -> Result<Option<String>, String> {
    let parsed;
    let list = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => {
            parsed = serde_json::from_str::<Value>(s)
                .map_err(|_| format!("`{path}` must be a list of tags"))?;
            match &parsed {
                Value::Array(a) => a,
                Value::Null => return Ok(None),
                _ => return Err(format!("`{path}` must be a list of tags")),
            }
        }
        Some(other) => {
            return Err(format!(
                "`{path}` must be a list of tags, got {}",
                json_kind(other)
            ));
        }
    };
    Ok(list.iter().find_map(|t| {
        t.as_str()
            .and_then(|s| s.strip_prefix("task:"))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }))
}

/// Milliseconds from `from_us` to `to_us`, or `None` when negative (clock skew) or absurd.
fn duration_ms(from_us: i64, to_us: i64) -> Option<f64> {
    let d = to_us.checked_sub(from_us)?;
    (d >= 0).then(|| d as f64 / 1000.0)
}
