"""Reads every file of a manifest with each reader installed in this
Python environment (pyarrow, pandas, polars, DuckDB, and nirs4all's own
loading calls of the .meta.parquet era), and prints what each saw as one
JSON document on stdout: columns, row count, a digest of the values, the
Arrow or polars types, the n4a summary where each reader shows it, and
the answers of a few filters. python/tests/test_compat.py compares these
with what the newest pyarrow read (issue 28).

Run by each environment's interpreter:  python read_all.py MANIFEST.json
The manifest: {"files": [{"path", "kind": "meta"|"arrays"|"store_arrays",
"original": path or null, "nan_column": name or null}]}.

Nothing here may fail the whole run: every reader's error is caught and
reported against its file.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import traceback
from typing import Any, Callable, Dict, List

READERS: Dict[str, Any] = {}
for mod in ("pyarrow", "pandas", "polars", "duckdb", "numpy"):
    try:
        READERS[mod] = __import__(mod)
    except ImportError:
        pass


def canon(v: Any, loose: bool = False) -> Any:
    """A value in a form every reader's values reduce to: floats by their
    shortest round-trip text, NaN as "NaN" (loose: numbers as floats and
    NaN as null, since pandas turns null integers and floats into NaN)."""
    np = READERS.get("numpy")
    if np is not None:
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        f = float(v)
        if loose:
            return None if math.isnan(f) else repr(f)
        if isinstance(v, int):
            return v
        return "NaN" if math.isnan(f) else repr(f)
    if isinstance(v, (list, tuple)):
        return [canon(x, loose) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def digest(columns: List[str], values: Dict[str, list], loose: bool = False) -> str:
    h = hashlib.sha256()
    for c in columns:
        h.update(json.dumps([c, [canon(x, loose) for x in values[c]]]).encode())
    return h.hexdigest()


def text_digest(t: Any) -> Any:
    if t is None:
        return None
    if isinstance(t, str):
        t = t.encode()
    return hashlib.sha256(t).hexdigest()


def table_entry(columns: List[str], values: Dict[str, list], types: List[str]) -> dict:
    n = len(values[columns[0]]) if columns else 0
    return {
        "columns": columns,
        "rows": n,
        "digest": digest(columns, values),
        "loose": digest(columns, values, loose=True),
        "types": types,
    }


def sql_quote(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


# ---- the readers -----------------------------------------------------------


def read_pyarrow(f: dict) -> dict:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    import pyarrow.compute as pc

    t = pq.read_table(f["path"])
    cols = t.column_names
    out = table_entry(cols, {c: t.column(c).to_pylist() for c in cols}, [str(x.type) for x in t.schema])
    pf = pq.ParquetFile(f["path"])
    md = pf.schema_arrow.metadata or {}
    out["summary"] = text_digest(md.get(b"n4a_summary"))
    out["plain_summary"] = text_digest((pf.metadata.metadata or {}).get(b"n4a_summary"))
    if f.get("nan_column"):
        # Filters pushed down to the scan (where chunk statistics may skip
        # data) against the same filters on the table read whole.
        c = f["nan_column"]
        d = ds.dataset(f["path"], format="parquet")
        col = t.column(c)
        out["nan"] = {
            "is_nan": [d.to_table(filter=pc.is_nan(ds.field(c))).num_rows, pc.sum(pc.is_nan(col)).as_py()],
            "gt": [d.to_table(filter=ds.field(c) > 0.5).num_rows, pc.sum(pc.greater(col, 0.5)).as_py() or 0],
            "valid": [d.to_table(filter=ds.field(c).is_valid()).num_rows, len(col) - col.null_count],
        }
    return out


def read_pandas(f: dict) -> dict:
    import pandas as pd

    df = pd.read_parquet(f["path"])
    cols = [str(c) for c in df.columns]
    return table_entry(cols, {c: df[c].tolist() for c in cols}, [str(t) for t in df.dtypes])


def read_polars(f: dict) -> dict:
    import polars as pl

    df = pl.read_parquet(f["path"])
    cols = df.columns
    out = table_entry(cols, {c: df[c].to_list() for c in cols}, [str(t) for t in df.dtypes])
    reader = getattr(pl, "read_parquet_metadata", None)
    if reader is not None:
        out["kv_summary"] = text_digest(reader(f["path"]).get("n4a_summary"))
    if f.get("nan_column"):
        c = f["nan_column"]
        lf = pl.scan_parquet(f["path"])
        out["nan"] = {
            name: [lf.filter(e).collect().height, df.filter(e).height]
            for name, e in [
                ("is_nan", pl.col(c).is_nan()),
                ("gt", pl.col(c) > 0.5),
                ("valid", pl.col(c).is_not_null()),
            ]
        }
    return out


def read_duckdb(f: dict) -> dict:
    import duckdb

    con = duckdb.connect()
    try:
        rel = con.sql(f"SELECT * FROM read_parquet({sql_quote(f['path'])})")
        cols = list(rel.columns)
        rows = rel.fetchall()
        out = table_entry(
            cols,
            {c: [r[i] for r in rows] for i, c in enumerate(cols)},
            [str(t) for t in rel.types],
        )
        kv = con.sql(
            f"SELECT key, value FROM parquet_kv_metadata({sql_quote(f['path'])})"
        ).fetchall()
        kv = {bytes(k).decode(): bytes(v) for k, v in kv}
        out["kv_summary"] = text_digest(kv.get("n4a_summary"))
        if f.get("nan_column"):
            c = '"' + f["nan_column"] + '"'
            con.execute(f"CREATE TEMP TABLE whole AS SELECT * FROM read_parquet({sql_quote(f['path'])})")

            def q(w: str) -> list:
                return [
                    con.execute(f"SELECT count(*) FROM {src} WHERE {w}").fetchone()[0]
                    for src in (f"read_parquet({sql_quote(f['path'])})", "whole")
                ]

            out["nan"] = {"is_nan": q(f"isnan({c})"), "gt": q(f"{c} > 0.5"), "valid": q(f"{c} IS NOT NULL")}
        return out
    finally:
        con.close()


# nirs4all's loading calls of the .meta.parquet era (GBeurier/nirs4all at
# e3c4f951): PredictionStorage.load_parquet reads the meta file with
# pl.read_parquet(meta_path), rows are then decoded by
# PredictionSerializer.deserialize_row (json.loads of the JSON columns,
# the text kept when it is not JSON); ArrayRegistry.load_from_parquet reads
# the arrays file with pl.read_parquet(path, use_pyarrow=True), adds absent
# columns, selects ARRAY_SCHEMA's, and get_array rebuilds each array with
# np.array(array_data, dtype=np.float64).reshape(json.loads(array_shape)).

JSON_FIELDS = ["y_true", "y_pred", "sample_indices", "weights", "metadata", "best_params", "scores"]
ARRAY_COLUMNS = ["array_id", "array_data", "array_hash", "array_size", "array_shape", "array_type"]


def nirs4all_meta(f: dict) -> dict:
    import polars as pl

    df = pl.read_parquet(f["path"])
    decoded, kept_as_text = [], 0
    for row in df.iter_rows(named=True):
        out = {}
        for k, v in row.items():
            if k in JSON_FIELDS and isinstance(v, str):
                try:
                    out[k] = json.loads(v)
                except (json.JSONDecodeError, TypeError):
                    out[k] = v
                    kept_as_text += 1
            else:
                out[k] = v
        decoded.append(out)
    cols = df.columns
    entry = table_entry(cols, {c: df[c].to_list() for c in cols}, [str(t) for t in df.dtypes])
    entry["json_kept_as_text"] = kept_as_text
    entry["decoded_rows"] = len(decoded)
    return entry


def nirs4all_arrays(f: dict) -> dict:
    import numpy as np
    import polars as pl

    df = pl.read_parquet(f["path"], use_pyarrow=True)
    for c in ARRAY_COLUMNS:
        if c not in df.columns:
            df = df.with_columns(pl.lit(None).alias(c))
    df = df.select(ARRAY_COLUMNS)
    shapes_ok = 0
    for row in df.iter_rows(named=True):
        a = np.array(row["array_data"], dtype=np.float64)
        if row["array_shape"]:
            a = a.reshape(tuple(json.loads(row["array_shape"])))
        shapes_ok += int(a.size == row["array_size"])
    cols = df.columns
    entry = table_entry(cols, {c: df[c].to_list() for c in cols}, [str(t) for t in df.dtypes])
    entry["arrays_rebuilt"] = shapes_ok
    return entry


def concat(f: dict) -> dict:
    """Tables of the original file and of n4a's rewrite of it, together."""
    out: Dict[str, Any] = {}
    if "pyarrow" in READERS:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            pa.concat_tables([pq.read_table(f["original"]), pq.read_table(f["path"])])
            out["pyarrow"] = "ok"
        except Exception as e:  # noqa: BLE001
            out["pyarrow"] = f"{type(e).__name__}: {e}"
    if "polars" in READERS:
        import polars as pl

        try:
            pl.concat([pl.read_parquet(f["original"]), pl.read_parquet(f["path"])])
            out["polars"] = "ok"
        except Exception as e:  # noqa: BLE001
            out["polars"] = f"{type(e).__name__}: {e}"
    return out


