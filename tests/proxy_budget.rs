//! Daily budgets: 50 concurrent reservations never overshoot a limit (`reject` and
//! `downgrade`), seeding from today's spend in a store, the UTC day rollover, worst-case costs.

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use rust_decimal::Decimal;
use switchyard::config::{Budget, Config};
use switchyard::formats::{self, Format};
use switchyard::prices::PriceCatalog;
use switchyard::proxy::budget::{Admission, Budgets, OnExceed, worst_case_cost};

use crate::common::{MockUpstream, Proxy, chat_body, d, fast_mock, query_csv, upstream_toml, us};

fn budget(key: Option<&str>, task: Option<&str>, usd: f64, on_exceed: &str) -> Budget {
    Budget {
        key: key.map(str::to_string),
        task: task.map(str::to_string),
        daily_usd: usd,
        on_exceed: on_exceed.to_string(),
    }
}

/// A clock the test moves; starts at `rfc3339`.
fn clock_at(rfc3339: &str) -> (Arc<AtomicI64>, switchyard::proxy::budget::Clock) {
    let now = Arc::new(AtomicI64::new(us(rfc3339)));
    let c = now.clone();
    (now, Arc::new(move || c.load(Ordering::SeqCst)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_never_overshoot_a_reject_budget() {
    let b = Budgets::new(&[budget(Some("team-search"), None, 1.0, "reject")]).unwrap();
    let worst = d("0.07");
    let actual = d("0.05");
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let admitted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (b, start, admitted) = (b.clone(), start.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            match b.reserve("team-search", "summarize", worst) {
                Ok(r) => {
                    admitted.fetch_add(1, Ordering::SeqCst);
                    let (spent, reserved) = b.usage("key:team-search").unwrap();
                    assert!(
                        spent + reserved <= d("1"),
                        "{spent} + {reserved} over the limit"
                    );
                    // The upstream call, in flight while the others try.
                    tokio::time::sleep(std::time::Duration::from_millis(5 + i % 7)).await;
                    r.settle(Some(actual));
                    None
                }
                Err(e) => Some(e),
            }
        }));
    }
    let mut refusals = Vec::new();
    for t in tasks {
        refusals.extend(t.await.unwrap());
    }
    let admitted = admitted.load(Ordering::SeqCst);
    let (spent, reserved) = b.usage("key:team-search").unwrap();
    assert_eq!(reserved, Decimal::ZERO);
    assert_eq!(spent, actual * Decimal::from(admitted as u64));
    assert!(spent <= d("1"), "spent {spent} over the limit");
    // 1.00 / 0.07: at least 14 fit even if nobody had settled yet, never all 50.
    assert!((14..50).contains(&admitted), "admitted {admitted}");
    assert_eq!(refusals.len(), 50 - admitted);
    let e = &refusals[0];
    assert_eq!(e.action, OnExceed::Reject);
    assert_eq!(e.budget, "key:team-search");
    assert_eq!(e.limit_usd, d("1"));
    assert!(e.spent_usd + worst > d("1"));
    let msg = e.to_string();
    assert!(
        msg.contains("key:team-search") && msg.contains("exceeded"),
        "{msg}"
    );
}

