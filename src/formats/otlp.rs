//! OTLP/HTTP trace exports (JSON and protobuf) → one canonical record per GenAI model-call span.
//!
//! Both encodings are first read into one small internal shape (resources, spans, attributes),
//! and one conversion turns spans into [`Record`]s, so JSON and protobuf give identical records.
//!
//! The JSON encoding is walked by hand rather than through `opentelemetry-proto`'s serde
//! derives, to accept what real exporters send: lowerCamelCase and snake_case field names,
//! `intValue` and `*TimeUnixNano` as strings or numbers, enums (`kind`, `status.code`) as
//! integers or names, ids as hex (the OTLP/JSON rule) or base64 (protobuf-JSON's default), and the
//! legacy `instrumentationLibrarySpans`. Work is bounded: at most [`MAX_SPANS`] spans per export
//! and [`MAX_ATTR_DEPTH`] levels of nested attribute values.
//!
//! # Which spans become records
//!
//! A span is a GenAI span when it has `gen_ai.request.model`, `gen_ai.response.model` or
//! `gen_ai.operation.name`; every other span is skipped, and an export without GenAI spans
//! yields no records (not an error; `/v1/traces` counts the skipped spans as rejected in its
//! OTLP `partial_success` answer). Among GenAI spans:
//!
//! * a span that has a model is a record, unless another span with a model in the same export
//!   descends from it: then it is a wrapper (an agent, chain or framework span around the real
//!   call) and only the innermost calls are counted, so tokens and cost are not counted twice;
//! * an `invoke_agent` / `create_agent` / `execute_tool` span is always a wrapper unless its kind
//!   is `CLIENT` (a remote agent service, which is a record when it has a model): in-process
//!   agents' model calls have spans of their own, which may arrive in another batch;
//! * a span without a model is a record only for an inference operation (`chat`,
//!   `text_completion`, `generate_content`, `embeddings`), where `Record::finish` then rejects it
//!   for the missing model; tool, agent and memory spans without a model are skipped.
//!
//! # Field mapping (current name first, then legacy names)
//!
//! | record | span attribute |
//! |---|---|
//! | `model` | `gen_ai.response.model`, `gen_ai.request.model` (a differing request model stays in metadata) |
//! | `provider` | `gen_ai.provider.name`, `gen_ai.system`; lowercased, `x_ai`→`xai`, `mistral_ai`→`mistral`, `gcp.gemini`/`gcp.gen_ai`→`gemini` |
//! | `prompt_tokens` | `gen_ai.usage.input_tokens`, `gen_ai.usage.prompt_tokens` |
//! | `completion_tokens` | `gen_ai.usage.output_tokens`, `gen_ai.usage.completion_tokens` |
//! | `cached_tokens` | `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_read_input_tokens`, `gen_ai.usage.input_tokens.cached` |
//! | `cache_write_tokens` | `gen_ai.usage.cache_creation.input_tokens`, `gen_ai.usage.cache_creation_input_tokens`, `gen_ai.usage.cache_write.input_tokens`, `gen_ai.usage.input_tokens.cache_write` |
//! | `reasoning_tokens` | `gen_ai.usage.reasoning.output_tokens`, `gen_ai.usage.reasoning_tokens`, `gen_ai.usage.output_tokens.reasoning` |
//! | `finish_reason` | first of `gen_ai.response.finish_reasons` (array, or a string / JSON-array string), `llm.response.finish_reason`, `gen_ai.completion.0.finish_reason` |
//! | `request_id` | `gen_ai.response.id`, else hex trace id followed by hex span id |
//! | `ts` | span start (ns → µs) |
//! | `latency_ms` | span end − start |
//! | `ttft_ms` | `gen_ai.response.time_to_first_chunk`, `gen_ai.server.time_to_first_token` (seconds) |
//! | `streamed` | `gen_ai.request.stream`, `llm.is_streaming` |
//! | `status`, `error` | see below |
//! | `task` | `switchyard.task`, `app.task`, `task`, `gen_ai.agent.name`, `traceloop.workflow.name`; else the nearest ancestor span's (same export) first such label, e.g. the agent around a chat call; else resource `switchyard.task` |
//! | `user_id` | `user.id`, `enduser.id` |
//! | `app` | resource `service.name` (SDK defaults `unknown_service*` ignored) |
//! | `cost_usd` | `gen_ai.usage.cost`, `llm.usage.cost` (then `cost_source` = `reported`) |
//! | `gateway` | always `otlp` |
//! | `metadata` | every other span attribute as a string (≤ 1 KiB each, ≤ 128 keys), plus `otel.trace_id`, `otel.span_id`, `otel.span_name`, `otel.scope_name` and resource `deployment.environment[.name]`. Message contents (`gen_ai.input.messages`, `gen_ai.prompt.N.*`, tool arguments, ...) and `*.total_tokens` are dropped. |
//!
//! Status: a span failed when its status code is `ERROR`, when `error.type` is set and the status
//! is not `OK`, or when `http.response.status_code` (or `http.status_code`) is ≥ 400. A failed
//! span's `status` is that HTTP status when it is ≥ 400, else 500; its `error` is the status
//! message, else the first `exception` event's message, else `error.type`. Other spans get 200.
//!
//! # Token convention
//!
//! The GenAI conventions say `gen_ai.usage.input_tokens` SHOULD include all input tokens, cache
//! reads and writes too, which is the canonical record's (OpenAI) convention, so counts are kept
//! as they are. Some Anthropic instrumentations forward Anthropic's raw `input_tokens`, which
//! excludes cache reads and writes. For a span whose provider is `anthropic` or whose model is a
//! Claude model (Bedrock, Vertex), when `input_tokens < cache_read + cache_creation` — impossible
//! under the including convention — the counts are read as Anthropic's and converted with
//! [`Usage::from_anthropic`]. (An excluding count that happens to be ≥ the cache counts cannot
//! be told apart and is kept as is.)
//!
//! # Errors
//!
//! A body that is not an OTLP trace export (wrong JSON kinds, undecodable protobuf, too many
//! spans) is an error. A GenAI span whose usage or cost attribute is not a number is an error
//! naming the span; [`from_json`] and [`from_protobuf`] then reject the whole export, while
//! [`spans_from_json`] and [`spans_from_protobuf`] report each span's result on its own.

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::{Map, Value};

