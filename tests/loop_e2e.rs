//! The closed loop with real processes: `serve` with the proxy in front of the mock upstream;
//! an application (the official `openai` Python client) sends traffic with tasks and posts
//! quality feedback by `X-Switchyard-Request-Id`; `recommend --apply` puts a policy in force;
//! more traffic; then, read back through `switchyard query`, the new traffic follows the
//! policy's weights, its cost per request fell by the predicted amount and quality holds.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{MockUpstream, bin, free_port, query_csv, run, spawn_announced, upstream_toml};

const GPT4O: &str = "openai/gpt-4o";
const MINI: &str = "openai/gpt-4o-mini";
const NANO: &str = "openai/gpt-4.1-nano";
/// (task, quality of gpt-4o, of gpt-4o-mini, of gpt-4.1-nano) on the mock.
const TASKS: [(&str, f64, f64, f64); 3] = [
    ("classify", 0.93, 0.92, 0.70),
    ("summarize", 0.90, 0.88, 0.62),
    ("extract", 0.92, 0.58, 0.40),
];
/// How the application picks models before any policy: mostly the expensive one, plus
/// some traffic on the others, as teams trying models do.
const APP_MIX: &str = "openai/gpt-4o:0.7,openai/gpt-4o-mini:0.2,openai/gpt-4.1-nano:0.1";
const BEFORE_PER_TASK: u64 = 150;
const AFTER_PER_TASK: u64 = 300;
/// The cost check: a model's cost on a task is exact (fixed prompt, fixed answer length), so
/// the realised cost per request of the routed traffic may differ from the policy's expected
/// one only through the weighted draw: at most 4 binomial standard errors of every target's
/// share, times its cost, plus 1 % for rounding.
const COST_Z: f64 = 4.0;
const COST_SLACK: f64 = 0.01;
/// The quality check: 3 standard errors of the feedback means, about 0.01 here.
const QUALITY_SLACK: f64 = 0.02;

fn profile() -> Value {
    let model = |i: usize| {
        let tq: serde_json::Map<String, Value> = TASKS
            .iter()
            .map(|t| (t.0.to_string(), json!([t.1, t.2, t.3][i])))
            .collect();
        json!({"latency_ms": 1, "ttft_ms": 0, "tokens_per_s": 0.0, "task_quality": tq})
    };
    json!({"replace_builtin": true, "models": {GPT4O: model(0), MINI: model(1), NANO: model(2)}})
}

