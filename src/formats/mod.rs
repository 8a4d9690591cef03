//! Log shapes switchyard accepts, each turned into canonical [`Item`]s.
//!
//! A body is NDJSON or a JSON array; each record's shape is detected on its own (`detect`), so
//! one batch may mix canonical records, OpenAI responses, LiteLLM payloads and feedback. OTLP
//! trace exports (JSON or protobuf) carry many spans and yield one record per `gen_ai` span.
//! Adapters only translate; `Record::finish` validates and prices afterwards.

pub mod canonical;
pub mod litellm;
pub mod openai;
pub mod openrouter;
pub mod otlp;

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Map, Value};

use crate::prices::PriceCatalog;
use crate::record::{FeedbackRef, Item, RecordRef};
use crate::schema::{FeedbackColumns, RequestColumns};

/// An input shape, or `Auto` to detect it per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Auto,
    Canonical,
    /// OpenAI-style chat completion responses (also OpenRouter's, with `usage.cost`).
    Openai,
    /// OpenRouter generation stats (`GET /api/v1/generation` `data`), or its completions.
    Openrouter,
    /// LiteLLM `StandardLoggingPayload` or `LiteLLM_SpendLogs` rows.
    Litellm,
    /// OTLP/HTTP trace exports with `gen_ai.*` span attributes.
    Otlp,
    /// Feedback records `{request_id, value, metric?, ts?, source?}`.
    Feedback,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        <Format as clap::ValueEnum>::from_str(s, true)
    }
}

/// The shape of one JSON record, decided from its keys.
pub fn detect(obj: &Map<String, Value>) -> Format {
    if obj.contains_key("resourceSpans") || obj.contains_key("resource_spans") {
        return Format::Otlp;
    }
    // LiteLLM: StandardLoggingPayload has call_type + response_cost; SpendLogs rows have spend
    // + startTime (and api_key hashes).
    if (obj.contains_key("call_type") && obj.contains_key("response_cost"))
        || (obj.contains_key("spend") && obj.contains_key("startTime"))
        || obj.contains_key("model_group") && obj.contains_key("response_cost")
    {
        return Format::Litellm;
    }
    // OpenRouter generation stats: tokens_prompt / native_tokens_prompt / total_cost, bare or
    // in the `{"data": {...}}` answer of `GET /api/v1/generation`.
    let is_generation = |o: &Map<String, Value>| {
        o.contains_key("native_tokens_prompt")
            || (o.contains_key("tokens_prompt") && o.contains_key("total_cost"))
    };
    if is_generation(obj)
        || obj
            .get("data")
            .and_then(Value::as_object)
            .is_some_and(is_generation)
    {
        return Format::Openrouter;
    }
    if obj.contains_key("usage")
        && (obj.contains_key("choices")
            || obj.get("object").and_then(Value::as_str).is_some_and(|o| {
                o.starts_with("chat.completion") || o == "text_completion" || o == "response"
            }))
    {
        return Format::Openai;
    }
    if obj.contains_key("request_id") && obj.contains_key("value") && !obj.contains_key("model") {
        return Format::Feedback;
    }
    Format::Canonical
}

/// Turns one parsed JSON value into items, with `format` forced or detected.
pub fn from_value(v: Value, format: Format, now_us: i64) -> Result<Vec<Item>, String> {
    let Value::Object(obj) = v else {
        return Err(format!("expected a JSON object, got {}", json_kind(&v)));
    };
    let format = match format {
        Format::Auto => detect(&obj),
        f => f,
    };
    match format {
        Format::Auto | Format::Canonical => canonical::record(obj).map(|r| vec![r]),
        Format::Feedback => canonical::feedback(obj, now_us).map(|f| vec![f]),
        Format::Openai => openai::record(obj).map(|r| vec![r]),
        Format::Openrouter => openrouter::record(obj).map(|r| vec![r]),
        Format::Litellm => litellm::record(obj).map(|r| vec![r]),
        Format::Otlp => otlp::from_json(&Value::Object(obj)),
    }
}

