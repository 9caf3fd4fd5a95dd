"""Workspace.summary, query, top and stats against the CLI's answers on
the same workspace, and refresh against `n4a refresh`."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import n4a
from conftest import FIXTURES, cli, cli_json, plain, records_of


def merged(s: dict) -> dict:
    """A workspace summary without the time it was merged at."""
    s = plain(s)
    assert s.pop("generated_at")
    return s


def test_summary_is_the_clis(gen_ws):
    ws = n4a.Workspace(str(gen_ws))
    assert merged(ws.summary()) == merged(cli_json("summary", gen_ws))


def test_summary_of_nirs4all_files_is_the_clis(nirs4all_ws):
    assert merged(n4a.Workspace(str(nirs4all_ws)).summary()) == merged(cli_json("summary", nirs4all_ws))


PAGES = [
    dict(kw=dict(), flags=[]),
    dict(kw=dict(offset=700, limit=30), flags=["--offset", 700, "--limit", 30]),
    dict(
        kw=dict(partition="val", metric="mse", sort="val_score:asc", offset=0, limit=50),
        flags=["--partition", "val", "--metric", "mse", "--sort", "val_score:asc", "--limit", 50],
    ),
    dict(
        kw=dict(sort="test_score:desc", offset=13, limit=17, where="val_score>=0.5"),
        flags=["--sort", "test_score:desc", "--offset", 13, "--limit", 17, "--where", "val_score>=0.5"],
    ),
    dict(
        kw=dict(model=["SVR", "PLSRegression"], fold=("0", "avg"), sort="config_name", limit=40),
        flags=["--model", "SVR,PLSRegression", "--fold", "0,avg", "--sort", "config_name", "--limit", 40],
    ),
    dict(
        kw=dict(dataset="corn_001", columns=["id", "val_score", "dataset"], sort="id:desc", limit=5),
        flags=["--dataset", "corn_001", "--columns", "id,val_score,dataset", "--sort", "id:desc", "--limit", 5],
    ),
    dict(kw=dict(metric="nothing_like_it"), flags=["--metric", "nothing_like_it"]),
    dict(kw=dict(limit=0, partition="test"), flags=["--limit", 0, "--partition", "test"]),
]


@pytest.mark.parametrize("case", PAGES, ids=lambda c: str(c["kw"]) or "default")
def test_query_is_the_clis(gen_ws, case):
    ws = n4a.Workspace(gen_ws)
    t = ws.query(**case["kw"])
    want = cli_json("query", gen_ws, *case["flags"])
    assert isinstance(t, pa.Table)
    assert records_of(t) == plain(want.pop("records"))
    assert n4a.info(t) == want
    if case["kw"].get("columns"):
        assert t.column_names == case["kw"]["columns"]


def test_query_types_are_the_contracts(gen_ws):
    """The contract's types: int64, float64, strings (the files declare
    nirs4all's large_string since issue 28; answers hold utf8, which the
    contract allows, whatever each file declares)."""
    t = n4a.Workspace(gen_ws).query(limit=3)
    files = pq.read_schema(next(gen_ws.glob("*.meta.parquet")))
    assert t.column_names[0] == "dataset"
    for f in files:
        want = pa.string() if f.type == pa.large_string() else f.type
        assert t.schema.field(f.name).type == want, f.name


TOPS = [
    dict(kw=dict(k=5, metric="mse"), flags=["--k", 5, "--metric", "mse"]),
    dict(kw=dict(k=7, metric="r2", partition="all"), flags=["--k", 7, "--metric", "r2", "--partition", "all"]),
    dict(
        kw=dict(k=12, metric="mse", score="test_score", where="val_score<1"),
        flags=["--k", 12, "--metric", "mse", "--score", "test_score", "--where", "val_score<1"],
    ),
    dict(kw=dict(k=4, direction="max"), flags=["--k", 4, "--direction", "max"]),
    dict(kw=dict(k=30, metric="balanced_accuracy", fold="avg"), flags=["--k", 30, "--metric", "balanced_accuracy", "--fold", "avg"]),
]


@pytest.mark.parametrize("case", TOPS, ids=lambda c: str(c["kw"]))
def test_top_is_the_clis(gen_ws, case):
    kw = dict(case["kw"])
    t = n4a.Workspace(gen_ws).top(kw.pop("k"), **kw)
    want = cli_json("top", gen_ws, *case["flags"])
    got = t.to_pylist()
    info = n4a.info(t)

    def shown(rows):
        return [{k: v for k, v in r.items() if v is not None or k not in ("dataset", "train_score")} for r in rows]

    if "records" in want:
        # One metric: one list, as the CLI's top-level answer.
        want.pop("by_metric")
        assert shown(got) == want.pop("records")
        assert info == want
    else:
        # Several metrics (issue 29): one list each, the table led by a
        # `metric` column, each list's answer under `by_metric`.
        lists = want["by_metric"]
        assert t.column_names[0] == "metric"
        assert [m["metric"] for m in info["by_metric"]] == [w["metric"] for w in lists]
        for m, w in zip(info["by_metric"], lists, strict=True):
            rows = [{k: v for k, v in r.items() if k != "metric"} for r in got if r["metric"] == w["metric"]]
            assert shown(rows) == w.pop("records")
            assert m == w


def test_top_of_mixed_metrics_gives_one_list_per_metric_like_the_cli(gen_ws):
    """Issue 29: the README's `top WS --k 5` on a workspace of several
    metrics answers the best of each metric by its own direction, never a
    refusal and never one ranking across metrics."""
    t = n4a.Workspace(gen_ws).top(3)
    lists = n4a.info(t)["by_metric"]
    assert len(lists) > 1
    rows = t.to_pylist()
    for m in lists:
        scores = [r["val_score"] for r in rows if r["metric"] == m["metric"]]
        assert 0 < len(scores) <= 3
        lower = m["direction"] == "minimize"
        assert scores == sorted(scores, reverse=not lower), m
    want = cli_json("top", gen_ws, "--k", 3)
    assert [m["metric"] for m in want["by_metric"]] == [m["metric"] for m in lists]


def test_a_workspace_of_mixed_metrics_answers_per_metric_like_the_cli(tmp_path):
    """Issue 29, on the mixed-metrics fixture (nirs4all's files plus
    generated rows of four metrics): the best instances of each metric, the
    groupings per metric and partition, and the summary's per-metric parts,
    as the CLI answers them."""
    ws_dir = tmp_path / "mixed"
    shutil.copytree(FIXTURES / "mixed-workspace", ws_dir)
    ws = n4a.Workspace(str(ws_dir))
    t = ws.top(3)
    want = cli_json("top", ws_dir, "--k", 3)
    lists = want["by_metric"]
    assert [m["metric"] for m in lists] == ["accuracy", "balanced_accuracy", "mse", "rmse"]
    rows = t.to_pylist()
    for w in lists:
        got = [r["id"] for r in rows if r["metric"] == w["metric"]]
        assert got == [r["id"] for r in w["records"]], w["metric"]
    s = ws.stats("model", partition="all")
    want = cli_json("stats", ws_dir, "--group-by", "model", "--partition", "all")
    splits = [(m["metric"], m["partition"]) for m in n4a.info(s)["by_metric"]]
    assert splits == [(m["metric"], m["partition"]) for m in want["by_metric"]]
    assert sum(s.column("count").to_pylist()) == n4a.info(ws.query(limit=0))["total"]
    summary = ws.summary()
    assert summary["stats"] is None
    assert all(m["avg_val_score"] is None for m in summary["models"])
    assert sorted(m["name"] for m in summary["metrics"]) == ["accuracy", "balanced_accuracy", "mse", "rmse"]


STATS = [
    dict(args=("model",), kw=dict(metric="mse"), flags=["--group-by", "model", "--metric", "mse"]),
    dict(args=("config",), kw=dict(), flags=["--group-by", "config"]),
    dict(args=("fold",), kw=dict(count_mean_only=True), flags=["--group-by", "fold", "--count-mean-only"]),
    dict(args=("dataset",), kw=dict(direction="min", partition="all"), flags=["--group-by", "dataset", "--direction", "min", "--partition", "all"]),
]


@pytest.mark.parametrize("case", STATS, ids=lambda c: f"{c['args']} {c['kw']}")
def test_stats_is_the_clis(gen_ws, case):
    t = n4a.Workspace(gen_ws).stats(*case["args"], **case["kw"])
    want = cli_json("stats", gen_ws, *case["flags"])
    key = t.column_names[2] if "by_metric" in want else t.column_names[0]
    rows = plain(t.to_pylist())
    info = n4a.info(t)
    if "by_metric" in want:
        # One grouping per metric and partition (issue 29), the table led
        # by the two.
        assert t.column_names[:2] == ["metric", "partition"]
        got = []
        for m in info["by_metric"]:
            groups = [
                {k: v for k, v in r.items() if k not in ("metric", "partition")}
                for r in rows
                if (r["metric"], r["partition"]) == (m["metric"], m["partition"])
            ]
            got.append(dict(m, groups=groups))
        expected = want["by_metric"]
    else:
        got, expected = [dict(info, groups=rows)], [want]
    for g, w in zip(got, expected, strict=True):
        groups = [
            {("key" if k == key else k): v for k, v in r.items() if v is not None or k in ("key", key, "mean")}
            for r in g.pop("groups")
        ]
        assert groups == plain(w.pop("groups"))
        assert g == w


def test_refresh_matches_the_clis_report(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        for name in ("corn_moisture", "grain_class", "truncated"):
            for f in FIXTURES.glob(f"{name}.*parquet"):
                shutil.copy(f, d / f.name)
    mine = n4a.refresh(a)
    theirs = cli_json("refresh", b, check=False)
    def strip(r, folder):
        return [
            {
                k: (v.replace(str(folder), "WS") if isinstance(v, str) else v)
                for k, v in f.items()
                if k not in ("millis", "path")
            }
            for f in r["files"]
        ]

    assert strip(mine, a) == strip(theirs, b)
    assert (mine["refreshed"], mine["failed"]) == (theirs["refreshed"], theirs["failed"]) == (2, 1)
    # Refreshed files now carry n4a's state: a query is answered from them.
    assert n4a.info(n4a.Workspace(a).top(3, dataset="corn_moisture"))["served_by"] == "footers"
    dry = n4a.refresh(b, verify=True, dry_run=True)
    assert dry["write"] is False and dry["failed"] == 1


def test_refresh_fix_needs_verify(tmp_path):
    with pytest.raises(n4a.errors.InvalidQueryError, match="verify"):
        n4a.refresh(tmp_path, fix=True)


def test_a_store_workspace_is_read_like_the_cli(gen_ws, tmp_path, monkeypatch):
    store = tmp_path / "store"
    cli("export-store", gen_ws, store)
    monkeypatch.setenv("N4A_CACHE_DIR", str(tmp_path / "cache"))
    ws = n4a.Workspace(store)
    t = ws.query(sort="val_score:desc", metric="r2", limit=20)
    want = cli_json("query", store, "--sort", "val_score:desc", "--metric", "r2", "--limit", 20)
    assert records_of(t) == plain(want.pop("records"))
    assert n4a.info(t)["total"] == want["total"]
    assert ws.summary()["total_predictions"] == 1800


def test_reads_release_the_gil_while_they_wait(gen_ws, tmp_path, monkeypatch):
    """Opening a store imports it inside Rust; with the database locked the
    import waits in SQLite's busy handler (5 s). The main thread can end
    the lock only if the waiting thread let go of the GIL: otherwise the
    import times out and raises SqliteError.

    The lock is held by another process: POSIX locks are per process, so a
    second SQLite library in this process (Python's own) would not block
    the binding's bundled one."""
    import subprocess
    import sys
    import threading
    import time

    store = tmp_path / "store"
    cli("export-store", gen_ws, store)
    monkeypatch.setenv("N4A_CACHE_DIR", str(tmp_path / "cache"))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('PRAGMA journal_mode = DELETE')\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "db.execute('UPDATE runs SET name = name')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "db.execute('ROLLBACK')\n",
            str(store / "store.sqlite"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        got = {}

        def read():
            try:
                got["total"] = n4a.info(n4a.Workspace(store).query(limit=0))["total"]
            except Exception as e:  # noqa: BLE001 - reported below
                got["error"] = e

        t = threading.Thread(target=read)
        t.start()
        time.sleep(0.5)
        assert t.is_alive(), f"the read should be waiting for the lock: {got}"
        holder.communicate("\n", timeout=30)
        t.join(timeout=60)
        assert got == {"total": 1800}
    finally:
        if holder.poll() is None:
            holder.kill()


def test_workspace_path_is_the_folder_as_given(gen_ws):
    from pathlib import Path

    ws = n4a.Workspace(str(gen_ws))
    assert ws.path == Path(gen_ws) and isinstance(ws.path, Path)
    assert repr(ws) == f'Workspace("{gen_ws}")'
