#!/usr/bin/env python3
"""Benchmark the report set (queries/*.sql) on switchyard (DataFusion) against DuckDB.

    python3 benches/reports.py [--binary PATH] [--records N] [--data-dir DIR] [--repeat R]

1. Generates and ingests N synthetic records with the switchyard binary
   (`generate --requests N --days 30 --seed 1 --end 2026-11-20T00:00:00Z | ingest -`),
   unless DIR already holds that dataset (a marker file records what was generated).
2. Binds every report's parameters to the whole data range (first day .. day after the last
   day, no task/model filter) and runs it R times on each engine, after one untimed warm-up
   run that also counts the rows:
   - switchyard (default `--via http`): a running `serve` answering `GET /api/reports/NAME`
     (warm, like DuckDB's open connection; the reports are read from queries/ through
     SWITCHYARD_QUERIES_DIR), timed per request including the JSON answer; or (`--via report`
     / `query`) the wall time of one process per run, raw and minus the median wall time of
     `query "SELECT 1"` (process start-up);
   - DuckDB (Python, `PRAGMA threads=T`): views over the same Parquet files, created once;
     only `execute(sql).fetchall()` is timed.
3. Prints per report: switchyard raw and adjusted seconds, DuckDB seconds, the ratio
   adjusted switchyard / DuckDB and both row counts (a difference is flagged), then the
   geometric-mean and worst ratios.
4. Ad-hoc SQL (`--parts adhoc`), statements a user might type that are not in queries/:
   `switchyard query SQL` as a fresh process per run against a fresh DuckDB process per run
   (Python, the same views), each minus its own start-up (the median of `SELECT 1` the same
   way), both pinned to T CPUs.
5. Dashboard first load (`--parts dashboard`): benches/dashboard_load.mjs opens the dashboards
   of a fresh `serve` in headless Chromium (playwright-core from tests/browser, Debian's
   Chromium) and times navigation to every panel drawn, first load and repeated loads.

Both engines get T CPUs (default 2): DuckDB through its thread setting, switchyard by pinning
its processes to T CPUs (DataFusion sizes its thread pool and partitions from the affinity).

Standard library only, apart from duckdb; when `import duckdb` fails the script creates its
own venv (under the cache dir), installs duckdb there and re-runs itself with it.
"""

import argparse
import csv
import datetime as dt
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUERIES = REPO / "queries"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "switchyard-bench"
DATASET = {"days": 30, "seed": 1, "end": "2026-11-20T00:00:00Z"}
MARKER = ".bench-dataset.json"  # in the data dir: what was generated into it
TABLES = ("requests", "feedback", "requests_hourly", "latency_hourly", "quality_hourly")

# Ad-hoc statements (not in queries/): what a user types into `switchyard query`. `{id}` is a
# stored request id, `{day}` a day in the middle of the data.
ADHOC = {
    "count": "SELECT count(*) FROM requests",
    "by_model": "SELECT model, count(*) AS n, sum(cost_usd) AS usd FROM requests GROUP BY model ORDER BY usd DESC",
    "latency_by_task": "SELECT task, avg(latency_ms) AS avg_ms, max(latency_ms) AS max_ms FROM requests "
                       "WHERE status = 200 GROUP BY task ORDER BY task",
    "tokens_by_day": "SELECT date, sum(prompt_tokens + completion_tokens) AS tokens FROM requests "
                     "GROUP BY date ORDER BY date",
    "one_day_errors": "SELECT model, count(*) AS n FROM requests WHERE date = '{day}' AND status <> 200 "
                      "GROUP BY model ORDER BY model",
    "key_top10": "SELECT key_id, count(*) AS n, sum(cost_usd) AS usd FROM requests "
                 "WHERE ts >= '{day}T00:00:00Z' AND model = 'openai/gpt-4o-mini' "
                 "GROUP BY key_id ORDER BY usd DESC, key_id LIMIT 10",
    "point_lookup": "SELECT request_id, model, task, cost_usd, latency_ms FROM requests WHERE request_id = '{id}'",
    "distinct_users": "SELECT count(DISTINCT user_id) AS users FROM requests",
    "streamed_share": "SELECT model, avg(CASE WHEN streamed THEN 1.0 ELSE 0.0 END) AS share FROM requests "
                      "GROUP BY model ORDER BY model",
    "feedback_join": "SELECT r.model, count(*) AS n, avg(f.value) AS quality FROM requests r "
                     "JOIN feedback f ON f.request_id = r.request_id WHERE f.metric = 'quality' "
                     "GROUP BY r.model ORDER BY r.model",
    "hourly_rollup": "SELECT model, sum(requests) AS n, sum(cost_usd) AS usd FROM requests_hourly "
                     "GROUP BY model ORDER BY model",
}

