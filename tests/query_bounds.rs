//! The query API's bounds: read-only SQL, the time and memory limits, a query stopped when its
//! client goes away, and a server that keeps answering after each.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{Server, api_query, client, generated_store, metric, num};
use crate::reports::dataset;

#[test]
fn query_api_is_read_only_and_bounded_and_the_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchyard.toml");
    std::fs::write(
        &config,
        "[query]\ntimeout_ms = 1000\nmemory_limit_mb = 16\n",
    )
    .unwrap();
    let data = dataset();
    let server = Server::start(data, &["--config", config.to_str().unwrap()], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client();
        let post = |sql: &str| {
            let c = c.clone();
            let url = server.url("/api/query");
            let sql = sql.to_string();
            async move {
                let r = c
                    .post(url)
                    .json(&serde_json::json!({ "sql": sql }))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap();
                (
                    status,
                    body["error"].as_str().unwrap_or_default().to_string(),
                )
            }
        };
        for sql in [
            "CREATE TABLE t AS SELECT 1",
            "INSERT INTO requests_buffered SELECT * FROM requests_buffered",
            "DROP VIEW requests",
            "COPY (SELECT 1) TO '/tmp/switchyard-copy.csv'",
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "SET datafusion.execution.batch_size = 1",
        ] {
            let (status, err) = post(sql).await;
            assert_eq!(status, 400, "{sql}: {err}");
            assert!(
                err.contains("not allowed") || err.contains("not supported"),
                "{sql}: {err}"
            );
        }
        assert!(!Path::new("/tmp/switchyard-copy.csv").exists());
        // Past the time bound: a clear error, and the server keeps answering.
        let (status, err) = post(
            "SELECT COUNT(*) FROM requests a CROSS JOIN requests b \
             WHERE a.request_id < b.request_id AND a.model = b.model",
        )
        .await;
        assert_eq!(status, 422, "{err}");
        assert!(err.contains("time limit of 1000 ms"), "{err}");
        // Past the memory bound.
        let (status, err) = post(
            "SELECT length(string_agg(a.request_id, ',')) FROM requests a \
             CROSS JOIN (SELECT 1 FROM requests LIMIT 200) b",
        )
        .await;
        assert_eq!(status, 422, "{err}");
        assert!(err.contains("memory limit"), "{err}");
        let rows = api_query(&c, &server, "SELECT COUNT(*) FROM requests").await;
        assert_eq!(num(&rows[0][0]), 20000.0);
        assert_eq!(
            metric(&c, &server, "switchyard_queries_limited_total").await,
            2.0
        );
        assert_eq!(
            metric(&c, &server, "switchyard_queries_rejected_total").await,
            6.0
        );
        assert_eq!(
            metric(&c, &server, "switchyard_query_duration_seconds_count").await,
            9.0
        );
        // Reports over HTTP: a named report, an unknown one, a bad window.
        let r = c
            .get(server.url("/api/reports/spend_by_task?since=2026-11-10&until=2026-11-20"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["columns"][0], "task");
        assert!(body["rows"].as_array().unwrap().len() >= 10);
        let r = c.get(server.url("/api/reports/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        let r = c
            .get(server.url("/api/reports/spend_by_task?since=soon"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = c
            .get(server.url("/api/reports/spend_by_task?sinse=7d"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    });
}

/// A client that disconnects stops its query: the server does not spend its cores on an
/// answer nobody reads until the time bound (a dashboard closed mid-load, a script killed).
#[test]
fn a_query_stops_when_its_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_store(
        dir.path(),
        "data",
        &["--requests", "2000", "--days", "2", "--seed", "3"],
    );
    let config = dir.path().join("switchyard.toml");
    // A time bound far beyond the test: only the disconnect can stop the query in time.
    std::fs::write(&config, "[query]\ntimeout_ms = 600000\n").unwrap();
    let server = Server::start(&data, &["--config", config.to_str().unwrap()], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client();
        let running = || metric(&c, &server, "switchyard_queries_running");
        assert_eq!(running().await, 0.0);
        // About 1.6e13 rows to count: it does not finish on its own while the test runs.
        let endless = "SELECT count(*) FROM requests a CROSS JOIN requests b \
                       CROSS JOIN requests c CROSS JOIN requests d \
                       WHERE a.request_id < b.request_id";
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        let call = impatient
            .post(server.url("/api/query"))
            .json(&serde_json::json!({ "sql": endless }))
            .send();
        let (answer, seen) = tokio::join!(call, gauge_reaches(&running, 1.0, 3));
        assert!(
            answer.unwrap_err().is_timeout(),
            "the query should still run"
        );
        assert_eq!(
            seen, 1.0,
            "the running query shows in switchyard_queries_running"
        );
        let left = gauge_reaches(&running, 0.0, 20).await;
        assert_eq!(left, 0.0, "the query outlived its client");
        // The server answers as before.
        let rows = api_query(&c, &server, "SELECT count(*) FROM requests").await;
        assert!(num(&rows[0][0]) >= 2000.0);
    });
}

/// Polls `read` until it returns `want` or `secs` pass; the last value read.
async fn gauge_reaches<F: std::future::Future<Output = f64>>(
    read: impl Fn() -> F,
    want: f64,
    secs: u64,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = read().await;
    while last != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        last = read().await;
    }
    last
}
