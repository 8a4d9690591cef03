#!/usr/bin/env python3
"""Scale-out figures for one machine: ingest rate into a bucket beside local disk, bytes per
record, and report time against data size on one node and on a two-executor Ballista cluster.

    python3 benches/scale.py --binary PATH [--rows 100000,1000000] [--repeat 3]

PATH is a switchyard binary built with `--features distributed` (or any build, with
`--no-cluster`: one node only). The bucket is a local moto
server (`moto[server]`, in the test venv: run this script with $SWITCHYARD_PYTHON), started
and stopped by the script on 127.0.0.1.

For each size N (generated requests; `generate` adds feedback records, about 1.4 input
records per request):
1. `switchyard generate --requests N --days D` (default 3) to an NDJSON file;
2. `switchyard ingest` of that file into a local data dir and into `s3://bench/N` (one process
   each, WAL on; the wall time of the whole import, records/s from the file's line count) and
   the store's bytes per request row;
3. every report in queries/ over the bucket, `--repeat` times each, as one process per run:
   `report NAME` (one node) and `report NAME --cluster df://...` (scheduler and two executors
   on this machine, two task slots each); the median per report and the sum of medians.

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


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=30):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{what} never listened on {port}")


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
    ap.add_argument("--no-cluster", action="store_true",
                    help="one node only (a binary built without `distributed`)")
    args = ap.parse_args()
    binary = str(Path(args.binary).resolve())
    sizes = [int(s) for s in args.rows.split(",")]
    reports = sorted(p.stem for p in (REPO / "queries").glob("*.sql"))

    moto, endpoint = start_moto()
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true",
               AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1",
               SWITCHYARD_LOG="warn")
    create_bucket(endpoint, "bench")
    sched_port = free_port()
    nodes = []
    for _ in range(0 if args.no_cluster else 1):
        nodes.append(subprocess.Popen([binary, "scheduler", "--listen", f"127.0.0.1:{sched_port}"],
                                      env=env, stdout=subprocess.DEVNULL))
        wait_port(sched_port, "scheduler")
    for _ in range(0 if args.no_cluster else 2):
        flight, grpc = free_port(), free_port()
        nodes.append(subprocess.Popen(
            [binary, "executor", "--scheduler", f"127.0.0.1:{sched_port}",
             "--listen", f"127.0.0.1:{flight}", "--grpc-listen", f"127.0.0.1:{grpc}",
             "--vcores", "2"], env=env, stdout=subprocess.DEVNULL))
        wait_port(flight, "executor")
    cluster = f"df://127.0.0.1:{sched_port}"
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
            print(f"{'report':32} {'one node s':>11} {'cluster s':>10}")
            tot_one = tot_cluster = 0.0
            for r in reports:
                one = statistics.median(timed([binary, "--config", str(config), "report", r,
                                               "--format", "csv", "--data-dir", url], env)
                                        for _ in range(args.repeat))
                two = float("nan") if args.no_cluster else statistics.median(
                    timed([binary, "report", r, "--format", "csv", "--data-dir", url,
                           "--cluster", cluster], env)
                    for _ in range(args.repeat))
                tot_one += one
                tot_cluster += two
                print(f"{r:32} {one:11.2f} {two:10.2f}")
            print(f"{'all reports (sum of medians)':32} {tot_one:11.2f} {tot_cluster:10.2f}")
            summary.append((n, records / t_local, records / t_s3, per_row, tot_one, tot_cluster))
            logs.unlink()
            shutil.rmtree(local, ignore_errors=True)
        print("\nrequests  local rec/s  bucket rec/s  bytes/row  reports 1 node s  reports cluster s")
        for n, rl, rs, b, one, two in summary:
            print(f"{n:8,} {rl:12,.0f} {rs:13,.0f} {b:10.1f} {one:17.2f} {two:18.2f}")
    finally:
        for p in nodes:
            p.kill()
        moto.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
