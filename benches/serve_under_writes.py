#!/usr/bin/env python
"""`n4a serve` under a mixed load while files are appended and refreshed.

    serve_under_writes.py --big WS --n4a PATH [--clients 8] [--requests 150]

Builds `target/peer-bench/data/load`: hard links to the files of WS (a
10M-row workspace; appends replace files by rename, so WS is untouched)
plus two generated datasets with arrays (for scatter). Starts the server,
warms it, then while C client processes send R requests each of a mix
(summary, sorted val page, the total alone, top-k, group by model, scatter
of a known prediction), a writer appends 500 rows (with arrays) to one
small and one big dataset in each `n4a ingest`, and a loop runs `n4a
refresh` over the workspace. Checks every answer: status 200 (or a 503
`busy`, the documented overload answer, counted), and every total read is
a committed state (the base plus a whole number of appended batches).
Prints latencies, errors, the appends and refreshes done, and the server's
resident memory after the warm-up and after the run.
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse

BATCH = 500


def get(conn, path):
    t0 = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    return r.status, body, (time.perf_counter() - t0) * 1000


def client(port, ids, base, n, seed, out):
    rnd = random.Random(seed)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    a = "/api/workspaces/w/predictions"
    mix = [
        ("summary", f"{a}/summary?datasets=brief"),
        ("page", f"{a}/data?partition=val&sort=val_score:asc&limit=50"),
        ("total", f"{a}/data?limit=0"),
        ("top", f"{a}/top?k=10&metric=mse&partition=val"),
        ("groups", f"{a}/groups?group_by=model&direction=max"),
        ("scatter", None),
    ]
    res = []
    for i in range(n):
        name, path = mix[(i + seed) % len(mix)]
        if path is None:
            path = f"{a}/{rnd.choice(ids)}/scatter?dataset=corn_000"
        s, body, ms = get(conn, path)
        bad = None
        if s == 503 and b"busy" in body:
            bad = "busy"
        elif s != 200:
            bad = f"{name}: HTTP {s}: {body[:200]!r}"
        elif name in ("total", "summary"):
            d = json.loads(body)
            total = d["total"] if name == "total" else d["total_predictions"]
            if (total - base) % BATCH != 0 or total < base:
                bad = f"{name}: total {total} is not a committed state (base {base}, batches of {BATCH})"
        res.append((name, ms, bad))
    out.put(res)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")


def jsonl(path, exe, dataset_src, n, tag):
    """`n` rows copied from `dataset_src` (ids made new), with arrays."""
    import pyarrow.parquet as pq
    t = pq.read_table(dataset_src).slice(0, n).to_pylist()
    with open(path, "w") as f:
        for i, r in enumerate(t):
            r["id"] = f"{tag}{i:08x}"
            for k in ("y_true_id", "y_pred_id", "y_proba_id", "sample_indices_id", "weights_id"):
                r.pop(k, None)
            r["y_true"] = [float(i % 7), 1.0, 2.0]
            r["y_pred"] = [float(i % 5), 1.5, 2.5]
            f.write(json.dumps(r, default=str) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", required=True)
    ap.add_argument("--n4a", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=150)
    a = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(a.big)), "load")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    for f in os.listdir(a.big):
        if f.endswith(".parquet"):
            os.link(os.path.join(a.big, f), os.path.join(root, f))
    gen = root + "-gen"
    shutil.rmtree(gen, ignore_errors=True)
    subprocess.run([a.n4a, "gen", gen, "--datasets", "2", "--rows", "3000"], check=True,
                   stdout=subprocess.DEVNULL)
    for f in os.listdir(gen):
        if f.endswith(".parquet"):
            shutil.move(os.path.join(gen, f), os.path.join(root, f))
    shutil.rmtree(gen)
    big_one = sorted(f for f in os.listdir(a.big) if f.endswith(".meta.parquet"))[0]
    import pyarrow.parquet as pq
    ids = [x for x in pq.read_table(os.path.join(root, "corn_000.meta.parquet"),
                                    columns=["id"]).column(0).to_pylist()[:2000]]
    base = sum(pq.ParquetFile(os.path.join(root, f)).metadata.num_rows
               for f in os.listdir(root) if f.endswith(".meta.parquet"))
    inputs = os.path.join(root + "-in")
    shutil.rmtree(inputs, ignore_errors=True)
    os.makedirs(inputs)

    srv = subprocess.Popen([a.n4a, "serve", f"w={root}", "--addr", "127.0.0.1:0", "--quiet"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = int(re.search(r":(\d+)", srv.stdout.readline()).group(1))
        threading.Thread(target=lambda: [None for _ in srv.stdout], daemon=True).start()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        rss = lambda: json.loads(get(conn, "/healthz")[1])["rss_bytes"] / 1048576
        # Warm-up: the same mix, once per client, not counted.
        q = mp.Queue()
        ps = [mp.Process(target=client, args=(port, ids, base, 12, s, q)) for s in range(a.clients)]
        [p.start() for p in ps]
        [q.get() for _ in ps]
        [p.join() for p in ps]
        rss_before = rss()
        stop = threading.Event()
        done = {"appends": 0, "append_failures": 0, "refreshes": 0, "refresh_codes": {}}

        def writer():
            k = 0
            while not stop.is_set():
                p = os.path.join(inputs, f"b{k}.jsonl")
                jsonl(p, a.n4a, os.path.join(a.big, big_one), BATCH, f"lb{k:04x}")
                small = os.path.join(inputs, f"s{k}.jsonl")
                jsonl(small, a.n4a, os.path.join(root, "corn_000.meta.parquet"), BATCH, f"ls{k:04x}")
                for f in (p, small):
                    r = subprocess.run([a.n4a, "ingest", root, f], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
                    if r.returncode == 0:
                        done["appends"] += 1
                    else:
                        done["append_failures"] += 1
                        print("append failed:", r.stderr.decode()[-300:], file=sys.stderr)
                k += 1

        def refresher():
            while not stop.is_set():
                r = subprocess.run([a.n4a, "refresh", root], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                done["refreshes"] += 1
                done["refresh_codes"][r.returncode] = done["refresh_codes"].get(r.returncode, 0) + 1

        ts = [threading.Thread(target=writer), threading.Thread(target=refresher)]
        [t.start() for t in ts]
        t0 = time.perf_counter()
        ps = [mp.Process(target=client, args=(port, ids, base, a.requests, 100 + s, q))
              for s in range(a.clients)]
        [p.start() for p in ps]
        res = [x for _ in ps for x in q.get()]
        [p.join() for p in ps]
        secs = time.perf_counter() - t0
        stop.set()
        [t.join() for t in ts]
        rss_after = rss()
        errors = [r for r in res if r[2] and r[2] != "busy"]
        busy = sum(1 for r in res if r[2] == "busy")
        print(f"{len(res)} requests from {a.clients} client processes in {secs:.1f} s "
              f"({len(res) / secs:.0f} req/s), while {done['appends']} appends of {BATCH} rows "
              f"({done['append_failures']} failed) and {done['refreshes']} refreshes "
              f"(exit codes {done['refresh_codes']}) ran")
        for name in ["summary", "page", "total", "top", "groups", "scatter"]:
            v = [r[1] for r in res if r[0] == name]
            print(f"  {name:<8} {len(v):5d} req  p50 {pct(v, .5):8.1f} ms  p99 {pct(v, .99):8.1f} ms")
        print(f"errors: {len(errors)} (plus {busy} documented 503 busy answers)")
        for e in errors[:10]:
            print("  ", e[2])
        print(f"server RSS: {rss_before:.0f} MiB after the warm-up, {rss_after:.0f} MiB after the run")
        sys.exit(1 if errors or done["append_failures"] else 0)
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(inputs, ignore_errors=True)


if __name__ == "__main__":
    main()
