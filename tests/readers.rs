//! The Parquet store read back: the expected schema, and the same rows and the same total
//! cost through DuckDB, pyarrow and Polars as through switchyard itself.

use std::process::Command;

use rust_decimal::Decimal;
use serde_json::Value;
use switchyard::schema::Table;

use crate::common::{generated_store, query_csv, run, run_ok};

/// The Python with duckdb, pyarrow and polars (`.ci/run` sets it up).
fn python() -> String {
    std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn parquet_store_reads_the_same_in_duckdb_pyarrow_and_polars() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("gen.ndjson");
    let data = dir.path().join("data");
    let (input_s, data_s) = (input.to_str().unwrap(), data.to_str().unwrap());
    let out = run(
        &[
            "generate",
            "--requests",
            "30000",
            "--days",
            "7",
            "--out",
            input_s,
        ],
        &[],
    );
    assert!(out.status.success());
    run_ok(&["ingest", "--data-dir", data_s, input_s]);

    // The files carry the file schema exactly (partition columns live in the path).
    let file = walk(&data.join("requests"))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&file).unwrap(),
    )
    .unwrap();
    let schema = reader.schema();
    let want = Table::Requests.file_schema();
    let got: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let expected: Vec<_> = want
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(got, expected);

    let ours = query_csv(
        &data,
        "SELECT count(*), sum(cost_usd), count(DISTINCT date), (SELECT count(*) FROM feedback) AS fb FROM requests",
    );
    let (rows, cost, days, fb) = (
        &ours[0][0],
        ours[0][1].parse::<Decimal>().unwrap(),
        &ours[0][2],
        &ours[0][3],
    );
    assert_eq!(rows, "30000");
    assert!(cost > Decimal::ZERO);

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/read_store.py");
    let py = Command::new(python())
        .arg(script)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "python readers failed: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    let seen: Value = serde_json::from_slice(&py.stdout).unwrap();
    for reader in ["duckdb", "pyarrow", "polars"] {
        let r = &seen[reader];
        assert_eq!(r["rows"].to_string(), *rows, "{reader}: {r}");
        assert_eq!(r["feedback"].to_string(), *fb, "{reader}: {r}");
        assert_eq!(r["days"].to_string(), *days, "{reader}: {r}");
        let their: Decimal = r["cost"].as_str().unwrap().parse().unwrap();
        assert_eq!(their.normalize(), cost.normalize(), "{reader} total cost");
    }
    // pyarrow sees the exact decimal type and the UTC timestamp.
    let s = &seen["pyarrow"]["schema"];
    assert_eq!(s["cost_usd"], "decimal128(18, 12)");
    assert_eq!(s["ts"], "timestamp[us, tz=UTC]");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn readme_examples_run_against_a_real_store() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("<!-- tested: readers -->")
        .skip(1)
        .map(|rest| {
            let body = rest.split_once("```python\n").unwrap().1;
            body.split_once("```").unwrap().0
        })
        .collect();
    assert_eq!(blocks.len(), 3, "README reader examples");
    let dir = tempfile::tempdir().unwrap();
    let data = generated_store(
        dir.path(),
        "switchyard-data",
        &["--requests", "5000", "--days", "3"],
    );
    let models: Vec<String> = query_csv(&data, "SELECT DISTINCT model FROM requests")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert!(models.len() >= 5);
    for (i, code) in blocks.iter().enumerate() {
        let out = Command::new(python())
            .arg("-c")
            .arg(code)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README example {} failed:\n{code}\n{}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
        for m in &models {
            assert!(
                stdout.contains(m.as_str()),
                "example {} does not show {m}:\n{stdout}",
                i + 1
            );
        }
    }
}
