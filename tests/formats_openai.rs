//! OpenAI-style completion responses (OpenAI, OpenRouter, Anthropic-style usage) and OpenRouter
//! generation stats: auto-detection, field mapping, and costs checked against hand arithmetic
//! on the prices in `data/prices.json`. Fixtures live in `tests/fixtures/{openai,openrouter}/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common::{d, us};
use std::path::PathBuf;
use std::sync::OnceLock;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use switchyard::formats::{Format, detect, parse_body};
use switchyard::prices::PriceCatalog;
use switchyard::record::{CostSource, Item, Record};

const NOW_US: i64 = 1_772_500_000_000_000;

fn fixture(dir: &str, name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The embedded catalog, parsed once for the whole test binary's use here.
pub(crate) fn catalog() -> &'static PriceCatalog {
    static CAT: OnceLock<PriceCatalog> = OnceLock::new();
    CAT.get_or_init(|| PriceCatalog::embedded().unwrap())
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn detected(bytes: &[u8]) -> Format {
    detect(json_of(bytes).as_object().unwrap())
}

/// Parses one record and finishes it against the embedded catalog.
fn parse(bytes: &[u8], format: Format) -> Result<Record, String> {
    let p = parse_body(bytes, format, NOW_US);
    if let Some((_, e)) = p.rejected.first() {
        return Err(e.clone());
    }
    assert_eq!(p.items.len(), 1, "one record expected");
    match p.items.into_iter().next().unwrap().1 {
        Item::Request(r) => r.finish(catalog()),
        other => panic!("expected a request record, got {other:?}"),
    }
}

fn parse_value(v: &Value, format: Format) -> Result<Record, String> {
    parse(v.to_string().as_bytes(), format)
}

/// A fixture, checking that auto-detection picks `expect` for it.
fn load(dir: &str, name: &str, expect: Format) -> Record {
    let b = fixture(dir, name);
    assert_eq!(detected(&b), expect, "{name} detected as the wrong shape");
    parse(&b, Format::Auto).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A field an error must name, and how to break it.
type Case = (&'static str, Box<dyn Fn(&mut Value)>);

fn assert_catalog(r: &Record, expected: Decimal) {
    assert_eq!(r.cost_source, Some(CostSource::Catalog), "{}", r.request_id);
    assert_eq!(r.cost_usd, Some(expected), "{}", r.request_id);
}

fn assert_reported(r: &Record, expected: Decimal) {
    assert_eq!(
        r.cost_source,
        Some(CostSource::Reported),
        "{}",
        r.request_id
    );
    assert_eq!(r.cost_usd, Some(expected), "{}", r.request_id);
}

// ---- OpenAI chat completions ------------------------------------------------------------------

#[test]
fn openai_basic_response_with_side_fields() {
    let r = load("openai", "chat_completion_basic.json", Format::Openai);
    assert_eq!(r.request_id, "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT");
    assert_eq!(r.model, "gpt-4o-mini-2024-07-18");
    // The `ts` side field wins over `created`.
    assert_eq!(r.ts_us, us("2026-03-02T14:05:07.250Z"));
    assert_eq!(r.task.as_deref(), Some("summarize"));
    assert_eq!(r.gateway.as_deref(), Some("openai"));
    assert_eq!(r.provider.as_deref(), Some("openai"));
    assert_eq!(r.key_id.as_deref(), Some("team-search"));
    assert_eq!(r.user_id.as_deref(), Some("u-1029"));
    assert_eq!(r.team_id.as_deref(), Some("search"));
    assert_eq!(r.app.as_deref(), Some("support-bot"));
    assert_eq!(r.prompt_tokens, Some(1200));
    assert_eq!(r.completion_tokens, Some(150));
    assert_eq!(r.cached_tokens, Some(0));
    assert_eq!(r.reasoning_tokens, Some(0));
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    assert_eq!(r.status, Some(200));
    assert_eq!(r.error, None);
    assert_eq!(r.latency_ms, Some(1843.5));
    assert_eq!(r.streamed, None);
    assert_eq!(r.metadata.get("env").map(String::as_str), Some("prod"));
    assert_eq!(
        r.metadata.get("region").map(String::as_str),
        Some("eu-west-1")
    );
    assert_eq!(
        r.metadata.get("service_tier").map(String::as_str),
        Some("default")
    );
    for k in [
        "choices",
        "usage",
        "object",
        "system_fingerprint",
        "task",
        "latency_ms",
        "ts",
    ] {
        assert!(!r.metadata.contains_key(k), "{k} leaked into metadata");
    }
    // gpt-4o-mini: 1200 input × 0.15 + 150 output × 0.6 USD per 1M tokens.
    assert_catalog(&r, d("0.00027"));
}

#[test]
fn openai_cached_prompt_is_priced_at_the_cache_rate() {
    let r = load("openai", "chat_completion_cached.json", Format::Openai);
    // No `ts` side field: `created` (epoch seconds) is the start.
    assert_eq!(r.ts_us, 1_772_463_600_000_000);
    assert_eq!(r.task.as_deref(), Some("extract"));
    assert_eq!(r.prompt_tokens, Some(5000));
    assert_eq!(r.cached_tokens, Some(3840));
    assert_eq!(r.completion_tokens, Some(420));
    // gpt-4o: (5000 - 3840) × 2.5 + 3840 × 1.25 + 420 × 10 = 2900 + 4800 + 4200 = 11900 µUSD.
    assert_catalog(&r, d("0.0119"));
}

#[test]
fn openai_reasoning_tokens_and_epoch_ms_ts() {
    let r = load("openai", "chat_completion_reasoning.json", Format::Openai);
    assert_eq!(r.ts_us, 1_772_467_200_125_000);
    assert_eq!(r.completion_tokens, Some(2310));
    assert_eq!(r.reasoning_tokens, Some(1856));
    assert_eq!(r.attempt, Some(2));
    assert_eq!(
        r.parent_id.as_deref(),
        Some("chatcmpl-D7kq0AbCdEfGhIjKlMnOpQrStUvWx")
    );
    // o4-mini: 850 × 1.1 + 2310 × 4.4 (reasoning billed as output) = 935 + 10164 µUSD.
    assert_catalog(&r, d("0.011099"));
}

#[test]
fn openai_final_stream_chunk_is_streamed() {
    let r = load("openai", "stream_final_chunk.json", Format::Openai);
    assert_eq!(r.streamed, Some(true));
    assert_eq!(r.ts_us, us("2026-03-02T17:00:00.500Z"));
    assert_eq!(r.latency_ms, Some(2450.25));
    assert_eq!(r.ttft_ms, Some(310.75));
    assert_eq!(r.finish_reason, None);
    assert_eq!(r.route.as_deref(), Some("chat/default"));
    assert_eq!(
        r.policy_version.as_deref(),
        Some("2026-03-01T10:00:00Z-7f3a")
    );
    // gpt-4.1-mini: 640 × 0.4 + 212 × 1.6 = 256 + 339.2 µUSD.
    assert_catalog(&r, d("0.0005952"));
}

#[test]
fn openrouter_completion_reports_its_cost() {
    let r = load("openai", "openrouter_completion_cost.json", Format::Openai);
    assert_eq!(r.request_id, "gen-1772474400-Xq3RtYb8LmN2pQs7VwZa");
    assert_eq!(r.gateway.as_deref(), Some("openrouter"));
    assert_eq!(r.provider.as_deref(), Some("openai"));
    assert_eq!(r.model, "openai/gpt-4o-mini");
    assert_eq!(r.prompt_tokens, Some(194));
    assert_eq!(r.completion_tokens, Some(2));
    assert_eq!(r.task.as_deref(), Some("classify"));
    assert_reported(&r, d("0.0000303"));
}

#[test]
fn openrouter_completion_with_cache_reads_and_writes() {
    let r = load("openai", "openrouter_anthropic_cache.json", Format::Openai);
    assert_eq!(r.provider.as_deref(), Some("anthropic"));
    assert_eq!(r.prompt_tokens, Some(15320));
    assert_eq!(r.cached_tokens, Some(12800));
    assert_eq!(r.cache_write_tokens, Some(2048));
    assert_eq!(r.streamed, Some(true));
    assert_eq!(r.ttft_ms, Some(890.0));
    assert_eq!(r.user_id.as_deref(), Some("u-77"));
    assert_reported(&r, d("0.00527"));
}

#[test]
fn anthropic_style_usage_is_normalised() {
    let r = load("openai", "anthropic_style_usage.json", Format::Openai);
    // input_tokens excludes cache reads and writes: 420 + 12000 + 1500.
    assert_eq!(r.prompt_tokens, Some(13920));
    assert_eq!(r.cached_tokens, Some(12000));
    assert_eq!(r.cache_write_tokens, Some(1500));
    assert_eq!(r.completion_tokens, Some(310));
    assert_eq!(r.gateway.as_deref(), Some("switchyard"));
    assert_eq!(r.provider.as_deref(), Some("anthropic"));
    assert_eq!(r.ts_us, us("2026-03-02T20:00:00Z"));
    // claude-haiku-4-5: 420 × 1 + 12000 × 0.1 + 1500 × 1.25 + 310 × 5
    //                 = 420 + 1200 + 1875 + 1550 = 5045 µUSD.
    assert_catalog(&r, d("0.005045"));
}

#[test]
fn openrouter_mid_stream_error_is_a_failed_attempt() {
    let r = load("openai", "openrouter_stream_error.json", Format::Openai);
    assert_eq!(r.finish_reason.as_deref(), Some("error"));
    assert_eq!(r.error.as_deref(), Some("Provider returned error"));
    assert_eq!(r.status, Some(502));
    assert_eq!(r.streamed, Some(true));
    assert_eq!(r.provider.as_deref(), Some("google"));
    assert_reported(&r, d("0"));
}

#[test]
fn openai_responses_api_usage_includes_cached_input() {
    let v = json!({
        "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "object": "response",
        "created_at": 1772490000,
        "status": "completed",
        "model": "gpt-4o-mini-2024-07-18",
        "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}],
        "usage": {
            "input_tokens": 1000,
            "input_tokens_details": {"cached_tokens": 600},
            "output_tokens": 200,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 1200
        }
    });
    let r = parse_value(&v, Format::Openai).unwrap();
    assert_eq!(r.ts_us, 1_772_490_000_000_000);
    assert_eq!(r.prompt_tokens, Some(1000));
    assert_eq!(r.cached_tokens, Some(600));
    assert_eq!(r.reasoning_tokens, Some(0));
    // gpt-4o-mini: 400 × 0.15 + 600 × 0.075 + 200 × 0.6 = 60 + 45 + 120 µUSD.
    assert_catalog(&r, d("0.000225"));
}

#[test]
fn openrouter_byok_adds_the_upstream_cost() {
    let mut v = json_of(&fixture("openai", "openrouter_completion_cost.json"));
    v["usage"]["cost"] = json!(0.00001);
    v["usage"]["is_byok"] = json!(true);
    v["usage"]["cost_details"] = json!({"upstream_inference_cost": 0.000205});
    let r = parse_value(&v, Format::Auto).unwrap();
    assert_reported(&r, d("0.000215"));
}

#[test]
fn openai_unknown_scalars_go_to_metadata_and_task_from_metadata() {
    let mut v = json_of(&fixture("openai", "chat_completion_cached.json"));
    let o = v.as_object_mut().unwrap();
    o.remove("task");
    o.insert("metadata".into(), json!({"task": "ocr", "n": 3}));
    o.insert("customer".into(), json!("acme"));
    o.insert("citations".into(), json!(["https://example.com"]));
    let r = parse_value(&v, Format::Auto).unwrap();
    assert_eq!(r.task.as_deref(), Some("ocr"));
    assert_eq!(r.metadata.get("customer").map(String::as_str), Some("acme"));
    assert_eq!(r.metadata.get("n").map(String::as_str), Some("3"));
    assert!(!r.metadata.contains_key("citations"));
}

#[test]
fn openai_bad_fields_are_named() {
    let base = json_of(&fixture("openai", "chat_completion_basic.json"));
    let cases: Vec<Case> = vec![
        (
            "`usage.prompt_tokens`",
            Box::new(|v| v["usage"]["prompt_tokens"] = json!("abc")),
        ),
        (
            "`usage.prompt_tokens_details.cached_tokens`",
            Box::new(|v| v["usage"]["prompt_tokens_details"]["cached_tokens"] = json!(-5)),
        ),
        (
            "`usage.completion_tokens_details`",
            Box::new(|v| v["usage"]["completion_tokens_details"] = json!(7)),
        ),
        ("`usage`", Box::new(|v| v["usage"] = json!("lots"))),
        (
            "`id`",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("id");
            }),
        ),
        ("`model`", Box::new(|v| v["model"] = json!(""))),
        ("`ts`", Box::new(|v| v["ts"] = json!("yesterday"))),
        (
            "`created`",
            Box::new(|v| {
                let o = v.as_object_mut().unwrap();
                o.remove("ts");
                o.remove("created");
            }),
        ),
        (
            "`choices`",
            Box::new(|v| v["choices"] = json!({"finish_reason": "stop"})),
        ),
        (
            "`latency_ms`",
            Box::new(|v| v["latency_ms"] = json!("fast")),
        ),
        (
            "`metadata`",
            Box::new(|v| v["metadata"] = json!("env=prod")),
        ),
        (
            "`usage.cost`",
            Box::new(|v| v["usage"]["cost"] = json!("cheap")),
        ),
    ];
    for (field, mutate) in cases {
        let mut v = base.clone();
        mutate(&mut v);
        let e = parse_value(&v, Format::Openai).expect_err(field);
        assert!(e.contains(field), "error {e:?} should name {field}");
    }
    // Anthropic-style counts too large to be real are refused before any arithmetic.
    let mut v = json_of(&fixture("openai", "anthropic_style_usage.json"));
    v["usage"]["input_tokens"] = json!(i64::MAX);
    let e = parse_value(&v, Format::Openai).unwrap_err();
    assert!(e.contains("`usage.input_tokens`"), "{e}");
}

// ---- OpenRouter generation stats ---------------------------------------------------------------

#[test]
fn generation_stats_prefer_native_counts() {
    let r = load("openrouter", "generation_basic.json", Format::Openrouter);
    assert_eq!(r.request_id, "gen-1772460307-Kd8sLq2WmZx4RbT9VnYc");
    assert_eq!(r.model, "openai/gpt-4o-mini");
    assert_eq!(r.ts_us, us("2026-03-02T14:05:07.433273Z"));
    assert_eq!(r.gateway.as_deref(), Some("openrouter"));
    assert_eq!(r.provider.as_deref(), Some("openai"));
    assert_eq!(r.prompt_tokens, Some(1165));
    assert_eq!(r.completion_tokens, Some(141));
    assert_eq!(r.cached_tokens, Some(0));
    assert_eq!(r.reasoning_tokens, Some(0));
    assert_eq!(r.user_id.as_deref(), Some("u-1029"));
    assert_eq!(r.app.as_deref(), Some("1840321"));
    assert_eq!(r.streamed, Some(false));
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    assert_eq!(r.latency_ms, Some(1250.0));
    assert_eq!(r.task.as_deref(), Some("default"));
    assert_eq!(r.status, Some(200));
    let m = |k: &str| r.metadata.get(k).map(String::as_str);
    assert_eq!(
        m("upstream_id"),
        Some("chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT")
    );
    assert_eq!(m("generation_time"), Some("1190"));
    assert_eq!(m("moderation_latency"), Some("48"));
    assert_eq!(m("origin"), Some("https://support.example.com/"));
    assert_eq!(m("tokens_prompt"), Some("1130"));
    assert_reported(&r, d("0.0002595"));
}

#[test]
fn generation_stats_without_cost_are_priced_on_native_counts() {
    let mut v = json_of(&fixture("openrouter", "generation_basic.json"));
    let o = v.as_object_mut().unwrap();
    o.remove("total_cost");
    o.remove("usage");
    let r = parse_value(&v, Format::Auto).unwrap();
    // gpt-4o-mini on the native counts: 1165 × 0.15 + 141 × 0.6 = 174.75 + 84.6 µUSD.
    assert_catalog(&r, d("0.00025935"));
}

#[test]
fn generation_stats_cached_anthropic() {
    let r = load(
        "openrouter",
        "generation_cached_anthropic.json",
        Format::Openrouter,
    );
    assert_eq!(r.prompt_tokens, Some(18054));
    assert_eq!(r.cached_tokens, Some(18041));
    assert_eq!(r.completion_tokens, Some(120));
    assert_eq!(r.streamed, Some(true));
    assert_eq!(r.provider.as_deref(), Some("anthropic"));
    // The larger of `latency` (890) and `generation_time` (4020).
    assert_eq!(r.latency_ms, Some(4020.0));
    assert_eq!(r.user_id, None);
    assert_eq!(
        r.metadata.get("provider_responses").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        r.metadata.get("cache_discount").map(String::as_str),
        Some("0.0487296")
    );
    assert_reported(&r, d("0.0074193"));
}

#[test]
fn generation_stats_reasoning_outside_completion_is_folded_in() {
    let r = load(
        "openrouter",
        "generation_reasoning.json",
        Format::Openrouter,
    );
    assert_eq!(r.reasoning_tokens, Some(980));
    // native completion 140 excluded the 980 reasoning tokens.
    assert_eq!(r.completion_tokens, Some(1120));
    assert_eq!(r.provider.as_deref(), Some("google ai studio"));
    assert_eq!(
        r.metadata.get("router").map(String::as_str),
        Some("openrouter/auto")
    );
    assert_reported(&r, d("0.0028375"));
}

#[test]
fn generation_stats_cancelled_is_an_error() {
    let r = load(
        "openrouter",
        "generation_cancelled.json",
        Format::Openrouter,
    );
    assert_eq!(r.error.as_deref(), Some("cancelled"));
    assert_eq!(r.status, Some(499));
    assert_eq!(r.finish_reason, None);
    assert_eq!(r.user_id.as_deref(), Some("u-4410"));
    assert_reported(&r, d("0.000412"));
}

#[test]
fn generation_stats_byok_adds_upstream_cost() {
    let r = load("openrouter", "generation_byok.json", Format::Openrouter);
    assert_eq!(r.finish_reason.as_deref(), Some("length"));
    assert_eq!(r.cached_tokens, Some(256));
    assert_eq!(r.provider.as_deref(), Some("deepseek"));
    // 0.00001 OpenRouter fee + 0.000205 billed by the provider on the user's own key.
    assert_reported(&r, d("0.000215"));
}

#[test]
fn generation_stats_data_wrapper_and_side_fields() {
    let inner = json_of(&fixture("openrouter", "generation_basic.json"));
    let v = json!({"data": inner, "task": "support-reply", "key_id": "or-key-1"});
    let r = parse_value(&v, Format::Openrouter).unwrap();
    assert_eq!(r.request_id, "gen-1772460307-Kd8sLq2WmZx4RbT9VnYc");
    assert_eq!(r.task.as_deref(), Some("support-reply"));
    assert_eq!(r.key_id.as_deref(), Some("or-key-1"));
    assert_reported(&r, d("0.0002595"));
}

#[test]
fn generation_stats_bad_fields_are_named() {
    let base = json_of(&fixture("openrouter", "generation_basic.json"));
    let cases: Vec<Case> = vec![
        (
            "`native_tokens_prompt`",
            Box::new(|v| v["native_tokens_prompt"] = json!("abc")),
        ),
        (
            "`native_tokens_cached`",
            Box::new(|v| v["native_tokens_cached"] = json!(1.5)),
        ),
        ("`total_cost`", Box::new(|v| v["total_cost"] = json!([1]))),
        (
            "`created_at`",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("created_at");
            }),
        ),
        (
            "`created_at`",
            Box::new(|v| v["created_at"] = json!("last tuesday")),
        ),
        ("`latency`", Box::new(|v| v["latency"] = json!({"ms": 3}))),
        ("`streamed`", Box::new(|v| v["streamed"] = json!(1))),
        ("`id`", Box::new(|v| v["id"] = json!(null))),
    ];
    for (field, mutate) in cases {
        let mut v = base.clone();
        mutate(&mut v);
        let e = parse_value(&v, Format::Openrouter).expect_err(field);
        assert!(e.contains(field), "error {e:?} should name {field}");
    }
    let e = parse_value(&json!({"data": 5}), Format::Openrouter).unwrap_err();
    assert!(e.contains("`data`"), "{e}");
}

