//! The built-in mock upstream, driven over HTTP as a proxy would: answer and stream shapes,
//! `include_usage`, the control API's switches, counters, embeddings and pacing.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::prices::PriceCatalog;
use switchyard::record::Usage;

use crate::common::{MockUpstream, client};

/// A mock that answers at once.
fn fast() -> MockUpstream {
    MockUpstream::start(&["--latency-ms", "0", "--ttft-ms", "0", "--tokens-per-s", "0"])
}

/// 40 characters of prompt = 10 prompt tokens.
fn chat(model: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Summarise the report.abcde"}]}
        ],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn post(c: &reqwest::Client, m: &MockUpstream, body: &Value) -> reqwest::Response {
    c.post(m.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A stream's `data:` payloads, `[DONE]` included.
async fn stream_events(c: &reqwest::Client, m: &MockUpstream, body: &Value) -> Vec<String> {
    let r = post(c, m, body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = r.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .expect("every event is data")
                .to_string()
        })
        .collect()
}

fn chunks(events: &[String]) -> Vec<Value> {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

fn content_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .filter_map(|ch| ch["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn non_streamed_answer_has_openai_shape_usage_and_quality() {
    let m = fast();
    let c = client();
    let r = post(&c, &m, &chat("openai/gpt-4o", json!({"max_tokens": 5}))).await;
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert!(b["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(b["object"], "chat.completion");
    assert!(b["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(b["model"], "openai/gpt-4o", "the requested model is echoed");
    let choice = &b["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        5
    );
    assert_eq!(choice["finish_reason"], "length");
    let u = &b["usage"];
    // "You are terse." (14) + "Summarise the report.abcde" (26) = 40 characters.
    assert_eq!(u["prompt_tokens"], 10);
    assert_eq!(u["completion_tokens"], 5);
    assert_eq!(u["total_tokens"], 15);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 0);
    assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 0);
    assert!(u.get("cost").is_none(), "no cost unless switched on");
    let q = b["switchyard_mock"]["quality"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&q));

    // Without a limit the profile's length applies and the answer stops on its own.
    let b: Value = post(&c, &m, &chat("openai/gpt-4o-mini", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    assert!(b["usage"]["completion_tokens"].as_u64().unwrap() > 5);
    // max_completion_tokens wins over max_tokens.
    let b: Value = post(
        &c,
        &m,
        &chat(
            "some/unknown-model",
            json!({"max_tokens": 50, "max_completion_tokens": 3}),
        ),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(b["model"], "some/unknown-model");
    assert_eq!(b["usage"]["completion_tokens"], 3);
}

#[tokio::test]
async fn long_prompts_report_cached_tokens_and_reasoning_models_reasoning_tokens() {
    let m = fast();
    let c = client();
    let long = "x".repeat(4 * 3000);
    let body = json!({"model": "openai/o3-mini", "max_tokens": 40,
                      "messages": [{"role": "user", "content": long}]});
    let b: Value = post(&c, &m, &body).await.json().await.unwrap();
    let u = &b["usage"];
    assert_eq!(u["prompt_tokens"], 3000);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 1408);
    assert_eq!(u["completion_tokens"], 40);
    assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 20);
    let visible = b["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(visible.split(' ').count(), 20);
}

#[tokio::test]
async fn quality_depends_on_model_and_task_from_header_or_metadata() {
    let m = fast();
    let c = client();
    let quality = |b: Value| b["switchyard_mock"]["quality"].as_f64().unwrap();
    let with_header = |model: &str, task: &str| {
        c.post(m.url("/v1/chat/completions"))
            .header("X-Switchyard-Task", task)
            .json(&chat(model, json!({"max_tokens": 1})))
            .send()
    };
    let mut by_task = Vec::new();
    for task in ["summarize", "extract", "classify", "chat"] {
        let q = quality(
            with_header("openai/gpt-4o", task)
                .await
                .unwrap()
                .json()
                .await
                .unwrap(),
        );
        let via_metadata = quality(
            post(
                &c,
                &m,
                &chat(
                    "openai/gpt-4o",
                    json!({"max_tokens": 1, "metadata": {"task": task}}),
                ),
            )
            .await
            .json()
            .await
            .unwrap(),
        );
        assert_eq!(
            q, via_metadata,
            "{task}: header and metadata name the same task"
        );
        by_task.push(q);
    }
    by_task.dedup();
    assert!(by_task.len() > 1, "quality differs by task: {by_task:?}");
    let big = quality(
        with_header("openai/gpt-4o", "summarize")
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    let small = quality(
        with_header("openai/gpt-4.1-nano", "summarize")
            .await
            .unwrap()
            .json()
            .await
            .unwrap(),
    );
    assert!(big > small, "gpt-4o {big} above gpt-4.1-nano {small}");
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_anywhere() {
    let m = fast();
    let c = client();
    let events = stream_events(
        &c,
        &m,
        &chat("openai/gpt-4o", json!({"stream": true, "max_tokens": 7})),
    )
    .await;
    let ch = chunks(&events);
    // Role chunk, 7 tokens, finish chunk.
    assert_eq!(ch.len(), 9);
    for c in &ch {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "openai/gpt-4o");
        assert_eq!(c["id"], ch[0]["id"]);
        assert!(c.get("usage").is_none(), "no usage field: {c}");
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(ch[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(ch[0]["switchyard_mock"]["quality"].as_f64().is_some());
    assert_eq!(content_of(&ch).split(' ').count(), 7);
    assert_eq!(ch[8]["choices"][0]["finish_reason"], "length");
    assert!(
        ch[..8]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );
}

#[tokio::test]
async fn stream_with_include_usage_ends_with_a_usage_only_chunk() {
    let m = fast();
    let c = client();
    let body = chat(
        "anthropic/claude-haiku-4-5",
        json!({"stream": true, "max_tokens": 4, "stream_options": {"include_usage": true}}),
    );
    let ch = chunks(&stream_events(&c, &m, &body).await);
    let (last, rest) = ch.split_last().unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0);
    assert_eq!(last["usage"]["prompt_tokens"], 10);
    assert_eq!(last["usage"]["completion_tokens"], 4);
    assert_eq!(last["usage"]["total_tokens"], 14);
    for c in rest {
        assert!(c["usage"].is_null() && c.get("usage").is_some(), "{c}");
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(content_of(rest).split(' ').count(), 4);

    // include_usage false is the same as absent.
    let body = chat(
        "anthropic/claude-haiku-4-5",
        json!({"stream": true, "max_tokens": 4, "stream_options": {"include_usage": false}}),
    );
    let ch = chunks(&stream_events(&c, &m, &body).await);
    assert!(ch.iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test]
async fn status_switch_answers_openai_errors_for_that_model_until_cleared() {
    let m = fast();
    let c = client();
    m.behave(&c, json!({"model": "openai/gpt-4o", "status": 503}))
        .await;
    let r = post(&c, &m, &chat("openai/gpt-4o", json!({}))).await;
    assert_eq!(r.status(), 503);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"]["message"].as_str().unwrap().contains("503"));
    assert_eq!(e["error"]["type"], "server_error");
    assert!(e["error"].get("param").is_some() && e["error"].get("code").is_some());
    // Streams fail the same way, before any chunk.
    let r = post(&c, &m, &chat("openai/gpt-4o", json!({"stream": true}))).await;
    assert_eq!(r.status(), 503);
    // Other models are untouched.
    let r = post(&c, &m, &chat("openai/gpt-4o-mini", json!({}))).await;
    assert_eq!(r.status(), 200);

    m.behave(&c, json!({"model": "*", "status": 429})).await;
    let r = post(&c, &m, &chat("openai/gpt-4o-mini", json!({}))).await;
    assert_eq!(r.status(), 429);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    let r = post(&c, &m, &chat("never/seen-before", json!({}))).await;
    assert_eq!(r.status(), 429, "`*` covers models seen later too");

    m.behave(&c, json!({"model": "*", "status": null})).await;
    let r = post(&c, &m, &chat("openai/gpt-4o", json!({}))).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn error_rate_fails_that_share_of_requests_with_500() {
    let m = fast();
    let c = client();
    m.behave(&c, json!({"model": "openai/gpt-4o", "error_rate": 0.5}))
        .await;
    let mut failed = 0;
    for _ in 0..200 {
        let r = post(&c, &m, &chat("openai/gpt-4o", json!({"max_tokens": 1}))).await;
        match r.status().as_u16() {
            200 => {}
            500 => failed += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert!((60..=140).contains(&failed), "{failed} of 200 failed");
}

#[tokio::test]
async fn abort_after_chunks_drops_the_stream_connection() {
    let m = fast();
    let c = client();
    m.behave(
        &c,
        json!({"model": "openai/gpt-4o", "abort_after_chunks": 3}),
    )
    .await;
    let mut r = post(
        &c,
        &m,
        &chat("openai/gpt-4o", json!({"stream": true, "max_tokens": 20})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let mut got = Vec::new();
    let err = loop {
        match r.chunk().await {
            Ok(Some(b)) => got.extend_from_slice(&b),
            Ok(None) => panic!("stream ended cleanly: {}", String::from_utf8_lossy(&got)),
            Err(e) => break e,
        }
    };
    assert!(err.is_body() || err.is_decode(), "{err}");
    let text = String::from_utf8(got).unwrap();
    assert_eq!(text.matches("data: ").count(), 3);
    assert!(!text.contains("[DONE]"));

    // Non-streamed answers are unaffected.
    let r = post(&c, &m, &chat("openai/gpt-4o", json!({}))).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn usage_off_omits_usage_from_answers_and_streams() {
    let m = fast();
    let c = client();
    m.behave(&c, json!({"model": "openai/gpt-4o", "usage": false}))
        .await;
    let b: Value = post(&c, &m, &chat("openai/gpt-4o", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert!(b.get("usage").is_none(), "{b}");
    let body = chat(
        "openai/gpt-4o",
        json!({"stream": true, "max_tokens": 3, "stream_options": {"include_usage": true}}),
    );
    let ch = chunks(&stream_events(&c, &m, &body).await);
    assert!(ch.iter().all(|c| c.get("usage").is_none()));
    assert!(
        ch.iter()
            .all(|c| c["choices"].as_array().unwrap().len() == 1)
    );
}

#[tokio::test]
async fn report_cost_adds_the_catalog_cost_to_usage() {
    let m = fast();
    let c = client();
    m.behave(&c, json!({"model": "*", "report_cost": true}))
        .await;
    let catalog = PriceCatalog::embedded().unwrap();
    let expected = |model: &str, prompt: i64, completion: i64| {
        let u = Usage {
            prompt,
            completion,
            ..Usage::default()
        };
        catalog
            .cost(model, &u)
            .unwrap()
            .to_string()
            .parse::<f64>()
            .unwrap()
    };
    let b: Value = post(&c, &m, &chat("openai/gpt-4o", json!({"max_tokens": 8})))
        .await
        .json()
        .await
        .unwrap();
    let cost = b["usage"]["cost"].as_f64().unwrap();
    assert!(cost > 0.0);
    assert!(
        (cost - expected("openai/gpt-4o", 10, 8)).abs() < 1e-15,
        "{cost}"
    );

    let body = chat(
        "openai/gpt-4o-mini",
        json!({"stream": true, "max_tokens": 8, "stream_options": {"include_usage": true}}),
    );
    let ch = chunks(&stream_events(&c, &m, &body).await);
    let cost = ch.last().unwrap()["usage"]["cost"].as_f64().unwrap();
    assert!((cost - expected("openai/gpt-4o-mini", 10, 8)).abs() < 1e-15);

    m.behave(&c, json!({"model": "*", "report_cost": null}))
        .await;
    let b: Value = post(&c, &m, &chat("openai/gpt-4o", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert!(b["usage"].get("cost").is_none());
}

#[tokio::test]
async fn stats_count_requests_per_model_and_reset_clears_counts_and_switches() {
    let m = fast();
    let c = client();
    let stats = m.stats(&c).await;
    assert_eq!(stats, json!({"requests": {}, "total": 0}));
    for _ in 0..3 {
        post(&c, &m, &chat("openai/gpt-4o", json!({}))).await;
    }
    m.behave(&c, json!({"model": "openai/gpt-4o-mini", "status": 500}))
        .await;
    for _ in 0..2 {
        let r = post(&c, &m, &chat("openai/gpt-4o-mini", json!({"stream": true}))).await;
        assert_eq!(r.status(), 500);
    }
    c.post(m.url("/v1/embeddings"))
        .json(&json!({"model": "openai/text-embedding-3-small", "input": "hi"}))
        .send()
        .await
        .unwrap();
    let stats = m.stats(&c).await;
    assert_eq!(
        stats,
        json!({"requests": {"openai/gpt-4o": 3, "openai/gpt-4o-mini": 2,
                            "openai/text-embedding-3-small": 1}, "total": 6})
    );
    let r = c.post(m.url("/mock/reset")).send().await.unwrap();
    assert!(r.status().is_success());
    assert_eq!(m.stats(&c).await["total"], 0);
    let r = post(&c, &m, &chat("openai/gpt-4o-mini", json!({}))).await;
    assert_eq!(r.status(), 200, "reset clears the switches too");
}

#[tokio::test]
async fn bad_behaviour_and_bad_requests_get_openai_shaped_400s() {
    let m = fast();
    let c = client();
    for patch in [
        json!({"model": "openai/gpt-4o", "colour": "red"}),
        json!({"model": "openai/gpt-4o", "error_rate": 2.0}),
        json!({"model": "openai/gpt-4o", "status": 99}),
        json!({"status": 500}),
    ] {
        let r = c
            .post(m.url("/mock/behaviour"))
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{patch}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["type"], "invalid_request_error");
    }
    let r = c
        .post(m.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"]["message"].as_str().is_some());
    let r = post(&c, &m, &json!({"messages": []})).await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn embeddings_are_deterministic_unit_vectors_as_floats_or_base64() {
    let m = fast();
    let c = client();
    let embed = |body: Value| {
        let c = c.clone();
        let url = m.url("/v1/embeddings");
        async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let model = "openai/text-embedding-3-small";
    let a =
        embed(json!({"model": model, "input": ["hello world", "other"], "dimensions": 8})).await;
    assert_eq!(a["object"], "list");
    assert_eq!(a["model"], model);
    let data = a["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    let v: Vec<f64> = serde_json::from_value(data[0]["embedding"].clone()).unwrap();
    assert_eq!(v.len(), 8);
    assert!((v.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-5);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert_eq!(a["usage"]["prompt_tokens"], 3 + 2);
    assert_eq!(a["usage"]["total_tokens"], 5);

    let b = embed(
        json!({"model": model, "input": "hello world", "dimensions": 8,
                         "encoding_format": "base64"}),
    )
    .await;
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f64> = raw
        .chunks(4)
        .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
        .collect();
    assert_eq!(decoded.len(), 8);
    for (x, y) in decoded.iter().zip(&v) {
        assert!((x - y).abs() < 1e-6, "same text, same vector");
    }
    let d = embed(json!({"model": model, "input": "no dims asked"})).await;
    assert_eq!(d["data"][0]["embedding"].as_array().unwrap().len(), 256);
}

#[tokio::test]
async fn models_list_and_healthz() {
    let m = fast();
    let c = client();
    let r = c.get(m.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = c
        .get(m.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["object"], "list");
    let ids: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 10);
    assert!(ids.contains(&"openai/gpt-4o") && ids.contains(&"google/gemini-2.5-flash"));
    let catalog = PriceCatalog::embedded().unwrap();
    for id in ids {
        assert!(
            catalog.lookup(id).is_some(),
            "{id} is priced in the catalog"
        );
    }
}

#[tokio::test]
async fn latency_ttft_and_token_rate_pace_the_answers() {
    let m = MockUpstream::start(&[]);
    let c = client();
    m.behave(
        &c,
        json!({"model": "openai/gpt-4o", "latency_ms": 300, "ttft_ms": 200,
               "tokens_per_s": 50.0}),
    )
    .await;
    let t = Instant::now();
    let r = post(&c, &m, &chat("openai/gpt-4o", json!({"max_tokens": 2}))).await;
    assert_eq!(r.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    let t = Instant::now();
    let mut r = post(
        &c,
        &m,
        &chat("openai/gpt-4o", json!({"stream": true, "max_tokens": 10})),
    )
    .await;
    let first = loop {
        let b = r.chunk().await.unwrap().unwrap();
        if !b.is_empty() {
            break t.elapsed();
        }
    };
    while r.chunk().await.unwrap().is_some() {}
    let total = t.elapsed();
    assert!(
        first >= Duration::from_millis(200),
        "first chunk at {first:?}"
    );
    // Nine gaps of 20 ms after the first token.
    assert!(
        total >= Duration::from_millis(200 + 180),
        "stream took {total:?}"
    );
}

#[tokio::test]
async fn profile_file_adds_models_and_overrides_quality() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.json");
    std::fs::write(
        &path,
        json!({"models": {"acme/tiny": {"ttft_ms": 0, "tokens_per_s": 0, "output_tokens": 3,
                                        "quality": 0.5, "task_quality": {"summarize": 0.61}}}})
        .to_string(),
    )
    .unwrap();
    let m = MockUpstream::start(&["--profile", path.to_str().unwrap()]);
    let c = client();
    let b: Value = c
        .post(m.url("/v1/chat/completions"))
        .header("X-Switchyard-Task", "summarize")
        .json(&chat("acme/tiny", json!({})))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["usage"]["completion_tokens"], 3);
    assert_eq!(b["switchyard_mock"]["quality"], 0.61);
    let models: Value = c
        .get(m.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"].as_array().unwrap().len(), 11);

    std::fs::write(&path, r#"{"models": {"x": {"qualty": 0.5}}}"#).unwrap();
    let out = crate::common::run(
        &[
            "mock-upstream",
            "--listen",
            "127.0.0.1:0",
            "--profile",
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("qualty"));
}
