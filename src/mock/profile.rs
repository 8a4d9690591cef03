//! How each model of the mock upstream behaves: latency, time to first token, token rate,
//! error rate, answer length and answer quality per task. Ten built-in models (the generator's
//! names, all priced in the catalog) plus a default for any other name; a `--profile` JSON file
//! adds models or replaces built-in ones.
//!
//! Quality of (model, task) = the task's entry in the model's `task_quality` if any, else the
//! model's base `quality` plus a per-task offset drawn from (seed, model, task), so models rank
//! differently on different tasks and the same seed always gives the same numbers.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest per-task quality offset around a model's base quality.
const TASK_SPREAD: f64 = 0.08;
/// Longest answer the mock writes, tokens (larger `max_tokens` are capped here).
pub const MAX_COMPLETION_TOKENS: u32 = 32_768;

/// The behaviour of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Total time of a non-streamed answer, ms; absent = `ttft_ms` + the answer at
    /// `tokens_per_s`.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Time to the first chunk of a stream (and the start of a non-streamed answer), ms.
    #[serde(default)]
    pub ttft_ms: u64,
    /// Decode speed; 0 = the whole answer at once.
    #[serde(default)]
    pub tokens_per_s: f64,
    /// Share of requests answered with a 500.
    #[serde(default)]
    pub error_rate: f64,
    /// Answer length when the request sets no `max_tokens`.
    #[serde(default = "default_output_tokens")]
    pub output_tokens: u32,
    /// Share of the completion tokens that are reasoning tokens.
    #[serde(default)]
    pub reasoning_share: f64,
    /// Base answer quality in [0, 1].
    #[serde(default = "default_quality")]
    pub quality: f64,
    /// Quality on named tasks, overriding base + offset.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub task_quality: BTreeMap<String, f64>,
    /// Dimensions of an embedding when the request names none.
    #[serde(default = "default_embedding_dims")]
    pub embedding_dims: u32,
}

fn default_output_tokens() -> u32 {
    64
}
fn default_quality() -> f64 {
    0.75
}
fn default_embedding_dims() -> u32 {
    256
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            latency_ms: None,
            ttft_ms: 300,
            tokens_per_s: 100.0,
            error_rate: 0.0,
            output_tokens: default_output_tokens(),
            reasoning_share: 0.0,
            quality: default_quality(),
            task_quality: BTreeMap::new(),
            embedding_dims: default_embedding_dims(),
        }
    }
}

impl Profile {
    fn validate(&self, name: &str) -> Result<()> {
        let bad = |what: &str| Err(Error::Config(format!("mock profile {name}: {what}")));
        if !(0.0..=1.0).contains(&self.error_rate) {
            return bad("error_rate must be in [0, 1]");
        }
        if !(0.0..=1.0).contains(&self.reasoning_share) {
            return bad("reasoning_share must be in [0, 1]");
        }
        if !self.tokens_per_s.is_finite() || self.tokens_per_s < 0.0 {
            return bad("tokens_per_s must be a number >= 0");
        }
        if !(0.0..=1.0).contains(&self.quality)
            || self.task_quality.values().any(|q| !(0.0..=1.0).contains(q))
        {
            return bad("qualities must be in [0, 1]");
        }
        if self.embedding_dims == 0 || self.embedding_dims > 8192 {
            return bad("embedding_dims must be in 1..=8192");
        }
        Ok(())
    }

