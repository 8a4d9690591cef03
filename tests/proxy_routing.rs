//! Routing through the proxy: fallbacks on every failure class, none once a stream has
//! begun, a dead upstream skipped during its cooldown and probed after, weighted targets
//! within statistical tolerance, and the attempts as logged.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::common::{self, MockUpstream, Proxy, chat_body, fast_mock, policy, upstream_toml};

const PRIMARY: &str = "openai/gpt-4o";
const BACKUP: &str = "openai/gpt-4o-mini";
const SLOW: &str = "openai/gpt-4.1";
const GONE: &str = "openai/gpt-4.1-mini";

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Upstreams: `primary` and `backup` on the mock, `slow` on the mock with a short timeout,
/// `gone` on a closed port.
fn config(mock: &MockUpstream) -> String {
    format!(
        "{}\n{}\n{}timeout_ms = 300\n\n{}",
        upstream_toml("primary", &mock.base, &[PRIMARY]),
        upstream_toml("backup", &mock.base, &[BACKUP]),
        upstream_toml("slow", &mock.base, &[SLOW]),
        upstream_toml(
            "gone",
            &format!("http://127.0.0.1:{}", closed_port()),
            &[GONE]
        ),
    )
}

fn fallback_policy() -> Value {
    policy(
        "v-fallback",
        &[
            ("t-primary", &[(PRIMARY, 1.0)], &[BACKUP], PRIMARY),
            ("t-slow", &[(SLOW, 1.0)], &[BACKUP], SLOW),
            ("t-gone", &[(GONE, 1.0)], &[BACKUP], GONE),
        ],
        &[(BACKUP, 1.0)],
        &[],
    )
}

async fn served_by(proxy: &Proxy, c: &reqwest::Client, task: &str) -> (u16, String, String) {
    let r = proxy
        .chat(c, &chat_body("auto", "hi"), &[("x-switchyard-task", task)])
        .await;
    let status = r.status().as_u16();
    let model = r
        .headers()
        .get("x-switchyard-model")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let id = r
        .headers()
        .get("x-switchyard-request-id")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, model, id)
}

#[tokio::test]
async fn falls_back_on_each_failure_class() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    mock.behave(
        &common::client(),
        json!({"model": SLOW, "latency_ms": 3000}),
    )
    .await;
    // One pass, no retries, a breaker that never opens: every request shows one fallback.
    let proxy = Proxy::start(
        dir.path(),
        &config(&mock),
        Some(&fallback_policy()),
        &["--retries", "0", "--breaker-failures", "1000"],
        &[],
    );
    let c = common::client();
    let mut ids = Vec::new();
    for status in [429, 500, 503] {
        mock.behave(&c, json!({"model": PRIMARY, "status": status}))
            .await;
        let (s, model, id) = served_by(&proxy, &c, "t-primary").await;
        assert_eq!((s, model.as_str()), (200, BACKUP), "after a {status}");
        ids.push((id, status));
    }
    let (s, model, id) = served_by(&proxy, &c, "t-slow").await;
    assert_eq!((s, model.as_str()), (200, BACKUP), "after a timeout");
    ids.push((id, 504));
    let (s, model, id) = served_by(&proxy, &c, "t-gone").await;
    assert_eq!(
        (s, model.as_str()),
        (200, BACKUP),
        "after a refused connection"
    );
    ids.push((id, 502));

    let stats = mock.stats(&c).await;
    assert_eq!(stats["requests"][PRIMARY], 3, "{stats}");
    assert_eq!(stats["requests"][BACKUP], 5, "{stats}");

    // Each request: the failed first attempt, then the fallback that answered.
    assert!(proxy_exit(proxy));
    for (id, status) in ids {
        let parent = id.trim_end_matches(".2");
        let rows = common::query_csv(
            &dir.path().join("data"),
            &format!(
                "SELECT request_id, attempt, status, route, coalesce(parent_id, '-'), policy_version \
                 FROM requests WHERE request_id LIKE '{parent}%' ORDER BY attempt"
            ),
        );
        assert_eq!(
            rows,
            vec![
                vec![
                    parent.to_string(),
                    "1".into(),
                    status.to_string(),
                    format!("policy:{}", task_of(status)),
                    "-".into(),
                    "v-fallback".into()
                ],
                vec![
                    id.clone(),
                    "2".into(),
                    "200".into(),
                    format!("policy:{}/fallback", task_of(status)),
                    parent.to_string(),
                    "v-fallback".into()
                ],
            ],
            "attempts of {id}"
        );
    }
}

