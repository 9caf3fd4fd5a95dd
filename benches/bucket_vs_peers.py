#!/usr/bin/env python
"""n4a on a bucket (whole process) against pyarrow and polars on the same
bucket (in process), same sitting, same answers, requests counted.

    bucket_vs_peers.py --ws DIR --n4a BIN --moto DIR/bin/moto_server
                       [--latency-ms 0] [--runs 7] [--only summary,page,topk]

Starts moto's S3 server on loopback, uploads DIR's files to a bucket (with
boto3, not n4a), and puts a proxy in front of the server that counts the
requests and adds --latency-ms to each (to model a real bucket: the delay
is added before the request is relayed). Every system reads through the
proxy. Run with the peer harness's venv (target/peer-bench/venv: pyarrow,
polars) plus boto3.

Workloads (the peer harness's definitions, ../shared/bench/peers.py):
  summary  n4a `summary s3://... --format json` (the footer cache on disk
           warm after an untimed run: a LIST and no GET for unchanged
           objects) and `--no-cache` (one GET a footer) against the
           harness's pyarrow summary read through `pyarrow.fs.S3FileSystem`
           (the webapp's 8-thread pool); answers: totals, files with a
           summary, model counts.
  page     the harness's filtered page (val, PLSRegression, 0.5 <= val_score
           <= 1.5, offset 1000, 50 rows, the webapp's 26 columns) with its
           total: n4a `query`, polars `scan_parquet` on the bucket, pyarrow
           `dataset` on the bucket; answers: total and ids in order.
  topk     the 10 val mse rows of lowest val_score (id breaks ties): n4a
           `query --sort`, polars `bottom_k`, pyarrow `dataset`; answers:
           ids and scores in order.
Peers: one untimed warm-up, then the median of --runs; n4a: one untimed
run, then the median of --runs wall times of the process.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

KEY, SECRET, REGION = "test", "test", "us-east-1"
WEBAPP = ("id,dataset_name,config_name,pipeline_uid,step_idx,op_counter,model_name,"
          "model_classname,fold_id,partition,val_score,test_score,train_score,metric,"
          "task_type,n_samples,n_features,preprocessings,best_params,scores,branch_id,"
          "branch_name,exclusion_count,exclusion_rate,model_artifact_id,trace_id").split(",")
METHODS = (b"GET ", b"PUT ", b"HEAD ", b"POST ", b"DELETE ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """Counts requests and delays each by `latency` seconds (asyncio, in a
    thread of its own)."""

    def __init__(self, upstream: int, latency: float):
        self.upstream, self.latency, self.count = upstream, latency, 0
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()

    async def _start(self):
        await asyncio.start_server(self._conn, "127.0.0.1", self.port, backlog=1024)

    async def _conn(self, cr, cw):
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            cw.close()
            return

        async def up():
            try:
                while data := await cr.read(65536):
                    if data.startswith(METHODS):
                        self.count += 1
                        if self.latency:
                            await asyncio.sleep(self.latency)
                    uw.write(data)
                    await uw.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                uw.close()

        async def down():
            try:
                while data := await ur.read(65536):
                    cw.write(data)
                    await cw.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                cw.close()

        await asyncio.gather(up(), down())


def start_moto(server: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    p = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return p, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("moto_server did not start")


def upload(port: int, bucket: str, prefix: str, ws: str):
    import boto3
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=KEY,
                      aws_secret_access_key=SECRET, region_name=REGION)
    s3.create_bucket(Bucket=bucket)
    names = [n for n in sorted(os.listdir(ws)) if n.endswith(".meta.parquet")]
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda n: s3.upload_file(os.path.join(ws, n), bucket, f"{prefix}/{n}"), names))
    return len(names)


def timed(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    ts, ans = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        ans = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ans


def counted(proxy, fn):
    before = proxy.count
    out = fn()
    return out, proxy.count - before


# ---------------------------------------------------------------- peers
def s3fs(port):
    import pyarrow.fs as pafs
    return pafs.S3FileSystem(access_key=KEY, secret_key=SECRET, region=REGION,
                             endpoint_override=f"127.0.0.1:{port}", scheme="http")


def summary_pyarrow(fs, root):
    import pyarrow.parquet as pq
    files = sorted(f.path for f in fs.get_file_info(__import__("pyarrow.fs").fs.FileSelector(root))
                   if f.path.endswith(".meta.parquet"))

    def one(path):
        try:
            with fs.open_input_file(path) as f:
                pf = pq.ParquetFile(f)
                md = pf.schema_arrow.metadata
                name = os.path.basename(path)[: -len(".meta.parquet")]
                if md and b"n4a_summary" in md:
                    s = json.loads(md[b"n4a_summary"].decode("utf-8"))
                    s["dataset"], s["has_summary"] = name, True
                    return s
                return {"dataset": name, "total_predictions": pf.metadata.num_rows,
                        "has_summary": False}
        except Exception:
            return None

    with ThreadPoolExecutor(max_workers=min(len(files), 8) or 1) as ex:
        res = [s for s in ex.map(one, files) if s is not None]
    models: dict[str, int] = {}
    for s in res:
        for m in s.get("facets", {}).get("models", []):
            models[m["name"]] = models.get(m["name"], 0) + m["count"]
    return {"total_predictions": sum(s.get("total_predictions", 0) for s in res),
            "total_datasets": len(res), "n_with_summary": sum(1 for s in res if s["has_summary"]),
            "models": sorted(models.items())}


def polars_opts(port):
    return {"aws_access_key_id": KEY, "aws_secret_access_key": SECRET, "aws_region": REGION,
            "aws_endpoint_url": f"http://127.0.0.1:{port}", "aws_allow_http": "true"}


def page_polars(port, url, offset, limit):
    import polars as pl
    lf = pl.scan_parquet(url + "/*.meta.parquet", storage_options=polars_opts(port))
    flt = lf.filter((pl.col("partition") == "val") & (pl.col("model_name") == "PLSRegression")
                    & pl.col("val_score").is_between(0.5, 1.5, closed="both"))
    page, cnt = pl.collect_all([flt.select(WEBAPP).sort(["val_score", "id"]).slice(offset, limit),
                                flt.select(pl.len())])
    return {"total": int(cnt.item()), "ids": page["id"].to_list()}


def page_pyarrow(fs, root, offset, limit):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    d = ds.dataset(root, filesystem=fs, format="parquet")
    flt = ((pc.field("partition") == "val") & (pc.field("model_name") == "PLSRegression")
           & (pc.field("val_score") >= 0.5) & (pc.field("val_score") <= 1.5))
    t = d.to_table(columns=WEBAPP, filter=flt)
    t = t.sort_by([("val_score", "ascending"), ("id", "ascending")])
    return {"total": t.num_rows, "ids": t.slice(offset, limit)["id"].to_pylist()}


def topk_polars(port, url, k):
    import polars as pl
    df = (pl.scan_parquet(url + "/*.meta.parquet", storage_options=polars_opts(port))
          .filter((pl.col("partition") == "val") & (pl.col("metric") == "mse"))
          .select(["id", "val_score"]).bottom_k(k, by=["val_score", "id"]).collect()
          .sort(["val_score", "id"]))
    return {"rows": [list(r) for r in df.rows()]}


def topk_pyarrow(fs, root, k):
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    d = ds.dataset(root, filesystem=fs, format="parquet")
    t = d.to_table(columns=["id", "val_score"],
                   filter=(pc.field("partition") == "val") & (pc.field("metric") == "mse"))
    t = t.sort_by([("val_score", "ascending"), ("id", "ascending")]).slice(0, k)
    return {"rows": [[i, v] for i, v in zip(t["id"].to_pylist(), t["val_score"].to_pylist())]}


# ---------------------------------------------------------------- n4a
def n4a_run(args, env):
    out = subprocess.run(args, env=env, capture_output=True)
    if out.returncode not in (0, 1):
        raise SystemExit(f"{args}: {out.stderr.decode()}")
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", required=True)
    ap.add_argument("--n4a", required=True)
    ap.add_argument("--moto", required=True)
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--only", default="summary,page,topk")
    a = ap.parse_args()
    server, mport = start_moto(a.moto)
    try:
        bucket, prefix = "n4a-bench", os.path.basename(os.path.normpath(a.ws))
        t0 = time.time()
        n = upload(mport, bucket, prefix, a.ws)
        print(f"# {prefix}: {n} files uploaded in {time.time() - t0:.1f} s; latency "
              f"{a.latency_ms:g} ms a request; n4a whole process, peers in process; medians of {a.runs}")
        proxy = Proxy(mport, a.latency_ms / 1000)
        url, root = f"s3://{bucket}/{prefix}", f"{bucket}/{prefix}"
        cache = tempfile.mkdtemp(prefix="n4a-bench-cache-")
        env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET,
                   AWS_REGION=REGION, AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}",
                   N4A_CACHE_DIR=cache)
        fs = s3fs(proxy.port)
        rows = []

        def n4a(argv):
            return lambda: n4a_run([a.n4a] + argv, env)

        def line(name, sys_, secs, reqs, same):
            rows.append((name, sys_, secs, reqs, same))
            print(f"{name:8s} {sys_:22s} {secs * 1000:10.1f} ms {reqs:8d} requests  {same}", flush=True)

        only = a.only.split(",")
        if "summary" in only:
            peer_t, peer_a = timed(lambda: summary_pyarrow(fs, root), a.runs)
            _, peer_r = counted(proxy, lambda: summary_pyarrow(fs, root))
            for label, extra in (("n4a", []), ("n4a --no-cache", ["--no-cache"])):
                t, ans = timed(n4a(["summary", url, "--format", "json"] + extra), a.runs)
                _, r = counted(proxy, n4a(["summary", url, "--format", "json"] + extra))
                models: dict[str, int] = {}
                for m in ans["models"]:
                    models[m["name"]] = models.get(m["name"], 0) + m["count"]
                mine = {"total_predictions": ans["total_predictions"],
                        "total_datasets": ans["total_datasets"],
                        "n_with_summary": sum(1 for d in ans["datasets"] if d["has_summary"]),
                        "models": sorted(models.items())}
                same = "same answer" if mine == peer_a else f"DIFFERENT: {mine} vs {peer_a}"
                line("summary", label, t, r, same + f"; ratio {t / peer_t:.3f}")
            line("summary", "pyarrow S3FileSystem", peer_t, peer_r, "")
        if "page" in only:
            argv = ["query", url, "--partition", "val", "--model", "PLSRegression", "--where",
                    "val_score>=0.5", "--where", "val_score<=1.5", "--sort", "val_score:asc",
                    "--offset", "1000", "--limit", "50", "--columns", ",".join(WEBAPP),
                    "--format", "json"]
            pl_t, pl_a = timed(lambda: page_polars(proxy.port, url, 1000, 50), a.runs)
            _, pl_r = counted(proxy, lambda: page_polars(proxy.port, url, 1000, 50))
            pa_t, pa_a = timed(lambda: page_pyarrow(fs, root, 1000, 50), a.runs)
            _, pa_r = counted(proxy, lambda: page_pyarrow(fs, root, 1000, 50))
            t, ans = timed(n4a(argv), a.runs)
            _, r = counted(proxy, n4a(argv))
            mine = {"total": ans["total"], "ids": [x["id"] for x in ans["records"]]}
            same = "same answer" if mine == pl_a == pa_a else "DIFFERENT"
            line("page", "n4a", t, r, same + f"; ratio {t / min(pl_t, pa_t):.3f}")
            line("page", "polars scan_parquet", pl_t, pl_r, "")
            line("page", "pyarrow dataset", pa_t, pa_r, "")
        if "topk" in only:
            argv = ["query", url, "--partition", "val", "--metric", "mse", "--sort",
                    "val_score:asc", "--limit", "10", "--columns", "id,val_score", "--format",
                    "json"]
            pl_t, pl_a = timed(lambda: topk_polars(proxy.port, url, 10), a.runs)
            _, pl_r = counted(proxy, lambda: topk_polars(proxy.port, url, 10))
            pa_t, pa_a = timed(lambda: topk_pyarrow(fs, root, 10), a.runs)
            _, pa_r = counted(proxy, lambda: topk_pyarrow(fs, root, 10))
            t, ans = timed(n4a(argv), a.runs)
            _, r = counted(proxy, n4a(argv))
            mine = {"rows": [[x["id"], x["val_score"]] for x in ans["records"]]}
            same = "same answer" if mine == pl_a == pa_a else f"DIFFERENT {mine} {pl_a} {pa_a}"
            line("topk", "n4a", t, r, same + f"; ratio {t / min(pl_t, pa_t):.3f}")
            line("topk", "polars scan_parquet", pl_t, pl_r, "")
            line("topk", "pyarrow dataset", pa_t, pa_r, "")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
