//! Synthetic workload generator (`switchyard generate`): a seeded, deterministic, realistic
//! stream of canonical request records and their quality feedback, as one NDJSON stream.
//!
//! What makes it realistic:
//!
//! * ten real models at their catalog prices, named as gateways serve them, each with its own
//!   time to first token, decode speed, verbosity, error rate, prompt-cache behaviour
//!   (OpenAI/DeepSeek/Gemini/xAI automatic prefix caching, Anthropic explicit cache reads and
//!   writes) and reasoning tokens (`o3-mini` always, `gemini-2.5-flash` often);
//! * thirty tasks with a Zipf-like traffic share, log-normal prompt and completion lengths, a
//!   shared prompt prefix (system prompt, few-shot examples, schema), an owning team, app,
//!   gateway and user population, and a current model mix that over-uses expensive models
//!   (plus a small share of every model, as experiments do);
//! * per task and model quality whose gaps follow the FrugalGPT 2024 tables ([`FRUGAL_ACC`]):
//!   0/1 judgements for classification-like tasks, Beta-distributed judge scores for generative
//!   ones; feedback for a configurable share of successful requests;
//! * timestamps over `days` days with a daily (EU + US business hours) and weekly cycle and a
//!   mild growth trend; 1–3 % errors (429/500/503), more at peak load, followed by retries
//!   (`attempt` 2.., `parent_id` = the first attempt) or fallbacks to another model;
//! * about a quarter of the records (most of OpenRouter's) report `cost_usd` themselves, exactly the
//!   catalog cost; the rest leave it to the ingest.
//!
//! Output is byte-identical for the same options whatever the thread count: the stream is cut
//! into fixed chunks of record slots, each generated from its own RNG seeded from
//! (seed, chunk index), and written in order.

use std::io::{self, Write};
use std::sync::mpsc;

use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;

use crate::prices::{ModelPrice, PriceCatalog};
use crate::record::Usage;

/// 2026-11-25T00:00:00Z: the default end of the generated period, fixed so that output does
/// not depend on when it is generated.
pub const DEFAULT_END_TS_US: i64 = 1_795_564_800_000_000;

/// Record slots per chunk (the unit of parallel work and of RNG seeding).
const CHUNK: u64 = 16_384;

/// Options of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Request records to write (retries and failed attempts included; feedback lines extra).
    pub requests: u64,
    /// Days the timestamps span, ending at `end_ts_us`. At least 1.
    pub days: u32,
    pub seed: u64,
    /// End of the period, UTC microseconds ([`DEFAULT_END_TS_US`] by default).
    pub end_ts_us: i64,
    /// Share of successful requests that get a quality feedback record, in [0, 1].
    pub feedback_share: f64,
    /// Worker threads; 0 = the available parallelism (at most 8). Output does not depend on it.
    pub threads: usize,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            requests: 10_000,
            days: 30,
            seed: 42,
            end_ts_us: DEFAULT_END_TS_US,
            feedback_share: 0.45,
            threads: 0,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateStats {
    /// Request records (lines), equal to `GenerateOptions::requests`.
    pub requests: u64,
    /// Feedback records (lines).
    pub feedback: u64,
    /// Request records with an error status.
    pub errors: u64,
    /// Request records carrying a reported `cost_usd`.
    pub reported_cost: u64,
    /// Bytes written.
    pub bytes: u64,
}

impl GenerateStats {
    fn add(&mut self, o: &GenerateStats) {
        self.requests += o.requests;
        self.feedback += o.feedback;
        self.errors += o.errors;
        self.reported_cost += o.reported_cost;
        self.bytes += o.bytes;
    }
}

// ---- quality: the FrugalGPT tables -----------------------------------------------------------

/// The FrugalGPT task families, indices into [`FRUGAL_ACC`].
const AGNEWS: usize = 0;
const COQA: usize = 1;
const HEADLINES: usize = 2;
const OVERRULING: usize = 3;
const SCIQ: usize = 4;

/// FrugalGPT task names, in [`FRUGAL_ACC`] row order.
pub const FRUGAL_TASKS: [&str; 5] = ["AGNEWS", "COQA", "HEADLINES", "OVERRULING", "SCIQ"];

/// The ten 2024 APIs of the FrugalGPT tables, in [`FRUGAL_ACC`] column order.
pub const FRUGAL_MODELS: [&str; 10] = [
    "gpt-4o-2024-05-13",
    "gpt-4o-mini",
    "gpt-4-turbo",
    "claude-3-5-sonnet-20240620",
    "gemini-1.5-flash",
    "gemini-1.5-pro",
    "gemini-1.5-flash-8b",
    "Meta-Llama-3-70B-Instruct-Turbo",
    "gemma-2-9b-it",
    "jamba-1.5-large",
];

/// `Test_acc` of the single-model rows (`Method` = the model, not `FrugalGPT`) of
/// `shared/data/frugalgpt/summary_<TASK>_*_2024.csv` (FrugalGPT, Apache-2.0), rounded to 4
/// places; columns in [`FRUGAL_MODELS`] order. Source rows (the CSV's first column):
///
/// * AGNEWS  `summary_AGNEWS_e8_full_2024.csv` rows 0, 1, 2, 5, 7, 8, 9, 3, 4, 6
/// * COQA    `summary_COQA_e2_full_2024.csv` rows 0, 1, 2, 8, 3, 4, 5, 6, 7, 9
/// * HEADLINES `summary_HEADLINES_e8_full_2024.csv` rows 6, 7, 8, 9, 3, 4, 5, 1, 2, 0
/// * OVERRULING `summary_OVERRULING_e5_full_2024.csv` rows 0, 1, 2, 9, 3, 4, 5, 7, 8, 6
/// * SCIQ    `summary_SCIQ_e8_full_2024.csv` rows 6, 7, 8, 9, 3, 4, 5, 1, 2, 0
pub const FRUGAL_ACC: [[f64; 10]; 5] = [
    [
        0.8892, 0.8850, 0.8989, 0.9003, 0.8829, 0.8274, 0.8637, 0.8937, 0.8353, 0.8784,
    ],
    [
        0.1629, 0.1163, 0.2774, 0.2836, 0.3388, 0.2754, 0.2310, 0.2538, 0.2067, 0.1543,
    ],
    [
        0.8332, 0.8478, 0.8558, 0.8422, 0.8480, 0.8250, 0.8422, 0.8264, 0.8320, 0.8142,
    ],
    [
        0.9454, 0.9574, 0.9176, 0.9593, 0.9380, 0.9287, 0.7509, 0.9509, 0.9463, 0.9528,
    ],
    [
        0.7748, 0.7558, 0.7786, 0.7214, 0.7303, 0.5398, 0.4362, 0.2411, 0.7536, 0.7303,
    ],
];

