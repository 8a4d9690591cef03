//! `POST /v1/chat/completions` of the mock: reads only what it needs from the body (model,
//! message text, token limits, stream options, task), decides the answer (length, usage,
//! quality, cost), then answers at once or after the profile's latency, or hands the answer to
//! `stream.rs`.
//!
//! Prompt tokens ≈ characters of the messages / 4; prompts of at least 1,024 tokens have half
//! their tokens (in units of 128) read from the cache, as OpenAI's automatic prefix caching
//! would. The answer has `max_completion_tokens` / `max_tokens` tokens (capped at
//! [`MAX_COMPLETION_TOKENS`]), else the profile's length; `finish_reason` is `length` when the
//! limit cut it shorter than the profile's length.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::behaviour::{Effective, ModelState};
use super::profile::MAX_COMPLETION_TOKENS;
use super::{Mock, error_response, stream};
use crate::prices::ModelPrice;
use crate::record::Usage;

/// The header naming the request's task.
pub const TASK_HEADER: &str = "x-switchyard-task";
/// Prompt tokens from which part of the prompt is a cache hit.
const CACHE_MIN_TOKENS: u64 = 1024;
const CACHE_UNIT: u64 = 128;

/// Words the mock answers with: ASCII, nothing JSON needs to escape.
const WORDS: [&str; 16] = [
    "the", "route", "holds", "quality", "at", "lower", "cost", "while", "each", "model", "answers",
    "within", "its", "budget", "and", "logs",
];

/// The answer text, built once: token `i` is `buf[ends[i-1]..ends[i]]`.
pub struct Text {
    buf: String,
    ends: Vec<usize>,
}

impl Text {
    pub fn build() -> Text {
        let mut buf = String::with_capacity(MAX_COMPLETION_TOKENS as usize * 8);
        let mut ends = Vec::with_capacity(MAX_COMPLETION_TOKENS as usize);
        for i in 0..MAX_COMPLETION_TOKENS as usize {
            if i > 0 {
                buf.push(' ');
            }
            buf.push_str(WORDS[(i * 7 + 3) % WORDS.len()]);
            ends.push(buf.len());
        }
        Text { buf, ends }
    }

    /// The first `n` tokens.
    pub fn prefix(&self, n: usize) -> &str {
        match n {
            0 => "",
            n => &self.buf[..self.ends[n.min(self.ends.len()) - 1]],
        }
    }

    /// Token `i` (0-based).
    pub fn token(&self, i: usize) -> &str {
        let i = i.min(self.ends.len() - 1);
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.buf[start..self.ends[i]]
    }
}

#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    messages: Vec<Message<'a>>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(borrow)]
    metadata: Option<Metadata<'a>>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Part<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct Metadata<'a> {
    #[serde(borrow)]
    task: Option<Cow<'a, str>>,
}

/// Characters of a message's content: a string, or an array of parts with `text`.
fn content_chars(raw: &RawValue) -> usize {
    let s = raw.get();
    if s.starts_with('"') {
        serde_json::from_str::<Cow<'_, str>>(s).map_or(s.len(), |t| t.chars().count())
    } else if s.starts_with('[') {
        serde_json::from_str::<Vec<Part<'_>>>(s).map_or(0, |parts| {
            parts
                .iter()
                .filter_map(|p| p.text.as_ref())
                .map(|t| t.chars().count())
                .sum()
        })
    } else {
        0
    }
}

