//! The canonical record shape (SPEC: "The canonical request record") and feedback records.
//! Unknown fields are kept in `metadata` as strings, never an error.

use serde_json::{Map, Value};

use super::{
    opt_bool, opt_f64, opt_i32, opt_i64, opt_str, req_str, stringify, take_str, value_decimal,
    value_ts_ms,
};
use crate::record::{CostSource, Feedback, Item, Record};

/// Fields of the canonical record; everything else goes to `metadata`.
const KNOWN: &[&str] = &[
    "request_id",
    "ts",
    "model",
    "provider",
    "task",
    "gateway",
    "key_id",
    "user_id",
    "team_id",
    "app",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_source",
    "latency_ms",
    "ttft_ms",
    "status",
    "error",
    "finish_reason",
    "streamed",
    "attempt",
    "parent_id",
    "policy_version",
    "route",
    "metadata",
    "date",
    "hour",
];

fn required(v: Option<String>, key: &str) -> Result<String, String> {
    v.filter(|s| !s.is_empty())
        .ok_or_else(|| format!("`{key}` is required"))
}

/// A canonical request record.
pub fn record(mut obj: Map<String, Value>) -> Result<Item, String> {
    let ts_us = value_ts_ms(obj.get("ts"), "ts")?.ok_or("`ts` is required")?;
    let mut r = Record {
        request_id: required(take_str(&mut obj, "request_id")?, "request_id")?,
        ts_us,
        model: required(take_str(&mut obj, "model")?, "model")?,
        provider: take_str(&mut obj, "provider")?,
        task: take_str(&mut obj, "task")?,
        gateway: take_str(&mut obj, "gateway")?,
        key_id: take_str(&mut obj, "key_id")?,
        user_id: take_str(&mut obj, "user_id")?,
        team_id: take_str(&mut obj, "team_id")?,
        app: take_str(&mut obj, "app")?,
        prompt_tokens: opt_i64(&obj, "prompt_tokens")?,
        completion_tokens: opt_i64(&obj, "completion_tokens")?,
        cached_tokens: opt_i64(&obj, "cached_tokens")?,
        cache_write_tokens: opt_i64(&obj, "cache_write_tokens")?,
        reasoning_tokens: opt_i64(&obj, "reasoning_tokens")?,
        cost_usd: value_decimal(obj.get("cost_usd"), "cost_usd")?,
        cost_source: None,
        latency_ms: opt_f64(&obj, "latency_ms")?,
        ttft_ms: opt_f64(&obj, "ttft_ms")?,
        status: opt_i32(&obj, "status")?,
        error: take_str(&mut obj, "error")?,
        finish_reason: take_str(&mut obj, "finish_reason")?,
        streamed: opt_bool(&obj, "streamed")?,
        attempt: opt_i32(&obj, "attempt")?,
        parent_id: take_str(&mut obj, "parent_id")?,
        policy_version: take_str(&mut obj, "policy_version")?,
        route: take_str(&mut obj, "route")?,
        metadata: Default::default(),
    };
    // A stored record read back says `cost_source: unknown` with a null cost: keep it so.
    if r.cost_usd.is_none() && obj.get("cost_source").and_then(Value::as_str) == Some("unknown") {
        r.cost_source = Some(CostSource::Unknown);
    }
    match obj.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                r.metadata.insert(k.clone(), stringify(v));
            }
        }
        Some(v) => {
            return Err(format!(
                "`metadata` must be an object of strings, got {}",
                super::json_kind(v)
            ));
        }
    }
    for (k, v) in obj {
        if !KNOWN.contains(&k.as_str()) && !v.is_null() {
            r.metadata.entry(k).or_insert_with(|| stringify(&v));
        }
    }
    Ok(Item::Request(Box::new(r)))
}

/// A feedback record `{request_id, ts?, metric = "quality", value, source?}`.
pub fn feedback(obj: Map<String, Value>, now_us: i64) -> Result<Item, String> {
    let ts_us = value_ts_ms(obj.get("ts"), "ts")?;
    let value = match obj.get("value") {
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        v => super::value_f64(v, "value")?.ok_or("`value` is required")?,
    };
    Ok(Item::Feedback(Feedback {
        request_id: req_str(&obj, "request_id")?,
        ts_us: ts_us.unwrap_or(now_us),
        metric: opt_str(&obj, "metric")?.unwrap_or_else(|| "quality".into()),
        value,
        source: opt_str(&obj, "source")?,
    }))
}

