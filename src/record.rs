//! The canonical request and feedback records every log shape is turned into, and the one
//! validation step (`Record::finish`) that fills defaults, checks invariants and prices the
//! request from the catalog when the source did not report a cost.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;

use crate::prices::PriceCatalog;

/// Where a record's `cost_usd` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CostSource {
    /// The gateway reported the cost itself.
    Reported,
    /// Computed from token counts and the price catalog.
    Catalog,
    /// No reported cost and no catalog price: `cost_usd` is NULL, never a silent 0.
    Unknown,
}

impl CostSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::Reported => "reported",
            CostSource::Catalog => "catalog",
            CostSource::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reported" => Some(CostSource::Reported),
            "catalog" => Some(CostSource::Catalog),
            "unknown" => Some(CostSource::Unknown),
            _ => None,
        }
    }
}

impl fmt::Display for CostSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request attempt, in the canonical shape (see SPEC: "The canonical request record").
///
/// Token counts follow the OpenAI convention: `cached_tokens` and `cache_write_tokens` are part
/// of `prompt_tokens`, `reasoning_tokens` part of `completion_tokens`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    pub request_id: String,
    /// Request start, UTC microseconds since the epoch.
    pub ts_us: i64,
    pub model: String,
    pub provider: Option<String>,
    pub task: Option<String>,
    pub gateway: Option<String>,
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub team_id: Option<String>,
    pub app: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub cached_tokens: Option<i64>,
    pub cache_write_tokens: Option<i64>,
    pub reasoning_tokens: Option<i64>,
    pub cost_usd: Option<Decimal>,
    pub cost_source: Option<CostSource>,
    pub latency_ms: Option<f64>,
    pub ttft_ms: Option<f64>,
    pub status: Option<i32>,
    pub error: Option<String>,
    pub finish_reason: Option<String>,
    pub streamed: Option<bool>,
    pub attempt: Option<i32>,
    pub parent_id: Option<String>,
    pub policy_version: Option<String>,
    pub route: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// A quality (or other metric) judgement of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub request_id: String,
    /// When the judgement was made, UTC microseconds; ingest time when the source gave none.
    pub ts_us: i64,
    pub metric: String,
    pub value: f64,
    pub source: Option<String>,
}

/// What one input line (or one OTLP span) turns into.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Request(Box<Record>),
    Feedback(Feedback),
}

/// Money and timestamps must be sane; this bounds `ts` to years 1990..2200.
const MIN_TS_US: i64 = 631_152_000_000_000;
const MAX_TS_US: i64 = 7_258_118_400_000_000;
/// Decimal places kept for `cost_usd` (the Parquet column is DECIMAL(18, 12)).
pub const COST_SCALE: u32 = 12;

/// Largest cost one attempt may carry, in USD, however the cost was obtained (reported by the
/// source or priced from the catalog): 999 999.999999 USD, below the 999 999.999999999999 that
/// `DECIMAL(18, 12)` holds. A larger cost is an input or catalog error, never spend.
pub fn max_cost_usd() -> Decimal {
    Decimal::new(999_999_999_999, 6)
}

/// Rounds a cost to the stored scale and checks it against [`max_cost_usd`]; the error names
/// the field, the value, how it was obtained and the limit.
pub fn bound_cost(c: Decimal, source: CostSource) -> Result<Decimal, String> {
    if c.is_sign_negative() && !c.is_zero() {
        return Err(format!("`cost_usd` must be >= 0, got {c}"));
    }
    let c = c.round_dp(COST_SCALE);
    let limit = max_cost_usd();
    if c > limit {
        return Err(format!(
            "`cost_usd` ({source}) is {c}, above the limit of {limit} USD per request"
        ));
    }
    Ok(c)
}

fn check_text(field: &str, v: &Option<String>) -> Result<(), String> {
    if let Some(s) = v
        && s.len() > 4096
    {
        return Err(format!("`{field}` is longer than 4096 bytes"));
    }
    Ok(())
}

fn check_count(field: &str, v: Option<i64>) -> Result<(), String> {
    match v {
        Some(n) if n < 0 => Err(format!("`{field}` must be >= 0, got {n}")),
        Some(n) if n > 100_000_000_000 => Err(format!("`{field}` is implausibly large: {n}")),
        _ => Ok(()),
    }
}

fn check_ms(field: &str, v: Option<f64>) -> Result<(), String> {
    match v {
        Some(x) if !x.is_finite() || x < 0.0 => {
            Err(format!("`{field}` must be a finite number >= 0, got {x}"))
        }
        _ => Ok(()),
    }
}

