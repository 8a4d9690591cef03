//! The proxy in front of the mock upstream: answers and streams pass through with the
//! switchyard headers and `usage.cost`, errors keep OpenAI's shape, models/health/metrics,
//! and the proxy inside `serve` logging into the same store.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common::{self, MockUpstream, Proxy, chat_body, fast_mock, policy, upstream_toml};

const MINI: &str = "openai/gpt-4o-mini";
const BIG: &str = "openai/gpt-4o";

fn config(mock: &MockUpstream) -> String {
    upstream_toml("mock", &mock.base, &[MINI, BIG, "text-embedding-3-small"])
}

/// The `data:` payloads of an SSE body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim_start().to_string())
        .collect()
}

#[tokio::test]
async fn answers_carry_headers_and_cost() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let proxy = Proxy::start(dir.path(), &config(&mock), None, &[], &[]);
    let c = common::client();
    let mut body = chat_body(MINI, "Say hello");
    body["x_vendor_field"] = json!({"keep": [1, 2.50]});
    let r = proxy.chat(&c, &body, &[]).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let v: Value = r.json().await.unwrap();
    assert!(
        h["x-switchyard-request-id"]
            .to_str()
            .unwrap()
            .starts_with("sy-")
    );
    assert_eq!(h["x-switchyard-model"], MINI);
    assert!(!h.contains_key("x-switchyard-policy-version"));
    let cost: f64 = h["x-switchyard-cost"].to_str().unwrap().parse().unwrap();
    assert!(cost > 0.0, "catalog price of {MINI} is known");
    assert_eq!(v["usage"]["cost"].as_f64().unwrap(), cost);
    assert!(v["usage"]["prompt_tokens"].as_i64().unwrap() > 0);
    assert!(v["choices"][0]["message"]["content"].as_str().is_some());
    let stats = mock.stats(&c).await;
    assert_eq!(stats["requests"][MINI], 1, "{stats}");
}

