#!/usr/bin/env python3
"""The nirs4all web app's page loads against `n4a serve` and against the
app's own Python backend (GBeurier/nirs4all-webapp 8ee91f4), on the same
workspace, in one sitting (issue 30).

    webapp_vs_app.py --ws DIR [--ws DIR ...] --n4a target/release/n4a \
        [--app-src target/webapp/src] [--runs 7] [--timeout 600]

Each page is the calls its frontend makes once the workspace is known:
Predictions (the summary, then the first data page of 50), its next page,
the dataset filter (first page of one dataset), Results and Runs (the runs
list). Cold: the first call after the server starts (the page cache warm:
both peers read files the OS holds). Warm: the median of --runs calls
after. Whole HTTP calls, timed from this client over loopback. Answers are
compared where the two must agree (totals, the page's ids); the runs list
differs on purpose (README: "The nirs4all web app").

The app's backend is its `api/` package mounted as its main.py mounts it
(only the workspace and dashboard routers, as in target/research's
harness), in a venv made here (fastapi, uvicorn, pandas<3, numpy<2.3,
pyarrow, pyyaml), with the workspace linked and active through its
settings file (NIRS4ALL_CONFIG in a temporary folder). Its source is not
in this repository: give --app-src (a checkout of 8ee91f4).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP_VENV = ROOT / "target" / "webapp" / "app-venv"

HARNESS = '''
import os, sys
sys.path.insert(0, os.environ["APP_SRC"])
from fastapi import FastAPI, Request, HTTPException
from fastapi.responses import JSONResponse
from api.workspace import router as workspace_router
from api.dashboard import router as dashboard_router
app = FastAPI()
@app.exception_handler(HTTPException)
async def h1(request: Request, exc: HTTPException):
    return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail})
app.include_router(workspace_router, prefix="/api")
app.include_router(dashboard_router, prefix="/api")
'''


def app_venv():
    py = APP_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(APP_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "fastapi", "uvicorn", "httpx",
                        "pandas<3", "numpy<2.3", "pyarrow", "pyyaml"], check=True)
    return py


def get(url, timeout):
    t0 = time.perf_counter()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Content-Type": "application/json"}),
                                timeout=timeout) as r:
        body = r.read()
    return time.perf_counter() - t0, json.loads(body)


def wait(url, proc, limit=120):
    t0 = time.time()
    while time.time() - t0 < limit:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"server did not answer {url}")


def pages(base, wid, dataset):
    w = f"{base}/api/workspaces/{wid}"
    return {
        "predictions": [f"{w}/predictions/summary", f"{w}/predictions/data?limit=50"],
        "next page": [f"{w}/predictions/data?limit=50&offset=50"],
        "dataset filter": [f"{w}/predictions/data?limit=50&dataset={urllib.request.quote(dataset)}"],
        "results": [f"{base}/api/workspaces", f"{w}/runs"],
        "runs": [f"{w}/runs"],
    }


def time_pages(base, wid, dataset, runs, timeout):
    out = {}
    for page, urls in pages(base, wid, dataset).items():
        times, answers = [], None
        for i in range(runs + 1):
            t = 0.0
            ans = []
            for u in urls:
                try:
                    dt, v = get(u, timeout)
                except Exception as e:  # a timeout or an error: say so
                    out[page] = {"error": f"{u}: {e}"}
                    break
                t += dt
                ans.append(v)
            else:
                times.append(t)
                answers = ans
                continue
            break
        if page in out:
            continue
        out[page] = {"cold_s": times[0], "warm_s": statistics.median(times[1:]), "answers": answers}
    return out


def start_n4a(n4a, ws, port):
    p = subprocess.Popen([n4a, "serve", ws, "--addr", f"127.0.0.1:{port}", "--quiet"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait(f"http://127.0.0.1:{port}/healthz", p)
    return p


def start_app(py, src, ws, port, cfg):
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "app_settings.json").write_text(json.dumps({
        "version": "3.0",
        "linked_workspaces": [{"id": "ws_bench", "path": str(Path(ws).resolve()), "name": Path(ws).name,
                               "is_active": True, "linked_at": "2026-12-07T00:00:00",
                               "last_scanned": None, "discovered": {}}],
    }))
    (cfg / "harness.py").write_text(HARNESS)
    cwd = cfg / "cwd"
    cwd.mkdir(exist_ok=True)
    env = dict(os.environ, APP_SRC=str(src), NIRS4ALL_CONFIG=str(cfg), HOME=str(cfg), PYTHONPATH=str(cfg))
    p = subprocess.Popen([str(py), "-m", "uvicorn", "harness:app", "--port", str(port), "--log-level", "warning"],
                         cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait(f"http://127.0.0.1:{port}/api/workspaces", p)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", action="append", required=True)
    ap.add_argument("--n4a", required=True)
    ap.add_argument("--app-src", default=str(ROOT / "target" / "webapp" / "src"))
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--no-app", action="store_true")
    a = ap.parse_args()
    py = None if a.no_app else app_venv()
    print(f"{'workspace':<14} {'page':<15} {'n4a cold':>9} {'n4a warm':>9} {'app cold':>9} {'app warm':>9} {'warm ratio':>10}  answer")
    for ws in a.ws:
        dataset = sorted(p.name[:-len(".meta.parquet")] for p in Path(ws).glob("*.meta.parquet"))[0]
        p = start_n4a(a.n4a, ws, 8791)
        try:
            wid = get("http://127.0.0.1:8791/api/workspaces", 30)[1]["active_workspace_id"]
            mine = time_pages("http://127.0.0.1:8791", wid, dataset, a.runs, a.timeout)
        finally:
            p.terminate()
            p.wait()
        theirs = {}
        if py:
            with tempfile.TemporaryDirectory() as t:
                q = start_app(py, a.app_src, ws, 8792, Path(t))
                try:
                    theirs = time_pages("http://127.0.0.1:8792", "ws_bench", dataset, a.runs, a.timeout)
                finally:
                    q.terminate()
                    q.wait()
        for page, m in mine.items():
            o = theirs.get(page, {})
            if "error" in m:
                print(f"{Path(ws).name:<14} {page:<15} n4a error {m['error'][:80]}")
                continue
            same = ""
            if "answers" in o and page in ("predictions", "next page", "dataset filter"):
                mt, ot = m["answers"][-1], o["answers"][-1]
                same = "same" if (mt["total"] == ot["total"]) else f"DIFFERENT total {mt['total']} vs {ot['total']}"
            ac = f"{o['cold_s']:9.3f}" if "cold_s" in o else f"{'-':>9}"
            aw = f"{o['warm_s']:9.3f}" if "warm_s" in o else f"{'-':>9}"
            ratio = f"{m['warm_s'] / o['warm_s']:10.4f}" if "warm_s" in o else f"{o.get('error', '-')[:40]:>10}"
            print(f"{Path(ws).name:<14} {page:<15} {m['cold_s']:9.3f} {m['warm_s']:9.3f} {ac} {aw} {ratio}  {same}", flush=True)


if __name__ == "__main__":
    main()
