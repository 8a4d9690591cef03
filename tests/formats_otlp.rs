//! OTLP trace adapter: JSON fixtures (current and legacy GenAI attribute names, mixed and error
//! spans) parsed through auto-detection, the same export in protobuf, hand-computed costs, and
//! hostile input that must be rejected without panicking.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use proptest::prelude::*;
use prost::Message;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use switchyard::formats::{self, Format, otlp};
use switchyard::prices::PriceCatalog;
use switchyard::record::{CostSource, Item, Record};

const NOW_US: i64 = 1_795_700_000_000_000;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/otlp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn requests(items: Vec<Item>) -> Vec<Record> {
    items
        .into_iter()
        .map(|i| match i {
            Item::Request(r) => *r,
            other => panic!("expected a request record, got {other:?}"),
        })
        .collect()
}

/// Parses a body the way ingest does (format auto-detected) and expects no rejections.
fn parse_auto(body: &[u8]) -> Vec<Record> {
    let parsed = formats::parse_body(body, Format::Auto, NOW_US);
    assert!(
        parsed.rejected.is_empty(),
        "rejected: {:?}",
        parsed.rejected
    );
    requests(parsed.items.into_iter().map(|(_, i)| i).collect())
}

fn finish(records: Vec<Record>) -> Vec<Record> {
    let prices = PriceCatalog::embedded().unwrap();
    records
        .into_iter()
        .map(|r| r.finish(&prices).unwrap())
        .collect()
}

fn by_id<'a>(records: &'a [Record], id: &str) -> &'a Record {
    records
        .iter()
        .find(|r| r.request_id == id)
        .unwrap_or_else(|| panic!("no record {id} in {records:#?}"))
}

