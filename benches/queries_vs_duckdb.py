#!/usr/bin/env python
"""n4a queries (whole process) against DuckDB (in-process), same sitting.

    queries_vs_duckdb.py --ws WS --n4a PATH [--runs N] [--only NAME,...]

Each query is run by DuckDB in this process (one untimed warm-up, then the
median of N) and by `n4a ... --format json` as a child process (one untimed
run, then the median of N wall times; peak RSS from wait4). The answers are
compared: pages by (total, ids in order), top-k by (id, score) in order,
group-bys by (metric, partition, key, count, mean to 8 places, min, max,
best): within one metric and partition at a time, as n4a answers them. DuckDB's SQL
uses the same order and tie rules as n4a: pages ORDER BY the column, then
id; top-k best first, ties in file order (dataset, then row: nirs4all's own
rule, the one the footers' heaps keep); group-by means over non-null scores
(the files hold no NaN). Prints one line per query and exits 1 if any
answer differs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import duckdb

WEBAPP = ("id,dataset_name,config_name,pipeline_uid,step_idx,op_counter,model_name,"
          "model_classname,fold_id,partition,val_score,test_score,train_score,metric,"
          "task_type,n_samples,n_features,preprocessings,best_params,scores,branch_id,"
          "branch_name,exclusion_count,exclusion_rate,model_artifact_id,trace_id")


def src(ws):
    return (f"read_parquet('{os.path.join(ws, '*.meta.parquet')}', filename=true, "
            "file_row_number=true)")


def page_sql(ws, where, order, offset, limit, cols=None):
    cols = cols or ", ".join(f'"{c}"' for c in WEBAPP.split(","))
    return [
        f"SELECT {cols} FROM {src(ws)} WHERE {where} ORDER BY {order}, id LIMIT {limit} OFFSET {offset}",
        f"SELECT count(*) FROM {src(ws)} WHERE {where}",
    ]


def queries(ws):
    """name -> (n4a argv, DuckDB statements, answer kind)."""
    q = {}
    q["page_filtered"] = (
        ["query", ws, "--partition", "val", "--model", "PLSRegression", "--where", "val_score>=0.5",
         "--where", "val_score<=1.5", "--sort", "val_score:asc", "--offset", "1000", "--limit", "50",
         "--columns", WEBAPP],
        page_sql(ws, "partition = 'val' AND model_name = 'PLSRegression' AND val_score BETWEEN 0.5 AND 1.5",
                 "val_score ASC", 1000, 50), "page")
    q["page_val"] = (
        ["query", ws, "--partition", "val", "--sort", "val_score:asc", "--limit", "50", "--columns", WEBAPP],
        page_sql(ws, "partition = 'val'", "val_score ASC", 0, 50), "page")
    q["page_deep"] = (
        ["query", ws, "--partition", "val", "--sort", "test_score:desc", "--offset", "100000", "--limit", "50",
         "--columns", WEBAPP],
        page_sql(ws, "partition = 'val'", "test_score DESC NULLS LAST", 100000, 50), "page")
    q["top_mse_val"] = (
        ["top", ws, "--k", "10", "--metric", "mse", "--partition", "val"],
        [f"SELECT id, val_score FROM {src(ws)} WHERE partition = 'val' AND metric = 'mse' "
         "ORDER BY val_score, parse_filename(filename, true), file_row_number LIMIT 10"], "top")
    # Group-bys within one metric and one partition at a time (issue 29:
    # n4a never pools scores of different metrics, nor a prediction's
    # train, val and test rows): DuckDB groups by (metric, partition, key),
    # the same answer. Before issue 29 both pooled every row by the key
    # alone; the ratios of the two shapes are compared, not their times.
    for key, col in [("model_name", "model_name"), ("config_name", "config_name"),
                     ("dataset", "parse_filename(filename, true)"), ("partition", "partition"),
                     ("fold_id", "fold_id")]:
        part = "NULL" if key == "partition" else "partition"
        by = "metric, k" if key == "partition" else "metric, partition, k"
        q[f"group_{key}"] = (
            ["stats", ws, "--group-by", key, "--direction", "max", "--partition", "all"],
            [f"SELECT metric, {part} AS p, {col} AS k, count(*), avg(val_score), min(val_score), "
             f"max(val_score), max(val_score) FROM {src(ws)} GROUP BY {by} "
             "ORDER BY metric NULLS LAST, p NULLS LAST, k NULLS LAST"], "group")
    # Issue 33's shapes, as a user sends them: one metric (`mse`, lower is
    # better: best = min), the default val rows (partition: every
    # partition, each its own group set), and the CLI's val page with all
    # 35 columns. DuckDB's SQL carries the same predicates.
    for key, col in [("model_name", "model_name"), ("dataset", "parse_filename(filename, true)"),
                     ("fold_id", "fold_id"), ("partition", "partition")]:
        every = key == "partition"
        argv = ["stats", ws, "--group-by", key, "--metric", "mse"] + (["--partition", "all"] if every else [])
        where = "metric = 'mse'" + ("" if every else " AND partition = 'val'")
        p = "NULL" if every else "partition"
        by = "metric, k" if every else "metric, partition, k"
        q[f"mse_{key}"] = (
            argv,
            [f"SELECT metric, {p} AS p, {col} AS k, count(*), avg(val_score), min(val_score), "
             f"max(val_score), min(val_score) FROM {src(ws)} WHERE {where} GROUP BY {by} "
             "ORDER BY metric NULLS LAST, p NULLS LAST, k NULLS LAST"], "group")
    q["page_val_all"] = (
        ["query", ws, "--partition", "val", "--sort", "val_score:asc", "--limit", "50"],
        page_sql(ws, "partition = 'val'", "val_score ASC", 0, 50, cols="*"), "page")
    return q


def duck_answer(kind, res):
    if kind == "page":
        rows, (total,) = res[0], res[1][0]
        return {"total": int(total), "ids": [r[0] for r in rows]}
    if kind == "top":
        return {"rows": [[r[0], float(r[1])] for r in res[0]]}
    out = []
    for m, p, k, c, mean, mn, mx, best in res[0]:
        if k is not None and k.endswith(".meta"):
            k = k[: -len(".meta")]
        out.append([m, p, k, int(c), None if mean is None else round(mean, 8), mn, mx, best])
    return {"groups": out}


def n4a_answer(kind, doc):
    if kind == "page":
        return {"total": doc["total"], "ids": [r["id"] for r in doc["records"]]}
    if kind == "top":
        return {"rows": [[r["id"], r["val_score"]] for r in doc["records"]]}
    splits = doc.get("by_metric", [doc])
    return {"groups": [[s["metric"], s["partition"], g["key"], g["count"],
                        None if g.get("mean") is None else round(g["mean"], 8),
                        g.get("min"), g.get("max"), g.get("best")]
                       for s in splits for g in s["groups"]]}


def run_duck(con, stmts):
    return [con.execute(s).fetchall() for s in stmts]


def run_n4a(exe, argv):
    t0 = time.perf_counter()
    p = subprocess.Popen([exe, *argv, "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    dt = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        raise SystemExit(f"n4a {' '.join(argv)} failed ({p.returncode}): {err.decode()[-2000:]}")
    return dt, json.loads(out)


def peak_rss_kb(exe, argv):
    """One more run under GNU time for the peak RSS (not timed)."""
    r = subprocess.run(["/usr/bin/time", "-f", "%M", exe, *argv, "--format", "json"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return int(r.stderr.decode().strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", required=True)
    ap.add_argument("--n4a", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    con = duckdb.connect()
    only = set(filter(None, a.only.split(",")))
    bad = 0
    print(f"{'query':<18} {'n4a ms':>9} {'duckdb ms':>10} {'ratio':>7} {'n4a MiB':>8}  answer")
    for name, (argv, stmts, kind) in queries(a.ws).items():
        if only and name not in only:
            continue
        res = run_duck(con, stmts)
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            res = run_duck(con, stmts)
            times.append(time.perf_counter() - t0)
        d_med = statistics.median(times)
        want = duck_answer(kind, res)
        run_n4a(a.n4a, argv)
        n_times = []
        for _ in range(a.runs):
            dt, doc = run_n4a(a.n4a, argv)
            n_times.append(dt)
        n_med = statistics.median(n_times)
        got = n4a_answer(kind, doc)
        same = got == want
        bad += not same
        rss = peak_rss_kb(a.n4a, argv) / 1024
        print(f"{name:<18} {n_med * 1000:9.1f} {d_med * 1000:10.1f} {n_med / d_med:7.3f} {rss:8.0f}  "
              f"{'same' if same else 'DIFFERENT'}", flush=True)
        if not same:
            print("   n4a:   ", json.dumps(got)[:600])
            print("   duckdb:", json.dumps(want)[:600])
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
