//! Usage and cost capture as stored: every streamed request priced from its usage chunk
//! (asked for or not), an upstream's reported cost kept as `reported`, estimates marked when
//! an upstream gives no usage, and a client leaving mid-stream logged as cancelled.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::json;

use crate::common::{self, MockUpstream, Proxy, chat_body, fast_mock, upstream_toml};

const MINI: &str = "openai/gpt-4o-mini";
const ROUTER: &str = "anthropic/claude-haiku-4-5";
const BARE: &str = "openai/gpt-4o";

fn config(mock: &MockUpstream) -> String {
    upstream_toml("mock", &mock.base, &[MINI, ROUTER, BARE])
}

#[tokio::test]
async fn every_streamed_request_is_priced() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let c = common::client();
    mock.behave(&c, json!({"model": ROUTER, "report_cost": true}))
        .await;
    mock.behave(&c, json!({"model": BARE, "usage": false}))
        .await;
    let mut proxy = Proxy::start(dir.path(), &config(&mock), None, &[], &[]);
    for i in 0..20 {
        let mut body = chat_body(MINI, "stream me");
        body["stream"] = json!(true);
        if i % 2 == 0 {
            body["stream_options"] = json!({"include_usage": true});
        }
        let r = proxy.chat(&c, &body, &[("x-switchyard-task", "s")]).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().ends_with("data: [DONE]\n\n"));
    }
    for model in [ROUTER, BARE] {
        let mut body = chat_body(model, "stream me");
        body["stream"] = json!(true);
        let r = proxy.chat(&c, &body, &[("x-switchyard-task", "s")]).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    assert!(proxy.terminate().success());
    let data = dir.path().join("data");
    let rows = common::query_csv(
        &data,
        &format!(
            "SELECT count(*), min(prompt_tokens), min(completion_tokens), min(cost_usd), \
             min(ttft_ms) >= 0, bool_and(streamed) FROM requests \
             WHERE model = '{MINI}' AND cost_source = 'catalog' AND cost_usd > 0 AND status = 200"
        ),
    );
    assert_eq!(rows[0][0], "20", "{rows:?}");
    assert!(rows[0][1].parse::<i64>().unwrap() > 0, "{rows:?}");
    assert!(rows[0][2].parse::<i64>().unwrap() > 0, "{rows:?}");
    assert_eq!(rows[0][4..], ["true", "true"]);
    let rows = common::query_csv(
        &data,
        &format!(
            "SELECT model, cost_source, cost_usd > 0, completion_tokens > 0, \
             coalesce(metadata['usage_estimated'], '-') FROM requests \
             WHERE model IN ('{ROUTER}', '{BARE}') ORDER BY model"
        ),
    );
    assert_eq!(
        rows,
        vec![
            vec![ROUTER, "reported", "true", "true", "-"],
            vec![BARE, "catalog", "true", "true", "true"],
        ]
    );
}

#[tokio::test]
async fn a_client_leaving_mid_stream_is_logged_as_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    // About 20 tokens a second: the stream lasts seconds, the client leaves after two chunks.
    let mock = MockUpstream::start(&["--ttft-ms", "0", "--tokens-per-s", "20"]);
    let mut proxy = Proxy::start(dir.path(), &config(&mock), None, &[], &[]);
    let c = common::client();
    let mut body = chat_body(MINI, "write a long essay");
    body["stream"] = json!(true);
    body["max_tokens"] = json!(400);
    let r = proxy.chat(&c, &body, &[]).await;
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-switchyard-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut s = r.bytes_stream();
    let mut got = 0;
    while got < 2 {
        let chunk = s.next().await.unwrap().unwrap();
        got += chunk.windows(5).filter(|w| w == b"data:").count();
    }
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(proxy.terminate().success());
    let rows = common::query_csv(
        &dir.path().join("data"),
        &format!(
            "SELECT status, finish_reason, completion_tokens > 0, completion_tokens < 400, streamed \
             FROM requests WHERE request_id = '{id}'"
        ),
    );
    assert_eq!(rows, vec![vec!["499", "cancelled", "true", "true", "true"]]);
}

#[tokio::test]
async fn records_reach_a_remote_ingest_server() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let server = common::Server::start(&dir.path().join("central"), &[], &[]);
    let mut proxy = Proxy::start(
        dir.path(),
        &config(&mock),
        None,
        &["--ingest-url", &server.base],
        &[],
    );
    let c = common::client();
    let mut ids = Vec::new();
    for stream in [false, true] {
        let mut body = chat_body(MINI, "remote");
        body["stream"] = json!(stream);
        let r = proxy.chat(&c, &body, &[("x-switchyard-task", "far")]).await;
        assert_eq!(r.status(), 200);
        ids.push(
            r.headers()["x-switchyard-request-id"]
                .to_str()
                .unwrap()
                .to_string(),
        );
        r.text().await.unwrap();
    }
    // Closing delivers what is queued.
    assert!(proxy.terminate().success());
    let rows = common::api_query(
        &c,
        &server,
        "SELECT request_id, task, gateway, streamed FROM requests ORDER BY streamed",
    )
    .await;
    assert_eq!(
        rows,
        vec![
            vec![
                json!(ids[0]),
                json!("far"),
                json!("switchyard"),
                json!(false)
            ],
            vec![
                json!(ids[1]),
                json!("far"),
                json!("switchyard"),
                json!(true)
            ],
        ]
    );
}

#[tokio::test]
async fn a_client_leaving_before_the_answer_is_logged_as_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let c = common::client();
    mock.behave(&c, json!({"model": MINI, "latency_ms": 3000}))
        .await;
    let mut proxy = Proxy::start(dir.path(), &config(&mock), None, &[], &[]);
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = impatient
        .post(proxy.url("/v1/chat/completions"))
        .json(&chat_body(MINI, "slow answer"))
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(proxy.terminate().success());
    let rows = common::query_csv(
        &dir.path().join("data"),
        "SELECT status, finish_reason, streamed, attempt FROM requests",
    );
    assert_eq!(rows, vec![vec!["499", "cancelled", "false", "1"]]);
}