/// Prompt tokens of `chars` characters.
pub fn tokens_of_chars(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// Cached tokens of a prompt of `prompt` tokens.
fn cached_of(prompt: u64) -> u64 {
    if prompt < CACHE_MIN_TOKENS {
        0
    } else {
        prompt / 2 / CACHE_UNIT * CACHE_UNIT
    }
}

/// Everything the answer needs, decided before the first byte is sent.
pub struct Plan {
    pub model: Arc<ModelState>,
    pub fx: Effective,
    pub id: String,
    pub created: u64,
    pub prompt: u64,
    pub cached: u64,
    pub completion: u64,
    pub reasoning: u64,
    pub finish: &'static str,
    pub quality: f64,
    pub include_usage: bool,
}

impl Plan {
    /// Visible (non-reasoning) tokens of the answer.
    pub fn visible(&self) -> usize {
        (self.completion - self.reasoning) as usize
    }

    /// The `usage` object, or `None` when switched off.
    pub fn usage(&self) -> Option<UsageOut> {
        self.fx.usage.then(|| UsageOut {
            prompt_tokens: self.prompt,
            completion_tokens: self.completion,
            total_tokens: self.prompt + self.completion,
            prompt_tokens_details: PromptDetails {
                cached_tokens: self.cached,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: self.reasoning,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
            cost: self.cost(),
        })
    }

    fn cost(&self) -> Option<Box<RawValue>> {
        let u = Usage {
            prompt: self.prompt as i64,
            completion: self.completion as i64,
            cached: self.cached as i64,
            cache_write: 0,
            reasoning: self.reasoning as i64,
        };
        reported_cost(self.fx.report_cost, self.model.price.as_deref(), &u)
    }

    /// Time to the first token.
    pub fn ttft(&self) -> Duration {
        Duration::from_millis(self.fx.ttft_ms)
    }

    /// Time between two tokens of a stream (zero = unpaced).
    pub fn token_gap(&self) -> Duration {
        if self.fx.tokens_per_s > 0.0 {
            Duration::from_secs_f64(1.0 / self.fx.tokens_per_s)
        } else {
            Duration::ZERO
        }
    }

    /// Total time of a non-streamed answer.
    fn latency(&self) -> Duration {
        match self.fx.latency_ms {
            Some(ms) => Duration::from_millis(ms),
            None => self.ttft() + self.token_gap() * self.visible() as u32,
        }
    }
}

#[derive(Serialize)]
pub struct UsageOut {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptDetails,
    pub completion_tokens_details: CompletionDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Box<RawValue>>,
}

#[derive(Serialize)]
pub struct PromptDetails {
    pub cached_tokens: u64,
    pub audio_tokens: u64,
}

#[derive(Serialize)]
pub struct CompletionDetails {
    pub reasoning_tokens: u64,
    pub audio_tokens: u64,
    pub accepted_prediction_tokens: u64,
    pub rejected_prediction_tokens: u64,
}

/// OpenRouter-style `usage.cost`: the exact catalog cost as a JSON number, when `report_cost`
/// is on and the model has a price.
pub fn reported_cost(on: bool, price: Option<&ModelPrice>, u: &Usage) -> Option<Box<RawValue>> {
    if !on {
        return None;
    }
    RawValue::from_string(price?.cost(u).normalize().to_string()).ok()
}

/// The non-standard field carrying the simulated answer quality.
#[derive(Serialize)]
pub struct MockInfo<'a> {
    pub quality: f64,
    pub task: &'a str,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: [Choice<'a>; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageOut>,
    switchyard_mock: MockInfo<'a>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AnswerMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AnswerMessage<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<()>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The request's task: header, else `metadata.task`, else `default`.
pub fn task_of<'a>(headers: &'a HeaderMap, metadata_task: Option<&'a str>) -> &'a str {
    headers
        .get(TASK_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
        .or(metadata_task.filter(|t| !t.is_empty()))
        .unwrap_or("default")
}

/// Starts a request for the model named in the body: counts it and decides its behaviour,
/// or gives the answer that ends it here (no model, a switched status, a drawn error).
pub fn begin(
    m: &Mock,
    name: Option<&str>,
) -> Result<(Arc<ModelState>, Effective, u64), Box<Response>> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        let r = error_response(StatusCode::BAD_REQUEST, "`model` is required");
        return Err(Box::new(r));
    };
    let model =
        m.0.registry
            .model(name)
            .map_err(|e| Box::new(error_response(StatusCode::BAD_REQUEST, &e.to_string())))?;
    let fx = model.begin();
    let n = m.next();
    match forced_error(m, n, &fx) {
        Some(r) => Err(Box::new(r)),
        None => Ok((model, fx, n)),
    }
}

/// The answer a switched status or a drawn error gives, if any.
fn forced_error(m: &Mock, n: u64, fx: &Effective) -> Option<Response> {
    if let Some(s) = fx.status {
        let status = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Some(error_response(
            status,
            &format!("mock upstream answers {s} for this model"),
        ));
    }
    if fx.error_rate > 0.0 && m.draw(n) < fx.error_rate {
        return Some(error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "mock upstream: simulated server error",
        ));
    }
    None
}

pub async fn completions(State(m): State<Mock>, headers: HeaderMap, body: Bytes) -> Response {
    let req: ChatRequest<'_> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
    };
    let (model, fx, n) = match begin(&m, req.model.as_deref()) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let task = task_of(
        &headers,
        req.metadata.as_ref().and_then(|md| md.task.as_deref()),
    );
    let chars: usize = req
        .messages
        .iter()
        .filter_map(|msg| msg.content)
        .map(content_chars)
        .sum();
    let prompt = tokens_of_chars(chars);
    let p = &model.profile;
    let limit = req.max_completion_tokens.or(req.max_tokens);
    let completion = u64::from(
        limit
            .unwrap_or(p.output_tokens)
            .clamp(1, MAX_COMPLETION_TOKENS),
    );
    let finish = match limit {
        Some(l) if l < p.output_tokens => "length",
        _ => "stop",
    };
    let reasoning = ((completion as f64 * p.reasoning_share).floor() as u64).min(completion - 1);
    let quality = p.quality_on(&model.name, task, m.0.seed);
    let plan = Plan {
        id: format!("chatcmpl-mock{n:012x}"),
        created: unix_now(),
        prompt,
        cached: cached_of(prompt),
        completion,
        reasoning,
        finish,
        quality,
        include_usage: req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        fx,
        model,
    };
    if req.stream.unwrap_or(false) {
        return stream::respond(m.clone(), plan, task.to_string());
    }
    let wait = plan.latency();
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let body = Completion {
        id: &plan.id,
        object: "chat.completion",
        created: plan.created,
        model: &plan.model.name,
        system_fingerprint: "fp_mock",
        choices: [Choice {
            index: 0,
            message: AnswerMessage {
                role: "assistant",
                content: m.0.text.prefix(plan.visible()),
                refusal: None,
            },
            logprobs: None,
            finish_reason: plan.finish,
        }],
        usage: plan.usage(),
        switchyard_mock: MockInfo {
            quality: plan.quality,
            task,
        },
    };
    match serde_json::to_vec(&body) {
        Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