fn usd(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

// ---- current attribute names -------------------------------------------------------------

#[test]
fn current_names_pretty_printed_json_is_detected_and_mapped() {
    let body = fixture("current.json");
    assert!(
        body.iter().filter(|&&b| b == b'\n').count() > 10,
        "fixture is multi-line"
    );
    let records = finish(parse_auto(&body));
    assert_eq!(records.len(), 3, "{records:#?}");

    let r = by_id(&records, "chatcmpl-C3a9xZqLk2M");
    assert_eq!(r.model, "gpt-4o-mini-2024-07-18");
    assert_eq!(r.provider.as_deref(), Some("openai"));
    assert_eq!(r.gateway.as_deref(), Some("otlp"));
    assert_eq!(r.app.as_deref(), Some("support-bot"));
    assert_eq!(r.task.as_deref(), Some("summarize"));
    assert_eq!(r.user_id.as_deref(), Some("u-42"));
    assert_eq!(r.ts_us, 1_795_600_800_000_000);
    assert_eq!(r.latency_ms, Some(1250.0));
    assert_eq!(r.ttft_ms, Some(250.0));
    assert_eq!(r.streamed, Some(true));
    assert_eq!(r.status, Some(200));
    assert_eq!(r.error, None);
    assert_eq!(r.finish_reason.as_deref(), Some("stop"));
    assert_eq!(r.prompt_tokens, Some(1200));
    assert_eq!(r.completion_tokens, Some(300));
    assert_eq!(r.cached_tokens, Some(1024));
    assert_eq!(r.cache_write_tokens, None);
    // gpt-4o-mini: input 0.15, cached_input 0.075, output 0.6 USD per 1M tokens.
    // (1200 - 1024) * 0.15 + 1024 * 0.075 + 300 * 0.6 = 26.4 + 76.8 + 180 = 283.2 per 1M.
    assert_eq!(r.cost_usd, Some(usd("0.0002832")));
    assert_eq!(r.cost_source, Some(CostSource::Catalog));
    // Unmapped attributes are kept as strings; the differing requested model too.
    let m = &r.metadata;
    assert_eq!(
        m.get("gen_ai.request.model").map(String::as_str),
        Some("gpt-4o-mini")
    );
    assert_eq!(
        m.get("gen_ai.operation.name").map(String::as_str),
        Some("chat")
    );
    assert_eq!(
        m.get("gen_ai.request.temperature").map(String::as_str),
        Some("0.2")
    );
    assert_eq!(
        m.get("gen_ai.request.max_tokens").map(String::as_str),
        Some("512")
    );
    assert_eq!(
        m.get("server.address").map(String::as_str),
        Some("api.openai.com")
    );
    assert_eq!(
        m.get("deployment.environment").map(String::as_str),
        Some("prod")
    );
    assert_eq!(
        m.get("otel.trace_id").map(String::as_str),
        Some("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(
        m.get("otel.span_id").map(String::as_str),
        Some("eee19b7ec3c1b174")
    );
    assert_eq!(
        m.get("otel.scope_name").map(String::as_str),
        Some("opentelemetry.instrumentation.openai_v2")
    );
    // Mapped attributes and message contents are not repeated in metadata.
    for k in [
        "gen_ai.usage.input_tokens",
        "gen_ai.response.model",
        "gen_ai.response.id",
        "switchyard.task",
        "user.id",
        "gen_ai.input.messages",
    ] {
        assert!(!m.contains_key(k), "{k} should not be in metadata: {m:?}");
    }

    // Anthropic under the current convention: input_tokens already includes the cache.
    let c = by_id(&records, "0af7651916cd43dd8448eb211c80319cb7ad6b7169203331");
    assert_eq!(c.model, "claude-haiku-4-5");
    assert_eq!(c.provider.as_deref(), Some("anthropic"));
    assert_eq!(
        c.task.as_deref(),
        Some("triage"),
        "task from gen_ai.agent.name"
    );
    assert_eq!(c.prompt_tokens, Some(1500));
    assert_eq!(c.cached_tokens, Some(1000));
    assert_eq!(c.cache_write_tokens, Some(200));
    assert_eq!(c.finish_reason.as_deref(), Some("end_turn"));
    assert_eq!(c.latency_ms, Some(800.0));
    // claude-haiku-4-5: input 1, cached_input 0.1, cache_write 1.25, output 5 per 1M.
    // 300 * 1 + 1000 * 0.1 + 200 * 1.25 + 120 * 5 = 300 + 100 + 250 + 600 = 1250 per 1M.
    assert_eq!(c.cost_usd, Some(usd("0.00125")));
    assert_eq!(
        c.metadata.get("gen_ai.conversation.id").map(String::as_str),
        Some("conv_5j66UpCpwteGg4YS")
    );

    // A model missing from the catalog: cost unknown, never a silent 0.
    let e = by_id(&records, "0af7651916cd43dd8448eb211c80319cc8be7c8270314442");
    assert_eq!(e.model, "text-embedding-3-small");
    assert_eq!(e.prompt_tokens, Some(42));
    assert_eq!(e.task.as_deref(), Some("default"));
    assert_eq!(e.cost_usd, None);
    assert_eq!(e.cost_source, Some(CostSource::Unknown));
}

#[test]
fn compact_and_forced_otlp_json_give_the_same_records() {
    let v: Value = serde_json::from_slice(&fixture("current.json")).unwrap();
    let pretty = parse_auto(&fixture("current.json"));
    let compact = parse_auto(&serde_json::to_vec(&v).unwrap());
    assert_eq!(pretty, compact);
    let forced = formats::parse_body(&serde_json::to_vec(&v).unwrap(), Format::Otlp, NOW_US);
    assert!(forced.rejected.is_empty());
    assert_eq!(forced.items.len(), 3);
    assert_eq!(requests(otlp::from_json(&v).unwrap()), pretty);
    // Two exports as NDJSON: each line is an export.
    let mut ndjson = serde_json::to_vec(&v).unwrap();
    ndjson.push(b'\n');
    ndjson.extend(serde_json::to_vec(&v).unwrap());
    assert_eq!(parse_auto(&ndjson).len(), 6);
}

// ---- legacy attribute names ----------------------------------------------------------------

#[test]
fn legacy_names_and_encodings_are_mapped() {
    let records = finish(parse_auto(&fixture("legacy.json")));
    assert_eq!(records.len(), 2, "{records:#?}");

    // Anthropic's raw input_tokens (excluding the cache) is normalised: 300 + 1000 + 200.
    let a = by_id(&records, "msg_01XFDUDYJgAACzvnptvVoYEL");
    assert_eq!(a.model, "claude-haiku-4-5-20251001");
    assert_eq!(
        a.provider.as_deref(),
        Some("anthropic"),
        "gen_ai.system, lowercased"
    );
    assert_eq!(a.prompt_tokens, Some(1500));
    assert_eq!(a.completion_tokens, Some(120));
    assert_eq!(a.cached_tokens, Some(1000));
    assert_eq!(a.cache_write_tokens, Some(200));
    assert_eq!(a.streamed, Some(true));
    assert_eq!(a.finish_reason.as_deref(), Some("end_turn"));
    assert_eq!(a.task.as_deref(), Some("rag-answer"));
    assert_eq!(a.user_id.as_deref(), Some("alice@example.com"));
    assert_eq!(a.app.as_deref(), Some("kb-assistant"));
    assert_eq!(a.ts_us, 1_795_604_400_000_000);
    assert_eq!(a.latency_ms, Some(3500.0));
    // Same usage as the current-convention span: 1250 per 1M at claude-haiku-4-5 prices.
    assert_eq!(a.cost_usd, Some(usd("0.00125")));
    assert_eq!(
        a.metadata.get("otel.trace_id").map(String::as_str),
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        "base64 ids are read as bytes"
    );
    assert_eq!(
        a.metadata.get("otel.scope_name").map(String::as_str),
        Some("opentelemetry.instrumentation.anthropic")
    );
    for k in [
        "gen_ai.prompt.0.content",
        "gen_ai.prompt.0.role",
        "gen_ai.completion.0.role",
        "llm.usage.total_tokens",
    ] {
        assert!(!a.metadata.contains_key(k), "{k} should be dropped");
    }
    assert_eq!(
        a.metadata.get("llm.request.type").map(String::as_str),
        Some("chat")
    );

    // No gen_ai.response.id: the request id is the hex trace id then the hex span id.
    let o = by_id(&records, "4bf92f3577b34da6a3ce929d0e0e473600f067aa0ba902b8");
    assert_eq!(o.model, "gpt-4o");
    assert_eq!(o.prompt_tokens, Some(2000));
    assert_eq!(o.completion_tokens, Some(500));
    assert_eq!(o.streamed, Some(false));
    assert_eq!(o.finish_reason.as_deref(), Some("length"));
    assert_eq!(o.task.as_deref(), Some("rerank"));
    // A reported cost wins over the catalog (which would say 2000 * 2.5 + 500 * 10 = 0.01).
    assert_eq!(o.cost_usd, Some(usd("0.0105")));
    assert_eq!(o.cost_source, Some(CostSource::Reported));
}

// ---- GenAI spans among others ----------------------------------------------------------------

#[test]
fn non_genai_spans_and_wrapping_agent_spans_are_skipped() {
    let records = finish(parse_auto(&fixture("mixed.json")));
    // HTTP and DB spans are not GenAI; the agent span wraps the chat span (its usage is the
    // chat's, counted once); the tool span has no model.
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r.request_id, "chatcmpl-mixed-1");
    assert_eq!(r.model, "gpt-4o-mini");
    assert_eq!(
        r.task.as_deref(),
        Some("planner"),
        "task inherited from the enclosing agent span"
    );
    assert_eq!(r.app.as_deref(), Some("checkout-api"));
    assert_eq!(r.latency_ms, Some(2000.0));
    // 1500 * 0.15 + 400 * 0.6 = 225 + 240 = 465 per 1M.
    assert_eq!(r.cost_usd, Some(usd("0.000465")));
}

#[test]
fn an_export_without_genai_spans_yields_nothing() {
    let v = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
        "scopeSpans": [{"scope": {"name": "http"}, "spans": [{
            "traceId": "7d2e4c1a9b3f4e8d8a6b5c4d3e2f1a0b", "spanId": "1111111111111111",
            "name": "GET /", "kind": 2,
            "startTimeUnixNano": "1795608000000000000", "endTimeUnixNano": "1795608000100000000",
            "attributes": [{"key": "http.request.method", "value": {"stringValue": "GET"}}]
        }]}]
    }]});
    assert_eq!(otlp::from_json(&v).unwrap(), vec![]);
    assert_eq!(
        otlp::from_json(&json!({"resourceSpans": []})).unwrap(),
        vec![]
    );
    let parsed = formats::parse_body(&serde_json::to_vec(&v).unwrap(), Format::Auto, NOW_US);
    assert!(parsed.items.is_empty() && parsed.rejected.is_empty());
    assert_eq!(otlp::from_protobuf(&[]).unwrap(), vec![]);
}

