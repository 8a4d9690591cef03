//! The canonical request and feedback records every log shape is turned into, and the one
//! validation step (`Record::finish`) that fills defaults, checks invariants and prices the
//! request from the catalog when the source did not report a cost.

pub mod fields;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;

use crate::prices::PriceCatalog;
use fields::Kind;

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

/// The canonical request record's fields, in column order, each once: its Rust name, its
/// JSON key (also the column name) and its kind (`record::fields`), which carries its Arrow
/// type, its parsing from JSON and its bounds. The record types below, the table schema, both
/// parsers of the canonical shape, the column builders and the read-back of stored rows are
/// all derived from this list (`request_fields!(then)` hands it to the macro `then`).
/// `metadata` (a string map) follows as the last column.
///
/// Token counts follow the OpenAI convention: `cached_tokens` and `cache_write_tokens` are part
/// of `prompt_tokens`, `reasoning_tokens` part of `completion_tokens`.
macro_rules! request_fields {
    ($then:ident) => {
        $then! {
            request_id "request_id" Id,
            /// Request start, UTC microseconds since the epoch.
            ts_us "ts" Ts,
            model "model" Name,
            provider "provider" Label,
            task "task" Task,
            gateway "gateway" Label,
            key_id "key_id" Label,
            user_id "user_id" Label,
            team_id "team_id" Label,
            app "app" Label,
            prompt_tokens "prompt_tokens" Count,
            completion_tokens "completion_tokens" Count,
            cached_tokens "cached_tokens" Count,
            cache_write_tokens "cache_write_tokens" Count,
            reasoning_tokens "reasoning_tokens" Count,
            cost_usd "cost_usd" Cost,
            cost_source "cost_source" Source,
            latency_ms "latency_ms" Ms,
            ttft_ms "ttft_ms" Ms,
            status "status" Status,
            error "error" Message,
            finish_reason "finish_reason" Label,
            streamed "streamed" Flag,
            attempt "attempt" Attempt,
            parent_id "parent_id" Label,
            policy_version "policy_version" Label,
            route "route" Label,
        }
    };
}
pub(crate) use request_fields;

/// Defines [`Record`], [`RecordRef`] and their conversions from the field list.
macro_rules! define_records {
    ($($(#[$doc:meta])* $f:ident $json:literal $kind:ident,)*) => {
        /// One request attempt, in the canonical shape (see SPEC: "The canonical request
        /// record"), owning its text.
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct Record {
            $($(#[$doc])* pub $f: <fields::$kind as Kind>::Owned,)*
            pub metadata: BTreeMap<String, String>,
        }

        /// The same record with its text borrowed from the input where it can be: what the
        /// fast parser produces, what validation works on and what the columns take.
        #[derive(Debug, Clone, PartialEq)]
        pub struct RecordRef<'a> {
            $($(#[$doc])* pub $f: <fields::$kind as Kind>::Ref<'a>,)*
            pub metadata: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
        }

        /// JSON keys of the canonical fields, which are also the column names, in column order.
        pub const REQUEST_KEYS: &[&str] = &[$($json,)* "metadata"];

        impl Record {
            /// The borrowed shape of this record (no copy).
            pub fn as_ref(&self) -> RecordRef<'_> {
                RecordRef {
                    $($f: <fields::$kind as Kind>::borrow(&self.$f),)*
                    metadata: self
                        .metadata
                        .iter()
                        .map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v.as_str())))
                        .collect(),
                }
            }

            /// The borrowed shape, moving the text (no copy).
            pub fn into_ref(self) -> RecordRef<'static> {
                RecordRef {
                    $($f: <fields::$kind as Kind>::lift(self.$f),)*
                    metadata: self
                        .metadata
                        .into_iter()
                        .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
                        .collect(),
                }
            }
        }

        impl RecordRef<'_> {
            /// Copies the borrowed text.
            pub fn into_owned(self) -> Record {
                Record {
                    $($f: <fields::$kind as Kind>::own(self.$f),)*
                    metadata: self
                        .metadata
                        .into_iter()
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect(),
                }
            }

            /// Each field against the bounds of its kind, in column order.
            fn check_fields(&self) -> Result<(), String> {
                $(<fields::$kind as Kind>::check($json, &self.$f)?;)*
                Ok(())
            }
        }
    };
}