#[test]
fn fifty_threads_at_once_hold_the_limit_exactly() {
    // Real parallelism: 50 OS threads released together, each reserving the full worst case
    // and settling it unchanged, so the spend is exactly what was admitted.
    let b = Budgets::new(&[budget(None, Some("summarize"), 0.5, "reject")]).unwrap();
    let gate = Arc::new(Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (b, gate) = (b.clone(), gate.clone());
            std::thread::spawn(move || {
                gate.wait();
                b.reserve("anyone", "summarize", d("0.03"))
                    .map(|r| r.settle(None))
                    .is_ok()
            })
        })
        .collect();
    let admitted = handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .filter(|ok| *ok)
        .count();
    // floor(0.50 / 0.03) = 16: exactly that many fit, whatever the interleaving.
    assert_eq!(admitted, 16);
    assert_eq!(
        b.usage("task:summarize").unwrap(),
        (d("0.48"), Decimal::ZERO)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_under_a_downgrade_budget_are_all_served() {
    let cheap = "openai/gpt-4o-mini";
    let b = Budgets::new(&[budget(
        None,
        Some("summarize"),
        0.2,
        &format!("downgrade:{cheap}"),
    )])
    .unwrap();
    let (full, small) = (d("0.03"), d("0.001"));
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (b, start) = (b.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            match b.reserve("k", "summarize", full) {
                Ok(r) => {
                    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
                    r.settle(Some(full));
                    "full"
                }
                Err(e) => {
                    let OnExceed::Downgrade(m) = &e.action else {
                        panic!("expected a downgrade, got {e:?}");
                    };
                    assert_eq!(m, cheap);
                    let r = b.reserve_downgraded("k", "summarize", small);
                    r.settle(Some(small));
                    "downgraded"
                }
            }
        }));
    }
    let mut served = Vec::new();
    for t in tasks {
        served.push(t.await.unwrap());
    }
    let at_full = served.iter().filter(|s| **s == "full").count() as u64;
    let downgraded = served.len() as u64 - at_full;
    assert_eq!(at_full + downgraded, 50, "every request is served");
    // Full-price requests alone never pass the limit: floor(0.2 / 0.03) = 6 at most.
    assert!(full * Decimal::from(at_full) <= d("0.2"));
    assert!((1..=6).contains(&at_full), "{at_full} at full price");
    // Downgraded spend is tracked on the same budget, admitted past the limit.
    let (spent, reserved) = b.usage("task:summarize").unwrap();
    assert_eq!(reserved, Decimal::ZERO);
    assert_eq!(
        spent,
        full * Decimal::from(at_full) + small * Decimal::from(downgraded)
    );
}

#[test]
fn a_reject_budget_wins_over_a_downgrade_one_and_both_are_charged() {
    let b = Budgets::new(&[
        budget(None, Some("chat"), 0.1, "downgrade:cheap"),
        budget(Some("team"), None, 0.1, "reject"),
    ])
    .unwrap();
    assert!(b.applies("team", "other") && b.applies("x", "chat") && !b.applies("x", "y"));
    b.reserve("team", "chat", d("0.08")).unwrap().settle(None);
    assert_eq!(b.usage("task:chat").unwrap().0, d("0.08"));
    assert_eq!(b.usage("key:team").unwrap().0, d("0.08"));
    let e = b.reserve("team", "chat", d("0.05")).err().unwrap();
    assert_eq!(e.action, OnExceed::Reject);
    assert_eq!(e.budget, "key:team");
    // Another key on the same task is downgraded instead.
    let e = b.reserve("other", "chat", d("0.05")).err().unwrap();
    assert_eq!(e.action, OnExceed::Downgrade("cheap".into()));
    // A request no budget covers is never refused.
    b.reserve("other", "free", d("1000")).unwrap().settle(None);
}

#[test]
fn unsettled_or_unknown_costs_keep_their_reservation() {
    let b = Budgets::new(&[budget(Some("k"), None, 1.0, "reject")]).unwrap();
    let r = b.reserve("k", "t", d("0.4")).unwrap();
    assert_eq!(b.usage("key:k").unwrap(), (Decimal::ZERO, d("0.4")));
    drop(r);
    assert_eq!(b.usage("key:k").unwrap(), (d("0.4"), Decimal::ZERO));
    b.reserve("k", "t", d("0.3")).unwrap().settle(None);
    assert_eq!(b.usage("key:k").unwrap().0, d("0.7"));
    // Settling to a cheaper real cost frees the difference.
    b.reserve("k", "t", d("0.3"))
        .unwrap()
        .settle(Some(d("0.01")));
    assert_eq!(b.usage("key:k").unwrap(), (d("0.71"), Decimal::ZERO));
    assert!(b.reserve("k", "t", d("0.3")).is_err());
    let mut m = String::new();
    b.render_metrics(&mut m);
    assert!(
        m.contains("switchyard_proxy_budget_spent_usd{budget=\"key:k\"} 0.71"),
        "{m}"
    );
    assert!(
        m.contains("switchyard_proxy_budget_limit_usd{budget=\"key:k\"} 1"),
        "{m}"
    );
}