DUCK_CHILD = """
import sys, duckdb
con = duckdb.connect()
con.execute("PRAGMA threads=" + sys.argv[1])
con.execute("PRAGMA disable_progress_bar")  # it writes to stdout, where the row count goes
for t in sys.argv[3].split(","):
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{sys.argv[2]}/{t}/**/*.parquet', "
                "hive_partitioning=true, hive_types_autocast=false)")
rows = con.execute(sys.stdin.read()).fetchall()
print(len(rows))
"""


# --- setup -------------------------------------------------------------------------------------

def import_duckdb():
    """duckdb, installing it into a private venv (and re-running this script there) if needed."""
    try:
        import duckdb
        return duckdb
    except ImportError:
        pass
    if os.environ.get("SWITCHYARD_BENCH_VENV"):
        sys.exit("duckdb is still missing inside the benchmark venv; giving up")
    venv = CACHE / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"duckdb not importable: creating {venv} and installing duckdb", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "duckdb"], check=True)
    os.environ["SWITCHYARD_BENCH_VENV"] = "1"
    os.execv(str(python), [str(python), *sys.argv])


def default_binary():
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return target / "release" / "switchyard"


def pin_to(threads):
    """A preexec_fn restricting a child process to `threads` CPUs (None if already that few)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) <= threads:
        return None
    chosen = set(cpus[:threads])
    return lambda: os.sched_setaffinity(0, chosen)


def ensure_dataset(binary, data_dir, records, default_dir):
    """Generates and ingests `records` requests into data_dir unless they are already there."""
    want = dict(DATASET, records=records)
    marker = data_dir / MARKER
    if marker.exists() and json.loads(marker.read_text()) == want:
        print(f"reusing dataset in {data_dir} ({records:,} records)")
        return
    if data_dir.exists() and any(data_dir.iterdir()):
        if not default_dir:
            sys.exit(f"{data_dir} is not empty and holds no {records:,}-record benchmark dataset; "
                     "give an empty or new --data-dir")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"generating and ingesting {records:,} records into {data_dir} ...", flush=True)
    t0 = time.perf_counter()
    gen = subprocess.Popen(
        [str(binary), "generate", "--requests", str(records), "--days", str(DATASET["days"]),
         "--seed", str(DATASET["seed"]), "--end", DATASET["end"]],
        stdout=subprocess.PIPE)
    ingest = subprocess.run(
        [str(binary), "--data-dir", str(data_dir), "ingest", "--no-progress", "-"],
        stdin=gen.stdout)
    gen.stdout.close()
    if gen.wait() != 0 or ingest.returncode != 0:
        sys.exit(f"generate/ingest failed (exit {gen.returncode}/{ingest.returncode})")
    marker.write_text(json.dumps(want))
    print(f"dataset ready in {time.perf_counter() - t0:.1f} s")


def switchyard_csv(binary, data_dir, sql, preexec):
    """Rows of a switchyard query as CSV (header first)."""
    out = subprocess.run([str(binary), "--data-dir", str(data_dir), "query", sql, "--format", "csv"],
                         capture_output=True, text=True, check=True, preexec_fn=preexec)
    return list(csv.reader(out.stdout.splitlines()))


def data_window(binary, data_dir, preexec):
    """(first day, day after the last day) of the stored requests."""
    _, (first, last) = switchyard_csv(
        binary, data_dir, "SELECT MIN(date) AS first, MAX(date) AS last FROM requests", preexec)
    return dt.date.fromisoformat(first), dt.date.fromisoformat(last) + dt.timedelta(days=1)


# --- report parameters (the same binding `switchyard report` applies) --------------------------

def bind(sql, since, until, task=None, model=None):
    """Replaces $since, $until, $since_date, $until_date, $task and $model outside comments and
    string literals; since/until are dates (midnight UTC), task/model None means NULL."""
    quote = lambda s: "'" + s.replace("'", "''") + "'"
    values = {
        "since": quote(f"{since.isoformat()}T00:00:00.000000Z"),
        "until": quote(f"{until.isoformat()}T00:00:00.000000Z"),
        "since_date": quote(since.isoformat()),
        "until_date": quote(until.isoformat()),
        "task": "NULL" if task is None else quote(task),
        "model": "NULL" if model is None else quote(model),
    }
    out, i, n = [], 0, len(sql)
    while i < n:
        c = sql[i]
        if sql.startswith("--", i):                       # comment: to end of line
            j = sql.find("\n", i)
            j = n if j < 0 else j
        elif c == "'":                                    # literal: '' is an escaped quote
            j = i + 1
            while j < n and not (sql[j] == "'" and not sql.startswith("''", j)):
                j += 2 if sql.startswith("''", j) else 1
            j = min(j + 1, n)
        elif c == "$":
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            name = sql[i + 1:j]
            if name not in values:
                raise ValueError(f"unknown report parameter ${name}")
            out.append(values[name])
            i = j
            continue
        else:
            j = i + 1
        out.append(sql[i:j])
        i = j
    return "".join(out)


# --- the two engines ---------------------------------------------------------------------------

def has_report_command(binary):
    """Names the binary's `report` command knows, or None when it has no such command."""
    r = subprocess.run([str(binary), "report", "--list"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def switchyard_argv(binary, data_dir, name, sql_file, since, until, output, use_report):
    """The command timed for one report. `report` runs the SQL embedded in the binary at build
    time; `query --file` runs the bound text of queries/NAME.sql as it is now."""
    base = [str(binary), "--data-dir", str(data_dir)]
    if use_report:
        return base + ["report", name, "--since", since.isoformat(), "--until", until.isoformat(),
                       "--format", "csv", "--output", output]
    return base + ["query", "--file", str(sql_file), "--format", "csv", "--output", output]


def wall(argv, preexec):
    """Wall-clock seconds of one process run; raises with its stderr if it fails."""
    t0 = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       preexec_fn=preexec)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return elapsed


class _Done(Exception):
    """Control flow: the HTTP path timed the report."""


def start_server(binary, data_dir, preexec):
    """`serve` on a free loopback port over the dataset, reading reports from queries/."""
    env = dict(os.environ, SWITCHYARD_QUERIES_DIR=str(QUERIES), SWITCHYARD_LOG="warn")
    env.pop("SWITCHYARD_ADMIN_TOKEN", None)
    env.pop("SWITCHYARD_INGEST_TOKEN", None)
    p = subprocess.Popen([str(binary), "--data-dir", str(data_dir), "serve", "--listen",
                          "127.0.0.1:0"], stdout=subprocess.PIPE, text=True, env=env,
                         preexec_fn=preexec)
    for line in p.stdout:
        if line.startswith("switchyard listening on "):
            return p, line.split()[-1].rstrip("/")
    raise RuntimeError("serve exited before listening")


def http_report(url):
    """(rows, seconds) of one `GET /api/reports/...`."""
    import urllib.error
    import urllib.request
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=600) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        raise RuntimeError(e.read().decode(errors="replace")) from None
    return len(body["rows"]), time.perf_counter() - t0