// ---- robustness --------------------------------------------------------------------------------

/// Every fixture with each field (down to depth 3) swapped for odd values parses or is
/// rejected, never panics.
#[test]
fn mutated_fixtures_never_panic() {
    for dir in ["openai", "openrouter"] {
        let mut names: Vec<_> = std::fs::read_dir(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(dir),
        )
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
        names.sort();
        assert!(names.len() >= 5, "{dir}: want several fixtures");
        for name in names {
            let v = json_of(&fixture(dir, &name));
            for_each_mutation(&v, &mut |m| {
                let _ = parse_value(m, Format::Auto);
                let _ = parse_value(m, Format::Openai);
                let _ = parse_value(m, Format::Openrouter);
            });
        }
    }
}

fn odd_values() -> Vec<Value> {
    vec![
        Value::Null,
        json!(true),
        json!(-1),
        json!(1e300),
        json!(-9.5e18),
        json!(i64::MAX),
        json!("x"),
        json!([]),
        json!({}),
    ]
}

pub(crate) fn for_each_mutation(v: &Value, f: &mut dyn FnMut(&Value)) {
    fn walk(root: &Value, path: &mut Vec<String>, f: &mut dyn FnMut(&Value)) {
        let node = path.iter().fold(root, |n, k| &n[k.as_str()]);
        let Value::Object(m) = node else { return };
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            path.push(k);
            for odd in odd_values() {
                let mut copy = root.clone();
                let slot = path.iter().fold(&mut copy, |n, k| &mut n[k.as_str()]);
                *slot = odd;
                f(&copy);
            }
            if path.len() < 3 {
                walk(root, path, f);
            }
            path.pop();
        }
    }
    walk(v, &mut Vec::new(), f);
}
