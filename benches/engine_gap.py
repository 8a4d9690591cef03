#!/usr/bin/env python3
"""Where switchyard's own path costs time: the same SQL over the same files, three ways.

    python benches/engine_gap.py BINARY DATA_DIR      # REPS=3, ONLY=by_model,count,...

- switchyard: a running `serve` over DATA_DIR answering `POST /api/query` (warm);
- the `datafusion` Python package (55.0.0, the same engine, warm session, 2 partitions);
- DuckDB (Python, 2 threads, a view over the same files).

Prints the median of REPS warm runs per statement and the ratios switchyard / datafusion,
switchyard / DuckDB, datafusion / DuckDB, with their geometric means. Everything runs pinned
to CPUs 0 and 1. Needs `pip install datafusion==55.0.0 duckdb` in the Python that runs it.
"""
import json, os, subprocess, sys, time, statistics, urllib.request
from pathlib import Path
import datafusion, duckdb
if len(sys.argv) != 3:
    sys.exit(__doc__)
binary, data = sys.argv[1], Path(sys.argv[2])
reps = int(os.environ.get("REPS", "3"))
os.sched_setaffinity(0, {0, 1})
Q = {
 "count": "SELECT count(*) FROM requests",
 "by_model": "SELECT model, count(*) AS n, sum(cost_usd) AS usd FROM requests GROUP BY model ORDER BY usd DESC",
 "latency_by_task": "SELECT task, avg(latency_ms) AS a, max(latency_ms) AS m FROM requests WHERE status = 200 GROUP BY task ORDER BY task",
 "key_top10": "SELECT key_id, count(*) AS n, sum(cost_usd) AS usd FROM requests WHERE model = 'openai/gpt-4o-mini' GROUP BY key_id ORDER BY usd DESC, key_id LIMIT 10",
 "distinct_users": "SELECT count(DISTINCT user_id) AS users FROM requests",
 "streamed_share": "SELECT model, avg(CASE WHEN streamed THEN 1.0 ELSE 0.0 END) AS share FROM requests GROUP BY model ORDER BY model",
 "sum_tokens": "SELECT sum(prompt_tokens), sum(completion_tokens), sum(cost_usd) FROM requests",
}
only = os.environ.get("ONLY")
if only: Q = {k: v for k, v in Q.items() if k in only.split(",")}
env = dict(os.environ, SWITCHYARD_LOG="warn")
p = subprocess.Popen([binary, "--data-dir", str(data), "serve", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True, env=env)
for line in p.stdout:
    if line.startswith("switchyard listening on "):
        url = line.split()[-1].rstrip("/"); break
def sy(sql):
    req = urllib.request.Request(url + "/api/query", data=json.dumps({"sql": sql}).encode(), headers={"content-type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r: body = json.load(r)
    return time.perf_counter() - t, body["rows"]
cfg = datafusion.SessionConfig().with_target_partitions(2)
ctx = datafusion.SessionContext(cfg)
ctx.register_parquet("requests", str(data / "requests"), table_partition_cols=[("date", "string"), ("hour", "string")], file_extension=".parquet")
def df(sql):
    t = time.perf_counter(); rows = ctx.sql(sql).collect(); return time.perf_counter() - t, sum(b.num_rows for b in rows)
con = duckdb.connect(); con.execute("PRAGMA threads=2")
con.execute(f"CREATE VIEW requests AS SELECT * FROM read_parquet('{data}/requests/**/*.parquet', hive_partitioning=true, hive_types_autocast=false)")
def dk(sql):
    t = time.perf_counter(); r = con.execute(sql).fetchall(); return time.perf_counter() - t, r
print(f"{'query':<16} {'sy':>7} {'df-py':>7} {'duck':>7} {'sy/df':>6} {'sy/dk':>6} {'df/dk':>6}")
g = [[], [], []]
for name, sql in Q.items():
    for f in (sy, df, dk): f(sql)
    ts = [statistics.median(f(sql)[0] for _ in range(reps)) for f in (sy, df, dk)]
    a, b, c = ts
    g[0].append(a / b); g[1].append(a / c); g[2].append(b / c)
    print(f"{name:<16} {a:7.3f} {b:7.3f} {c:7.3f} {a/b:6.2f} {a/c:6.2f} {b/c:6.2f}", flush=True)
import math
gm = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs))
print(f"{'geomean':<16} {'':>7} {'':>7} {'':>7} {gm(g[0]):6.2f} {gm(g[1]):6.2f} {gm(g[2]):6.2f}")
p.terminate()