use super::{json_kind, value_decimal};
use crate::record::{Item, Record, Usage};

/// Most spans one export may carry.
pub const MAX_SPANS: usize = 1_000_000;
/// Deepest nesting of array / key-value-list attribute values that is kept.
pub const MAX_ATTR_DEPTH: usize = 16;
/// Longest metadata value kept (bytes); longer values are cut at a character boundary.
const MAX_META_VALUE: usize = 1024;
/// Most metadata keys taken from one span's attributes.
const MAX_META_KEYS: usize = 128;
/// Longest attribute key copied into metadata.
const MAX_META_KEY: usize = 256;
/// Longest parent chain followed when looking for wrapper spans.
const MAX_PARENT_WALK: usize = 10_000;

const SPAN_KIND_CLIENT: i32 = 3;
const STATUS_OK: i32 = 1;
const STATUS_ERROR: i32 = 2;

const REQUEST_MODEL: &str = "gen_ai.request.model";
const RESPONSE_MODEL: &str = "gen_ai.response.model";
const OPERATION: &str = "gen_ai.operation.name";

/// Operations that call a model and are priced per call.
const INFERENCE_OPS: &[&str] = &["chat", "text_completion", "generate_content", "embeddings"];
/// Operations whose in-process spans wrap model calls that have spans of their own.
const WRAPPER_OPS: &[&str] = &["invoke_agent", "create_agent", "execute_tool"];

/// An OTLP `AnyValue`, decoded from either encoding.
#[derive(Debug, Clone, PartialEq)]
enum Attr {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Array(Vec<Attr>),
    Map(Vec<(String, Attr)>),
    Empty,
}