/// Concentration (alpha + beta) of the Beta distribution of judge scores.
const JUDGE_CONCENTRATION: f64 = 12.0;

// ---- models ----------------------------------------------------------------------------------

const GPT4O: usize = 0;
const MINI: usize = 1;
const NANO: usize = 2;
const O3: usize = 3;
const SONNET: usize = 4;
const HAIKU: usize = 5;
const FLASH: usize = 6;
const DEEPSEEK: usize = 7;
const MISTRAL: usize = 8;
const GROK: usize = 9;
const N_MODELS: usize = 10;

/// How a model's provider caches repeated prompt prefixes.
#[derive(Debug, Clone, Copy)]
enum Cache {
    None,
    /// Automatic prefix caching: prefixes of at least `min` tokens are read from the cache
    /// with probability `p_hit`, in units of `unit` tokens (OpenAI, DeepSeek, Gemini, xAI).
    Auto {
        min: u32,
        unit: u32,
        p_hit: f64,
    },
    /// Explicit cache breakpoints (Anthropic): a hit reads the prefix, a miss writes it.
    Explicit {
        min: u32,
        p_hit: f64,
    },
}

#[derive(Debug)]
struct ModelSpec {
    name: &'static str,
    /// Index into [`FRUGAL_MODELS`]: the 2024 model of the same tier whose accuracies it takes.
    frugal: usize,
    /// Median time to first token at idle, ms (before prefill and reasoning).
    ttft_ms: f64,
    /// Median decode speed, tokens/s.
    tps: f64,
    /// Prefill speed, uncached prompt tokens/s.
    prefill_tps: f64,
    /// Error probability of an attempt at average load.
    error_rate: f64,
    /// Completion length multiplier.
    verbosity: f64,
    cache: Cache,
    /// (share of requests that reason, base reasoning tokens, reasoning tokens per visible one).
    reasoning: (f64, f64, f64),
    /// The model a gateway falls back to when this one fails.
    fallback: usize,
}

const OPENAI_CACHE: Cache = Cache::Auto {
    min: 1024,
    unit: 128,
    p_hit: 0.7,
};

/// Our ten models; the `frugal` mapping is by price/capability tier: frontier models take
/// gpt-4o / gpt-4-turbo / claude-3.5-sonnet, cheap fast models take gpt-4o-mini /
/// gemini-1.5-flash / gemini-1.5-flash-8b, open-weight models take Llama-3-70B / gemma-2-9b,
/// mid-priced ones take jamba-1.5-large / gemini-1.5-pro.
const MODELS: [ModelSpec; N_MODELS] = [
    ModelSpec {
        name: "openai/gpt-4o",
        frugal: 0, // gpt-4o-2024-05-13
        ttft_ms: 450.0,
        tps: 95.0,
        prefill_tps: 9_000.0,
        error_rate: 0.010,
        verbosity: 1.0,
        cache: OPENAI_CACHE,
        reasoning: (0.0, 0.0, 0.0),
        fallback: SONNET,
    },
    ModelSpec {
        name: "openai/gpt-4o-mini",
        frugal: 1, // gpt-4o-mini
        ttft_ms: 380.0,
        tps: 120.0,
        prefill_tps: 15_000.0,
        error_rate: 0.010,
        verbosity: 0.95,
        cache: OPENAI_CACHE,
        reasoning: (0.0, 0.0, 0.0),
        fallback: HAIKU,
    },
    ModelSpec {
        name: "openai/gpt-4.1-nano",
        frugal: 6, // gemini-1.5-flash-8b
        ttft_ms: 260.0,
        tps: 190.0,
        prefill_tps: 25_000.0,
        error_rate: 0.008,
        verbosity: 0.85,
        cache: OPENAI_CACHE,
        reasoning: (0.0, 0.0, 0.0),
        fallback: MINI,
    },
    ModelSpec {
        name: "openai/o3-mini",
        frugal: 2, // gpt-4-turbo
        ttft_ms: 600.0,
        tps: 160.0,
        prefill_tps: 12_000.0,
        error_rate: 0.020,
        verbosity: 0.9,
        cache: OPENAI_CACHE,
        reasoning: (1.0, 180.0, 2.0),
        fallback: GPT4O,
    },
    ModelSpec {
        name: "anthropic/claude-sonnet-4-5",
        frugal: 3, // claude-3-5-sonnet-20240620
        ttft_ms: 850.0,
        tps: 70.0,
        prefill_tps: 7_000.0,
        error_rate: 0.015,
        verbosity: 1.15,
        cache: Cache::Explicit {
            min: 1024,
            p_hit: 0.85,
        },
        reasoning: (0.0, 0.0, 0.0),
        fallback: GPT4O,
    },
    ModelSpec {
        name: "anthropic/claude-haiku-4-5",
        frugal: 9, // jamba-1.5-large
        ttft_ms: 480.0,
        tps: 150.0,
        prefill_tps: 14_000.0,
        error_rate: 0.012,
        verbosity: 1.0,
        cache: Cache::Explicit {
            min: 2048,
            p_hit: 0.85,
        },
        reasoning: (0.0, 0.0, 0.0),
        fallback: MINI,
    },
    ModelSpec {
        name: "google/gemini-2.5-flash",
        frugal: 4, // gemini-1.5-flash
        ttft_ms: 520.0,
        tps: 230.0,
        prefill_tps: 20_000.0,
        error_rate: 0.012,
        verbosity: 1.05,
        cache: Cache::Auto {
            min: 1024,
            unit: 1,
            p_hit: 0.55,
        },
        reasoning: (0.5, 60.0, 1.0),
        fallback: MINI,
    },
    ModelSpec {
        name: "deepseek/deepseek-chat",
        frugal: 7, // Meta-Llama-3-70B-Instruct-Turbo
        ttft_ms: 1_100.0,
        tps: 32.0,
        prefill_tps: 5_000.0,
        error_rate: 0.030,
        verbosity: 1.1,
        cache: Cache::Auto {
            min: 64,
            unit: 64,
            p_hit: 0.85,
        },
        reasoning: (0.0, 0.0, 0.0),
        fallback: MINI,
    },
    ModelSpec {
        name: "mistral/mistral-small-latest",
        frugal: 8, // gemma-2-9b-it
        ttft_ms: 300.0,
        tps: 140.0,
        prefill_tps: 16_000.0,
        error_rate: 0.010,
        verbosity: 0.95,
        cache: Cache::None,
        reasoning: (0.0, 0.0, 0.0),
        fallback: MINI,
    },
    ModelSpec {
        name: "xai/grok-4.3",
        frugal: 5, // gemini-1.5-pro
        ttft_ms: 700.0,
        tps: 85.0,
        prefill_tps: 9_000.0,
        error_rate: 0.018,
        verbosity: 1.05,
        cache: Cache::Auto {
            min: 1024,
            unit: 1,
            p_hit: 0.6,
        },
        reasoning: (0.0, 0.0, 0.0),
        fallback: GPT4O,
    },
];

