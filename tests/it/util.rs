//! Shared helpers of the integration tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use n4a::schema::Prediction;

/// Path of a file in `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Copies fixture files into a fresh temporary workspace.
pub fn workspace_with(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::fs::copy(fixture(n), dir.path().join(n)).unwrap();
    }
    dir
}

/// Rewrites the prediction file `src` into `dst` with ArrowWriter (as a
/// tool other than n4a would), its footer carrying `summary` as a plain
/// key/value entry and, when `embed`, inside the Arrow schema too; `None`
/// writes no summary at all (nirs4all before summaries existed).
pub fn rewrite_with_summary(src: &Path, dst: &Path, summary: Option<&str>, embed: bool) {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(src).unwrap()).unwrap();
    let mut md = b.schema().metadata().clone();
    md.remove("n4a_summary");
    md.remove("n4a_state");
    if let (Some(s), true) = (summary, embed) {
        md.insert("n4a_summary".to_string(), s.to_string());
    }
    let schema = std::sync::Arc::new(b.schema().as_ref().clone().with_metadata(md));
    let batches: Vec<_> = b.build().unwrap().map(|r| r.unwrap()).collect();
    let kv = summary.map(|s| {
        vec![parquet::file::metadata::KeyValue::new(
            "n4a_summary".into(),
            s.to_string(),
        )]
    });
    let props = parquet::file::properties::WriterProperties::builder()
        .set_key_value_metadata(kv)
        .build();
    let tmp = dst.with_extension("tmp-rewrite");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&tmp).unwrap(),
        schema.clone(),
        Some(props),
    )
    .unwrap();
    for b in batches {
        let b = arrow_array::RecordBatch::try_new(schema.clone(), b.columns().to_vec()).unwrap();
        w.write(&b).unwrap();
    }
    w.close().unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

/// Relative closeness for floats computed along different paths.
pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

/// Option-aware [`close`].
pub fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => close(x, y),
        (None, None) => true,
        _ => false,
    }
}

/// A simple regression row.
pub fn row(config: &str, model: &str, fold: &str, partition: &str, val: f64) -> Prediction {
    Prediction {
        dataset_path: Some("ds".into()),
        config_name: Some(config.into()),
        config_path: Some(format!("ds/{config}")),
        pipeline_uid: Some(config.into()),
        step_idx: Some(3),
        op_counter: Some(1),
        model_name: Some(model.into()),
        model_classname: Some(model.into()),
        fold_id: Some(fold.into()),
        partition: Some(partition.into()),
        val_score: Some(val),
        test_score: Some(val * 1.1),
        train_score: Some(val * 0.5),
        metric: Some("mse".into()),
        task_type: Some("regression".into()),
        ..Default::default()
    }
}