#[test]
fn counters_roll_over_at_utc_midnight() {
    let (now, clock) = clock_at("2026-11-30T23:59:58Z");
    let b = Budgets::with_clock(&[budget(Some("k"), None, 1.0, "reject")], clock).unwrap();
    b.reserve("k", "t", d("0.9")).unwrap().settle(None);
    let late = b.reserve("k", "t", d("0.1")).unwrap();
    assert!(b.reserve("k", "t", d("0.2")).is_err(), "yesterday is full");
    now.store(us("2026-12-01T00:00:01Z"), Ordering::SeqCst);
    assert_eq!(b.usage("key:k").unwrap(), (Decimal::ZERO, Decimal::ZERO));
    let r = b.reserve("k", "t", d("0.95")).unwrap();
    // Yesterday's request settling now does not touch today's counters.
    late.settle(Some(d("0.1")));
    assert_eq!(b.usage("key:k").unwrap(), (Decimal::ZERO, d("0.95")));
    r.settle(Some(d("0.95")));
    assert!(b.reserve("k", "t", d("0.1")).is_err());
}

fn canonical(id: &str, ts: &str, key: &str, task: &str, cost: &str) -> String {
    serde_json::json!({
        "request_id": id, "ts": ts, "model": "openai/gpt-4o-mini", "key_id": key,
        "task": task, "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": cost,
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_counts_todays_spend_in_parquet_and_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::common::open_store(dir.path(), &dir.path().join("wal")).await;
    let (_, clock) = clock_at("2026-12-01T12:00:00Z");
    let budgets = [
        budget(Some("team"), None, 1.0, "reject"),
        budget(None, Some("summarize"), 1.0, "reject"),
    ];
    // A fresh data dir: nothing spent yet.
    let b = Budgets::with_clock(&budgets, clock.clone()).unwrap();
    b.seed_from_store(&store).await.unwrap();
    assert_eq!(b.usage("key:team").unwrap(), (Decimal::ZERO, Decimal::ZERO));
    let ingest = |lines: Vec<String>| {
        let body = lines.join("\n");
        let store = store.clone();
        async move {
            let out = store
                .ingest(formats::parse_body(body.as_bytes(), Format::Auto, 0))
                .await
                .unwrap();
            assert!(out.rejected.is_empty(), "{:?}", out.rejected);
        }
    };
    // Flushed to Parquet: two today, one yesterday (not counted).
    ingest(vec![
        canonical("a1", "2026-12-01T01:00:00Z", "team", "chat", "0.25"),
        canonical("a2", "2026-12-01T09:30:00Z", "team", "summarize", "0.125"),
        canonical("a3", "2026-11-30T23:59:59Z", "team", "chat", "5"),
    ])
    .await;
    store.flush().await.unwrap();
    // Still in the buffer: one today for the key, one for another key on the task.
    ingest(vec![
        canonical("b1", "2026-12-01T11:00:00Z", "team", "chat", "0.0625"),
        canonical("b2", "2026-12-01T11:05:00Z", "other", "summarize", "0.5"),
    ])
    .await;
    b.seed_from_store(&store).await.unwrap();
    assert_eq!(b.usage("key:team").unwrap().0, d("0.4375"));
    assert_eq!(b.usage("task:summarize").unwrap().0, d("0.625"));
    // What is left today is what fits: 1 - 0.4375 = 0.5625.
    assert!(b.reserve("team", "x", d("0.5626")).is_err());
    b.reserve("team", "x", d("0.5625")).unwrap().settle(None);
    store.close().await.unwrap();
}

#[test]
fn budgets_from_the_config_file() {
    let cfg = Config::parse(
        "[[budget]]\nkey = \"team-search\"\ndaily_usd = 0.1\n\n[[budget]]\ntask = \"summarize\"\ndaily_usd = 50\non_exceed = \"downgrade:openai/gpt-4o-mini\"\n",
        "test",
    )
    .unwrap();
    let b = Budgets::new(&cfg.budgets).unwrap();
    assert!(!b.is_empty());
    // 0.1 is exactly a dime, not the float's binary expansion.
    assert!(b.reserve("team-search", "x", d("0.1")).is_ok());
    let e = b.reserve("team-search", "x", d("0.000001")).err().unwrap();
    assert_eq!(e.limit_usd, d("0.1"));
    assert!(Budgets::new(&[]).unwrap().is_empty());
    let bad = Budgets::new(&[budget(Some("k"), None, 1.0, "downgrade:")]).unwrap_err();
    assert!(bad.to_string().contains("downgrade:MODEL"), "{bad}");
}

#[test]
fn worst_case_cost_takes_the_dearest_prices_and_the_output_limit() {
    let cat = PriceCatalog::embedded().unwrap();
    // claude-haiku-4-5: input 1, cache write 1.25, output 5 USD/M; 200k context.
    assert_eq!(
        worst_case_cost(&cat, "claude-haiku-4-5", 1000, Some(500)),
        Some(d("0.00375"))
    );
    // No max_tokens: the rest of the context window.
    assert_eq!(
        worst_case_cost(&cat, "anthropic/claude-haiku-4-5", 1000, None),
        Some(d("0.99625"))
    );
    assert_eq!(
        worst_case_cost(&cat, "no-such-model-xyz", 10, Some(10)),
        None
    );
    let msg = switchyard::proxy::budget::unpriced_message("no-such-model-xyz");
    assert!(msg.contains("no-such-model-xyz") && msg.contains("price"));
}

#[test]
fn admit_decides_serve_reject_downgrade_and_unpriced() {
    let cat = PriceCatalog::embedded().unwrap();
    let b = Budgets::new(&[
        budget(Some("team"), None, 0.01, "reject"),
        budget(None, Some("chat"), 0.01, "downgrade:openai/gpt-4o-mini"),
    ])
    .unwrap();
    let admit =
        |key: &str, task: &str, model: &str| b.admit(&cat, key, task, model, 100, Some(500));
    // No budget applies: served as asked, even unpriced.
    let Admission::Serve {
        model,
        downgraded_by: None,
        ..
    } = admit("free", "free", "no-such-model-xyz")
    else {
        panic!("an uncovered request is served");
    };
    assert_eq!(model, "no-such-model-xyz");
    // An unpriced model under a budget is refused, naming the model.
    let Admission::Reject {
        message,
        budget: None,
    } = admit("team", "x", "no-such-model-xyz")
    else {
        panic!("an unpriced model under a budget is refused");
    };
    assert!(message.contains("no-such-model-xyz"), "{message}");
    // gpt-4o: 100 x 2.5 + 500 x 10 per million = 0.00525 USD worst case; one fits in 0.01.
    let Admission::Serve { reservation, .. } = admit("team", "x", "openai/gpt-4o") else {
        panic!("the first request fits");
    };
    assert_eq!(reservation.amount(), d("0.00525"));
    let Admission::Reject { message, budget } = admit("team", "x", "openai/gpt-4o") else {
        panic!("the second does not fit");
    };
    assert_eq!(budget.as_deref(), Some("key:team"));
    assert!(message.contains("key:team"), "{message}");
    reservation.settle(Some(d("0.004")));
    // The task budget downgrades instead, and charges the cheaper model's reservation.
    let Admission::Serve {
        reservation: first, ..
    } = admit("other", "chat", "openai/gpt-4o")
    else {
        panic!("fits");
    };
    let Admission::Serve {
        model,
        reservation,
        downgraded_by,
    } = admit("other", "chat", "openai/gpt-4o")
    else {
        panic!("a downgrade budget serves");
    };
    assert_eq!(model, "openai/gpt-4o-mini");
    assert_eq!(downgraded_by.as_deref(), Some("task:chat"));
    assert!(reservation.amount() > Decimal::ZERO && reservation.amount() < first.amount());
}

// ---- end to end: the real proxy in front of the mock upstream ----

const BIG: &str = "openai/gpt-4o";
const MINI: &str = "openai/gpt-4o-mini";
const TEAM_TOKEN: &str = "sk-team-search-7Qx";
const MAX_TOKENS: u64 = 256;

fn proxy_config(mock: &MockUpstream, daily_usd: &str, on_exceed: &str) -> String {
    format!(
        "{}\n[[key]]\nname = \"team-search\"\ntoken_env = \"SY_TEST_TEAM_TOKEN\"\n\n\
         [[budget]]\nkey = \"team-search\"\ndaily_usd = {daily_usd}\non_exceed = \"{on_exceed}\"\n",
        upstream_toml("mock", &mock.base, &[MINI, BIG])
    )
}

/// 50 concurrent chat requests for BIG; each answer's status, serving model and body.
async fn burst(proxy: &Proxy) -> Vec<(u16, String, serde_json::Value)> {
    let c = crate::common::client();
    let auth = format!("Bearer {TEAM_TOKEN}");
    let calls = (0..50).map(|i| {
        let (c, auth) = (c.clone(), auth.clone());
        let mut body = chat_body(BIG, &format!("Summarise quarterly report number {i}"));
        body["max_tokens"] = serde_json::json!(MAX_TOKENS);
        async move {
            let r = proxy.chat(&c, &body, &[("Authorization", &auth)]).await;
            let status = r.status().as_u16();
            let model = r
                .headers()
                .get("x-switchyard-model")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (status, model, r.json().await.unwrap())
        }
    });
    futures::future::join_all(calls).await
}

/// The most one request may reserve: every byte of the body a prompt token.
fn one_reservation() -> Decimal {
    let body = chat_body(BIG, "Summarise quarterly report number 49").to_string();
    worst_case_cost(
        &PriceCatalog::embedded().unwrap(),
        BIG,
        body.len() as u64,
        Some(MAX_TOKENS),
    )
    .unwrap()
}

fn logged(data: &std::path::Path, sql: &str) -> Vec<Vec<String>> {
    query_csv(data, sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_holds_a_reject_budget_under_50_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let limit = "0.01";
    let mut proxy = Proxy::start(
        dir.path(),
        &proxy_config(&mock, limit, "reject"),
        None,
        &[],
        &[("SY_TEST_TEAM_TOKEN", TEAM_TOKEN)],
    );
    let answers = burst(&proxy).await;
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let refused: Vec<_> = answers.iter().filter(|a| a.0 == 429).collect();
    assert_eq!(ok + refused.len(), 50, "only 200s and 429s: {answers:?}");
    assert!(
        ok >= 1 && !refused.is_empty(),
        "{ok} served, {} refused",
        refused.len()
    );
    for (_, _, body) in &refused {
        let e = &body["error"];
        assert!(
            e["message"].as_str().unwrap().contains("key:team-search"),
            "{body}"
        );
        assert_eq!(e["type"], "insufficient_quota", "{body}");
        assert!(
            e.get("type").is_some() && e.get("param").is_some() && e.get("code").is_some(),
            "{body}"
        );
    }
    assert!(proxy.terminate().success());
    let rows = logged(
        &proxy.data_dir,
        "SELECT CAST(coalesce(sum(cost_usd), 0) AS VARCHAR), count(*) FILTER (WHERE status = 200) \
         FROM requests WHERE key_id = 'team-search'",
    );
    let spent: Decimal = rows[0][0].parse().unwrap();
    assert_eq!(rows[0][1], ok.to_string(), "every served request is logged");
    assert!(
        spent <= d(limit) + one_reservation(),
        "logged spend {spent} above {limit} + one reservation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_downgrades_past_a_budget_under_50_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let limit = "0.01";
    let mut proxy = Proxy::start(
        dir.path(),
        &proxy_config(&mock, limit, &format!("downgrade:{MINI}")),
        None,
        &[],
        &[("SY_TEST_TEAM_TOKEN", TEAM_TOKEN)],
    );
    let answers = burst(&proxy).await;
    assert!(
        answers.iter().all(|a| a.0 == 200),
        "every request served: {answers:?}"
    );
    let big = answers.iter().filter(|a| a.1 == BIG).count();
    let mini = answers.iter().filter(|a| a.1 == MINI).count();
    assert_eq!(big + mini, 50);
    assert!(
        big >= 1 && mini >= 1,
        "{big} at full price, {mini} downgraded"
    );
    assert!(proxy.terminate().success());
    let rows = logged(
        &proxy.data_dir,
        &format!(
            "SELECT CAST(coalesce(sum(cost_usd), 0) AS VARCHAR), count(*) FROM requests \
             WHERE key_id = 'team-search' AND model = '{BIG}'"
        ),
    );
    let spent: Decimal = rows[0][0].parse().unwrap();
    assert!(
        spent <= d(limit) + one_reservation(),
        "full-price spend {spent} above {limit} + one reservation"
    );
    let marked = logged(
        &proxy.data_dir,
        &format!(
            "SELECT count(*) FROM requests WHERE model = '{MINI}' AND route = 'budget-downgrade:key:team-search'"
        ),
    );
    assert_eq!(
        marked[0][0],
        mini.to_string(),
        "downgrades are marked in `route`"
    );
}