/// A parsed body: items with the index of the record they came from, and rejected records.
#[derive(Debug, Default)]
pub struct Parsed {
    pub items: Vec<(usize, Item)>,
    pub rejected: Vec<(usize, String)>,
}

impl Parsed {
    fn push(&mut self, index: usize, r: Result<Vec<Item>, String>) {
        match r {
            Ok(items) => self.items.extend(items.into_iter().map(|i| (index, i))),
            Err(e) => self.rejected.push((index, e)),
        }
    }
}

/// Where the records of a body go: owned items ([`parse_body`]) or Arrow columns
/// ([`parse_columns`]). Records from the fast paths arrive borrowed from the body.
pub trait Sink {
    fn request(&mut self, index: usize, r: RecordRef<'_>);
    fn feedback(&mut self, index: usize, f: FeedbackRef<'_>);
    /// What the general path made of record `index`: items, or why it was rejected.
    fn items(&mut self, index: usize, r: Result<Vec<Item>, String>);
}

impl Sink for Parsed {
    fn request(&mut self, index: usize, r: RecordRef<'_>) {
        self.items
            .push((index, Item::Request(Box::new(r.into_owned()))));
    }
    fn feedback(&mut self, index: usize, f: FeedbackRef<'_>) {
        self.items.push((index, Item::Feedback(f.into_owned())));
    }
    fn items(&mut self, index: usize, r: Result<Vec<Item>, String>) {
        self.push(index, r);
    }
}

/// Parses a body of NDJSON, a JSON array, or one (possibly pretty-printed) JSON document.
///
/// Records are indexed from 0: the line number in NDJSON (blank lines count), the element in an
/// array. A bad record is reported and the rest still parse.
pub fn parse_body(body: &[u8], format: Format, now_us: i64) -> Parsed {
    let mut out = Parsed::default();
    each_record(body, format, now_us, &mut out);
    out
}

/// Validated, priced records of a body, straight in Arrow columns.
pub struct Columns<'p> {
    pub requests: RequestColumns,
    pub feedback: FeedbackColumns,
    /// Rejected records (index, reason), in index order once [`Columns::finish`]ed.
    pub rejected: Vec<(usize, String)>,
    prices: &'p PriceCatalog,
    failure: Option<crate::error::Error>,
}

impl<'p> Columns<'p> {
    /// Empty columns sized for about `records` records.
    pub fn new(records: usize, prices: &'p PriceCatalog) -> Self {
        Columns {
            requests: RequestColumns::with_capacity(records),
            feedback: FeedbackColumns::with_capacity(records / 2),
            rejected: Vec::new(),
            prices,
            failure: None,
        }
    }

    /// The `requests` and `feedback` batches (`None` when empty) and the rejected records.
    pub fn finish(mut self) -> crate::error::Result<ColumnBatches> {
        if let Some(e) = self.failure {
            return Err(e);
        }
        self.rejected.sort_by_key(|r| r.0);
        Ok(ColumnBatches {
            requests: self.requests.finish()?,
            feedback: self.feedback.finish()?,
            rejected: self.rejected,
        })
    }
}

/// The finished [`Columns`] of a body.
pub struct ColumnBatches {
    pub requests: Option<arrow::array::RecordBatch>,
    pub feedback: Option<arrow::array::RecordBatch>,
    pub rejected: Vec<(usize, String)>,
}

impl Sink for Columns<'_> {
    fn request(&mut self, index: usize, mut r: RecordRef<'_>) {
        match r.finish(self.prices) {
            Ok(()) => {
                if let Err(e) = self.requests.append(&r) {
                    self.failure.get_or_insert(e);
                }
            }
            Err(e) => self.rejected.push((index, e)),
        }
    }
    fn feedback(&mut self, index: usize, f: FeedbackRef<'_>) {
        match f.check() {
            Ok(()) => self.feedback.append(&f),
            Err(e) => self.rejected.push((index, e)),
        }
    }
    fn items(&mut self, index: usize, r: Result<Vec<Item>, String>) {
        match r {
            Ok(items) => {
                for item in items {
                    match item {
                        Item::Request(r) => self.request(index, r.into_ref()),
                        Item::Feedback(f) => self.feedback(index, f.as_ref()),
                    }
                }
            }
            Err(e) => self.rejected.push((index, e)),
        }
    }
}