// ---- teams, gateways, tasks ------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gateway {
    OpenRouter,
    LiteLlm,
    Switchyard,
}

impl Gateway {
    fn name(self) -> &'static str {
        match self {
            Gateway::OpenRouter => "openrouter",
            Gateway::LiteLlm => "litellm",
            Gateway::Switchyard => "switchyard",
        }
    }

    fn id_prefix(self) -> &'static [u8] {
        match self {
            Gateway::OpenRouter => b"gen-",
            Gateway::LiteLlm => b"chatcmpl-",
            Gateway::Switchyard => b"sy-",
        }
    }
}

/// Teams and the gateway their traffic goes through.
const TEAMS: [(&str, Gateway); 14] = [
    ("product", Gateway::OpenRouter),
    ("support", Gateway::LiteLlm),
    ("search", Gateway::Switchyard),
    ("platform", Gateway::LiteLlm),
    ("finance", Gateway::Switchyard),
    ("content", Gateway::OpenRouter),
    ("research", Gateway::OpenRouter),
    ("data", Gateway::LiteLlm),
    ("legal", Gateway::Switchyard),
    ("education", Gateway::OpenRouter),
    ("growth", Gateway::OpenRouter),
    ("trust-safety", Gateway::LiteLlm),
    ("commerce", Gateway::Switchyard),
    ("people", Gateway::Switchyard),
];

#[derive(Debug)]
struct TaskSpec {
    name: &'static str,
    /// The FrugalGPT task whose model gaps this task inherits.
    family: usize,
    /// Continuous judge scores (Beta) instead of 0/1 correctness.
    judge: bool,
    /// Expected quality = offset + scale × FrugalGPT accuracy, clamped to [0.02, 0.98].
    q_offset: f64,
    q_scale: f64,
    /// Shared prompt prefix (system prompt, few-shot examples, schema), tokens.
    prefix: u32,
    /// Median and log-sigma of the variable part of the prompt.
    prompt: (f64, f64),
    /// Median and log-sigma of the visible completion.
    completion: (f64, f64),
    /// `max_tokens` of the visible completion: longer ones stop with `length`.
    max_completion: u32,
    app: &'static str,
    team: usize,
    /// Distinct end users; 0 = a service account.
    users: u32,
    stream_p: f64,
    /// Current model mix (weights; every model also gets [`EXPLORE_WEIGHT`]).
    mix: &'static [(usize, f64)],
}

/// Weight every model gets in every task's mix on top of the task's own (experiments, A/B
/// tests, individual developers' choices): the evidence a router needs.
const EXPLORE_WEIGHT: f64 = 0.02;

#[allow(clippy::too_many_arguments)]
const fn task(
    name: &'static str,
    family: usize,
    judge: bool,
    q: (f64, f64),
    prefix: u32,
    prompt: (f64, f64),
    completion: (f64, f64),
    max_completion: u32,
    app: &'static str,
    team: usize,
    users: u32,
    stream_p: f64,
    mix: &'static [(usize, f64)],
) -> TaskSpec {
    TaskSpec {
        name,
        family,
        judge,
        q_offset: q.0,
        q_scale: q.1,
        prefix,
        prompt,
        completion,
        max_completion,
        app,
        team,
        users,
        stream_p,
        mix,
    }
}

const J: bool = true;
const B: bool = false;

