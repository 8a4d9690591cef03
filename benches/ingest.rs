//! Ingest benchmarks, each a ratio measured side by side in one run:
//!
//! 1. sustained HTTP ingest on loopback (batches of 1,000 canonical records, WAL sync on)
//!    against the raw `serde_json` parse rate of the same bytes, with the server's peak RSS;
//! 2. batch `switchyard ingest` of a generated NDJSON file (with its peak RSS) against DuckDB
//!    converting the same file to one Parquet file, and to the same Hive `date`/`hour` layout,
//!    with each side's bytes per record.
//!
//! `cargo bench --bench ingest` (env `BENCH_HTTP_RECORDS`, default 2,000,000;
//! `BENCH_BATCH_RECORDS`, default 10,000,000; `SWITCHYARD_PYTHON` with duckdb installed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn env_n(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard")
}

fn generate(n: u64, days: u32, out: &Path) {
    let st = Command::new(bin())
        .args([
            "generate",
            "--requests",
            &n.to_string(),
            "--days",
            &days.to_string(),
            "--out",
        ])
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success());
}

fn peak_rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            total += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}

async fn http_bench(n: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("http.ndjson");
    generate(n, 1, &input);
    // Canonical request lines only, in batches of 1,000.
    let text = std::fs::read(&input).unwrap();
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && l.windows(8).any(|w| w == b"\"model\":"))
        .collect();
    let batches: Vec<Vec<u8>> = lines.chunks(1000).map(|c| c.join(&b'\n')).collect();
    let records = lines.len();
    let bytes: usize = batches.iter().map(Vec::len).sum();

    // Raw parse rate of the same bytes, one core.
    let t = Instant::now();
    let mut fields = 0usize;
    for l in &lines {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        fields += v.as_object().map_or(0, |o| o.len());
    }
    let parse_rate = records as f64 / t.elapsed().as_secs_f64();
    assert!(fields > 0);

    let data = tmp.path().join("data");
    let mut child = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let l = out.next().unwrap().unwrap();
        if let Some(u) = l.strip_prefix("switchyard listening on ") {
            break u.to_string();
        }
    };
    std::thread::spawn(move || for _ in out {});
    let client = reqwest::Client::new();
    let batches = std::sync::Arc::new(batches);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, batches, next, url) = (
            client.clone(),
            batches.clone(),
            next.clone(),
            format!("{base}/v1/logs"),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(b) = batches.get(i) else { return };
                let r = client.post(&url).body(b.clone()).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let rss = peak_rss_mb(child.id());
    let rate = records as f64 / secs;
    println!(
        "http ingest: {records} records ({:.0} MB) in {secs:.2} s = {rate:.0} records/s",
        bytes as f64 / 1e6
    );
    println!("raw serde_json parse of the same bytes (1 core): {parse_rate:.0} records/s");
    println!("ratio ingest / raw parse: {:.2}", rate / parse_rate);
    println!("server peak RSS: {rss:.0} MB");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

fn batch_bench(n: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("gen.ndjson");
    let t = Instant::now();
    generate(n, 30, &input);
    println!("generate {n} requests: {:.1} s", t.elapsed().as_secs_f64());
    let size = std::fs::metadata(&input).unwrap().len();

    let data = tmp.path().join("data");
    // Peak RSS through `/usr/bin/time` where it is installed.
    let time = Path::new("/usr/bin/time");
    let mut cmd = if time.exists() {
        let mut c = Command::new(time);
        c.args(["-f", "peak-rss-kb %M"]).arg(bin());
        c
    } else {
        Command::new(bin())
    };
    let t = Instant::now();
    let o = cmd
        .args(["ingest", "--no-progress", "--data-dir"])
        .arg(&data)
        .arg(&input)
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let peak_kb = String::from_utf8_lossy(&o.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("peak-rss-kb ")?.trim().parse::<f64>().ok());
    let ours = t.elapsed().as_secs_f64();
    let lines = BufReader::new(std::fs::File::open(&input).unwrap())
        .lines()
        .count();
    let stored = dir_bytes(&data.join("requests")) + dir_bytes(&data.join("feedback"));
    println!(
        "switchyard ingest: {lines} records ({:.2} GB NDJSON) in {ours:.1} s = {:.0} records/s; Parquet {:.1} bytes/record",
        size as f64 / 1e9,
        lines as f64 / ours,
        stored as f64 / lines as f64
    );
    if let Some(kb) = peak_kb {
        println!("switchyard ingest peak RSS: {:.0} MB", kb / 1024.0);
    }

    let py = std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".into());
    let read = format!(
        "read_json_auto('{}', format='newline_delimited')",
        input.display()
    );
    let one_file = tmp.path().join("duck.parquet");
    let hive = tmp.path().join("duck_hive");
    let runs = [
        (
            "duckdb NDJSON -> one Parquet file",
            format!(
                "COPY (SELECT * FROM {read}) TO '{}' (FORMAT parquet, COMPRESSION zstd)",
                one_file.display()
            ),
            one_file.clone(),
        ),
        (
            "duckdb NDJSON -> Hive date/hour partitions",
            format!(
                "COPY (SELECT *, strftime(CAST(ts AS TIMESTAMP), '%Y-%m-%d') AS date, \
                 strftime(CAST(ts AS TIMESTAMP), '%H') AS hour FROM {read}) TO '{}' \
                 (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date, hour))",
                hive.display()
            ),
            hive.clone(),
        ),
    ];
    let mut one_file_secs = None;
    for (label, sql, out) in runs {
        let script = format!("import duckdb\nduckdb.sql(\"{sql}\")");
        let t = Instant::now();
        let o = Command::new(&py).args(["-c", &script]).output().unwrap();
        let secs = t.elapsed().as_secs_f64();
        if !o.status.success() {
            println!("{label}: failed: {}", String::from_utf8_lossy(&o.stderr));
            continue;
        }
        let bytes = if out.is_dir() {
            dir_bytes(&out)
        } else {
            std::fs::metadata(&out).unwrap().len()
        };
        println!(
            "{label}: {secs:.1} s ({:.1} bytes/record), ratio its time / switchyard's: {:.2}",
            bytes as f64 / lines as f64,
            secs / ours
        );
        one_file_secs.get_or_insert(secs);
        let _ = std::fs::remove_dir_all(&out);
        let _ = std::fs::remove_file(&out);
    }
    if let Some(duck) = one_file_secs {
        println!(
            "ratio duckdb one-file time / switchyard time: {:.2} (>= 1 means switchyard is at least as fast)",
            duck / ours
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let which = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    if which.is_empty() || which.contains("http") {
        rt.block_on(http_bench(env_n("BENCH_HTTP_RECORDS", 2_000_000)));
    }
    if which.is_empty() || which.contains("batch") {
        batch_bench(env_n("BENCH_BATCH_RECORDS", 10_000_000));
    }
}
