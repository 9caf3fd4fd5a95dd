#!/usr/bin/env bash
# Whole-process n4a against DuckDB (in-process, ../shared/bench/peers.py) in
# the same sitting, on workspaces generated exactly as nirs4all wrote them.
#
#   benches/vs_duckdb.sh [setup|summary|append|growth|query|serve|store|all] [--runs N]
#
# Set-up (once, a few minutes, ~2 GB under target/peer-bench, out of git):
# copies ../shared/bench, makes a venv with duckdb/polars/pyarrow/pandas,
# generates `many` (2,000 files x 500 rows) and `big` (100 x 100,000) with
# nirs4all's 1.0 footers, and `many-n4a` / `big-n4a` = the same rows after
# `n4a refresh` (n4a 1.2 footers).
#
# summary: `n4a summary WS --format json > /dev/null`, median of N runs
#   (warm page cache, one untimed run first, which also fills the footer
#   cache on disk; `--no-cache` timed beside), against DuckDB's
#   `peers.py summary` median; the answers are checked: totals, files with a
#   summary and models equal DuckDB's (digest over those fields), and n4a's
#   best `mse` rows equal DuckDB's SQL over the rows (ORDER BY val_score, id:
#   ties compared as a set of scores; val rows: one per model instance).
#   DuckDB's top_predictions follow the webapp's maximum rule and are not
#   compared. Where metrics mix, n4a's pooled model averages are null and
#   each metric's are checked against DuckDB's SQL over the rows.
# append: `n4a ingest` of the 10,000-row fixture `peers.py append` writes,
#   to a copy of big's first file (1.0 footer) and of big-n4a's (1.2),
#   against the nirs4all way in-process (`peers.py append`).
# growth: n4a summary (whole process) and the I/O floor on 10, 100, 500
#   and 2,000 files of many-n4a (hard links), and on 100 files of 500,
#   5,000 and 100,000 rows (n4a footers).
# serve: `n4a serve big` warm against DuckDB in-process, each query's
#   cold, second and warm latency and answer, then 8 client processes on
#   the dashboard mix, then pages never seen (benches/serve_vs_duckdb.py).
# store: a 1M-prediction nirs4all store (big-10 through `n4a export-store`,
#   then inserted row by row as nirs4all writes) read by n4a (in place on
#   a first call, then from the mirror) against Python's sqlite3 the
#   dashboard's way and the SQL way and DuckDB's SQLite scanner
#   (benches/store_vs_sqlite.py says what each does).
# The I/O floor of each workspace (open + read every footer's bytes, no
#   parsing, in Python) is printed beside.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHAT=${1:-all}
RUNS=7
[[ "${2:-}" == "--runs" ]] && RUNS=$3
B=$ROOT/target/peer-bench
P=$B/venv/bin/python
# N4A_BIN times another build (a baseline before a change) in the same
# sitting; unset, the release build of this checkout. N4A_FOOTERS names the
# copies of many and big with n4a's footers (default `-n4a`): a format
# change is timed on copies refreshed by each build (`-n4a13`: 1.3).
N=${N4A_BIN:-$ROOT/target/release/n4a}
F=${N4A_FOOTERS:--n4a}

[[ -n "${N4A_BIN:-}" ]] || cargo build --release --quiet
if [[ ! -x $P ]]; then
  mkdir -p "$B" && cp -r ../shared/bench/. "$B"/
  python3 -m venv "$B/venv"
  "$P" -m pip install -q duckdb polars pyarrow pandas
fi
gen() {
  local name=$1 files=$2 rows=$3
  [[ -d $B/data/$name ]] || (cd "$B" && "$P" gen_workspace.py --out "data/$name" --files "$files" --rows-per-file "$rows" >/dev/null)
  if [[ ! -d $B/data/$name$F ]]; then
    cp -r "$B/data/$name" "$B/data/$name$F"
    "$N" refresh "$B/data/$name$F" --format json >/dev/null
  fi
}
gen many 2000 500
gen big 100 100000

