#!/usr/bin/env python3
"""Out-of-sample replay of switchyard's routing recommendations on real outcomes.

    python3 benches/replay.py [--binary PATH] [--splits N] [--data PATH]
                              [--only routellm|routerarena] [--holdout-subjects]
                              [--subsets K [--subset-size N]]
                              [--baseline naive] [--keep DIR]

Datasets (read-only, default `<repo>/../shared/data`):

- RouteLLM MMLU (`routellm-mmlu-dev/mmlu_*.csv`): 19 subjects = tasks, 5,235 prompts; per prompt
  whether `gpt-4-1106-preview` and Mixtral-8x7B answered correctly. Logged as
  `openai/gpt-4-1106-preview` (USD 10 / 30 per million input / output tokens) and
  `mistralai/mixtral-8x7b-instruct` (0.60 / 0.60); input tokens = ceil(len(prompt) / 4), output
  tokens = 3.
- RouterArena (`routerarena/*.jsonl`, `cost.json`): claude-3-haiku-20240307 and
  gemini-2.0-flash-001 on the same 809 queries; task = `global_index` up to its last `_`
  (78 categories, many of 1-5 queries); quality = `evaluation_result.score` clamped to [0, 1] (one
  METEOR score is negative); tokens = each model's own `token_usage`, cost = tokens x cost.json
  prices (identical to `evaluation_result.inference_cost` on every row; checked at load).

Per split s (seeded, reproducible): per task, shuffle the prompts and cut them in two halves (an
odd prompt goes to a seeded side). The FIT half becomes gateway logs: each prompt goes to one of
the models uniformly at random and yields one canonical request record (ts spread over the 7 days
before `--end`) and one quality feedback record (that model's outcome). They are ingested into a
fresh data dir and `switchyard recommend --scope overall|task --quality-target 0.95
--format json --out policy.json` is run, every other flag at its default (`--min-samples N` and
`--recommend-arg` pass overrides). The JUDGE half, where every model's
outcome is known, judges each policy: per prompt of task t, expected quality = sum_m w(t,m) q(m)
and expected cost = sum_m w(t,m) c(m), with the route of t or the policy's `default`.

Reported per split and policy, against the reference model (the model with the best overall
quality on the whole dataset: GPT-4 for MMLU, Gemini for RouterArena), on the judging half:
quality / always-ref, cost / always-ref, whether quality >= 0.945 x always-ref (the bound), and
cost / the oracle's cost. Oracles are fitted on the judging half itself: `overall` = the cheapest
per-task fractional mix whose traffic-weighted quality >= 0.95 x always-ref (fractional knapsack
from each task's best model, moves by cost saved per quality lost); `task` = per task the
cheapest mix with quality >= 0.95 x that task's best model.

`--holdout-subjects` guards against tuning the method to the data it is reported on: the 19
MMLU subjects are cut, by a fixed seeded shuffle, into 10 development subjects (the only ones to
look at while changing the method) and 9 held-out subjects, replayed as two datasets
(`routellm-mmlu-dev10`, `routellm-mmlu-holdout9`), the held-out one reported beside the other.

`--subsets K` replays K random subsets of `--subset-size` (9) MMLU subjects instead, each drawn
by its own seeded shuffle (seeds 0..K-1), to show how the figures spread over task mixes.

`--baseline naive` replaces `recommend` with `naive_policy` (per task the cheapest model whose
fit-half mean >= 0.95 x the best mean, no sample-size or confidence guard), for binaries without
`recommend`; otherwise the naive policy is always reported beside the real one as a comparison
(it shows the winner's curse a recommender must avoid).

Standard library only. Exits non-zero (printing stderr) when a switchyard command fails.
"""

import argparse
import concurrent.futures as futures
import csv
import datetime as dt
import glob
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUALITY_TARGET = 0.95
BOUND = 0.945           # a policy "held" when quality >= BOUND x always-ref on the judging half
ARGS_MIN_SAMPLES = [None]  # set from --min-samples in main(); None: recommend's default
EXTRA_ARGS = []  # --recommend-arg values, passed to every `recommend`
SPLITS_HELD_TARGET = 19  # of 20, scaled to --splits
ORACLE_RATIO_TARGET = 1.3
END_DEFAULT = "2026-11-20T00:00:00Z"
WINDOW_DAYS = 7