/// Rewrites the n4a file `src` into `dst` as nirs4all 1.0 wrote its files:
/// the same rows (ArrowWriter, the summary inside `ARROW:schema` and as a
/// key/value), and a 1.0 summary by nirs4all's rules: every best and top by
/// the maximum whatever the metric, no n4a state or additions.
pub fn as_nirs4all_1_0(src: &Path, dst: &Path) {
    use n4a::metric::{Direction, Directions};
    use n4a::summary::{SummaryBuilder, SummaryOptions};
    let metrics = n4a::footer::Footer::read(src)
        .unwrap()
        .summary()
        .unwrap()
        .and_then(|s| s.state)
        .map(|st| st.metrics.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let mut dirs = Directions::new();
    for m in metrics {
        dirs = dirs.with(m, Direction::Maximize);
    }
    let mut b = SummaryBuilder::new(SummaryOptions {
        directions: dirs,
        ..SummaryOptions::default()
    });
    n4a::rows::summarize(src, &mut b).unwrap();
    let s = b.finish(Some("2026-01-20T12:00:00.000000+00:00".into()));
    let mut v = serde_json::to_value(&s).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in ["ranking", "metrics", "top_by_metric"] {
        o.remove(k);
    }
    o.insert("n4a_version".into(), "1.0".into());
    for col in ["val_score", "test_score", "train_score"] {
        if let Some(st) = o["stats"].get_mut(col).and_then(|c| c.as_object_mut()) {
            for k in [
                "count",
                "nan_count",
                "inf_count",
                "quartiles_method",
                "quartiles_rel_error",
            ] {
                st.remove(k);
            }
        }
    }
    if let Some(tops) = o["top_predictions"].as_array_mut() {
        for t in tops {
            t.as_object_mut().unwrap().remove("row");
        }
    }
    rewrite_with_summary(src, dst, Some(&v.to_string()), true);
}

/// Every row of the readable files of a workspace folder, with its dataset
/// and row number: the oracle of workspace answers.
pub fn all_rows(dir: &Path) -> Vec<(String, u64, Prediction)> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".meta.parquet"))
        .collect();
    files.sort();
    for p in files {
        let ds = p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".meta.parquet")
            .to_string();
        if let Ok(rows) = n4a::rows::read_predictions(&p) {
            for (i, r) in rows.into_iter().enumerate() {
                out.push((ds.clone(), i as u64, r));
            }
        }
    }
    out
}

/// Replaces a parquet file's footer key/values, the row data kept byte for
/// byte (what a tool editing metadata in place would leave), through the
/// parquet crate's own metadata writer.
pub fn set_key_values(path: &Path, kv: &[(&str, &str)]) {
    let kvs = kv
        .iter()
        .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.to_string(), v.to_string()))
        .collect();
    rewrite_footer(path, Some(kvs), None);
}

/// Rewrites a parquet file's footer so its (one) row group claims
/// `num_rows` rows, the column chunks untouched: a footer that disagrees
/// with its data.
pub fn set_num_rows(path: &Path, num_rows: i64) {
    rewrite_footer(path, None, Some(num_rows));
}

/// The footer of `path` written anew by the parquet crate, with new
/// key/values and a new row count (of the file and each row group) where
/// given; the bytes before the footer kept.
fn rewrite_footer(
    path: &Path,
    kv: Option<Vec<parquet::file::metadata::KeyValue>>,
    num_rows: Option<i64>,
) {
    use parquet::file::metadata::{FileMetaData, ParquetMetaData, ParquetMetaDataWriter};
    let bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    let meta_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    let meta = metadata(path).unwrap();
    let fm = meta.file_metadata();
    let fm = FileMetaData::new(
        fm.version(),
        num_rows.unwrap_or(fm.num_rows()),
        fm.created_by().map(str::to_string),
        kv.or_else(|| fm.key_value_metadata().cloned()),
        fm.schema_descr_ptr(),
        fm.column_orders().cloned(),
    );
    let groups = meta
        .row_groups()
        .iter()
        .map(|g| match num_rows {
            Some(r) => g.clone().into_builder().set_num_rows(r).build().unwrap(),
            None => g.clone(),
        })
        .collect();
    let mut out = bytes[..n - 8 - meta_len].to_vec();
    ParquetMetaDataWriter::new(&mut out, &ParquetMetaData::new(fm, groups))
        .finish()
        .unwrap();
    std::fs::write(path, out).unwrap();
    // The parquet crate writes column orders older readers reject; n4a's
    // writers seal their files, and so does this tool (issue 28).
    n4a::footer::seal_in_place(path).unwrap();
}

