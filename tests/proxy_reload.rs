//! Hot reload: policies put in force by `PUT /admin/policy`, `switchyard apply` and the
//! watched file, under sustained load with no failed request, each answer consistent with
//! the policy it started under; invalid policies refused with the reason, the old one kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{self, Proxy, chat_body, fast_mock, policy, upstream_toml};

const A: &str = "openai/gpt-4o";
const B: &str = "openai/gpt-4o-mini";
const C: &str = "openai/gpt-4.1-mini";
const TOKEN: &str = "admin-secret-1";

fn only(version: &str, model: &str) -> Value {
    policy(version, &[], &[(model, 1.0)], &[])
}

async fn put(p: &Proxy, c: &reqwest::Client, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut r = c.put(p.url("/admin/policy")).json(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn live_version(p: &Proxy, c: &reqwest::Client) -> String {
    let v: Value = c
        .get(p.url("/admin/policy"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["version"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn reloads_under_load_without_a_failed_request() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let cfg = upstream_toml("mock", &mock.base, &[A, B, C]);
    let proxy = Arc::new(Proxy::start(
        dir.path(),
        &cfg,
        Some(&only("v1", A)),
        &["--watch-ms", "50"],
        &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)],
    ));
    let c = common::client();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..8 {
        let (proxy, c, stop) = (proxy.clone(), c.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let mut body = chat_body("auto", "hi");
                if (n + w).is_multiple_of(3) {
                    body["stream"] = json!(true);
                }
                n += 1;
                let r = proxy.chat(&c, &body, &[]).await;
                let status = r.status().as_u16();
                let h = r.headers().clone();
                let text = r.text().await.unwrap();
                assert_eq!(status, 200, "{text}");
                assert!(!text.contains("\"error\""), "{text}");
                seen.push((
                    h["x-switchyard-policy-version"]
                        .to_str()
                        .unwrap()
                        .to_string(),
                    h["x-switchyard-model"].to_str().unwrap().to_string(),
                ));
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (s, v) = put(&proxy, &c, &only("v2", B), Some(TOKEN)).await;
    assert_eq!((s, v["version"].as_str()), (200, Some("v2")), "{v}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    // The watched file: a third policy.
    let path = proxy.policy_path.clone().unwrap();
    std::fs::write(&path, serde_json::to_vec(&only("v3", C)).unwrap()).unwrap();
    let mut waited = 0;
    while live_version(&proxy, &c).await != "v3" {
        waited += 1;
        assert!(waited < 100, "the policy file was not reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    // Every answer came from the model of the policy it carried.
    for (version, model) in &all {
        let want = match version.as_str() {
            "v1" => A,
            "v2" => B,
            "v3" => C,
            other => panic!("unknown version {other}"),
        };
        assert_eq!(model, want, "{version}");
    }
    for v in ["v1", "v2", "v3"] {
        assert!(
            all.iter().filter(|(x, _)| x == v).count() > 10,
            "few requests under {v}"
        );
    }
}

#[tokio::test]
async fn invalid_policies_are_refused_and_the_old_one_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let cfg = upstream_toml("mock", &mock.base, &[A, B]);
    let proxy = Proxy::start(
        dir.path(),
        &cfg,
        Some(&only("v1", A)),
        &[],
        &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)],
    );
    let c = common::client();

    let (s, v) = put(&proxy, &c, &only("v2", B), None).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = put(&proxy, &c, &only("v2", B), Some("wrong")).await;
    assert_eq!(s, 401, "{v}");

    let mut sum = policy("bad-sum", &[], &[(A, 0.5), (B, 0.4)], &[]);
    let (s, v) = put(&proxy, &c, &sum, Some(TOKEN)).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("sum to 1"),
        "{v}"
    );
    assert_eq!(v["error"]["code"], "invalid_policy");

    sum["default"]["targets"][1]["weight"] = json!(0.5);
    sum["routing_mode"] = json!("fast");
    let (s, v) = put(&proxy, &c, &sum, Some(TOKEN)).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("routing_mode"),
        "{v}"
    );

    let (s, v) = put(
        &proxy,
        &c,
        &only("bad-model", "acme/not-served"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("acme/not-served"),
        "{v}"
    );

    // A broken file on disk is refused too.
    std::fs::write(proxy.policy_path.as_ref().unwrap(), b"{\"version\": ").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;

    assert_eq!(live_version(&proxy, &c).await, "v1");
    let r = proxy.chat(&c, &chat_body("auto", "hi"), &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-switchyard-model"], A);
    let m = proxy.metrics(&c).await;
    assert!(
        m.contains("switchyard_proxy_policy_rejected_total 4"),
        "{m}"
    );
}

#[tokio::test]
async fn apply_puts_a_policy_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let cfg = upstream_toml("mock", &mock.base, &[A, B]);
    let proxy = Proxy::start(
        dir.path(),
        &cfg,
        None,
        &[],
        &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)],
    );
    let c = common::client();
    let file = dir.path().join("next.json");
    std::fs::write(&file, serde_json::to_vec(&only("v-applied", B)).unwrap()).unwrap();
    let args = ["apply", file.to_str().unwrap(), "--proxy", &proxy.base];
    let out = common::run(&args, &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("v-applied"));
    assert_eq!(live_version(&proxy, &c).await, "v-applied");
    let r = proxy.chat(&c, &chat_body("auto", "hi"), &[]).await;
    assert_eq!(r.headers()["x-switchyard-model"], B);

    // Without the token, and with a file the proxy refuses: a failure with the reason.
    let out = common::run(&args, &[]);
    assert!(!out.status.success());
    std::fs::write(
        &file,
        serde_json::to_vec(&only("v-bad", "acme/nope")).unwrap(),
    )
    .unwrap();
    let out = common::run(&args, &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("acme/nope"));
    assert_eq!(live_version(&proxy, &c).await, "v-applied");
}
