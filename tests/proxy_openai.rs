//! The official `openai` Python client, unmodified, against the proxy: plain and streamed
//! completions (with and without the usage chunk), embeddings, the models list, and upstream
//! and proxy errors surfacing as the client's typed exceptions.

use std::process::Command;

use serde_json::{Value, json};

use crate::common::{self, Proxy, fast_mock, upstream_toml};

const CHAT: &str = "openai/gpt-4o-mini";
const EMBED: &str = "text-embedding-3-small";
const LIMITED: &str = "openai/gpt-4o";

#[tokio::test]
async fn the_openai_python_client_works_unmodified() {
    let python = std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".into());
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let c = common::client();
    mock.behave(&c, json!({"model": LIMITED, "status": 429}))
        .await;
    let cfg = format!(
        "{}\n[[budget]]\ntask = \"capped\"\ndaily_usd = 0.0\n",
        upstream_toml("mock", &mock.base, &[CHAT, EMBED, LIMITED])
    );
    let proxy = Proxy::start(dir.path(), &cfg, None, &["--retries", "0"], &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/openai_client.py");
    let base = proxy.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([script, &base, CHAT, EMBED, LIMITED])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "openai client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();

    let plain = &v["plain"];
    assert!(!plain["content"].as_str().unwrap().is_empty(), "{v}");
    assert!(plain["prompt_tokens"].as_i64().unwrap() > 0, "{v}");
    assert_eq!(plain["header_model"], CHAT);
    let cost = plain["cost"].as_f64().unwrap();
    assert!(cost > 0.0, "{v}");
    assert_eq!(
        plain["header_cost"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap(),
        cost
    );

    assert!(v["stream"]["chunks"].as_i64().unwrap() > 1, "{v}");
    assert!(!v["stream"]["text"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(
        v["stream"]["usage"],
        json!([]),
        "usage chunk not asked for: {v}"
    );
    let usage = v["stream_usage"]["usage"].as_array().unwrap();
    assert_eq!(usage.len(), 1, "{v}");
    assert!(usage[0]["completion_tokens"].as_i64().unwrap() > 0, "{v}");
    assert!(usage[0]["cost"].as_f64().unwrap() > 0.0, "{v}");

    assert_eq!(v["embeddings"]["count"], 2, "{v}");
    assert!(v["embeddings"]["dims"].as_i64().unwrap() > 0, "{v}");
    let models: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(models, vec![LIMITED, CHAT, EMBED]);

    assert_eq!(
        v["unknown_model"],
        json!({"class": "NotFoundError", "status": 404, "code": "model_not_found"})
    );
    assert_eq!(
        v["over_budget"],
        json!({"class": "RateLimitError", "status": 429, "code": "insufficient_quota"})
    );
    assert_eq!(v["limited_model"]["class"], "RateLimitError", "{v}");
    assert_eq!(v["limited_model"]["status"], 429, "{v}");
}
