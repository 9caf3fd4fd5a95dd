//! `n4a-bench row-floor`: the least CPU any reader pays to fetch rows
//! never read before from a workspace's files, whatever it does after:
//! for each row, the compressed pages that hold it (the data page of each
//! column asked, and the column's dictionary page when that data page is
//! dictionary-encoded) are decompressed, nothing decoded. The files are
//! read into memory first, so no I/O is timed; one thread. This is the
//! floor under a page of rows at an offset never asked before (issue 33:
//! the server's unseen pages), measured on the files themselves.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::serialized_reader::SerializedPageReader;

/// The columns the nirs4all web app shows in its table (and the serve
/// bench asks): 26 of the 35.
const WEBAPP: &str = "id,dataset_name,config_name,pipeline_uid,step_idx,op_counter,\
model_name,model_classname,fold_id,partition,val_score,test_score,train_score,metric,\
task_type,n_samples,n_features,preprocessings,best_params,scores,branch_id,branch_name,\
exclusion_count,exclusion_rate,model_artifact_id,trace_id";

/// The `row-floor` flags.
#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// Workspace folder (`.meta.parquet` files).
    workspace: PathBuf,
    /// Pages of rows to draw.
    #[arg(long, default_value_t = 40)]
    pages: usize,
    /// Rows a page, each at a random row of a random file.
    #[arg(long, default_value_t = 50)]
    rows: usize,
    /// Columns fetched (comma-separated; default: the web app's 26).
    #[arg(long, default_value = WEBAPP)]
    columns: String,
    /// Seed of the draw.
    #[arg(long, default_value_t = 33)]
    seed: u64,
}

/// One data page of a column chunk: its first row, its rows, whether its
/// values are dictionary codes.
struct DataPage {
    first: u64,
    rows: u64,
    coded: bool,
}

/// One file in memory with, per column asked, the chunk's index and its
/// data pages (row group 0: nirs4all and n4a write one row group per
/// file; files with more are refused).
struct File {
    bytes: Bytes,
    meta: Arc<parquet::file::metadata::ParquetMetaData>,
    columns: Vec<(usize, Vec<DataPage>)>,
    rows: u64,
}

/// Decompressed bytes, pages and time, summed over the draw.
#[derive(Default)]
struct Tally {
    bytes: usize,
    pages: usize,
    dict_bytes: usize,
    dict_time: Duration,
}