def readers_for(kind: str) -> Dict[str, Callable[[dict], dict]]:
    r: Dict[str, Callable[[dict], dict]] = {}
    if "pyarrow" in READERS:
        r["pyarrow"] = read_pyarrow
        if "pandas" in READERS:
            r["pandas"] = read_pandas
    if "polars" in READERS:
        r["polars"] = read_polars
        if kind == "meta":
            r["nirs4all"] = nirs4all_meta
        elif kind == "arrays" and "pyarrow" in READERS:
            r["nirs4all"] = nirs4all_arrays
    if "duckdb" in READERS:
        r["duckdb"] = read_duckdb
    return r


def main() -> None:
    manifest = json.load(open(sys.argv[1]))
    result: Dict[str, Any] = {
        "versions": {
            m: getattr(READERS[m], "__version__", "?") for m in READERS if m != "numpy"
        },
        "files": {},
        "concat": {},
    }
    for f in manifest["files"]:
        seen = {}
        for name, read in readers_for(f["kind"]).items():
            try:
                seen[name] = read(f)
            except Exception as e:  # noqa: BLE001
                seen[name] = {
                    "error": f"{type(e).__name__}: {e}",
                    "trace": traceback.format_exc(limit=3),
                }
        result["files"][f["path"]] = seen
        if f.get("original"):
            result["concat"][f["path"]] = concat(f)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
