//! The recommender on constructed cases, the winner's curse on many small tasks, and the
//! `recommend` / `evaluate` commands end to end.

use rand::{Rng, SeedableRng};
use switchyard::recommend::{Candidate, Objective, Policy, Scope, evaluate, recommend};

use crate::common::{generated_store, run, run_ok};

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

/// A candidate with binary quality feedback on every request.
fn cand(task: &str, model: &str, n: u64, quality: f64, cost: f64) -> Candidate {
    Candidate {
        task: task.into(),
        model: model.into(),
        requests: n,
        success_rate: 1.0,
        cost_per_request: Some(cost),
        samples: n,
        quality: Some(quality),
        quality_var: Some(quality * (1.0 - quality)),
        binary: true,
        p95_latency_ms: Some(1000.0),
    }
}

fn task_obj() -> Objective {
    Objective {
        scope: Scope::Task,
        explore: 0.0,
        ..Objective::default()
    }
}

fn route<'a>(p: &'a Policy, task: &str) -> &'a switchyard::recommend::Route {
    p.routes.iter().find(|r| r.task == task).unwrap()
}

fn main_model(p: &Policy, task: &str) -> String {
    route(p, task)
        .targets
        .iter()
        .filter(|t| t.role.is_none())
        .max_by(|a, b| a.weight.total_cmp(&b.weight))
        .unwrap()
        .model
        .clone()
}

#[test]
fn a_clear_winner_takes_the_task() {
    let c = vec![
        cand("summarize", "big", 2000, 0.90, 0.010),
        cand("summarize", "small", 2000, 0.89, 0.001),
    ];
    let p = recommend(&c, &task_obj(), now());
    assert_eq!(main_model(&p, "summarize"), "small");
    let r = route(&p, "summarize");
    assert_eq!(r.targets.len(), 1);
    assert_eq!(r.fallbacks, vec!["big".to_string()]);
    // Current traffic is half on each: 0.0055 a request, against 0.001.
    assert!((r.expected.savings_vs_current_pct.unwrap() - 81.8).abs() < 0.1);
    p.validate().unwrap();
}

#[test]
fn a_tie_goes_to_the_cheaper_model_and_is_deterministic() {
    let c = vec![
        cand("t", "a", 500, 0.80, 0.004),
        cand("t", "b", 500, 0.80, 0.002),
    ];
    let p1 = recommend(&c, &task_obj(), now());
    assert_eq!(main_model(&p1, "t"), "b");
    let mut rev = c.clone();
    rev.reverse();
    let p2 = recommend(&rev, &task_obj(), now());
    assert_eq!(p1.routes, p2.routes);
    assert_eq!(p1.version, p2.version);
}

/// `--min-samples 30`: the explicit sample threshold.
fn thresholded() -> Objective {
    Objective {
        min_samples: 30,
        ..task_obj()
    }
}

#[test]
fn too_few_samples_keep_the_current_model_and_say_why() {
    let c = vec![
        cand("rare", "big", 20, 0.9, 0.01),
        cand("rare", "small", 12, 0.9, 0.001),
    ];
    let p = recommend(&c, &thresholded(), now());
    let r = route(&p, "rare");
    assert_eq!(main_model(&p, "rare"), "big");
    assert!(
        r.evidence.reason.contains("fewer than 30"),
        "{}",
        r.evidence.reason
    );
    // With the current model well sampled, the young cheap one gets an exploration share.
    let c = vec![
        cand("t", "big", 400, 0.9, 0.01),
        cand("t", "small", 12, 0.92, 0.001),
    ];
    let obj = Objective {
        explore: 0.05,
        ..thresholded()
    };
    let p = recommend(&c, &obj, now());
    let r = route(&p, "t");
    assert_eq!(main_model(&p, "t"), "big");
    let explore = r
        .targets
        .iter()
        .find(|t| t.role.as_deref() == Some("explore"))
        .unwrap();
    assert_eq!(explore.model, "small");
    assert!((explore.weight - 0.05).abs() < 1e-9);
    assert!((r.targets.iter().map(|t| t.weight).sum::<f64>() - 1.0).abs() < 1e-9);
}