// ---- error spans -----------------------------------------------------------------------------

#[test]
fn error_spans_carry_status_and_message() {
    let records = finish(parse_auto(&fixture("error.json")));
    assert_eq!(records.len(), 2);

    let rl = by_id(&records, "a1b2c3d4e5f60718293a4b5c6d7e8f900123456789abcdef");
    assert_eq!(
        rl.status,
        Some(429),
        "http.response.status_code of a failed span"
    );
    assert_eq!(
        rl.error.as_deref(),
        Some("Rate limit reached for gpt-4o-mini in organization org-x on tokens per min")
    );
    assert_eq!(
        rl.metadata.get("error.type").map(String::as_str),
        Some("RateLimitError")
    );
    assert_eq!(rl.latency_ms, Some(180.0));
    // No usage reported: priced at zero tokens.
    assert_eq!(rl.cost_usd, Some(Decimal::ZERO));
    assert_eq!(rl.task.as_deref(), Some("summarize"));

    let to = by_id(&records, "a1b2c3d4e5f60718293a4b5c6d7e8f90fedcba9876543210");
    assert_eq!(to.status, Some(500));
    assert_eq!(to.error.as_deref(), Some("The read operation timed out"));
    assert_eq!(to.model, "claude-sonnet-4-5");
    assert_eq!(to.latency_ms, Some(30_000.0));
}