def csv_rows(path):
    with open(path, newline="") as f:
        return max(sum(1 for _ in csv.reader(f)) - 1, 0)   # minus the header


def duckdb_connect(duckdb, binary, data_dir, threads, tmp, preexec):
    con = duckdb.connect()
    con.execute(f"PRAGMA threads={threads}")
    for table in TABLES:
        # hive_types_autocast=false: partition columns stay strings, as in switchyard's schema
        glob = (data_dir / table / "**" / "*.parquet").as_posix()
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{glob}', "
                    "hive_partitioning=true, hive_types_autocast=false)")
    prices = Path(tmp) / "prices.csv"
    subprocess.run([str(binary), "--data-dir", str(data_dir), "query", "SELECT * FROM prices",
                    "--format", "csv", "--output", str(prices)], check=True, preexec_fn=preexec)
    con.execute(f"""CREATE TABLE prices AS SELECT * FROM read_csv('{prices.as_posix()}', header=true,
        columns={{'model': 'VARCHAR', 'provider': 'VARCHAR', 'input': 'DOUBLE', 'output': 'DOUBLE',
                  'cached_input': 'DOUBLE', 'cache_write': 'DOUBLE', 'reasoning': 'DOUBLE',
                  'context_window': 'BIGINT'}})""")
    return con