#[test]
fn quality_just_under_the_bound_is_not_chosen() {
    // 0.94 of the best with plenty of samples: under a 0.95 target.
    let c = vec![
        cand("t", "big", 3000, 0.90, 0.01),
        cand("t", "small", 3000, 0.90 * 0.94, 0.001),
    ];
    let p = recommend(&c, &task_obj(), now());
    assert_eq!(main_model(&p, "t"), "big");
    // Just over it with the same evidence: chosen (the guard is not a blanket refusal).
    let c = vec![
        cand("t", "big", 3000, 0.90, 0.01),
        cand("t", "small", 3000, 0.90 * 0.975, 0.001),
    ];
    let p = recommend(&c, &task_obj(), now());
    assert_eq!(main_model(&p, "t"), "small");
}

#[test]
fn a_latency_limit_excludes_the_cheapest_model() {
    let mut slow = cand("t", "cheap-slow", 1000, 0.89, 0.0005);
    slow.p95_latency_ms = Some(9000.0);
    let c = vec![
        cand("t", "big", 1000, 0.90, 0.01),
        cand("t", "mid", 1000, 0.89, 0.002),
        slow,
    ];
    let free = recommend(&c, &task_obj(), now());
    assert_eq!(main_model(&free, "t"), "cheap-slow");
    let obj = Objective {
        max_p95_latency_ms: Some(2000.0),
        ..task_obj()
    };
    let limited = recommend(&c, &obj, now());
    assert_eq!(main_model(&limited, "t"), "mid");
    assert!(limited.routes[0].expected.p95_latency_ms.unwrap() <= 2000.0);
}

#[test]
fn a_task_without_feedback_keeps_its_current_model() {
    let mut a = cand("nofb", "big", 900, 0.0, 0.01);
    let mut b = cand("nofb", "small", 100, 0.0, 0.001);
    for c in [&mut a, &mut b] {
        c.samples = 0;
        c.quality = None;
        c.quality_var = None;
    }
    let p = recommend(&[a, b], &Objective::default(), now());
    let r = route(&p, "nofb");
    assert_eq!(r.targets.len(), 1);
    assert_eq!(r.targets[0].model, "big");
    assert!(r.evidence.reason.contains("no quality feedback"));
}

/// Many small tasks where the cheap model is truly just under the bar: observed means are
/// noisy, and picking on them naively over-promises.
fn small_tasks(seed: u64) -> (Vec<Candidate>, Vec<(String, f64, f64)>) {
    drawn_tasks(seed, 60, 60, |rng, _| {
        let q_big: f64 = rng.random_range(0.75..0.95);
        (q_big, q_big * rng.random_range(0.88..0.97))
    })
}

/// `tasks` tasks whose true (big, small) qualities come from `truth`, with `n` binary samples
/// per model drawn from them.
fn drawn_tasks(
    seed: u64,
    tasks: usize,
    n: u64,
    truth: impl Fn(&mut rand_pcg::Pcg64, usize) -> (f64, f64),
) -> (Vec<Candidate>, Vec<(String, f64, f64)>) {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let (mut cands, mut truths) = (Vec::new(), Vec::new());
    for t in 0..tasks {
        let task = format!("task-{t:02}");
        let (q_big, q_small) = truth(&mut rng, t);
        let draw = |rng: &mut rand_pcg::Pcg64, q: f64| {
            (0..n).filter(|_| rng.random_bool(q)).count() as f64 / n as f64
        };
        let (o_big, o_small) = (draw(&mut rng, q_big), draw(&mut rng, q_small));
        cands.push(cand(&task, "big", n, o_big, 0.01));
        cands.push(cand(&task, "small", n, o_small, 0.001));
        truths.push((task, q_big, q_small));
    }
    (cands, truths)
}