#[test]
fn error_type_alone_marks_a_failure_and_becomes_the_error() {
    let v = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "spanId": "0123456789abcdef",
        "startTimeUnixNano": "1795611600000000000", "endTimeUnixNano": "1795611600100000000",
        "status": {"code": "STATUS_CODE_ERROR"},
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "error.type", "value": {"stringValue": "APIConnectionError"}}
        ]
    }]}]}]});
    let r = &requests(otlp::from_json(&v).unwrap())[0];
    assert_eq!(r.status, Some(500));
    assert_eq!(r.error.as_deref(), Some("APIConnectionError"));
    assert!(!r.metadata.contains_key("error.type"));
}

// ---- protobuf ----------------------------------------------------------------------------------

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.into()))
}

fn i(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn strings(key: &str, vs: &[&str]) -> KeyValue {
    kv(
        key,
        any_value::Value::ArrayValue(ArrayValue {
            values: vs
                .iter()
                .map(|v| AnyValue {
                    value: Some(any_value::Value::StringValue((*v).into())),
                })
                .collect(),
        }),
    )
}

fn id(h: &str) -> Vec<u8> {
    hex::decode(h).unwrap()
}

/// `current.json`, built with the protobuf types.
pub fn current_as_protobuf() -> ExportTraceServiceRequest {
    let chat = Span {
        trace_id: id("5b8efff798038103d269b633813fc60c"),
        span_id: id("eee19b7ec3c1b174"),
        name: "chat gpt-4o-mini".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: 1_795_600_800_000_000_000,
        end_time_unix_nano: 1_795_600_801_250_000_000,
        attributes: vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.provider.name", "openai"),
            s("gen_ai.request.model", "gpt-4o-mini"),
            kv(
                "gen_ai.request.temperature",
                any_value::Value::DoubleValue(0.2),
            ),
            i("gen_ai.request.max_tokens", 512),
            kv("gen_ai.request.stream", any_value::Value::BoolValue(true)),
            s("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
            s("gen_ai.response.id", "chatcmpl-C3a9xZqLk2M"),
            strings("gen_ai.response.finish_reasons", &["stop"]),
            kv(
                "gen_ai.response.time_to_first_chunk",
                any_value::Value::DoubleValue(0.25),
            ),
            i("gen_ai.usage.input_tokens", 1200),
            i("gen_ai.usage.output_tokens", 300),
            i("gen_ai.usage.cache_read.input_tokens", 1024),
            s(
                "gen_ai.input.messages",
                r#"[{"role":"user","parts":[{"type":"text","content":"Summarise this ticket"}]}]"#,
            ),
            s("server.address", "api.openai.com"),
            i("server.port", 443),
            s("switchyard.task", "summarize"),
            s("user.id", "u-42"),
        ],
        status: Some(Status::default()),
        ..Default::default()
    };
    let claude = Span {
        trace_id: id("0af7651916cd43dd8448eb211c80319c"),
        span_id: id("b7ad6b7169203331"),
        name: "chat claude-haiku-4-5".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: 1_795_600_802_000_000_000,
        end_time_unix_nano: 1_795_600_802_800_000_000,
        attributes: vec![
            s("gen_ai.operation.name", "chat"),
            s("gen_ai.provider.name", "anthropic"),
            s("gen_ai.request.model", "claude-haiku-4-5"),
            s("gen_ai.response.model", "claude-haiku-4-5"),
            strings("gen_ai.response.finish_reasons", &["end_turn"]),
            i("gen_ai.usage.input_tokens", 1500),
            i("gen_ai.usage.output_tokens", 120),
            i("gen_ai.usage.cache_read.input_tokens", 1000),
            i("gen_ai.usage.cache_creation.input_tokens", 200),
            s("gen_ai.agent.name", "triage"),
            s("gen_ai.conversation.id", "conv_5j66UpCpwteGg4YS"),
        ],
        status: Some(Status {
            code: 1,
            message: String::new(),
        }),
        ..Default::default()
    };
    let embeddings = Span {
        trace_id: id("0af7651916cd43dd8448eb211c80319c"),
        span_id: id("c8be7c8270314442"),
        name: "embeddings text-embedding-3-small".into(),
        kind: span::SpanKind::Client as i32,
        start_time_unix_nano: 1_795_600_803_000_000_000,
        end_time_unix_nano: 1_795_600_803_040_000_000,
        attributes: vec![
            s("gen_ai.operation.name", "embeddings"),
            s("gen_ai.provider.name", "openai"),
            s("gen_ai.request.model", "text-embedding-3-small"),
            i("gen_ai.usage.input_tokens", 42),
        ],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", "support-bot"),
                    s("deployment.environment.name", "prod"),
                    s("telemetry.sdk.language", "python"),
                    s("telemetry.sdk.version", "1.38.0"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry.instrumentation.openai_v2".into(),
                    version: "2.1b0".into(),
                    ..Default::default()
                }),
                spans: vec![chat, claude, embeddings],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn protobuf_gives_the_same_records_as_json() {
    let bytes = current_as_protobuf().encode_to_vec();
    let from_pb = requests(otlp::from_protobuf(&bytes).unwrap());
    let from_json = parse_auto(&fixture("current.json"));
    assert_eq!(from_pb, from_json);
    let priced = finish(from_pb);
    assert_eq!(
        by_id(&priced, "chatcmpl-C3a9xZqLk2M").cost_usd,
        Some(usd("0.0002832"))
    );
    assert_eq!(
        by_id(&priced, "0af7651916cd43dd8448eb211c80319cb7ad6b7169203331").cost_usd,
        Some(usd("0.00125"))
    );
}

#[test]
fn the_library_json_encoding_of_the_protobuf_request_is_read_too() {
    // opentelemetry-proto's own serde encoding (hex ids, string nanos) is one more real exporter.
    let req = current_as_protobuf();
    let v = serde_json::to_value(&req).unwrap();
    assert_eq!(
        requests(otlp::from_json(&v).unwrap()),
        parse_auto(&fixture("current.json"))
    );
}

// ---- bad and hostile input -------------------------------------------------------------------

#[test]
fn a_non_numeric_token_count_names_the_span() {
    let v = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {
            "traceId": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "spanId": "0123456789abcdef",
            "name": "chat", "startTimeUnixNano": "1795611600000000000",
            "attributes": [
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"stringValue": "many"}}
            ]
        },
        {
            "traceId": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "spanId": "1123456789abcdef",
            "name": "chat", "startTimeUnixNano": "1795611600000000000",
            "attributes": [
                {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"stringValue": "12"}}
            ]
        }
    ]}]}]});
    let err = otlp::from_json(&v).unwrap_err();
    assert!(err.contains("0123456789abcdef"), "{err}");
    assert!(err.contains("gen_ai.usage.input_tokens"), "{err}");
    let per_span = otlp::spans_from_json(&v).unwrap();
    assert_eq!(per_span.len(), 2);
    assert!(per_span[0].is_err());
    match &per_span[1] {
        Ok(Item::Request(r)) => assert_eq!(r.prompt_tokens, Some(12)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_exports_are_errors_not_panics() {
    let bad = [
        json!([]),
        json!("resourceSpans"),
        json!({"foo": 1}),
        json!({"resourceSpans": 3}),
        json!({"resourceSpans": [1]}),
        json!({"resourceSpans": [{"scopeSpans": {"spans": []}}]}),
        json!({"resourceSpans": [{"scopeSpans": [{"spans": ["x"]}]}]}),
        json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": 5}]}]}]}),
        json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "-1"}]}]}]}),
        json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 7}]}]}]}),
        json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": 1e300}]}]}]}),
        json!({"resourceSpans": [{"resource": []}]}),
    ];
    for v in bad {
        assert!(otlp::from_json(&v).is_err(), "{v} should be rejected");
    }
    // Odd but harmless values are tolerated.
    let odd = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "not-hex", "spanId": "", "kind": "SPAN_KIND_WHATEVER",
        "startTimeUnixNano": "18446744073709551615", "endTimeUnixNano": "0",
        "status": {"code": 99},
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "99999999999999999999"}},
            {"key": "x", "value": {"kvlistValue": {"values": [{"key": "a", "value": {}}]}}},
            {"key": "y", "value": {"bytesValue": "AAEC"}},
            {"key": "z", "value": {"doubleValue": "NaN"}},
            {"noKey": true},
            {"key": "w"}
        ]
    }]}]}]});
    // A count too large for i64 stays a string and is then rejected as not a whole number.
    assert!(otlp::from_json(&odd).is_err());
    let items = otlp::spans_from_json(&odd).unwrap();
    assert_eq!(items.len(), 1);
}