# --- ad-hoc SQL through the CLI, and the dashboards in a browser ---------------------------------

def duck_process(python, data_dir, threads, sql, preexec):
    """(rows, seconds) of one fresh DuckDB process answering `sql` over the store's views."""
    t0 = time.perf_counter()
    r = subprocess.run([python, "-c", DUCK_CHILD, str(threads), str(data_dir), ",".join(TABLES)],
                       input=sql, capture_output=True, text=True, preexec_fn=preexec)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}")
    return int(r.stdout.strip()), elapsed


def adhoc(duckdb, binary, data_dir, args, preexec, since):
    """Ad-hoc statements, one fresh process per run on each side, start-up subtracted."""
    python = sys.executable
    day = (since + dt.timedelta(days=15)).isoformat()
    _, (rid,) = switchyard_csv(binary, data_dir,
                               f"SELECT request_id FROM requests WHERE date = '{day}' LIMIT 1", preexec)
    sy_argv = lambda sql, out: [str(binary), "--data-dir", str(data_dir), "query", sql,
                                "--format", "csv", "--output", out]
    n = max(args.repeat, 3)
    wall(sy_argv("SELECT 1", os.devnull), preexec)
    sy_start = statistics.median(wall(sy_argv("SELECT 1", os.devnull), preexec) for _ in range(n))
    duck_process(python, data_dir, args.threads, "SELECT 1", preexec)
    duck_start = statistics.median(duck_process(python, data_dir, args.threads, "SELECT 1", preexec)[1]
                                   for _ in range(n))
    print(f"\nad-hoc SQL through the CLI, fresh process per run, median of {n}; start-up subtracted: "
          f"switchyard {sy_start:.3f} s, duckdb (python -c) {duck_start:.3f} s")
    head = (f"{'query':<18} {'sy raw s':>9} {'sy adj s':>9} {'duck raw s':>10} {'duck adj s':>10} "
            f"{'ratio':>7} {'rows sy':>8} {'rows duck':>9}")
    print(head)
    print("-" * len(head))
    results, problems = [], []
    with tempfile.TemporaryDirectory(prefix="switchyard-adhoc-") as tmp:
        for name, template in ADHOC.items():
            sql = template.format(day=day, id=rid)
            out = str(Path(tmp) / f"{name}.csv")
            try:
                wall(sy_argv(sql, out), preexec)
                sy_rows = csv_rows(out)
                sy = statistics.median(wall(sy_argv(sql, os.devnull), preexec) for _ in range(n))
                duck_rows, _ = duck_process(python, data_dir, args.threads, sql, preexec)
                duck = statistics.median(duck_process(python, data_dir, args.threads, sql, preexec)[1]
                                         for _ in range(n))
            except RuntimeError as e:
                print(f"{name:<18} ERROR: {e}")
                problems.append(name)
                continue
            sy_adj, duck_adj = max(sy - sy_start, 1e-3), max(duck - duck_start, 1e-3)
            ratio = sy_adj / duck_adj
            flag = "" if sy_rows == duck_rows else "  ROW COUNT MISMATCH"
            if flag:
                problems.append(name)
            results.append((name, ratio))
            print(f"{name:<18} {sy:>9.3f} {sy_adj:>9.3f} {duck:>10.3f} {duck_adj:>10.3f} {ratio:>7.2f} "
                  f"{sy_rows:>8} {duck_rows:>9}{flag}")
    if results:
        geo = math.exp(statistics.fmean(math.log(r) for _, r in results))
        worst = max(results, key=lambda x: x[1])
        print(f"ad-hoc geometric mean ratio switchyard/duckdb: {geo:.2f}, worst {worst[1]:.2f} ({worst[0]})")
    return problems