impl Attr {
    fn to_json(&self) -> Value {
        match self {
            Attr::Str(s) => Value::String(s.clone()),
            Attr::Int(i) => Value::from(*i),
            Attr::Double(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(f.to_string())),
            Attr::Bool(b) => Value::Bool(*b),
            Attr::Bytes(b) => Value::String(hex::encode(b)),
            Attr::Array(a) => Value::Array(a.iter().map(Attr::to_json).collect()),
            Attr::Map(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            Attr::Empty => Value::Null,
        }
    }

    /// A scalar as text; composite and empty values have none.
    fn text(&self) -> Option<String> {
        match self {
            Attr::Str(s) => Some(s.clone()),
            Attr::Int(i) => Some(i.to_string()),
            Attr::Double(f) => Some(f.to_string()),
            Attr::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The value as metadata text: scalars printed, composites as compact JSON.
    fn display(&self) -> String {
        match self.text() {
            Some(s) => s,
            None => match self {
                Attr::Bytes(b) => hex::encode(b),
                other => other.to_json().to_string(),
            },
        }
    }

    fn as_i64(&self, key: &str) -> Result<Option<i64>, String> {
        match self {
            Attr::Empty => Ok(None),
            Attr::Int(i) => Ok(Some(*i)),
            Attr::Double(f) if f.fract() == 0.0 && f.abs() < 9e15 => Ok(Some(*f as i64)),
            Attr::Str(s) => {
                let t = s.trim();
                t.parse::<i64>()
                    .ok()
                    .or_else(|| {
                        t.parse::<f64>()
                            .ok()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                            .map(|f| f as i64)
                    })
                    .map(Some)
                    .ok_or_else(|| format!("`{key}` must be a whole number, got {s:?}"))
            }
            other => Err(format!(
                "`{key}` must be a whole number, got {}",
                other.display()
            )),
        }
    }

    fn as_f64(&self, key: &str) -> Result<Option<f64>, String> {
        match self {
            Attr::Empty => Ok(None),
            Attr::Int(i) => Ok(Some(*i as f64)),
            Attr::Double(f) if f.is_finite() => Ok(Some(*f)),
            Attr::Str(s) => super::number_str(s, key).map(Some),
            other => Err(format!("`{key}` must be a number, got {}", other.display())),
        }
    }

    fn as_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self {
            Attr::Empty => Ok(None),
            Attr::Bool(b) => Ok(Some(*b)),
            Attr::Int(0) => Ok(Some(false)),
            Attr::Int(1) => Ok(Some(true)),
            Attr::Str(s) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Attr::Str(s) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            other => Err(format!(
                "`{key}` must be a boolean, got {}",
                other.display()
            )),
        }
    }
}

type Attrs = Vec<(String, Attr)>;

/// One span, from either encoding.
#[derive(Debug, Default)]
struct SpanData {
    /// Index into [`Export::resources`].
    resource: usize,
    scope: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    start_ns: u64,
    end_ns: u64,
    status_code: i32,
    status_message: String,
    attrs: Attrs,
    /// Message (else type) of the first `exception` event.
    exception: Option<String>,
}

#[derive(Debug, Default)]
struct Export {
    resources: Vec<Attrs>,
    spans: Vec<SpanData>,
}

impl Export {
    fn push_span(&mut self, s: SpanData) -> Result<(), String> {
        if self.spans.len() >= MAX_SPANS {
            return Err(format!("the export has more than {MAX_SPANS} spans"));
        }
        self.spans.push(s);
        Ok(())
    }
}

// ---- public entry points -------------------------------------------------------------------

/// Records of an OTLP/HTTP JSON `ExportTraceServiceRequest`, one per GenAI model-call span.
///
/// Any bad GenAI span rejects the whole export; see [`spans_from_json`] for per-span results.
pub fn from_json(v: &Value) -> Result<Vec<Item>, String> {
    strict(spans_from_json(v)?)
}

/// Records of an OTLP/HTTP protobuf `ExportTraceServiceRequest`, one per GenAI model-call span.
///
/// Any bad GenAI span rejects the whole export; see [`spans_from_protobuf`] for per-span results.
pub fn from_protobuf(bytes: &[u8]) -> Result<Vec<Item>, String> {
    strict(spans_from_protobuf(bytes)?)
}

/// Like [`from_json`], with each GenAI span's result on its own (errors name the span).
pub fn spans_from_json(v: &Value) -> Result<Vec<Result<Item, String>>, String> {
    Ok(export_spans_json(v)?.results)
}

/// Like [`from_protobuf`], with each GenAI span's result on its own (errors name the span).
pub fn spans_from_protobuf(bytes: &[u8]) -> Result<Vec<Result<Item, String>>, String> {
    Ok(export_spans_protobuf(bytes)?.results)
}

/// What an export holds, for an OTLP/HTTP answer: the result of each model-call span, and how
/// many spans are not GenAI spans at all (these are not stored, and are reported to the
/// exporter as rejected in `partial_success`).
#[derive(Debug, Default)]
pub struct ExportSpans {
    pub results: Vec<Result<Item, String>>,
    pub not_genai: usize,
}

/// [`ExportSpans`] of an OTLP/HTTP JSON `ExportTraceServiceRequest`.
pub fn export_spans_json(v: &Value) -> Result<ExportSpans, String> {
    Ok(convert(&export_from_json(v)?))
}

/// [`ExportSpans`] of an OTLP/HTTP protobuf `ExportTraceServiceRequest`.
pub fn export_spans_protobuf(bytes: &[u8]) -> Result<ExportSpans, String> {
    let req = ExportTraceServiceRequest::decode(bytes)
        .map_err(|e| format!("invalid OTLP protobuf trace export: {e}"))?;
    Ok(convert(&export_from_proto(req)?))
}

fn strict(results: Vec<Result<Item, String>>) -> Result<Vec<Item>, String> {
    let mut items = Vec::with_capacity(results.len());
    let mut first_err = None;
    let mut bad = 0usize;
    for r in results {
        match r {
            Ok(i) => items.push(i),
            Err(e) => {
                bad += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        None => Ok(items),
        Some(e) if bad > 1 => Err(format!("{e} (and {} more bad spans)", bad - 1)),
        Some(e) => Err(e),
    }
}

// ---- JSON encoding ---------------------------------------------------------------------------

fn field<'a>(obj: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    obj.get(camel)
        .or_else(|| obj.get(snake))
        .filter(|v| !v.is_null())
}

fn array<'a>(obj: &'a Map<String, Value>, camel: &str, snake: &str) -> Result<&'a [Value], String> {
    match field(obj, camel, snake) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(format!("`{camel}` must be an array, got {}", json_kind(v))),
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    match v {
        Value::Object(o) => Ok(o),
        other => Err(format!(
            "{what} must be an object, got {}",
            json_kind(other)
        )),
    }
}

fn string_field(obj: &Map<String, Value>, camel: &str, snake: &str) -> Result<String, String> {
    match field(obj, camel, snake) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!("`{camel}` must be a string, got {}", json_kind(v))),
    }
}

fn export_from_json(v: &Value) -> Result<Export, String> {
    let root = object(v, "an OTLP trace export")?;
    if !root.contains_key("resourceSpans") && !root.contains_key("resource_spans") {
        return Err("not an OTLP trace export: `resourceSpans` is missing".into());
    }
    let mut out = Export::default();
    for rs in array(root, "resourceSpans", "resource_spans")? {
        let rs = object(rs, "a `resourceSpans` element")?;
        let resource = match field(rs, "resource", "resource") {
            Some(r) => attrs_from_json(
                field(object(r, "`resource`")?, "attributes", "attributes"),
                0,
            )?,
            None => Vec::new(),
        };
        let ri = out.resources.len();
        out.resources.push(resource);
        for (camel, snake) in [
            ("scopeSpans", "scope_spans"),
            (
                "instrumentationLibrarySpans",
                "instrumentation_library_spans",
            ),
        ] {
            for ss in array(rs, camel, snake)? {
                let ss = object(ss, "a `scopeSpans` element")?;
                let scope = match field(ss, "scope", "scope")
                    .or_else(|| field(ss, "instrumentationLibrary", "instrumentation_library"))
                {
                    Some(s) => string_field(object(s, "`scope`")?, "name", "name")?,
                    None => String::new(),
                };
                for s in array(ss, "spans", "spans")? {
                    let span = span_from_json(object(s, "a span")?, ri, &scope)?;
                    out.push_span(span)?;
                }
            }
        }
    }
    Ok(out)
}

