//! `switchyard ingest` from files and stdin, compressed or not; rejected lines by number;
//! idempotent re-runs; retention; compaction; price imports.

use std::io::Write;

use crate::common::{Server, client, query_csv, record, run, run_ok, run_stdin, shared_data};

fn lines(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            record(
                &format!("{prefix}-{i}"),
                "openai/gpt-4o-mini",
                1000 + i as i64,
                50,
            ) + "\n"
        })
        .collect()
}

#[test]
fn plain_gzip_zstd_and_stdin_inputs_all_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let plain = dir.path().join("a.ndjson");
    std::fs::write(&plain, lines("p", 100)).unwrap();
    let gz = dir.path().join("b.ndjson.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(lines("g", 100).as_bytes()).unwrap();
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let zst = dir.path().join("c.ndjson.zst");
    std::fs::write(
        &zst,
        zstd::encode_all(lines("z", 100).as_bytes(), 3).unwrap(),
    )
    .unwrap();
    let out = run_ok(&[
        "ingest",
        "--data-dir",
        d,
        plain.to_str().unwrap(),
        gz.to_str().unwrap(),
        zst.to_str().unwrap(),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "accepted 300 duplicates 0 rejected 0"
    );
    let out = run_stdin(&["ingest", "--data-dir", d, "-"], lines("s", 50).as_bytes());
    assert!(out.status.success());
    // Re-running an import stores nothing new.
    let out = run(&["ingest", "--data-dir", d, gz.to_str().unwrap()], &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "accepted 0 duplicates 100 rejected 0"
    );
    let rows = query_csv(
        &data,
        "SELECT count(*), count(DISTINCT request_id), sum(prompt_tokens) FROM requests",
    );
    assert_eq!(rows[0][0], "350");
    assert_eq!(rows[0][1], "350");
    let want: i64 =
        3 * (0..100).map(|i| 1000 + i).sum::<i64>() + (0..50).map(|i| 1000 + i).sum::<i64>();
    assert_eq!(rows[0][2], want.to_string());
}

#[test]
fn rejected_lines_are_named_by_line_number_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f = dir.path().join("mixed.ndjson");
    let body = format!(
        "{}\n{{oops\n\n{}\n{{\"request_id\":\"x\",\"ts\":\"yesterday\",\"model\":\"gpt-4o\"}}\n",
        record("ok-1", "gpt-4o", 1, 1),
        record("ok-2", "gpt-4o", 1, 1)
    );
    std::fs::write(&f, body).unwrap();
    let out = run(
        &[
            "ingest",
            "--data-dir",
            data.to_str().unwrap(),
            f.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mixed.ndjson:2: invalid JSON"), "{err}");
    assert!(err.contains("mixed.ndjson:5: `ts`"), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "accepted 2 duplicates 0 rejected 2"
    );
    assert_eq!(query_csv(&data, "SELECT count(*) FROM requests")[0][0], "2");
}

#[test]
fn an_otlp_export_file_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otlp/current.json");
    run_ok(&[
        "ingest",
        "--data-dir",
        data.to_str().unwrap(),
        f.to_str().unwrap(),
    ]);
    let rows = query_csv(&data, "SELECT count(*), min(gateway) FROM requests");
    assert_ne!(rows[0][0], "0");
    assert_eq!(rows[0][1], "otlp");
}

#[test]
fn retention_drops_old_partitions_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let f = dir.path().join("r.ndjson");
    let now = chrono::Utc::now();
    let old = (now - chrono::Duration::days(90)).to_rfc3339();
    let recent = (now - chrono::Duration::days(1)).to_rfc3339();
    let body = format!(
        "{{\"request_id\":\"old\",\"ts\":\"{old}\",\"model\":\"gpt-4o\"}}\n{{\"request_id\":\"new\",\"ts\":\"{recent}\",\"model\":\"gpt-4o\"}}\n"
    );
    std::fs::write(&f, body).unwrap();
    let out = run(
        &[
            "ingest",
            "--data-dir",
            data.to_str().unwrap(),
            "--retention-days",
            "30",
            f.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success());
    let rows = query_csv(&data, "SELECT request_id FROM requests");
    assert_eq!(rows, vec![vec!["new".to_string()]]);
}

#[tokio::test]
async fn small_files_of_a_partition_are_compacted_without_losing_rows() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path(), &["--flush-interval-ms", "100"], &[]);
    let c = client();
    for b in 0..12 {
        let r = c
            .post(s.url("/v1/logs"))
            .body(lines(&format!("c{b}"), 40))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let part = dir.path().join("requests/date=2026-11-20/hour=10");
    let files: Vec<_> = std::fs::read_dir(&part)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .collect();
    assert!(
        files.len() < 8,
        "{} files left after compaction",
        files.len()
    );
    let rows = crate::common::api_query(
        &c,
        &s,
        "SELECT count(*), count(DISTINCT request_id) FROM requests",
    )
    .await;
    assert_eq!(crate::common::num(&rows[0][0]), 480.0);
    assert_eq!(crate::common::num(&rows[0][1]), 480.0);
}

#[test]
fn the_shipped_catalog_is_our_own_import_of_litellm() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("prices.json");
    let src = shared_data().join("prices/litellm-model-prices.json");
    run_ok(&[
        "prices",
        "import",
        src.to_str().unwrap(),
        "--format",
        "litellm",
        "--providers",
        "openai,anthropic,gemini,mistral,deepseek,xai",
        "--replace",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    let ours: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_path).unwrap()).unwrap();
    let shipped: serde_json::Value =
        serde_json::from_str(switchyard::prices::EMBEDDED_CATALOG).unwrap();
    assert!(
        ours == shipped,
        "data/prices.json differs from `prices import` of the LiteLLM catalog"
    );
}

#[test]
fn an_openrouter_catalog_import_prices_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    let cat = dir.path().join("models.json");
    std::fs::write(
        &cat,
        r#"{"data":[{"id":"acme/rocket-1","name":"Rocket","context_length":32000,
            "pricing":{"prompt":"0.000002","completion":"0.000008","input_cache_read":"0.0000005"}}]}"#,
    )
    .unwrap();
    run_ok(&[
        "prices",
        "import",
        cat.to_str().unwrap(),
        "--format",
        "openrouter",
        "--data-dir",
        d,
    ]);
    let out = run(&["prices", "show", "acme/rocket-1", "--data-dir", d], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"input\": \"2\""));
    let f = dir.path().join("r.ndjson");
    std::fs::write(&f, "{\"request_id\":\"r1\",\"ts\":1763632800000,\"model\":\"acme/rocket-1\",\"prompt_tokens\":1000,\"cached_tokens\":400,\"completion_tokens\":100}\n").unwrap();
    assert!(
        run(&["ingest", "--data-dir", d, f.to_str().unwrap()], &[])
            .status
            .success()
    );
    // 600 × 2 + 400 × 0.5 + 100 × 8 per 1M tokens = 0.0022 USD.
    let rows = query_csv(
        &data,
        "SELECT CAST(cost_usd AS VARCHAR), cost_source, ts FROM requests",
    );
    assert_eq!(rows[0][0], "0.002200000000");
    assert_eq!(rows[0][1], "catalog");
    assert!(
        rows[0][2].starts_with("2025-11-20T10:00:00"),
        "{:?}",
        rows[0]
    );
}
