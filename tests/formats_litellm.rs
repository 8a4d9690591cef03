//! LiteLLM `StandardLoggingPayload` and `LiteLLM_SpendLogs` rows: auto-detection, field mapping,
//! task/key/user attribution and costs (reported, or computed by hand from `data/prices.json`).
//! Fixtures live in `tests/fixtures/litellm/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use crate::common::{d, us};
use std::path::PathBuf;

use serde_json::{Value, json};
use switchyard::formats::{Format, detect, parse_body};
use switchyard::record::{CostSource, Item, Record};

use crate::formats_openai::{catalog, for_each_mutation};

const NOW_US: i64 = 1_772_500_000_000_000;

fn fixture(name: &str) -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/litellm")
        .join(name);
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&b).unwrap()
}

fn parse(v: &Value, format: Format) -> Result<Record, String> {
    let p = parse_body(v.to_string().as_bytes(), format, NOW_US);
    if let Some((_, e)) = p.rejected.first() {
        return Err(e.clone());
    }
    assert_eq!(p.items.len(), 1, "one record expected");
    match p.items.into_iter().next().unwrap().1 {
        Item::Request(r) => r.finish(catalog()),
        other => panic!("expected a request record, got {other:?}"),
    }
}

/// A fixture as stored (pretty-printed), checking that auto-detection picks LiteLLM.
fn load(name: &str) -> Record {
    let v = fixture(name);
    assert_eq!(detect(v.as_object().unwrap()), Format::Litellm, "{name}");
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/litellm")
        .join(name);
    let parsed = parse_body(&std::fs::read(p).unwrap(), Format::Auto, NOW_US);
    assert!(parsed.rejected.is_empty(), "{name}: {:?}", parsed.rejected);
    parse(&v, Format::Auto).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A field an error must name, and how to break it.
type Case = (&'static str, Box<dyn Fn(&mut Value)>);

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 0.01)
}

fn meta<'a>(r: &'a Record, k: &str) -> Option<&'a str> {
    r.metadata.get(k).map(String::as_str)
}

