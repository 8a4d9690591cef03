#!/usr/bin/env python3
"""Scale-out figures for one machine: ingest rate into a bucket beside local disk, bytes per
record, and report time against data size on one node and on a two-executor Ballista cluster
over the same bucket.

    python3 benches/scale.py --binary PATH [--rows 100000,1000000] [--days 3] [--repeat 3]
                             [--bucket-ingest-max 1000000] [--vcores 1]

PATH is a switchyard binary built with `--features distributed`. The bucket is a local moto
server (`moto[server]`, in the test venv: run this script with $SWITCHYARD_PYTHON), started
and stopped by the script on 127.0.0.1, as are the scheduler and the executors.

For each size N (generated requests; `generate` adds feedback records, about 1.4 input
records per request):
1. `switchyard generate --requests N --days D` to an NDJSON file;
2. `switchyard ingest` of that file into a local data dir (one process, WAL on; wall time of
   the whole import, records/s from the file's line count) and the store's bytes per request
   row;
3. the bucket store `s3://bench/N`:
   - N <= --bucket-ingest-max: `switchyard ingest` of the whole file into the bucket (the
     bucket rate, beside the local rate of step 2);
   - larger N: the finished local store is copied into the bucket as a whole (every
     `*.parquet` file and `catalog/`; commit records, WAL, lock and leases stay behind, as
     every commit is applied once `ingest` exits and the records name local paths), and the
     bucket rate is measured on a slice: the file's first --bucket-ingest-max requests (its
     first lines; the generator writes in time order), ingested into a fresh local dir and into
     `s3://bench/slice-N`, so both rates of that slice come from the same input in the same run;
4. one `switchyard scheduler` and two `switchyard executor`s on 127.0.0.1 over
   `s3://bench/N`;
5. every report in queries/, `--repeat` times each, one process per run: over the local dir,
   over the bucket on one node (`report NAME`) and over the bucket on the cluster (`report NAME
   --cluster df://ADDR`); the median of each, the cluster/one-node ratio, and whether the three
   answers agree (rows sorted, fractions at 9 significant digits: the cluster sums in another
   order, and rows tied under a report's ORDER BY may come in either; a value on a `ROUND`
   boundary may round either way, so one unit in its last decimal is allowed). Agreement of the local
   and bucket answers is also the check that a copied store is valid.

Standard library only. Prints one table per size and a summary line per size at the end; exits
non-zero when any answers disagree.
"""

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What a finished store holds beside its Parquet that a bucket copy leaves out: the writer's
# own state (WAL, lock, node id) and commit records, whose paths are the local ones.
LOCAL_ONLY = {"_commits", "wal", "LOCK", "_nodes", "_leases"}


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
    threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
    return p, endpoint


def create_bucket(endpoint, name):
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{name}", method="PUT")).read()


def timed(cmd, env, **kw):
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - t0


