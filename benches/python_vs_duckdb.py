#!/usr/bin/env python
"""n4a's Python package against DuckDB's Python API: sorted pages, one
process, one sitting, the same files and the same answer.

    python_vs_duckdb.py --ws WS [--ws WS2 ...] [--runs N]

Run it with a Python that has both `n4a` (`pip install ./python`, a
release build) and `duckdb` (the peer harness's venv:
target/peer-bench/venv). Both are timed in-process, alternately, after an
untimed warm-up (files in the page cache, imports done), in two
alternating rounds of N/2 runs (drift on a shared machine hits all of
them); each figure is the median of the N wall times. Each case asks a page and its total:

- `page`: the peer harness's page workload (partition = 'val', model_name
  = 'PLSRegression', val_score in [0.5, 1.5], ORDER BY val_score, id,
  OFFSET 1000 LIMIT 50, the webapp's 26 columns);
- `page-all`: every row, ORDER BY val_score, id, OFFSET 0 LIMIT 50;
- `page-deep`: every row, ORDER BY test_score DESC, id, OFFSET 100000 LIMIT 50.

n4a runs `Workspace.query(...)` returning a pyarrow.Table (its `total` from
`n4a.info`), once on a Workspace made for that call (`n4a cold`: footers
read again) and once on one Workspace kept across calls (`n4a warm`: the
dashboard backend's or a notebook's case). DuckDB runs two statements
(the page, fetched as an Arrow table, and the count) on one connection.
The answers are compared (total, then every cell of the page) and the
script exits 1 if any differs. Prints one JSON line per case.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import duckdb
import n4a

COLUMNS = [
    "id", "dataset_name", "config_name", "pipeline_uid", "step_idx", "op_counter",
    "model_name", "model_classname", "fold_id", "partition", "val_score", "test_score",
    "train_score", "metric", "task_type", "n_samples", "n_features", "preprocessings",
    "best_params", "scores", "branch_id", "branch_name", "exclusion_count",
    "exclusion_rate", "model_artifact_id", "trace_id",
]

CASES = {
    "page": dict(
        sql_where="WHERE partition = 'val' AND model_name = 'PLSRegression' "
        "AND val_score BETWEEN 0.5 AND 1.5",
        sql_order="val_score ASC, id ASC",
        kw=dict(partition="val", model="PLSRegression",
                where="val_score>=0.5, val_score<=1.5", sort="val_score:asc"),
        offset=1000,
    ),
    "page-all": dict(sql_where="", sql_order="val_score ASC, id ASC",
                     kw=dict(sort="val_score:asc"), offset=0),
    "page-deep": dict(sql_where="", sql_order="test_score DESC, id ASC",
                      kw=dict(sort="test_score:desc"), offset=100_000),
}
LIMIT = 50


def timed(fn, runs):
    """One untimed warm-up, then `runs` wall times and the last answer."""
    fn()
    times, ans = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        ans = fn()
        times.append(time.perf_counter() - t0)
    return times, ans


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", action="append", required=True)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    con = duckdb.connect()
    bad = 0
    for ws in a.ws:
        kept = n4a.Workspace(ws)
        rows = con.sql(
            "SELECT count(*) FROM read_parquet($pat)",
            params={"pat": os.path.join(ws, "*.meta.parquet")},
        ).fetchall()[0][0]
        for name, c in CASES.items():
            pat = os.path.join(ws, "*.meta.parquet")
            cols = ", ".join(f'"{x}"' for x in COLUMNS)

            def duck():
                # con.sql: the relation's Arrow result, without the
                # DB-API cursor's extra copy.
                t = con.sql(
                    f"SELECT {cols} FROM read_parquet($pat) {c['sql_where']} "
                    f"ORDER BY {c['sql_order']} LIMIT {LIMIT} OFFSET {c['offset']}",
                    params={"pat": pat},
                ).to_arrow_table()
                total = con.sql(
                    f"SELECT count(*) FROM read_parquet($pat) {c['sql_where']}",
                    params={"pat": pat},
                ).fetchall()[0][0]
                return int(total), t

            def ask(w):
                t = w.query(columns=COLUMNS, offset=c["offset"], limit=LIMIT, **c["kw"])
                return n4a.info(t)["total"], t

            timings = {}
            answers = {}
            # Alternate the peers so drift on a shared machine hits both.
            for _ in range(2):
                for peer, fn in (
                    ("duckdb", duck),
                    ("n4a cold", lambda: ask(n4a.Workspace(ws))),
                    ("n4a warm", lambda: ask(kept)),
                ):
                    times, ans = timed(fn, max(1, a.runs // 2 + a.runs % 2))
                    timings.setdefault(peer, []).extend(times)
                    answers[peer] = ans
            want_total, want = answers["duckdb"]
            agree = True
            for peer in ("n4a cold", "n4a warm"):
                total, t = answers[peer]
                ok = total == want_total and t.num_rows == want.num_rows and all(
                    same(x, y)
                    for col in COLUMNS
                    for x, y in zip(t.column(col).to_pylist(), want.column(col).to_pylist())
                )
                agree &= ok
            bad += not agree
            med = {p: statistics.median(v) for p, v in timings.items()}
            print(json.dumps({
                "workspace": os.path.basename(os.path.normpath(ws)), "rows": rows, "case": name,
                "total": want_total,
                "duckdb_s": round(med["duckdb"], 4),
                "n4a_cold_s": round(med["n4a cold"], 4),
                "n4a_warm_s": round(med["n4a warm"], 4),
                "cold_over_duckdb": round(med["n4a cold"] / med["duckdb"], 3),
                "warm_over_duckdb": round(med["n4a warm"] / med["duckdb"], 3),
                "same_answer": agree,
                "in_process": True, "duckdb": duckdb.__version__, "n4a": n4a.__version__,
            }), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
