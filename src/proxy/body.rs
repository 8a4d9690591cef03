//! JSON bodies on the proxy's hot path, read without building a tree: a body's top-level
//! fields are borrowed as raw JSON text, the few the proxy needs are decoded, and a body is
//! written back with one field replaced or added while every other field keeps its exact text.
//! Also the `usage` object of an answer, and the cost the proxy adds to it.

use std::borrow::Cow;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::record::Usage;

/// A top-level JSON object key, borrowed from the body unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The top-level fields of a JSON object, in order, each value as its raw JSON text.
pub struct Fields<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((k, raw)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    v.push((k.0, raw));
                }
                Ok(Fields(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Fields<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Fields<'a>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Writes the object back; `set` replaces (or appends) fields by name with raw JSON text,
    /// `drop` leaves fields out.
    pub fn write(&self, set: &[(&str, &str)], drop: &[&str], out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        let mut sep = |out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
        };
        for (k, v) in &self.0 {
            if drop.contains(&k.as_ref()) {
                continue;
            }
            sep(out);
            write_key(out, k);
            match set.iter().find(|(name, _)| name == k) {
                Some((_, raw)) => out.extend_from_slice(raw.as_bytes()),
                None => out.extend_from_slice(v.get().as_bytes()),
            }
        }
        for (name, raw) in set {
            if !self.0.iter().any(|(k, _)| k == name) {
                sep(out);
                write_key(out, name);
                out.extend_from_slice(raw.as_bytes());
            }
        }
        out.push(b'}');
    }
}

fn write_key(out: &mut Vec<u8>, k: &str) {
    // Writing a `str` to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, k);
    out.push(b':');
}

/// A string as JSON text.
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    task: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// What the proxy reads from a request body.
#[derive(Debug, Default)]
pub struct RequestHead {
    pub model: Option<String>,
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub client_usage: bool,
    pub task: Option<String>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// Bytes of the prompt text (`messages` or `input`), for estimates.
    pub prompt_bytes: usize,
}

/// Why a request body is unusable, in the words the client sees.
pub struct BadBody {
    pub message: String,
    pub param: Option<&'static str>,
}

impl RequestHead {
    pub fn read(f: &Fields<'_>) -> Result<RequestHead, BadBody> {
        let bad = |param: &'static str, what: &str| BadBody {
            message: format!("`{param}` {what}"),
            param: Some(param),
        };
        let mut h = RequestHead::default();
        for (k, v) in &f.0 {
            let raw = v.get();
            match k.as_ref() {
                "model" => {
                    h.model = Some(
                        serde_json::from_str::<String>(raw)
                            .map_err(|_| bad("model", "must be a string"))?,
                    );
                }
                "stream" => {
                    h.stream = serde_json::from_str::<Option<bool>>(raw)
                        .map_err(|_| bad("stream", "must be a boolean"))?
                        .unwrap_or(false);
                }
                "stream_options" => {
                    h.client_usage = serde_json::from_str::<Option<StreamOptions>>(raw)
                        .map_err(|_| bad("stream_options", "must be an object"))?
                        .and_then(|o| o.include_usage)
                        .unwrap_or(false);
                }
                "metadata" => {
                    // Metadata of another shape is the upstream's business, not a routing hint.
                    if let Ok(Some(m)) = serde_json::from_str::<Option<Metadata<'_>>>(raw) {
                        h.task = m.task.map(Cow::into_owned);
                    }
                }
                "max_completion_tokens" => {
                    h.max_tokens = serde_json::from_str::<Option<u64>>(raw).map_err(|_| {
                        bad("max_completion_tokens", "must be a non-negative integer")
                    })?;
                }
                "max_tokens" => {
                    let m = serde_json::from_str::<Option<u64>>(raw)
                        .map_err(|_| bad("max_tokens", "must be a non-negative integer"))?;
                    h.max_tokens = h.max_tokens.or(m);
                }
                "messages" | "input" | "prompt" => h.prompt_bytes += raw.len(),
                _ => {}
            }
        }
        Ok(h)
    }
}