def timed_answer(cmd, env):
    """Runs a report; its wall time and its CSV answer, normalized (`None` if it failed; its
    stderr is shown)."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    t = time.perf_counter() - t0
    if out.returncode != 0:
        print(f"failed (exit {out.returncode}): {' '.join(cmd[3:])}", flush=True)
        return t, None
    return t, normalized(out.stdout)


def normalized(csv):
    """An answer as its header and its rows, sorted by their text and whole numbers; each
    fractional number kept as (value, decimals shown)."""
    lines = csv.splitlines()
    if not lines:
        return []
    rows = []
    for line in lines[1:]:
        cells = []
        for cell in line.split(","):
            try:
                x = float(cell)
            except ValueError:
                cells.append(cell)
                continue
            if "." in cell or "e" in cell:
                cells.append((x, len(cell.split(".")[1]) if "." in cell and "e" not in cell else 0))
            else:
                cells.append(cell)
        rows.append(cells)
    rows.sort(key=lambda r: [c for c in r if isinstance(c, str)])
    return [lines[0]] + rows


def same_answer(a, b):
    """Whether two normalized answers agree: the same text and whole numbers, fractions within
    1e-9 of each other, or one unit apart in the last decimal shown (the cluster sums in another
    order, so a value on a `ROUND` boundary may round either way)."""
    if a is None or b is None or len(a) != len(b) or (a and a[0] != b[0]):
        return False
    for ra, rb in zip(a[1:], b[1:]):
        if len(ra) != len(rb):
            return False
        for ca, cb in zip(ra, rb):
            if isinstance(ca, tuple) and isinstance(cb, tuple):
                tol = max(1e-9 * max(abs(ca[0]), abs(cb[0])),
                          1.000001 * 10 ** -max(ca[1], cb[1]) if ca[1] else 0)
                if abs(ca[0] - cb[0]) > tol:
                    return False
            elif ca != cb:
                return False
    return True


def tree_bytes(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*.parquet"))


def head_lines(src, dst, lines):
    with open(src, "rb") as f, open(dst, "wb") as out:
        for _, line in zip(range(lines), f):
            out.write(line)


def store_files(local):
    """The files of a finished local store that make up its bucket copy."""
    files = []
    for f in sorted(Path(local).rglob("*")):
        rel = f.relative_to(local)
        if not f.is_file() or rel.parts[0] in LOCAL_ONLY:
            continue
        if f.name.endswith(".pending"):
            sys.exit(f"{f}: an unfinished write; copy only a store no writer has open")
        files.append((f, rel.as_posix()))
    commits = Path(local) / "_commits"
    if commits.is_dir() and any(c.name.endswith(".commit") for c in commits.iterdir()):
        sys.exit(f"{commits}: an unapplied commit; copy only a store no writer has open")
    return files


def copy_to_bucket(endpoint, bucket, prefix, files, threads=4):
    """PUTs every file below `prefix` in `bucket` (moto takes unsigned requests); bytes sent."""
    ep = urllib.parse.urlsplit(endpoint)
    local = threading.local()

    def put(item):
        path, rel = item
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(ep.hostname, ep.port, timeout=300)
        body = path.read_bytes()
        key = urllib.parse.quote(f"{prefix}/{rel}")
        conn.request("PUT", f"/{bucket}/{key}", body=body,
                     headers={"Content-Length": str(len(body))})
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"PUT {key}: HTTP {r.status}")
        return len(body)

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(put, files))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, secs=30):
    until = time.monotonic() + secs
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > until:
                sys.exit(f"127.0.0.1:{port} never listened")
            time.sleep(0.05)


def announced(cmd, env, prefix):
    """Starts a process and waits for its stdout line starting with `prefix`."""
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith(prefix):
            rest = line[len(prefix):].strip()
            break
    else:
        sys.exit(f"{cmd[1]} exited before printing {prefix!r}")
    threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
    return p, rest


def start_cluster(binary, url, env, work, vcores):
    """One scheduler and two executors over `url`; the processes and df://ADDR."""
    procs = []
    sched, cluster = announced([binary, "scheduler", "--listen", "127.0.0.1:0", "--data-dir", url],
                               env, "switchyard scheduler listening on ")
    procs.append(sched)
    work_dirs = []
    for i in range(2):
        flight, grpc = free_port(), free_port()
        wd = work / f"executor-{i}"
        work_dirs.append(wd)
        cmd = [binary, "executor", "--scheduler", cluster.removeprefix("df://"),
               "--listen", f"127.0.0.1:{flight}", "--grpc-listen", f"127.0.0.1:{grpc}",
               "--work-dir", str(wd), "--data-dir", url]
        if vcores:
            cmd += ["--vcores", str(vcores)]
        procs.append(announced(cmd, env, "switchyard executor listening on ")[0])
        wait_listening(flight)
    # Both register with the scheduler right after they listen; their heartbeat is 5 s.
    time.sleep(2)
    return procs, cluster, work_dirs