#[test]
fn many_small_tasks_do_not_fool_the_task_scope() {
    let (mut naive_bad, mut guarded_bad, mut guarded_small) = (0, 0, 0);
    for seed in 0..10 {
        let (cands, truth) = small_tasks(seed);
        let p = recommend(&cands, &task_obj(), now());
        for (task, q_big, q_small) in &truth {
            let obs = |m: &str| {
                cands
                    .iter()
                    .find(|c| &c.task == task && c.model == m)
                    .unwrap()
                    .quality
                    .unwrap()
            };
            // Naive: cheapest whose observed mean holds 95% of the observed best.
            let naive_small = obs("small") >= 0.95 * obs("big").max(obs("small"));
            let bad = *q_small < 0.95 * q_big;
            naive_bad += usize::from(naive_small && bad);
            let chose_small = main_model(&p, task) == "small";
            guarded_small += usize::from(chose_small);
            guarded_bad += usize::from(chose_small && bad);
        }
    }
    // The naive rule routes many tasks to a model that truly misses the bar; the guard
    // (shrinkage + lower bound) few.
    assert!(
        naive_bad >= 60,
        "naive over-fitting did not show: {naive_bad}"
    );
    assert!(
        guarded_bad * 4 <= naive_bad,
        "guarded {guarded_bad} vs naive {naive_bad}"
    );
    assert!(guarded_small > 0);
}

#[test]
fn overall_scope_holds_the_target_on_fresh_traffic() {
    let obj = Objective {
        explore: 0.0,
        ..Objective::default()
    };
    let mut held = 0;
    let mut saving = 0.0;
    for seed in 0..20 {
        let (cands, truth) = small_tasks(100 + seed);
        let p = recommend(&cands, &obj, now());
        // True quality of the policy against always using each task's truly best model.
        let (mut q_policy, mut q_best, mut cost) = (0.0, 0.0, 0.0);
        for (task, q_big, q_small) in &truth {
            let r = route(&p, task);
            for t in &r.targets {
                let (q, c) = if t.model == "big" {
                    (*q_big, 0.01)
                } else {
                    (*q_small, 0.001)
                };
                q_policy += t.weight * q;
                cost += t.weight * c;
            }
            q_best += q_big.max(*q_small);
        }
        held += usize::from(q_policy >= 0.95 * q_best);
        saving += 1.0 - cost / (0.01 * truth.len() as f64);
    }
    assert!(held >= 19, "the target held on {held} of 20 draws");
    assert!(saving / 20.0 > 0.15, "mean saving {:.3}", saving / 20.0);
}

#[test]
fn evaluation_compares_policy_current_and_oracle() {
    let c = vec![
        cand("a", "big", 1800, 0.90, 0.01),
        cand("a", "small", 1500, 0.88, 0.001),
        cand("b", "big", 1800, 0.90, 0.01),
        cand("b", "small", 200, 0.60, 0.001),
    ];
    let p = recommend(&c, &task_obj(), now());
    let e = evaluate(&c, &p);
    assert!(e.holds_target);
    assert!(e.policy_cost_per_request < e.current_cost_per_request);
    // Task a goes to the small model, task b stays on the big one; tasks weigh by traffic.
    let want = (3300.0 * 0.88 + 2000.0 * 0.90) / 5300.0;
    assert!((e.policy_quality - want).abs() < 1e-9, "{e:?}");
    assert!(e.oracle_cost_per_request <= e.policy_cost_per_request + 1e-12);
    assert!(e.oracle_quality >= e.target_quality - 1e-9);
}

