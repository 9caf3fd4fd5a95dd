"""Shared fixtures: the n4a CLI the answers are checked against (built by
run-tests; N4A_BIN), and workspaces it generates."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


def cli_path() -> str:
    return os.environ.get("N4A_BIN", str(ROOT / "target" / "debug" / "n4a"))


def cli(*args: Any, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the CLI; fails the test on an unexpected exit code."""
    p = subprocess.run([cli_path(), *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"n4a {' '.join(map(str, args))} exited {p.returncode}: {p.stderr}")
    return p


def cli_json(*args: Any, check: bool = True) -> Any:
    """The CLI's JSON answer (`--format json` added)."""
    return json.loads(cli(*args, "--format", "json", check=check).stdout)


def plain(v: Any) -> Any:
    """JSON-like values with NaN as None (the CLI's JSON has null where
    the Arrow table has NaN), for comparing answers."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def parse_json_text(s: Any) -> Any:
    """A JSON column's text as the CLI's records carry it (parsed, NaN as
    null; the text itself when it is not JSON)."""
    if s is None:
        return None
    try:
        return plain(json.loads(s))
    except ValueError:
        return s


def records_of(table) -> List[dict]:
    """A query table's rows as the CLI's JSON records."""
    rows = table.to_pylist()
    for r in rows:
        for c in ("best_params", "scores"):
            if c in r:
                r[c] = parse_json_text(r[c])
    return plain(rows)


@pytest.fixture(scope="session")
def gen_ws(tmp_path_factory) -> Path:
    """A generated workspace: 3 datasets x 600 rows, regression and
    classification metrics, arrays files."""
    d = tmp_path_factory.mktemp("gen") / "ws"
    cli("gen", d, "--datasets", 3, "--rows", 600, "--seed", 11, "--quiet")
    return d


@pytest.fixture
def nirs4all_ws(tmp_path) -> Path:
    """nirs4all's two real file pairs (1.0 summaries, no n4a state)."""
    d = tmp_path / "nirs4all"
    d.mkdir()
    for name in ("corn_moisture", "grain_class"):
        for suffix in (".meta.parquet", ".arrays.parquet"):
            shutil.copy(FIXTURES / f"{name}{suffix}", d / f"{name}{suffix}")
    return d
