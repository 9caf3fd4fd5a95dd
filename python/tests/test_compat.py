"""Issue 28: every file n4a writes opens, with equal values, in the readers
its users have: polars 0.20.31, 1.0, 1.38.1 and the newest; pyarrow 14, 17
and the newest; DuckDB 1.0, 1.1 and the newest; pandas 2.x through
pyarrow; and nirs4all's own loading calls of the .meta.parquet era.

The environments are made by tests/compat/make-envs under target/compat
(kept between runs; about 2 minutes the first time). Each one runs
tests/compat/read_all.py over every kind of file n4a writes (gen, ingest
into a new dataset and onto nirs4all's files, refresh, import-store,
export-store's arrays, the Python Writer), and the answers are compared
with what the newest pyarrow read. If an environment cannot be made, the
tests fail with the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pyarrow as pa
import pytest

import n4a
from conftest import FIXTURES, ROOT, cli

ENVS = ["y2024", "y2025", "pl138", "newest"]
REFERENCE = ("newest", "pyarrow")
REAL = ROOT.parent / "shared" / "nirs4all" / "real-workspace"


def _real(name: str) -> Path:
    """A real nirs4all file: the shared contract's copy, else the fixture."""
    p = REAL / name
    return p if p.exists() else FIXTURES / name


def _write_files(base: Path) -> List[Dict[str, Any]]:
    """Every kind of file n4a writes, in `base`; the manifest read_all.py
    takes."""
    files: List[Dict[str, Any]] = []

    def add(path: Path, kind: str, original: Any = None, nan_column: Any = None) -> None:
        files.append(
            {
                "path": str(path),
                "kind": kind,
                "original": str(original) if original else None,
                "nan_column": nan_column,
            }
        )

    def pair(d: Path, name: str, original: Any = None) -> None:
        add(d / f"{name}.meta.parquet", "meta", original and original / f"{name}.meta.parquet")
        if (d / f"{name}.arrays.parquet").exists():
            add(
                d / f"{name}.arrays.parquet",
                "arrays",
                original and original / f"{name}.arrays.parquet",
            )

    # nirs4all's originals, read by every environment too (types compared).
    orig = base / "original"
    orig.mkdir()
    for name in ("corn_moisture", "grain_class"):
        for suffix in (".meta.parquet", ".arrays.parquet"):
            shutil.copy(_real(name + suffix), orig / (name + suffix))
        pair(orig, name)

    # gen: regression and classification, with arrays.
    cli("gen", base / "gen", "--datasets", "2", "--rows", "300", "--seed", "3", "--quiet")
    for name in ("corn_000", "grain_001"):
        pair(base / "gen", name)

    # ingest: a new dataset (a name with a space) and an append to a real
    # nirs4all pair.
    lines = []
    for i in range(40):
        lines.append(
            {
                "dataset_name": "new data" if i % 2 else "corn_moisture",
                "config_name": f"cfg_{i % 4}",
                "model_name": "PLS",
                "fold_id": str(i % 5),
                "partition": ("train", "val", "test")[i % 3],
                "val_score": 0.1 + i / 100,
                "test_score": 0.2 + i / 100,
                "metric": "rmse",
                "task_type": "regression",
                "metadata": json.dumps({"i": i}),
                "y_true": [float(i), float(i + 1)],
                "y_pred": [float(i) + 0.5, float(i + 1) + 0.5],
            }
        )
    jsonl = base / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    ing = base / "ingest"
    ing.mkdir()
    for suffix in (".meta.parquet", ".arrays.parquet"):
        shutil.copy(orig / ("corn_moisture" + suffix), ing / ("corn_moisture" + suffix))
    cli("ingest", ing, jsonl, "--quiet")
    pair(ing, "new data")
    pair(ing, "corn_moisture", orig)

    # refresh: nirs4all's pair, n4a 1.1 and a file without a summary.
    ref = base / "refresh"
    ref.mkdir()
    for name in ("corn_moisture", "grain_class"):
        for suffix in (".meta.parquet", ".arrays.parquet"):
            shutil.copy(orig / (name + suffix), ref / (name + suffix))
    for name in ("n4a_1_1", "no_summary"):
        shutil.copy(FIXTURES / f"{name}.meta.parquet", ref / f"{name}.meta.parquet")
    cli("refresh", ref, "--quiet")
    for name in ("corn_moisture", "grain_class"):
        add(ref / f"{name}.meta.parquet", "meta", orig / f"{name}.meta.parquet")
    for name in ("n4a_1_1", "no_summary"):
        add(ref / f"{name}.meta.parquet", "meta")

    # export-store (a nirs4all store's arrays/*.parquet), then import-store.
    cli("export-store", base / "gen", base / "store")
    for p in sorted((base / "store" / "arrays").glob("*.parquet")):
        add(p, "store_arrays")
    cli("import-store", base / "store", base / "imported")
    for name in ("corn_000", "grain_001"):
        pair(base / "imported", name)

    # The Python Writer, with arrays, and a score column of NaN only (its
    # chunk statistics would hold NaN bounds: sealed away).
    py = base / "python"
    py.mkdir()
    n = 30
    t = pa.table(
        {
            "config_name": [f"cfg_{i % 3}" for i in range(n)],
            "model_name": ["RF"] * n,
            "fold_id": [str(i % 5) for i in range(n)],
            "partition": [("val", "test", "train")[i % 3] for i in range(n)],
            "val_score": [0.5 + i / 100 for i in range(n)],
            "test_score": [float("nan")] * n,
            "metric": ["balanced_accuracy"] * n,
            "task_type": ["binary_classification"] * n,
            "y_true": [[1.0, 0.0, float(i)] for i in range(n)],
        }
    )
    with n4a.Writer(py, "wheat") as w:
        w.write(t)
    add(py / "wheat.meta.parquet", "meta", nan_column="test_score")
    add(py / "wheat.arrays.parquet", "arrays")
    return files


