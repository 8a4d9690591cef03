//! The price catalog and cost arithmetic. Prices are USD per million tokens held as exact
//! `Decimal`s; model names from the wild (`openai/gpt-4o-mini`, `gpt-4o-mini-2024-07-18`,
//! `anthropic/claude-haiku-4-5:beta`) are normalised until they find their entry.
//!
//! The catalog ships inside the binary (`data/prices.json`); `prices import` merges a LiteLLM
//! or OpenRouter catalog over it and keeps the result in the data dir.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::record::Usage;

/// The catalog compiled into the binary.
pub const EMBEDDED_CATALOG: &str = include_str!("../data/prices.json");

/// Prices of one model, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub provider: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub input: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub output: Decimal,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub cached_input: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub cache_write: Option<Decimal>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub reasoning: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<i64>,
}

impl ModelPrice {
    /// Exact cost of `u` at these prices: uncached input, cache reads, cache writes, visible
    /// output and reasoning output each at their own price (cache and reasoning prices fall
    /// back to the input and output price when the catalog has none). A cost past what
    /// `Decimal` holds comes out as `Decimal::MAX`, which `record::bound_cost` rejects.
    pub fn cost(&self, u: &Usage) -> Decimal {
        let d = Decimal::from;
        let uncached = (u.prompt - u.cached - u.cache_write).max(0);
        let visible_out = (u.completion - u.reasoning).max(0);
        [
            (uncached, self.input),
            (u.cached, self.cached_input.unwrap_or(self.input)),
            (u.cache_write, self.cache_write.unwrap_or(self.input)),
            (visible_out, self.output),
            (u.reasoning, self.reasoning.unwrap_or(self.output)),
        ]
        .into_iter()
        .try_fold(Decimal::ZERO, |sum, (n, price)| {
            d(n).checked_mul(price).and_then(|c| sum.checked_add(c))
        })
        .map_or(Decimal::MAX, |micro| micro / Decimal::from(1_000_000))
    }
}

/// The on-disk catalog file: model name → prices, plus aliases.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    pub models: BTreeMap<String, ModelPrice>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aliases: BTreeMap<String, String>,
}

/// A price catalog with name normalisation and a lookup cache.
#[derive(Debug, Default)]
pub struct PriceCatalog {
    file: CatalogFile,
    /// Normalised name → catalog key.
    index: HashMap<String, String>,
    cache: RwLock<HashMap<String, Option<Resolved>>>,
}

/// A model name resolved against the catalog.
#[derive(Debug, Clone)]
struct Resolved {
    key: Arc<str>,
    price: Arc<ModelPrice>,
}

impl Clone for PriceCatalog {
    fn clone(&self) -> Self {
        PriceCatalog::new(self.file.clone())
    }
}

/// Provider prefixes that may stand before a model name (`openrouter/openai/gpt-4o`).
const VENDOR_PREFIXES: &[&str] = &[
    "us.",
    "eu.",
    "apac.",
    "au.",
    "global.",
    "anthropic.",
    "meta.",
    "mistral.",
    "amazon.",
    "cohere.",
    "ai21.",
];

/// The candidate spellings of a model name, most specific first.
pub fn name_candidates(model: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(8);
    let mut push = |s: &str| {
        let s = s.trim();
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    };
    push(model);
    let lower = model.trim().to_ascii_lowercase();
    push(&lower);
    // Strip variant suffixes (OpenRouter `:free`, Bedrock `-v1:0`, Vertex `@20240307`).
    let mut base = lower.as_str();
    if let Some(i) = base.find('@') {
        base = &base[..i];
    }
    let base = base.split(':').next().unwrap_or(base);
    push(base);
    let last = base.rsplit('/').next().unwrap_or(base);
    push(last);
    let mut short = last;
    for p in VENDOR_PREFIXES {
        short = short.strip_prefix(p).unwrap_or(short);
    }
    push(short);
    let nov = strip_version_suffix(short);
    push(nov);
    let nodate = strip_date_suffix(nov);
    push(nodate);
    push(strip_date_suffix(strip_latest(nodate)));
    out
}

fn strip_latest(s: &str) -> &str {
    s.strip_suffix("-latest").unwrap_or(s)
}

