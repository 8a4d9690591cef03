"""Reads a switchyard data dir with DuckDB, pyarrow and Polars; prints what each sees as JSON.

Usage: read_store.py DATA_DIR
"""
import json
import sys
from decimal import Decimal

import duckdb
import polars as pl
import pyarrow.compute as pc
import pyarrow.dataset as ds

root = sys.argv[1]
req = f"{root}/requests/**/*.parquet"
fb = f"{root}/feedback/**/*.parquet"
out = {}

con = duckdb.connect()
n, cost, days = con.execute(
    f"SELECT count(*), sum(cost_usd), count(DISTINCT date) FROM read_parquet('{req}', hive_partitioning = true)"
).fetchone()
(nfb,) = con.execute(f"SELECT count(*) FROM read_parquet('{fb}', hive_partitioning = true)").fetchone()
out["duckdb"] = {"rows": n, "cost": str(cost), "days": days, "feedback": nfb}

t = ds.dataset(f"{root}/requests", format="parquet", partitioning="hive").to_table()
f = ds.dataset(f"{root}/feedback", format="parquet", partitioning="hive").to_table()
out["pyarrow"] = {
    "rows": t.num_rows,
    "cost": str(pc.sum(t["cost_usd"]).as_py()),
    "days": len(pc.unique(t["date"])),
    "feedback": f.num_rows,
    "schema": {name: str(t.schema.field(name).type) for name in t.schema.names},
}

lf = pl.scan_parquet(req, hive_partitioning=True)
r = lf.select(pl.len().alias("rows"), pl.col("cost_usd").sum().alias("cost"), pl.col("date").n_unique().alias("days")).collect()
nfb = pl.scan_parquet(fb, hive_partitioning=True).select(pl.len()).collect().item()
out["polars"] = {"rows": r["rows"][0], "cost": str(Decimal(str(r["cost"][0]))), "days": r["days"][0], "feedback": nfb}

print(json.dumps(out))
