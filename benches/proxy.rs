//! Proxy overhead against LiteLLM's proxy, side by side in one run, in front of the same
//! built-in mock upstream (answers at once), both logging every request:
//!
//! 1. sequential, interleaved over keep-alive connections: each round sends the same request
//!    direct to the mock, via `switchyard proxy` and via LiteLLM, in rotating order; overhead =
//!    proxied − direct latency of the same round (median, p99);
//! 2. open loop: requests scheduled on a clock at fixed rates, latency measured from the
//!    scheduled send time (no coordinated omission); overhead p99 = proxied p99 − direct p99 at
//!    the same rate; a sweep finds the highest rate with p99 overhead under 5 ms and no errors;
//!    LiteLLM at the rates it holds;
//! 3. peak RSS (VmHWM) of the proxy and of LiteLLM after the load.
//!
//! `cargo bench --bench proxy`. Env: `BENCH_SEQ_ROUNDS` (default 2000), `BENCH_RATE_SECS`
//! (5), `BENCH_RATES` (`1000,2000,3000,4000,5000,6000,8000,10000`), `BENCH_LITELLM_RATES`
//! (`50,100,200`), `BENCH_LITELLM=0` to leave LiteLLM out. LiteLLM (`litellm[proxy]`) is
//! installed on first use into `~/.cache/switchyard-bench-litellm`; its logging is a custom
//! callback (`benches/litellm_callback.py`) appending each request's standard logging payload
//! to a file, as switchyard appends each attempt to its store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

const MODEL: &str = "openai/gpt-4o-mini";
/// Overhead above which a rate counts as not sustained.
const SUSTAINED_P99_OVERHEAD_MS: f64 = 5.0;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn env_list(name: &str, default: &str) -> Vec<u64> {
    env_or(name, default)
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard")
}

