//! The dashboards in a real headless Chromium (Debian's, installed by .ci/run) driven by
//! Playwright: the page loads, every panel renders data, no console errors, and the filters
//! work. `SWITCHYARD_SCREENSHOT=PATH` keeps the screenshot (the README's comes from here).

use std::path::Path;
use std::process::Command;

use crate::common::{Server, generated_store};

/// Runs `tests/browser/SCRIPT` on the page at `url`; its JSON summary, after it passed.
fn browser(script: &str, url: &str, shot: &Path) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let out = Command::new("node")
        .arg(&path)
        .arg(url)
        .arg(shot)
        .output()
        .expect("node is needed for the browser test");
    assert!(
        out.status.success(),
        "browser test {script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "summary is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn dashboards_render_every_panel_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_store(
        dir.path(),
        "data",
        &["--requests", "30000", "--days", "30", "--seed", "3"],
    );
    let server = Server::start(&data, &[], &[]);
    let shot = std::env::var("SWITCHYARD_SCREENSHOT")
        .unwrap_or_else(|_| dir.path().join("dashboard.png").display().to_string());
    let summary = browser("dashboard.mjs", &server.url("/"), Path::new(&shot));
    assert_eq!(summary["ok"], true, "{summary}");
    let first = summary["phases"][0]["panels"].as_array().unwrap();
    assert!(first.len() >= 6, "{summary}");
    for p in first {
        assert_eq!(p["state"], "ok", "{p}");
        assert!(p["rows"].as_u64().unwrap() > 0, "{p}");
    }
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}

#[test]
fn serve_demo_fills_an_empty_store_past_the_buffer_bound() {
    // More rows than the write buffer may hold (2 x 64k): the demo must flush as it goes.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--demo", "--demo-requests", "150000"],
        &[],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = crate::common::client();
        let rows = crate::common::api_query(&c, &server, "SELECT COUNT(*) FROM requests").await;
        assert_eq!(crate::common::num(&rows[0][0]), 150_000.0);
        let r = c.get(server.url("/api/dashboards")).send().await.unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["data_range"]["max"].is_string(), "{body}");
        assert!(body["tasks"].as_array().unwrap().len() >= 20);
    });
}

#[test]
fn demo_loop_pages_show_the_policy_apply_it_and_show_the_new_version() {
    // The demo from an empty data dir: history, the mock behind the proxy, live traffic.
    let dir = tempfile::tempdir().unwrap();
    let port = crate::common::free_port();
    let proxy = format!("http://127.0.0.1:{port}");
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--demo",
            "--demo-requests",
            "30000",
            "--demo-rate",
            "15",
            "--proxy-listen",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
    );
    let shot = dir.path().join("loop.png");
    let summary = browser("loop.mjs", &server.url("/"), &shot);
    assert_eq!(summary["before"]["live"], "baseline", "{summary}");
    let applied = summary["applied"].as_str().unwrap();
    assert_ne!(applied, "baseline");
    // The proxy runs the applied policy, and traffic carries its version.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = crate::common::client();
        let live: serde_json::Value = c
            .get(format!("{proxy}/admin/policy"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(live["version"], applied);
        let rows = crate::common::api_query(
            &c,
            &server,
            &format!("SELECT COUNT(*) FROM requests WHERE policy_version = '{applied}'"),
        )
        .await;
        assert!(crate::common::num(&rows[0][0]) > 0.0);
    });
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
}