fn span_from_json(
    s: &Map<String, Value>,
    resource: usize,
    scope: &str,
) -> Result<SpanData, String> {
    let (status_code, status_message) = match field(s, "status", "status") {
        Some(st) => {
            let st = object(st, "`status`")?;
            (
                enum_json(field(st, "code", "code"), "status.code", status_code_name)?,
                string_field(st, "message", "message")?,
            )
        }
        None => (0, String::new()),
    };
    let mut exception = None;
    for ev in array(s, "events", "events")? {
        let Value::Object(ev) = ev else { continue };
        if ev.get("name").and_then(Value::as_str) == Some("exception") {
            let attrs = attrs_from_json(field(ev, "attributes", "attributes"), 0)?;
            exception = exception_text(&attrs);
            if exception.is_some() {
                break;
            }
        }
    }
    Ok(SpanData {
        resource,
        scope: scope.to_string(),
        trace_id: id_json(field(s, "traceId", "trace_id"), "traceId")?,
        span_id: id_json(field(s, "spanId", "span_id"), "spanId")?,
        parent_span_id: id_json(field(s, "parentSpanId", "parent_span_id"), "parentSpanId")?,
        name: string_field(s, "name", "name")?,
        kind: enum_json(field(s, "kind", "kind"), "kind", span_kind_name)?,
        start_ns: u64_json(
            field(s, "startTimeUnixNano", "start_time_unix_nano"),
            "startTimeUnixNano",
        )?,
        end_ns: u64_json(
            field(s, "endTimeUnixNano", "end_time_unix_nano"),
            "endTimeUnixNano",
        )?,
        status_code,
        status_message,
        attrs: attrs_from_json(field(s, "attributes", "attributes"), 0)?,
        exception,
    })
}

fn span_kind_name(s: &str) -> Option<i32> {
    match s
        .strip_prefix("SPAN_KIND_")
        .unwrap_or(s)
        .to_ascii_uppercase()
        .as_str()
    {
        "UNSPECIFIED" => Some(0),
        "INTERNAL" => Some(1),
        "SERVER" => Some(2),
        "CLIENT" => Some(3),
        "PRODUCER" => Some(4),
        "CONSUMER" => Some(5),
        _ => None,
    }
}

fn status_code_name(s: &str) -> Option<i32> {
    match s
        .strip_prefix("STATUS_CODE_")
        .unwrap_or(s)
        .to_ascii_uppercase()
        .as_str()
    {
        "UNSET" => Some(0),
        "OK" => Some(STATUS_OK),
        "ERROR" => Some(STATUS_ERROR),
        _ => None,
    }
}

/// An enum as its number or its name (unknown names are 0, "unspecified").
fn enum_json(
    v: Option<&Value>,
    key: &str,
    by_name: fn(&str) -> Option<i32>,
) -> Result<i32, String> {
    match v {
        None => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| format!("`{key}` must be an enum number, got {n}")),
        Some(Value::String(s)) => Ok(s
            .trim()
            .parse::<i32>()
            .ok()
            .or_else(|| by_name(s.trim()))
            .unwrap_or(0)),
        Some(v) => Err(format!(
            "`{key}` must be a number or a name, got {}",
            json_kind(v)
        )),
    }
}

/// A fixed64 nanosecond time: a decimal string (the OTLP/JSON rule) or a number.
fn u64_json(v: Option<&Value>, key: &str) -> Result<u64, String> {
    match v {
        None => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| format!("`{key}` must be unsigned nanoseconds, got {n}")),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(0),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("`{key}` must be unsigned nanoseconds, got {s:?}")),
        Some(v) => Err(format!(
            "`{key}` must be a string of nanoseconds, got {}",
            json_kind(v)
        )),
    }
}

/// A trace or span id: hex (OTLP/JSON) or base64 (protobuf-JSON), returned as lowercase hex.
fn id_json(v: Option<&Value>, key: &str) -> Result<String, String> {
    match v {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(normalise_id(s.trim())),
        Some(v) => Err(format!(
            "`{key}` must be a hex string, got {}",
            json_kind(v)
        )),
    }
}

fn normalise_id(s: &str) -> String {
    let is_hex =
        !s.is_empty() && s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex && (s.len() == 32 || s.len() == 16) {
        return s.to_ascii_lowercase();
    }
    if let Some(b) = base64_decode(s).filter(|b| b.len() == 16 || b.len() == 8) {
        return hex::encode(b);
    }
    if is_hex {
        return s.to_ascii_lowercase();
    }
    s.to_string()
}