request_fields!(define_records);

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

impl Record {
    /// Validates the record, fills defaults (`task`, `provider`, `status`) and prices it.
    ///
    /// The error names the offending field; the record is then rejected as a whole.
    pub fn finish(self, prices: &PriceCatalog) -> Result<Record, String> {
        let mut r = self.into_ref();
        r.finish(prices)?;
        Ok(r.into_owned())
    }

    /// The token counts of this record, zero where absent.
    pub fn usage(&self) -> Usage {
        Usage::of(
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
        )
    }
}

impl<'a> RecordRef<'a> {
    /// Validates the record in place, fills defaults (`task`, `provider`, `status`) and
    /// prices it: the one validation step of every input shape. The error names the
    /// offending field; the record is then rejected as a whole.
    pub fn finish(&mut self, prices: &PriceCatalog) -> Result<(), String> {
        self.check_fields()?;
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
        if self.task.as_deref().is_none_or(|t| t.trim().is_empty()) {
            self.task = Some(Cow::Borrowed(fields::DEFAULT_TASK));
        }
        if self.status.is_none() {
            self.status = Some(if self.error.is_some() { 500 } else { 200 });
        }
        if self.provider.is_none() {
            self.provider = provider_of(&self.model, prices);
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
        Ok(())
    }

    /// The token counts of this record, zero where absent.
    pub fn usage(&self) -> Usage {
        Usage::of(
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
        )
    }
}

/// The provider of a model (its `provider/` prefix, else the catalog's), borrowing the
/// prefix from a borrowed model name when it is already lowercase.
fn provider_of<'a>(model: &Cow<'a, str>, prices: &PriceCatalog) -> Option<Cow<'a, str>> {
    if let Cow::Borrowed(m) = model
        && let Some((p, _)) = m.split_once('/')
        && !p.is_empty()
        && !p.bytes().any(|b| b.is_ascii_uppercase())
    {
        return Some(Cow::Borrowed(p));
    }
    prices.provider_of(model).map(Cow::Owned)
}

impl Feedback {
    /// Validates a feedback record: `quality` values must lie in [0, 1].
    pub fn finish(self) -> Result<Feedback, String> {
        self.as_ref().check()?;
        Ok(self)
    }

    pub fn as_ref(&self) -> FeedbackRef<'_> {
        FeedbackRef {
            request_id: Cow::Borrowed(&self.request_id),
            ts_us: self.ts_us,
            metric: Cow::Borrowed(&self.metric),
            value: self.value,
            source: self.source.as_deref().map(Cow::Borrowed),
        }
    }
}

/// A feedback record borrowing its text from the input (the fast path and the columns).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRef<'a> {
    pub request_id: Cow<'a, str>,
    pub ts_us: i64,
    pub metric: Cow<'a, str>,
    pub value: f64,
    pub source: Option<Cow<'a, str>>,
}

impl FeedbackRef<'_> {
    /// The one validation of feedback: `quality` values must lie in [0, 1].
    pub fn check(&self) -> Result<(), String> {
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
        Ok(())
    }

    pub fn into_owned(self) -> Feedback {
        Feedback {
            request_id: self.request_id.into_owned(),
            ts_us: self.ts_us,
            metric: self.metric.into_owned(),
            value: self.value,
            source: self.source.map(Cow::into_owned),
        }
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
    /// The counts of a record, zero where absent.
    pub fn of(
        prompt: Option<i64>,
        completion: Option<i64>,
        cached: Option<i64>,
        cache_write: Option<i64>,
        reasoning: Option<i64>,
    ) -> Usage {
        Usage {
            prompt: prompt.unwrap_or(0),
            completion: completion.unwrap_or(0),
            cached: cached.unwrap_or(0),
            cache_write: cache_write.unwrap_or(0),
            reasoning: reasoning.unwrap_or(0),
        }
    }

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