/// Parses a body like [`parse_body`], validating, pricing and appending each record straight
/// into Arrow columns: text is copied once, from the body into the columns.
pub fn parse_columns<'p>(
    body: &[u8],
    format: Format,
    now_us: i64,
    prices: &'p PriceCatalog,
) -> Columns<'p> {
    let lines = memchr::memchr_iter(b'\n', body).count() + 1;
    let mut out = Columns::new(lines, prices);
    each_record(body, format, now_us, &mut out);
    out
}

/// The one walk over a body's records, for every [`Sink`].
pub fn each_record(body: &[u8], format: Format, now_us: i64, sink: &mut impl Sink) {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return;
    };
    if body[start] == b'[' {
        match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(body) {
            Ok(elems) => {
                for (i, raw) in elems.into_iter().enumerate() {
                    record_at(raw.get().as_bytes(), i, format, now_us, sink);
                }
            }
            Err(e) => sink.items(0, Err(format!("invalid JSON array: {e}"))),
        }
        return;
    }
    // One pretty-printed document (an OTLP export, say) is not NDJSON: its first line is not
    // a JSON value of its own, and the whole body is one.
    let rest = &body[start..];
    let first_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    if rest[first_end..].iter().any(|b| !b.is_ascii_whitespace())
        && serde_json::from_slice::<serde::de::IgnoredAny>(&rest[..first_end]).is_err()
        && let Ok(v) = serde_json::from_slice::<Value>(body)
    {
        sink.items(0, from_value(v, format, now_us));
        return;
    }
    let mut from = 0;
    for (i, end) in memchr::memchr_iter(b'\n', body)
        .chain(std::iter::once(body.len()))
        .enumerate()
    {
        let line = trim_ascii(&body[from..end]);
        from = end + 1;
        if !line.is_empty() {
            record_at(line, i, format, now_us, sink);
        }
    }
}

/// One record (an NDJSON line or an array element): the fast paths first, else the general
/// path through a JSON tree.
fn record_at(text: &[u8], index: usize, format: Format, now_us: i64, sink: &mut impl Sink) {
    // A key scan first: a failed typed parse costs an error message, and mixed files
    // alternate requests and feedback.
    if matches!(format, Format::Auto | Format::Canonical)
        && memchr::memmem::find(text, b"\"model\"").is_some()
        && let Some(r) = canonical::fast_record(text)
    {
        return sink.request(index, r);
    }
    if matches!(format, Format::Auto | Format::Feedback)
        && memchr::memmem::find(text, b"\"value\"").is_some()
        && let Some(f) = canonical::fast_feedback(text, now_us)
    {
        return sink.feedback(index, f);
    }
    let r = serde_json::from_slice::<Value>(text)
        .map_err(|e| format!("invalid JSON: {e}"))
        .and_then(|v| from_value(v, format, now_us));
    sink.items(index, r);
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// The JSON kind of a value, for error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---- field helpers shared by the adapters -------------------------------------------------

/// An optional string field; numbers are accepted and printed. Wrong kinds are errors.
pub fn opt_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(v) => Err(format!("`{key}` must be a string, got {}", json_kind(v))),
    }
}

/// Like [`opt_str`], but moves the string out of the object instead of copying it.
pub fn take_str(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(v) => Err(format!("`{key}` must be a string, got {}", json_kind(&v))),
    }
}

/// A required non-empty string field.
pub fn req_str(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match opt_str(obj, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(format!("`{key}` is required")),
    }
}