class SwitchyardError(Exception):
    pass


# --- datasets ----------------------------------------------------------------------------------
#
# A dataset: {"name", "models": [logged names], "ref": model (best overall quality),
#             "tasks": {task: [item]}}, item = {"key", "q": {model: quality in [0,1]},
#             "cost": {model: USD}, "tok": {model: (prompt_tokens, completion_tokens)}}.

MMLU_MODELS = {  # CSV column -> (model as logged, USD per million input, output)
    "gpt-4-1106-preview": ("openai/gpt-4-1106-preview", 10.0, 30.0),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": ("mistralai/mixtral-8x7b-instruct", 0.60, 0.60),
}
MMLU_OUTPUT_TOKENS = 3

ARENA_MODELS = {  # file stem / cost.json key -> model as logged
    "claude-3-haiku-20240307": "anthropic/claude-3-haiku-20240307",
    "gemini-2.0-flash-001": "google/gemini-2.0-flash-001",
}


def usd(tokens_in, tokens_out, price_in, price_out):
    return round((tokens_in * price_in + tokens_out * price_out) / 1e6, 10)


def finish_dataset(name, tasks, notes):
    models = sorted({m for items in tasks.values() for it in items for m in it["q"]})
    n = sum(len(items) for items in tasks.values())
    quality = {m: sum(it["q"][m] for items in tasks.values() for it in items) / n for m in models}
    cost = {m: sum(it["cost"][m] for items in tasks.values() for it in items) for m in models}
    ref = max(models, key=lambda m: (quality[m], -cost[m]))
    return {"name": name, "models": models, "ref": ref, "tasks": tasks,
            "n": n, "quality": quality, "cost": cost, "notes": notes}


def load_routellm(data):
    files = sorted(glob.glob(str(data / "routellm-mmlu-dev" / "mmlu_*.csv")))
    if not files:
        sys.exit(f"no routellm-mmlu-dev/mmlu_*.csv under {data}")
    tasks = {}
    bad = 0
    for f in files:
        task = Path(f).stem[len("mmlu_"):]
        items = []
        with open(f, newline="", encoding="utf-8") as fh:
            for i, row in enumerate(csv.DictReader(fh)):
                tok_in = math.ceil(len(row["prompt"]) / 4)
                it = {"key": f"{task}:{i}", "q": {}, "cost": {}, "tok": {}}
                for col, (model, p_in, p_out) in MMLU_MODELS.items():
                    v = row[col].strip()
                    if v not in ("True", "False"):
                        bad += 1
                    it["q"][model] = 1.0 if v == "True" else 0.0
                    it["tok"][model] = (tok_in, MMLU_OUTPUT_TOKENS)
                    it["cost"][model] = usd(tok_in, MMLU_OUTPUT_TOKENS, p_in, p_out)
                items.append(it)
        tasks[task] = items
    notes = [f"{bad} correctness cells not True/False (read as False)"] if bad else []
    return finish_dataset("routellm-mmlu", tasks, notes)


HOLDOUT_SEED = "replay:holdout-subjects"
DEV_SUBJECTS = 10


def holdout_split(ds):
    """The dataset cut by subject: (10 development subjects, the other held-out ones), by a
    fixed seeded shuffle of the sorted subject names."""
    names = sorted(ds["tasks"])
    random.Random(HOLDOUT_SEED).shuffle(names)
    dev, held = sorted(names[:DEV_SUBJECTS]), sorted(names[DEV_SUBJECTS:])
    return [finish_dataset(f"{ds['name']}-dev{len(dev)}", {t: ds["tasks"][t] for t in dev},
                           ds["notes"] + ["subjects: " + ", ".join(dev)]),
            finish_dataset(f"{ds['name']}-holdout{len(held)}", {t: ds["tasks"][t] for t in held},
                           ds["notes"] + ["subjects: " + ", ".join(held)])]


def subject_subsets(ds, size, seeds):
    """Random subsets of `size` MMLU subjects, one per seed in `seeds` (each a seeded shuffle of
    the sorted subject names), each replayed as its own dataset."""
    names = sorted(ds["tasks"])
    out = []
    for seed in seeds:
        pick = list(names)
        random.Random(f"replay:subset:{seed}").shuffle(pick)
        pick = sorted(pick[:size])
        out.append(finish_dataset(f"{ds['name']}-subset{size}-s{seed}",
                                  {t: ds["tasks"][t] for t in pick},
                                  ds["notes"] + ["subjects: " + ", ".join(pick)]))
    return out


