//! A running `switchyard proxy` for tests: writes its config (upstreams, keys, budgets) and
//! policy files under a folder, spawns the binary on 127.0.0.1:0 and waits for its line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use super::{MockUpstream, bin};

/// The mock upstream answering at once (no simulated latency): tests measure behaviour.
pub fn fast_mock() -> MockUpstream {
    MockUpstream::start(&["--latency-ms", "0", "--ttft-ms", "0", "--tokens-per-s", "0"])
}

/// The line the proxy prints once bound.
pub const PROXY_LINE: &str = "switchyard proxy listening on ";

/// One `[[upstream]]` block.
pub fn upstream_toml(name: &str, base_url: &str, models: &[&str]) -> String {
    let models: Vec<String> = models.iter().map(|m| format!("{m:?}")).collect();
    format!(
        "[[upstream]]\nname = {name:?}\nbase_url = {:?}\nmodels = [{}]\n",
        format!("{}/v1", base_url.trim_end_matches('/')),
        models.join(", ")
    )
}

/// A route of [`policy`]: `(task, [(model, weight)], [fallbacks], current_model)`.
pub type TestRoute<'a> = (&'a str, &'a [(&'a str, f64)], &'a [&'a str], &'a str);

/// A policy file.
pub fn policy(
    version: &str,
    routes: &[TestRoute<'_>],
    default: &[(&str, f64)],
    default_fallbacks: &[&str],
) -> Value {
    let targets = |t: &[(&str, f64)]| -> Vec<Value> {
        t.iter()
            .map(|(m, w)| json!({"model": m, "weight": w}))
            .collect()
    };
    json!({
        "version": version,
        "generated_at": "2026-11-25T10:00:00Z",
        "objective": {"quality_target": 0.95, "scope": "overall", "max_p95_latency_ms": null, "explore": 0.0},
        "routes": routes.iter().map(|(task, t, f, current)| json!({
            "task": task,
            "targets": targets(t),
            "fallbacks": f,
            "expected": {"cost_per_request_usd": null, "quality": null, "p95_latency_ms": null, "savings_vs_current_pct": null},
            "evidence": {"samples": 100, "current_model": current, "reason": "test"},
        })).collect::<Vec<_>>(),
        "default": {"targets": targets(default), "fallbacks": default_fallbacks},
    })
}

/// Spawns `c` with stdout piped, waits for the line starting with `prefix` and returns the
/// child and the rest of that line; stdout is drained afterwards so the child never blocks.
pub fn spawn_announced(mut c: Command, prefix: &str) -> (Child, String) {
    let mut child = c.stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let rest = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("exited before printing {prefix:?}"))
            .unwrap();
        if let Some(rest) = line.strip_prefix(prefix) {
            break rest.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, rest)
}

/// A running proxy, killed on drop.
pub struct Proxy {
    pub child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub config_path: PathBuf,
    pub policy_path: Option<PathBuf>,
}

impl Proxy {
    /// Writes `dir/proxy.toml` (`config`) and `dir/policy.json` (when given), then starts
    /// `switchyard proxy` logging into `dir/data`.
    pub fn start(
        dir: &Path,
        config: &str,
        policy: Option<&Value>,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Proxy {
        let config_path = dir.join("proxy.toml");
        std::fs::write(&config_path, config).unwrap();
        let policy_path = policy.map(|p| {
            let path = dir.join("policy.json");
            std::fs::write(&path, serde_json::to_vec_pretty(p).unwrap()).unwrap();
            path
        });
        let data_dir = dir.join("data");
        let mut c = Command::new(bin());
        c.args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--config",
            config_path.to_str().unwrap(),
        ]);
        if let Some(p) = &policy_path {
            c.args(["--policy", p.to_str().unwrap()]);
        }
        c.args(extra)
            .env_remove("SWITCHYARD_INGEST_TOKEN")
            .env_remove("SWITCHYARD_ADMIN_TOKEN")
            .env("SWITCHYARD_LOG", "warn")
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            c.env(k, v);
        }
        let (child, base) = spawn_announced(c, PROXY_LINE);
        Proxy {
            child,
            base,
            data_dir,
            config_path,
            policy_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM and wait: the proxy writes its queued log records and flushes the store.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        self.child.wait().unwrap()
    }

    /// `GET path` as JSON.
    pub async fn get_json(&self, c: &reqwest::Client, path: &str) -> Value {
        let r = c.get(self.url(path)).send().await.unwrap();
        r.json().await.unwrap()
    }

    /// `GET /metrics`.
    pub async fn metrics(&self, c: &reqwest::Client) -> String {
        let r = c.get(self.url("/metrics")).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// `POST /v1/chat/completions` with `body` (and `headers`).
    pub async fn chat(
        &self,
        c: &reqwest::Client,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = c.post(self.url("/v1/chat/completions")).json(body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-message chat request.
pub fn chat_body(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}