/// The tasks, most traffic first (share ∝ 1 / rank).
#[rustfmt::skip]
const TASKS: [TaskSpec; 30] = [
    task("chat", COQA, J, (0.50, 1.30), 1200, (700.0, 1.0), (220.0, 0.8), 4096, "assistant-web", 0, 5000, 0.95, &[(SONNET, 0.45), (GPT4O, 0.35), (FLASH, 0.05)]),
    task("summarize", COQA, J, (0.48, 1.35), 300, (2200.0, 0.8), (180.0, 0.5), 1024, "support-desk", 1, 400, 0.4, &[(GPT4O, 0.6), (MINI, 0.15), (HAIKU, 0.1)]),
    task("classify-ticket", AGNEWS, B, (0.0, 1.0), 900, (350.0, 0.6), (6.0, 0.3), 16, "support-desk", 1, 0, 0.0, &[(GPT4O, 0.55), (SONNET, 0.2), (MINI, 0.15)]),
    task("code-review", SCIQ, J, (0.14, 1.0), 2000, (3000.0, 0.9), (450.0, 0.7), 4096, "dev-tools", 3, 800, 0.6, &[(SONNET, 0.55), (O3, 0.25), (GPT4O, 0.1)]),
    task("rag-answer", COQA, J, (0.52, 1.25), 1500, (2400.0, 0.6), (260.0, 0.6), 2048, "docs-search", 2, 3000, 0.9, &[(GPT4O, 0.5), (SONNET, 0.2), (O3, 0.1)]),
    task("extract-invoice", OVERRULING, B, (-0.04, 1.0), 600, (1500.0, 0.6), (160.0, 0.4), 1024, "finance-ops", 4, 0, 0.0, &[(SONNET, 0.5), (GPT4O, 0.35)]),
    task("news-topic", AGNEWS, B, (0.0, 1.0), 1100, (90.0, 0.4), (3.0, 0.2), 8, "news-feed", 5, 0, 0.0, &[(GPT4O, 0.45), (MINI, 0.3), (FLASH, 0.1)]),
    task("sql-gen", SCIQ, B, (0.06, 1.0), 1400, (250.0, 0.7), (140.0, 0.5), 1024, "bi-copilot", 7, 300, 0.4, &[(O3, 0.4), (GPT4O, 0.35), (SONNET, 0.15)]),
    task("headline-sentiment", HEADLINES, B, (0.0, 1.0), 1000, (40.0, 0.3), (2.0, 0.2), 4, "market-signals", 6, 0, 0.0, &[(O3, 0.35), (GPT4O, 0.35), (MINI, 0.1)]),
    task("translate", AGNEWS, J, (-0.05, 1.0), 150, (500.0, 0.7), (550.0, 0.7), 4096, "localization", 5, 60, 0.1, &[(GPT4O, 0.5), (SONNET, 0.2), (DEEPSEEK, 0.1)]),
    task("legal-overruling", OVERRULING, B, (0.0, 1.0), 1300, (120.0, 0.4), (2.0, 0.2), 4, "legal-review", 8, 40, 0.0, &[(SONNET, 0.55), (GPT4O, 0.3)]),
    task("science-qa", SCIQ, B, (0.0, 1.0), 700, (180.0, 0.4), (4.0, 0.3), 8, "tutor", 9, 2000, 0.3, &[(GPT4O, 0.5), (O3, 0.2), (MINI, 0.1)]),
    task("email-draft", HEADLINES, J, (-0.05, 1.0), 400, (600.0, 0.6), (320.0, 0.5), 1024, "sales-assist", 10, 150, 0.7, &[(GPT4O, 0.55), (SONNET, 0.25)]),
    task("moderation", HEADLINES, B, (0.10, 1.0), 800, (150.0, 0.8), (3.0, 0.2), 8, "community", 11, 0, 0.0, &[(MINI, 0.4), (GPT4O, 0.3), (HAIKU, 0.1)]),
    task("intent-detect", AGNEWS, B, (0.04, 1.0), 500, (40.0, 0.5), (4.0, 0.3), 8, "voice-bot", 1, 0, 0.0, &[(MINI, 0.35), (GPT4O, 0.35), (HAIKU, 0.1)]),
    task("product-qa", SCIQ, J, (0.12, 1.0), 1100, (600.0, 0.6), (200.0, 0.6), 1024, "shop-assistant", 12, 4000, 0.9, &[(GPT4O, 0.45), (SONNET, 0.25), (FLASH, 0.1)]),
    task("contract-clause", OVERRULING, B, (-0.08, 1.0), 1500, (1800.0, 0.5), (40.0, 0.4), 256, "legal-review", 8, 40, 0.0, &[(SONNET, 0.6), (O3, 0.2)]),
    task("meeting-notes", COQA, J, (0.50, 1.30), 200, (6000.0, 0.7), (400.0, 0.5), 2048, "workspace", 0, 1500, 0.5, &[(SONNET, 0.4), (GPT4O, 0.4)]),
    task("review-sentiment", HEADLINES, B, (0.05, 1.0), 300, (150.0, 0.7), (2.0, 0.2), 4, "reviews", 12, 0, 0.0, &[(GPT4O, 0.4), (MINI, 0.3), (NANO, 0.1)]),
    task("pii-redact", OVERRULING, J, (-0.02, 1.0), 600, (700.0, 0.8), (650.0, 0.8), 4096, "data-platform", 7, 0, 0.0, &[(GPT4O, 0.5), (SONNET, 0.2), (MINI, 0.1)]),
    task("spam-filter", AGNEWS, B, (0.06, 1.0), 400, (300.0, 0.7), (2.0, 0.2), 4, "mail-guard", 11, 0, 0.0, &[(MINI, 0.5), (NANO, 0.2), (GPT4O, 0.1)]),
    task("faq-answer", SCIQ, B, (0.10, 1.0), 1800, (60.0, 0.6), (120.0, 0.6), 512, "help-center", 1, 2500, 0.8, &[(GPT4O, 0.4), (HAIKU, 0.3)]),
    task("keyword-extract", AGNEWS, J, (-0.08, 1.0), 300, (900.0, 0.7), (40.0, 0.4), 128, "seo-tools", 10, 0, 0.0, &[(GPT4O, 0.4), (MINI, 0.3), (MISTRAL, 0.1)]),
    task("math-tutor", SCIQ, B, (-0.04, 1.0), 700, (150.0, 0.5), (350.0, 0.6), 2048, "tutor", 9, 2000, 0.8, &[(O3, 0.6), (GPT4O, 0.2)]),
    task("title-gen", HEADLINES, J, (0.0, 1.0), 200, (400.0, 0.6), (14.0, 0.3), 32, "workspace", 0, 1500, 0.0, &[(GPT4O, 0.4), (MINI, 0.3), (FLASH, 0.1)]),
    task("resume-screen", OVERRULING, B, (-0.10, 1.0), 1200, (1400.0, 0.5), (60.0, 0.5), 256, "talent", 13, 30, 0.0, &[(SONNET, 0.5), (GPT4O, 0.3)]),
    task("query-rewrite", COQA, J, (0.55, 1.10), 300, (80.0, 0.6), (30.0, 0.5), 128, "docs-search", 2, 3000, 0.0, &[(MINI, 0.4), (GPT4O, 0.3), (NANO, 0.1)]),
    task("agent-plan", SCIQ, J, (0.16, 1.0), 2500, (3500.0, 0.8), (300.0, 0.7), 4096, "ops-agent", 3, 100, 0.5, &[(O3, 0.5), (SONNET, 0.3)]),
    task("changelog", COQA, J, (0.52, 1.20), 250, (2500.0, 0.8), (280.0, 0.5), 1024, "dev-tools", 3, 800, 0.0, &[(SONNET, 0.4), (GPT4O, 0.3), (DEEPSEEK, 0.1), (GROK, 0.05)]),
    task("lang-detect", AGNEWS, B, (0.08, 1.0), 0, (60.0, 0.7), (2.0, 0.2), 4, "localization", 5, 0, 0.0, &[(GPT4O, 0.3), (MINI, 0.3), (NANO, 0.2)]),
];

/// Traffic share exponent: task of rank r gets weight 1 / r^s.
const ZIPF_S: f64 = 1.0;

// ---- public introspection --------------------------------------------------------------------

/// The models the generator uses, as written in `model`.
pub fn model_names() -> Vec<&'static str> {
    MODELS.iter().map(|m| m.name).collect()
}

/// The tasks the generator uses, most traffic first.
pub fn task_names() -> Vec<&'static str> {
    TASKS.iter().map(|t| t.name).collect()
}

/// The FrugalGPT task (one of [`FRUGAL_TASKS`]) whose model gaps `task` follows.
pub fn task_family(task: &str) -> Option<&'static str> {
    TASKS
        .iter()
        .find(|t| t.name == task)
        .map(|t| FRUGAL_TASKS[t.family])
}