/// Rough token count of text: about four bytes a token.
pub fn estimate_tokens(bytes: usize) -> i64 {
    bytes.div_ceil(4) as i64
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    cached_tokens: Option<i64>,
    cache_write_tokens: Option<i64>,
}

#[derive(Deserialize, Default)]
struct CompletionDetails {
    reasoning_tokens: Option<i64>,
}

/// The `usage` object of an answer or of a stream's usage chunk.
#[derive(Deserialize, Default)]
pub struct WireUsage {
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    prompt_tokens_details: Option<PromptDetails>,
    completion_tokens_details: Option<CompletionDetails>,
    /// OpenRouter's own cost, USD.
    #[serde(default, deserialize_with = "decimal_any")]
    pub cost: Option<Decimal>,
}

impl WireUsage {
    pub fn parse(raw: &RawValue) -> Option<WireUsage> {
        serde_json::from_str::<Option<WireUsage>>(raw.get())
            .ok()
            .flatten()
    }

    pub fn usage(&self) -> Usage {
        let p = self.prompt_tokens_details.as_ref();
        Usage {
            prompt: self.prompt_tokens.unwrap_or(0),
            completion: self.completion_tokens.unwrap_or(0),
            cached: p.and_then(|p| p.cached_tokens).unwrap_or(0),
            cache_write: p.and_then(|p| p.cache_write_tokens).unwrap_or(0),
            reasoning: self
                .completion_tokens_details
                .as_ref()
                .and_then(|c| c.reasoning_tokens)
                .unwrap_or(0),
        }
    }
}

fn decimal_any<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    let s = match &v {
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        _ => return Ok(None),
    };
    Ok(Decimal::from_scientific(&s)
        .or_else(|_| s.parse::<Decimal>())
        .ok()
        .filter(|c| !c.is_sign_negative()))
}

/// The `usage` object with `cost` (USD) added, as JSON text; an upstream's own cost is kept.
pub fn usage_with_cost(raw: &RawValue, cost: Decimal) -> Option<String> {
    let f: Fields<'_> = serde_json::from_str(raw.get()).ok()?;
    if f.get("cost").is_some() {
        return Some(raw.get().to_string());
    }
    let mut out = Vec::with_capacity(raw.get().len() + 32);
    let c = cost.normalize().to_string();
    f.write(&[("cost", &c)], &[], &mut out);
    String::from_utf8(out).ok()
}

#[derive(Deserialize)]
struct ChoiceHead<'a> {
    #[serde(borrow)]
    finish_reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    delta: Option<DeltaHead<'a>>,
}

#[derive(Deserialize)]
struct DeltaHead<'a> {
    #[serde(borrow)]
    content: Option<Cow<'a, str>>,
}

/// What the proxy reads from a stream chunk's `choices`: content bytes and a finish reason.
#[derive(Default)]
pub struct ChoicesSummary {
    pub count: usize,
    pub content_bytes: usize,
    pub finish_reason: Option<String>,
}

pub fn summarize_choices(raw: Option<&RawValue>) -> ChoicesSummary {
    let mut s = ChoicesSummary::default();
    let Some(raw) = raw else { return s };
    if let Ok(choices) = serde_json::from_str::<Vec<ChoiceHead<'_>>>(raw.get()) {
        s.count = choices.len();
        for c in choices {
            if let Some(d) = c.delta
                && let Some(t) = d.content
            {
                s.content_bytes += t.len();
            }
            if let Some(r) = c.finish_reason {
                s.finish_reason = Some(r.into_owned());
            }
        }
    }
    s
}

/// An OpenAI error body.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: ErrorInner<'a>,
}

#[derive(Serialize)]
pub struct ErrorInner<'a> {
    pub message: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub param: Option<&'a str>,
    pub code: Option<&'a str>,
}

/// The `error.message` of an upstream's error body, if it has the OpenAI shape.
pub fn upstream_error_message(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct E {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        message: Option<String>,
    }
    serde_json::from_slice::<E>(body).ok()?.error.message
}