/// n4a's footer `entries` (`n4a_summary`, `n4a_state`) as a
/// 1.3 footer holds them: after an `ARROW:schema` carrying the summary
/// (the file's own Arrow schema when it has one, else the contract's in
/// nirs4all's types). An oracle of `footer::keys`, written independently.
pub fn with_arrow_schema(path: &Path, entries: &[(String, String)]) -> Vec<(String, String)> {
    use arrow_schema::{DataType, Field, Schema};
    let meta = metadata(path).unwrap();
    let fm = meta.file_metadata();
    let fields =
        match parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata()) {
            Ok(s)
                if fm
                    .key_value_metadata()
                    .is_some_and(|kv| kv.iter().any(|k| k.key == "ARROW:schema")) =>
            {
                s.fields().clone()
            }
            _ => n4a::schema::meta_schema()
                .fields()
                .iter()
                .map(|f| {
                    let ty = match f.data_type() {
                        DataType::Utf8 => DataType::LargeUtf8,
                        t => t.clone(),
                    };
                    std::sync::Arc::new(Field::new(f.name(), ty, true))
                })
                .collect(),
        };
    let text = entries
        .iter()
        .find(|(k, _)| k == "n4a_summary")
        .map(|(_, v)| v.clone())
        .unwrap();
    let schema = Schema::new(fields).with_metadata(std::collections::HashMap::from([(
        "n4a_summary".to_string(),
        text,
    )]));
    let mut out = vec![(
        "ARROW:schema".to_string(),
        parquet::arrow::encode_arrow_schema(&schema),
    )];
    out.extend(entries.iter().cloned());
    out
}

/// Where a parquet file's footer (its `FileMetaData`) starts.
pub fn footer_start(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    let meta_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as u64;
    n as u64 - 8 - meta_len
}

/// A file's parquet metadata, read by the parquet crate alone.
pub fn metadata(path: &Path) -> parquet::errors::Result<parquet::file::metadata::ParquetMetaData> {
    let f = std::fs::File::open(path)
        .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
    parquet::file::metadata::ParquetMetaDataReader::new().parse_and_finish(&f)
}

/// Python's `round(x, 4)`, the oracle of the summary's rounding: the
/// formatter rounds the exact binary value half to even, as Python does.
pub fn round4(x: f64) -> f64 {
    format!("{x:.4}").parse().unwrap_or(x)
}

/// The contract's quartile position (FORMAT.md): value
/// `round_half_away(q * (n - 1))` of the `n` sorted values.
pub fn quantile_index(q: f64, n: u64) -> u64 {
    (q * (n - 1) as f64).round() as u64
}