/// Whether `task`'s feedback is 0/1 correctness (`false`: continuous judge scores).
pub fn task_is_binary(task: &str) -> Option<bool> {
    TASKS.iter().find(|t| t.name == task).map(|t| !t.judge)
}

/// The true mean quality of `model` on `task`: what feedback averages to, given enough of it.
pub fn expected_quality(task: &str, model: &str) -> Option<f64> {
    let t = TASKS.iter().find(|t| t.name == task)?;
    let m = MODELS.iter().position(|m| m.name == model)?;
    Some(quality_of(t, m))
}

fn quality_of(t: &TaskSpec, m: usize) -> f64 {
    let acc = FRUGAL_ACC[t.family][MODELS[m].frugal];
    (t.q_offset + t.q_scale * acc).clamp(0.02, 0.98)
}

// ---- generation ------------------------------------------------------------------------------

struct TaskRt {
    mix_cum: [f64; N_MODELS],
    quality: [f64; N_MODELS],
    beta: Vec<Option<Beta<f64>>>,
}

struct Ctx {
    n: u64,
    seed: u64,
    id_key: u64,
    start_us: i64,
    /// Cumulative normalised intensity at each hour boundary (len = hours + 1).
    cdf: Vec<f64>,
    /// Load of each hour relative to the busiest, in (0, 1].
    load: Vec<f64>,
    task_cum: Vec<f64>,
    tasks: Vec<TaskRt>,
    prices: Vec<ModelPrice>,
    feedback_share: f64,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A bijective 64-bit mixer (the SplitMix64 finaliser).
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Days since 1970-01-01 → (year, month, day) (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Relative traffic at UTC hour `h` (fractional) of a day: EU morning and US business hours.
fn daily_intensity(h: f64) -> f64 {
    let bump = |c: f64, w: f64| (-((h - c) / w).powi(2)).exp();
    // APAC afternoon wraps around midnight UTC.
    0.12 + 0.55 * bump(9.5, 3.0) + 1.0 * bump(16.0, 3.5) + 0.2 * (bump(3.0, 2.5) + bump(27.0, 2.5))
}

impl Ctx {
    fn new(opts: &GenerateOptions, catalog: &PriceCatalog) -> io::Result<Ctx> {
        if opts.days == 0 {
            return Err(invalid("`days` must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&opts.feedback_share) {
            return Err(invalid(format!(
                "`feedback_share` must lie in [0, 1], got {}",
                opts.feedback_share
            )));
        }
        let mut prices = Vec::with_capacity(N_MODELS);
        for m in &MODELS {
            let p = catalog
                .lookup(m.name)
                .ok_or_else(|| invalid(format!("model {} has no price in the catalog", m.name)))?;
            prices.push((*p).clone());
        }
        let hours = opts.days as usize * 24;
        let start_us = opts.end_ts_us - i64::from(opts.days) * 86_400_000_000;
        let mut w = Vec::with_capacity(hours);
        for b in 0..hours {
            let t = start_us + b as i64 * 3_600_000_000 + 1_800_000_000;
            let day = t.div_euclid(86_400_000_000);
            let h = t.rem_euclid(86_400_000_000) as f64 / 3_600_000_000.0;
            let weekday = (day + 3).rem_euclid(7); // 0 = Monday
            let weekly = match weekday {
                5 => 0.45,
                6 => 0.40,
                4 => 0.92,
                _ => 1.0,
            };
            let trend = 1.0 + 0.3 * (b as f64 / hours as f64);
            w.push(daily_intensity(h) * weekly * trend);
        }
        let max = w.iter().cloned().fold(f64::MIN_POSITIVE, f64::max);
        let total: f64 = w.iter().sum();
        let mut cdf = Vec::with_capacity(hours + 1);
        let mut acc = 0.0;
        cdf.push(0.0);
        for x in &w {
            acc += x / total;
            cdf.push(acc);
        }
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        let load = w.iter().map(|x| x / max).collect();

        let mut task_cum = Vec::with_capacity(TASKS.len());
        let mut acc = 0.0;
        for r in 0..TASKS.len() {
            acc += 1.0 / ((r + 1) as f64).powf(ZIPF_S);
            task_cum.push(acc);
        }
        for c in &mut task_cum {
            *c /= acc;
        }

        let mut tasks = Vec::with_capacity(TASKS.len());
        for t in &TASKS {
            let mut weights = [EXPLORE_WEIGHT; N_MODELS];
            for &(m, wt) in t.mix {
                weights[m] += wt;
            }
            let total: f64 = weights.iter().sum();
            let mut mix_cum = [0.0; N_MODELS];
            let mut acc = 0.0;
            for (i, wt) in weights.iter().enumerate() {
                acc += wt / total;
                mix_cum[i] = acc;
            }
            mix_cum[N_MODELS - 1] = 1.0;
            let mut quality = [0.0; N_MODELS];
            let mut beta = Vec::with_capacity(N_MODELS);
            for (m, q) in quality.iter_mut().enumerate() {
                *q = quality_of(t, m);
                beta.push(if t.judge {
                    Some(
                        Beta::new(*q * JUDGE_CONCENTRATION, (1.0 - *q) * JUDGE_CONCENTRATION)
                            .map_err(|e| invalid(format!("quality table: {e}")))?,
                    )
                } else {
                    None
                });
            }
            tasks.push(TaskRt {
                mix_cum,
                quality,
                beta,
            });
        }
        Ok(Ctx {
            n: opts.requests,
            seed: opts.seed,
            id_key: mix64(opts.seed ^ 0x5157_4954_4348_5944),
            start_us,
            cdf,
            load,
            task_cum,
            tasks,
            prices,
            feedback_share: opts.feedback_share,
        })
    }

    /// Timestamp of record slot `i`: stratified inverse-CDF sampling, so slots are sorted.
    fn slot_ts(&self, i: u64, u: f64) -> (i64, usize) {
        let q = (i as f64 + u) / self.n as f64;
        let hours = self.cdf.len() - 1;
        let b = self.cdf.partition_point(|&c| c <= q).clamp(1, hours) - 1;
        let width = self.cdf[b + 1] - self.cdf[b];
        let frac = if width > 0.0 {
            ((q - self.cdf[b]) / width).clamp(0.0, 1.0)
        } else {
            0.5
        };
        let ts = self.start_us + ((b as f64 + frac) * 3_600_000_000.0) as i64;
        (ts, b)
    }

    fn chunk(&self, c: u64, buf: &mut Vec<u8>) -> GenerateStats {
        let mut g = ChunkGen {
            ctx: self,
            rng: Pcg64Mcg::seed_from_u64(mix64(self.seed) ^ mix64(c.wrapping_add(0xC0FF_EE00))),
            buf,
            stats: GenerateStats::default(),
        };
        let first = c * CHUNK;
        let end = (first + CHUNK).min(self.n);
        let start_len = g.buf.len();
        let mut i = first;
        while i < end {
            i = g.request(i, end);
        }
        g.stats.bytes = (g.buf.len() - start_len) as u64;
        g.stats
    }
}

/// A request id: gateway prefix + 24 base62 characters, 11 of them a bijection of the record's
/// global index (so ids never repeat within a run), the rest random.
#[derive(Clone, Copy)]
struct Id {
    bytes: [u8; 40],
    len: usize,
}

impl Id {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn push_base62(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = BASE62[(v % 62) as usize];
        v /= 62;
    }
}

struct ChunkGen<'a> {
    ctx: &'a Ctx,
    rng: Pcg64Mcg,
    buf: &'a mut Vec<u8>,
    stats: GenerateStats,
}

/// Token counts of one successful attempt.
struct Tokens {
    prompt: u64,
    completion: u64,
    cached: u64,
    cache_write: u64,
    reasoning: u64,
    visible: u64,
    length: bool,
}

/// The who of a request.
struct Who<'t> {
    task: &'t TaskSpec,
    gateway: Gateway,
    env_dev: bool,
    user: u32,
    streamed: bool,
}

impl ChunkGen<'_> {
    fn unit(&mut self) -> f64 {
        self.rng.random::<f64>()
    }

    fn normal(&mut self) -> f64 {
        StandardNormal.sample(&mut self.rng)
    }

    /// exp(N(ln median, sigma²)).
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    fn new_id(&mut self, gateway: Gateway, index: u64) -> Id {
        let mut id = Id {
            bytes: [0; 40],
            len: 0,
        };
        let p = gateway.id_prefix();
        id.bytes[..p.len()].copy_from_slice(p);
        let s = p.len();
        let r: u64 = self.rng.random();
        let r2: u64 = self.rng.random();
        push_base62(&mut id.bytes[s..s + 2], r2);
        push_base62(&mut id.bytes[s + 2..s + 13], r);
        push_base62(
            &mut id.bytes[s + 13..s + 24],
            mix64(index ^ self.ctx.id_key),
        );
        id.len = s + 24;
        id
    }

    fn pick_task(&mut self) -> usize {
        let u = self.unit();
        self.ctx
            .task_cum
            .iter()
            .position(|&c| u < c)
            .unwrap_or(TASKS.len() - 1)
    }

    fn pick_model(&mut self, task: usize) -> usize {
        let u = self.unit();
        self.ctx.tasks[task]
            .mix_cum
            .iter()
            .position(|&c| u < c)
            .unwrap_or(N_MODELS - 1)
    }

    /// Generates one logical request starting at slot `i` (its failed attempts, retries and
    /// feedback); returns the next free slot.
    fn request(&mut self, mut i: u64, end: u64) -> u64 {
        let u = self.unit();
        let (ts, bucket) = self.ctx.slot_ts(i, u);
        let load = self.ctx.load[bucket];
        let task_idx = self.pick_task();
        let task = &TASKS[task_idx];
        let mut model = self.pick_model(task_idx);
        let gateway = TEAMS[task.team].1;
        let env_dev = self.unit() < 0.08;
        let user = if task.users == 0 {
            0
        } else {
            // Log-uniform over 1..=users: a few heavy users, a long tail.
            (f64::from(task.users).powf(self.unit()) as u32).clamp(1, task.users)
        };
        let streamed = self.unit() < task.stream_p;
        let who = Who {
            task,
            gateway,
            env_dev,
            user,
            streamed,
        };
        // The request's own lengths, before the model's verbosity.
        let variable_prompt = self.lognormal(task.prompt.0, task.prompt.1).max(1.0);
        let completion_z = self.normal();

        let mut parent: Option<Id> = None;
        let mut attempt = 1u32;
        let mut at = ts;
        loop {
            let id = self.new_id(gateway, i);
            i += 1;
            let spec = &MODELS[model];
            let p_err = spec.error_rate * (0.4 + 1.2 * load);
            if self.unit() < p_err {
                let latency = self.write_error(&who, &id, at, model, attempt, parent.as_ref());
                self.stats.errors += 1;
                self.stats.requests += 1;
                let r = self.unit();
                if attempt >= 3 || i >= end || r >= 0.93 {
                    return i; // the client gave up
                }
                if r >= 0.65 {
                    model = spec.fallback;
                }
                let backoff = self.lognormal(800.0 * f64::from(attempt), 0.5);
                at += ((latency + backoff) * 1000.0) as i64;
                parent = parent.or(Some(id));
                attempt += 1;
                continue;
            }
            let tokens = self.tokens(task, model, variable_prompt, completion_z);
            let (latency, ttft) = self.latency(model, &tokens, load);
            self.write_success(
                &who,
                &id,
                at,
                model,
                attempt,
                parent.as_ref(),
                &tokens,
                latency,
                ttft,
            );
            self.stats.requests += 1;
            if self.unit() < self.ctx.feedback_share {
                let fb_ts = at
                    + (latency * 1000.0) as i64
                    + (self.lognormal(20.0, 1.0) * 1_000_000.0) as i64;
                self.write_feedback(&id, fb_ts, task_idx, model);
                self.stats.feedback += 1;
            }
            return i;
        }
    }

    fn tokens(&mut self, task: &TaskSpec, model: usize, variable_prompt: f64, z: f64) -> Tokens {
        let spec = &MODELS[model];
        let prompt = u64::from(task.prefix) + variable_prompt.round() as u64;
        let raw = task.completion.0 * spec.verbosity * (task.completion.1 * z).exp();
        let raw = raw.round().max(1.0) as u64;
        let max = u64::from(task.max_completion);
        let (visible, length) = if raw >= max {
            (max, true)
        } else {
            (raw, false)
        };
        let (share, base, per) = spec.reasoning;
        let reasoning = if share > 0.0 && self.unit() < share {
            let r = (base + per * visible as f64) * (0.7 * self.normal()).exp();
            (r.round() as u64).clamp(8, 25_000)
        } else {
            0
        };
        let prefix = u64::from(task.prefix);
        let (mut cached, mut cache_write) = (0, 0);
        match spec.cache {
            Cache::None => {}
            Cache::Auto { min, unit, p_hit } => {
                if prefix >= u64::from(min) && self.unit() < p_hit {
                    cached = prefix / u64::from(unit) * u64::from(unit);
                }
            }
            Cache::Explicit { min, p_hit } => {
                if prefix >= u64::from(min) {
                    if self.unit() < p_hit {
                        cached = prefix;
                    } else {
                        cache_write = prefix;
                    }
                }
            }
        }
        Tokens {
            prompt,
            completion: visible + reasoning,
            cached,
            cache_write,
            reasoning,
            visible,
            length,
        }
    }

    /// (latency_ms, ttft_ms) of a successful attempt.
    fn latency(&mut self, model: usize, t: &Tokens, load: f64) -> (f64, f64) {
        let spec = &MODELS[model];
        let tps = spec.tps * (0.2 * self.normal()).exp() / (1.0 + 0.15 * load);
        let uncached = (t.prompt - t.cached) as f64;
        let ttft = spec.ttft_ms * (0.35 * self.normal()).exp() * (1.0 + 0.25 * load)
            + uncached / spec.prefill_tps * 1000.0
            + t.reasoning as f64 / tps * 1000.0;
        let latency = ttft + t.visible as f64 / tps * 1000.0;
        (latency, ttft)
    }

    fn head(&mut self, who: &Who, id: &Id, ts: i64, model: usize) {
        let b = &mut *self.buf;
        b.extend_from_slice(b"{\"request_id\":\"");
        b.extend_from_slice(id.as_bytes());
        b.extend_from_slice(b"\",\"ts\":\"");
        push_ts(b, ts);
        b.extend_from_slice(b"\",\"gateway\":\"");
        b.extend_from_slice(who.gateway.name().as_bytes());
        b.extend_from_slice(b"\",\"model\":\"");
        b.extend_from_slice(MODELS[model].name.as_bytes());
        b.extend_from_slice(b"\",\"task\":\"");
        b.extend_from_slice(who.task.name.as_bytes());
        b.extend_from_slice(b"\",\"app\":\"");
        b.extend_from_slice(who.task.app.as_bytes());
        b.extend_from_slice(b"\",\"team_id\":\"");
        let team = TEAMS[who.task.team].0;
        b.extend_from_slice(team.as_bytes());
        b.extend_from_slice(b"\",\"key_id\":\"key_");
        b.extend_from_slice(who.task.app.as_bytes());
        b.extend_from_slice(if who.env_dev { b"_dev" } else { b"_prod" });
        b.extend_from_slice(b"\",\"user_id\":\"");
        if who.user == 0 {
            b.extend_from_slice(b"svc-");
            b.extend_from_slice(who.task.app.as_bytes());
        } else {
            b.extend_from_slice(b"user-");
            b.extend_from_slice(team.as_bytes());
            b.push(b'-');
            push_u64_padded(b, u64::from(who.user), 4);
        }
        b.push(b'"');
        if who.gateway == Gateway::LiteLlm {
            b.extend_from_slice(if who.env_dev {
                b",\"metadata\":{\"env\":\"dev\"}".as_slice()
            } else {
                b",\"metadata\":{\"env\":\"prod\"}".as_slice()
            });
        }
    }

    /// `attempt` (when `always` or a retry) and `parent_id` (on retries).
    fn tail_attempt(&mut self, attempt: u32, parent: Option<&Id>, always: bool) {
        let b = &mut *self.buf;
        if always || attempt > 1 {
            b.extend_from_slice(b",\"attempt\":");
            push_u64(b, u64::from(attempt));
        }
        if let Some(p) = parent {
            b.extend_from_slice(b",\"parent_id\":\"");
            b.extend_from_slice(p.as_bytes());
            b.push(b'"');
        }
    }

    /// Writes a failed attempt; returns its latency in ms.
    fn write_error(
        &mut self,
        who: &Who,
        id: &Id,
        ts: i64,
        model: usize,
        attempt: u32,
        parent: Option<&Id>,
    ) -> f64 {
        let r = self.unit();
        let (status, error, latency): (u64, &[u8], f64) = if r < 0.5 {
            (
                429,
                b"Rate limit reached: too many requests, please retry after a short wait",
                self.lognormal(120.0, 0.5),
            )
        } else if r < 0.82 {
            (
                503,
                b"Service unavailable: the model is overloaded",
                self.lognormal(2500.0, 0.9),
            )
        } else {
            (
                500,
                b"Internal server error from upstream provider",
                self.lognormal(900.0, 0.8),
            )
        };
        self.head(who, id, ts, model);
        let b = &mut *self.buf;
        b.extend_from_slice(b",\"latency_ms\":");
        push_fixed1(b, latency);
        b.extend_from_slice(if who.streamed {
            b",\"streamed\":true".as_slice()
        } else {
            b",\"streamed\":false".as_slice()
        });
        b.extend_from_slice(b",\"status\":");
        push_u64(b, status);
        b.extend_from_slice(b",\"error\":\"");
        b.extend_from_slice(error);
        b.push(b'"');
        // A failed first attempt says so, so its retries can be told from fresh requests.
        self.tail_attempt(attempt, parent, true);
        self.buf.extend_from_slice(b"}\n");
        latency
    }

    #[allow(clippy::too_many_arguments)]
    fn write_success(
        &mut self,
        who: &Who,
        id: &Id,
        ts: i64,
        model: usize,
        attempt: u32,
        parent: Option<&Id>,
        t: &Tokens,
        latency: f64,
        ttft: f64,
    ) {
        // OpenRouter reports the cost of many generations itself (the rest come through its
        // OpenAI-compatible responses without `usage.cost`).
        let reported = who.gateway == Gateway::OpenRouter && self.unit() < 0.6;
        self.head(who, id, ts, model);
        let b = &mut *self.buf;
        b.extend_from_slice(b",\"prompt_tokens\":");
        push_u64(b, t.prompt);
        b.extend_from_slice(b",\"completion_tokens\":");
        push_u64(b, t.completion);
        if t.cached > 0 {
            b.extend_from_slice(b",\"cached_tokens\":");
            push_u64(b, t.cached);
        }
        if t.cache_write > 0 {
            b.extend_from_slice(b",\"cache_write_tokens\":");
            push_u64(b, t.cache_write);
        }
        if t.reasoning > 0 {
            b.extend_from_slice(b",\"reasoning_tokens\":");
            push_u64(b, t.reasoning);
        }
        if reported {
            let usage = Usage {
                prompt: t.prompt as i64,
                completion: t.completion as i64,
                cached: t.cached as i64,
                cache_write: t.cache_write as i64,
                reasoning: t.reasoning as i64,
            };
            let cost = self.ctx.prices[model].cost(&usage).normalize();
            b.extend_from_slice(b",\"cost_usd\":");
            // Decimal's Display never uses exponents; `write!` into a Vec cannot fail.
            let _ = write!(b, "{cost}");
            self.stats.reported_cost += 1;
        }
        b.extend_from_slice(b",\"latency_ms\":");
        push_fixed1(b, latency);
        if who.streamed {
            b.extend_from_slice(b",\"ttft_ms\":");
            push_fixed1(b, ttft);
            b.extend_from_slice(b",\"streamed\":true");
        } else {
            b.extend_from_slice(b",\"streamed\":false");
        }
        b.extend_from_slice(b",\"status\":200,\"finish_reason\":\"");
        b.extend_from_slice(if t.length { b"length" } else { b"stop" });
        b.push(b'"');
        self.tail_attempt(attempt, parent, false);
        self.buf.extend_from_slice(b"}\n");
    }

    fn write_feedback(&mut self, id: &Id, ts: i64, task: usize, model: usize) {
        let rt = &self.ctx.tasks[task];
        let b = &mut *self.buf;
        b.extend_from_slice(b"{\"request_id\":\"");
        b.extend_from_slice(id.as_bytes());
        b.extend_from_slice(b"\",\"ts\":\"");
        push_ts(b, ts);
        b.extend_from_slice(b"\",\"metric\":\"quality\",\"value\":");
        match &rt.beta[model] {
            Some(beta) => {
                let v: f64 = beta.sample(&mut self.rng);
                push_fixed3(self.buf, v.clamp(0.0, 1.0));
            }
            None => {
                let ok = self.rng.random::<f64>() < rt.quality[model];
                self.buf.push(if ok { b'1' } else { b'0' });
            }
        }
        self.buf.extend_from_slice(b",\"source\":\"judge\"}\n");
    }
}

// ---- fast formatting -------------------------------------------------------------------------

fn push_u64(b: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    b.extend_from_slice(&tmp[i..]);
}

/// `v` with at least `width` digits, zero-padded.
fn push_u64_padded(b: &mut Vec<u8>, v: u64, width: usize) {
    let mut tmp = [b'0'; 20];
    let mut i = tmp.len();
    let mut v = v;
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let start = i.min(tmp.len() - width.min(20));
    b.extend_from_slice(&tmp[start..]);
}

/// A non-negative number with one decimal.
fn push_fixed1(b: &mut Vec<u8>, x: f64) {
    let t = (x.max(0.0) * 10.0).round() as u64;
    push_u64(b, t / 10);
    b.push(b'.');
    b.push(b'0' + (t % 10) as u8);
}

/// A number in [0, 1] with three decimals.
fn push_fixed3(b: &mut Vec<u8>, x: f64) {
    let t = (x.clamp(0.0, 1.0) * 1000.0).round() as u64;
    push_u64(b, t / 1000);
    b.push(b'.');
    push_u64_padded(b, t % 1000, 3);
}

/// RFC 3339 UTC with milliseconds: `2026-11-24T13:45:12.345Z`.
fn push_ts(b: &mut Vec<u8>, ts_us: i64) {
    let ms = ts_us.div_euclid(1000);
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    push_u64_padded(b, y.max(0) as u64, 4);
    b.push(b'-');
    push_u64_padded(b, u64::from(mo), 2);
    b.push(b'-');
    push_u64_padded(b, u64::from(d), 2);
    b.push(b'T');
    push_u64_padded(b, (rem / 3_600_000) as u64, 2);
    b.push(b':');
    push_u64_padded(b, (rem / 60_000 % 60) as u64, 2);
    b.push(b':');
    push_u64_padded(b, (rem / 1000 % 60) as u64, 2);
    b.push(b'.');
    push_u64_padded(b, (rem % 1000) as u64, 3);
    b.push(b'Z');
}

// ---- driver ----------------------------------------------------------------------------------

/// Writes `opts.requests` request records and their feedback records to `out` as NDJSON.
///
/// Deterministic: the same options give the same bytes, whatever `opts.threads`. Every model
/// must have a price in `catalog` (the embedded one has them all).
pub fn generate(
    opts: &GenerateOptions,
    catalog: &PriceCatalog,
    out: &mut dyn Write,
) -> io::Result<GenerateStats> {
    let ctx = Ctx::new(opts, catalog)?;
    let chunks = opts.requests.div_ceil(CHUNK);
    let threads = match opts.threads {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8),
        t => t,
    }
    .min(chunks.max(1) as usize);
    let mut stats = GenerateStats::default();
    let cap = (CHUNK as usize) * 520;
    if threads <= 1 {
        let mut buf = Vec::with_capacity(cap.min(opts.requests as usize * 520 + 1024));
        for c in 0..chunks {
            buf.clear();
            let s = ctx.chunk(c, &mut buf);
            out.write_all(&buf)?;
            stats.add(&s);
        }
        return Ok(stats);
    }
    std::thread::scope(|scope| {
        let mut full = Vec::with_capacity(threads);
        let mut free = Vec::with_capacity(threads);
        for t in 0..threads {
            let (tx, rx) = mpsc::sync_channel::<(Vec<u8>, GenerateStats)>(1);
            let (ftx, frx) = mpsc::channel::<Vec<u8>>();
            let ctx = &ctx;
            scope.spawn(move || {
                let mut c = t as u64;
                while c < chunks {
                    let mut buf = frx.try_recv().unwrap_or_else(|_| Vec::with_capacity(cap));
                    buf.clear();
                    let s = ctx.chunk(c, &mut buf);
                    if tx.send((buf, s)).is_err() {
                        return;
                    }
                    c += threads as u64;
                }
            });
            full.push(rx);
            free.push(ftx);
        }
        for c in 0..chunks {
            let t = (c % threads as u64) as usize;
            let (buf, s) = full[t]
                .recv()
                .map_err(|_| io::Error::other("a generator thread stopped early"))?;
            out.write_all(&buf)?;
            stats.add(&s);
            let _ = free[t].send(buf);
        }
        Ok(stats)
    })
}
