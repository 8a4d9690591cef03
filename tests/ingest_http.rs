//! HTTP ingest: mixed batches, size limits, compression, auth, dedupe on re-send.

use std::io::Write;

use serde_json::Value;

use crate::common::{Server, api_query, client, num, record};

#[tokio::test]
async fn mixed_batch_stores_good_lines_and_reports_bad_ones_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let c = client();
    let body = [
        record("mix-1", "openai/gpt-4o-mini", 1000, 200),
        "{not json".to_string(),
        record("mix-2", "anthropic/claude-haiku-4-5", 3000, 500),
        r#"{"request_id":"mix-3","ts":"2026-11-20T10:00:00Z"}"#.to_string(),
        r#"{"request_id":"mix-4","ts":"2026-11-20T10:00:00Z","model":"gpt-4o","prompt_tokens":-5}"#
            .to_string(),
        record("mix-5", "acme/unknown-model", 10, 10),
    ]
    .join("\n");
    let r = c.post(s.url("/v1/logs")).body(body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["accepted"], 3, "{out}");
    assert_eq!(out["duplicates"], 0);
    let rejected = out["rejected"].as_array().unwrap();
    let idx: Vec<u64> = rejected
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![1, 3, 4], "{out}");
    assert!(
        rejected[0]["error"]
            .as_str()
            .unwrap()
            .contains("invalid JSON")
    );
    assert!(rejected[1]["error"].as_str().unwrap().contains("model"));
    assert!(
        rejected[2]["error"]
            .as_str()
            .unwrap()
            .contains("prompt_tokens")
    );

    // Visible to queries before any flush, with catalog costs and an honest unknown.
    let rows = api_query(
        &c,
        &s,
        "SELECT request_id, cost_usd, cost_source FROM requests ORDER BY request_id",
    )
    .await;
    assert_eq!(rows.len(), 3);
    // gpt-4o-mini: 1000 × 0.15 + 200 × 0.6 per 1M tokens.
    assert_eq!(rows[0][0], "mix-1");
    assert!((num(&rows[0][1]) - 0.00027).abs() < 1e-12, "{:?}", rows[0]);
    assert_eq!(rows[0][2], "catalog");
    // claude-haiku-4-5: 3000 × 1 + 500 × 5 per 1M tokens.
    assert!((num(&rows[1][1]) - 0.0055).abs() < 1e-12, "{:?}", rows[1]);
    assert_eq!(rows[2][1], Value::Null);
    assert_eq!(rows[2][2], "unknown");
}

#[tokio::test]
async fn nothing_usable_is_400_and_oversize_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("switchyard.toml");
    std::fs::write(&cfg, "[server]\nmax_body_bytes = 4096\n").unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
        &[],
    );
    let c = client();
    let r = c
        .post(s.url("/v1/logs"))
        .body("{bad\n[]x\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["accepted"], 0);
    assert_eq!(out["rejected"].as_array().unwrap().len(), 2);

    let big: String = (0..200)
        .map(|i| record(&format!("big-{i}"), "gpt-4o", 1, 1) + "\n")
        .collect();
    assert!(big.len() > 4096);
    let r = c
        .post(s.url("/v1/logs"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // A small gzip body that inflates past the limit is refused as well.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(big.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 4096);
    let r = client()
        .post(s.url("/v1/logs"))
        .header("content-encoding", "gzip")
        .body(gz)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let rows = api_query(&c, &s, "SELECT count(*) FROM requests").await;
    assert_eq!(num(&rows[0][0]), 0.0);
}

#[tokio::test]
async fn gzip_and_zstd_bodies_are_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &[], &[]);
    let c = client();
    let plain = |p: &str| -> String {
        (0..50)
            .map(|i| record(&format!("{p}-{i}"), "gpt-4o-mini", 100, 10) + "\n")
            .collect()
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(plain("gz").as_bytes()).unwrap();
    let r = c
        .post(s.url("/v1/logs"))
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 50);
    let z = zstd::encode_all(plain("zst").as_bytes(), 3).unwrap();
    let r = c
        .post(s.url("/v1/logs"))
        .header("content-encoding", "zstd")
        .body(z)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["accepted"], 50);
    let r = c
        .post(s.url("/v1/logs"))
        .header("content-encoding", "br")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let rows = api_query(&c, &s, "SELECT count(*) FROM requests").await;
    assert_eq!(num(&rows[0][0]), 100.0);
}

#[tokio::test]
async fn tokens_guard_ingest_and_query() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        dir.path(),
        &[],
        &[
            ("SWITCHYARD_INGEST_TOKEN", "ing-secret"),
            ("SWITCHYARD_ADMIN_TOKEN", "adm-secret"),
        ],
    );
    let c = client();
    let body = record("auth-1", "gpt-4o-mini", 10, 10);
    let r = c
        .post(s.url("/v1/logs"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(s.url("/v1/logs"))
        .bearer_auth("wrong")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let q = serde_json::json!({"sql": "SELECT count(*) AS n FROM requests"});
    let r = c.post(s.url("/api/query")).json(&q).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // The ingest token does not open the query API.
    let r = c
        .post(s.url("/api/query"))
        .bearer_auth("ing-secret")
        .json(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Nothing was stored by the refused requests.
    let r = c
        .post(s.url("/api/query"))
        .bearer_auth("adm-secret")
        .json(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(num(&r.json::<Value>().await.unwrap()["rows"][0][0]), 0.0);
    let r = c
        .post(s.url("/v1/logs"))
        .bearer_auth("ing-secret")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn serve_refuses_a_public_address_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::run(
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen"), "{err}");
}

#[tokio::test]
async fn resending_a_batch_changes_no_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(dir.path(), &["--flush-interval-ms", "200"], &[]);
    let c = client();
    let body: String = (0..300)
        .map(|i| record(&format!("re-{i}"), "gpt-4o-mini", 100 + i, 10) + "\n")
        .collect();
    let fb: String = (0..100)
        .map(|i| {
            format!("{{\"request_id\":\"re-{i}\",\"value\":0.5,\"ts\":\"2026-11-20T11:00:00Z\"}}\n")
        })
        .collect();
    let first: Value = c
        .post(s.url("/v1/logs"))
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["accepted"], 300);
    let f1: Value = c
        .post(s.url("/v1/feedback"))
        .body(fb.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f1["accepted"], 100);
    let totals = "SELECT (SELECT count(*) FROM requests) AS n, (SELECT sum(cost_usd) FROM requests) AS cost, (SELECT count(*) FROM feedback) AS fb";
    let before = api_query(&c, &s, totals).await;
    // Again right away (still buffered), after a flush to Parquet, and after a restart.
    for round in 0..3 {
        if round == 1 {
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        }
        if round == 2 {
            assert!(s.terminate().success());
            s = Server::start(dir.path(), &[], &[]);
        }
        let again: Value = c
            .post(s.url("/v1/logs"))
            .body(body.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(again["accepted"], 0, "round {round}: {again}");
        assert_eq!(again["duplicates"], 300);
        let f2: Value = c
            .post(s.url("/v1/feedback"))
            .body(fb.clone())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(f2["duplicates"], 100, "round {round}: {f2}");
        assert_eq!(api_query(&c, &s, totals).await, before, "round {round}");
    }
    assert_eq!(num(&before[0][0]), 300.0);
}