/// A file's footer key/values, in order.
pub fn key_values_of(path: &Path) -> Vec<(String, String)> {
    let meta = crate::util::metadata(path).unwrap();
    meta.file_metadata()
        .key_value_metadata()
        .map(|kvs| {
            kvs.iter()
                .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// Damages the row data of `column` in `path` (its first row group) and
/// leaves the footer intact: 48 seeded bytes over the start of the column
/// chunk (its first page header), as a disk error or a copy cut short
/// inside the data would.
pub fn damage_column(path: &Path, column: &str) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let rg = reader.metadata().row_group(0);
    let c = rg
        .columns()
        .iter()
        .find(|c| {
            let p = c.column_path().string();
            p == column || p.starts_with(&format!("{column}."))
        })
        .unwrap_or_else(|| panic!("{}: no column {column}", path.display()));
    let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset()) as usize;
    let len = (c.compressed_size() as usize).min(48);
    let mut bytes = std::fs::read(path).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in &mut bytes[start..start + len] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(path, bytes).unwrap();
}

/// The Python of a virtual environment holding nirs4all 1.4.10, the
/// oracle of the store bridge: `N4A_NIRS4ALL_PYTHON` when set, else
/// `target/nirs4all-venv`, made on first use with `python3 -m venv` and
/// `pip install nirs4all==1.4.10` from the package registry (about 1 GB,
/// a minute or two). Processes and threads making it at once take turns
/// on a lock file. Panics with the reason when it cannot be made: a test
/// that needs the oracle never passes without it.
pub fn nirs4all_python() -> PathBuf {
    static PY: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    PY.get_or_init(make_nirs4all_venv)
        .clone()
        .unwrap_or_else(|why| panic!("no nirs4all 1.4.10 environment: {why}"))
}

fn make_nirs4all_venv() -> Result<PathBuf, String> {
    use std::process::Command;
    if let Some(p) = std::env::var_os("N4A_NIRS4ALL_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let venv = target.join("nirs4all-venv");
    let python = venv.join("bin/python");
    let lock =
        std::fs::File::create(target.join("nirs4all-venv.lock")).map_err(|e| e.to_string())?;
    lock.lock().map_err(|e| e.to_string())?;
    let ready = || {
        Command::new(&python)
            .args([
                "-c",
                "import nirs4all, sys; sys.exit(nirs4all.__version__ != '1.4.10')",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready() {
        return Ok(python);
    }
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(&python).args(["-m", "pip", "install", "-q", "nirs4all==1.4.10"]),
        "pip install nirs4all==1.4.10",
    )?;
    if ready() {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import nirs4all 1.4.10 after the install",
            python.display()
        ))
    }
}

/// Runs `tests/oracle/nirs4all_store.py CMD DIR` with nirs4all's Python
/// and returns its standard output as JSON.
pub fn nirs4all_oracle(cmd: &str, dir: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/nirs4all_store.py");
    let out = std::process::Command::new(nirs4all_python())
        .arg(&script)
        .arg(cmd)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nirs4all_store.py {cmd} {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Copies the folder `src` into `dst` (files and sub-folders).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

/// A number of the nirs4all oracle's JSON (`"NaN"` for NaN, null for none).
pub fn oracle_num(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if s == "NaN" => Some(f64::NAN),
        v => Some(v.as_f64().unwrap()),
    }
}

/// Equal scores, NaN equal to NaN.
pub fn same_f64(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
        (None, None) => true,
        _ => false,
    }
}

/// Asserts that the row `r` has the text and integer columns the nirs4all
/// oracle's `dump` entry `e` has (config, pipeline, step, model, fold,
/// partition, metric, task, sizes, preprocessings, branch).
pub fn assert_same_columns(r: &Prediction, e: &serde_json::Value) {
    let id = e["id"].as_str().unwrap();
    let text = |k: &str| e[k].as_str().map(str::to_string);
    let int = |k: &str| e[k].as_i64();
    assert_eq!(r.config_name, text("config_name"), "{id}");
    assert_eq!(r.pipeline_uid, text("pipeline_uid"), "{id}");
    assert_eq!(r.step_idx, int("step_idx"), "{id}");
    assert_eq!(r.model_name, text("model_name"), "{id}");
    assert_eq!(r.model_classname, text("model_classname"), "{id}");
    assert_eq!(r.fold_id, text("fold_id"), "{id}");
    assert_eq!(r.partition, text("partition"), "{id}");
    assert_eq!(r.metric, text("metric"), "{id}");
    assert_eq!(r.task_type, text("task_type"), "{id}");
    assert_eq!(r.n_samples, int("n_samples"), "{id}");
    assert_eq!(r.n_features, int("n_features"), "{id}");
    assert_eq!(r.preprocessings, text("preprocessings"), "{id}");
    assert_eq!(r.branch_id, int("branch_id"), "{id}");
    assert_eq!(r.branch_name, text("branch_name"), "{id}");
}

/// `v` with every float as text of 12 significant digits: answers that
/// add the same scores in another order (a scan, stored aggregates)
/// compare equal.
pub fn rounded(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), rounded(x))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(rounded).collect()),
        Value::Number(n) if n.is_f64() => {
            Value::from(format!("{:.11e}", n.as_f64().unwrap_or_default()))
        }
        v => v.clone(),
    }
}

/// The address `n4a serve` (started with its standard error piped) says
/// it listens on; its log is drained from then on, so the server never
/// blocks on a full pipe.
pub fn served_address(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("n4a serve said where it listens")
            .unwrap();
        if let Some(a) = line.strip_prefix("n4a serve: listening on http://") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    addr
}