impl Record {
    /// Validates the record, fills defaults (`task`, `provider`, `status`) and prices it.
    ///
    /// The error names the offending field; the record is then rejected as a whole.
    pub fn finish(mut self, prices: &PriceCatalog) -> Result<Record, String> {
        if self.request_id.trim().is_empty() {
            return Err("`request_id` is required and must be a non-empty string".into());
        }
        if self.request_id.len() > 512 {
            return Err("`request_id` is longer than 512 bytes".into());
        }
        if self.model.trim().is_empty() {
            return Err("`model` is required and must be a non-empty string".into());
        }
        if !(MIN_TS_US..MAX_TS_US).contains(&self.ts_us) {
            return Err(format!(
                "`ts` is out of range (years 1990 to 2199): {} µs since the epoch",
                self.ts_us
            ));
        }
        if self.model.len() > 4096 {
            return Err("`model` is longer than 4096 bytes".into());
        }
        for (f, v) in [
            ("provider", &self.provider),
            ("task", &self.task),
            ("gateway", &self.gateway),
            ("key_id", &self.key_id),
            ("user_id", &self.user_id),
            ("team_id", &self.team_id),
            ("app", &self.app),
            ("finish_reason", &self.finish_reason),
            ("parent_id", &self.parent_id),
            ("policy_version", &self.policy_version),
            ("route", &self.route),
        ] {
            check_text(f, v)?;
        }
        for (f, v) in [
            ("prompt_tokens", self.prompt_tokens),
            ("completion_tokens", self.completion_tokens),
            ("cached_tokens", self.cached_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("reasoning_tokens", self.reasoning_tokens),
        ] {
            check_count(f, v)?;
        }
        let prompt = self.prompt_tokens.unwrap_or(0);
        let cached = self.cached_tokens.unwrap_or(0) + self.cache_write_tokens.unwrap_or(0);
        if self.prompt_tokens.is_some() && cached > prompt {
            return Err(format!(
                "`cached_tokens` + `cache_write_tokens` ({cached}) exceed `prompt_tokens` ({prompt})"
            ));
        }
        if let (Some(c), Some(r)) = (self.completion_tokens, self.reasoning_tokens)
            && r > c
        {
            return Err(format!(
                "`reasoning_tokens` ({r}) exceed `completion_tokens` ({c})"
            ));
        }
        check_ms("latency_ms", self.latency_ms)?;
        check_ms("ttft_ms", self.ttft_ms)?;
        if let Some(s) = self.status
            && !(0..1000).contains(&s)
        {
            return Err(format!("`status` must be an HTTP status code, got {s}"));
        }
        if let Some(a) = self.attempt
            && a < 0
        {
            return Err(format!("`attempt` must be >= 0, got {a}"));
        }
        if self.task.as_deref().is_none_or(|t| t.trim().is_empty()) {
            self.task = Some("default".into());
        }
        if self.status.is_none() {
            self.status = Some(if self.error.is_some() { 500 } else { 200 });
        }
        if self.provider.is_none() {
            self.provider = prices.provider_of(&self.model);
        }
        match self.cost_usd {
            Some(c) => {
                self.cost_usd = Some(bound_cost(c, CostSource::Reported)?);
                self.cost_source = Some(CostSource::Reported);
            }
            None => match prices.cost(&self.model, &self.usage()) {
                Some(c) => {
                    self.cost_usd = Some(bound_cost(c, CostSource::Catalog)?);
                    self.cost_source = Some(CostSource::Catalog);
                }
                None => self.cost_source = Some(CostSource::Unknown),
            },
        }
        Ok(self)
    }

    /// The token counts of this record, zero where absent.
    pub fn usage(&self) -> Usage {
        Usage {
            prompt: self.prompt_tokens.unwrap_or(0),
            completion: self.completion_tokens.unwrap_or(0),
            cached: self.cached_tokens.unwrap_or(0),
            cache_write: self.cache_write_tokens.unwrap_or(0),
            reasoning: self.reasoning_tokens.unwrap_or(0),
        }
    }
}

impl Feedback {
    /// Validates a feedback record: `quality` values must lie in [0, 1].
    pub fn finish(self) -> Result<Feedback, String> {
        if self.request_id.trim().is_empty() {
            return Err("`request_id` is required and must be a non-empty string".into());
        }
        if self.metric.trim().is_empty() {
            return Err("`metric` must be a non-empty string".into());
        }
        if !self.value.is_finite() {
            return Err("`value` must be a finite number".into());
        }
        if self.metric == "quality" && !(0.0..=1.0).contains(&self.value) {
            return Err(format!(
                "`value` of a quality feedback must lie in [0, 1], got {}",
                self.value
            ));
        }
        if !(MIN_TS_US..MAX_TS_US).contains(&self.ts_us) {
            return Err(format!("`ts` is out of range: {} µs", self.ts_us));
        }
        Ok(self)
    }
}

/// Token counts in the OpenAI convention (cached ⊂ prompt, reasoning ⊂ completion).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: i64,
    pub completion: i64,
    pub cached: i64,
    pub cache_write: i64,
    pub reasoning: i64,
}

impl Usage {
    /// Converts Anthropic-style counts, where `input_tokens` excludes cache reads and writes,
    /// to the OpenAI convention used by the canonical record.
    pub fn from_anthropic(input: i64, output: i64, cache_read: i64, cache_write: i64) -> Usage {
        Usage {
            prompt: input + cache_read + cache_write,
            completion: output,
            cached: cache_read,
            cache_write,
            reasoning: 0,
        }
    }
}