/// Runs the application for `per_task` requests per task; its JSON summary.
fn app(proxy: &str, serve: &str, per_task: u64, seed: u64) -> Value {
    let python = std::env::var("SWITCHYARD_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/loop_app.py");
    let mut args = vec![
        script.to_string(),
        proxy.to_string(),
        serve.to_string(),
        per_task.to_string(),
        seed.to_string(),
    ];
    args.extend(TASKS.iter().map(|t| format!("{}={APP_MIX}", t.0)));
    let out = Command::new(python).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "the app failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits until the Parquet files hold `n` requests and `n` feedback rows.
fn wait_stored(data: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = query_csv(
            data,
            "SELECT (SELECT COUNT(*) FROM requests) AS r, (SELECT COUNT(*) FROM feedback) AS f",
        );
        if r[0][0] == n.to_string() && r[0][1] == n.to_string() {
            return;
        }
        assert!(Instant::now() < deadline, "stored {:?}, want {n}", r[0]);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `GET url` as JSON (`None` while nothing answers).
fn get_json(rt: &tokio::runtime::Runtime, url: &str) -> Option<Value> {
    rt.block_on(async {
        let r = crate::common::client().get(url).send().await.ok()?;
        r.json().await.ok()
    })
}

/// A child process killed on drop, so a failed assertion leaves nothing running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn f(s: &str) -> f64 {
    s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

#[test]
fn recommend_apply_then_traffic_follows_the_policy_at_the_predicted_cost() {
    let dir = tempfile::tempdir().unwrap();
    let profile_path = dir.path().join("profile.json");
    std::fs::write(&profile_path, profile().to_string()).unwrap();
    let mock = MockUpstream::start(&["--profile", profile_path.to_str().unwrap()]);
    let cfg = dir.path().join("switchyard.toml");
    std::fs::write(&cfg, upstream_toml("mock", &mock.base, &["*"])).unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let proxy = format!("http://127.0.0.1:{port}");
    let mut c = Command::new(bin());
    c.args(["serve", "--listen", "127.0.0.1:0", "--proxy-listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--data-dir", data.to_str().unwrap()])
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--flush-interval-ms",
            "200",
        ])
        .env_remove("SWITCHYARD_INGEST_TOKEN")
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env("SWITCHYARD_LOG", "warn");
    let (serve, base) = spawn_announced(c, "switchyard listening on ");
    let mut serve = Running(serve);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let up = Instant::now();
    while get_json(&rt, &format!("{proxy}/v1/models")).is_none() {
        assert!(up.elapsed() < Duration::from_secs(20), "proxy not up");
        std::thread::sleep(Duration::from_millis(50));
    }

    // 1. Traffic before any policy: the app names its models.
    let before = app(&proxy, &base, BEFORE_PER_TASK, 1);
    let n1 = BEFORE_PER_TASK * TASKS.len() as u64;
    assert_eq!(before["sent"], n1);
    wait_stored(&data, n1);

    // 2. Recommend from it and put the policy in force on the running proxy.
    let policy_path = dir.path().join("policy.json");
    let out = run(
        &[
            "recommend",
            "--data-dir",
            data.to_str().unwrap(),
            "--since",
            "1h",
            "--min-samples",
            "20",
            "--out",
            policy_path.to_str().unwrap(),
            "--apply",
            "--proxy",
            &proxy,
        ],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "recommend --apply failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy: Value = serde_json::from_slice(&std::fs::read(&policy_path).unwrap()).unwrap();
    let version = policy["version"].as_str().unwrap().to_string();
    assert!(
        stdout.contains(&format!("policy {version} in force on {proxy}")),
        "{stdout}"
    );
    let live = get_json(&rt, &format!("{proxy}/admin/policy")).unwrap();
    assert_eq!(live["version"], version.as_str());
    let routes: HashMap<String, &Value> = policy["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["task"].as_str().unwrap().to_string(), r))
        .collect();
    for (task, ..) in TASKS {
        assert_eq!(
            routes[task]["evidence"]["current_model"], GPT4O,
            "{task}: {policy}"
        );
    }
    // The cheap model is good enough on two tasks and not on `extract`.
    let weight = |task: &str, model: &str| -> f64 {
        routes[task]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["model"] == model)
            .map(|t| t["weight"].as_f64().unwrap())
            .sum()
    };
    assert!(weight("classify", GPT4O) < 0.5, "{policy}");
    assert!(weight("extract", GPT4O) > 0.5, "{policy}");

    // 3. The same app, unchanged, after the apply.
    let after = app(&proxy, &base, AFTER_PER_TASK, 2);
    assert!(
        after["versions"]
            .as_array()
            .unwrap()
            .contains(&json!(version)),
        "{after}"
    );
    let n2 = n1 + AFTER_PER_TASK * TASKS.len() as u64;
    wait_stored(&data, n2);

    // Cost of each model on each task, from the traffic before (exact: fixed prompts).
    let unit: HashMap<(String, String), f64> = query_csv(
        &data,
        "SELECT task, model, CAST(SUM(cost_usd) AS DOUBLE) / COUNT(*) FROM requests \
         WHERE policy_version IS NULL GROUP BY task, model",
    )
    .into_iter()
    .map(|r| ((r[0].clone(), r[1].clone()), f(&r[2])))
    .collect();
    // The traffic the policy routed (requests that named the model a route replaces).
    let routed = query_csv(
        &data,
        &format!(
            "SELECT task, model, COUNT(*), CAST(SUM(cost_usd) AS DOUBLE) FROM requests \
             WHERE policy_version = '{version}' AND route LIKE 'policy:%' GROUP BY task, model"
        ),
    );
    let mut per_task: HashMap<String, (f64, f64, HashMap<String, f64>)> = HashMap::new();
    for r in &routed {
        let e = per_task.entry(r[0].clone()).or_default();
        e.0 += f(&r[2]);
        e.1 += f(&r[3]);
        e.2.insert(r[1].clone(), f(&r[2]));
    }
    let (mut all_n, mut all_cost, mut all_expected, mut all_before) = (0.0, 0.0, 0.0, 0.0);
    for (task, ..) in TASKS {
        let (n, cost, models) = &per_task[task];
        let route = routes[task];
        // The weights, within 4 binomial standard errors.
        let mut cost_tolerance = 0.0;
        for t in route["targets"].as_array().unwrap() {
            let (m, w) = (t["model"].as_str().unwrap(), t["weight"].as_f64().unwrap());
            let got = models.get(m).copied().unwrap_or(0.0) / n;
            let sigma = (w * (1.0 - w) / n).sqrt();
            assert!(
                (got - w).abs() <= COST_Z * sigma + 0.01,
                "{task}: {m} got {got:.3} of the routed traffic, weight {w} (n {n})"
            );
            cost_tolerance += COST_Z * sigma * unit[&(task.to_string(), m.to_string())];
        }
        for m in models.keys() {
            assert!(
                weight(task, m) > 0.0,
                "{task}: {m} served traffic no target names"
            );
        }
        // Cost per request: the policy's prediction, within the stated tolerance.
        let expected = route["expected"]["cost_per_request_usd"].as_f64().unwrap();
        let realised = cost / n;
        cost_tolerance += COST_SLACK * expected;
        assert!(
            (realised - expected).abs() <= cost_tolerance,
            "{task}: realised {realised:.8} USD/request, predicted {expected:.8} (tolerance {cost_tolerance:.8})"
        );
        let was = unit[&(task.to_string(), GPT4O.to_string())];
        all_n += n;
        all_cost += cost;
        all_expected += expected * n;
        all_before += was * n;
    }
    // Overall, the routed traffic's cost fell by the predicted share.
    let predicted_fall = 1.0 - all_expected / all_before;
    let realised_fall = 1.0 - all_cost / all_before;
    assert!(predicted_fall > 0.3, "predicted fall {predicted_fall:.3}");
    assert!(
        (realised_fall - predicted_fall).abs() <= 0.05,
        "cost per request fell {realised_fall:.3}, predicted {predicted_fall:.3}"
    );
    assert!(all_n >= 0.6 * (AFTER_PER_TASK * TASKS.len() as u64) as f64);

    // Quality within the target: routed traffic against each task's best model before.
    let quality = |filter: &str| -> HashMap<(String, String), (f64, f64)> {
        query_csv(
            &data,
            &format!(
                "SELECT r.task, r.model, AVG(f.value), COUNT(*) FROM requests r \
                 JOIN feedback f ON f.request_id = r.request_id WHERE {filter} \
                 GROUP BY r.task, r.model"
            ),
        )
        .into_iter()
        .map(|r| ((r[0].clone(), r[1].clone()), (f(&r[2]), f(&r[3]))))
        .collect()
    };
    let before_q = quality("r.policy_version IS NULL");
    let after_q = quality(&format!(
        "r.policy_version = '{version}' AND r.route LIKE 'policy:%'"
    ));
    let (mut got, mut best, mut n) = (0.0, 0.0, 0.0);
    for (task, ..) in TASKS {
        let b = before_q
            .iter()
            .filter(|((t, _), _)| t == task)
            .map(|(_, (q, _))| *q)
            .fold(f64::MIN, f64::max);
        for ((t, _), (q, k)) in &after_q {
            if t == task {
                got += q * k;
                best += b * k;
                n += k;
            }
        }
    }
    let target = policy["objective"]["quality_target"].as_f64().unwrap();
    assert!(
        got / n >= target * best / n - QUALITY_SLACK,
        "routed quality {:.4} under {target} x best {:.4}",
        got / n,
        best / n
    );

    // What the dashboards' loop pages read: the live policy and the versions compared.
    let live = get_json(&rt, &format!("{base}/api/policy/live")).unwrap();
    assert_eq!(live["policy"]["version"], version.as_str());
    let changes = get_json(&rt, &format!("{base}/api/policy/changes?since=1h")).unwrap();
    let last = changes["versions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["version"], version.as_str(), "{changes}");
    assert!(
        last["realised_saving_pct"].as_f64().unwrap() > 10.0,
        "{last}"
    );
    assert!(
        last["projected_saving_pct"].as_f64().unwrap() > 10.0,
        "{last}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &serve.0.id().to_string()])
        .status();
    assert!(serve.0.wait().unwrap().success());
}