def dashboard(binary, data_dir, preexec):
    """The dashboards' first load in headless Chromium, from a freshly started `serve`."""
    script = REPO / "benches" / "dashboard_load.mjs"
    if not (REPO / "tests" / "browser" / "node_modules" / "playwright-core").exists():
        print("\ndashboard: run `npm ci` in tests/browser first (playwright-core); skipped")
        return ["dashboard"]
    server, url = start_server(binary, data_dir, preexec)
    try:
        first = subprocess.run(["node", str(script), url + "/", "1"], capture_output=True, text=True)
        again = subprocess.run(["node", str(script), url + "/", "5"], capture_output=True, text=True)
    finally:
        server.terminate()
        server.wait()
    for r in (first, again):
        if r.returncode != 0:
            print(f"\ndashboard: ERROR {r.stderr.strip()[-500:]}")
            return ["dashboard"]
    f, a = json.loads(first.stdout), json.loads(again.stdout)
    print(f"\ndashboard first load in Chromium ({f['panels']} panels, all drawn): "
          f"{f['median_ms']} ms just after `serve` started, then {a['runs_ms']} ms (median {a['median_ms']} ms)")
    slow = sorted(((max(v), k) for k, v in f["reports"].items()), reverse=True)[:3]
    print("slowest panel reports on the first load: " + ", ".join(f"{k} {ms} ms" for ms, k in slow))
    return []


