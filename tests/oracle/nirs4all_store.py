"""nirs4all 1.4.10 as the oracle of n4a's store bridge (tests/it/store.rs).

    python nirs4all_store.py make DIR   # a tiny store written by nirs4all's own WorkspaceStore API
    python nirs4all_store.py dump DIR   # every prediction of DIR, with its arrays, as nirs4all reads them back
    python nirs4all_store.py pipelines DIR  # a workspace made by running real nirs4all pipelines (issue 32)
    python nirs4all_store.py views DIR  # nirs4all's own views of DIR's results, ids left out
    python nirs4all_store.py append DIR # nirs4all appends predictions to DIR, batch by batch (a live run)

`dump` opens the workspace with `WorkspaceStore.open_readonly` (the
dashboard's path) and prints one JSON document: the predictions sorted by
id, each with its pipeline's name, its chain's model step and its arrays
(flattened values and shape). NaN is written as the string "NaN".
"""

import json
import math
import sys
from pathlib import Path

import numpy as np

from nirs4all.pipeline.storage.workspace_store import WorkspaceStore


def make(root: Path) -> None:
    ws = WorkspaceStore(root)
    datasets = [("corn", "regression", "rmse"), ("wheat v2", "regression", "r2"), ("seeds", "classification", "accuracy")]
    run = ws.begin_run("n4a-oracle", {"cv": 2}, [{"name": d, "path": d} for d, _, _ in datasets])
    records = []
    deleted = None
    for di, (ds, task, metric) in enumerate(datasets):
        for cfg in range(2):
            pid = ws.begin_pipeline(run, f"cfg_{cfg}_{ds}", {"steps": ["SNV", "PLS"]}, [], ds, f"h{di}")
            steps = [
                {"step_idx": 0, "operator_class": "SNV", "params": {}, "artifact_id": None, "stateless": True},
                {"step_idx": 1, "operator_class": "PLSRegression", "params": {"n_components": cfg + 2}, "artifact_id": None, "stateless": False},
            ]
            chain = ws.save_chain(pid, steps, 1, "sklearn.cross_decomposition.PLSRegression", "SNV", "per_fold", {}, {}, dataset_name=ds)
            for fi, fold in enumerate(["0", "1", "avg"]):
                for pi, part in enumerate(["val", "test", "train"]):
                    base = 0.1 * (di + 1) + 0.01 * cfg + 0.001 * fi + 0.0001 * pi
                    val, test, train = base, base + 0.05, None if part == "val" else base - 0.02
                    pred_id = ws.save_prediction(
                        pid, chain, ds, "PLS", "sklearn.cross_decomposition.PLSRegression", fold, part,
                        val, test, train, metric, task, 5, 10,
                        {part: {metric: val}}, {"n_components": cfg + 2}, None, None, 0, 0.0,
                        preprocessings="SNV",
                    )
                    n = 5
                    if task == "classification":
                        y_true = np.array([0, 1, 1, 2, 0], dtype=np.int64)
                        y_pred = np.array([0, 1, 2, 2, 0], dtype=np.int64)
                        y_proba = np.linspace(0, 1, n * 3).reshape(n, 3)
                    else:
                        y_true = np.linspace(1, 2, n) + di
                        y_pred = y_true + 0.1 * (fi + 1)
                        y_proba = None
                    records.append({
                        "prediction_id": pred_id, "dataset_name": ds, "model_name": "PLS", "fold_id": fold,
                        "partition": part, "metric": metric, "val_score": val, "task_type": task,
                        "y_true": y_true, "y_pred": y_pred, "y_proba": y_proba,
                        "sample_indices": np.arange(n, dtype=np.int32) + 10 * fi,
                        "weights": np.ones(n) * (pi + 1),
                    })
                    if deleted is None and fold == "1" and part == "test":
                        deleted = pred_id
    ws.array_store.save_batch(records)
    # One deletion: the SQLite row goes, its arrays row stays behind a
    # tombstone until nirs4all compacts (64 pending by default).
    assert ws.delete_prediction(deleted)
    ws.close()
    print(json.dumps({"deleted": deleted}))