/// The fast path for canonical records: a typed, borrowing parse with no intermediate JSON
/// tree. Any surprise (an unknown field, a number as a string, a missing `ts`) returns `None`
/// and the caller takes the general path, which keeps unknown fields and names errors.
pub fn fast_record(line: &[u8]) -> Option<Record> {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde::de::IgnoredAny;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Fast<'a> {
        #[serde(borrow)]
        request_id: Cow<'a, str>,
        #[serde(borrow)]
        ts: &'a RawValue,
        #[serde(borrow)]
        model: Cow<'a, str>,
        #[serde(borrow, default)]
        provider: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        task: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        gateway: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        key_id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        user_id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        team_id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        app: Option<Cow<'a, str>>,
        prompt_tokens: Option<i64>,
        completion_tokens: Option<i64>,
        cached_tokens: Option<i64>,
        cache_write_tokens: Option<i64>,
        reasoning_tokens: Option<i64>,
        #[serde(borrow, default)]
        cost_usd: Option<&'a RawValue>,
        #[serde(borrow, default)]
        cost_source: Option<Cow<'a, str>>,
        latency_ms: Option<f64>,
        ttft_ms: Option<f64>,
        status: Option<i32>,
        #[serde(borrow, default)]
        error: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        finish_reason: Option<Cow<'a, str>>,
        streamed: Option<bool>,
        attempt: Option<i32>,
        #[serde(borrow, default)]
        parent_id: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        policy_version: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        route: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        metadata: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
        #[serde(default)]
        date: Option<IgnoredAny>,
        #[serde(default)]
        hour: Option<IgnoredAny>,
    }

    let f: Fast = serde_json::from_slice(line).ok()?;
    let own = |c: Option<Cow<'_, str>>| c.map(Cow::into_owned);
    let ts_text = f.ts.get();
    let ts_us = if let Some(s) = ts_text.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        if s.contains('\\') {
            return None;
        }
        super::parse_ts_str(s)?
    } else {
        let ms: f64 = ts_text.parse().ok()?;
        (ms * 1000.0).round() as i64
    };
    let cost_usd = match f.cost_usd.map(RawValue::get) {
        None | Some("null") => None,
        Some(t) => {
            // A JSON number reads as the general path reads it (through f64, shortest form);
            // a string keeps its exact digits.
            let text = match t.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                Some(s) => std::borrow::Cow::Borrowed(s),
                None => std::borrow::Cow::Owned(
                    serde_json::from_str::<serde_json::Number>(t)
                        .ok()?
                        .to_string(),
                ),
            };
            Some(
                rust_decimal::Decimal::from_str_exact(&text)
                    .or_else(|_| rust_decimal::Decimal::from_scientific(&text))
                    .ok()?,
            )
        }
    };
    let cost_source = match f.cost_source.as_deref() {
        Some("unknown") if cost_usd.is_none() => Some(CostSource::Unknown),
        _ => None,
    };
    let _ = (f.date, f.hour);
    Some(Record {
        request_id: f.request_id.into_owned(),
        ts_us,
        model: f.model.into_owned(),
        provider: own(f.provider),
        task: own(f.task),
        gateway: own(f.gateway),
        key_id: own(f.key_id),
        user_id: own(f.user_id),
        team_id: own(f.team_id),
        app: own(f.app),
        prompt_tokens: f.prompt_tokens,
        completion_tokens: f.completion_tokens,
        cached_tokens: f.cached_tokens,
        cache_write_tokens: f.cache_write_tokens,
        reasoning_tokens: f.reasoning_tokens,
        cost_usd,
        cost_source,
        latency_ms: f.latency_ms,
        ttft_ms: f.ttft_ms,
        status: f.status,
        error: own(f.error),
        finish_reason: own(f.finish_reason),
        streamed: f.streamed,
        attempt: f.attempt,
        parent_id: own(f.parent_id),
        policy_version: own(f.policy_version),
        route: own(f.route),
        metadata: f
            .metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    })
}

/// The fast path for feedback records, like [`fast_record`]: `None` sends the line to the
/// general path.
pub fn fast_feedback(line: &[u8], now_us: i64) -> Option<Feedback> {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Fast<'a> {
        #[serde(borrow)]
        request_id: Cow<'a, str>,
        #[serde(borrow, default)]
        ts: Option<&'a RawValue>,
        #[serde(borrow, default)]
        metric: Option<Cow<'a, str>>,
        value: f64,
        #[serde(borrow, default)]
        source: Option<Cow<'a, str>>,
    }

    let f: Fast = serde_json::from_slice(line).ok()?;
    let ts_us = match f.ts.map(RawValue::get) {
        None | Some("null") => now_us,
        Some(t) => match t.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            Some(s) if !s.contains('\\') => super::parse_ts_str(s)?,
            Some(_) => return None,
            None => (t.parse::<f64>().ok()? * 1000.0).round() as i64,
        },
    };
    Some(Feedback {
        request_id: f.request_id.into_owned(),
        ts_us,
        metric: f.metric.map_or_else(|| "quality".into(), Cow::into_owned),
        value: f.value,
        source: f.source.map(Cow::into_owned),
    })
}