fn task_of(status: u16) -> &'static str {
    match status {
        504 => "t-slow",
        502 => "t-gone",
        _ => "t-primary",
    }
}

fn proxy_exit(mut p: Proxy) -> bool {
    p.terminate().success()
}

#[tokio::test]
async fn no_fallback_once_a_stream_has_begun() {
    let dir = tempfile::tempdir().unwrap();
    // Chunks paced out, so the first ones reach the client before the upstream breaks.
    let mock = MockUpstream::start(&["--ttft-ms", "0", "--tokens-per-s", "200"]);
    let c = common::client();
    mock.behave(&c, json!({"model": PRIMARY, "abort_after_chunks": 2}))
        .await;
    let proxy = Proxy::start(
        dir.path(),
        &config(&mock),
        Some(&fallback_policy()),
        &[],
        &[],
    );
    let mut body = chat_body("auto", "a long story please");
    body["stream"] = json!(true);
    let r = proxy
        .chat(&c, &body, &[("x-switchyard-task", "t-primary")])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-model"], PRIMARY);
    let text = r.text().await.unwrap();
    let data = crate::proxy::sse_data(&text);
    let chunks = data.iter().filter(|d| d.contains("\"choices\"")).count();
    assert_eq!(chunks, 2, "{text}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_broken", "{text}");
    let stats = mock.stats(&c).await;
    assert_eq!(stats["requests"][PRIMARY], 1, "{stats}");
    assert!(
        stats["requests"].get(BACKUP).is_none_or(|n| n == 0),
        "{stats}"
    );
    assert!(proxy_exit(proxy));
    let rows = common::query_csv(
        &dir.path().join("data"),
        "SELECT status, streamed, attempt FROM requests",
    );
    assert_eq!(rows, vec![vec!["502", "true", "1"]]);
}

#[tokio::test]
async fn a_dead_upstream_is_skipped_during_cooldown_then_probed() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let c = common::client();
    let proxy = Proxy::start(
        dir.path(),
        &config(&mock),
        Some(&fallback_policy()),
        &[
            "--retries",
            "0",
            "--breaker-failures",
            "2",
            "--cooldown-ms",
            "1500",
        ],
        &[],
    );
    mock.behave(&c, json!({"model": PRIMARY, "status": 503}))
        .await;
    for _ in 0..2 {
        assert_eq!(served_by(&proxy, &c, "t-primary").await.1, BACKUP);
    }
    let stats = mock.stats(&c).await;
    assert_eq!(stats["requests"][PRIMARY], 2, "{stats}");
    let m = proxy.metrics(&c).await;
    assert!(
        m.contains("switchyard_proxy_upstream_open{upstream=\"primary\"} 1"),
        "{m}"
    );

    // Open: primary is not called at all during the cooldown.
    for _ in 0..10 {
        assert_eq!(served_by(&proxy, &c, "t-primary").await.1, BACKUP);
    }
    let stats = mock.stats(&c).await;
    assert_eq!(
        stats["requests"][PRIMARY], 2,
        "called during cooldown: {stats}"
    );

    // Recovered upstream, cooldown over: one probe goes through and closes the circuit.
    c.post(mock.url("/mock/reset")).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(served_by(&proxy, &c, "t-primary").await.1, PRIMARY);
    for _ in 0..3 {
        assert_eq!(served_by(&proxy, &c, "t-primary").await.1, PRIMARY);
    }
    let stats = mock.stats(&c).await;
    assert_eq!(stats["requests"][PRIMARY], 4, "{stats}");
    let m = proxy.metrics(&c).await;
    assert!(
        m.contains("switchyard_proxy_upstream_open{upstream=\"primary\"} 0"),
        "{m}"
    );
}