def _run_env(env: str, manifest: Path) -> Dict[str, Any]:
    python = ROOT / "target" / "compat" / env / "bin" / "python"
    p = subprocess.run(
        [str(python), str(ROOT / "tests" / "compat" / "read_all.py"), str(manifest)],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        pytest.fail(f"{env}: read_all.py exited {p.returncode}: {p.stderr[-2000:]}")
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Dict[str, Any]:
    made = subprocess.run(
        [str(ROOT / "tests" / "compat" / "make-envs")], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.fail(f"the compatibility environments could not be made: {made.stderr[-3000:]}")
    base = tmp_path_factory.mktemp("compat")
    files = _write_files(base)
    manifest = base / "manifest.json"
    manifest.write_text(json.dumps({"files": files}))
    return {"files": files, "seen": {env: _run_env(env, manifest) for env in ENVS}}


def _ref(matrix: Dict[str, Any], path: str) -> Dict[str, Any]:
    env, reader = REFERENCE
    return matrix["seen"][env]["files"][path][reader]


@pytest.mark.parametrize("env", ENVS)
def test_issue_28_every_reader_opens_every_file_n4a_writes(matrix, env):
    seen = matrix["seen"][env]
    failures = [
        f"{path} [{reader}]: {got['error']}"
        for path, readers in seen["files"].items()
        for reader, got in readers.items()
        if "error" in got
    ]
    assert not failures, f"{env} {seen['versions']}:\n" + "\n".join(failures)
    expected = {"pyarrow", "polars"} | ({"duckdb", "pandas"} if env != "pl138" else set())
    for f in matrix["files"]:
        assert expected <= set(seen["files"][f["path"]]), f"{env}: {f['path']}"


@pytest.mark.parametrize("env", ENVS)
def test_issue_28_values_equal_what_the_newest_pyarrow_reads(matrix, env):
    seen = matrix["seen"][env]
    wrong = []
    for f in matrix["files"]:
        ref = _ref(matrix, f["path"])
        for reader, got in seen["files"][f["path"]].items():
            if "error" in got:
                continue  # reported by the test above
            key = "loose" if reader == "pandas" else "digest"
            if reader != "pandas" and got["columns"] != ref["columns"]:
                wrong.append(f"{f['path']} [{reader}]: columns {got['columns']}")
            if got["rows"] != ref["rows"] or got[key] != ref[key]:
                wrong.append(f"{f['path']} [{reader}]: {got['rows']} rows, values differ")
    assert not wrong, f"{env} {seen['versions']}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("env", ENVS)
def test_issue_28_the_summary_is_where_each_reader_looks(matrix, env):
    seen = matrix["seen"][env]
    for f in matrix["files"]:
        if f["kind"] != "meta":
            continue
        readers = seen["files"][f["path"]]
        plain = readers["pyarrow"]["plain_summary"]
        if plain is None:
            continue
        # nirs4all's loader and its dashboard: pyarrow's schema metadata.
        assert readers["pyarrow"]["summary"] == plain, f"{env} pyarrow: {f['path']}"
        if "duckdb" in readers:
            assert readers["duckdb"]["kv_summary"] == plain, f"{env} duckdb: {f['path']}"
        if "kv_summary" in readers["polars"]:
            assert readers["polars"]["kv_summary"] == plain, f"{env} polars: {f['path']}"


@pytest.mark.parametrize("env", ENVS)
def test_issue_28_refreshed_and_appended_files_keep_nirs4alls_types_and_concatenate(matrix, env):
    seen = matrix["seen"][env]
    pairs = [f for f in matrix["files"] if f["original"]]
    assert len(pairs) == 4, "refresh x2, append (meta and arrays)"
    for f in pairs:
        new = seen["files"][f["path"]]
        old = seen["files"][f["original"]]
        for reader in ("pyarrow", "polars"):
            assert new[reader]["columns"] == old[reader]["columns"], f"{env} {reader}: {f['path']}"
            assert new[reader]["types"] == old[reader]["types"], f"{env} {reader}: {f['path']}"
        assert seen["concat"][f["path"]] == {"pyarrow": "ok", "polars": "ok"}, f"{env}: {f['path']}"
    # The strings stay large_string, as nirs4all wrote them.
    refreshed = [f for f in pairs if "/refresh/" in f["path"]][0]
    assert "large_string" in seen["files"][refreshed["path"]]["pyarrow"]["types"]


@pytest.mark.parametrize("env", ENVS)
def test_issue_28_a_nan_only_score_chunk_is_filtered_as_its_values_say(matrix, env):
    """A column of NaN only: each reader's filters pushed down to the scan
    (where chunk statistics may skip data) answer as on the table read
    whole, by that reader's own NaN rules (polars ranks NaN above every
    number; pyarrow and DuckDB compare as IEEE 754 says)."""
    seen = matrix["seen"][env]
    f = next(f for f in matrix["files"] if f["nan_column"])
    rows = _ref(matrix, f["path"])["rows"]
    for reader in ("pyarrow", "polars", "duckdb"):
        if reader in seen["files"][f["path"]]:
            got = seen["files"][f["path"]][reader]["nan"]
            for name, (pushed, whole) in got.items():
                assert pushed == whole, f"{env} {reader} {name}: {pushed} != {whole}"
            assert got["is_nan"][0] == rows and got["valid"][0] == rows, f"{env} {reader}: {got}"


@pytest.mark.parametrize("env", ["y2024", "pl138"])
def test_issue_28_nirs4all_loads_every_file_it_reads(matrix, env):
    """nirs4all's own calls (polars 0.20.31 and 1.38.1): the meta file's
    rows and JSON columns, the arrays rebuilt to their shapes."""
    seen = matrix["seen"][env]
    for f in matrix["files"]:
        got = seen["files"][f["path"]].get("nirs4all")
        if f["kind"] == "meta":
            assert got and got["decoded_rows"] == got["rows"], f"{env}: {f['path']}"
            assert got["json_kept_as_text"] == 0, f"{env}: {f['path']}"
        elif f["kind"] == "arrays":
            assert got and got["arrays_rebuilt"] == got["rows"], f"{env}: {f['path']}"


def test_issue_28_the_matrix_runs_the_versions_it_names(matrix):
    v = {env: matrix["seen"][env]["versions"] for env in ENVS}
    assert v["y2024"] == {"pyarrow": "14.0.2", "pandas": "2.0.3", "polars": "0.20.31", "duckdb": "1.0.0"}
    assert v["y2025"] == {"pyarrow": "17.0.0", "pandas": "2.2.3", "polars": "1.0.0", "duckdb": "1.1.3"}
    assert v["pl138"] == {"pyarrow": "26.0.1", "polars": "1.38.1"}
    assert v["newest"]["polars"] == "2.1.0" and v["newest"]["duckdb"] == "2.0.1"
    assert sys.version_info >= (3, 9)