/// Standard or URL-safe base64, padding optional; `None` when not base64.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    // A single leftover character (6 bits) cannot end valid base64.
    (bits < 6).then_some(out)
}

fn attrs_from_json(v: Option<&Value>, depth: usize) -> Result<Attrs, String> {
    let list = match v {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(format!(
                "`attributes` must be an array, got {}",
                json_kind(v)
            ));
        }
    };
    let mut out = Vec::with_capacity(list.len());
    for kv in list {
        let Value::Object(kv) = kv else {
            return Err(format!(
                "an attribute must be an object, got {}",
                json_kind(kv)
            ));
        };
        let Some(Value::String(key)) = kv.get("key") else {
            continue;
        };
        out.push((key.clone(), any_value_json(kv.get("value"), depth)));
    }
    Ok(out)
}

fn any_value_json(v: Option<&Value>, depth: usize) -> Attr {
    let o = match v {
        None | Some(Value::Null) => return Attr::Empty,
        Some(Value::Object(o)) => o,
        // Not an AnyValue wrapper: take the bare JSON value as it is.
        Some(Value::String(s)) => return Attr::Str(s.clone()),
        Some(Value::Bool(b)) => return Attr::Bool(*b),
        Some(Value::Number(n)) => {
            return n
                .as_i64()
                .map(Attr::Int)
                .unwrap_or_else(|| Attr::Double(n.as_f64().unwrap_or(f64::NAN)));
        }
        Some(Value::Array(_)) => return Attr::Empty,
    };
    if let Some(x) = field(o, "stringValue", "string_value") {
        return match x {
            Value::String(s) => Attr::Str(s.clone()),
            other => Attr::Str(other.to_string()),
        };
    }
    if let Some(x) = field(o, "boolValue", "bool_value") {
        return match x {
            Value::Bool(b) => Attr::Bool(*b),
            Value::String(s) if s == "true" || s == "false" => Attr::Bool(s == "true"),
            other => Attr::Str(super::stringify(other)),
        };
    }
    if let Some(x) = field(o, "intValue", "int_value") {
        return match x {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Attr::Int(i),
                None => Attr::Str(n.to_string()),
            },
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Attr::Int(i),
                Err(_) => Attr::Str(s.clone()),
            },
            other => Attr::Str(other.to_string()),
        };
    }
    if let Some(x) = field(o, "doubleValue", "double_value") {
        return match x {
            Value::Number(n) => n
                .as_f64()
                .map(Attr::Double)
                .unwrap_or_else(|| Attr::Str(n.to_string())),
            // protobuf-JSON writes "NaN", "Infinity" and "-Infinity" as strings.
            Value::String(s) => match s.trim() {
                "Infinity" => Attr::Double(f64::INFINITY),
                "-Infinity" => Attr::Double(f64::NEG_INFINITY),
                t => t
                    .parse::<f64>()
                    .map(Attr::Double)
                    .unwrap_or_else(|_| Attr::Str(s.clone())),
            },
            other => Attr::Str(other.to_string()),
        };
    }
    if let Some(x) = field(o, "arrayValue", "array_value") {
        if depth >= MAX_ATTR_DEPTH {
            return Attr::Empty;
        }
        let values = match x {
            Value::Object(a) => match a.get("values") {
                Some(Value::Array(vs)) => vs.as_slice(),
                _ => &[],
            },
            _ => &[],
        };
        return Attr::Array(
            values
                .iter()
                .map(|v| any_value_json(Some(v), depth + 1))
                .collect(),
        );
    }
    if let Some(x) = field(o, "kvlistValue", "kvlist_value") {
        if depth >= MAX_ATTR_DEPTH {
            return Attr::Empty;
        }
        let values = match x {
            Value::Object(a) => a.get("values"),
            _ => None,
        };
        return match attrs_from_json(values, depth + 1) {
            Ok(kvs) => Attr::Map(kvs),
            Err(_) => Attr::Empty,
        };
    }
    if let Some(x) = field(o, "bytesValue", "bytes_value") {
        return match x {
            Value::String(s) => base64_decode(s)
                .map(Attr::Bytes)
                .unwrap_or_else(|| Attr::Str(s.clone())),
            other => Attr::Str(other.to_string()),
        };
    }
    Attr::Empty
}

// ---- protobuf encoding -----------------------------------------------------------------------

fn export_from_proto(req: ExportTraceServiceRequest) -> Result<Export, String> {
    let mut out = Export::default();
    for rs in req.resource_spans {
        let ri = out.resources.len();
        out.resources.push(
            rs.resource
                .map(|r| attrs_from_proto(r.attributes, 0))
                .unwrap_or_default(),
        );
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| s.name).unwrap_or_default();
            for s in ss.spans {
                let exception = s
                    .events
                    .into_iter()
                    .filter(|e| e.name == "exception")
                    .find_map(|e| exception_text(&attrs_from_proto(e.attributes, 0)));
                let (status_code, status_message) =
                    s.status.map(|st| (st.code, st.message)).unwrap_or_default();
                out.push_span(SpanData {
                    resource: ri,
                    scope: scope.clone(),
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent_span_id: hex::encode(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                    status_code,
                    status_message,
                    attrs: attrs_from_proto(s.attributes, 0),
                    exception,
                })?;
            }
        }
    }
    Ok(out)
}