def stop(procs):
    for p in procs:
        p.kill()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--rows", default="100000,1000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--days", type=int, default=3, help="days the generated data spans")
    ap.add_argument("--bucket-ingest-max", type=int, default=1_000_000,
                    help="sizes above this are copied into the bucket; the bucket rate is "
                         "measured on their first this many requests")
    ap.add_argument("--vcores", type=int, default=0,
                    help="tasks each executor runs at once (0: its default, the machine's cores)")
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
    config.write_text("[query]\ntimeout_ms = 3600000\n")
    summary = []
    disagree = []
    cluster_procs = []
    try:
        for n in sizes:
            logs = work / f"gen-{n}.ndjson"
            subprocess.run([binary, "generate", "--requests", str(n), "--days", str(args.days),
                            "--seed", "1", "--end", "2026-11-20T00:00:00Z", "--out", str(logs)],
                           check=True)
            with open(logs, "rb") as f:
                records = sum(1 for _ in f)
            print(f"\n== {n:,} requests ({records:,} input records, "
                  f"{logs.stat().st_size / 1e6:.0f} MB NDJSON), {args.days} days; "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            local = work / f"local-{n}"
            t_local = timed([binary, "ingest", "--no-progress", "--data-dir", str(local),
                             str(logs)], env)
            print(f"ingest, local disk:          {t_local:7.1f} s  {records / t_local:10,.0f} records/s")
            url = f"s3://bench/{n}"
            if n <= args.bucket_ingest_max:
                t_s3 = timed([binary, "ingest", "--no-progress", "--data-dir", url,
                              "--wal-dir", str(work / f"wal-{n}"), str(logs)], env)
                s3_rate, ratio_local = records / t_s3, records / t_local
                print(f"ingest, bucket:              {t_s3:7.1f} s  {s3_rate:10,.0f} records/s")
            else:
                files = store_files(local)
                t0 = time.perf_counter()
                sent = copy_to_bucket(endpoint, "bench", str(n), files)
                t_copy = time.perf_counter() - t0
                print(f"copy of the local store:     {t_copy:7.1f} s  {len(files):,} files, "
                      f"{sent / 1e6:,.0f} MB ({sent / 1e6 / t_copy:.1f} MB/s)")
                lines = round(records * args.bucket_ingest_max / n)
                part = work / f"slice-{n}.ndjson"
                head_lines(logs, part, lines)
                t_sl = timed([binary, "ingest", "--no-progress", "--data-dir",
                              str(work / f"slice-local-{n}"), str(part)], env)
                t_s3 = timed([binary, "ingest", "--no-progress", "--data-dir",
                              f"s3://bench/slice-{n}", "--wal-dir", str(work / f"wal-slice-{n}"),
                              str(part)], env)
                s3_rate, ratio_local = lines / t_s3, lines / t_sl
                print(f"slice of the first {lines:,} records (≈{args.bucket_ingest_max:,} requests):")
                print(f"  ingest, local disk:        {t_sl:7.1f} s  {lines / t_sl:10,.0f} records/s")
                print(f"  ingest, bucket:            {t_s3:7.1f} s  {s3_rate:10,.0f} records/s")
                part.unlink()
                shutil.rmtree(work / f"slice-local-{n}", ignore_errors=True)
            per_row = tree_bytes(local) / n
            logs.unlink()
            print(f"store: {per_row:.1f} bytes per request row (Parquet, zstd, rollups included)")

            cluster_procs, cluster, work_dirs = start_cluster(binary, url, env, work / f"cluster-{n}",
                                                              args.vcores)
            print(f"{'report':28} {'local s':>8} {'bucket s':>9} {'cluster s':>10} "
                  f"{'cluster/1 node':>15}  answers", flush=True)
            tot = [0.0, 0.0, 0.0]
            base = [binary, "--config", str(config), "report"]
            for r in reports:
                runs = {"local": [], "one": [], "cluster": []}
                answers = {}
                for _ in range(args.repeat):
                    for key, where in (("local", ["--data-dir", str(local)]),
                                       ("one", ["--data-dir", url]),
                                       ("cluster", ["--data-dir", url, "--cluster", cluster])):
                        t, ans = timed_answer(base + [r, "--format", "csv"] + where, env)
                        runs[key].append(t)
                        answers[key] = ans
                med = [statistics.median(runs[k]) for k in ("local", "one", "cluster")]
                tot = [a + b for a, b in zip(tot, med)]
                same = same_answer(answers["local"], answers["one"]) and \
                    same_answer(answers["local"], answers["cluster"])
                if not same:
                    failed = [k for k, a in answers.items() if a is None]
                    differ = [k for k in ("one", "cluster")
                              if not same_answer(answers["local"], answers[k])]
                    disagree.append(f"{n:,} requests, report {r}: " + (
                        f"failed on {', '.join(failed)}" if failed else
                        f"the answer on {' and '.join(differ)} differs from the local dir's"))
                print(f"{r:28} {med[0]:8.2f} {med[1]:9.2f} {med[2]:10.2f} {med[2] / med[1]:15.2f}  "
                      f"{'equal' if same else 'DIFFER'} ({len(answers['local'] or [0]) - 1} rows)",
                      flush=True)
            print(f"{'all reports (sum of medians)':28} {tot[0]:8.2f} {tot[1]:9.2f} {tot[2]:10.2f} "
                  f"{tot[2] / tot[1]:15.2f}")
            ran = [sum(1 for _ in wd.iterdir()) if wd.is_dir() else 0 for wd in work_dirs]
            print(f"load {os.getloadavg()[0]:.1f}; executors' job dirs: {ran[0]}, {ran[1]}")
            stop(cluster_procs)
            cluster_procs = []
            summary.append((n, records / t_local, ratio_local, s3_rate, per_row, *tot))
            shutil.rmtree(local, ignore_errors=True)
            shutil.rmtree(work / f"cluster-{n}", ignore_errors=True)
        # Ingest rates in records/s: the whole file to local disk, then the bucket's input
        # (the whole file, or its slice) to local disk and to the bucket; report times are
        # sums of medians in seconds.
        print(f"\n{'requests':>11} {'local':>8} {'in local':>9} {'in bucket':>9} {'ratio':>6}"
              f" {'B/row':>6} {'rep local':>9} {'1 node':>8} {'cluster':>8} {'ratio':>6}")
        for n, rl, rsl, rs, b, loc, one, clu in summary:
            print(f"{n:11,} {rl:8,.0f} {rsl:9,.0f} {rs:9,.0f} {rs / rsl:6.2f} {b:6.1f}"
                  f" {loc:9.2f} {one:8.2f} {clu:8.2f} {clu / one:6.2f}")
        for line in disagree:
            print(line)
    finally:
        stop(cluster_procs)
        moto.kill()
        shutil.rmtree(work, ignore_errors=True)
    if disagree:
        sys.exit(1)


if __name__ == "__main__":
    main()