#[tokio::test]
async fn streams_pass_through_with_usage_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let proxy = Proxy::start(dir.path(), &config(&mock), None, &[], &[]);
    let c = common::client();

    let mut body = chat_body(MINI, "Tell a story");
    body["stream"] = json!(true);
    let r = proxy.chat(&c, &body, &[]).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(r.headers()["x-switchyard-model"], MINI);
    let data = sse_data(&r.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(data.len() > 2, "{data:?}");
    let mut text = String::new();
    for d in &data[..data.len() - 1] {
        let chunk: Value = serde_json::from_str(d).unwrap();
        assert!(
            chunk.get("usage").is_none_or(Value::is_null),
            "usage chunk not asked for: {d}"
        );
        assert!(!chunk["choices"].as_array().unwrap().is_empty(), "{d}");
        if let Some(t) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    assert!(!text.is_empty());

    body["stream_options"] = json!({"include_usage": true});
    let r = proxy.chat(&c, &body, &[]).await;
    let data = sse_data(&r.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let usage_chunk: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    let u = &usage_chunk["usage"];
    assert!(
        u["completion_tokens"].as_i64().unwrap() > 0,
        "{usage_chunk}"
    );
    assert!(u["cost"].as_f64().unwrap() > 0.0, "{usage_chunk}");
}

#[tokio::test]
async fn errors_keep_openai_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let cfg = format!("[server]\nmax_body_bytes = 2048\n\n{}", config(&mock));
    let proxy = Proxy::start(dir.path(), &cfg, None, &[], &[]);
    let c = common::client();
    let shape = |v: &Value| {
        let e = &v["error"];
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e["type"].as_str().is_some(), "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
    };
    let post = |body: &'static str| {
        c.post(proxy.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r = post("{not json").await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    shape(&v);
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let r = post(r#"{"messages": []}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    shape(&v);
    assert_eq!(v["error"]["param"], "model");

    let r = post(r#"{"model": "auto", "messages": []}"#).await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    shape(&v);
    assert_eq!(v["error"]["code"], "no_policy");
    assert!(v["error"]["message"].as_str().unwrap().contains("policy"));

    let r = proxy
        .chat(&c, &chat_body("acme/unknown-model", "hi"), &[])
        .await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    shape(&v);
    assert_eq!(v["error"]["code"], "model_not_found");

    let big = json!({"model": MINI, "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let r = proxy.chat(&c, &big, &[]).await;
    assert_eq!(r.status(), 413);
    shape(&r.json().await.unwrap());

    let r = c.get(proxy.url("/v1/nothing-here")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    shape(&r.json().await.unwrap());

    let r = c
        .get(proxy.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    shape(&r.json().await.unwrap());

    // An upstream's own client error comes back as the upstream said it.
    mock.behave(&c, json!({"model": BIG, "status": 400})).await;
    let r = proxy.chat(&c, &chat_body(BIG, "hi"), &[]).await;
    assert_eq!(r.status(), 400);
    shape(&r.json().await.unwrap());
}

#[tokio::test]
async fn models_health_metrics_and_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let p = policy("v-models", &[], &[(MINI, 1.0)], &[BIG]);
    let proxy = Proxy::start(dir.path(), &config(&mock), Some(&p), &[], &[]);
    let c = common::client();

    let v = proxy.get_json(&c, "/v1/models").await;
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    for want in ["auto", MINI, BIG, "text-embedding-3-small"] {
        assert!(ids.contains(&want), "{ids:?}");
    }

    let r = c
        .post(proxy.url("/v1/embeddings"))
        .json(&json!({"model": "text-embedding-3-small", "input": ["one", "two"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-model"], "text-embedding-3-small");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2, "{v}");

    let r = proxy.chat(&c, &chat_body("auto", "hi"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-policy-version"], "v-models");

    let h = c.get(proxy.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let m = proxy.metrics(&c).await;
    assert!(m.contains("switchyard_proxy_requests_total 2"), "{m}");
    assert!(
        m.contains("switchyard_proxy_upstream_open{upstream=\"mock\"} 0"),
        "{m}"
    );
}

#[tokio::test]
async fn serve_runs_the_proxy_into_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let cfg = dir.path().join("s.toml");
    std::fs::write(&cfg, config(&mock)).unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(common::bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--proxy-listen",
            "127.0.0.1:0",
        ])
        .args(["--data-dir", data.to_str().unwrap()])
        .args(["--config", cfg.to_str().unwrap()])
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env_remove("SWITCHYARD_INGEST_TOKEN")
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut proxy) = (None, None);
    while api.is_none() || proxy.is_none() {
        let l = lines.next().expect("serve exited").unwrap();
        if let Some(u) = l.strip_prefix(common::PROXY_LINE) {
            proxy = Some(u.to_string());
        } else if let Some(u) = l.strip_prefix("switchyard listening on ") {
            api = Some(u.to_string());
        }
    }
    let (api, proxy) = (api.unwrap(), proxy.unwrap());
    let c = common::client();
    let r = c
        .post(format!("{proxy}/v1/chat/completions"))
        .header("x-switchyard-task", "greet")
        .json(&chat_body(MINI, "hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-switchyard-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    // The record reaches serve's own query API: same process, same store.
    let sql = format!(
        "SELECT gateway, task, model, status, cost_source FROM requests WHERE request_id = '{id}'"
    );
    let mut rows = Vec::new();
    for _ in 0..50 {
        let v: Value = c
            .post(format!("{api}/api/query"))
            .json(&json!({"sql": sql}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rows = v["rows"].as_array().cloned().unwrap_or_default();
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        rows,
        vec![json!(["switchyard", "greet", MINI, 200, "catalog"])]
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test]
async fn keys_and_budgets_hold_at_the_door() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let cfg = format!(
        "{}\n[[key]]\nname = \"team-a\"\ntoken_env = \"PROXY_TEST_KEY_A\"\n\n\
         [[budget]]\ntask = \"capped\"\ndaily_usd = 0.0\n\n\
         [[budget]]\ntask = \"cheap\"\ndaily_usd = 0.0\non_exceed = \"downgrade:{MINI}\"\n",
        config(&mock)
    );
    let mut proxy = Proxy::start(
        dir.path(),
        &cfg,
        None,
        &[],
        &[("PROXY_TEST_KEY_A", "sk-team-a-123")],
    );
    let c = common::client();
    let auth = ("authorization", "Bearer sk-team-a-123");
    for h in [vec![], vec![("authorization", "Bearer sk-nope")]] {
        let r = proxy.chat(&c, &chat_body(MINI, "hi"), &h).await;
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
    }
    let r = proxy.chat(&c, &chat_body(MINI, "hi"), &[auth]).await;
    assert_eq!(r.status(), 200);

    let r = proxy
        .chat(
            &c,
            &chat_body(MINI, "hi"),
            &[auth, ("x-switchyard-task", "capped")],
        )
        .await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "insufficient_quota", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("task:capped"),
        "{v}"
    );

    let r = proxy
        .chat(
            &c,
            &chat_body(BIG, "hi"),
            &[auth, ("x-switchyard-task", "cheap")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-model"], MINI);
    let stats = mock.stats(&c).await;
    assert!(stats["requests"].get(BIG).is_none(), "{stats}");

    assert!(proxy.terminate().success());
    let rows = common::query_csv(
        &proxy.data_dir,
        "SELECT key_id, task, model, route FROM requests ORDER BY task",
    );
    assert_eq!(
        rows,
        vec![
            vec!["team-a", "capped", MINI, "budget-reject:task:capped"],
            vec!["team-a", "cheap", MINI, "budget-downgrade:task:cheap"],
            vec!["team-a", "default", MINI, "model"],
        ]
    );
}