fn attrs_from_proto(kvs: Vec<KeyValue>, depth: usize) -> Attrs {
    kvs.into_iter()
        .map(|kv| (kv.key, any_value_proto(kv.value, depth)))
        .collect()
}

fn any_value_proto(v: Option<AnyValue>, depth: usize) -> Attr {
    use any_value::Value as V;
    match v.and_then(|v| v.value) {
        None => Attr::Empty,
        Some(V::StringValue(s)) => Attr::Str(s),
        Some(V::BoolValue(b)) => Attr::Bool(b),
        Some(V::IntValue(i)) => Attr::Int(i),
        Some(V::DoubleValue(f)) => Attr::Double(f),
        Some(V::BytesValue(b)) => Attr::Bytes(b),
        Some(V::ArrayValue(_) | V::KvlistValue(_)) if depth >= MAX_ATTR_DEPTH => Attr::Empty,
        Some(V::ArrayValue(a)) => Attr::Array(
            a.values
                .into_iter()
                .map(|v| any_value_proto(Some(v), depth + 1))
                .collect(),
        ),
        Some(V::KvlistValue(l)) => Attr::Map(attrs_from_proto(l.values, depth + 1)),
        // Dictionary references only mean something in profiles.
        Some(V::StringValueStrindex(_)) => Attr::Empty,
    }
}

// ---- span → record ---------------------------------------------------------------------------

fn exception_text(attrs: &Attrs) -> Option<String> {
    ["exception.message", "exception.type"]
        .iter()
        .find_map(|k| {
            attrs
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.text())
                .filter(|s| !s.trim().is_empty())
        })
}

/// A span's attributes by key (first occurrence wins), remembering which ones were used.
struct View<'a> {
    map: HashMap<&'a str, &'a Attr>,
    used: HashSet<&'a str>,
}

impl<'a> View<'a> {
    fn new(attrs: &'a Attrs) -> Self {
        let mut map = HashMap::with_capacity(attrs.len());
        for (k, v) in attrs {
            map.entry(k.as_str()).or_insert(v);
        }
        View {
            map,
            used: HashSet::new(),
        }
    }

    /// The first of `keys` that is present and not empty, without marking it used.
    fn peek(&self, keys: &[&str]) -> Option<(&'a str, &'a Attr)> {
        keys.iter().find_map(|k| {
            self.map
                .get_key_value(*k)
                .filter(|(_, v)| ***v != Attr::Empty)
                .map(|(k, v)| (*k, *v))
        })
    }

    fn take(&mut self, keys: &[&str]) -> Option<(&'a str, &'a Attr)> {
        let hit = self.peek(keys);
        if let Some((k, _)) = hit {
            self.used.insert(k);
        }
        hit
    }

    fn mark(&mut self, key: &str) {
        if let Some((k, _)) = self.map.get_key_value(key) {
            self.used.insert(k);
        }
    }

    fn has(&self, key: &str) -> bool {
        self.peek(&[key]).is_some()
    }

    /// The first of `keys` with non-blank text.
    fn text(&mut self, keys: &[&str]) -> Option<String> {
        for k in keys {
            if let Some((key, v)) = self.peek(&[k])
                && let Some(s) = v.text().filter(|s| !s.trim().is_empty())
            {
                self.used.insert(key);
                return Some(s);
            }
        }
        None
    }

    fn int(&mut self, keys: &[&str]) -> Result<Option<i64>, String> {
        match self.take(keys) {
            Some((k, v)) => v.as_i64(k),
            None => Ok(None),
        }
    }

    fn float(&mut self, keys: &[&str]) -> Result<Option<f64>, String> {
        match self.take(keys) {
            Some((k, v)) => v.as_f64(k),
            None => Ok(None),
        }
    }

    fn boolean(&mut self, keys: &[&str]) -> Result<Option<bool>, String> {
        match self.take(keys) {
            Some((k, v)) => v.as_bool(k),
            None => Ok(None),
        }
    }
}

fn model_of(v: &View<'_>) -> Option<String> {
    [RESPONSE_MODEL, REQUEST_MODEL].iter().find_map(|k| {
        v.peek(&[k])
            .and_then(|(_, a)| a.text())
            .filter(|s| !s.trim().is_empty())
    })
}

/// Span attributes that name the task, most specific first.
const TASK_KEYS: &[&str] = &[
    "switchyard.task",
    "app.task",
    "task",
    "gen_ai.agent.name",
    "traceloop.workflow.name",
];
/// Most ancestors searched for a task label.
const MAX_TASK_WALK: usize = 64;