# Whole-process wall time of a command (output to /dev/null), median of
# $RUNS runs after one untimed run, in seconds, and its peak RSS in KB.
timeit() {
  "$P" - "$RUNS" "$@" <<'EOF'
import resource, statistics, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
times = []
for _ in range(runs):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append(time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{statistics.median(times):.4f} {peak}")
EOF
}

floor() {
  "$P" - "$1" <<'EOF'
import glob, os, sys, time, statistics
files = sorted(glob.glob(os.path.join(sys.argv[1], "*.meta.parquet")))
def once():
    t = time.perf_counter()
    for f in files:
        with open(f, "rb") as h:
            h.seek(-8, 2); n = int.from_bytes(h.read(4), "little")
            h.seek(-8 - n, 2); h.read(n)
    return time.perf_counter() - t
once()
print(f"{statistics.median(once() for _ in range(5)):.4f}")
EOF
}

summary() {
  # n4a as a user runs it twice: the footer cache on disk (issue 33) warm
  # after the untimed first run; `--no-cache` (every footer read from its
  # file) beside it, with its ratio.
  printf "%-10s %10s %10s %8s %12s %8s %10s %s\n" workspace "n4a s" "duckdb s" ratio "no-cache s" ratio "floor s" "answers"
  for ws in many "many$F" "big$F" big; do
    local d=$B/data/$ws
    read -r t mem < <(timeit "$N" summary "$d" --format json)
    local tn
    read -r tn _ < <(timeit "$N" summary "$d" --format json --no-cache)
    local duck
    duck=$(cd "$B" && "$P" peers.py summary --ws "data/$ws" --peer duckdb --runs "$RUNS")
    local dt
    dt=$(echo "$duck" | "$P" -c 'import json,sys; print(json.loads(sys.stdin.read())["median_s"])')
    "$N" summary "$d" --format json > "$B/n4a-summary-$ws.json"
    local check
    check=$("$P" - "$B" "$ws" "$B/n4a-summary-$ws.json" <<'EOF'
import json, sys
sys.path.insert(0, sys.argv[1])
import peers, duckdb, os
b, ws, path = sys.argv[1:]
n = json.load(open(path))
duck = peers.DuckSummary()(os.path.join(b, "data", ws))
def part(a):
    return {"total_predictions": a["total_predictions"], "total_datasets": a["total_datasets"],
            "n_with_summary": a["n_with_summary"],
            "models": [{"name": m["name"], "count": m["count"]} for m in a["models"]]}
mine = dict(n, n_with_summary=sum(1 for d in n["datasets"] if d["has_summary"]))
con = duckdb.connect()
glob = os.path.join(b, "data", ws, "*.meta.parquet")
# Counts exactly (digest); averages within the 4-decimal rounding the
# footers' per-file averages carry (n4a merges exact sums where it has state).
close = lambda a, b: (a is None) == (b is None) and (a is None or abs(a - b) <= 1.5e-4)
ok_models = peers.digest(part(mine)) == peers.digest(part(duck))
if n["stats"] is None:
    # Metrics mix (issue 29): n4a gives no pooled model average (DuckDB's
    # footer SQL pools mse and balanced_accuracy, the webapp's rule); like
    # with like, each metric's model averages against DuckDB's SQL over
    # the rows grouped by (metric, model).
    truth = {(m, k): avg for m, k, avg in con.execute(
        """SELECT metric, model_name, avg(val_score) FROM read_parquet($p)
           GROUP BY metric, model_name""", {"p": glob}).fetchall()}
    ok_models = ok_models and all(a["avg_val_score"] is None for a in mine["models"]) and all(
        close(x["avg_val_score"], truth.get((m["name"], x["name"])))
        for m in n["metrics"] for x in m["models"])
else:
    ok_models = ok_models and all(close(a["avg_val_score"], b["avg_val_score"])
                                  for a, b in zip(mine["models"], duck["models"]))
# Best mse: one row per model instance, ranked by its val row (issue 29):
# over the val rows, where each instance has one row.
rows = con.execute("""SELECT val_score FROM read_parquet($p) WHERE metric = 'mse' AND partition = 'val'
                      ORDER BY val_score ASC, id ASC LIMIT 10""", {"p": glob}).fetchall()
best = sorted(e["val_score"] for e in n["top_by_metric"]["mse"]["predictions"])
ok_top = best == [r[0] for r in rows]
print(("models ok" if ok_models else "MODELS DIFFER") + ", " + ("best mse ok" if ok_top else "BEST MSE DIFFERS"))
EOF
)
    local fl
    fl=$(floor "$d")
    printf "%-10s %10s %10s %8.3f %12s %8.3f %10s %s (n4a peak %s KB)\n" "$ws" "$t" "$dt" "$(echo "$t / $dt" | bc -l)" "$tn" "$(echo "$tn / $dt" | bc -l)" "$fl" "$check" "$mem"
  done
}

append() {
  local out
  out=$(cd "$B" && "$P" peers.py append --ws data/big --k 10000 --runs "$RUNS")
  local nt fixture file
  nt=$(echo "$out" | "$P" -c 'import json,sys; print(json.loads(sys.stdin.read())["median_s"])')
  fixture=$B/$(echo "$out" | "$P" -c 'import json,sys; print(json.loads(sys.stdin.read())["params"]["fixture"])')
  file=$(echo "$out" | "$P" -c 'import json,sys; print(json.loads(sys.stdin.read())["params"]["file"])')
  printf "%-22s %10s %14s %8s\n" "append 10k rows to" "n4a s" "nirs4all-way s" ratio
  for src in big "big$F"; do
    local w=$B/data/_work/n4a-append-$src
    local t
    t=$("$P" - "$RUNS" "$w" "$B/data/$src/$file.meta.parquet" "$N" "$fixture" <<'EOF'
import os, shutil, statistics, subprocess, sys, time
runs, w, src, n4a, fixture = int(sys.argv[1]), *sys.argv[2:]
times = []
for i in range(runs + 1):
    shutil.rmtree(w, ignore_errors=True)
    os.makedirs(w)
    shutil.copy(src, w)
    t = time.perf_counter()
    subprocess.run([n4a, "ingest", w, fixture, "--format", "json"], stdout=subprocess.DEVNULL, check=True)
    if i:
        times.append(time.perf_counter() - t)
print(f"{statistics.median(times):.4f}")
EOF
)
    printf "%-22s %10s %14s %8.3f\n" "$src ($file)" "$t" "$nt" "$(echo "$t / $nt" | bc -l)"
  done
}

growth() {
  printf "%-28s %10s %10s\n" workspace "n4a s" "floor s"
  for n in 10 100 500 2000; do
    local d=$B/data/_work/growth-files-$n
    if [[ ! -d $d ]]; then
      mkdir -p "$d"
      local files=("$B"/data/many-n4a/*.meta.parquet)
      ln "${files[@]:0:$n}" "$d/"
    fi
    read -r t _ < <(timeit "$N" summary "$d" --format json)
    printf "%-28s %10s %10s\n" "$n files x 500 rows" "$t" "$(floor "$d")"
  done
  gen mid 100 5000
  local d=$B/data/_work/growth-rows-500
  if [[ ! -d $d ]]; then
    mkdir -p "$d"
    local files=("$B"/data/many-n4a/*.meta.parquet)
    ln "${files[@]:0:100}" "$d/"
  fi
  for ws in "$d" "$B/data/mid-n4a" "$B/data/big-n4a"; do
    read -r t _ < <(timeit "$N" summary "$ws" --format json)
    local rows
    rows=$("$N" summary "$ws" --format json | "$P" -c 'import json,sys; d=json.load(sys.stdin); print(d["total_predictions"] // d["total_datasets"])')
    printf "%-28s %10s %10s\n" "100 files x $rows rows" "$t" "$(floor "$ws")"
  done
}

# query: pages (filtered; partition only; deep offset; the val page with all
# columns), top-k, the five group-bys and issue 33's (one metric, the
# default val rows), n4a whole process against DuckDB in-process, answers compared
# row for row (benches/queries_vs_duckdb.py says how), on big and big-n4a
# (10M rows) and on their first 10 files (1M rows, hard links) for growth.
query() {
  for ws in big "big$F"; do
    local small=$B/data/$ws-10
    if [[ ! -d $small ]]; then
      mkdir -p "$small"
      find "$B/data/$ws" -maxdepth 1 -name '*.meta.parquet' | sort | awk 'NR <= 10' |
        while read -r f; do ln "$f" "$small/"; done
    fi
    for w in "$B/data/$ws" "$small"; do
      echo "== $(basename "$w")"
      "$P" "$ROOT/benches/queries_vs_duckdb.py" --ws "$w" --n4a "$N" --runs "$RUNS"
    done
  done
}

store() {
  local src=$B/data/big-10 st=$B/data/store-1m
  if [[ ! -d $src ]]; then
    mkdir -p "$src"
    find "$B/data/big" -maxdepth 1 -name '*.meta.parquet' | sort | awk 'NR <= 10' |
      while read -r f; do ln "$f" "$src/"; done
  fi
  if [[ ! -f $st/store.sqlite ]]; then
    local t0=$SECONDS
    "$N" export-store "$src" "$st.n4a" --format json >/dev/null
    echo "export-store of $src: $((SECONDS - t0)) s"
    # The store the reads are timed on has the layout nirs4all's own
    # writes leave: every prediction inserted row by row with its seven
    # indexes kept up to date, so table leaves and index pages interleave
    # in the file (export-store writes each b-tree's pages together,
    # which would flatter a reader of the file).
    "$P" - "$st.n4a" "$st" <<'PY'
import os, shutil, sqlite3, sys
src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst)
shutil.copytree(os.path.join(src, "arrays"), os.path.join(dst, "arrays"))
s = sqlite3.connect(os.path.join(src, "store.sqlite"))
d = sqlite3.connect(os.path.join(dst, "store.sqlite"), isolation_level=None)
d.execute("PRAGMA journal_mode = WAL")
for (sql,) in s.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"):
    d.execute(sql)
d.execute("PRAGMA user_version = %d" % s.execute("PRAGMA user_version").fetchone()[0])
d.execute("BEGIN")
for (t,) in s.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
    cur = s.execute(f"SELECT * FROM {t} ORDER BY rowid")
    n = len(cur.description)
    d.executemany(f"INSERT INTO {t} VALUES ({', '.join('?' * n)})", cur)
d.execute("COMMIT")
d.close()
PY
    rm -rf "$st.n4a"
  fi
  # DuckDB's SQLite scanner comes from PyPI pinned to DuckDB 1.5.5 (the
  # extension server is not reachable): a venv of its own.
  local Q=$B/venv-sqlite/bin/python
  if [[ ! -x $Q ]]; then
    python3 -m venv "$B/venv-sqlite"
    "$Q" -m pip install -q duckdb==1.5.5 duckdb-extensions==1.5.5 duckdb-extension-sqlite-scanner==1.5.5
  fi
  "$Q" "$ROOT/benches/store_vs_sqlite.py" --store "$st" --n4a "$N" --runs "$RUNS"
}

serve() {
  "$P" "$ROOT/benches/serve_vs_duckdb.py" --ws "$B/data/big" --n4a "$N" --runs "$RUNS"
}

case $WHAT in
  summary) summary ;;
  append) append ;;
  growth) growth ;;
  query) query ;;
  serve) serve ;;
  store) store ;;
  setup) ;;
  all) summary; echo; append; echo; growth; echo; query; echo; serve; echo; store ;;
  *) echo "usage: $0 [setup|summary|append|growth|query|serve|store|all] [--runs N]" >&2; exit 2 ;;
esac
