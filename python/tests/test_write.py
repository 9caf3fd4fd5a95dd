"""n4a.Writer: rows from pyarrow, polars and pandas, read back by pyarrow,
polars and n4a; atomicity, appends, arrays, the lock with the GIL
released."""

from __future__ import annotations

import json
import threading

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import n4a
from conftest import cli_json


def rows(n: int, start: int = 0, metric: str = "mse", model: str = "PLS") -> pa.Table:
    """n prediction rows of one config: val/test/train scores of one fold each."""
    return pa.table(
        {
            "config_name": [f"cfg_{(start + i) % 3}" for i in range(n)],
            "model_name": [model] * n,
            "fold_id": [str((start + i) % 5) for i in range(n)],
            "partition": [("val", "test", "train")[(start + i) % 3] for i in range(n)],
            "val_score": [0.1 + 0.01 * (start + i) for i in range(n)],
            "test_score": [0.2 + 0.01 * (start + i) for i in range(n)],
            "metric": [metric] * n,
            "task_type": ["regression"] * n,
        }
    )


def test_write_then_read_by_pyarrow_polars_and_n4a(tmp_path):
    with n4a.Writer(tmp_path, "corn") as w:
        assert w.write(rows(40)) == 40
        assert w.write(rows(20, start=40).to_batches()[0]) == 20
    assert w.summary["total_predictions"] == 60
    assert w.summary["ranking"]["direction"] == "minimize"
    meta = tmp_path / "corn.meta.parquet"
    assert (tmp_path / "corn.arrays.parquet").exists()
    t = pq.read_table(meta)
    assert t.num_rows == 60 and len(t.schema) == 35
    assert t.column("val_score").to_pylist() == pytest.approx([0.1 + 0.01 * i for i in range(60)])
    assert set(t.column("dataset_name").to_pylist()) == {"corn"}
    assert all(t.column("id").to_pylist())
    assert b"n4a_summary" in pq.read_metadata(meta).metadata
    df = pl.read_parquet(meta)
    assert df.height == 60 and df["model_name"].unique().to_list() == ["PLS"]
    assert cli_json("summary", tmp_path)["total_predictions"] == 60
    best = n4a.Workspace(tmp_path).top(1)
    assert best.column("val_score").to_pylist() == [pytest.approx(0.1)]


def test_polars_frames_and_lazy_frames(tmp_path):
    with n4a.Writer(tmp_path, "wheat") as w:
        w.write(pl.from_arrow(rows(30)))
        w.write(pl.from_arrow(rows(6, start=30)).lazy())
    got = pl.from_arrow(n4a.Workspace(tmp_path).query(sort="val_score:asc", limit=100))
    assert got.height == 36
    assert got["val_score"].to_list() == pytest.approx([0.1 + 0.01 * i for i in range(36)])


def test_pandas_round_trip(tmp_path):
    df = rows(25).to_pandas()
    df["step_idx"] = pd.Series(range(25), dtype="int32")  # cast to the contract's int64
    df["model_name"] = df["model_name"].astype("category")  # dictionary strings
    with n4a.Writer(tmp_path, "soy") as w:
        w.write(df)
    back = n4a.Workspace(tmp_path).query(columns=list(df.columns), limit=100).to_pandas()
    back["step_idx"] = back["step_idx"].astype("int32")
    back["model_name"] = back["model_name"].astype("category")
    pd.testing.assert_frame_equal(back, df, check_dtype=True)


def test_a_file_pandas_wrote_with_categoricals_reads_and_appends(tmp_path):
    """pandas through pyarrow records categoricals as dictionary<int8,
    large_string> in ARROW:schema; n4a reads the Parquet strings under it."""
    with n4a.Writer(tmp_path, "soy") as w:
        w.write(rows(30))
    path = tmp_path / "soy.meta.parquet"
    table = pq.read_table(path)
    categorical = pa.dictionary(pa.int8(), pa.large_string())
    for col in ("model_name", "partition", "metric"):
        # the type pandas' category becomes (the other columns keep theirs:
        # through pandas an all-null int64 column would come back float64)
        i = table.schema.get_field_index(col)
        table = table.set_column(i, col, table.column(col).cast(categorical))
    pq.write_table(table, path)
    df = table.to_pandas()
    assert pa.types.is_dictionary(pq.ParquetFile(path).schema_arrow.field("partition").type)
    ws = n4a.Workspace(tmp_path)
    page = ws.query(partition="val", sort="val_score:asc", limit=100)
    assert n4a.info(page)["provenance"]["errors"] == []
    assert page.column("partition").to_pylist() == ["val"] * 10
    assert page.column("val_score").to_pylist() == sorted(
        v for v, p in zip(df["val_score"], df["partition"]) if p == "val"
    )
    with n4a.Writer(tmp_path, "soy") as w:
        w.write(rows(3, start=30))
    back = pq.read_table(path)
    assert back.num_rows == 33
    assert back.column("model_name").to_pylist() == ["PLS"] * 33


