#!/usr/bin/env python
"""`n4a serve` warm against DuckDB in-process, same sitting, same answers.

    serve_vs_duckdb.py --ws WS --n4a PATH [--runs N] [--clients C] [--requests R]

Starts `n4a serve WS` on a free loopback port, then for each query of
`queries_vs_duckdb.py` (pages, top-k, group-bys) and the next page:
DuckDB's in-process median of N (after one warm-up), the server's first
answer (cold: columns read from the files), its second (the sort noted as
asked again and built), and its warm median of N over one kept-alive
connection, with the answer compared to DuckDB's as queries_vs_duckdb.py
compares them. Then C client processes (default 8, one connection each)
send R requests each of the dashboard mix (the val page, the next page,
the filtered page, top-k, group by model) to the warm server: p50 and p99
per query and overall, and requests per second. Last, pages the server
has not seen (the val page at random offsets below 5,000 and below
200,000), each against DuckDB's time for the same page, then C clients
sending such pages (offsets drawn from 1,000 to 3,000,000, issue 33's mix:
p50, p99 and the slowest): what a page costs when its rows are not held in
memory (reading a row of a nirs4all file decompresses its column chunks up
to that row). The cold start (spawn to the workspace summary answered) is timed
first, and the server's RSS is read last (`--cache-mem`, default 512 MiB,
is the budget of decoded columns it keeps).
Client and server share the machine's cores. Exits 1 if any answer differs.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import statistics
import subprocess
import sys
import time
import urllib.parse

import duckdb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import queries_vs_duckdb as qv  # noqa: E402

COLS = qv.WEBAPP.split(",")
# The webapp's columns in two parameters (a value is at most 256 bytes).
COLUMNS = [("columns", ",".join(COLS[:13])), ("columns", ",".join(COLS[13:]))]


def page(params):
    return "data", list(params.items()) + COLUMNS


# name -> (endpoint, params, duckdb statements, answer kind)
def queries(ws):
    q = qv.queries(ws)
    out = {
        "page_val": page({"partition": "val", "sort": "val_score:asc", "limit": 50}),
        "page_next": page({"partition": "val", "sort": "val_score:asc", "limit": 50, "offset": 50}),
        "page_filtered": ("data", [("partition", "val"), ("model", "PLSRegression"),
                                   ("where", "val_score>=0.5"), ("where", "val_score<=1.5"),
                                   ("sort", "val_score:asc"), ("offset", 1000), ("limit", 50)] + COLUMNS),
        "page_deep": page({"partition": "val", "sort": "test_score:desc", "offset": 100000, "limit": 50}),
        "top_mse_val": ("top", [("k", 10), ("metric", "mse"), ("partition", "val")]),
    }
    duck = {k: (v[1], v[2]) for k, v in q.items()}
    duck["page_next"] = (qv.page_sql(ws, "partition = 'val'", "val_score ASC", 50, 50), "page")
    for key in ["model_name", "config_name", "dataset", "partition", "fold_id"]:
        # Every partition, as the CLI's `stats --partition all` (one
        # grouping per metric and partition; the server's default is val).
        out[f"group_{key}"] = ("groups", [("group_by", key), ("direction", "max"), ("partition", "all")])
    return {k: (ep, params, *duck[k]) for k, (ep, params) in out.items()}


def target(endpoint, params):
    return f"/api/workspaces/w/predictions/{endpoint}?" + urllib.parse.urlencode(params)


def get(conn, path):
    t0 = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    dt = time.perf_counter() - t0
    if r.status != 200:
        raise SystemExit(f"{path}: HTTP {r.status}: {body[:300]!r}")
    return dt, body


def client(port, paths, n, seed, out):
    random.seed(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    lat = []
    for i in range(n):
        name, path = paths[(i + seed) % len(paths)]
        if path is None:
            path = target(*page({"partition": "val", "sort": "val_score:asc", "limit": 50,
                                 "offset": random.randrange(1000, 3000000, 50)}))
        lat.append((name, get(conn, path)[0] * 1000))
    out.put(lat)


def load(port, paths, clients, n):
    out = mp.Queue()
    t0 = time.perf_counter()
    ps = [mp.Process(target=client, args=(port, paths, n, s, out)) for s in range(clients)]
    for p in ps:
        p.start()
    lat = [x for _ in ps for x in out.get()]
    for p in ps:
        p.join()
    return lat, time.perf_counter() - t0


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))]


def report(lat, secs, label):
    names = sorted({n for n, _ in lat})
    for n in names:
        v = [x for m, x in lat if m == n]
        print(f"  {n:<16} {len(v):5d} req  p50 {pct(v, .5):7.1f} ms  p99 {pct(v, .99):7.1f} ms")
    v = [x for _, x in lat]
    print(f"  {label:<16} {len(v):5d} req  p50 {pct(v, .5):7.1f} ms  p99 {pct(v, .99):7.1f} ms  "
          f"max {max(v):7.1f} ms  {len(v) / secs:.0f} req/s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", required=True)
    ap.add_argument("--n4a", required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--cache-mem", type=int, default=512)
    ap.add_argument("--mem-limit", type=int, default=None,
                    help="pass --mem-limit MIB to the server (a bound on its whole heap)")
    a = ap.parse_args()
    t_spawn = time.perf_counter()
    srv = subprocess.Popen([a.n4a, "serve", f"w={a.ws}", "--addr", "127.0.0.1:0", "--quiet",
                            "--cache-mem", str(a.cache_mem)]
                           + (["--mem-limit", str(a.mem_limit)] if a.mem_limit else []),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = int(re.search(r":(\d+)", srv.stdout.readline()).group(1))
        con = duckdb.connect()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        get(conn, "/api/workspaces/w/predictions/summary")
        print(f"cold start (spawn to the workspace summary answered): "
              f"{(time.perf_counter() - t_spawn) * 1000:.0f} ms")

        def memory(stage):
            # The server's resident memory by kind (anonymous: the heap,
            # the cache; file: the binary and mapped files) beside what its
            # cache counts, at each stage of the run.
            conn.request("GET", "/healthz")
            h = json.loads(conn.getresponse().read())
            kb = {}
            with open(f"/proc/{srv.pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                        kb[k] = int(v.split()[0]) // 1024
            print(f"  memory {stage}: RSS {kb.get('VmRSS')} MiB (anon {kb.get('RssAnon')}, "
                  f"file {kb.get('RssFile')}, peak {kb.get('VmHWM')}), heap in use "
                  f"{(h.get('heap_bytes') or 0) / 1048576:.0f} MiB, the cache counts "
                  f"{(h.get('cache_bytes') or 0) / 1048576:.0f} MiB (may hold "
                  f"{(h.get('cache_limit') or 0) / 1048576:.0f})", flush=True)

        memory("after the cold start")
        bad = 0
        print(f"{'query':<18} {'duckdb':>8} {'cold':>8} {'second':>8} {'warm':>8} {'warm/duck':>9}  answer")
        for name, (ep, params, stmts, kind) in queries(a.ws).items():
            path = target(ep, params)
            qv.run_duck(con, stmts)
            times = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                res = qv.run_duck(con, stmts)
                times.append(time.perf_counter() - t0)
            d = statistics.median(times) * 1000
            cold, body = get(conn, path)
            second, _ = get(conn, path)
            warm = statistics.median(get(conn, path)[0] for _ in range(a.runs)) * 1000
            same = qv.n4a_answer(kind, json.loads(body)) == qv.duck_answer(kind, res)
            bad += not same
            print(f"{name:<18} {d:8.1f} {cold * 1000:8.1f} {second * 1000:8.1f} {warm:8.1f} "
                  f"{warm / d:9.3f}  {'same' if same else 'DIFFERENT'}", flush=True)
        memory("after each query alone")
        q = queries(a.ws)
        mix = [(n, target(q[n][0], q[n][1])) for n in
               ["page_val", "page_next", "page_filtered", "top_mse_val", "group_model_name"]]
        print(f"\nwarm dashboard mix, {a.clients} client processes x {a.requests} requests:")
        report(*load(port, mix, a.clients, a.requests), "all")
        memory("after the mix")
        print("\npages not seen before (val page at random offsets; first request of each):")
        print(f"  {'offsets':<22} {'duckdb':>8} {'n4a':>8} {'n4a/duck':>9}  answer")
        rnd = random.Random(11)
        for label, hi in [("< 5,000", 5000), ("< 200,000", 200000)]:
            d_t, n_t = [], []
            for _ in range(a.runs):
                off = rnd.randrange(100, hi, 50)
                stmts = qv.page_sql(a.ws, "partition = 'val'", "val_score ASC", off, 50)
                t0 = time.perf_counter()
                res = qv.run_duck(con, stmts)
                d_t.append(time.perf_counter() - t0)
                dt, body = get(conn, target(*page({"partition": "val", "sort": "val_score:asc",
                                                   "limit": 50, "offset": off})))
                n_t.append(dt)
                same = qv.n4a_answer("page", json.loads(body)) == qv.duck_answer("page", res)
                bad += not same
            d, n = statistics.median(d_t) * 1000, statistics.median(n_t) * 1000
            print(f"  {label:<22} {d:8.1f} {n:8.1f} {n / d:9.3f}  {'same' if same else 'DIFFERENT'}")
        fresh = [("page_unseen", None)]
        print(f"\nunseen pages (offsets 1,000 to 3,000,000) under load, {a.clients} client processes:")
        report(*load(port, fresh, a.clients, max(5, a.requests // 4)), f"{a.clients} clients")
        memory("after the unseen pages")
        conn.request("GET", "/healthz")
        h = json.loads(conn.getresponse().read())
        rss, held = h.get("rss_bytes") or 0, h.get("cache_bytes") or 0
        print(f"\nserver RSS after the run: {rss / 1048576:.0f} MiB (--cache-mem {a.cache_mem}; "
              f"the cache holds {held / 1048576:.0f} MiB as it counts)")
        sys.exit(1 if bad else 0)
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