fn convert(export: &Export) -> ExportSpans {
    let mut views: Vec<View<'_>> = export.spans.iter().map(|s| View::new(&s.attrs)).collect();
    let is_genai = |v: &View<'_>| v.has(REQUEST_MODEL) || v.has(RESPONSE_MODEL) || v.has(OPERATION);
    // (trace id, span id) → index of the span.
    let index: HashMap<(&str, &str), usize> = export
        .spans
        .iter()
        .enumerate()
        .filter(|(_, s)| !s.span_id.is_empty())
        .map(|(i, s)| ((s.trace_id.as_str(), s.span_id.as_str()), i))
        .collect();
    let parent_of = |i: usize| -> Option<usize> {
        let s = export.spans.get(i)?;
        if s.parent_span_id.is_empty() || s.parent_span_id == s.span_id {
            return None;
        }
        index
            .get(&(s.trace_id.as_str(), s.parent_span_id.as_str()))
            .copied()
    };

    // Spans that wrap another model-call span of this export: walk up from every model call.
    let mut wrappers: HashSet<usize> = HashSet::new();
    for (i, v) in views.iter().enumerate() {
        if !is_genai(v) || model_of(v).is_none() {
            continue;
        }
        let mut cur = parent_of(i);
        let mut steps = 0;
        while let Some(p) = cur {
            // Stop where the ancestors are marked already (or at a cycle back to the start).
            if p == i || !wrappers.insert(p) || steps >= MAX_PARENT_WALK {
                break;
            }
            cur = parent_of(p);
            steps += 1;
        }
    }

    let not_genai = views.iter().filter(|v| !is_genai(v)).count();
    let mut out = Vec::new();
    for (i, s) in export.spans.iter().enumerate() {
        let Some(v) = views.get(i) else { continue };
        if !is_genai(v) || wrappers.contains(&i) {
            continue;
        }
        let op = v
            .peek(&[OPERATION])
            .and_then(|(_, a)| a.text())
            .unwrap_or_default();
        if WRAPPER_OPS.contains(&op.as_str()) && s.kind != SPAN_KIND_CLIENT {
            continue;
        }
        if model_of(v).is_none() && !INFERENCE_OPS.contains(&op.as_str()) {
            continue;
        }
        // A span without a task label of its own takes its nearest labelled ancestor's.
        let mut inherited = None;
        let mut cur = parent_of(i);
        let mut steps = 0;
        while let (Some(p), None) = (cur, &inherited) {
            if p == i || steps >= MAX_TASK_WALK {
                break;
            }
            inherited = views.get(p).and_then(|pv| task_of(pv));
            cur = parent_of(p);
            steps += 1;
        }
        let resource = export
            .resources
            .get(s.resource)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let Some(v) = views.get_mut(i) else { continue };
        out.push(
            to_record(s, v, resource, inherited)
                .map(|r| Item::Request(Box::new(r)))
                .map_err(|e| format!("span {}{} ({:?}): {e}", s.trace_id, s.span_id, s.name)),
        );
    }
    ExportSpans {
        results: out,
        not_genai,
    }
}

fn task_of(v: &View<'_>) -> Option<String> {
    TASK_KEYS.iter().find_map(|k| {
        v.peek(&[k])
            .and_then(|(_, a)| a.text())
            .filter(|t| !t.trim().is_empty())
    })
}

fn resource_text(resource: &[(String, Attr)], key: &str) -> Option<String> {
    resource
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.text())
        .filter(|s| !s.trim().is_empty())
}

fn canonical_provider(raw: &str) -> String {
    let p = raw.trim().to_ascii_lowercase();
    match p.as_str() {
        "x_ai" => "xai".into(),
        "mistral_ai" => "mistral".into(),
        "gcp.gemini" | "gcp.gen_ai" => "gemini".into(),
        _ => p,
    }
}

/// Message contents and derivable totals: never copied into metadata.
fn is_dropped(key: &str) -> bool {
    const EXACT: &[&str] = &[
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.retrieval.documents",
        "gen_ai.retrieval.query.text",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.usage.total_tokens",
        "llm.usage.total_tokens",
        "input.value",
        "output.value",
    ];
    const PREFIXES: &[&str] = &[
        "llm.prompts",
        "llm.completions",
        "llm.input_messages",
        "llm.output_messages",
    ];
    if EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p)) {
        return true;
    }
    // Indexed legacy contents: `gen_ai.prompt.0.content`, `gen_ai.completion.1.role`, ...
    for p in ["gen_ai.prompt.", "gen_ai.completion."] {
        if let Some(rest) = key.strip_prefix(p)
            && rest.bytes().next().is_some_and(|b| b.is_ascii_digit())
        {
            return true;
        }
    }
    false
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut i = max;
        while i > 0 && !s.is_char_boundary(i) {
            i -= 1;
        }
        s.truncate(i);
        s.push('…');
    }
    s
}

/// Largest token count the Anthropic conversion adds up (larger ones are rejected by `finish`).
const MAX_TOKENS: i64 = 100_000_000_000;