def _num(x):
    if x is None:
        return None
    x = float(x)
    return "NaN" if math.isnan(x) else x


def _array(a):
    if a is None:
        return None
    a = np.asarray(a)
    return {"values": [_num(v) for v in a.ravel().tolist()], "shape": list(a.shape)}


def dump(root: Path) -> None:
    ws = WorkspaceStore.open_readonly(root)
    df = ws.query_predictions()
    out = []
    for row in sorted(df.iter_rows(named=True), key=lambda r: r["prediction_id"]):
        p = ws.get_prediction(row["prediction_id"], load_arrays=True)
        pipeline = ws.get_pipeline(p["pipeline_id"])
        chain = ws.get_chain(p["chain_id"]) if p.get("chain_id") else None
        out.append({
            "id": p["prediction_id"],
            "dataset_name": p["dataset_name"],
            "config_name": pipeline["name"] if pipeline else None,
            "pipeline_uid": p["pipeline_id"],
            "step_idx": chain["model_step_idx"] if chain else None,
            "model_name": p["model_name"],
            "model_classname": p["model_class"],
            "fold_id": p["fold_id"],
            "partition": p["partition"],
            "val_score": _num(p["val_score"]),
            "test_score": _num(p["test_score"]),
            "train_score": _num(p["train_score"]),
            "metric": p["metric"],
            "task_type": p["task_type"],
            "n_samples": p["n_samples"],
            "n_features": p["n_features"],
            "preprocessings": p["preprocessings"],
            "scores": p["scores"],
            "best_params": p["best_params"],
            "branch_id": p["branch_id"],
            "branch_name": p["branch_name"],
            "exclusion_count": p["exclusion_count"],
            "exclusion_rate": _num(p["exclusion_rate"]),
            "arrays": {k: _array(p.get(k)) for k in ("y_true", "y_pred", "y_proba", "sample_indices", "weights")},
        })
    ws.close()
    print(json.dumps(out))


def pipelines(root: Path) -> None:
    """Runs real nirs4all pipelines into `root` (the default dag-ml engine):
    a regression with refit, an `_or_` of two preprocessings (a winner and a
    score-only loser chain), a classification, on two datasets, plus a third
    run that is then deleted. Prints the run ids and the deleted one."""
    import contextlib
    import io
    import nirs4all
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        reg = nirs4all.generate.regression(n_samples=60, random_state=0, target_component=0, name="reg_tiny")
        clf = nirs4all.generate.classification(n_samples=60, n_classes=2, random_state=0, name="clf_bin")
        runs = [
            nirs4all.run([MinMaxScaler(), KFold(n_splits=3), {"model": PLSRegression(3)}], reg,
                         name="tiny_reg", verbose=0, workspace_path=str(root), random_state=0),
            nirs4all.run([{"_or_": [MinMaxScaler(), StandardScaler()]}, KFold(n_splits=3),
                          {"model": PLSRegression(2)}], reg,
                         name="tiny_or", verbose=0, workspace_path=str(root), random_state=0),
            nirs4all.run([MinMaxScaler(), KFold(n_splits=3, shuffle=True, random_state=0),
                          {"model": DecisionTreeClassifier(random_state=0)}], clf,
                         name="tiny_clf", verbose=0, workspace_path=str(root), random_state=0),
            nirs4all.run([StandardScaler(), KFold(n_splits=3), {"model": PLSRegression(4)}], reg,
                         name="to_delete", verbose=0, workspace_path=str(root), random_state=0),
        ]
    ws = WorkspaceStore(root)
    run_ids = [r[0] for r in ws._conn.execute("SELECT run_id, name FROM runs ORDER BY created_at, rowid").fetchall()]
    names = dict(ws._conn.execute("SELECT run_id, name FROM runs").fetchall())
    gone = [rid for rid, name in names.items() if name.startswith("to_delete")]
    for rid in gone:
        ws.delete_run(rid, delete_artifacts=True)
    ws.close()
    print(json.dumps({"runs": run_ids, "deleted": gone, "engines": [r.execution_engine for r in runs]}))