#[test]
fn standard_logging_payload_success() {
    let r = load("slp_success_openai.json");
    assert_eq!(r.request_id, "6b1f2c3d-8e4a-4f5b-9c6d-7e8f9a0b1c2d");
    assert_eq!(r.model, "gpt-4o-mini");
    assert_eq!(r.ts_us, 1_772_460_307_123_000);
    assert!(close(r.latency_ms, 1333.0), "{:?}", r.latency_ms);
    assert_eq!(r.ttft_ms, None, "not streamed");
    assert_eq!(r.streamed, Some(false));
    assert_eq!(r.gateway.as_deref(), Some("litellm"));
    assert_eq!(r.provider.as_deref(), Some("openai"));
    // The key alias wins over the key hash.
    assert_eq!(r.key_id.as_deref(), Some("search-prod"));
    assert_eq!(r.user_id.as_deref(), Some("u-1029"));
    assert_eq!(r.team_id.as_deref(), Some("team-search"));
    assert_eq!(r.task.as_deref(), Some("classify"));
    assert_eq!(r.prompt_tokens, Some(500));
    assert_eq!(r.completion_tokens, Some(100));
    assert_eq!(r.cached_tokens, Some(0));
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    assert_eq!(r.status, Some(200));
    assert_eq!(meta(&r, "customer_tier"), Some("gold"));
    assert_eq!(meta(&r, "team_alias"), Some("Search"));
    assert_eq!(meta(&r, "end_user"), Some("cust-991"));
    assert_eq!(meta(&r, "call_type"), Some("acompletion"));
    assert_eq!(meta(&r, "model_group"), Some("gpt-4o-mini"));
    assert_eq!(
        meta(&r, "trace_id"),
        Some("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
    );
    assert_eq!(
        meta(&r, "requester_ip_address"),
        None,
        "client IPs are not copied"
    );
    assert_eq!(meta(&r, "task"), None);
    assert_eq!(r.cost_source, Some(CostSource::Reported));
    assert_eq!(r.cost_usd, Some(d("0.000135")));
}

#[test]
fn standard_logging_payload_streamed_with_cache_and_no_litellm_price() {
    let r = load("slp_streamed_bedrock_cache.json");
    assert_eq!(r.streamed, Some(true));
    assert!(close(r.ttft_ms, 412.0), "{:?}", r.ttft_ms);
    assert!(close(r.latency_ms, 3050.0), "{:?}", r.latency_ms);
    assert_eq!(r.provider.as_deref(), Some("bedrock"));
    // No alias: the key hash identifies the key.
    assert_eq!(
        r.key_id.as_deref(),
        Some("3f6a9c1e5b7d2f8a4c6e0b9d1f3a5c7e9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a")
    );
    assert_eq!(r.task.as_deref(), Some("chat"), "from the task: tag");
    assert_eq!(r.team_id.as_deref(), Some("team-support"));
    // LiteLLM's prompt_tokens already include cache reads and writes.
    assert_eq!(r.prompt_tokens, Some(13920));
    assert_eq!(r.cached_tokens, Some(12000));
    assert_eq!(r.cache_write_tokens, Some(1500));
    assert_eq!(r.completion_tokens, Some(310));
    // response_cost is null, so the catalog prices it. claude-haiku-4-5:
    // (13920 - 12000 - 1500) × 1 + 12000 × 0.1 + 1500 × 1.25 + 310 × 5
    //   = 420 + 1200 + 1875 + 1550 = 5045 µUSD.
    assert_eq!(r.cost_source, Some(CostSource::Catalog));
    assert_eq!(r.cost_usd, Some(d("0.005045")));
}

#[test]
fn standard_logging_payload_failure() {
    let r = load("slp_failure_rate_limit.json");
    assert_eq!(r.status, Some(429));
    assert!(
        r.error
            .as_deref()
            .is_some_and(|e| e.starts_with("litellm.RateLimitError")),
        "{:?}",
        r.error
    );
    assert_eq!(meta(&r, "error_class"), Some("RateLimitError"));
    assert_eq!(r.task.as_deref(), Some("summarize"));
    assert_eq!(r.prompt_tokens, Some(0));
    assert_eq!(r.cost_source, Some(CostSource::Reported));
    assert_eq!(r.cost_usd, Some(d("0")));
}

#[test]
fn standard_logging_payload_reasoning_from_response_usage() {
    let r = load("slp_reasoning_o3_mini.json");
    assert_eq!(r.reasoning_tokens, Some(960));
    assert_eq!(r.task.as_deref(), Some("planning"), "from metadata.tags");
    assert_eq!(r.key_id, None);
    assert!(close(r.latency_ms, 9500.0));
    assert_eq!(r.cost_source, Some(CostSource::Reported));
    assert_eq!(r.cost_usd, Some(d("0.00693")));

    // Without LiteLLM's figure the catalog gives the same: o3-mini
    // 1500 × 1.1 + 1200 × 4.4 (reasoning billed as output) = 1650 + 5280 µUSD.
    let mut v = fixture("slp_reasoning_o3_mini.json");
    v["response_cost"] = Value::Null;
    let r = parse(&v, Format::Auto).unwrap();
    assert_eq!(r.cost_source, Some(CostSource::Catalog));
    assert_eq!(r.cost_usd, Some(d("0.00693")));
}

#[test]
fn spend_logs_row() {
    let r = load("spendlogs_row.json");
    assert_eq!(
        r.request_id,
        "chatcmpl-2f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f"
    );
    assert_eq!(r.model, "gpt-4.1-mini");
    assert_eq!(r.ts_us, us("2026-03-02T15:00:00.12Z"));
    assert_eq!(r.latency_ms, Some(2500.0), "request_duration_ms wins");
    assert!(close(r.ttft_ms, 780.0), "{:?}", r.ttft_ms);
    // The metadata column is a JSON string here.
    assert_eq!(r.key_id.as_deref(), Some("batch-jobs"));
    assert_eq!(r.user_id.as_deref(), Some("u-5521"));
    assert_eq!(r.team_id.as_deref(), Some("team-data"));
    assert_eq!(r.app.as_deref(), Some("etl-nightly"));
    assert_eq!(r.task.as_deref(), Some("extract"));
    assert_eq!(r.prompt_tokens, Some(2048));
    assert_eq!(
        r.cached_tokens,
        Some(1024),
        "from metadata.additional_usage_values"
    );
    assert_eq!(r.reasoning_tokens, Some(0));
    assert_eq!(meta(&r, "pipeline"), Some("invoices"));
    assert_eq!(
        meta(&r, "session_id"),
        Some("f2b1c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
    );
    assert_eq!(meta(&r, "cache_hit"), Some("False"));
    assert_eq!(meta(&r, "end_user"), None, "empty strings are absent");
    assert_eq!(r.cost_source, Some(CostSource::Reported));
    assert_eq!(r.cost_usd, Some(d("0.00041")));
}

#[test]
fn spend_logs_cache_hit() {
    let r = load("spendlogs_cache_hit.json");
    assert_eq!(
        r.ts_us,
        us("2026-03-02T16:00:00Z"),
        "naive datetimes are UTC"
    );
    assert!(close(r.latency_ms, 35.0));
    assert_eq!(
        r.ttft_ms, None,
        "completionStartTime = endTime: not streamed"
    );
    assert_eq!(r.key_id.as_deref(), Some("search-prod"));
    assert_eq!(r.user_id.as_deref(), Some("u-1029"));
    assert_eq!(r.task.as_deref(), Some("faq"));
    assert_eq!(meta(&r, "cache_hit"), Some("True"));
    assert_eq!(r.cost_source, Some(CostSource::Reported));
    assert_eq!(r.cost_usd, Some(d("0")));
}

#[test]
fn task_precedence() {
    // A top-level `task` side field beats requester metadata.
    let mut v = fixture("slp_success_openai.json");
    v["task"] = json!("override");
    assert_eq!(
        parse(&v, Format::Auto).unwrap().task.as_deref(),
        Some("override")
    );
    // Without any, the task is `default`.
    let mut v = fixture("slp_success_openai.json");
    v["metadata"]["requester_metadata"] = json!({});
    assert_eq!(
        parse(&v, Format::Auto).unwrap().task.as_deref(),
        Some("default")
    );
    // Tags as a JSON string (SpendLogs export).
    let mut v = fixture("spendlogs_cache_hit.json");
    v["metadata"]["spend_logs_metadata"] = Value::Null;
    v["request_tags"] = json!("[\"env:prod\", \"task:search\"]");
    assert_eq!(
        parse(&v, Format::Auto).unwrap().task.as_deref(),
        Some("search")
    );
}

#[test]
fn anthropic_usage_counters_without_details() {
    // An older LiteLLM usage object: only the top-level Anthropic cache counters.
    let mut v = fixture("slp_streamed_bedrock_cache.json");
    v["metadata"]["usage_object"] = json!({
        "prompt_tokens": 13920,
        "completion_tokens": 310,
        "total_tokens": 14230,
        "cache_creation_input_tokens": 1500,
        "cache_read_input_tokens": 12000
    });
    let r = parse(&v, Format::Auto).unwrap();
    assert_eq!(r.cached_tokens, Some(12000));
    assert_eq!(r.cache_write_tokens, Some(1500));
    assert_eq!(r.cost_usd, Some(d("0.005045")));
}

#[test]
fn bad_fields_are_named() {
    let slp = fixture("slp_success_openai.json");
    let cases: Vec<Case> = vec![
        (
            "`prompt_tokens`",
            Box::new(|v| v["prompt_tokens"] = json!("abc")),
        ),
        (
            "`completion_tokens`",
            Box::new(|v| v["completion_tokens"] = json!(-3)),
        ),
        (
            "`response_cost`",
            Box::new(|v| v["response_cost"] = json!("a lot")),
        ),
        (
            "`startTime`",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("startTime");
            }),
        ),
        ("`endTime`", Box::new(|v| v["endTime"] = json!("soon"))),
        ("`id`", Box::new(|v| v["id"] = json!(""))),
        (
            "`model`",
            Box::new(|v| {
                let o = v.as_object_mut().unwrap();
                o.remove("model");
                o.remove("model_group");
                o["hidden_params"]["litellm_model_name"] = Value::Null;
            }),
        ),
        (
            "`metadata`",
            Box::new(|v| v["metadata"] = json!("{not json")),
        ),
        (
            "`metadata.user_api_key_alias`",
            Box::new(|v| {
                v["metadata"]["user_api_key_alias"] = json!(["a"]);
            }),
        ),
        (
            "`metadata.usage_object.prompt_tokens_details.cached_tokens`",
            Box::new(|v| {
                v["metadata"]["usage_object"]["prompt_tokens_details"]["cached_tokens"] =
                    json!("x");
            }),
        ),
        (
            "`metadata.requester_metadata`",
            Box::new(|v| {
                v["metadata"]["requester_metadata"] = json!("task=x");
            }),
        ),
        ("`request_tags`", Box::new(|v| v["request_tags"] = json!(7))),
        ("`stream`", Box::new(|v| v["stream"] = json!("maybe"))),
    ];
    for (field, mutate) in cases {
        let mut v = slp.clone();
        mutate(&mut v);
        let e = parse(&v, Format::Litellm).expect_err(field);
        assert!(e.contains(field), "error {e:?} should name {field}");
    }
    let mut v = fixture("spendlogs_row.json");
    v["spend"] = json!({"usd": 1});
    let e = parse(&v, Format::Litellm).unwrap_err();
    assert!(e.contains("`spend`"), "{e}");
    let mut v = fixture("spendlogs_row.json");
    v.as_object_mut().unwrap().remove("request_id");
    let e = parse(&v, Format::Litellm).unwrap_err();
    assert!(e.contains("`request_id`"), "{e}");
}

#[test]
fn mutated_fixtures_never_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/litellm");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 5, "want several fixtures");
    for name in names {
        for_each_mutation(&fixture(&name), &mut |m| {
            let _ = parse(m, Format::Auto);
            let _ = parse(m, Format::Litellm);
        });
    }
}