# --- main --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", type=Path, default=default_binary(),
                    help="switchyard binary (default: $CARGO_TARGET_DIR or ./target, release)")
    ap.add_argument("--records", type=int, default=10_000_000, help="requests to generate")
    ap.add_argument("--data-dir", type=Path, help="dataset location (default: a cache dir per N)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per report; the median counts")
    ap.add_argument("--threads", type=int, default=2, help="CPUs for each engine")
    ap.add_argument("--via", choices=["http", "auto", "report", "query"], default="http",
                    help="switchyard command timed: `report NAME` or `query --file` (auto: report "
                         "when the binary has it and knows the report)")
    ap.add_argument("--reports", help="comma-separated report names (default: all queries/*.sql)")
    ap.add_argument("--parts", default="reports,adhoc,dashboard",
                    help="what to measure: reports, adhoc, dashboard (comma-separated)")
    args = ap.parse_args()

    duckdb = import_duckdb()
    binary = args.binary.resolve()
    if not binary.exists():
        sys.exit(f"no switchyard binary at {binary} (build with `cargo build --release` or pass --binary)")
    default_dir = args.data_dir is None
    data_dir = (args.data_dir or CACHE / f"data-{args.records}").resolve()
    preexec = pin_to(args.threads)

    ensure_dataset(binary, data_dir, args.records, default_dir)
    since, until = data_window(binary, data_dir, preexec)

    parts = set(args.parts.split(","))
    problems = []
    if "adhoc" in parts:
        problems += adhoc(duckdb, binary, data_dir, args, preexec, since)
    if "dashboard" in parts:
        problems += dashboard(binary, data_dir, preexec)
    if "reports" not in parts:
        return 1 if problems else 0

    files = sorted(QUERIES.glob("*.sql"))
    if args.reports:
        wanted = set(args.reports.split(","))
        files = [f for f in files if f.stem in wanted]
    known = has_report_command(binary) if args.via not in ("query", "http") else None
    server = start_server(binary, data_dir, preexec) if args.via == "http" else None
    if args.via == "report" and known is None:
        sys.exit("this binary has no `report` command; use --via query")

    with tempfile.TemporaryDirectory(prefix="switchyard-bench-") as tmp:
        con = duckdb_connect(duckdb, binary, data_dir, args.threads, tmp, preexec)
        startup_argv = [str(binary), "--data-dir", str(data_dir), "query", "SELECT 1",
                        "--format", "csv", "--output", os.devnull]
        wall(startup_argv, preexec)
        startup = statistics.median(wall(startup_argv, preexec) for _ in range(args.repeat))

        print(f"\n{args.records:,} records, window {since} .. {until} (exclusive), "
              f"{args.threads} CPUs per engine, median of {args.repeat}, duckdb {duckdb.__version__}")
        print(f"switchyard start-up (query \"SELECT 1\"): {startup:.3f} s, subtracted in 'adj'\n")
        head = (f"{'report':<28} {'via':<6} {'sy raw s':>9} {'sy adj s':>9} {'duckdb s':>9} "
                f"{'ratio':>7} {'rows sy':>8} {'rows duck':>9}")
        print(head)
        print("-" * len(head))

        results = []   # (name, ratio adjusted, ratio raw)
        for f in files:
            name = f.stem
            try:
                sql = bind(f.read_text(), since, until)
            except ValueError as e:
                print(f"{name:<28} ERROR binding parameters: {e}")
                problems.append(name)
                continue
            sql_file = Path(tmp) / f"{name}.sql"
            sql_file.write_text(sql)
            use_report = args.via == "report" or (known is not None and name in known.split())
            via = "report" if use_report else "query"
            rows_file = Path(tmp) / f"{name}.csv"

            try:
                if server is not None:
                    url = (f"{server[1]}/api/reports/{name}?since={since.isoformat()}"
                           f"&until={until.isoformat()}")
                    sy_rows, _ = http_report(url)   # warm-up, counting rows
                    sy = statistics.median(http_report(url)[1] for _ in range(args.repeat))
                    via = "http"
                    raise _Done
                # warm-up run, keeping the output to count rows
                wall(switchyard_argv(binary, data_dir, name, sql_file, since, until,
                                     str(rows_file), use_report), preexec)
                sy_rows = csv_rows(rows_file)
                argv = switchyard_argv(binary, data_dir, name, sql_file, since, until,
                                       os.devnull, use_report)
                sy = statistics.median(wall(argv, preexec) for _ in range(args.repeat))
            except _Done:
                pass
            except RuntimeError as e:
                print(f"{name:<28} {via:<6} switchyard ERROR: {e}")
                problems.append(name)
                continue
            try:
                duck_rows = len(con.execute(sql).fetchall())
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    con.execute(sql).fetchall()
                    times.append(time.perf_counter() - t0)
                duck = statistics.median(times)
            except duckdb.Error as e:
                print(f"{name:<28} {via:<6} {sy:>9.3f} duckdb ERROR: {str(e).splitlines()[0]}")
                problems.append(name)
                continue

            adj = sy if server is not None else max(sy - startup, 1e-3)
            ratio, ratio_raw = adj / max(duck, 1e-4), sy / max(duck, 1e-4)
            flag = "" if sy_rows == duck_rows else "  ROW COUNT MISMATCH"
            if flag:
                problems.append(name)
            results.append((name, ratio, ratio_raw))
            print(f"{name:<28} {via:<6} {sy:>9.3f} {adj:>9.3f} {duck:>9.3f} {ratio:>7.2f} "
                  f"{sy_rows:>8} {duck_rows:>9}{flag}")

    if server is not None:
        server[0].terminate()
        server[0].wait()
    print()
    if results:
        geo = math.exp(statistics.fmean(math.log(r) for _, r, _ in results))
        geo_raw = math.exp(statistics.fmean(math.log(r) for _, _, r in results))
        worst = max(results, key=lambda x: x[1])
        print(f"geometric mean ratio switchyard/duckdb: {geo:.2f} (adjusted), {geo_raw:.2f} (raw)")
        print(f"worst ratio: {worst[1]:.2f} ({worst[0]})")
    if problems:
        print(f"errors or row-count mismatches: {', '.join(problems)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
