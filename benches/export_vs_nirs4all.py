"""Export rate: `n4a export-store` against nirs4all 1.4.10 writing the same
predictions through its own API, in one sitting (issue 32).

    target/nirs4all-venv/bin/python benches/export_vs_nirs4all.py \
        --ws target/peer-bench/data/big-10 --n4a target/release/n4a [--rows 20000] [--runs 3]

n4a: `n4a export-store WS OUT` whole process (a fresh OUT each run), median
of --runs, predictions per second over every row of WS.
nirs4all: the first --rows rows of WS (pyarrow), written the way nirs4all's
own runs write them: `WorkspaceStore` (a new store), `begin_run`, one
`begin_pipeline` per pipeline_uid, one `save_chain` per chain, every
`save_prediction` in one transaction, `bulk_update_chain_summaries`,
`complete_pipeline`, `complete_run`, close; in-process, median of --runs,
predictions per second. No arrays on either side unless WS has them (n4a
copies them; nirs4all's `save_batch` is not called here).
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq


def n4a_rate(n4a, ws, runs):
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in glob.glob(os.path.join(ws, "*.meta.parquet")))
    times = []
    for _ in range(runs):
        out = tempfile.mkdtemp(prefix="n4a-export-")
        shutil.rmtree(out)
        t = time.perf_counter()
        subprocess.run([n4a, "export-store", ws, out, "--format", "json"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
        shutil.rmtree(out, ignore_errors=True)
    med = statistics.median(times)
    return rows, med, rows / med


def first_rows(ws, n):
    out = []
    for f in sorted(glob.glob(os.path.join(ws, "*.meta.parquet"))):
        t = pq.read_table(f).to_pylist()
        ds = os.path.basename(f)[: -len(".meta.parquet")]
        for r in t:
            r["dataset_name"] = r.get("dataset_name") or ds
            out.append(r)
            if len(out) >= n:
                return out
    return out


def nirs4all_once(rows):
    from nirs4all.pipeline.storage.workspace_store import WorkspaceStore

    root = tempfile.mkdtemp(prefix="nirs4all-export-")
    t = time.perf_counter()
    ws = WorkspaceStore(root)
    run = ws.begin_run("bench", {}, [])
    pipelines, chains = {}, {}
    with ws.transaction():
        for r in rows:
            ds = r["dataset_name"]
            uid = (r.get("pipeline_uid") or "p", ds)
            if uid not in pipelines:
                pipelines[uid] = ws.begin_pipeline(run, r.get("config_name") or "cfg", {}, [], ds, "h")
            pid = pipelines[uid]
            key = (pid, r.get("step_idx"), r.get("model_name"), r.get("branch_id"))
            if key not in chains:
                chains[key] = ws.save_chain(pid, [], r.get("step_idx") or 0, r.get("model_classname") or "",
                                            r.get("preprocessings") or "", "per_fold", {}, {}, dataset_name=ds)
            ws.save_prediction(
                pid, chains[key], ds, r.get("model_name") or "", r.get("model_classname") or "",
                r.get("fold_id") or "", r.get("partition") or "", r.get("val_score"), r.get("test_score"),
                r.get("train_score"), r.get("metric") or "", r.get("task_type") or "",
                r.get("n_samples") or 0, r.get("n_features") or 0,
                json.loads(r["scores"]) if r.get("scores") else {},
                json.loads(r["best_params"]) if r.get("best_params") else {},
                r.get("branch_id"), r.get("branch_name"), r.get("exclusion_count") or 0,
                r.get("exclusion_rate") or 0.0, preprocessings=r.get("preprocessings") or "",
                prediction_id=r.get("id"),
            )
    ws.bulk_update_chain_summaries(list(chains.values()))
    for pid in pipelines.values():
        ws.complete_pipeline(pid, None, None, None, 0)
    ws.complete_run(run, {})
    ws.close()
    took = time.perf_counter() - t
    shutil.rmtree(root, ignore_errors=True)
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ws", required=True)
    ap.add_argument("--n4a", required=True)
    # nirs4all writes about 500 predictions a second (measured): 20,000 is ~40 s a run.
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    n, t, rate = n4a_rate(a.n4a, a.ws, a.runs)
    print(f"n4a export-store      {n:>9,} predictions  {t:8.2f} s  {rate:>9,.0f} /s  (whole process, median of {a.runs})")
    rows = first_rows(a.ws, a.rows)
    times = [nirs4all_once(rows) for _ in range(a.runs)]
    med = statistics.median(times)
    print(f"nirs4all 1.4.10 API   {len(rows):>9,} predictions  {med:8.2f} s  {len(rows) / med:>9,.0f} /s  (in-process, median of {a.runs})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
