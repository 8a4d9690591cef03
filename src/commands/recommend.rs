//! `switchyard recommend` and `switchyard evaluate`: the recommender over the store's
//! evidence (the `recommend_inputs` report), policies kept under `policies/`, and diffs.

use std::io::Write;

use object_store::ObjectStoreExt as _;
use object_store::PutPayload;

use super::{Outcome, read_only_engine};
use crate::cli::{EvaluateArgs, ExplainFormat, Global, RecommendArgs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::recommend::{self, Objective, Policy};

/// Validates a recommend objective from its flags.
pub fn objective(a: &RecommendArgs) -> Result<Objective> {
    if !(0.0..=1.0).contains(&a.quality_target) {
        return Err(Error::Invalid(format!(
            "--quality-target {} must be in [0, 1]",
            a.quality_target
        )));
    }
    if !(0.0..0.5).contains(&a.explore) {
        return Err(Error::Invalid(format!(
            "--explore {} must be in [0, 0.5)",
            a.explore
        )));
    }
    if !(a.confidence > 0.5 && a.confidence < 1.0) {
        return Err(Error::Invalid(format!(
            "--confidence {} must be in (0.5, 1)",
            a.confidence
        )));
    }
    Ok(Objective {
        quality_target: a.quality_target,
        scope: a.scope,
        max_p95_latency_ms: a.max_p95_latency_ms,
        explore: a.explore,
        min_samples: a.min_samples,
        z: a.z
            .unwrap_or_else(|| recommend::norm_quantile(a.confidence))
            .max(0.0),
        shrink: !a.no_shrink,
        confidence: a.confidence,
        calibration: a
            .z
            .is_none()
            .then(|| recommend::Calibration::new(a.calibration_draws, a.seed)),
    })
}

fn read_policy(path: &std::path::Path) -> Result<Policy> {
    let body = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let p: Policy = serde_json::from_slice(&body)
        .map_err(|e| Error::Invalid(format!("{}: not a policy file: {e}", path.display())))?;
    p.validate()?;
    Ok(p)
}

/// Lines describing what changed from `old` to `new`, per task.
pub fn diff(old: &Policy, new: &Policy) -> String {
    let fmt = |t: &[recommend::Target]| {
        t.iter()
            .map(|t| format!("{} {:.0}%", t.model, t.weight * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!("{} -> {}\n", old.version, new.version);
    let mut tasks: Vec<&str> = old
        .routes
        .iter()
        .chain(&new.routes)
        .map(|r| r.task.as_str())
        .collect();
    tasks.sort_unstable();
    tasks.dedup();
    let mut changed = 0;
    for t in tasks {
        let a = old.routes.iter().find(|r| r.task == t);
        let b = new.routes.iter().find(|r| r.task == t);
        let line = match (a, b) {
            (Some(a), Some(b)) if a.targets == b.targets => continue,
            (Some(a), Some(b)) => format!(
                "~ {t}: {} -> {} ({})",
                fmt(&a.targets),
                fmt(&b.targets),
                b.evidence.reason
            ),
            (None, Some(b)) => format!("+ {t}: {}", fmt(&b.targets)),
            (Some(a), None) => format!("- {t}: {} (now the default route)", fmt(&a.targets)),
            (None, None) => continue,
        };
        changed += 1;
        out.push_str(&line);
        out.push('\n');
    }
    if old.default.targets != new.default.targets {
        changed += 1;
        out.push_str(&format!(
            "~ default: {} -> {}\n",
            fmt(&old.default.targets),
            fmt(&new.default.targets)
        ));
    }
    if changed == 0 {
        out.push_str("no route changed\n");
    }
    out
}

pub async fn recommend_command(g: &Global, config: &Config, a: RecommendArgs) -> Result<Outcome> {
    let obj = objective(&a)?;
    let old = a.diff.as_deref().map(read_policy).transpose()?;
    let engine = read_only_engine(g, config).await?;
    let cands = recommend::candidates(&engine, Some(&a.since), a.until.as_deref()).await?;
    if cands.is_empty() {
        return Err(Error::NotFound(format!(
            "no requests since {} in {}: nothing to recommend from",
            a.since, g.data_dir
        )));
    }
    let policy = recommend::recommend(&cands, &obj, chrono::Utc::now());
    policy.validate()?;
    let json = keep_policy(engine.store(), &policy).await?;
    if let Some(out) = &a.out {
        std::fs::write(out, &json).map_err(|e| Error::io(out, e))?;
    }
    let mut stdout = std::io::stdout();
    match a.format {
        ExplainFormat::Json => {
            stdout.write_all(&json)?;
            stdout.write_all(b"\n")?;
        }
        ExplainFormat::Text => stdout.write_all(recommend::explain(&policy).as_bytes())?,
    }
    if let Some(old) = old {
        stdout.write_all(diff(&old, &policy).as_bytes())?;
    }
    if a.apply {
        let url = a.proxy.as_deref().ok_or_else(|| {
            Error::Invalid("--apply needs --proxy URL (the running proxy)".into())
        })?;
        let control = crate::proxy::control::Control::new(url, config.tokens().admin)?;
        let live = control.live().await?;
        let version = control.apply(json).await?;
        if let Some(live) = live {
            stdout.write_all(diff(&live, &policy).as_bytes())?;
        }
        writeln!(stdout, "policy {version} in force on {url}")?;
    }
    Ok(Outcome::Ok)
}

/// Keeps `policy` by version beside the data (`policies/VERSION.json`); its file text.
pub async fn keep_policy(store: &crate::store::Store, policy: &Policy) -> Result<Vec<u8>> {
    let json = serde_json::to_vec_pretty(policy)?;
    let loc = store.location();
    let path = loc.path(&["policies", &format!("{}.json", policy.version)]);
    loc.store.put(&path, PutPayload::from(json.clone())).await?;
    Ok(json)
}

pub async fn evaluate_command(g: &Global, config: &Config, a: EvaluateArgs) -> Result<Outcome> {
    let policy = a.policy.as_deref().map(read_policy).transpose()?;
    let engine = read_only_engine(g, config).await?;
    if a.holdout.is_some() || a.fit_until.is_some() {
        return out_of_sample(&engine, &a, policy).await;
    }
    let Some(policy) = policy else {
        return Err(Error::Invalid(
            "evaluate needs --policy, --holdout or --fit-until".into(),
        ));
    };
    let cands = recommend::candidates(&engine, Some(&a.since), a.until.as_deref()).await?;
    let e = recommend::evaluate(&cands, &policy);
    let mut stdout = std::io::stdout();
    match a.format {
        ExplainFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, &e)?;
            stdout.write_all(b"\n")?;
        }
        ExplainFormat::Text => {
            let text = format!(
                "replayed {} requests over {} tasks under policy {}\n{}",
                e.requests,
                e.tasks,
                policy.version,
                evaluation_text(&e, &policy)
            );
            stdout.write_all(text.as_bytes())?;
        }
    }
    Ok(Outcome::Ok)
}

/// `evaluate --holdout D` / `--fit-until T`: a policy fitted on the earlier part of the
/// window with `policy`'s objective (or the defaults), judged on the later part.
async fn out_of_sample(
    engine: &crate::query::QueryEngine,
    a: &EvaluateArgs,
    policy: Option<Policy>,
) -> Result<Outcome> {
    use crate::query::reports::Window;
    let now = chrono::Utc::now();
    let w = Window::parse(Some(&a.since), a.until.as_deref(), None, None, now)?;
    let end = w.until.unwrap_or(now);
    let cut = match (&a.fit_until, &a.holdout) {
        (Some(t), _) => Window::parse(Some(t), None, None, None, now)?.since,
        (None, Some(d)) => Window::parse(Some(d), None, None, None, end)?.since,
        (None, None) => None,
    };
    let Some(cut) = cut.filter(|c| w.since.is_none_or(|s| s < *c) && *c < end) else {
        return Err(Error::Invalid(
            "the fit/judge cut (--holdout or --fit-until) must fall inside the --since/--until \
             window"
                .into(),
        ));
    };
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (cut_s, end_s) = (fmt(cut), fmt(end));
    let fit = recommend::candidates(engine, Some(&a.since), Some(&cut_s)).await?;
    let judge = recommend::candidates(engine, Some(&cut_s), Some(&end_s)).await?;
    if fit.is_empty() || judge.is_empty() {
        return Err(Error::NotFound(format!(
            "no requests to {} (fit window: {} requests before {cut_s}, judging window: {} \
             from it)",
            if fit.is_empty() { "fit on" } else { "judge on" },
            fit.iter().map(|c| c.requests).sum::<u64>(),
            judge.iter().map(|c| c.requests).sum::<u64>()
        )));
    }
    let mut obj = policy.map_or_else(Objective::default, |p| p.objective);
    if let Some(c) = &obj.calibration {
        obj.calibration = Some(recommend::Calibration::new(c.draws, c.seed));
    }
    let fitted = recommend::recommend(&fit, &obj, now);
    let e = recommend::evaluate(&judge, &fitted);
    let ratio = if e.oracle_cost_per_request > 0.0 {
        e.policy_cost_per_request / e.oracle_cost_per_request
    } else {
        f64::NAN
    };
    let mut stdout = std::io::stdout();
    match a.format {
        ExplainFormat::Json => {
            let v = serde_json::json!({
                "fit": {"since": w.since.map(fmt), "until": cut_s,
                        "requests": fit.iter().map(|c| c.requests).sum::<u64>()},
                "judge": {"since": cut_s, "until": end_s, "requests": e.requests},
                "objective": fitted.objective,
                "cost_vs_oracle": ratio.is_finite().then_some(ratio),
                "holds_bound": e.holds_target,
                "evaluation": e,
            });
            serde_json::to_writer_pretty(&mut stdout, &v)?;
            stdout.write_all(b"\n")?;
        }
        ExplainFormat::Text => {
            let o = &fitted.objective;
            let text = format!(
                "out of sample: fitted on {} requests before {cut_s}, judged on {} requests \
                 from {cut_s} to {end_s} ({} tasks)\n\
                 fitted with scope {}, quality target {}, guard z {:.2}{}\n{}\
                 cost against the judging window's oracle: {:.2}x\n",
                fit.iter().map(|c| c.requests).sum::<u64>(),
                e.requests,
                e.tasks,
                match o.scope {
                    recommend::Scope::Overall => "overall",
                    recommend::Scope::Task => "task",
                },
                o.quality_target,
                o.z,
                match &o.calibration {
                    Some(c) if c.note.is_none() => format!(
                        " (calibrated on {} windows resampled from the fit window)",
                        c.draws
                    ),
                    _ => String::new(),
                },
                evaluation_text(&e, &fitted),
                ratio
            );
            stdout.write_all(text.as_bytes())?;
        }
    }
    Ok(Outcome::Ok)
}

/// The table of an evaluation: policy, current traffic and oracle, and the target line.
fn evaluation_text(e: &recommend::Evaluation, policy: &Policy) -> String {
    let pct = |x: f64, base: f64| {
        if base > 0.0 {
            100.0 * x / base
        } else {
            f64::NAN
        }
    };
    format!(
        "{:<10} {:>9} {:>14} {:>12}\n\
         {:<10} {:>9.4} {:>14.8} {:>11.1}%\n\
         {:<10} {:>9.4} {:>14.8} {:>11.1}%\n\
         {:<10} {:>9.4} {:>14.8} {:>11.1}%\n\
         target quality {:.4} ({} x all-best {:.4}): {}\n{}",
        "",
        "quality",
        "usd/request",
        "vs current",
        "policy",
        e.policy_quality,
        e.policy_cost_per_request,
        pct(e.policy_cost_per_request, e.current_cost_per_request),
        "current",
        e.current_quality,
        e.current_cost_per_request,
        100.0,
        "oracle",
        e.oracle_quality,
        e.oracle_cost_per_request,
        pct(e.oracle_cost_per_request, e.current_cost_per_request),
        e.target_quality,
        policy.objective.quality_target,
        e.best_quality,
        if e.holds_target { "held" } else { "NOT held" },
        if e.unevaluated.is_empty() {
            String::new()
        } else {
            format!(
                "{} task or task x model shares without {} logged quality samples \
                 (explore shares, mostly) are counted at the task's current quality; \
                 --format json lists them\n",
                e.unevaluated.len(),
                policy.objective.min_samples.max(1)
            )
        }
    )
}