/// An optional integer field (a whole JSON number or a numeric string).
pub fn opt_i64(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    value_i64(obj.get(key), key)
}

pub fn value_i64(v: Option<&Value>, key: &str) -> Result<Option<i64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15) {
                Ok(Some(f as i64))
            } else {
                Err(format!("`{key}` must be a whole number, got {n}"))
            }
        }
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("`{key}` must be a whole number, got {s:?}")),
        Some(v) => Err(format!("`{key}` must be a number, got {}", json_kind(v))),
    }
}

/// An optional float field (a JSON number or a numeric string).
pub fn opt_f64(obj: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    value_f64(obj.get(key), key)
}

pub fn value_f64(v: Option<&Value>, key: &str) -> Result<Option<f64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be a number")),
        Some(Value::String(s)) => number_str(s, key).map(Some),
        Some(v) => Err(format!("`{key}` must be a number, got {}", json_kind(v))),
    }
}

/// A finite number written as a string (`" 12.5 "`).
pub fn number_str(s: &str, key: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or_else(|| format!("`{key}` must be a number, got {s:?}"))
}

/// An optional integer field that must fit in 32 bits.
pub fn opt_i32(obj: &Map<String, Value>, key: &str) -> Result<Option<i32>, String> {
    opt_i64(obj, key)?
        .map(|v| i32::try_from(v).map_err(|_| format!("`{key}` is out of range: {v}")))
        .transpose()
}

/// An optional boolean field (also `"true"`/`"false"`).
pub fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
        Some(v) => Err(format!("`{key}` must be a boolean, got {}", json_kind(v))),
    }
}

/// An exact decimal amount of money: the JSON number's own digits, never through `f64`.
pub fn value_decimal(v: Option<&Value>, key: &str) -> Result<Option<Decimal>, String> {
    let parse = |s: &str| {
        Decimal::from_str_exact(s)
            .or_else(|_| Decimal::from_scientific(s))
            .map_err(|_| format!("`{key}` must be a decimal amount, got {s:?}"))
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => parse(&n.to_string()).map(Some),
        Some(Value::String(s)) => parse(s.trim()).map(Some),
        Some(v) => Err(format!("`{key}` must be a number, got {}", json_kind(v))),
    }
}

/// A timestamp: RFC 3339 (or `YYYY-MM-DD HH:MM:SS[.f]` taken as UTC), or epoch milliseconds;
/// returns microseconds since the epoch.
pub fn value_ts_ms(v: Option<&Value>, key: &str) -> Result<Option<i64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let f = n
                .as_f64()
                .ok_or_else(|| format!("`{key}` must be epoch milliseconds"))?;
            Ok(Some((f * 1000.0).round() as i64))
        }
        Some(Value::String(s)) => parse_ts_str(s).map(Some).ok_or_else(|| {
            format!("`{key}` must be an RFC 3339 timestamp or epoch milliseconds, got {s:?}")
        }),
        Some(v) => Err(format!("`{key}` must be a timestamp, got {}", json_kind(v))),
    }
}

/// Epoch seconds (integer or fractional) → microseconds.
pub fn value_ts_secs(v: Option<&Value>, key: &str) -> Result<Option<i64>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let f = n
                .as_f64()
                .ok_or_else(|| format!("`{key}` must be epoch seconds"))?;
            Ok(Some((f * 1_000_000.0).round() as i64))
        }
        Some(Value::String(s)) => parse_ts_str(s)
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be a timestamp, got {s:?}")),
        Some(v) => Err(format!("`{key}` must be a timestamp, got {}", json_kind(v))),
    }
}

/// RFC 3339, or a naive `YYYY-MM-DD[T ]HH:MM:SS[.f]` taken as UTC → microseconds.
pub fn parse_ts_str(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// String-valued custom properties: strings as they are, other scalars printed, nested values
/// as compact JSON.
pub fn stringify(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
