//! `n4a inspect`: one file's schema, row groups and decoded summary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::summary::summary_text;
use super::table::Table;
use super::Format;

/// The `inspect` flags.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A .meta.parquet (or any parquet) file.
    file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs `n4a inspect`: exit 1 when the summary cannot be decoded.
pub fn inspect_cmd(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let InspectArgs { file, format } = a;
    let file = file.as_path();
    if n4a::bucket::is_url(file) {
        n4a::bucket::register_url(file)?;
    }
    // The parquet crate's whole read, not `Footer::read`: a summary that
    // does not decode is shown as such beside what the file stores.
    let meta = n4a::footer::meta::read(file)?;
    let fm = meta.file_metadata();
    let schema =
        parquet::arrow::parquet_to_arrow_schema(fm.schema_descr(), fm.key_value_metadata())
            .with_context(|| format!("{}: reading the Arrow schema", file.display()))?;
    let summary = n4a::footer::meta::decode_summary(file, &meta);
    let groups: Vec<(usize, i64, i64, i64)> = meta
        .row_groups()
        .iter()
        .enumerate()
        .map(|(i, rg)| (i, rg.num_rows(), rg.compressed_size(), rg.total_byte_size()))
        .collect();
    if format == Format::Json {
        let (summary_json, err) = match &summary {
            Ok(s) => (serde_json::to_value(s)?, None),
            Err(e) => (serde_json::Value::Null, Some(e.to_string())),
        };
        let v = serde_json::json!({
            "path": file,
            "num_rows": fm.num_rows(),
            "created_by": fm.created_by(),
            "columns": schema.fields().iter().map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()})).collect::<Vec<_>>(),
            "row_groups": groups.iter().map(|(i, n, c, u)| serde_json::json!({"index": i, "rows": n, "compressed_bytes": c, "uncompressed_bytes": u})).collect::<Vec<_>>(),
            "has_summary": matches!(summary, Ok(Some(_))),
            "summary": summary_json,
            "summary_error": err,
        });
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} rows, {} row groups, created by {}",
        file.display(),
        fm.num_rows(),
        groups.len(),
        fm.created_by().unwrap_or("?")
    );
    let mut t = Table::new(&["#", "column", "type"]);
    for (i, f) in schema.fields().iter().enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            f.name().clone(),
            f.data_type().to_string(),
        ]);
    }
    println!();
    print!("{}", t.render());
    let mut t = Table::new(&["row group", "rows", "compressed", "uncompressed"]);
    for (i, n, c, u) in &groups {
        t.row(vec![
            i.to_string(),
            n.to_string(),
            c.to_string(),
            u.to_string(),
        ]);
    }
    println!();
    print!("{}", t.render());
    println!();
    match summary {
        Ok(Some(s)) => print!("{}", summary_text(&s)),
        Ok(None) => println!("no n4a_summary (written before summaries existed)"),
        Err(e) => {
            println!("summary error: {e}");
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}