#[test]
fn policy_files_validate_and_round_trip() {
    let c = vec![
        cand("t", "a", 100, 0.9, 0.01),
        cand("t", "b", 100, 0.9, 0.02),
    ];
    let p = recommend(&c, &Objective::default(), now());
    let json = serde_json::to_string(&p).unwrap();
    let back: Policy = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    for key in ["version", "generated_at", "objective", "routes", "default"] {
        assert!(v.get(key).is_some(), "{key}");
    }
    let mut bad = p.clone();
    bad.routes[0].targets[0].weight = 0.5;
    assert!(bad.validate().unwrap_err().to_string().contains("sum to 1"));
}

#[test]
fn recommend_and_evaluate_commands_work_on_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_store(
        dir.path(),
        "data",
        &[
            "--requests",
            "30000",
            "--days",
            "10",
            "--seed",
            "4",
            "--end",
            "2026-11-20T00:00:00Z",
        ],
    );
    let d = data.to_str().unwrap();
    let policy = dir.path().join("policy.json");
    let p = policy.to_str().unwrap();
    let out = run_ok(&[
        "recommend",
        "--data-dir",
        d,
        "--since",
        "2026-11-01",
        "--out",
        p,
        "--format",
        "text",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("summarize") && text.contains("reason"),
        "{text}"
    );
    let parsed: Policy = serde_json::from_slice(&std::fs::read(&policy).unwrap()).unwrap();
    parsed.validate().unwrap();
    assert!(parsed.routes.len() >= 20);
    let kept = data
        .join("policies")
        .join(format!("{}.json", parsed.version));
    assert!(kept.exists(), "{}", kept.display());
    // The same evidence gives the same routes: the diff says so.
    let out = run(
        &[
            "recommend",
            "--data-dir",
            d,
            "--since",
            "2026-11-01",
            "--diff",
            p,
        ],
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no route changed"));
    let out = run_ok(&[
        "evaluate",
        "--data-dir",
        d,
        "--since",
        "2026-11-01",
        "--policy",
        p,
        "--format",
        "json",
    ]);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        e["policy_cost_per_request"].as_f64().unwrap()
            < e["current_cost_per_request"].as_f64().unwrap()
    );
    // A broken policy file is refused with the reason.
    std::fs::write(&policy, "{\"version\": 1}").unwrap();
    let out = run(&["evaluate", "--data-dir", d, "--policy", p], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a policy file"));
}

#[test]
fn the_api_answers_the_policy_recommend_would_emit() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_store(
        dir.path(),
        "data",
        &["--requests", "20000", "--days", "5", "--seed", "8"],
    );
    let server = crate::common::Server::start(&data, &[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = crate::common::client();
        let r = c
            .get(server.url("/api/recommendation?quality_target=0.9&scope=task&since=60d"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let p: Policy = r.json().await.unwrap();
        p.validate().unwrap();
        assert_eq!(p.objective.scope, Scope::Task);
        assert!((p.objective.quality_target - 0.9).abs() < 1e-12);
        assert!(p.routes.len() >= 20);
        let r = c
            .get(server.url("/api/recommendation?scope=cheapest"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    });
}

#[test]
fn small_tasks_are_decided_by_their_shrunk_estimates_by_default() {
    // Ten well-sampled tasks where the small model is consistently close to the big one, and
    // one task with a handful of samples per model.
    let mut c = Vec::new();
    for t in 0..10 {
        let task = format!("big-{t}");
        let q = 0.80 + 0.01 * t as f64;
        c.push(cand(&task, "big", 800, q, 0.01));
        c.push(cand(&task, "small", 800, q - 0.01, 0.001));
    }
    c.push(cand("tiny", "big", 8, 0.875, 0.01));
    c.push(cand("tiny", "small", 6, 5.0 / 6.0, 0.001));
    let obj = Objective {
        explore: 0.0,
        ..Objective::default()
    };
    assert_eq!(obj.min_samples, 0, "no sample threshold by default");
    let p = recommend(&c, &obj, now());
    let tiny = route(&p, "tiny");
    assert!(
        !tiny.evidence.reason.contains("fewer than") && !tiny.evidence.reason.contains("keeping"),
        "{}",
        tiny.evidence.reason
    );
    // The tiny task's estimates lean on the pool; the large tasks' on their own data.
    let own = |task: &str| route(&p, task).evidence.own_data.unwrap();
    assert!(own("tiny") < 0.5, "{}", own("tiny"));
    assert!(
        own("tiny") < own("big-3"),
        "{} {}",
        own("tiny"),
        own("big-3")
    );
    // The person's table says so, per task.
    let text = switchyard::recommend::explain(&p);
    let line = text.lines().find(|l| l.starts_with("tiny")).unwrap();
    assert!(
        line.contains(&format!("{:.0}%", 100.0 * own("tiny"))),
        "{line}"
    );
    assert!(
        text.contains("100 fit and fresh windows resampled from the logs")
            && text.contains("100 split halves of the logs"),
        "{text}"
    );
    // --min-samples stays as an explicit override.
    let held = recommend(
        &c,
        &Objective {
            min_samples: 30,
            ..obj.clone()
        },
        now(),
    );
    assert!(
        route(&held, "tiny")
            .evidence
            .reason
            .contains("fewer than 30"),
        "{}",
        route(&held, "tiny").evidence.reason
    );
}

#[test]
fn three_models_per_task_move_along_each_frontier_in_chain_order() {
    let mut moved_to_small = 0;
    let mut split_tasks = 0;
    for seed in 0..6 {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let mut c = Vec::new();
        for t in 0..14 {
            let task = format!("t{t:02}");
            let q: f64 = rng.random_range(0.80..0.95);
            let d_mid: f64 = rng.random_range(0.002..0.03);
            let d_small = d_mid + rng.random_range(0.02..0.09);
            let n = 1000;
            c.push(cand(&task, "big", n, q, 0.010));
            c.push(cand(&task, "mid", n, q - d_mid, 0.007));
            c.push(cand(&task, "small", n, q - d_small, 0.001));
        }
        let obj = Objective {
            explore: 0.0,
            quality_target: 0.93,
            ..Objective::default()
        };
        let p = recommend(&c, &obj, now());
        p.validate().unwrap();
        for r in &p.routes {
            let w = |m: &str| {
                r.targets
                    .iter()
                    .filter(|t| t.model == m)
                    .map(|t| t.weight)
                    .sum::<f64>()
            };
            // A task's traffic is on one frontier point or split between two neighbours: a
            // move out of order would leave some on all three.
            assert!(
                !(w("big") > 0.0 && w("mid") > 0.0 && w("small") > 0.0),
                "seed {seed} {}: {:?}",
                r.task,
                r.targets
            );
            moved_to_small += usize::from(w("small") > 0.0);
            split_tasks += usize::from(r.targets.len() > 1);
        }
    }
    assert!(
        moved_to_small > 0 && split_tasks > 0,
        "{moved_to_small} {split_tasks}"
    );
}

/// Forty well-sampled tasks whose small model is the same 0.06 below the big one everywhere.
fn uniform_gap_tasks(seed: u64) -> (Vec<Candidate>, Vec<(String, f64, f64)>) {
    drawn_tasks(seed, 40, 2000, |_, t| {
        let q_big = 0.80 + 0.1 * (t as f64 / 40.0);
        (q_big, q_big - 0.06)
    })
}

/// True quality of `p` as a share of always-best's, and its cost, on `truth`.
fn true_outcome(p: &Policy, truth: &[(String, f64, f64)]) -> (f64, f64) {
    let (mut q, mut best, mut cost) = (0.0, 0.0, 0.0);
    for (task, q_big, q_small) in truth {
        for t in &route(p, task).targets {
            let (qt, ct) = if t.model == "big" {
                (*q_big, 0.01)
            } else {
                (*q_small, 0.001)
            };
            q += t.weight * qt;
            cost += t.weight * ct;
        }
        best += q_big;
    }
    (q / best, cost)
}

/// The default objective without exploration, and the same with the fixed normal quantile.
fn calibrated_and_fixed() -> (Objective, Objective) {
    let calibrated = Objective {
        explore: 0.0,
        ..Objective::default()
    };
    let fixed = Objective {
        calibration: None,
        ..calibrated.clone()
    };
    (calibrated, fixed)
}

#[test]
fn a_calibration_under_the_normal_quantile_is_reported_but_not_applied() {
    // Well-sampled tasks whose gaps all have one size: on most draws the resampled windows
    // find a guard looser than the normal quantile (shrinking the gaps toward their common
    // size takes out most of their noise). Applied as calibrated, such guards held the true
    // target less often than they promise, so the policy reports the calibration and keeps
    // the normal quantile; where the calibration asks for more, it applies more.
    let (calibrated, fixed) = calibrated_and_fixed();
    assert!((fixed.z - 1.645).abs() < 1e-3);
    let (mut held, mut under) = (0, 0);
    for seed in 0..20 {
        let (cands, truth) = uniform_gap_tasks(seed);
        let pc = recommend(&cands, &calibrated, now());
        let cal = pc.objective.calibration.as_ref().unwrap();
        assert!(cal.note.is_none(), "{cal:?}");
        assert!(cal.correction.unwrap() >= 0.0, "{cal:?}");
        let z = cal.calibrated_z.unwrap();
        assert!(
            (pc.objective.z - z.max(fixed.z)).abs() < 1e-3,
            "{:?}",
            pc.objective
        );
        assert!(cal.held_share.unwrap() >= 0.95, "{cal:?}");
        if z < fixed.z {
            under += 1;
            let pf = recommend(&cands, &fixed, now());
            assert_eq!(pc.routes, pf.routes);
        }
        held += usize::from(true_outcome(&pc, &truth).0 >= 0.95 - 1e-9);
    }
    assert!(
        under >= 10,
        "the calibration came out under the normal z on {under} of 20"
    );
    assert!(
        held >= 19,
        "the policy held the true target on {held} of 20"
    );
}

/// Ten well-sampled tasks (20,000 scores per model) whose small model is truly 0.043 below the
/// big one (0.90), inside the 0.045 the target allows: routing every task to it truly holds
/// 95.2% of always-big.
fn room_to_spare_tasks(seed: u64) -> (Vec<Candidate>, Vec<(String, f64, f64)>) {
    drawn_tasks(seed, 10, 20_000, |_, _| (0.90, 0.90 - 0.043))
}

#[test]
fn the_calibrated_guard_spends_what_a_fixed_z_leaves_when_the_logs_leave_no_doubt() {
    // The fixed normal quantile covers an estimate's error in both directions, but once every
    // task is moved, an optimistic estimate cannot move more: on these logs the whole move
    // holds without a guard. Both checks (resampled windows and the logs' split halves) find
    // that, so the calibrated guard moves everything where the fixed z stops short.
    let (calibrated, fixed) = calibrated_and_fixed();
    let (mut tighter, mut cost_cal, mut cost_fixed) = (0, 0.0, 0.0);
    for seed in 0..20 {
        let (cands, truth) = room_to_spare_tasks(seed);
        let pc = recommend(&cands, &calibrated, now());
        let pf = recommend(&cands, &fixed, now());
        let cal = pc.objective.calibration.as_ref().unwrap();
        let (qc, cc) = true_outcome(&pc, &truth);
        let (qf, cf) = true_outcome(&pf, &truth);
        assert!(qc >= 0.95 - 1e-9 && qf >= 0.95 - 1e-9, "{qc} {qf}");
        assert!(
            cc <= cf + 1e-12,
            "seed {seed}: calibrated {cc} > fixed {cf}"
        );
        if pc.objective.z < fixed.z {
            // Only where both checks held the target with no guard at all.
            assert_eq!(pc.objective.z, 0.0, "{cal:?}");
            assert_eq!((cal.calibrated_z, cal.split_half_z), (Some(0.0), Some(0.0)));
            tighter += usize::from(cc < cf - 1e-9);
        } else {
            assert_eq!(pc.routes, pf.routes);
        }
        cost_cal += cc;
        cost_fixed += cf;
    }
    assert!(tighter >= 10, "tighter than the fixed z on {tighter} of 20");
    assert!(
        cost_cal < 0.95 * cost_fixed,
        "calibrated {cost_cal:.3} against fixed {cost_fixed:.3}"
    );
}

#[test]
fn the_calibration_is_deterministic_and_reported() {
    let (cands, _) = small_tasks(7);
    let obj = Objective::default();
    let a = recommend(&cands, &obj, now());
    let mut rev = cands.clone();
    rev.reverse();
    let b = recommend(&rev, &obj, now());
    assert_eq!(a.objective, b.objective);
    assert_eq!(a.routes, b.routes);
    let cal = a.objective.calibration.as_ref().unwrap();
    assert_eq!(
        (cal.method.as_str(), cal.draws, cal.seed),
        ("resampled-windows", 100, 0)
    );
    assert!(cal.held_share.unwrap() >= obj.confidence, "{cal:?}");
    // The policy file records it, and reads back.
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(
        json["objective"]["calibration"]["method"],
        "resampled-windows"
    );
    let back: Policy = serde_json::from_value(json).unwrap();
    assert_eq!(back, a);
    // A policy file from before the calibration existed still reads.
    let old = r#"{"version": "v", "generated_at": "2026-11-25T10:00:00Z",
        "objective": {"quality_target": 0.95, "scope": "overall", "max_p95_latency_ms": null,
                      "explore": 0.05, "min_samples": 30, "z": 1.645, "shrink": true},
        "routes": [], "default": {"targets": [{"model": "m", "weight": 1.0}], "fallbacks": []}}"#;
    let p = Policy::parse(old.as_bytes()).unwrap();
    assert!(p.objective.calibration.is_none());
}

#[test]
fn evaluate_holdout_fits_on_the_earlier_window_and_judges_on_the_later() {
    let dir = tempfile::tempdir().unwrap();
    let data = generated_store(
        dir.path(),
        "data",
        &[
            "--requests",
            "20000",
            "--days",
            "10",
            "--seed",
            "5",
            "--end",
            "2026-11-20T00:00:00Z",
        ],
    );
    let d = data.to_str().unwrap();
    let window = ["--since", "2026-11-10", "--until", "2026-11-20"];
    let mut args = vec![
        "evaluate",
        "--data-dir",
        d,
        "--holdout",
        "3d",
        "--format",
        "json",
    ];
    args.extend(window);
    let out = run_ok(&args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["fit"]["until"], "2026-11-17T00:00:00Z");
    assert_eq!(v["judge"]["since"], "2026-11-17T00:00:00Z");
    let (fit, judged) = (
        v["fit"]["requests"].as_u64().unwrap(),
        v["judge"]["requests"].as_u64().unwrap(),
    );
    // Seven days fitted, three judged.
    assert!(fit > judged && judged > 0, "{fit} {judged}");
    let ratio = v["cost_vs_oracle"].as_f64().unwrap();
    assert!(ratio > 0.5, "{ratio}");
    assert!(v["holds_bound"].is_boolean());
    assert!(
        v["objective"]["calibration"]["calibrated_z"].is_number(),
        "{v}"
    );
    // The same split named by its time, in text.
    let mut args = vec!["evaluate", "--data-dir", d, "--fit-until", "2026-11-17"];
    args.extend(window);
    let text = String::from_utf8(run_ok(&args).stdout).unwrap();
    assert!(
        text.contains("judged on") && text.contains("against the judging window's oracle"),
        "{text}"
    );
    // A cut outside the window is refused.
    let mut args = vec!["evaluate", "--data-dir", d, "--fit-until", "2026-11-25"];
    args.extend(window);
    let out = run(&args, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must fall inside"));
}