/// Draws `pages` pages of `rows` random rows and times decompressing the
/// pages that hold them; prints the time, bytes and pages a page.
pub fn floor_cmd(a: FloorArgs) -> anyhow::Result<ExitCode> {
    let names: Vec<&str> = a.columns.split(',').map(str::trim).collect();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&a.workspace)
        .with_context(|| format!("{}", a.workspace.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".meta.parquet"))
        .collect();
    paths.sort();
    let files = paths
        .iter()
        .map(|p| layout(p, &names).with_context(|| format!("{}", p.display())))
        .collect::<anyhow::Result<Vec<File>>>()?;
    anyhow::ensure!(
        !files.is_empty(),
        "no .meta.parquet file in {}",
        a.workspace.display()
    );
    let mut state = a.seed | 1;
    let mut draw = move |n: u64| {
        // xorshift64: a fixed, dependency-free draw.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n.max(1)
    };
    let mut tally = Tally::default();
    let mut files_read = 0usize;
    let t0 = Instant::now();
    for _ in 0..a.pages {
        // A page's rows by file, as the server reads them: each file once,
        // a page holding two of its rows decompressed once.
        let mut by_file: std::collections::BTreeMap<usize, Vec<u64>> = Default::default();
        for _ in 0..a.rows {
            let fi = draw(files.len() as u64) as usize;
            let row = draw(files[fi].rows);
            by_file.entry(fi).or_default().push(row);
        }
        files_read += by_file.len();
        for (fi, rows) in &by_file {
            let f = &files[*fi];
            for (chunk, pages) in &f.columns {
                fetch(f, *chunk, pages, rows, &mut tally)?;
            }
        }
    }
    let per = |x: f64| x / a.pages.max(1) as f64;
    let ms = per(t0.elapsed().as_secs_f64() * 1e3);
    println!(
        "{} files; {} pages of {} rows at random rows of random files ({:.1} files a page), {} columns",
        files.len(),
        a.pages,
        a.rows,
        per(files_read as f64),
        names.len()
    );
    println!(
        "decompressing the pages that hold a page's rows: {ms:.1} ms of CPU a page \
         ({:.1} MB in {:.0} compressed pages); of which dictionary pages {:.1} ms ({:.1} MB)",
        per(tally.bytes as f64) / 1e6,
        per(tally.pages as f64),
        per(tally.dict_time.as_secs_f64() * 1e3),
        per(tally.dict_bytes as f64) / 1e6,
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads `path` into memory and walks the pages of each column asked
/// (decompressing them once, untimed) to learn where each row is.
fn layout(path: &std::path::Path, names: &[&str]) -> anyhow::Result<File> {
    let bytes = Bytes::from(std::fs::read(path)?);
    let reader = SerializedFileReader::new(bytes.clone())?;
    let meta = Arc::new(reader.metadata().clone());
    anyhow::ensure!(
        meta.num_row_groups() == 1,
        "has {} row groups",
        meta.num_row_groups()
    );
    let rg = meta.row_group(0);
    let rows = rg.num_rows() as u64;
    let mut columns = Vec::new();
    for name in names {
        let Some(chunk) =
            (0..rg.num_columns()).find(|&i| rg.column(i).column_path().string() == *name)
        else {
            continue;
        };
        let mut pr = SerializedPageReader::new(
            Arc::new(bytes.clone()),
            rg.column(chunk),
            rows as usize,
            None,
        )?;
        let (mut pages, mut at) = (Vec::new(), 0u64);
        while let Some(page) = pr.get_next_page()? {
            let (n, enc) = match page {
                Page::DictionaryPage { .. } => continue,
                Page::DataPage {
                    num_values,
                    encoding,
                    ..
                } => (num_values, encoding),
                Page::DataPageV2 {
                    num_rows, encoding, ..
                } => (num_rows, encoding),
            };
            let coded = matches!(enc, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY);
            pages.push(DataPage {
                first: at,
                rows: u64::from(n),
                coded,
            });
            at += u64::from(n);
        }
        columns.push((chunk, pages));
    }
    Ok(File {
        bytes,
        meta,
        columns,
        rows,
    })
}

/// Decompresses the data pages of `chunk` holding `rows`, and the
/// chunk's dictionary page when one of them needs it; other pages are
/// skipped by their headers, as the parquet crate's reader does.
fn fetch(
    f: &File,
    chunk: usize,
    pages: &[DataPage],
    rows: &[u64],
    t: &mut Tally,
) -> anyhow::Result<()> {
    let wanted: std::collections::BTreeSet<usize> = rows
        .iter()
        .filter_map(|&r| {
            pages
                .iter()
                .position(|p| r >= p.first && r < p.first + p.rows)
        })
        .collect();
    let Some(&last) = wanted.last() else {
        return Ok(());
    };
    let coded = wanted.iter().any(|&i| pages[i].coded);
    let rg = f.meta.row_group(0);
    let mut pr = SerializedPageReader::new(
        Arc::new(f.bytes.clone()),
        rg.column(chunk),
        f.rows as usize,
        None,
    )?;
    let mut data = 0;
    while let Some(m) = pr.peek_next_page()? {
        if m.is_dict {
            if coded {
                let t0 = Instant::now();
                let n = pr.get_next_page()?.map_or(0, |p| p.buffer().len());
                t.dict_time += t0.elapsed();
                t.dict_bytes += n;
                t.bytes += n;
                t.pages += 1;
            } else {
                pr.skip_next_page()?;
            }
            continue;
        }
        if wanted.contains(&data) {
            t.bytes += pr.get_next_page()?.map_or(0, |p| p.buffer().len());
            t.pages += 1;
        } else {
            pr.skip_next_page()?;
        }
        if data == last {
            return Ok(());
        }
        data += 1;
    }
    Ok(())
}