/// A child process killed on drop.
struct Proc {
    child: Child,
    base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` and waits for the stdout line starting with `prefix` (the rest is the URL).
fn spawn_listening(mut cmd: Command, prefix: &str) -> Option<Proc> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .ok()?;
    let mut lines = BufReader::new(child.stdout.take()?).lines();
    let base = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = child.kill();
            return None;
        };
        if let Some(url) = line.strip_prefix(prefix) {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Some(Proc { child, base })
}

fn vm_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse().ok())
        .unwrap_or(0)
}

/// `pid` and its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(
                    kids.split_whitespace()
                        .filter_map(|k| k.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Peak RSS of a process tree, MB (sum of each process's VmHWM).
fn peak_rss_mb(pid: u32) -> f64 {
    tree(pid).iter().map(|p| vm_kb(*p, "VmHWM:")).sum::<u64>() as f64 / 1024.0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_mock() -> Proc {
    let mut c = Command::new(bin());
    c.args([
        "mock-upstream",
        "--listen",
        "127.0.0.1:0",
        "--latency-ms",
        "0",
        "--ttft-ms",
        "0",
        "--tokens-per-s",
        "0",
    ])
    .env("SWITCHYARD_LOG", "warn");
    spawn_listening(c, "mock upstream listening on ").expect("mock upstream did not start")
}

/// `switchyard proxy` in front of the mock, logging into a fresh data dir.
fn start_switchyard(dir: &Path, mock: &str) -> Option<Proc> {
    let config = dir.join("switchyard.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstream]]\nname = \"mock\"\nbase_url = \"{mock}/v1\"\nmodels = [\"*\"]\n\
             timeout_ms = 10000\n"
        ),
    )
    .unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({
            "version": "bench-1",
            "generated_at": "2026-12-01T00:00:00Z",
            "objective": {"quality_target": 0.95, "scope": "overall",
                          "max_p95_latency_ms": null, "explore": 0.0},
            "routes": [],
            "default": {"targets": [{"model": MODEL, "weight": 1.0}], "fallbacks": []}
        })
        .to_string(),
    )
    .unwrap();
    let mut c = Command::new(bin());
    c.arg("proxy")
        .arg("--policy")
        .arg(&policy)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config)
        .env("SWITCHYARD_LOG", "warn");
    spawn_listening(c, "switchyard proxy listening on ")
}

/// LiteLLM's venv python, installing `litellm[proxy]` on first use.
fn litellm_python() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let venv = PathBuf::from(home).join(".cache/switchyard-bench-litellm");
    let py = venv.join("bin/python");
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", "import litellm.proxy.proxy_server"])
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok(&py) {
        return Some(py);
    }
    eprintln!("installing litellm[proxy] into {}", venv.display());
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    let installed = made
        && Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "litellm[proxy]",
            ])
            .status()
            .is_ok_and(|s| s.success());
    (installed && ok(&py)).then_some(py)
}

/// A fresh random master key for LiteLLM (it refuses to start without one).
fn master_key() -> String {
    let mut b = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut b).unwrap();
    format!("sk-{}", hex::encode(b))
}

/// LiteLLM's proxy (one worker) in front of the mock, logging each request to a file; the
/// second value is its master key.
fn start_litellm(dir: &Path, mock: &str) -> Option<(Proc, PathBuf, String)> {
    let py = litellm_python()?;
    let callback = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/litellm_callback.py");
    std::fs::copy(callback, dir.join("litellm_callback.py")).ok()?;
    let log = dir.join("litellm-requests.ndjson");
    let config = dir.join("litellm.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: {MODEL}\n    litellm_params:\n      model: {MODEL}\n      \
             api_base: {mock}/v1\n      api_key: mock\nlitellm_settings:\n  callbacks: \
             litellm_callback.proxy_handler_instance\n  telemetry: false\n"
        ),
    )
    .ok()?;
    let port = free_port();
    let key = master_key();
    let errors = dir.join("litellm.stderr");
    let litellm = py.with_file_name("litellm");
    let child = Command::new(litellm)
        .arg("--config")
        .arg(&config)
        .args(["--port", &port.to_string(), "--num_workers", "1"])
        .current_dir(dir)
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR")
        .env("BENCH_LITELLM_LOG", &log)
        .env("LITELLM_MASTER_KEY", &key)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&errors).ok()?)
        .spawn()
        .ok()?;
    let p = Proc {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let health = format!("{}/health/liveliness", p.base);
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if probe_ok(&health) {
            return Some((p, log, key));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = std::fs::read_to_string(&errors).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    eprintln!("LiteLLM stderr (last lines):");
    for l in tail.iter().rev() {
        eprintln!("  {l}");
    }
    None
}

/// `GET url` answers 2xx.
fn probe_ok(url: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
}

/// One target of the comparison.
#[derive(Clone)]
struct Target {
    name: &'static str,
    url: String,
    /// `Authorization` header value.
    auth: String,
    client: reqwest::Client,
}

impl Target {
    fn new(name: &'static str, base: &str, token: &str) -> Target {
        Target {
            name,
            url: format!("{base}/v1/chat/completions"),
            auth: format!("Bearer {token}"),
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(usize::MAX)
                .pool_idle_timeout(Duration::from_secs(300))
                .tcp_nodelay(true)
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// Sends the request; `true` on a 200 with a complete body.
    async fn send(&self, body: &bytes::Bytes) -> bool {
        let r = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("authorization", &self.auth)
            .body(body.clone())
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
            _ => false,
        }
    }
}

fn request_body() -> bytes::Bytes {
    bytes::Bytes::from(
        serde_json::json!({
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "You are a concise assistant for a support team."},
                {"role": "user", "content": "Summarise this ticket in one line: the export \
                    button times out for workspaces with more than ten thousand rows."}
            ],
            "max_tokens": 16
        })
        .to_string(),
    )
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).unwrap()
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// Sequential, interleaved rounds: per-target latency and overhead over direct.
struct Sequential {
    latency: Vec<Histogram<u64>>,
    overhead: Vec<Histogram<u64>>,
    errors: Vec<u64>,
}

async fn sequential(targets: &[Target], body: &bytes::Bytes, rounds: usize) -> Sequential {
    let n = targets.len();
    let mut s = Sequential {
        latency: (0..n).map(|_| hist()).collect(),
        overhead: (0..n).map(|_| hist()).collect(),
        errors: vec![0; n],
    };
    let warmup = rounds / 10 + 50;
    for round in 0..warmup + rounds {
        let mut took = vec![0u64; n];
        for k in 0..n {
            let i = (round + k) % n;
            let t = Instant::now();
            let ok = targets[i].send(body).await;
            took[i] = t.elapsed().as_nanos() as u64;
            if !ok && round >= warmup {
                s.errors[i] += 1;
            }
        }
        if round < warmup {
            continue;
        }
        for i in 0..n {
            s.latency[i].record(took[i].max(1)).unwrap();
            // Rounds where the proxied call beat the direct one count as zero overhead.
            let over = took[i].saturating_sub(took[0]).max(1);
            s.overhead[i].record(over).unwrap();
        }
    }
    s
}

/// One open-loop run: latency from the scheduled send time.
struct OpenLoop {
    rate: u64,
    latency: Histogram<u64>,
    errors: u64,
    sent: u64,
    /// Completed requests per second of wall time.
    throughput: f64,
}

fn open_loop(
    rt: &tokio::runtime::Runtime,
    t: &Target,
    body: &bytes::Bytes,
    rate: u64,
    secs: u64,
) -> OpenLoop {
    let n = rate * secs;
    let (tx, rx) = std::sync::mpsc::channel::<(u64, bool)>();
    let handle = rt.handle().clone();
    let start = Instant::now() + Duration::from_millis(20);
    let t = Arc::new(t.clone());
    for i in 0..n {
        let due = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let (t, tx, body) = (t.clone(), tx.clone(), body.clone());
        handle.spawn(async move {
            let ok = t.send(&body).await;
            let _ = tx.send((due.elapsed().as_nanos() as u64, ok));
        });
    }
    drop(tx);
    let mut latency = hist();
    let mut errors = 0;
    let mut done = 0u64;
    for (ns, ok) in rx {
        latency.record(ns.max(1)).unwrap();
        if ok {
            done += 1;
        } else {
            errors += 1;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    OpenLoop {
        rate,
        latency,
        errors,
        sent: n,
        throughput: done as f64 / wall,
    }
}

/// Closed loop with `conns` connections for `secs`: completed requests per second.
async fn capacity(t: &Target, body: &bytes::Bytes, conns: usize, secs: u64) -> f64 {
    let end = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (t, body) = (t.clone(), body.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < end {
                    if t.send(&body).await {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let mut done = 0;
    for w in workers {
        done += w.await.unwrap_or(0);
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn q(h: &Histogram<u64>, quantile: f64) -> f64 {
    ms(h.value_at_quantile(quantile))
}

fn main() {
    let rounds: usize = env_or("BENCH_SEQ_ROUNDS", "2000").parse().unwrap();
    let secs: u64 = env_or("BENCH_RATE_SECS", "5").parse().unwrap();
    let rates = env_list("BENCH_RATES", "1000,2000,3000,4000,5000,6000,8000,10000");
    let litellm_rates = env_list("BENCH_LITELLM_RATES", "50,100,200");
    let with_litellm = env_or("BENCH_LITELLM", "1") != "0";

    let dir = tempfile::tempdir().unwrap();
    let mock = start_mock();
    let sy = start_switchyard(dir.path(), &mock.base);
    if sy.is_none() {
        eprintln!("switchyard proxy did not start: measuring direct and LiteLLM only");
    }
    let ll = if with_litellm {
        let ll = start_litellm(dir.path(), &mock.base);
        if ll.is_none() {
            eprintln!("LiteLLM did not start: leaving it out");
        }
        ll
    } else {
        None
    };

    let mut targets = vec![Target::new("direct", &mock.base, "bench-client")];
    if let Some(p) = &sy {
        targets.push(Target::new("switchyard", &p.base, "bench-client"));
    }
    if let Some((p, _, key)) = &ll {
        targets.push(Target::new("litellm", &p.base, key));
    }
    let body = request_body();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // 1. Sequential, interleaved.
    let seq = rt.block_on(sequential(&targets, &body, rounds));
    println!("\n== sequential, interleaved, keep-alive: {rounds} rounds ==");
    println!(
        "{:<12} {:>12} {:>12} {:>14} {:>14} {:>7}",
        "target", "median ms", "p99 ms", "overhead p50", "overhead p99", "errors"
    );
    for (i, t) in targets.iter().enumerate() {
        let (o50, o99) = if i == 0 {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{:.3}", q(&seq.overhead[i], 0.5)),
                format!("{:.3}", q(&seq.overhead[i], 0.99)),
            )
        };
        println!(
            "{:<12} {:>12.3} {:>12.3} {:>14} {:>14} {:>7}",
            t.name,
            q(&seq.latency[i], 0.5),
            q(&seq.latency[i], 0.99),
            o50,
            o99,
            seq.errors[i]
        );
    }
    let sy_i = targets.iter().position(|t| t.name == "switchyard");
    let ll_i = targets.iter().position(|t| t.name == "litellm");
    if let (Some(s), Some(l)) = (sy_i, ll_i) {
        println!(
            "litellm / switchyard overhead: median {:.0}x, p99 {:.0}x",
            q(&seq.overhead[l], 0.5) / q(&seq.overhead[s], 0.5),
            q(&seq.overhead[l], 0.99) / q(&seq.overhead[s], 0.99)
        );
    }

    // 2. Open loop.
    println!("\n== open loop, {secs} s per rate, latency from the scheduled send time ==");
    println!(
        "{:<12} {:>7} {:>11} {:>11} {:>14} {:>8} {:>10}",
        "target", "rate/s", "p50 ms", "p99 ms", "overhead p99", "errors", "done/s"
    );
    let row = |name: &str, r: &OpenLoop, base: Option<&OpenLoop>| {
        let over = base.map_or("-".to_string(), |b| {
            format!("{:.3}", q(&r.latency, 0.99) - q(&b.latency, 0.99))
        });
        println!(
            "{:<12} {:>7} {:>11.3} {:>11.3} {:>14} {:>8} {:>10.0}",
            name,
            r.rate,
            q(&r.latency, 0.5),
            q(&r.latency, 0.99),
            over,
            r.errors,
            r.throughput
        );
    };
    let mut sustained: Option<u64> = None;
    for &rate in &rates {
        let direct = open_loop(&rt, &targets[0], &body, rate, secs);
        row("direct", &direct, None);
        let Some(s) = sy_i else { continue };
        let proxied = open_loop(&rt, &targets[s], &body, rate, secs);
        row("switchyard", &proxied, Some(&direct));
        let over = q(&proxied.latency, 0.99) - q(&direct.latency, 0.99);
        if proxied.errors == 0 && over < SUSTAINED_P99_OVERHEAD_MS {
            sustained = Some(rate);
        } else {
            break;
        }
        assert_eq!(proxied.sent, rate * secs);
    }
    if let Some(l) = ll_i {
        for &rate in &litellm_rates {
            let direct = open_loop(&rt, &targets[0], &body, rate, secs);
            let proxied = open_loop(&rt, &targets[l], &body, rate, secs);
            row("direct", &direct, None);
            row("litellm", &proxied, Some(&direct));
        }
    }
    if sy_i.is_some() {
        match sustained {
            Some(r) => println!(
                "highest rate with switchyard p99 overhead < {SUSTAINED_P99_OVERHEAD_MS} ms and \
                 0 errors: {r}/s"
            ),
            None => {
                println!("no rate held switchyard p99 overhead < {SUSTAINED_P99_OVERHEAD_MS} ms")
            }
        }
    }

    // 3. Peak RSS.
    println!("\n== peak RSS (VmHWM) after the load ==");
    println!("mock upstream  {:>8.1} MB", peak_rss_mb(mock.child.id()));
    if let Some(p) = &sy {
        println!("switchyard     {:>8.1} MB", peak_rss_mb(p.child.id()));
        // Its log pipeline's counters: every request logged, none dropped.
        let metrics = rt.block_on(async {
            let r = reqwest::get(format!("{}/metrics", p.base)).await.ok()?;
            r.text().await.ok()
        });
        for line in metrics.unwrap_or_default().lines() {
            if line.starts_with("switchyard_proxy_log_records_") {
                println!("    {line}");
            }
        }
    }
    if let Some((p, log, _)) = &ll {
        let logged = std::fs::read_to_string(log).map_or(0, |s| s.lines().count());
        println!(
            "litellm        {:>8.1} MB  ({logged} requests in its callback log)",
            peak_rss_mb(p.child.id())
        );
    }
    if let (Some(s), Some((l, _, _))) = (&sy, &ll) {
        println!(
            "litellm / switchyard RSS: {:.1}x",
            peak_rss_mb(l.child.id()) / peak_rss_mb(s.child.id())
        );
    }

    // Capacity: what the mock (and the proxy in front of it) complete with the load generator
    // on the same two cores, so the open-loop rates above can be read against it
    // (after the RSS figures, which are those of the open-loop load).
    println!("\n== closed loop, 32 connections, {secs} s: completed requests/s ==");
    for t in targets.iter().filter(|t| t.name != "litellm") {
        let r = rt.block_on(capacity(t, &body, 32, secs));
        println!("{:<12} {:>10.0}", t.name, r);
    }
}