def test_append_keeps_rows_and_append_false_replaces_them(tmp_path):
    for start in (0, 10):
        with n4a.Writer(tmp_path, "corn") as w:
            w.write(rows(10, start=start))
    assert n4a.info(n4a.Workspace(tmp_path).query(limit=0))["total"] == 20
    with n4a.Writer(tmp_path, "corn", append=False) as w:
        assert w.num_rows == 0
        w.write(rows(3))
    assert pq.read_table(tmp_path / "corn.meta.parquet").num_rows == 3


def test_an_exception_in_the_block_leaves_the_old_files(tmp_path):
    with n4a.Writer(tmp_path, "corn") as w:
        w.write(rows(5))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(RuntimeError):
        with n4a.Writer(tmp_path, "corn") as w:
            w.write(rows(50, start=5))
            raise RuntimeError("the caller failed")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_bad_batch_commits_nothing_even_when_caught(tmp_path):
    with n4a.Writer(tmp_path, "corn") as w:
        w.write(rows(5))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(n4a.errors.InvalidQueryError, match="closed"):
        with n4a.Writer(tmp_path, "corn") as w:
            w.write(rows(5, start=5))
            with pytest.raises(n4a.errors.UnknownMetricError):
                w.write(rows(5, metric="my_loss"))
            # the writer was aborted: closing it at the block's end raises
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_arrays_go_to_the_arrays_file(tmp_path):
    t = rows(2).append_column("y_true", pa.array([[1.0, 2.0, 3.0], [4.0, 5.0]]))
    t = t.append_column("y_proba", pa.array([[[0.1, 0.9], [0.8, 0.2]], None]))
    with n4a.Writer(tmp_path, "corn") as w:
        w.write(t)
    meta = pq.read_table(tmp_path / "corn.meta.parquet")
    arrays = pq.read_table(tmp_path / "corn.arrays.parquet").to_pylist()
    by_id = {a["array_id"]: a for a in arrays}
    y_true = [by_id[i] for i in meta.column("y_true_id").to_pylist()]
    assert [a["array_data"] for a in y_true] == [[1.0, 2.0, 3.0], [4.0, 5.0]]
    proba = meta.column("y_proba_id").to_pylist()
    assert proba[1] is None
    assert by_id[proba[0]]["array_data"] == [0.1, 0.9, 0.8, 0.2]
    assert json.loads(by_id[proba[0]]["array_shape"]) == [2, 2]


def test_a_second_writer_waits_for_the_lock_with_the_gil_released(tmp_path):
    first = n4a.Writer(tmp_path, "corn")
    first.write(rows(10))
    done = threading.Event()

    def second():
        # Blocks inside Rust on the dataset's lock until `first` closes;
        # were the GIL held meanwhile, this thread would freeze the test.
        with n4a.Writer(tmp_path, "corn") as w:
            w.write(rows(7, start=10))
        done.set()

    t = threading.Thread(target=second)
    t.start()
    # Python keeps running here while the second writer waits.
    assert not done.wait(0.5)
    first.close()
    t.join(timeout=60)
    assert done.is_set()
    total = n4a.info(n4a.Workspace(tmp_path).query(limit=0))["total"]
    assert total == 17, "no row of either writer may be lost"


def test_concurrent_writers_of_one_dataset_lose_no_row(tmp_path):
    def write(i):
        # Another model per thread: nirs4all's id rule gives one prediction
        # (config, model, fold, partition) one id.
        with n4a.Writer(tmp_path, "corn") as w:
            w.write(rows(5, start=5 * i, model=f"model_{i}"))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    ids = pq.read_table(tmp_path / "corn.meta.parquet").column("id").to_pylist()
    assert len(ids) == 30 and len(set(ids)) == 30


def test_unknown_metric_with_a_direction_is_ranked_that_way(tmp_path):
    with n4a.Writer(tmp_path, "corn", directions={"my_gain": "max"}) as w:
        w.write(rows(9, metric="my_gain"))
    assert w.summary["ranking"]["direction"] == "maximize"
    top = n4a.Workspace(tmp_path, directions={"my_gain": "max"}).top(1)
    assert top.column("val_score").to_pylist() == [pytest.approx(0.1 + 0.01 * 6)]
