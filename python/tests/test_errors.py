"""Errors raised as n4a.errors exceptions with their kind and file; one
bad file of a workspace reported in the answer, the good ones answered."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

import n4a
from n4a import errors
from conftest import FIXTURES, cli_json


def test_every_kind_has_a_class_and_the_hierarchy_is_catchable():
    for kind, cls in errors.KINDS.items():
        e = errors.from_kind(kind, "msg", "/x")
        assert isinstance(e, cls) and isinstance(e, n4a.N4aError)
        assert (e.kind, e.path, str(e)) == (kind, "/x", "msg")
    assert issubclass(errors.IoError, OSError)
    assert issubclass(errors.InvalidQueryError, ValueError)
    assert issubclass(errors.UnknownMetricError, errors.InvalidInputError)


def test_a_missing_workspace_is_an_io_error_naming_it(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(errors.IoError) as e:
        n4a.Workspace(missing)
    assert e.value.kind == "io" and e.value.path == str(missing)
    assert str(missing) in str(e.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda ws: ws.query(sort="val_score:sideways"),
        lambda ws: ws.query(columns=["no_such_column"]),
        lambda ws: ws.query(where="val_score >> 1"),
        lambda ws: ws.query(modle="PLS"),
        lambda ws: ws.top(3, score="metric"),
        lambda ws: ws.top(3, direction="up"),
        lambda ws: ws.stats("colour"),
    ],
)
def test_bad_queries_are_invalid_query_errors(gen_ws, call):
    with pytest.raises(errors.InvalidQueryError) as e:
        call(n4a.Workspace(gen_ws))
    assert e.value.kind == "invalid_query"
    assert e.value.path is None


def test_a_filter_of_the_wrong_type_is_a_type_error(gen_ws):
    with pytest.raises(TypeError, match="model"):
        n4a.Workspace(gen_ws).query(model=3)


def test_one_bad_file_is_reported_and_the_good_ones_answered(tmp_path):
    for name in ("corn_moisture", "grain_class"):
        for f in FIXTURES.glob(f"{name}.*parquet"):
            shutil.copy(f, tmp_path / f.name)
    for bad in ("truncated", "not_parquet"):
        shutil.copy(FIXTURES / f"{bad}.meta.parquet", tmp_path / f"{bad}.meta.parquet")
    ws = n4a.Workspace(tmp_path)
    t = ws.query(sort="val_score:asc", limit=1000)
    got = n4a.info(t)
    want = cli_json("query", tmp_path, "--sort", "val_score:asc", "--limit", 1000, check=False)
    assert got["provenance"] == want["provenance"]
    bad = {e["path"].rsplit("/", 1)[1]: e["kind"] for e in got["provenance"]["errors"]}
    assert bad == {"truncated.meta.parquet": "parquet", "not_parquet.meta.parquet": "parquet"}
    assert set(t.column("dataset").to_pylist()) == {"corn_moisture", "grain_class"}
    assert t.num_rows == got["total"] > 0
    s = ws.summary()
    assert s["total_datasets"] == 2 and len(s["errors"]) == 2


def test_writer_errors_name_what_is_wrong(tmp_path):
    good = pa.table({"model_name": ["PLS"], "val_score": [0.3], "metric": ["mse"], "partition": ["val"]})
    with pytest.raises(errors.InvalidInputError) as e:
        n4a.Writer(tmp_path, "../escape")
    assert e.value.kind == "invalid_dataset_name"
    with pytest.raises(errors.InvalidQueryError, match="closed"):
        with n4a.Writer(tmp_path, "corn") as w:
            with pytest.raises(errors.SchemaError, match="val_scor") as e:
                w.write(good.append_column("val_scor", pa.array([1.0])))
            assert e.value.kind == "schema"
    with pytest.raises(errors.UnknownMetricError, match="my_loss") as e:
        with n4a.Writer(tmp_path, "corn") as w:
            w.write(good.set_column(2, "metric", pa.array(["my_loss"])))
    assert e.value.kind == "unknown_metric"
    with pytest.raises(errors.SchemaError, match="val_score"):
        with n4a.Writer(tmp_path, "corn") as w:
            w.write(good.set_column(1, "val_score", pa.array(["high"])))
    with pytest.raises(TypeError, match="Writer.write"):
        with n4a.Writer(tmp_path, "corn") as w:
            w.write({"val_score": [1.0]})
    left = [p.name for p in tmp_path.iterdir() if not p.name.endswith(".n4a.lock")]
    assert left == [], "nothing of a failed writer is left (the lock file stays, as the Rust writer's)"


def test_a_corrupt_dataset_refuses_an_append_naming_the_file(tmp_path):
    shutil.copy(FIXTURES / "truncated.meta.parquet", tmp_path / "corn.meta.parquet")
    before = (tmp_path / "corn.meta.parquet").read_bytes()
    with pytest.raises(errors.CorruptFileError) as e:
        n4a.Writer(tmp_path, "corn")
    assert e.value.path and e.value.path.endswith("corn.meta.parquet")
    assert (tmp_path / "corn.meta.parquet").read_bytes() == before


def test_info_of_a_foreign_table_is_a_value_error():
    with pytest.raises(ValueError, match="not an n4a answer"):
        n4a.info(pa.table({"a": [1]}))