#[tokio::test]
async fn weights_hold_within_statistical_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let c = common::client();
    let models = [(PRIMARY, 0.6), (BACKUP, 0.3), (SLOW, 0.1)];
    let p = policy("v-weights", &[], &models, &[]);
    let cfg = upstream_toml("mock", &mock.base, &[PRIMARY, BACKUP, SLOW]);
    let proxy = Proxy::start(dir.path(), &cfg, Some(&p), &[], &[]);
    const N: usize = 2000;
    let counts: HashMap<String, usize> = futures::stream::iter(0..N)
        .map(|_| {
            let (c, proxy) = (&c, &proxy);
            async move {
                let r = proxy.chat(c, &chat_body("auto", "x"), &[]).await;
                assert_eq!(r.status(), 200);
                r.headers()["x-switchyard-model"]
                    .to_str()
                    .unwrap()
                    .to_string()
            }
        })
        .buffer_unordered(16)
        .fold(HashMap::new(), |mut m, model| async move {
            *m.entry(model).or_insert(0) += 1;
            m
        })
        .await;
    // Pearson's chi-square against the weights, 2 degrees of freedom: 27.63 (= 2 ln 10^6) is the
    // one-in-a-million critical value. Over these 2,000 requests, 5 points of weight moved onto
    // the 10% model score about 58 and 10 points moved between the others about 100, so a real
    // routing error still fails it.
    let chi2: f64 = models
        .iter()
        .map(|(m, w)| {
            let expected = w * N as f64;
            let seen = *counts.get(*m).unwrap_or(&0) as f64;
            (seen - expected).powi(2) / expected
        })
        .sum();
    assert!(chi2 < 27.63, "chi-square {chi2:.2} for counts {counts:?}");
    assert_eq!(counts.values().sum::<usize>(), N);
    // The mock saw the same split: the header names the model that really answered.
    let stats = mock.stats(&c).await;
    for (m, _) in models {
        assert_eq!(stats["requests"][m], counts[m] as u64, "{stats}");
    }
}

#[tokio::test]
async fn retries_back_off_within_the_request_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let c = common::client();
    mock.behave(&c, json!({"model": PRIMARY, "status": 503}))
        .await;
    mock.behave(&c, json!({"model": BACKUP, "latency_ms": 5000}))
        .await;
    let proxy = Proxy::start(
        dir.path(),
        &config(&mock),
        None,
        &[
            "--retries",
            "2",
            "--backoff-ms",
            "100",
            "--breaker-failures",
            "1000",
            "--deadline-ms",
            "700",
        ],
        &[],
    );
    // Three passes over the one upstream of a named model, with 50-100 then 100-200 ms
    // between them; the upstream's own 503 comes back.
    let t = std::time::Instant::now();
    let r = proxy.chat(&c, &chat_body(PRIMARY, "hi"), &[]).await;
    let took = t.elapsed();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().is_some(), "{v}");
    assert_eq!(mock.stats(&c).await["requests"][PRIMARY], 3);
    assert!(took >= Duration::from_millis(150), "{took:?}");

    // An upstream slower than the deadline: 504 once the deadline passes, not after 5 s.
    let t = std::time::Instant::now();
    let r = proxy.chat(&c, &chat_body(BACKUP, "hi"), &[]).await;
    let took = t.elapsed();
    assert_eq!(r.status(), 504);
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_millis(3000),
        "{took:?}"
    );
}
