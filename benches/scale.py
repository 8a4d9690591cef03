#!/usr/bin/env python3
"""Scale-out figures for one machine: ingest rate into a bucket beside local disk, bytes per
record, and report time against data size over the bucket.

    python3 benches/scale.py --binary PATH [--rows 100000,1000000] [--repeat 3]

PATH is a switchyard binary. The bucket is a local moto
server (`moto[server]`, in the test venv: run this script with $SWITCHYARD_PYTHON), started
and stopped by the script on 127.0.0.1.

For each size N (generated requests; `generate` adds feedback records, about 1.4 input
records per request):
1. `switchyard generate --requests N --days D` (default 3) to an NDJSON file;
2. `switchyard ingest` of that file into a local data dir and into `s3://bench/N` (one process
   each, WAL on; the wall time of the whole import, records/s from the file's line count) and
   the store's bytes per request row;
3. every report in queries/ over the bucket, `--repeat` times each, as one process per run
   (`report NAME`); the median per report and the sum of medians.

Standard library only. Prints one table per size and a summary line per size at the end.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def start_moto():
    p = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                         stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in p.stderr:
        if "Running on http://" in line:
            endpoint = line.split("Running on ")[1].strip()
            break
    else:
        sys.exit("moto server did not start (pip install 'moto[server]')")
    # Keep draining its request log.
    import threading
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    return p, endpoint


def create_bucket(endpoint, name):
    import urllib.request
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{name}", method="PUT")).read()


def timed(cmd, env, **kw):
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def tree_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*.parquet"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--rows", default="100000,1000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--days", type=int, default=3, help="days the generated data spans")
    args = ap.parse_args()
    binary = str(Path(args.binary).resolve())
    sizes = [int(s) for s in args.rows.split(",")]
    reports = sorted(p.stem for p in (REPO / "queries").glob("*.sql"))

    moto, endpoint = start_moto()
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true",
               AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
               SWITCHYARD_LOG="warn")
    create_bucket(endpoint, "bench")
    work = Path(tempfile.mkdtemp(prefix="switchyard-scale-"))
    # Reports over a local moto server are slow; the default 30 s query limit is not the point.
    config = work / "bench.toml"
    config.write_text("[query]\ntimeout_ms = 600000\n")
    summary = []
    try:
        for n in sizes:
            logs = work / f"gen-{n}.ndjson"
            subprocess.run([binary, "generate", "--requests", str(n), "--days", str(args.days), "--seed", "1",
                            "--end", "2026-11-20T00:00:00Z", "--out", str(logs)], check=True)
            with open(logs, "rb") as f:
                records = sum(1 for _ in f)
            local = work / f"local-{n}"
            t_local = timed([binary, "ingest", "--no-progress", "--data-dir", str(local),
                             str(logs)], env)
            url = f"s3://bench/{n}"
            t_s3 = timed([binary, "ingest", "--no-progress", "--data-dir", url,
                          "--wal-dir", str(work / f"wal-{n}"), str(logs)], env)
            per_row = tree_bytes(local) / n
            print(f"\n== {n:,} requests ({records:,} input records, {logs.stat().st_size / 1e6:.0f} MB NDJSON)")
            print(f"ingest, local disk: {t_local:7.1f} s  {records / t_local:10,.0f} records/s")
            print(f"ingest, bucket:     {t_s3:7.1f} s  {records / t_s3:10,.0f} records/s")
            print(f"store: {per_row:.1f} bytes per request row (Parquet, zstd, rollups included)")
            print(f"{'report':32} {'seconds':>8}")
            tot_one = 0.0
            for r in reports:
                one = statistics.median(timed([binary, "--config", str(config), "report", r,
                                               "--format", "csv", "--data-dir", url], env)
                                        for _ in range(args.repeat))
                tot_one += one
                print(f"{r:32} {one:8.2f}")
            print(f"{'all reports (sum of medians)':32} {tot_one:8.2f}")
            summary.append((n, records / t_local, records / t_s3, per_row, tot_one))
            logs.unlink()
            shutil.rmtree(local, ignore_errors=True)
        print("\nrequests  local rec/s  bucket rec/s  bytes/row  all reports s")
        for n, rl, rs, b, one in summary:
            print(f"{n:8,} {rl:12,.0f} {rs:13,.0f} {b:10.1f} {one:14.2f}")
    finally:
        moto.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
