//! The synthetic workload generator: determinism, record shapes the ingest accepts, exact
//! reported costs, and quality feedback that follows the generator's FrugalGPT-derived table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};

use switchyard::formats::{Format, parse_body};
use switchyard::generate::{
    DEFAULT_END_TS_US, GenerateOptions, expected_quality, generate, model_names, task_is_binary,
    task_names,
};
use switchyard::prices::PriceCatalog;
use switchyard::record::{CostSource, Item};

fn run(opts: &GenerateOptions) -> Vec<u8> {
    let cat = PriceCatalog::embedded().unwrap();
    let mut out = Vec::new();
    let stats = generate(opts, &cat, &mut out).unwrap();
    assert_eq!(stats.requests, opts.requests);
    assert_eq!(stats.bytes, out.len() as u64);
    out
}

fn opts(requests: u64, seed: u64) -> GenerateOptions {
    GenerateOptions {
        requests,
        seed,
        ..GenerateOptions::default()
    }
}

#[test]
fn every_model_has_a_catalog_price() {
    let cat = PriceCatalog::embedded().unwrap();
    let names = model_names();
    assert_eq!(names.len(), 10);
    for m in names {
        assert!(cat.lookup(m).is_some(), "{m} has no price");
        assert!(m.contains('/'), "{m} should be named provider/model");
    }
    assert!(task_names().len() >= 20);
}

#[test]
fn same_seed_same_bytes_whatever_the_threads() {
    // More than two chunks, so the threaded path runs.
    let mut o = opts(40_000, 7);
    o.threads = 1;
    let a = run(&o);
    o.threads = 3;
    let b = run(&o);
    assert!(a == b, "output depends on the thread count");
    let c = run(&opts(40_000, 8));
    assert!(a != c, "different seeds gave the same output");
    let n = a
        .split(|&b| b == b'\n')
        .filter(|l| l.contains_slice(b"\"model\""))
        .count();
    assert_eq!(n, 40_000);
}

trait ContainsSlice {
    fn contains_slice(&self, needle: &[u8]) -> bool;
}

impl ContainsSlice for [u8] {
    fn contains_slice(&self, needle: &[u8]) -> bool {
        self.windows(needle.len()).any(|w| w == needle)
    }
}

#[test]
fn zero_requests_write_nothing() {
    assert!(run(&opts(0, 1)).is_empty());
    let cat = PriceCatalog::embedded().unwrap();
    let bad = GenerateOptions {
        days: 0,
        ..opts(10, 1)
    };
    assert!(generate(&bad, &cat, &mut Vec::new()).is_err());
}

#[test]
fn records_parse_price_and_link_up() {
    let o = opts(20_000, 11);
    let body = run(&o);
    let cat = PriceCatalog::embedded().unwrap();
    let parsed = parse_body(&body, Format::Auto, 0);
    assert!(
        parsed.rejected.is_empty(),
        "{:?}",
        &parsed.rejected[..3.min(parsed.rejected.len())]
    );

    let mut ids = HashSet::new();
    let mut ok_ids = HashSet::new();
    let mut failed_ids = HashSet::new();
    let (mut requests, mut errors, mut reported, mut streamed) = (0usize, 0, 0, 0);
    let (mut cached, mut writes, mut reasoning, mut retries) = (0, 0, 0, 0);
    let mut models = HashSet::new();
    let mut tasks = HashSet::new();
    let mut gateways = BTreeMap::new();
    let mut feedback = Vec::new();
    let mut last_ts = i64::MIN;
    let mut out_of_order = 0;
    let start = DEFAULT_END_TS_US - i64::from(o.days) * 86_400_000_000;
    for (_, item) in parsed.items {
        match item {
            Item::Request(r) => {
                requests += 1;
                let r = r.finish(&cat).unwrap();
                assert!(
                    ids.insert(r.request_id.clone()),
                    "duplicate {}",
                    r.request_id
                );
                assert!(r.ts_us >= start && r.ts_us < DEFAULT_END_TS_US + 3_600_000_000);
                if r.ts_us < last_ts {
                    out_of_order += 1;
                }
                last_ts = last_ts.max(r.ts_us);
                models.insert(r.model.clone());
                tasks.insert(r.task.clone().unwrap());
                *gateways.entry(r.gateway.clone().unwrap()).or_insert(0usize) += 1;
                let expected = cat.cost(&r.model, &r.usage()).unwrap();
                match r.cost_source {
                    Some(CostSource::Reported) => {
                        reported += 1;
                        assert_eq!(r.cost_usd, Some(expected), "{}", r.request_id);
                    }
                    Some(CostSource::Catalog) => {}
                    other => panic!("{}: cost source {other:?}", r.request_id),
                }
                assert!(r.latency_ms.unwrap() > 0.0);
                if r.streamed == Some(true) {
                    streamed += 1;
                }
                if r.status == Some(200) {
                    assert!(r.error.is_none());
                    assert!(r.completion_tokens.unwrap() >= 1);
                    assert!(r.prompt_tokens.unwrap() >= 1);
                    assert_eq!(r.ttft_ms.is_some(), r.streamed == Some(true));
                    if let Some(t) = r.ttft_ms {
                        assert!(t <= r.latency_ms.unwrap());
                    }
                    ok_ids.insert(r.request_id.clone());
                } else {
                    assert!([429, 500, 503].contains(&r.status.unwrap()));
                    assert!(r.error.is_some());
                    assert!(r.completion_tokens.unwrap_or(0) == 0);
                    errors += 1;
                    failed_ids.insert(r.request_id.clone());
                }
                if let Some(p) = &r.parent_id {
                    retries += 1;
                    assert!(
                        failed_ids.contains(p),
                        "parent {p} is not an earlier failure"
                    );
                    assert!(r.attempt.unwrap() >= 2);
                }
                cached += usize::from(r.cached_tokens.is_some());
                writes += usize::from(r.cache_write_tokens.is_some());
                reasoning += usize::from(r.reasoning_tokens.is_some());
            }
            Item::Feedback(f) => {
                let f = f.finish().unwrap();
                assert_eq!(f.metric, "quality");
                assert!((0.0..=1.0).contains(&f.value));
                assert!(
                    ok_ids.contains(&f.request_id),
                    "feedback before or without its request"
                );
                feedback.push(f);
            }
        }
    }
    assert_eq!(requests, 20_000);
    assert_eq!(models.len(), 10, "{models:?}");
    assert!(tasks.len() >= 25, "{tasks:?}");
    assert_eq!(gateways.len(), 3, "{gateways:?}");
    let share = |n: usize| n as f64 / requests as f64;
    assert!(
        (0.005..0.04).contains(&share(errors)),
        "error share {}",
        share(errors)
    );
    assert!(retries > 0 && retries <= errors);
    assert!(
        (0.1..0.5).contains(&share(reported)),
        "reported share {}",
        share(reported)
    );
    assert!(
        (0.3..0.7).contains(&share(streamed)),
        "streamed share {}",
        share(streamed)
    );
    assert!(share(cached) > 0.1 && writes > 0 && reasoning > 0);
    assert!(
        share(out_of_order) < 0.02,
        "out of order {}",
        share(out_of_order)
    );
    let fb_share = feedback.len() as f64 / ok_ids.len() as f64;
    assert!(
        (0.40..0.50).contains(&fb_share),
        "feedback share {fb_share}"
    );
}