#[test]
fn absurd_token_counts_do_not_overflow() {
    let max = i64::MAX.to_string();
    let v = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "spanId": "0123456789abcdef",
        "startTimeUnixNano": "1795611600000000000",
        "attributes": [
            {"key": "gen_ai.provider.name", "value": {"stringValue": "anthropic"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "claude-haiku-4-5"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1"}},
            {"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": max}},
            {"key": "gen_ai.usage.cache_creation.input_tokens", "value": {"intValue": max}}
        ]
    }]}]}]});
    let records = requests(otlp::from_json(&v).unwrap());
    let prices = PriceCatalog::embedded().unwrap();
    assert!(records[0].clone().finish(&prices).is_err());
}

#[test]
fn deeply_nested_attribute_values_are_cut_off() {
    let mut value = r#"{"stringValue":"leaf"}"#.to_string();
    for _ in 0..35 {
        value = format!(r#"{{"arrayValue":{{"values":[{value}]}}}}"#);
    }
    let deep: Value = serde_json::from_str(&value).unwrap();
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "spanId": "0123456789abcdef",
        "startTimeUnixNano": "1795611600000000000",
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "deep", "value": deep}
        ]
    }]}]}]})
    .to_string();
    let records = parse_auto(body.as_bytes());
    assert_eq!(records.len(), 1);
    let deep = &records[0].metadata["deep"];
    assert!(deep.starts_with("[[[") && !deep.contains("leaf"), "{deep}");

    // Protobuf nesting beyond prost's recursion limit is a decode error.
    let mut v = AnyValue {
        value: Some(any_value::Value::StringValue("leaf".into())),
    };
    for _ in 0..200 {
        v = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    let mut req = current_as_protobuf();
    req.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(KeyValue {
            key: "deep".into(),
            value: Some(v),
            ..Default::default()
        });
    assert!(otlp::from_protobuf(&req.encode_to_vec()).is_err());
}

#[test]
fn long_attribute_values_are_truncated_in_metadata() {
    let long = "é".repeat(5000);
    let v = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "spanId": "0123456789abcdef",
        "startTimeUnixNano": "1795611600000000000",
        "attributes": [
            {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini"}},
            {"key": "note", "value": {"stringValue": long}}
        ]
    }]}]}]});
    let r = &requests(otlp::from_json(&v).unwrap())[0];
    let note = &r.metadata["note"];
    assert!(note.len() <= 1024 + '…'.len_utf8(), "{}", note.len());
    assert!(note.ends_with('…'));
}

#[test]
fn garbage_protobuf_is_an_error() {
    assert!(otlp::from_protobuf(b"{\"resourceSpans\":[]}").is_err());
    assert!(otlp::from_protobuf(&[0xff; 64]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = otlp::from_protobuf(&bytes);
    }

    #[test]
    fn corrupted_protobuf_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = current_as_protobuf().encode_to_vec();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let n = cut.index(bytes.len() + 1);
        let _ = otlp::from_protobuf(&bytes[..n]);
    }

    #[test]
    fn corrupted_json_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = fixture("current.json");
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        let _ = formats::parse_body(&bytes, Format::Auto, NOW_US);
    }
}