    /// Quality of this model on `task`, for the mock seeded with `seed`.
    pub fn quality_on(&self, model: &str, task: &str, seed: u64) -> f64 {
        if let Some(q) = self.task_quality.get(task) {
            return *q;
        }
        let mut h = xxhash_rust::xxh3::Xxh3::with_seed(seed);
        h.update(model.as_bytes());
        h.update(&[0]);
        h.update(task.as_bytes());
        let h = h.digest();
        // Uniform in [-1, 1] from the top 53 bits.
        let u = (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        let q = (self.quality + u * TASK_SPREAD).clamp(0.02, 0.99);
        (q * 1000.0).round() / 1000.0
    }
}

/// Built-in model: (name, ttft ms, tokens/s, output tokens, reasoning share, quality). They
/// never fail on their own (tests and the benchmark need that); `error_rate` comes from a
/// profile file or `POST /mock/behaviour`.
type Builtin = (&'static str, u64, f64, u32, f64, f64);

/// The built-in models; their speeds follow the generator's model table.
const BUILTIN: [Builtin; 10] = [
    ("openai/gpt-4o", 450, 95.0, 96, 0.0, 0.90),
    ("openai/gpt-4o-mini", 380, 120.0, 80, 0.0, 0.80),
    ("openai/gpt-4.1-nano", 260, 190.0, 64, 0.0, 0.70),
    ("openai/o3-mini", 600, 160.0, 128, 0.5, 0.88),
    ("anthropic/claude-sonnet-4-5", 850, 70.0, 112, 0.0, 0.92),
    ("anthropic/claude-haiku-4-5", 480, 150.0, 80, 0.0, 0.82),
    ("google/gemini-2.5-flash", 520, 230.0, 88, 0.2, 0.83),
    ("deepseek/deepseek-chat", 1100, 32.0, 100, 0.0, 0.84),
    ("mistral/mistral-small-latest", 300, 140.0, 72, 0.0, 0.74),
    ("xai/grok-4.3", 700, 85.0, 96, 0.0, 0.86),
];

/// A `--profile` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    /// Profile of models not named anywhere.
    #[serde(default)]
    default: Option<Profile>,
    /// Models added to (or replacing) the built-in ones.
    #[serde(default)]
    models: BTreeMap<String, Profile>,
    /// Drop the built-in models: serve only the file's.
    #[serde(default)]
    replace_builtin: bool,
}

/// Every model's profile, with overrides from the command line applied.
#[derive(Debug, Clone)]
pub struct Profiles {
    pub models: BTreeMap<String, Profile>,
    pub default: Profile,
}

/// Command-line settings that override every profile.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub latency_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub tokens_per_s: Option<f64>,
}

impl Profiles {
    /// The built-in profiles.
    pub fn builtin() -> Profiles {
        let models = BUILTIN
            .iter()
            .map(|&(name, ttft_ms, tokens_per_s, output_tokens, rs, q)| {
                let p = Profile {
                    latency_ms: None,
                    ttft_ms,
                    tokens_per_s,
                    error_rate: 0.0,
                    output_tokens,
                    reasoning_share: rs,
                    quality: q,
                    task_quality: BTreeMap::new(),
                    embedding_dims: default_embedding_dims(),
                };
                (name.to_string(), p)
            })
            .collect();
        Profiles {
            models,
            default: Profile::default(),
        }
    }

    /// The built-in profiles with a profile file (if any) merged over them.
    pub fn load(file: Option<&Path>) -> Result<Profiles> {
        let mut out = Profiles::builtin();
        let Some(path) = file else {
            return Ok(out);
        };
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let f: ProfileFile = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if f.replace_builtin {
            out.models.clear();
        }
        if let Some(d) = f.default {
            d.validate("default")?;
            out.default = d;
        }
        for (name, p) in f.models {
            p.validate(&name)?;
            out.models.insert(name, p);
        }
        Ok(out)
    }

    /// Applies command-line overrides to every profile.
    pub fn with_overrides(mut self, o: Overrides) -> Profiles {
        for p in self
            .models
            .values_mut()
            .chain(std::iter::once(&mut self.default))
        {
            if let Some(l) = o.latency_ms {
                p.latency_ms = Some(l);
            }
            if let Some(t) = o.ttft_ms {
                p.ttft_ms = t;
            }
            if let Some(r) = o.tokens_per_s {
                p.tokens_per_s = r;
            }
        }
        self
    }

    /// The profile of `model` (the default one for names not listed).
    pub fn get(&self, model: &str) -> &Profile {
        self.models.get(model).unwrap_or(&self.default)
    }
}
