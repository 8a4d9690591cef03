//! Shared test helpers: the real `switchyard` binary, servers on 127.0.0.1:0, HTTP and SQL.

#![allow(dead_code)]

mod moto;
mod proxy;
pub use moto::*;
pub use proxy::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_switchyard"))
}

/// The shared read-only data folder beside the repository.
pub fn shared_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// Runs `switchyard ARGS` to completion.
pub fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(bin());
    c.args(args)
        .env_remove("SWITCHYARD_INGEST_TOKEN")
        .env_remove("SWITCHYARD_ADMIN_TOKEN");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// Runs `switchyard ARGS` and fails the test, with its stderr, unless it succeeds.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args, &[]);
    assert!(
        out.status.success(),
        "switchyard {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `switchyard` with stdin.
pub fn run_stdin(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `switchyard query --format csv` → rows of strings (header dropped).
pub fn query_csv(data_dir: &Path, sql: &str) -> Vec<Vec<String>> {
    let out = run(
        &[
            "query",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--format",
            "csv",
            sql,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// A port on 127.0.0.1 that was free a moment ago (for a server started later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `switchyard serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
}

impl Server {
    pub fn start(data_dir: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::start_with_stderr("127.0.0.1:0", data_dir, extra, envs, Stdio::inherit())
    }

    /// `serve` on a given address (a port chosen beforehand, e.g. one a client already targets).
    pub fn start_on(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Server {
        Server::start_with_stderr(listen, data_dir, extra, envs, Stdio::inherit())
    }

    /// Like [`Server::start`], with the server's log (stderr) going to `log`.
    pub fn start_logged(
        data_dir: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> Server {
        let f = std::fs::File::create(log).unwrap();
        Server::start_with_stderr("127.0.0.1:0", data_dir, extra, envs, Stdio::from(f))
    }

    fn start_with_stderr(
        listen: &str,
        data_dir: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let mut c = Command::new(bin());
        c.args([
            "serve",
            "--listen",
            listen,
            "--data-dir",
            data_dir.to_str().unwrap(),
        ])
        .args(extra)
        .env_remove("SWITCHYARD_INGEST_TOKEN")
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env("SWITCHYARD_LOG", "warn")
        .stderr(stderr);
        for (k, v) in envs {
            c.env(k, v);
        }
        let (child, base) = spawn_announced(c, "switchyard listening on ");
        Server {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL, no chance to flush.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// `POST /api/query` → the `rows` array.
pub async fn api_query(c: &reqwest::Client, s: &Server, sql: &str) -> Vec<Vec<Value>> {
    let r = c
        .post(s.url("/api/query"))
        .json(&serde_json::json!({ "sql": sql }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "query {sql:?} failed: {body}");
    serde_json::from_value(body["rows"].clone()).unwrap()
}

/// One sample of `name` from the server's `/metrics` (Prometheus text).
pub async fn metric(c: &reqwest::Client, s: &Server, name: &str) -> f64 {
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// A number from a JSON cell (numbers or numeric strings).
pub fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

/// A canonical record line.
pub fn record(id: &str, model: &str, prompt: i64, completion: i64) -> String {
    serde_json::json!({
        "request_id": id,
        "ts": "2026-11-20T10:15:00.123Z",
        "model": model,
        "task": "summarize",
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "latency_ms": 812.5,
        "key_id": "team-search",
    })
    .to_string()
}

/// An exact decimal literal.
pub fn d(s: &str) -> rust_decimal::Decimal {
    s.parse().unwrap()
}

/// Microseconds of an RFC 3339 time.
pub fn us(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_micros()
}

/// Generates a workload (`generate GEN_ARGS`) under `root` and ingests it into
/// `root/DATA_NAME`; returns the data dir.
pub fn generated_store(root: &Path, data_name: &str, gen_args: &[&str]) -> PathBuf {
    generated_store_with(root, data_name, gen_args, &[])
}

/// [`generated_store`] with extra `ingest` flags.
pub fn generated_store_with(
    root: &Path,
    data_name: &str,
    gen_args: &[&str],
    ingest_args: &[&str],
) -> PathBuf {
    let input = root.join("gen.ndjson");
    let data = root.join(data_name);
    let mut args = vec!["generate"];
    args.extend_from_slice(gen_args);
    args.extend_from_slice(&["--out", input.to_str().unwrap()]);
    run_ok(&args);
    let mut args = vec!["ingest", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(ingest_args);
    args.push(input.to_str().unwrap());
    run_ok(&args);
    data
}

/// A running `switchyard mock-upstream` on 127.0.0.1:0, killed on drop.
pub struct MockUpstream {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl MockUpstream {
    /// Starts the mock with extra flags (e.g. `["--latency-ms", "0", "--ttft-ms", "0"]`).
    pub fn start(extra: &[&str]) -> MockUpstream {
        let mut c = Command::new(bin());
        c.args(["mock-upstream", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("SWITCHYARD_LOG", "warn")
            .stderr(Stdio::inherit());
        let (child, base) = spawn_announced(c, "mock upstream listening on ");
        MockUpstream { child, base }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /mock/behaviour` with `patch`; panics unless accepted.
    pub async fn behave(&self, c: &reqwest::Client, patch: Value) {
        let r = c
            .post(self.url("/mock/behaviour"))
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "behaviour {patch} refused");
    }

    /// `GET /mock/stats`.
    pub async fn stats(&self, c: &reqwest::Client) -> Value {
        c.get(self.url("/mock/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The store at `data`, opened in this process with its WAL in `wal` and the embedded prices.
pub async fn open_store(data: &Path, wal: &Path) -> switchyard::store::Store {
    let loc = switchyard::store::Location::open(data.to_str().unwrap()).unwrap();
    let cfg = switchyard::store::StoreConfig {
        wal_dir: Some(wal.to_path_buf()),
        ..Default::default()
    };
    switchyard::store::Store::open(
        loc,
        cfg,
        switchyard::prices::PriceCatalog::embedded().unwrap(),
    )
    .await
    .unwrap()
}