def append(root: Path, batches: int = 20, pause: float = 0.1) -> None:
    """Plays a nirs4all run writing into a store a server reads: one new
    pipeline and chain of dataset `corn`, then `batches` commits of 3 rows
    each (fold i: val, test, train), `pause` seconds apart, through
    nirs4all's own API (its retries on a locked database included). Prints
    how many rows were written and how many writes failed."""
    import time

    ws = WorkspaceStore(root)
    run = ws.begin_run("live", {}, [{"name": "corn", "path": "corn"}])
    pid = ws.begin_pipeline(run, "live_cfg", {}, [], "corn", "hlive")
    chain = ws.save_chain(pid, [], 1, "PLSRegression", "SNV", "per_fold", {}, {}, dataset_name="corn")
    written = failed = 0
    for b in range(batches):
        try:
            with ws.transaction():
                for part in ("val", "test", "train"):
                    ws.save_prediction(
                        pid, chain, "corn", "PLS-live", "PLSRegression", str(b), part,
                        0.5 + b / 100, 0.6, None if part == "val" else 0.4, "rmse", "regression", 5, 10,
                        {part: {"rmse": 0.5}}, {}, None, None, 0, 0.0, preprocessings="SNV",
                    )
            written += 3
        except Exception as e:  # a failed write is what the test counts
            failed += 1
            print(f"write failed: {e!r}", file=sys.stderr)
        time.sleep(pause)
    ws.bulk_update_chain_summaries([chain])
    ws.complete_pipeline(pid, 0.5, 0.6, "rmse", 0)
    ws.complete_run(run, {})
    ws.close()
    print(json.dumps({"written": written, "failed": failed}))


def _plain(v):
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else v
    if hasattr(v, "isoformat"):
        return None
    return v


def _frame(df, drop):
    return [{k: _plain(v) for k, v in row.items() if k not in drop} for row in df.iter_rows(named=True)]


def views(root: Path) -> None:
    """nirs4all's views of a workspace's results, as a user reads them:
    every chain summary, the top chains of each metric by cross-validation
    and by final (refit) test score, and the top predictions of each
    partition; ids, run ids and times left out (they name, not measure)."""
    ws = WorkspaceStore.open_readonly(root)
    ids = {"chain_id", "pipeline_id", "run_id", "created_at", "prediction_id", "completed_at"}
    chains = _frame(ws.query_chain_summaries(), ids)
    chains.sort(key=lambda c: json.dumps(c, sort_keys=True))
    metrics = sorted({c["metric"] for c in chains if c.get("metric")})
    top = {}
    for m in metrics:
        for col in ("cv_val_score", "final_test_score"):
            top[f"{m}/{col}"] = _frame(ws.query_top_chains(metric=m, n=50, score_column=col), ids)
    preds = {}
    for part in ("val", "test", "train"):
        for ds in sorted({c["dataset_name"] for c in chains}):
            df = ws.top_predictions(n=1000, metric="val_score", ascending=True, partition=part, dataset_name=ds)
            rows = _frame(df, ids | {"chain_id", "pipeline_id"})
            rows.sort(key=lambda r: json.dumps(r, sort_keys=True))
            preds[f"{ds}/{part}"] = rows
    n = ws._conn.execute("SELECT count(*) FROM predictions").fetchone()[0]
    ws.close()
    print(json.dumps({"predictions": n, "chains": chains, "top_chains": top, "top_predictions": preds}))


if __name__ == "__main__":
    cmd, root = sys.argv[1], Path(sys.argv[2])
    {"make": make, "dump": dump, "pipelines": pipelines, "views": views, "append": append}[cmd](root)
