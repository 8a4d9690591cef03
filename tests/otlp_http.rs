//! `POST /v1/traces` per OTLP/HTTP: an export that was read answers 200; spans that were not
//! stored are counted in `partial_success`, in protobuf and in JSON. A mixed export sent by the
//! real OpenTelemetry Python SDK exporter succeeds and stores only the GenAI spans.

use std::process::Command;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value, json};

use crate::common::{Server, api_query, client, num};

fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

fn span(n: u8, name: &str, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: vec![n; 8],
        name: name.into(),
        start_time_unix_nano: 1_795_700_000_000_000_000,
        end_time_unix_nano: 1_795_700_000_500_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn export(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn post_protobuf(s: &Server, req: &ExportTraceServiceRequest) -> ExportTraceServiceResponse {
    let r = client()
        .post(s.url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    ExportTraceServiceResponse::decode(r.bytes().await.unwrap()).unwrap()
}

#[tokio::test]
async fn an_export_without_genai_spans_answers_200_with_partial_success() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let plain = export(vec![
        span(1, "GET /", vec![kv("http.method", "GET")]),
        span(2, "SELECT", vec![kv("db.system", "postgresql")]),
    ]);
    let resp = post_protobuf(&s, &plain).await;
    let ps = resp.partial_success.expect("partial_success is set");
    assert_eq!(ps.rejected_spans, 2);
    assert!(
        ps.error_message.contains("not GenAI"),
        "{}",
        ps.error_message
    );

    // The same in OTLP/JSON.
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "07070707070707070707070707070707", "spanId": "0101010101010101",
         "name": "GET /", "startTimeUnixNano": "1795700000000000000",
         "endTimeUnixNano": "1795700000500000000",
         "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}}]}
    ]}]}]});
    let r = client()
        .post(s.url("/v1/traces"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], 1, "{v}");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("not GenAI")
    );
}

#[tokio::test]
async fn a_mixed_export_stores_the_genai_spans_and_counts_the_rest_and_the_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let chat = |n: u8, model: &str, tokens: Option<i64>| {
        span(
            n,
            "chat",
            vec![
                kv("gen_ai.operation.name", "chat"),
                kv("gen_ai.request.model", model),
                match tokens {
                    Some(t) => int("gen_ai.usage.input_tokens", t),
                    None => kv("gen_ai.usage.input_tokens", "not-a-number"),
                },
            ],
        )
    };
    let req = export(vec![
        chat(1, "gpt-4o-mini", Some(10)),
        span(2, "GET /", vec![]),
        chat(3, "gpt-4o", None),
        chat(4, "gpt-4o", Some(12)),
    ]);
    let ps = post_protobuf(&s, &req).await.partial_success.unwrap();
    assert_eq!(ps.rejected_spans, 2, "{}", ps.error_message);
    assert!(
        ps.error_message.contains("input_tokens"),
        "{}",
        ps.error_message
    );
    let rows = api_query(&client(), &s, "SELECT count(*) FROM requests").await;
    assert_eq!(num(&rows[0][0]), 2.0);
    // All GenAI spans stored: no partial_success at all.
    let ok = export(vec![chat(5, "gpt-4o", Some(3))]);
    assert!(post_protobuf(&s, &ok).await.partial_success.is_none());
}

#[tokio::test]
async fn the_opentelemetry_python_exporter_succeeds_on_a_mixed_export() {
    let python = std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/otlp_export.py");
    let out = Command::new(&python)
        .args([script, &s.url("/v1/traces")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{python} {script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exporter_result"], "SUCCESS", "{v}");
    assert_eq!(v["spans"], 4, "{v}");
    assert_eq!(v["raw_status"], 200, "{v}");
    // The server span and the database span are not GenAI spans.
    assert_eq!(v["rejected_spans"], 2, "{v}");
    let rows = api_query(
        &client(),
        &s,
        "SELECT request_id, model, task FROM requests ORDER BY request_id",
    )
    .await;
    assert_eq!(
        rows,
        vec![
            vec![
                json!("py-otel-0"),
                json!("gpt-4o-mini"),
                json!("otel-python")
            ],
            vec![json!("py-otel-1"), json!("gpt-4o"), json!("otel-python")],
        ]
    );
}