/// Spearman rank correlation of two equally long samples (no ties expected).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let ranks = |v: &[f64]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (rank, i) in idx.into_iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    };
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[test]
fn quality_feedback_follows_the_table() {
    let o = GenerateOptions {
        feedback_share: 1.0,
        ..opts(200_000, 3)
    };
    let body = run(&o);
    // A light scan instead of full parsing: request lines give (id → task, model), feedback
    // lines the value.
    let field = |line: &str, key: &str| -> Option<String> {
        let pat = format!("\"{key}\":");
        let i = line.find(&pat)? + pat.len();
        let rest = &line[i..];
        let v = if let Some(s) = rest.strip_prefix('"') {
            &s[..s.find('"')?]
        } else {
            &rest[..rest.find([',', '}'])?]
        };
        Some(v.to_string())
    };
    let text = std::str::from_utf8(&body).unwrap();
    let mut of: HashMap<String, (String, String)> = HashMap::new();
    let mut sums: HashMap<(String, String), (f64, usize)> = HashMap::new();
    for line in text.lines() {
        let id = field(line, "request_id").unwrap();
        if let Some(model) = field(line, "model") {
            of.insert(id, (field(line, "task").unwrap(), model));
        } else {
            let v: f64 = field(line, "value").unwrap().parse().unwrap();
            let key = of[&id].clone();
            let e = sums.entry(key).or_default();
            e.0 += v;
            e.1 += 1;
        }
    }
    let mut checked = 0;
    for task in [
        "chat",
        "summarize",
        "classify-ticket",
        "code-review",
        "rag-answer",
    ] {
        let (mut obs, mut exp) = (Vec::new(), Vec::new());
        for m in model_names() {
            let (sum, n) = sums[&(task.to_string(), m.to_string())];
            assert!(n >= 150, "{task}/{m}: only {n} samples");
            let mean = sum / n as f64;
            let want = expected_quality(task, m).unwrap();
            // Within 4.5 standard errors of a mean of n 0/1 or Beta(concentration 12) draws.
            let var = want * (1.0 - want)
                / if task_is_binary(task).unwrap() {
                    1.0
                } else {
                    13.0
                };
            let tol = 4.5 * (var / n as f64).sqrt();
            assert!(
                (mean - want).abs() < tol,
                "{task}/{m}: observed {mean:.3} over {n}, table {want:.3}"
            );
            obs.push(mean);
            exp.push(want);
        }
        // Clearly separated models come out in the table's order.
        for i in 0..obs.len() {
            for j in 0..obs.len() {
                if exp[i] - exp[j] >= 0.06 {
                    assert!(
                        obs[i] > obs[j],
                        "{task}: model {i} should beat model {j}: {obs:?}"
                    );
                }
            }
        }
        let rho = spearman(&obs, &exp);
        if !task_is_binary(task).unwrap() {
            assert!(
                rho > 0.8,
                "{task}: rank correlation {rho:.2}: {obs:?} vs {exp:?}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}