def load_routerarena(data):
    root = data / "routerarena"
    prices = json.loads((root / "cost.json").read_text())
    per_model = {}
    notes = []
    for stem, model in ARENA_MODELS.items():
        p = prices[stem]
        p_in, p_out = p["input_token_price_per_million"], p["output_token_price_per_million"]
        rows = {}
        clamped = mismatched = 0
        with open(root / f"{stem}.jsonl", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                r = json.loads(line)
                tu, ev = r["token_usage"], r["evaluation_result"]
                score = float(ev["score"])
                if not 0.0 <= score <= 1.0:
                    clamped += 1
                    score = min(1.0, max(0.0, score))
                cost = usd(tu["input_tokens"], tu["output_tokens"], p_in, p_out)
                if abs(cost - float(ev.get("inference_cost", cost))) > 1e-9:
                    mismatched += 1
                rows[r["global_index"]] = (score, cost, (tu["input_tokens"], tu["output_tokens"]))
        per_model[model] = rows
        if clamped:
            notes.append(f"{model}: {clamped} score(s) outside [0, 1] clamped")
        if mismatched:
            notes.append(f"{model}: {mismatched} rows where token cost != inference_cost")
    keys = set.intersection(*(set(r) for r in per_model.values()))
    dropped = set.union(*(set(r) for r in per_model.values())) - keys
    if dropped:
        notes.append(f"{len(dropped)} queries not answered by every model dropped")
    tasks = {}
    for key in sorted(keys):
        it = {"key": key, "q": {}, "cost": {}, "tok": {}}
        for model, rows in per_model.items():
            it["q"][model], it["cost"][model], it["tok"][model] = rows[key]
        tasks.setdefault(key.rsplit("_", 1)[0], []).append(it)
    return finish_dataset("routerarena", tasks, notes)


# --- one split: fit logs, judging half ---------------------------------------------------------

def split_dataset(ds, split, seed):
    rng = random.Random(f"replay:{ds['name']}:{seed}:{split}")
    fit, judge = {}, {}
    for task in sorted(ds["tasks"]):
        items = list(ds["tasks"][task])
        rng.shuffle(items)
        n_fit = len(items) // 2 + (len(items) % 2 if rng.random() < 0.5 else 0)
        fit[task], judge[task] = items[:n_fit], items[n_fit:]
    return fit, judge, rng


def fit_records(ds, fit, split, rng, end):
    """One request record and one feedback record per fit prompt, its model chosen at random."""
    records = []
    n = 0
    for task in sorted(fit):
        for it in fit[task]:
            model = rng.choice(ds["models"])
            ts = end - dt.timedelta(seconds=rng.uniform(1, WINDOW_DAYS * 86400))
            n += 1
            records.append({
                "request_id": f"replay-{ds['name']}-{split:02d}-{n:06d}",
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
                "model": model, "task": task,
                "prompt_tokens": it["tok"][model][0], "completion_tokens": it["tok"][model][1],
                "cost_usd": it["cost"][model], "status": 200, "gateway": "replay",
                "value": it["q"][model],
            })
    return records


def write_ndjson(records, path):
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            req = {k: v for k, v in r.items() if k not in ("cost_usd", "value")}
            # cost as a plain decimal with 10 places (json.dumps would switch to 1e-05 notation)
            fh.write(json.dumps(req)[:-1] + f', "cost_usd": {r["cost_usd"]:.10f}}}\n')
        for r in records:
            fh.write(json.dumps({"request_id": r["request_id"], "value": r["value"]}) + "\n")


def run(binary, args, what):
    p = subprocess.run([str(binary), *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise SwitchyardError(f"{what} failed (exit {p.returncode}): "
                              f"{binary} {' '.join(args)}\n{p.stderr.strip()}")
    return p


def naive_policy(fit_records):
    """Per task the cheapest model (mean fit cost) whose fit mean quality >= 0.95 x the best
    mean; no minimum samples, no confidence bound. Tasks unseen fall to the same rule pooled."""
    def pick(recs):
        by = {}
        for r in recs:
            s = by.setdefault(r["model"], [0, 0.0, 0.0])
            s[0] += 1
            s[1] += r["value"]
            s[2] += r["cost_usd"]
        mean = {m: (s[1] / s[0], s[2] / s[0]) for m, s in by.items()}
        best = max(q for q, _ in mean.values())
        ok = [m for m, (q, _) in mean.items() if q >= QUALITY_TARGET * best]
        return min(ok, key=lambda m: (mean[m][1], -mean[m][0], m))

    per_task = {}
    for r in fit_records:
        per_task.setdefault(r["task"], []).append(r)
    return {
        "version": "naive",
        "routes": [{"task": t, "targets": [{"model": pick(rs), "weight": 1.0}]}
                   for t, rs in sorted(per_task.items())],
        "default": {"targets": [{"model": pick(fit_records), "weight": 1.0}]},
    }


# --- judging -----------------------------------------------------------------------------------

def aggregates(ds, judge):
    """Per task: n, summed quality and cost per model over the judging half."""
    agg = {}
    for task, items in judge.items():
        if items:
            agg[task] = {"n": len(items),
                         "q": {m: sum(it["q"][m] for it in items) for m in ds["models"]},
                         "c": {m: sum(it["cost"][m] for it in items) for m in ds["models"]}}
    return agg


def hull_moves(a, models):
    """From the task's best model (tie: cheaper), the lower-cost frontier as a list of moves
    (dq lost, dc saved), in decreasing saving per quality lost (convex, so greedy is exact)."""
    pts = sorted(models, key=lambda m: (-a["q"][m], a["c"][m]))
    cur = pts[0]
    moves = []
    while True:
        cands = [m for m in models if a["c"][m] < a["c"][cur] and a["q"][m] <= a["q"][cur]]
        if not cands:
            return pts[0], moves

        def ratio(m):
            dq = a["q"][cur] - a["q"][m]
            return math.inf if dq <= 0 else (a["c"][cur] - a["c"][m]) / dq
        nxt = max(cands, key=lambda m: (ratio(m), -a["c"][m]))
        moves.append((a["q"][cur] - a["q"][nxt], a["c"][cur] - a["c"][nxt]))
        cur = nxt


def oracle_overall(agg, models, target_q):
    """Cheapest per-task fractional mix with total quality >= target_q (fractional knapsack)."""
    q = c = 0.0
    moves = []
    for a in agg.values():
        best, mv = hull_moves(a, models)
        q += a["q"][best]
        c += a["c"][best]
        moves += mv
    budget = q - target_q
    if budget < 0:
        return q, c  # infeasible: best per task is all one can do
    for dq, dc in sorted(moves, key=lambda x: -math.inf if x[0] <= 0 else -x[1] / x[0]):
        if dq <= 0:
            c -= dc
            continue
        frac = min(1.0, budget / dq)
        c -= frac * dc
        q -= frac * dq
        budget -= frac * dq
        if frac < 1.0:
            break
    return q, c


def oracle_task(agg, models, target):
    """Per task the cheapest fractional mix with quality >= target x that task's best model."""
    q = c = 0.0
    for a in agg.values():
        qt, ct = oracle_overall({"t": a}, models, target * max(a["q"].values()))
        q += qt
        c += ct
    return q, c


def policy_weights(policy, models):
    def targets(entry, where):
        w = {}
        for t in entry.get("targets", []):
            if t["model"] not in models:
                raise SwitchyardError(f"policy {where} routes to unknown model {t['model']!r}")
            w[t["model"]] = w.get(t["model"], 0.0) + float(t["weight"])
        total = sum(w.values())
        if total <= 0:
            raise SwitchyardError(f"policy {where} has no positive target weights")
        return {m: x / total for m, x in w.items()}
    if "default" not in policy:
        raise SwitchyardError("policy has no `default`")
    routes = {r["task"]: targets(r, f"route {r['task']!r}") for r in policy.get("routes", [])}
    return routes, targets(policy["default"], "default")


def judge_policy(ds, agg, policy, oracles):
    routes, default = policy_weights(policy, ds["models"])
    ref = ds["ref"]
    Q = C = 0.0
    tasks_held = 0
    for task, a in agg.items():
        w = routes.get(task, default)
        qt = sum(x * a["q"][m] for m, x in w.items())
        Q += qt
        C += sum(x * a["c"][m] for m, x in w.items())
        tasks_held += qt >= BOUND * max(a["q"].values()) - 1e-12
    q_ref = sum(a["q"][ref] for a in agg.values())
    c_ref = sum(a["c"][ref] for a in agg.values())
    away = sum(1 for t in agg if routes.get(t, default).get(ref, 0.0) < 0.5)
    return {"quality": Q / q_ref, "cost": C / c_ref, "held": Q >= BOUND * q_ref - 1e-12,
            "vs_oracle_overall": C / oracles["overall"][1],
            "vs_oracle_task": C / oracles["task"][1],
            "tasks_held": tasks_held, "tasks": len(agg), "routes": len(routes),
            "away": away}


def run_split(ds, split, args, binary, scopes, workdir):
    fit, judge, rng = split_dataset(ds, split, args.seed)
    recs = fit_records(ds, fit, split, rng, args.end)
    agg = aggregates(ds, judge)
    ref = ds["ref"]
    q_ref = sum(a["q"][ref] for a in agg.values())
    oracles = {"overall": oracle_overall(agg, ds["models"], QUALITY_TARGET * q_ref),
               "task": oracle_task(agg, ds["models"], QUALITY_TARGET)}
    out = {"split": split, "fit": len(recs), "judge": sum(a["n"] for a in agg.values()),
           "policies": {}, "oracles": oracles, "agg": agg}
    policies = {"naive": naive_policy(recs)}
    if scopes:
        d = workdir / f"split-{split:02d}"
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        logs = d / "fit.ndjson"
        write_ndjson(recs, logs)
        data_dir = d / "data"
        p = run(binary, ["--data-dir", str(data_dir), "ingest", "--no-progress", str(logs)],
                f"split {split}: ingest")
        words = p.stdout.split()
        if "accepted" in words:
            accepted = int(words[words.index("accepted") + 1])
            if accepted != 2 * len(recs):
                raise SwitchyardError(f"split {split}: ingest accepted {accepted} of "
                                      f"{2 * len(recs)} records: {p.stdout.strip()}")
        for scope in scopes:
            pol_file = d / f"policy-{scope}.json"
            min_samples = ([] if ARGS_MIN_SAMPLES[0] is None
                           else ["--min-samples", str(ARGS_MIN_SAMPLES[0])])
            run(binary, ["--data-dir", str(data_dir), "recommend", "--scope", scope,
                         "--quality-target", str(QUALITY_TARGET), "--format", "json",
                         "--out", str(pol_file)] + min_samples + EXTRA_ARGS,
                f"split {split}: recommend --scope {scope}")
            try:
                policies[scope] = json.loads(pol_file.read_text())
            except (OSError, ValueError) as e:
                raise SwitchyardError(f"split {split}: recommend --scope {scope} wrote no "
                                      f"readable policy to {pol_file}: {e}")
        (d / "policy-naive.json").write_text(json.dumps(policies["naive"], indent=1))
    for name, pol in policies.items():
        out["policies"][name] = judge_policy(ds, agg, pol, oracles)
    # context rows: always each other model, and the two oracles
    c_ref = sum(a["c"][ref] for a in agg.values())
    out["context"] = {
        f"always {m}": (sum(a["q"][m] for a in agg.values()) / q_ref,
                        sum(a["c"][m] for a in agg.values()) / c_ref)
        for m in ds["models"] if m != ref}
    out["context"]["oracle overall (judging half)"] = (oracles["overall"][0] / q_ref,
                                                       oracles["overall"][1] / c_ref)
    out["context"]["oracle task (judging half)"] = (oracles["task"][0] / q_ref,
                                                    oracles["task"][1] / c_ref)
    return out


# --- reporting ---------------------------------------------------------------------------------

def pct(x):
    return f"{100 * x:6.1f}%"


def table(headers, rows, align=None):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    align = align or ["<"] + [">"] * (len(headers) - 1)
    fmt = "  ".join(f"{{:{a}{w}}}" for a, w in zip(align, widths))
    lines = [fmt.format(*headers), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


def policy_label(name):
    return {"overall": "recommend --scope overall", "task": "recommend --scope task",
            "naive": "naive (no confidence guard)"}.get(name, name)


def summarize(ds, results, order):
    n = len(results)
    held_target = math.ceil(SPLITS_HELD_TARGET * n / 20)
    rows = []
    for name in order:
        rs = [r["policies"][name] for r in results]
        held = sum(r["held"] for r in rs)
        vs_o = statistics.mean(r["vs_oracle_overall"] for r in rs)
        row = {"policy": policy_label(name),
               "cost": statistics.mean(r["cost"] for r in rs),
               "quality": statistics.mean(r["quality"] for r in rs),
               "min_quality": min(r["quality"] for r in rs),
               "held": held, "n": n,
               "vs_oracle_overall": vs_o,
               "vs_oracle_task": statistics.mean(r["vs_oracle_task"] for r in rs),
               "tasks_held": statistics.mean(r["tasks_held"] / r["tasks"] for r in rs),
               "target": ""}
        if name == "overall":
            ok = held >= held_target and vs_o <= ORACLE_RATIO_TARGET
            row["target"] = (f"held >= {held_target}/{n}, <= {ORACLE_RATIO_TARGET}x oracle: "
                             f"{'PASS' if ok else 'FAIL'}")
        rows.append(row)
    for name in results[0]["context"]:
        q = statistics.mean(r["context"][name][0] for r in results)
        c = statistics.mean(r["context"][name][1] for r in results)
        rows.append({"policy": name, "cost": c, "quality": q, "context": True})
    return rows


def print_dataset(ds, results, order, verbose):
    ref = ds["ref"]
    print(f"\n=== {ds['name']}: {ds['n']} prompts, {len(ds['tasks'])} tasks, models "
          + ", ".join(f"{m} (quality {ds['quality'][m]:.3f}, cost ${ds['cost'][m]:.4f})"
                      for m in ds["models"]))
    print(f"reference = always {ref}; bound = quality >= {BOUND} x reference on the judging "
          f"half; oracles fitted on the judging half at {QUALITY_TARGET}")
    for note in ds["notes"]:
        print(f"note: {note}")
    headers = ["split", "policy", "quality/ref", "cost/ref", "held", "cost/oracle-ovr",
               "cost/oracle-task", "tasks held", "routes", "tasks off ref"]
    rows = []
    for r in results:
        for name in order:
            p = r["policies"][name]
            rows.append([r["split"], name, pct(p["quality"]), pct(p["cost"]),
                         "yes" if p["held"] else "NO", f"{p['vs_oracle_overall']:.2f}x",
                         f"{p['vs_oracle_task']:.2f}x", f"{p['tasks_held']}/{p['tasks']}",
                         p["routes"], p["away"]])
    print(table(headers, rows, ["<", "<"] + [">"] * 8))
    summary = summarize(ds, results, order)
    print(f"\nsummary over {len(results)} splits (means of per-split ratios):")
    rows = []
    for s in summary:
        if s.get("context"):
            rows.append([s["policy"], pct(s["cost"]), pct(s["quality"]), "", "", "", "", "", ""])
        else:
            rows.append([s["policy"], pct(s["cost"]), pct(s["quality"]), pct(s["min_quality"]),
                         f"{s['held']}/{s['n']}", f"{s['vs_oracle_overall']:.2f}x",
                         f"{s['vs_oracle_task']:.2f}x", pct(s["tasks_held"]), s["target"]])
    print(table(["policy", "cost/ref", "quality/ref", "worst quality", "bound held",
                 "cost/oracle-ovr", "cost/oracle-task", "tasks held", "target"], rows,
                ["<"] + [">"] * 7 + ["<"]))
    if verbose:
        for r in results[:1]:
            print(f"\nsplit {r['split']} judging half per task (quality sums / n, cost):")
            for t, a in sorted(r["agg"].items()):
                print(f"  {t:45s} n={a['n']:4d} " + "  ".join(
                    f"{m.split('/')[-1][:18]} {a['q'][m] / a['n']:.3f} ${a['c'][m]:.4f}"
                    for m in ds["models"]))
    return summary


def markdown(all_summaries):
    lines = ["| dataset | policy | cost vs always-ref | quality vs always-ref | bound held "
             "(q >= 94.5%) | cost / oracle (overall) | cost / oracle (task) | target |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for ds, summary in all_summaries:
        label = f"{ds['name']} (ref {ds['ref'].split('/')[-1]})"
        for s in summary:
            if s.get("context"):
                lines.append(f"| {label} | {s['policy']} | {100 * s['cost']:.1f}% | "
                             f"{100 * s['quality']:.1f}% | | | | |")
            else:
                lines.append(f"| {label} | {s['policy']} | {100 * s['cost']:.1f}% | "
                             f"{100 * s['quality']:.1f}% | {s['held']}/{s['n']} | "
                             f"{s['vs_oracle_overall']:.2f}x | {s['vs_oracle_task']:.2f}x | "
                             f"{s['target']} |")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------

def default_binary():
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return target / "release" / "switchyard"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", type=Path, default=default_binary())
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--only", choices=["routellm", "routerarena"])
    ap.add_argument("--keep", type=Path, help="keep per-split logs, data dirs and policies here")
    ap.add_argument("--baseline", choices=["naive"],
                    help="judge only the naive stub policy (no switchyard calls)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recommend-arg", action="append", default=[],
                    help="extra argument for every `recommend` run (repeatable), e.g. --recommend-arg=--z=2")
    ap.add_argument("--min-samples", type=int,
                    help="recommend --min-samples (default: recommend's own default)")
    ap.add_argument("--holdout-subjects", action="store_true",
                    help="replay the MMLU subjects as 10 development and 9 held-out subjects")
    ap.add_argument("--subsets", type=int, default=0, metavar="K",
                    help="replay K random subsets of the MMLU subjects (seeded 0..K-1) instead")
    ap.add_argument("--subset-size", type=int, default=9,
                    help="subjects per --subsets subset (default %(default)s)")
    ap.add_argument("--end", default=END_DEFAULT,
                    help=f"fit logs span the {WINDOW_DAYS} days before this (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                    help="splits run in parallel")
    ap.add_argument("--verbose", action="store_true", help="print per-task judging outcomes")
    args = ap.parse_args()
    ARGS_MIN_SAMPLES[0] = args.min_samples
    EXTRA_ARGS.extend(args.recommend_arg)
    args.end = dt.datetime.fromisoformat(args.end.replace("Z", "+00:00"))
    age = (dt.datetime.now(dt.timezone.utc) - args.end).days
    if age > 30 - WINDOW_DAYS:
        print(f"warning: --end is {age} days ago; recommend's default --since 30d may miss "
              f"the fit logs (pass a later --end)", file=sys.stderr)

    scopes = [] if args.baseline == "naive" else ["overall", "task"]
    if scopes:
        if not args.binary.exists():
            sys.exit(f"switchyard binary not found: {args.binary} (build it, pass --binary, "
                     f"or use --baseline naive)")
        p = subprocess.run([str(args.binary), "recommend", "--help"], capture_output=True,
                           text=True)
        if p.returncode != 0:
            sys.exit(f"{args.binary} has no working `recommend` ({p.stderr.strip()[:200]}); "
                     f"use --baseline naive to judge the naive stub only")
    order = scopes + ["naive"]

    loaders = {"routellm": load_routellm, "routerarena": load_routerarena}
    names = [args.only] if args.only else list(loaders)
    tmp = None
    if args.keep:
        root = args.keep
        root.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="switchyard-replay-")
        root = Path(tmp.name)
    summaries = []
    try:
        sets = []
        for name in names:
            ds = loaders[name](args.data)
            if name == "routellm" and args.subsets:
                sets += subject_subsets(ds, args.subset_size, range(args.subsets))
            elif name == "routellm" and args.holdout_subjects:
                sets += holdout_split(ds)
            else:
                sets.append(ds)
        for ds in sets:
            workdir = root / ds["name"]
            pool = futures.ThreadPoolExecutor(max_workers=max(1, args.jobs))
            try:
                jobs = [pool.submit(run_split, ds, s, args, args.binary, scopes, workdir)
                        for s in range(args.splits)]
                results = [j.result() for j in jobs]
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # first failure: skip the rest
            summaries.append((ds, print_dataset(ds, results, order, args.verbose)))
    except SwitchyardError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        if tmp:
            tmp.cleanup()
    print("\n" + markdown(summaries))
    if args.keep:
        print(f"\nper-split logs, data dirs and policies kept under {root}")


if __name__ == "__main__":
    main()
