#!/usr/bin/env python3
"""Where switchyard's own path costs time: the same SQL over the same files, three ways.

    python benches/engine_gap.py BINARY DATA_DIR      # REPS=3, ONLY=by_model,count,...

- switchyard: a running `serve` over DATA_DIR answering `POST /api/query` (warm);
- the `datafusion` Python package (55.0.0, the same engine, warm session, 2 partitions);
- DuckDB (Python, 2 threads, the views benches/reports.py builds over the same files).

Prints the median of REPS warm runs per statement and the ratios switchyard / datafusion,
switchyard / DuckDB, datafusion / DuckDB, with their geometric means. Everything runs pinned
to CPUs 0 and 1. Needs `pip install datafusion==55.0.0 duckdb` in the Python that runs it.
"""
import json
import math
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import datafusion
import duckdb

from reports import duckdb_connect, start_server

QUERIES = {
    "count": "SELECT count(*) FROM requests",
    "by_model": "SELECT model, count(*) AS n, sum(cost_usd) AS usd FROM requests GROUP BY model ORDER BY usd DESC",
    "latency_by_task": "SELECT task, avg(latency_ms) AS a, max(latency_ms) AS m FROM requests WHERE status = 200 "
                       "GROUP BY task ORDER BY task",
    "key_top10": "SELECT key_id, count(*) AS n, sum(cost_usd) AS usd FROM requests WHERE model = 'openai/gpt-4o-mini' "
                 "GROUP BY key_id ORDER BY usd DESC, key_id LIMIT 10",
    "distinct_users": "SELECT count(DISTINCT user_id) AS users FROM requests",
    "streamed_share": "SELECT model, avg(CASE WHEN streamed THEN 1.0 ELSE 0.0 END) AS share FROM requests "
                      "GROUP BY model ORDER BY model",
    "sum_tokens": "SELECT sum(prompt_tokens), sum(completion_tokens), sum(cost_usd) FROM requests",
}


def timed(run):
    t = time.perf_counter()
    run()
    return time.perf_counter() - t


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, data = sys.argv[1], Path(sys.argv[2])
    reps = int(os.environ.get("REPS", "3"))
    only = os.environ.get("ONLY")
    queries = {k: v for k, v in QUERIES.items() if not only or k in only.split(",")}
    os.sched_setaffinity(0, {0, 1})  # children (serve) inherit it

    server, url = start_server(binary, data, None)
    ctx = datafusion.SessionContext(datafusion.SessionConfig().with_target_partitions(2))
    ctx.register_parquet("requests", str(data / "requests"), file_extension=".parquet",
                         table_partition_cols=[("date", "string"), ("hour", "string")])
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb_connect(duckdb, binary, data, 2, tmp, None)

    def sy(sql):
        req = urllib.request.Request(url + "/api/query", data=json.dumps({"sql": sql}).encode(),
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            json.load(r)

    engines = (sy, lambda sql: ctx.sql(sql).collect(), lambda sql: con.execute(sql).fetchall())
    print(f"{'query':<16} {'sy':>7} {'df-py':>7} {'duck':>7} {'sy/df':>6} {'sy/dk':>6} {'df/dk':>6}")
    ratios = [[], [], []]
    try:
        for name, sql in queries.items():
            for run in engines:
                run(sql)  # warm-up
            a, b, c = (statistics.median(timed(lambda: run(sql)) for _ in range(reps)) for run in engines)
            for r, v in zip(ratios, (a / b, a / c, b / c)):
                r.append(v)
            print(f"{name:<16} {a:7.3f} {b:7.3f} {c:7.3f} {a/b:6.2f} {a/c:6.2f} {b/c:6.2f}", flush=True)
    finally:
        server.terminate()
        server.wait()
    geo = [math.exp(statistics.fmean(map(math.log, r))) for r in ratios]
    print(f"{'geomean':<16} {'':>7} {'':>7} {'':>7} {geo[0]:6.2f} {geo[1]:6.2f} {geo[2]:6.2f}")


if __name__ == "__main__":
    main()