/// `claude-3-haiku-20240307-v1` → `claude-3-haiku-20240307`.
fn strip_version_suffix(s: &str) -> &str {
    if let Some(i) = s.rfind("-v")
        && s[i + 2..].chars().all(|c| c.is_ascii_digit())
        && i + 2 < s.len()
    {
        return &s[..i];
    }
    s
}

/// Strips `-2024-07-18`, `-20240718` and `-0613` style date suffixes.
fn strip_date_suffix(s: &str) -> &str {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
    let n = b.len();
    if n > 11
        && b[n - 11] == b'-'
        && b[n - 6] == b'-'
        && b[n - 3] == b'-'
        && digits(n - 10..n - 6)
        && digits(n - 5..n - 3)
        && digits(n - 2..n)
    {
        return &s[..n - 11];
    }
    if n > 9 && b[n - 9] == b'-' && digits(n - 8..n) {
        return &s[..n - 9];
    }
    if n > 5 && b[n - 5] == b'-' && digits(n - 4..n) {
        return &s[..n - 5];
    }
    s
}

impl PriceCatalog {
    /// Builds the lookup index of a catalog file.
    pub fn new(file: CatalogFile) -> Self {
        let mut index = HashMap::new();
        // Exact keys first, so a dated key keeps its own (possibly different) price.
        for k in file.models.keys() {
            index.insert(k.to_ascii_lowercase(), k.clone());
        }
        for (alias, target) in &file.aliases {
            if file.models.contains_key(target) {
                index
                    .entry(alias.to_ascii_lowercase())
                    .or_insert_with(|| target.clone());
            }
        }
        // Then the normalised spellings of each key, shortest key winning ties.
        let mut keys: Vec<&String> = file.models.keys().collect();
        keys.sort_by_key(|k| (k.len(), k.as_str()));
        for k in keys {
            for c in name_candidates(k) {
                index.entry(c).or_insert_with(|| k.clone());
            }
        }
        PriceCatalog {
            file,
            index,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The catalog compiled into the binary.
    pub fn embedded() -> Result<Self> {
        let file: CatalogFile = serde_json::from_str(EMBEDDED_CATALOG)
            .map_err(|e| Error::Config(format!("embedded price catalog: {e}")))?;
        Ok(Self::new(file))
    }

    pub fn file(&self) -> &CatalogFile {
        &self.file
    }

    /// Merges `other` over this catalog (its entries win).
    pub fn merged(&self, other: &CatalogFile) -> PriceCatalog {
        let mut file = self.file.clone();
        file.models
            .extend(other.models.iter().map(|(k, v)| (k.clone(), v.clone())));
        file.aliases
            .extend(other.aliases.iter().map(|(k, v)| (k.clone(), v.clone())));
        PriceCatalog::new(file)
    }

    fn resolved(&self, model: &str) -> Option<Resolved> {
        if let Ok(c) = self.cache.read()
            && let Some(hit) = c.get(model)
        {
            return hit.clone();
        }
        let found = name_candidates(model)
            .into_iter()
            .find_map(|c| self.index.get(&c))
            .and_then(|k| {
                self.file.models.get(k).map(|p| Resolved {
                    key: Arc::from(k.as_str()),
                    price: Arc::new(p.clone()),
                })
            });
        if let Ok(mut c) = self.cache.write() {
            if c.len() > 100_000 {
                c.clear();
            }
            c.insert(model.to_string(), found.clone());
        }
        found
    }

    /// The catalog key a model name resolves to, if any.
    pub fn resolve(&self, model: &str) -> Option<String> {
        self.resolved(model).map(|r| r.key.to_string())
    }

    /// Prices of a model, after name normalisation.
    pub fn lookup(&self, model: &str) -> Option<Arc<ModelPrice>> {
        self.resolved(model).map(|r| r.price)
    }

    /// The provider of a model: the prefix of `provider/model`, else the catalog's provider.
    pub fn provider_of(&self, model: &str) -> Option<String> {
        if let Some((p, _)) = model.split_once('/')
            && !p.is_empty()
        {
            return Some(p.to_ascii_lowercase());
        }
        self.lookup(model).map(|p| p.provider.clone())
    }

    /// Cost of `usage` on `model`, or `None` when the model has no price.
    pub fn cost(&self, model: &str, usage: &Usage) -> Option<Decimal> {
        self.lookup(model).map(|p| p.cost(usage))
    }
}

/// Per-token price in a catalog (a JSON number or numeric string) → USD per million tokens.
fn per_million(v: &Value) -> Option<Decimal> {
    let d = match v {
        Value::Number(n) => {
            let s = n.to_string();
            Decimal::from_scientific(&s)
                .or_else(|_| s.parse::<Decimal>())
                .ok()?
        }
        Value::String(s) => Decimal::from_scientific(s)
            .or_else(|_| s.parse::<Decimal>())
            .ok()?,
        _ => return None,
    };
    if d.is_sign_negative() {
        return None;
    }
    Some((d * Decimal::from(1_000_000)).normalize())
}

/// Parses LiteLLM's `model_prices_and_context_window.json`: chat, completion and responses
/// entries with per-token prices. `only_providers` keeps just those `litellm_provider`s.
pub fn import_litellm(json: &str, only_providers: Option<&[&str]>) -> Result<CatalogFile> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| Error::Invalid(format!("LiteLLM catalog is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| Error::Invalid("LiteLLM catalog must be a JSON object".into()))?;
    let mut out = CatalogFile::default();
    for (name, e) in obj {
        if name == "sample_spec" {
            continue;
        }
        if let Some(target) = e.get("alias_of").and_then(Value::as_str) {
            out.aliases.insert(name.clone(), target.to_string());
            continue;
        }
        let mode = e.get("mode").and_then(Value::as_str).unwrap_or("chat");
        if !matches!(mode, "chat" | "completion" | "responses") {
            continue;
        }
        let provider = e
            .get("litellm_provider")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        if let Some(keep) = only_providers
            && !keep.contains(&provider.as_str())
        {
            continue;
        }
        let (Some(input), Some(output)) = (
            e.get("input_cost_per_token").and_then(per_million),
            e.get("output_cost_per_token").and_then(per_million),
        ) else {
            continue;
        };
        out.models.insert(
            name.clone(),
            ModelPrice {
                provider,
                input,
                output,
                cached_input: e.get("cache_read_input_token_cost").and_then(per_million),
                cache_write: e
                    .get("cache_creation_input_token_cost")
                    .and_then(per_million),
                reasoning: e
                    .get("output_cost_per_reasoning_token")
                    .and_then(per_million),
                context_window: e.get("max_input_tokens").and_then(Value::as_i64),
            },
        );
    }
    out.aliases.retain(|_, t| out.models.contains_key(t));
    if out.models.is_empty() {
        return Err(Error::Invalid(
            "LiteLLM catalog holds no chat model with input and output prices".into(),
        ));
    }
    Ok(out)
}

/// Parses OpenRouter's `GET /api/v1/models` answer (`data[].pricing` in USD per token).
pub fn import_openrouter(json: &str) -> Result<CatalogFile> {
    let v: Value = serde_json::from_str(json)
        .map_err(|e| Error::Invalid(format!("OpenRouter catalog is not JSON: {e}")))?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Invalid("OpenRouter catalog needs a `data` array".into()))?;
    let mut out = CatalogFile::default();
    for (i, m) in data.iter().enumerate() {
        let id = m
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Invalid(format!("data[{i}]: missing `id`")))?;
        let p = m
            .get("pricing")
            .ok_or_else(|| Error::Invalid(format!("data[{i}] ({id}): missing `pricing`")))?;
        let (Some(input), Some(output)) = (
            p.get("prompt").and_then(per_million),
            p.get("completion").and_then(per_million),
        ) else {
            return Err(Error::Invalid(format!(
                "data[{i}] ({id}): `pricing.prompt` and `pricing.completion` must be prices"
            )));
        };
        let provider = id.split_once('/').map(|(p, _)| p).unwrap_or("openrouter");
        let nonzero = |d: Option<Decimal>| d.filter(|d| !d.is_zero());
        out.models.insert(
            id.to_string(),
            ModelPrice {
                provider: provider.to_string(),
                input,
                output,
                cached_input: nonzero(p.get("input_cache_read").and_then(per_million)),
                cache_write: nonzero(p.get("input_cache_write").and_then(per_million)),
                reasoning: nonzero(p.get("internal_reasoning").and_then(per_million)),
                context_window: m.get("context_length").and_then(Value::as_i64),
            },
        );
    }
    if out.models.is_empty() {
        return Err(Error::Invalid("OpenRouter catalog has no models".into()));
    }
    Ok(out)
}