fn to_record(
    s: &SpanData,
    v: &mut View<'_>,
    resource: &[(String, Attr)],
    inherited_task: Option<String>,
) -> Result<Record, String> {
    let model = v.text(&[RESPONSE_MODEL, REQUEST_MODEL]).unwrap_or_default();
    // The requested model is kept in metadata only when it differs from the served one.
    if v.peek(&[REQUEST_MODEL])
        .and_then(|(_, a)| a.text())
        .as_deref()
        == Some(model.as_str())
    {
        v.mark(REQUEST_MODEL);
    }
    let provider_raw = v.text(&["gen_ai.provider.name", "gen_ai.system"]);
    let provider = provider_raw.as_deref().map(canonical_provider);

    let mut prompt = v.int(&["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"])?;
    let completion = v.int(&[
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.completion_tokens",
    ])?;
    let cached = v.int(&[
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
        "gen_ai.usage.input_tokens.cached",
    ])?;
    let cache_write = v.int(&[
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.input_tokens.cache_write",
    ])?;
    let reasoning = v.int(&[
        "gen_ai.usage.reasoning.output_tokens",
        "gen_ai.usage.reasoning_tokens",
        "gen_ai.usage.output_tokens.reasoning",
    ])?;
    let anthropic =
        provider.as_deref() == Some("anthropic") || model.to_ascii_lowercase().contains("claude");
    if let Some(input) = prompt {
        let (cr, cw) = (cached.unwrap_or(0), cache_write.unwrap_or(0));
        let sane = |n: i64| (0..=MAX_TOKENS).contains(&n);
        if anthropic && sane(input) && sane(cr) && sane(cw) && input < cr + cw {
            prompt = Some(Usage::from_anthropic(input, completion.unwrap_or(0), cr, cw).prompt);
        }
    }

    let finish_reason = finish_reason(v);
    let request_id = v
        .text(&["gen_ai.response.id"])
        .unwrap_or_else(|| format!("{}{}", s.trace_id, s.span_id));
    let ttft_ms = v
        .float(&[
            "gen_ai.response.time_to_first_chunk",
            "gen_ai.server.time_to_first_token",
        ])?
        .map(|secs| secs * 1000.0);
    let streamed = v.boolean(&["gen_ai.request.stream", "llm.is_streaming"])?;

    // Status and error.
    let http_status = match v.take(&["http.response.status_code", "http.status_code"]) {
        Some((k, a)) => a
            .as_i64(k)
            .ok()
            .flatten()
            .and_then(|n| i32::try_from(n).ok()),
        None => None,
    };
    let error_type = v.peek(&["error.type"]).and_then(|(_, a)| a.text());
    let failed = s.status_code == STATUS_ERROR
        || (s.status_code != STATUS_OK && error_type.is_some())
        || http_status.is_some_and(|c| c >= 400);
    let (status, error) = if failed {
        let status = http_status
            .filter(|c| (400..1000).contains(c))
            .unwrap_or(500);
        let msg = Some(s.status_message.trim())
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or_else(|| s.exception.clone())
            .or_else(|| {
                let t = error_type.clone();
                if t.is_some() {
                    v.mark("error.type");
                }
                t
            })
            .unwrap_or_else(|| "span status ERROR".to_string());
        (status, Some(truncate(msg, 4096)))
    } else {
        (200, None)
    };

    let task = v
        .text(TASK_KEYS)
        .or(inherited_task)
        .or_else(|| resource_text(resource, "switchyard.task"));
    let user_id = v.text(&["user.id", "enduser.id"]);
    let app = resource_text(resource, "service.name").filter(|n| !n.starts_with("unknown_service"));
    let cost_usd = match v.take(&["gen_ai.usage.cost", "llm.usage.cost"]) {
        Some((k, a)) => value_decimal(Some(&a.to_json()), k)?,
        None => None,
    };

    let mut metadata = std::collections::BTreeMap::new();
    for (k, a) in &s.attrs {
        if metadata.len() >= MAX_META_KEYS {
            break;
        }
        if k.len() > MAX_META_KEY
            || v.used.contains(k.as_str())
            || is_dropped(k)
            || *a == Attr::Empty
            || metadata.contains_key(k)
        {
            continue;
        }
        metadata.insert(k.clone(), truncate(a.display(), MAX_META_VALUE));
    }
    for (k, val) in [
        ("otel.trace_id", &s.trace_id),
        ("otel.span_id", &s.span_id),
        ("otel.span_name", &s.name),
        ("otel.scope_name", &s.scope),
    ] {
        if !val.is_empty() {
            metadata.insert(k.to_string(), truncate(val.clone(), MAX_META_VALUE));
        }
    }
    for k in ["deployment.environment.name", "deployment.environment"] {
        if let Some(env) = resource_text(resource, k) {
            metadata
                .entry("deployment.environment".to_string())
                .or_insert_with(|| truncate(env, MAX_META_VALUE));
        }
    }

    Ok(Record {
        request_id,
        ts_us: i64::try_from(s.start_ns / 1000).unwrap_or(i64::MAX),
        model,
        provider,
        task,
        gateway: Some("otlp".into()),
        user_id,
        app,
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: cached,
        cache_write_tokens: cache_write,
        reasoning_tokens: reasoning,
        cost_usd,
        latency_ms: (s.start_ns > 0 && s.end_ns >= s.start_ns)
            .then(|| (s.end_ns - s.start_ns) as f64 / 1_000_000.0),
        ttft_ms,
        status: Some(status),
        error,
        finish_reason,
        streamed,
        metadata,
        ..Record::default()
    })
}

fn finish_reason(v: &mut View<'_>) -> Option<String> {
    if let Some((k, a)) = v.peek(&["gen_ai.response.finish_reasons"]) {
        let first = match a {
            Attr::Array(xs) => xs.iter().find_map(Attr::text),
            Attr::Str(s) if s.trim_start().starts_with('[') => {
                match serde_json::from_str::<Value>(s) {
                    Ok(Value::Array(xs)) => xs.first().map(super::stringify),
                    _ => Some(s.clone()),
                }
            }
            other => other.text(),
        }
        .filter(|s| !s.trim().is_empty());
        if first.is_some() {
            v.mark(k);
            return first;
        }
    }
    v.text(&[
        "llm.response.finish_reason",
        "gen_ai.completion.0.finish_reason",
    ])
}
